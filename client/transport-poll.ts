// Reliable mode over long-polling (docs/usage.md, "HTTP fallback (long-polling)"), shaped as the
// client's WebSocketLike so the client cannot tell it from a WebSocket: a GET with
// `?transport=long-poll` opens (or resumes) the session and is answered with the welcome, then each
// poll names the session with its token and its position with `lastSeq`, and is answered with a
// JSON array of the frames a WebSocket would carry, handed to the client one by one. What the
// client sends goes by POST, as on SSE (client/transport-post.ts).

import type { HandshakeResponse, WebSocketLike } from './client.js';
import { FramePoster, TOKEN_HEADER, UNREACHABLE, type Fetch } from './transport-post.js';
import { CLOSE_WAIT_MS, SILENT_HEARTBEATS, httpUrl, type Timers } from './transport-sse.js';

const CONNECTING = 0;
const OPEN = 1;
const CLOSING = 2;
const CLOSED = 3;

/** The query parameter and value that make a GET on the session's path a poll. */
export const TRANSPORT_PARAM = 'transport';
export const LONG_POLL = 'long-poll';

/** The URL of a poll: the session's URL without a resume's parameters, with the marker and the position. */
export function pollUrl(url: string, lastSeq: number | null): string {
  const [base, query = ''] = url.split('?', 2);
  const params = new URLSearchParams(query);
  params.delete('resume');
  params.delete('lastSeq');
  params.delete(TRANSPORT_PARAM);
  params.set(TRANSPORT_PARAM, LONG_POLL);
  if (lastSeq !== null) params.set('lastSeq', String(lastSeq));
  return `${base}?${params}`;
}

/** The URL that opens a session (or resumes one, when `url` carries `resume`): `url` with the marker. */
export function openUrl(url: string): string {
  const [base, query = ''] = url.split('?', 2);
  const params = new URLSearchParams(query);
  params.set(TRANSPORT_PARAM, LONG_POLL);
  return `${base}?${params}`;
}

/** What the transport reads of a frame; the client reads the rest. */
export interface AnsweredFrame {
  readonly type: string;
  readonly token?: unknown;
  readonly heartbeatMs?: unknown;
  readonly seq?: unknown;
  readonly to?: unknown;
  readonly code?: unknown;
  readonly reason?: unknown;
}

/** A poll's answer as frames, each with its text; null when it is not a JSON array of objects with a `type`. */
export function answerFrames(text: string): Array<{ readonly frame: AnsweredFrame; readonly text: string }> | null {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return null;
  }
  if (!Array.isArray(value)) return null;
  const frames: Array<{ frame: AnsweredFrame; text: string }> = [];
  for (const f of value) {
    if (typeof f !== 'object' || f === null || Array.isArray(f) || typeof (f as { type?: unknown }).type !== 'string') return null;
    frames.push({ frame: f as AnsweredFrame, text: JSON.stringify(f) });
  }
  return frames;
}

export class PollSocket implements WebSocketLike {
  readyState = CONNECTING;
  binaryType = 'arraybuffer';
  onopen: ((event: unknown) => void) | null = null;
  onmessage: ((event: { readonly data: unknown }) => void) | null = null;
  onclose: ((event: { readonly code: number; readonly reason: string }) => void) | null = null;
  onerror: ((event: unknown) => void) | null = null;

  readonly #url: string;
  readonly #headers: { [name: string]: string };
  readonly #fetch: Fetch;
  readonly #timers: Timers;
  readonly #abort = new AbortController();
  readonly #poster: FramePoster;
  #refusalListener: ((request: unknown, response: HandshakeResponse) => void) | null = null;
  #token: string | null = null;
  /** The highest seq the answers carried (messages, gaps): the next poll's position. */
  #lastSeq = 0;
  #closeCode = 1006;
  #closeReason = '';
  /** How long one poll may stay unanswered before the link counts as dead; 0 until the welcome. */
  #pollBoundMs = 0;
  #pollTimer: unknown = undefined;
  #closeTimer: unknown = undefined;

