// Reliable mode over Server-Sent Events (docs/usage.md, "HTTP fallback (SSE)"), shaped as the
// client's WebSocketLike so the client cannot tell it from a WebSocket: the stream is a GET read
// with fetch and a streaming body reader (headers and the token can be sent, unlike with an
// EventSource), each event becomes the reliable-mode frame a WebSocket would carry, and what the
// client sends goes by POST on the same path (client/transport-post.ts). The answers in the
// replies (ack, nack, pong, error) come back as frames too.

import { SseParser, type SseEvent } from './sse.js';
import type { HandshakeResponse, WebSocketLike } from './client.js';
import { FramePoster, UNREACHABLE, type Fetch } from './transport-post.js';

export type { Fetch } from './transport-post.js';

const CONNECTING = 0;
const OPEN = 1;
const CLOSING = 2;
const CLOSED = 3;

/**
 * How long `close()` waits for the server to take its `close` frame before it drops the stream
 * anyway (the session then waits its grace, as after a lost connection).
 */
export const CLOSE_WAIT_MS = 5000;

export type Listener = (request: unknown, response: HandshakeResponse) => void;

/** The timers the client was given. */
export interface Timers {
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

/**
 * A stream silent for this many heartbeat intervals (the welcome's heartbeatMs), plus a second, is
 * taken for dead: a proxy can hold a connection open that carries nothing any more.
 */
export const SILENT_HEARTBEATS = 3;

/** `ws:` → `http:`, `wss:` → `https:`; any other URL as it is. */
export function httpUrl(url: string): string {
  return url.replace(/^ws(s?):/i, 'http$1:');
}

/** A payload's text as the JSON of a message frame's `data`: JSON as it is, a text push as a string. */
function dataJson(text: string): string {
  try {
    JSON.parse(text);
    return text;
  } catch {
    return JSON.stringify(text);
  }
}

/** An event as the reliable-mode frame a WebSocket would carry; undefined for one that is not. */
export function eventFrame(e: SseEvent): string | undefined {
  if (e.event === 'message' || e.event === 'binary') {
    if (!/^[1-9]\d*$/.test(e.id)) return undefined;
    return e.event === 'binary'
      ? `{"type":"message","seq":${e.id},"binary":${JSON.stringify(e.data)}}`
      : `{"type":"message","seq":${e.id},"data":${dataJson(e.data)}}`;
  }
  let fields: unknown;
  try {
    fields = JSON.parse(e.data);
  } catch {
    return undefined;
  }
  if (typeof fields !== 'object' || fields === null || Array.isArray(fields)) return undefined;
  // A presence event is numbered like a message: its seq is the event's id.
  if (e.event === 'presence') return /^[1-9]\d*$/.test(e.id) ? JSON.stringify({ ...fields, type: 'presence', seq: Number(e.id) }) : undefined;
  return JSON.stringify({ ...fields, type: e.event });
}

export class SseSocket implements WebSocketLike {
  readyState = CONNECTING;
  binaryType = 'arraybuffer';
  onopen: ((event: unknown) => void) | null = null;
  onmessage: ((event: { readonly data: unknown }) => void) | null = null;
  onclose: ((event: { readonly code: number; readonly reason: string }) => void) | null = null;
  onerror: ((event: unknown) => void) | null = null;

  readonly #url: string;
  readonly #headers: { [name: string]: string };
  readonly #fetch: Fetch;
  readonly #abort = new AbortController();
  #refusalListener: Listener | null = null;
  #reader: ReadableStreamDefaultReader<Uint8Array> | null = null;
  #token: string | null = null;
  readonly #poster: FramePoster;
  #closeCode = 1006;
  #closeReason = '';
  readonly #timers: Timers;
  #silenceMs = 0; // 0 until the welcome says how often the server writes
  #heard = false; // bytes arrived since the silence timer was armed
  #silenceTimer: unknown = undefined;
  #closeTimer: unknown = undefined;

