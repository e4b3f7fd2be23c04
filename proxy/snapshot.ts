// A reliable session as data, so another process can take it over (proxy/moves.ts): who it
// is, what the app set on it, and every message it still holds with its seq, class,
// coalesce key, TTL and push id. JSON, so any transport carries it; decoded like any outside
// input (it arrives from a broker): checked field by field, never by throwing.
import { parseJson } from './json.js';
import { Push, type MessageClass } from './push.js';
import type { Payload } from './payload.js';
import type { Handshake } from './session.js';
import { fail, ok, type Result } from './result.js';

export const SNAPSHOT_VERSION = 1;

/** A push as it travels; `ttlMs` is the time it had left (clocks of nodes differ), null for none. */
export interface WireMessage {
  readonly kind: Payload['kind'];
  /** The text, the JSON text, or the bytes in base64. */
  readonly body: string;
  readonly class: MessageClass;
  readonly key: string | null;
  readonly ttlMs: number | null;
  readonly pushId: string | null;
  /** Set for a presence frame (`presence.frames`); absent for a message. */
  readonly type?: 'presence';
}

export interface HeldMessage extends WireMessage {
  readonly seq: number;
}

/** Its handshake (a moving session is always reliable), then its state. */
export interface SessionSnapshot extends Omit<Handshake, 'mode'> {
  readonly v: typeof SNAPSHOT_VERSION;
  readonly connectedAt: number;
  readonly user: string | null;
  readonly meta: Record<string, string>;
  readonly channels: string[];
  /** The seq the next message gets; the held ones are below it, in order. */
  readonly nextSeq: number;
  /** How many of `messages` (from the first) were written to a socket already. */
  readonly sent: number;
  readonly messages: HeldMessage[];
  readonly messagesIn: number;
  readonly messagesOut: number;
  /** How long the session had been without a socket (0 when it had one). */
  readonly detachedForMs: number;
}

/** What changed on the old holder while the session moved: pushes that reached it there, and its final user, meta and channels. */
export interface MoveTail {
  readonly user: string | null;
  readonly meta: Record<string, string>;
  readonly channels: string[];
  readonly pushes: WireMessage[];
  /** The app closed the session meanwhile (a parked one): it ends once it arrives. */
  readonly close?: { readonly code: number; readonly reason: string };
}

/** A session as the roster keeps it (plugins/amqp/roster.ts): enough for its disconnect webhook. */
export interface RosterEntry {
  readonly id: string;
  readonly user: string | null;
  readonly meta: Record<string, string>;
  readonly connectedAt: number;
  readonly path: string;
}

export function toWireMessage(push: Push, now: number): WireMessage {
  const p = push.payload;
  return {
    kind: p.kind,
    body: p.kind === 'binary' ? p.data.toString('base64') : p.kind === 'text' ? p.text : p.json,
    class: push.class,
    key: push.coalesceKey,
    ttlMs: Number.isFinite(push.expiresAt) ? Math.max(0, Math.ceil(push.expiresAt - now)) : null,
    pushId: push.id,
    ...(push.type === 'presence' ? { type: 'presence' as const } : {}),
  };
}

export function fromWireMessage(m: WireMessage, now: number): Push {
  const payload: Payload = m.kind === 'binary' ? { kind: 'binary', data: Buffer.from(m.body, 'base64') }
    : m.kind === 'text' ? { kind: 'text', text: m.body } : { kind: 'json', json: m.body };
  return new Push(payload, { class: m.class, coalesceKey: m.key, expiresAt: m.ttlMs === null ? Infinity : now + m.ttlMs, id: m.pushId, type: m.type ?? 'message' });
}

// ── decoding ───────────────────────────────────────────────────────────────────

type Obj = Record<string, unknown>;

const isObject = (v: unknown): v is Obj => v !== null && typeof v === 'object' && !Array.isArray(v);
const isCount = (v: unknown): v is number => Number.isSafeInteger(v) && (v as number) >= 0;
const isStringOrNull = (v: unknown): v is string | null => v === null || typeof v === 'string';
const isStrings = (v: unknown): v is string[] => Array.isArray(v) && v.every((s) => typeof s === 'string');
const isStringRecord = (v: unknown): v is Record<string, string> => isObject(v) && Object.values(v).every((s) => typeof s === 'string');

