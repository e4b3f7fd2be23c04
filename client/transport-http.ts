// What the two HTTP transports (SSE, long-polling) share, shaped as the client's WebSocketLike:
// the states, sending through the poster (client/transport-post.ts), a normal close that first
// POSTs a `close` frame, a refusal's status for the client to decide on, and the close reported
// once. Each transport adds how it reads what the server sends.

import type { HandshakeResponse, WebSocketLike } from './client.js';
import { FramePoster, UNREACHABLE, type Fetch } from './transport-post.js';

export const CONNECTING = 0;
export const OPEN = 1;
export const CLOSING = 2;
export const CLOSED = 3;

/**
 * How long `close()` waits for the server to take its `close` frame before it drops the transport
 * anyway (the session then waits its grace, as after a lost connection).
 */
export const CLOSE_WAIT_MS = 5000;

/**
 * A link silent for this many heartbeat intervals (the welcome's heartbeatMs), plus a second, is
 * taken for dead: a proxy can hold a connection open that carries nothing any more.
 */
export const SILENT_HEARTBEATS = 3;

export type Listener = (request: unknown, response: HandshakeResponse) => void;

/** The timers the client was given. */
export interface Timers {
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

/** `ws:` → `http:`, `wss:` → `https:`; any other URL as it is. */
export function httpUrl(url: string): string {
  return url.replace(/^ws(s?):/i, 'http$1:');
}

export interface HttpSocketOptions {
  /** What the transport is called in errors ("the stream", "the long-poll"). */
  readonly what: string;
  /** Where frames are POSTed, from the session's URL. */
  readonly postUrl: (url: string) => string;
  /**
   * The close frame's answer ends the transport (SSE: the server then ends the stream); false when
   * the transport's own reading takes the close (a held poll is answered with it).
   */
  readonly endsWithPost: boolean;
}

export abstract class HttpSocket implements WebSocketLike {
  readyState = CONNECTING;
  binaryType = 'arraybuffer';
  onopen: ((event: unknown) => void) | null = null;
  onmessage: ((event: { readonly data: unknown }) => void) | null = null;
  onclose: ((event: { readonly code: number; readonly reason: string }) => void) | null = null;
  onerror: ((event: unknown) => void) | null = null;

  protected readonly url: string;
  protected readonly headers: { [name: string]: string };
  protected readonly fetchImpl: Fetch;
  protected readonly timers: Timers;
  protected readonly abort = new AbortController();
  protected token: string | null = null;
  protected closeCode = 1006;
  protected closeReason = '';
  readonly #poster: FramePoster;
  readonly #what: string;
  #refusalListener: Listener | null = null;
  #closeTimer: unknown = undefined;

  constructor(url: string, fetchImpl: Fetch, headers: { readonly [name: string]: string }, timers: Timers, options: HttpSocketOptions) {
    this.url = httpUrl(url);
    this.fetchImpl = fetchImpl;
    this.headers = { ...headers };
    this.timers = timers;
    this.#what = options.what;
    this.#poster = new FramePoster(options.postUrl(this.url), fetchImpl, this.headers, {
      state: () => (this.readyState === OPEN ? 'open' : this.readyState === CLOSING ? 'closing' : 'gone'),
      token: () => this.token,
      answer: (frame) => this.onmessage?.({ data: frame }),
      closed: () => { if (options.endsWithPost) this.stop(); },
      stale: () => this.stop(),
    });
  }

  on(event: 'unexpected-response', listener: Listener): this {
    if (event === 'unexpected-response') this.#refusalListener = listener;
    return this;
  }

  send(text: string): void {
    if (this.readyState !== OPEN) throw new Error(`${this.#what} is not open`);
    this.#poster.send(text);
  }

  /**
   * Ends the transport. A normal close (1000) of an open one first POSTs a `close` frame, so the
   * session ends now rather than waiting its grace; the transport is dropped once the server has
   * taken it (or after CLOSE_WAIT_MS).
   */
  close(code = 1000, reason = ''): void {
    if (this.readyState === CLOSED || this.readyState === CLOSING) return;
    this.closeCode = code;
    this.closeReason = reason;
    if (this.readyState !== OPEN || this.token === null || code !== 1000) return this.stop();
    // Behind what was sent before it, in the same queue: the session takes those first, as a
    // WebSocket's frames come before its close frame.
    this.readyState = CLOSING;
    this.#closeTimer = this.timers.setTimeout(() => this.stop(), CLOSE_WAIT_MS);
    this.#poster.send(JSON.stringify({ type: 'close', reason }));
  }

  /** Aborts what is in flight; the close is reported on a microtask, after the caller's own bookkeeping, as a WebSocket reports it later. */
  protected stop(): void {
    this.abort.abort();
    queueMicrotask(() => this.closed());
  }

  /** The first request got no answer at all (offline, unreachable) unless it was our own abort: the network's, not a block. */
  protected unanswered(): void {
    if (!this.abort.signal.aborted) this.closeReason = UNREACHABLE;
  }

  /** A refusal (the app's 401, a limit's 429 or 503): the status the client decides on; the body is dropped. */
  protected refused(res: Response): void {
    this.#refusalListener?.(null, { statusCode: res.status, headers: { 'retry-after': res.headers.get('retry-after') ?? undefined } });
    void res.body?.cancel().catch(() => {});
  }

  /** The transport's own timers, stopped as it closes. */
  protected abstract release(): void;

  /** The transport is gone: its timers stop, and the close is reported, once. */
  protected closed(): void {
    if (this.readyState === CLOSED) return;
    this.release();
    if (this.#closeTimer !== undefined) this.timers.clearTimeout(this.#closeTimer);
    this.#closeTimer = undefined;
    this.abort.abort();
    this.readyState = CLOSED;
    this.#poster.clear();
    this.onclose?.({ code: this.closeCode, reason: this.closeReason });
  }
}
