// Session moves over the cluster exchange (the protocol is in proxy/moves.ts). Requests go to
// the one process that holds the session, by the key `proc.<nodeId>-<worker>`, published
// `mandatory` (no such process: the broker returns it at once); replies go to the asker's own
// queue through the default exchange, matched by correlation id.
//
//   type       direction  headers                                     body
//   take       request    x-switchboard-connection, x-switchboard-from  —
//   release    request    x-switchboard-connection, x-switchboard-from  —
//   post       request    x-switchboard-connection, x-switchboard-from  what an HTTP client POSTed (a path, its frames)
//   snapshot   reply      —                                           the session (proxy/snapshot.ts)
//   tail       reply      —                                           what reached it meanwhile
//   moved      reply      x-switchboard-holder                        — (ask that process instead)
//   parking    reply      —                                           — (being parked here: claim it from where it is parked)
//   posted     reply      —                                           the POST's answer (a status and its JSON)
//   none       reply      —                                           — (no such session here)
import type { Options } from 'amqplib';
import { parseJson } from '../../proxy/json.js';
import { MAX_SEND_FRAMES } from '../../proxy/limits.js';
import { fail, ok, type Result } from '../../proxy/result.js';
import type { Post, Posted } from '../../proxy/sse-gateway.js';
import type { SentFrame } from '../../proxy/sse-send.js';

export type TransferRequest = 'take' | 'release' | 'post';
export type TransferReply = 'snapshot' | 'tail' | 'moved' | 'parking' | 'posted' | 'none';

const REQUESTS: ReadonlySet<string> = new Set<TransferRequest>(['take', 'release', 'post']);
const REPLIES: ReadonlySet<string> = new Set<TransferReply>(['snapshot', 'tail', 'moved', 'parking', 'posted', 'none']);

export const isTransferRequest = (type: unknown): type is TransferRequest => typeof type === 'string' && REQUESTS.has(type);
export const isTransferReply = (type: unknown): type is TransferReply => typeof type === 'string' && REPLIES.has(type);

/** A process, as the routing key of its own binding. */
export const processKey = (process: string): string => `proc.${process}`;


export function requestOptions(type: TransferRequest, connection: string, from: string, origin: string, replyTo: string, correlationId: string): Options.Publish {
  return {
    type, replyTo, correlationId, mandatory: true, persistent: false,
    headers: { 'x-switchboard-origin': origin, 'x-switchboard-connection': connection, 'x-switchboard-from': from },
  };
}

export function replyOptions(type: TransferReply, correlationId: string, holder?: string): Options.Publish {
  return { type, correlationId, persistent: false, contentType: 'application/json', headers: holder === undefined ? {} : { 'x-switchboard-holder': holder } };
}

const PROCESS = /^[a-z0-9]+-\d+$/;

/** A `<node>-<worker>` from a header; null when it is not one. */
export function processOf(value: unknown): string | null {
  const s = typeof value === 'string' ? value : Buffer.isBuffer(value) ? value.toString('utf8') : null;
  return s !== null && PROCESS.test(s) ? s : null;
}

/** A forwarded POST from another process, checked: never thrown on, whatever the bytes. */
export function decodePost(content: Buffer): Result<Post, string> {
  const parsed = parseJson(content.toString('utf8'));
  if (!parsed.ok) return fail(parsed.error.message);
  const v = parsed.value as Partial<Record<keyof Post, unknown>> | null;
  if (v === null || typeof v !== 'object' || typeof v.path !== 'string' || typeof v.single !== 'boolean' || !Array.isArray(v.frames)) return fail('not a POST: {path, frames, single}');
  if (v.frames.length === 0 || v.frames.length > MAX_SEND_FRAMES) return fail(`a POST carries 1 to ${MAX_SEND_FRAMES} frames`);
  const frames: SentFrame[] = [];
  for (const f of v.frames as unknown[]) {
    const { text, id, close } = (f ?? {}) as Record<string, unknown>;
    if (typeof text !== 'string' || (id !== undefined && typeof id !== 'string') || (close !== undefined && typeof close !== 'string')) return fail('a frame is {text, id?, close?} of strings');
    frames.push({ text, id: id as string | undefined, ...(close === undefined ? {} : { close: close as string }) });
  }
  return ok({ path: v.path, frames, single: v.single });
}

/** The holder's answer to a forwarded POST, checked. */
export function decodePosted(content: Buffer): Result<Posted, string> {
  const parsed = parseJson(content.toString('utf8'));
  if (!parsed.ok) return fail(parsed.error.message);
  const v = parsed.value as Partial<Record<keyof Posted, unknown>> | null;
  if (v === null || typeof v !== 'object' || typeof v.status !== 'number' || !Number.isInteger(v.status) || v.status < 200 || v.status > 599 || !('body' in v)) return fail('not an answer: {status, body}');
  return ok({ status: v.status, body: v.body });
}
