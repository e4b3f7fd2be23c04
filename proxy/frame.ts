// The reliable-mode (`switchboard.v1`) codec, socket-free. Client frames: text in, a typed
// frame or a typed fault out; it never throws, every input is answered. Server frames: one
// typed list, encoded in one place (a push's `message` frame is Push#reliableFrame, cached).
import type { FrameErrorCode, NackCodeName } from './errors.js';
import { parseJson } from './json.js';
import { MAX_CHANNEL, MAX_CLIENT_ID } from './limits.js';

export type ClientFrame =
  /** `data` is the client's JSON value, re-serialized (bounded in depth, so this cannot fail). */
  | { readonly type: 'message'; readonly json: string; readonly id?: string }
  | { readonly type: 'ack'; readonly seq: number }
  | { readonly type: 'ping' }
  | { readonly type: 'subscribe' | 'unsubscribe'; readonly channel: string; readonly id?: string };

export interface FrameFault {
  readonly type: 'fault';
  readonly error: FrameErrorCode;
  readonly message?: string;
}

const fault = (error: FrameErrorCode, message?: string): FrameFault => ({ type: 'fault', error, message });

function optionalId(v: unknown): string | undefined | FrameFault {
  if (v === undefined) return undefined;
  if (typeof v !== 'string' || v.length === 0 || v.length > MAX_CLIENT_ID) {
    return fault('bad_field', `"id" must be a string of 1 to ${MAX_CLIENT_ID} characters`);
  }
  return v;
}

export function parseClientFrame(text: string): ClientFrame | FrameFault {
  const parsed = parseJson(text);
  if (!parsed.ok) return fault(parsed.error.code === 'too_deep' ? 'too_deep' : 'bad_json');
  const frame = parsed.value;
  if (frame === null || typeof frame !== 'object' || Array.isArray(frame)) return fault('bad_json');
  const f = frame as Record<string, unknown>;
  switch (f.type) {
    case 'message': {
      if (!('data' in f)) return fault('bad_field', '"data" is required');
      const id = optionalId(f.id);
      if (typeof id === 'object') return id;
      return id === undefined ? { type: 'message', json: JSON.stringify(f.data) } : { type: 'message', json: JSON.stringify(f.data), id };
    }
    case 'ack':
      if (!Number.isSafeInteger(f.seq) || (f.seq as number) < 0) return fault('bad_field', '"seq" must be an integer >= 0');
      return { type: 'ack', seq: f.seq as number };
    case 'ping':
      return { type: 'ping' };
    case 'subscribe':
    case 'unsubscribe': {
      if (typeof f.channel !== 'string' || f.channel.length === 0 || f.channel.length > MAX_CHANNEL) {
        return fault('bad_field', `"channel" must be a string of 1 to ${MAX_CHANNEL} characters`);
      }
      const id = optionalId(f.id);
      if (typeof id === 'object') return id;
      return id === undefined ? { type: f.type, channel: f.channel } : { type: f.type, channel: f.channel, id };
    }
    default:
      return fault('bad_type', `unknown frame type ${JSON.stringify(f.type) ?? 'undefined'}`.slice(0, 300));
  }
}

/** Every frame the server sends but `message` (see Push#reliableFrame). */
export type ServerFrame =
  | { readonly type: 'welcome'; readonly session: string; readonly token: string; readonly resumed: boolean; readonly heartbeatMs: number; readonly graceMs: number }
  | { readonly type: 'gap'; readonly from: number; readonly to: number }
  | { readonly type: 'ack'; readonly id: string }
  | { readonly type: 'nack'; readonly id: string; readonly error: NackCodeName; readonly retryable: boolean }
  | { readonly type: 'pong' }
  | { readonly type: 'reconnect'; readonly afterMs: number }
  | { readonly type: 'error'; readonly error: FrameErrorCode | NackCodeName; readonly message: string };

const PONG = '{"type":"pong"}';

/** A server frame's text. Keys in the documented order; the common ones without a generic stringify. */
export function encodeServerFrame(f: ServerFrame): string {
  switch (f.type) {
    case 'pong': return PONG;
    case 'gap': return `{"type":"gap","from":${f.from},"to":${f.to}}`;
    case 'ack': return `{"type":"ack","id":${JSON.stringify(f.id)}}`;
    default: return JSON.stringify(f);
  }
}