function wireMessage(v: unknown): Result<WireMessage> {
  if (!isObject(v)) return fail('a message is not an object');
  const { kind, body, key, ttlMs, pushId } = v;
  if (kind !== 'text' && kind !== 'json' && kind !== 'binary') return fail(`bad message kind ${JSON.stringify(kind)}`);
  if (typeof body !== 'string') return fail('a message without a body');
  if (kind === 'json' && !parseJson(body).ok) return fail('a JSON message that is not JSON');
  if (v.class !== 'durable' && v.class !== 'lossy') return fail(`bad message class ${JSON.stringify(v.class)}`);
  if (!isStringOrNull(key) || !isStringOrNull(pushId)) return fail('bad coalesce key or push id');
  if (ttlMs !== null && !isCount(ttlMs)) return fail('bad message TTL');
  if (v.type !== undefined && v.type !== 'presence') return fail(`bad message type ${JSON.stringify(v.type)}`);
  if (v.type === 'presence' && (kind !== 'json' || !body.startsWith('{'))) return fail('a presence frame is a JSON object');
  return ok({ kind, body, class: v.class, key, ttlMs, pushId, ...(v.type === 'presence' ? { type: 'presence' as const } : {}) });
}

function wireMessages(v: unknown): Result<WireMessage[]> {
  if (!Array.isArray(v)) return fail('messages is not a list');
  const out: WireMessage[] = [];
  for (const item of v) {
    const m = wireMessage(item);
    if (!m.ok) return m;
    out.push(m.value);
  }
  return ok(out);
}

function parsed(content: Buffer): Result<Obj> {
  const value = parseJson(content.toString('utf8'));
  if (!value.ok) return fail(value.error.message);
  return isObject(value.value) ? ok(value.value) : fail('not a JSON object');
}

export function decodeSnapshot(content: Buffer): Result<SessionSnapshot> {
  const read = parsed(content);
  if (!read.ok) return read;
  const s = read.value;
  if (s.v !== SNAPSHOT_VERSION) return fail(`unknown snapshot version ${JSON.stringify(s.v)}`);
  for (const k of ['id', 'path', 'url', 'remoteAddress'] as const) if (typeof s[k] !== 'string' || s[k] === '') return fail(`bad ${k}`);
  if (!isStringRecord(s.query) || !isStringRecord(s.headers) || !isStringRecord(s.meta)) return fail('bad query, headers or meta');
  if (!isStringOrNull(s.subprotocol) || !isStringOrNull(s.user) || !isStrings(s.channels)) return fail('bad subprotocol, user or channels');
  for (const k of ['connectedAt', 'nextSeq', 'sent', 'messagesIn', 'messagesOut', 'detachedForMs'] as const) if (!isCount(s[k])) return fail(`bad ${k}`);
  if (!Array.isArray(s.messages)) return fail('messages is not a list');
  const messages: HeldMessage[] = [];
  let previous = 0;
  for (const item of s.messages) {
    const m = wireMessage(item);
    if (!m.ok) return m;
    const seq = (item as Obj).seq;
    // Held messages are in seq order, each below nextSeq: the receiver numbers on from there.
    if (!isCount(seq) || seq <= previous || seq >= (s.nextSeq as number)) return fail('held messages out of order');
    previous = seq;
    messages.push({ ...m.value, seq });
  }
  if ((s.sent as number) > messages.length) return fail('more sent than held');
  return ok({
    v: SNAPSHOT_VERSION,
    id: s.id as string, path: s.path as string, url: s.url as string, query: s.query, remoteAddress: s.remoteAddress as string,
    subprotocol: s.subprotocol, headers: s.headers, connectedAt: s.connectedAt as number,
    user: s.user, meta: s.meta, channels: s.channels,
    nextSeq: s.nextSeq as number, sent: s.sent as number, messages,
    messagesIn: s.messagesIn as number, messagesOut: s.messagesOut as number, detachedForMs: s.detachedForMs as number,
  });
}

export function decodeTail(content: Buffer): Result<MoveTail> {
  const read = parsed(content);
  if (!read.ok) return read;
  const t = read.value;
  if (!isStringOrNull(t.user) || !isStringRecord(t.meta) || !isStrings(t.channels)) return fail('bad user, meta or channels');
  const pushes = wireMessages(t.pushes);
  if (!pushes.ok) return pushes;
  if (t.close !== undefined) {
    const c = t.close;
    if (!isObject(c) || !Number.isInteger(c.code) || (c.code as number) < 1000 || (c.code as number) > 4999 || typeof c.reason !== 'string') return fail('bad close');
    return ok({ user: t.user, meta: t.meta, channels: t.channels, pushes: pushes.value, close: { code: c.code as number, reason: c.reason } });
  }
  return ok({ user: t.user, meta: t.meta, channels: t.channels, pushes: pushes.value });
}

export const encodeJson = (value: SessionSnapshot | MoveTail): Buffer => Buffer.from(JSON.stringify(value));