  constructor(url: string, fetchImpl: Fetch, headers: { readonly [name: string]: string } = {}, timers: Timers = globalThis) {
    this.#url = httpUrl(url);
    this.#fetch = fetchImpl;
    this.#headers = { ...headers };
    this.#timers = timers;
    this.#poster = new FramePoster(this.#url.split('?')[0], fetchImpl, this.#headers, {
      state: () => (this.readyState === OPEN ? 'open' : this.readyState === CLOSING ? 'closing' : 'gone'),
      token: () => this.#token,
      answer: (frame) => this.onmessage?.({ data: frame }),
      // The held poll takes the close frame's answer (close 1000); this bounds the wait for it.
      closed: () => {},
      stale: () => this.#stop(),
    });
    void this.#run();
  }

  on(event: 'unexpected-response', listener: (request: unknown, response: HandshakeResponse) => void): this {
    if (event === 'unexpected-response') this.#refusalListener = listener;
    return this;
  }

  send(text: string): void {
    if (this.readyState !== OPEN) throw new Error('the long-poll is not open');
    this.#poster.send(text);
  }

  /**
   * Ends the transport. A normal close (1000) of an open one first POSTs a `close` frame, so the
   * session ends now rather than waiting its grace; the held poll then gets the close, and the
   * transport is dropped once it has (or after CLOSE_WAIT_MS).
   */
  close(code = 1000, reason = ''): void {
    if (this.readyState === CLOSED || this.readyState === CLOSING) return;
    this.#closeCode = code;
    this.#closeReason = reason;
    if (this.readyState !== OPEN || this.#token === null || code !== 1000) return this.#stop();
    this.readyState = CLOSING;
    this.#closeTimer = this.#timers.setTimeout(() => this.#stop(), CLOSE_WAIT_MS);
    this.#poster.send(JSON.stringify({ type: 'close', reason }));
  }

  /** Aborts the poll in flight; the close is reported on a microtask, as a WebSocket reports it later. */
  #stop(): void {
    this.#abort.abort();
    queueMicrotask(() => this.#closed());
  }

  async #run(): Promise<void> {
    let res: Response;
    try {
      res = await this.#get(openUrl(this.#url), {});
    } catch {
      // No answer at all (offline, unreachable), or our own abort.
      if (!this.#abort.signal.aborted) this.#closeReason = UNREACHABLE;
      return this.#closed();
    }
    try {
      if (res.status !== 200) {
        // A refusal (the app's 401, a limit's 429 or 503): the status the client decides on.
        this.#refusalListener?.(null, { statusCode: res.status, headers: { 'retry-after': res.headers.get('retry-after') ?? undefined } });
        void res.body?.cancel().catch(() => {});
        return this.#closed();
      }
      for (;;) {
        const frames = answerFrames(await res.text());
        this.#disarm();
        if (frames === null) {
          this.#closeReason = 'the server answered a poll with something that is not frames';
          break;
        }
        if (!this.#take(frames)) break;
        res = await this.#get(pollUrl(this.#url, this.#lastSeq), { [TOKEN_HEADER]: this.#token! });
        // 404 (the session ended), 403 (the token expired), 503 (a resume refused while draining):
        // the link is gone; the client's reconnect decides what next, with its backoff.
        if (res.status !== 200) {
          void res.body?.cancel().catch(() => {});
          break;
        }
      }
    } catch {
      // A network error or our own abort: the link is gone either way.
    }
    this.#closed();
  }

  #get(url: string, headers: { [name: string]: string }): Promise<Response> {
    if (this.#pollBoundMs > 0) {
      // A poll the server holds is answered within its wait; one that stays out far longer went
      // through a proxy that holds a dead connection open.
      this.#pollTimer = this.#timers.setTimeout(() => {
        this.#pollTimer = undefined;
        this.#closeReason = 'a poll went unanswered';
        this.#stop();
      }, this.#pollBoundMs);
    }
    return this.#fetch(url, {
      method: 'GET',
      headers: { ...this.#headers, ...headers, accept: 'application/json' },
      signal: this.#abort.signal,
      credentials: 'include',
      cache: 'no-store',
    });
  }

  #disarm(): void {
    if (this.#pollTimer !== undefined) this.#timers.clearTimeout(this.#pollTimer);
    this.#pollTimer = undefined;
  }

  /** An answer's frames, to the client in order; false once the link is over (closed, asked to reconnect). */
  #take(frames: ReadonlyArray<{ readonly frame: AnsweredFrame; readonly text: string }>): boolean {
    for (const { frame: f, text } of frames) {
      if (this.readyState === CLOSED) return false;
      switch (f.type) {
        case 'close':
          // The session ended: its code and reason are what the client decides on.
          if (typeof f.code === 'number') this.#closeCode = f.code;
          if (typeof f.reason === 'string') this.#closeReason = f.reason;
          return false;
        case 'welcome':
          if (typeof f.token === 'string') this.#token = f.token;
          if (typeof f.heartbeatMs === 'number' && f.heartbeatMs > 0) this.#pollBoundMs = SILENT_HEARTBEATS * f.heartbeatMs + 1000;
          if (this.readyState === CONNECTING) this.readyState = OPEN;
          break;
        case 'message':
        case 'presence':
          // Numbered alike: the next poll's lastSeq says both arrived.
          if (typeof f.seq === 'number' && f.seq > this.#lastSeq) this.#lastSeq = f.seq;
          break;
        case 'gap':
          if (typeof f.to === 'number' && f.to > this.#lastSeq) this.#lastSeq = f.to;
          break;
      }
      this.onmessage?.({ data: text });
      if (f.type === 'reconnect') {
        // The server ended the link after it (a drain): the client comes back after the hint.
        this.#closeCode = 1012;
        return false;
      }
    }
    return this.readyState !== CLOSED && this.#token !== null;
  }

  #closed(): void {
    if (this.readyState === CLOSED) return;
    this.#disarm();
    if (this.#closeTimer !== undefined) this.#timers.clearTimeout(this.#closeTimer);
    this.#closeTimer = undefined;
    this.#abort.abort();
    this.readyState = CLOSED;
    this.#poster.clear();
    this.onclose?.({ code: this.#closeCode, reason: this.#closeReason });
  }
}
