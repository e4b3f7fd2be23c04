// What an SSE session's client sends by POST (docs/usage.md, "HTTP fallback (SSE)"): one
// reliable-mode frame, or an array of them, as JSON. Parsed once here, without throwing; each
// frame then enters the session as a WebSocket frame would (proxy/reliable.ts decides on it), but
// `{"type":"close","reason"?}`, which ends the session as a WebSocket close frame with 1000 would.
import { parseJson } from './json.js';
import { MAX_CLOSE_REASON_BYTES, MAX_SEND_FRAMES } from './limits.js';
import { fail, ok, type Result } from './result.js';

export interface SentFrame {
  /** The frame's JSON text, as the session reads a text frame. */
  readonly text: string;
  /** Its `id` when it is a string: the answer to wait for (ack or nack). */
  readonly id: string | undefined;
  /** Set on a `close` frame: the client ends its session now, with this reason. */
  readonly close?: string;
}

export interface SendBody {
  readonly frames: readonly SentFrame[];
  /** One frame (answered with one object), not an array (answered with an array). */
  readonly single: boolean;
}

export type SendBodyError = { readonly code: 'bad_json' | 'too_deep' | 'bad_body'; readonly message?: string };

export function parseSendBody(text: string): Result<SendBody, SendBodyError> {
  const parsed = parseJson(text);
  if (!parsed.ok) return fail({ code: parsed.error.code === 'too_deep' ? 'too_deep' : 'bad_json' });
  const value = parsed.value;
  const single = !Array.isArray(value);
  const items: unknown[] = single ? [value] : value;
  if (items.length === 0) return fail({ code: 'bad_body', message: 'an empty array sends nothing' });
  if (items.length > MAX_SEND_FRAMES) return fail({ code: 'bad_body', message: `at most ${MAX_SEND_FRAMES} frames in one POST` });
  const frames: SentFrame[] = [];
  for (const item of items) {
    if (item === null || typeof item !== 'object' || Array.isArray(item)) return fail({ code: 'bad_body', message: 'each frame is a JSON object with a "type"' });
    const { id, type, reason } = item as Record<string, unknown>;
    const text = JSON.stringify(item);
    if (type === 'close') {
      // Not a session frame: the link ends its stream as a WebSocket client's close frame (1000) would.
      if (reason !== undefined && (typeof reason !== 'string' || Buffer.byteLength(reason) > MAX_CLOSE_REASON_BYTES)) {
        return fail({ code: 'bad_body', message: `a close frame's "reason" is a string of at most ${MAX_CLOSE_REASON_BYTES} bytes` });
      }
      frames.push({ text, id: undefined, close: reason ?? '' });
      continue;
    }
    frames.push({ text, id: typeof id === 'string' ? id : undefined });
  }
  return ok({ frames, single });
}
