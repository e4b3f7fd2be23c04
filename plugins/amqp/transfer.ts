// Session moves over the cluster exchange (the protocol is in proxy/moves.ts). Requests go to
// the one process that holds the session, by the key `proc.<nodeId>-<worker>`, published
// `mandatory` (no such process: the broker returns it at once); replies go to the asker's own
// queue through the default exchange, matched by correlation id.
//
//   type       direction  headers                                     body
//   take       request    x-switchboard-connection, x-switchboard-from  —
//   release    request    x-switchboard-connection, x-switchboard-from  —
//   snapshot   reply      —                                           the session (proxy/snapshot.ts)
//   tail       reply      —                                           what reached it meanwhile
//   moved      reply      x-switchboard-holder                        — (ask that process instead)
//   parking    reply      —                                           — (being parked here: claim it from where it is parked)
//   none       reply      —                                           — (no such session here)
import type { Options } from 'amqplib';

export type TransferRequest = 'take' | 'release';
export type TransferReply = 'snapshot' | 'tail' | 'moved' | 'parking' | 'none';

const REQUESTS: ReadonlySet<string> = new Set<TransferRequest>(['take', 'release']);
const REPLIES: ReadonlySet<string> = new Set<TransferReply>(['snapshot', 'tail', 'moved', 'parking', 'none']);

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
