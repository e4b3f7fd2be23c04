// Turns push requests (HTTP bodies and headers, batch items) into pushes and targets.
// Shared by the push API and the RabbitMQ push queue, so both accept exactly the same.
import type { Payload } from './payload.js';
import { payloadOfValue } from './payload.js';
import { SwitchboardError } from './errors.js';
import { parseJson } from './json.js';
import { Push, type MessageClass } from './push.js';
import { targetOf, toAll, type Target } from './target.js';
import { MAX_COALESCE_KEY } from './limits.js';

export interface PushHeaders {
  readonly class?: string;
  readonly coalesceKey?: string;
  readonly ttlMs?: string;
}

function messageClass(value: unknown, where: string): MessageClass {
  // null is absent, as for coalesceKey and ttlMs.
  if (value === undefined || value === null) return 'durable';
  if (value === 'durable' || value === 'lossy') return value;
  throw new SwitchboardError('bad_body', `${where}: expected "durable" or "lossy", got ${JSON.stringify(value)}`);
}

function coalesceKey(value: unknown, where: string): string | null {
  if (value === undefined || value === null) return null;
  if (typeof value !== 'string' || value.length === 0 || value.length > MAX_COALESCE_KEY) {
    throw new SwitchboardError('bad_body', `${where}: expected a string of 1 to ${MAX_COALESCE_KEY} characters`);
  }
  return value;
}

function expiry(value: unknown, where: string, now: number): number {
  if (value === undefined || value === null) return Infinity;
  const n = typeof value === 'string' && /^\d+$/.test(value) ? Number(value) : value;
  if (typeof n !== 'number' || !Number.isSafeInteger(n) || n <= 0) {
    throw new SwitchboardError('bad_body', `${where}: expected a positive integer of milliseconds, got ${JSON.stringify(value)}`);
  }
  return now + n;
}

/** A push from an HTTP body whose content type was already mapped to a payload. */
export function pushFromHttp(payload: Payload, headers: PushHeaders, now: number): Push {
  try {
    return new Push(payload, {
      class: messageClass(headers.class, 'X-Switchboard-Class'),
      coalesceKey: coalesceKey(headers.coalesceKey, 'X-Switchboard-Coalesce-Key'),
      expiresAt: expiry(headers.ttlMs, 'X-Switchboard-TTL-Ms', now),
    });
  } catch (err) {
    throw new SwitchboardError('bad_header', (err as Error).message, { cause: err });
  }
}

/** A JSON body from outside, bounded in depth: its value, or a 400 saying why not. */
export function jsonBody(text: string): unknown {
  const parsed = parseJson(text);
  if (!parsed.ok) throw new SwitchboardError(parsed.error.code, parsed.error.message, { cause: parsed.error });
  return parsed.value;
}

export interface BatchItem {
  readonly target: Target;
  readonly push: Push;
}

function target(value: unknown, where: string): Target {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new SwitchboardError('bad_body', `${where}: expected {"connection"|"user"|"channel": "…"} or {"all": true}`);
  }
  const entries = Object.entries(value);
  if (entries.length === 1) {
    const [key, name] = entries[0];
    const found = key === 'all' ? (name === true ? toAll : null) : typeof name === 'string' ? targetOf(key, name) : null;
    if (found) return found;
  }
  throw new SwitchboardError('bad_body', `${where}: expected {"connection"|"user"|"channel": "…"} or {"all": true}, got ${JSON.stringify(value).slice(0, 80)}`);
}

/** `{"messages":[{"to", "data"|"binary", "class", "coalesceKey", "ttlMs"}]}`. */
export function parseBatch(body: unknown, now: number, maxItems: number, maxItemBytes: number): BatchItem[] {
  if (body === null || typeof body !== 'object' || !Array.isArray((body as { messages?: unknown }).messages)) {
    throw new SwitchboardError('bad_body', 'expected {"messages": [...]}');
  }
  for (const key of Object.keys(body)) {
    if (key !== 'messages') throw new SwitchboardError('bad_body', `${key}: unknown key`);
  }
  const messages = (body as { messages: unknown[] }).messages;
  if (messages.length > maxItems) throw new SwitchboardError('too_large', `a batch holds at most ${maxItems} messages, got ${messages.length}`);
  return messages.map((item, i) => {
    const where = `messages[${i}]`;
    if (item === null || typeof item !== 'object' || Array.isArray(item)) throw new SwitchboardError('bad_body', `${where}: expected an object`);
    const m = item as Record<string, unknown>;
    for (const key of Object.keys(m)) {
      if (!['to', 'data', 'binary', 'class', 'coalesceKey', 'ttlMs'].includes(key)) throw new SwitchboardError('bad_body', `${where}.${key}: unknown key`);
    }
    const hasData = 'data' in m;
    const hasBinary = 'binary' in m;
    if (hasData === hasBinary) throw new SwitchboardError('bad_body', `${where}: expected exactly one of "data" and "binary"`);
    let payload: Payload;
    if (hasBinary) {
      const data = typeof m.binary === 'string' ? Buffer.from(m.binary, 'base64') : null;
      // Only canonical base64: Node's decoder skips stray characters and a short last group.
      if (data === null || data.toString('base64') !== m.binary) throw new SwitchboardError('bad_body', `${where}.binary: expected base64`);
      payload = { kind: 'binary', data };
    } else {
      payload = payloadOfValue(m.data);
    }
    const push = new Push(payload, {
      class: messageClass(m.class, `${where}.class`),
      coalesceKey: coalesceKey(m.coalesceKey, `${where}.coalesceKey`),
      expiresAt: expiry(m.ttlMs, `${where}.ttlMs`, now),
    });
    if (push.bytes > maxItemBytes) throw new SwitchboardError('too_large', `${where}: ${push.bytes} bytes is more than limits.maxMessageBytes (${maxItemBytes})`);
    return { target: target(m.to, `${where}.to`), push };
  });
}
