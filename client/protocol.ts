// The reliable-mode (`switchboard.v1`) wire as the client sees it: server frames parsed once
// and checked for the fields used, the resume URL, which close codes are worth a reconnect, and
// which refused handshakes are.

export const PROTOCOL = 'switchboard.v1';

/**
 * What the client sends when it leaves a socket to reconnect (a hint, a protocol error, a
 * missed pong): the server keeps the session for the resume. 1000 would end it. Browsers let a
 * client close only with 1000 or 3000–4999.
 */
export const RECONNECTING_CLOSE = 4100;

/** What a presence frame says: a channel's member came or went, or the channel became occupied or vacant. */
export type PresenceEventType = 'member_added' | 'member_removed' | 'channel_occupied' | 'channel_vacated';

export interface PresenceEvent {
  readonly event: PresenceEventType;
  readonly channel: string;
  /** The member; for `channel_occupied` / `channel_vacated`, the one whose join or leave it was. */
  readonly user: string;
  /** The event's id, the same the app's presence webhook gets. */
  readonly id: string;
  /** When it happened (ISO 8601). */
  readonly at: string;
}

const PRESENCE_EVENTS: ReadonlySet<string> = new Set(['member_added', 'member_removed', 'channel_occupied', 'channel_vacated']);

export type ServerFrame =
  | { type: 'welcome'; session: string; token: string; resumed: boolean }
  | { type: 'message'; seq: number; data: unknown }
  | { type: 'presence'; seq: number; presence: PresenceEvent }
  | { type: 'gap'; from: number; to: number }
  | { type: 'ack'; id: string }
  | { type: 'nack'; id: string; error: string; retryable: boolean }
  | { type: 'pong' }
  | { type: 'reconnect'; afterMs: number }
  | { type: 'error'; error: string; message: string }
  | { type: 'unknown' };

const isSeq = (v: unknown): v is number => Number.isSafeInteger(v) && (v as number) >= 1;
const isString = (v: unknown): v is string => typeof v === 'string';

/** Returns undefined for anything that is not a well-formed frame. */
export function parseFrame(text: string): ServerFrame | undefined {
  let f: Record<string, unknown>;
  try {
    const parsed: unknown = JSON.parse(text);
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) return undefined;
    f = parsed as Record<string, unknown>;
  } catch {
    return undefined;
  }
  switch (f.type) {
    case 'welcome':
      return isString(f.session) && isString(f.token) && typeof f.resumed === 'boolean'
        ? { type: 'welcome', session: f.session, token: f.token, resumed: f.resumed }
        : undefined;
    case 'message': {
      if (!isSeq(f.seq)) return undefined;
      if (f.binary === undefined) return { type: 'message', seq: f.seq, data: f.data };
      const bytes = isString(f.binary) ? decodeBase64(f.binary) : undefined;
      return bytes === undefined ? undefined : { type: 'message', seq: f.seq, data: bytes };
    }
    case 'presence':
      return isSeq(f.seq) && isString(f.event) && PRESENCE_EVENTS.has(f.event) && isString(f.channel) && isString(f.user) && isString(f.id) && isString(f.at)
        ? { type: 'presence', seq: f.seq, presence: { event: f.event as PresenceEventType, channel: f.channel, user: f.user, id: f.id, at: f.at } }
        : undefined;
    case 'gap':
      return isSeq(f.from) && isSeq(f.to) && f.from <= f.to ? { type: 'gap', from: f.from, to: f.to } : undefined;
    case 'ack':
      return isString(f.id) ? { type: 'ack', id: f.id } : undefined;
    case 'nack':
      return isString(f.id)
        ? { type: 'nack', id: f.id, error: isString(f.error) ? f.error : 'nack', retryable: f.retryable === true }
        : undefined;
    case 'pong':
      return { type: 'pong' };
    case 'reconnect':
      return { type: 'reconnect', afterMs: typeof f.afterMs === 'number' && f.afterMs >= 0 ? f.afterMs : 0 };
    case 'error':
      return {
        type: 'error',
        error: isString(f.error) ? f.error : 'error',
        message: isString(f.message) ? f.message : 'the server reported an error',
      };
    default:
      // Newer servers may add frame types; ignoring them keeps old clients working.
      return isString(f.type) ? { type: 'unknown' } : undefined;
  }
}

function decodeBase64(b64: string): Uint8Array | undefined {
  let bin: string;
  try {
    bin = atob(b64);
  } catch {
    return undefined;
  }
  const bytes = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
  return bytes;
}

/** `url` with resume=<token>&lastSeq=<n> set, keeping its other query parameters. */
export function resumeUrl(url: string, token: string, lastSeq: number): string {
  const hashAt = url.indexOf('#');
  const hash = hashAt === -1 ? '' : url.slice(hashAt);
  const beforeHash = hashAt === -1 ? url : url.slice(0, hashAt);
  const queryAt = beforeHash.indexOf('?');
  const path = queryAt === -1 ? beforeHash : beforeHash.slice(0, queryAt);
  const params = new URLSearchParams(queryAt === -1 ? '' : beforeHash.slice(queryAt + 1));
  params.set('resume', token);
  params.set('lastSeq', String(lastSeq));
  return `${path}?${params.toString()}${hash}`;
}

/** A resume as subprotocols, after the reliable one: the URL (and so access logs) never holds the token. */
export function resumeProtocols(token: string, lastSeq: number): string[] {
  return [PROTOCOL, `switchboard.resume.${token}`, `switchboard.last-seq.${lastSeq}`];
}

/**
 * Whether a close code is worth reconnecting after (docs/usage.md, Close codes). 1000 from the server,
 * 1008 (policy), 1009 (too big) and 4000–4099 (the app closed us, 4009 taken over)
 * would only repeat; 4008 (slow consumer) lost the session but a new one may work.
 */
export function reconnectsAfter(code: number): boolean {
  if (code === 4008) return true;
  if (code >= 4000 && code <= 4099) return false;
  return code !== 1000 && code !== 1008 && code !== 1009;
}

/**
 * Whether a handshake the server refused with this HTTP status would only be refused again:
 * a 4xx other than 408 (timeout) and 429 (too many), so 401 and 403 among them. 5xx and the rest are retried.
 */
export function refusalIsFinal(status: number): boolean {
  return status >= 400 && status < 500 && status !== 408 && status !== 429;
}

/** `Retry-After` in ms, as delta-seconds or an HTTP date; null when absent or unreadable. */
export function parseRetryAfter(value: string | readonly string[] | undefined, now: number): number | null {
  const v = (typeof value === 'string' ? value : value?.[0])?.trim();
  if (v === undefined || v === '') return null;
  if (/^\d+$/.test(v)) return Number(v) * 1000;
  // Otherwise only an HTTP date (it names a day and a month): "1.5" or "-5" is neither.
  if (!/[A-Za-z]{3}/.test(v)) return null;
  const at = Date.parse(v);
  return Number.isNaN(at) ? null : Math.max(0, at - now);
}