  constructor(url: string, fetchImpl: Fetch, headers: { readonly [name: string]: string } = {}, timers: Timers = globalThis) {
    this.#url = httpUrl(url);
    this.#fetch = fetchImpl;
    this.#headers = { ...headers };
    this.#timers = timers;
    this.#poster = new FramePoster(this.#url, fetchImpl, this.#headers, {
      state: () => (this.readyState === OPEN ? 'open' : this.readyState === CLOSING ? 'closing' : 'gone'),
      token: () => this.#token,
      answer: (frame) => this.onmessage?.({ data: frame }),
      closed: () => this.#stop(),
      stale: () => this.#stop(),
    });
    void this.#read();
  }

  on(event: 'unexpected-response', listener: Listener): this {
    if (event === 'unexpected-response') this.#refusalListener = listener;
    return this;
  }

  send(text: string): void {
    if (this.readyState !== OPEN) throw new Error('the stream is not open');
    this.#poster.send(text);
  }

  /**
   * Ends the stream. A normal close (1000) of an open stream first POSTs a `close` frame, so the
   * session ends now rather than waiting its grace; the server then ends the stream itself, and
   * the stream is dropped once the POST is answered (or after CLOSE_WAIT_MS).
   */
  close(code = 1000, reason = ''): void {
    if (this.readyState === CLOSED || this.readyState === CLOSING) return;
    this.#closeCode = code;
    this.#closeReason = reason;
    if (this.readyState !== OPEN || this.#token === null || code !== 1000) return this.#stop();
    // Behind what was sent before it, in the same queue: the session takes those first, as a
    // WebSocket's frames come before its close frame.
    this.readyState = CLOSING;
    this.#closeTimer = this.#timers.setTimeout(() => this.#stop(), CLOSE_WAIT_MS);
    this.#poster.send(JSON.stringify({ type: 'close', reason }));
  }

  /**
   * Aborts the request and cancels the reader too: an abort alone leaves a read pending forever
   * when the body had already ended with chunks still queued (Node 20's fetch). The close is
   * reported on a microtask, after the caller's own bookkeeping, as a WebSocket reports it later.
   */
  #stop(): void {
    this.#abort.abort();
    this.#reader?.cancel().catch(() => {});
    queueMicrotask(() => this.#closed());
  }

  async #read(): Promise<void> {
    let res: Response;
    try {
      res = await this.#fetch(this.#url, {
        method: 'GET',
        headers: { ...this.#headers, accept: 'text/event-stream' },
        signal: this.#abort.signal,
        credentials: 'include',
        cache: 'no-store',
      });
    } catch {
      // No answer at all (offline, unreachable), or our own abort.
      if (!this.#abort.signal.aborted) this.#closeReason = UNREACHABLE;
      return this.#closed();
    }
    try {
      if (res.status !== 200 || !/^text\/event-stream/i.test(res.headers.get('content-type') ?? '') || res.body === null) {
        // A refusal (the app's 401, a limit's 429 or 503): the status the client decides on.
        if (res.status !== 200) {
          this.#refusalListener?.(null, { statusCode: res.status, headers: { 'retry-after': res.headers.get('retry-after') ?? undefined } });
        }
        void res.body?.cancel().catch(() => {});
        return this.#closed();
      }
      if (this.readyState === CLOSED || this.#abort.signal.aborted) return this.#closed();
      // Open for reading, not yet for the client: the welcome, when it arrives, is what opens it
      // (a proxy that buffers the stream passes the headers and holds the events back).
      this.readyState = OPEN;
      const parser = new SseParser((e) => this.#event(e));
      const reader = (this.#reader = res.body.getReader());
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        this.#heard = true;
        parser.push(value);
      }
    } catch {
      // A network error or our own abort: the stream is gone either way.
    }
    this.#closed();
  }

  #event(e: SseEvent): void {
    if (this.readyState !== OPEN) return;
    if (e.event === 'close') {
      // The session ended: its code and reason are what the client decides on.
      try {
        const { code, reason } = JSON.parse(e.data) as { code?: unknown; reason?: unknown };
        if (typeof code === 'number') this.#closeCode = code;
        if (typeof reason === 'string') this.#closeReason = reason;
      } catch { /* a close without details is still a close */ }
      this.#stop();
      return;
    }
    const frame = eventFrame(e);
    if (e.event === 'welcome' && frame !== undefined) {
      const { token, heartbeatMs } = JSON.parse(frame) as { token?: unknown; heartbeatMs?: unknown };
      if (typeof token === 'string') this.#token = token;
      if (typeof heartbeatMs === 'number' && heartbeatMs > 0 && this.#silenceMs === 0) {
        this.#silenceMs = SILENT_HEARTBEATS * heartbeatMs + 1000;
        this.#armSilence();
      }
    }
    // Something that is not a frame goes through as it is: the client reports it as bad_frame.
    this.onmessage?.({ data: frame ?? e.data });
  }

  /** One timer per silence window, not one per chunk: a window with bytes in it re-arms. */
  #armSilence(): void {
    this.#heard = false;
    this.#silenceTimer = this.#timers.setTimeout(() => {
      this.#silenceTimer = undefined;
      if (this.readyState !== OPEN) return;
      if (this.#heard) return this.#armSilence();
      this.#closeCode = 1006;
      this.#closeReason = 'the stream went silent';
      this.#stop();
    }, this.#silenceMs);
  }

  #closed(): void {
    if (this.readyState === CLOSED) return;
    if (this.#silenceTimer !== undefined) this.#timers.clearTimeout(this.#silenceTimer);
    this.#silenceTimer = undefined;
    if (this.#closeTimer !== undefined) this.#timers.clearTimeout(this.#closeTimer);
    this.#closeTimer = undefined;
    this.readyState = CLOSED;
    this.#poster.clear();
    this.onclose?.({ code: this.#closeCode, reason: this.#closeReason });
  }
}
