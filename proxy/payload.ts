// Payloads to and from HTTP bodies: the content type decides text, JSON or binary.
import { parseJson, type JsonError } from './json.js';
import { ok, type Result } from './result.js';

/** A frame's content, kept in the form it arrived in so nothing is re-encoded twice. */
export type Payload =
  | { readonly kind: 'text'; readonly text: string }
  | { readonly kind: 'binary'; readonly data: Buffer }
  /** A JSON value, held as its serialized text. */
  | { readonly kind: 'json'; readonly json: string };

export type Mode = 'raw' | 'reliable';

export function contentTypeOf(p: Payload): string {
  return p.kind === 'text' ? 'text/plain; charset=utf-8' : p.kind === 'json' ? 'application/json' : 'application/octet-stream';
}

export function bodyOf(p: Payload): Buffer | string {
  return p.kind === 'text' ? p.text : p.kind === 'json' ? p.json : p.data;
}

export type BodyKind = 'json' | 'text' | 'binary' | null;

/** What an HTTP content type means for a frame; null when it is none of the three. */
export function bodyKind(contentType: string | undefined): BodyKind {
  const type = (contentType ?? '').split(';')[0].trim().toLowerCase();
  if (type === 'application/json' || type.endsWith('+json')) return 'json';
  if (type.startsWith('text/')) return 'text';
  if (type === 'application/octet-stream') return 'binary';
  return null;
}

/**
 * A body as a payload. JSON is checked and kept as its text; a body that claims JSON but is
 * not (or nests too deep) is the JsonError the caller reports.
 */
export function payloadOf(kind: Exclude<BodyKind, null>, body: Buffer): Result<Payload, JsonError> {
  if (kind === 'binary') return ok({ kind: 'binary', data: body });
  const text = body.toString('utf8');
  if (kind === 'text') return ok({ kind: 'text', text });
  const parsed = parseJson(text);
  return parsed.ok ? ok({ kind: 'json', json: text.trim() }) : parsed;
}

/** A JSON value from an app's answer or a batch item: a string is a text frame, anything else JSON. */
export function payloadOfValue(value: unknown): Payload {
  return typeof value === 'string' ? { kind: 'text', text: value } : { kind: 'json', json: JSON.stringify(value) };
}
