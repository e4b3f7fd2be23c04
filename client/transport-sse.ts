// Reliable mode over Server-Sent Events (docs/usage.md, "HTTP fallback (SSE)"), shaped as the
// client's WebSocketLike so the client cannot tell it from a WebSocket: the stream is a GET read
// with fetch and a streaming body reader (headers and the token can be sent, unlike with an
// EventSource), each event becomes the reliable-mode frame a WebSocket would carry, and what the
// client sends goes by POST on the same path (client/transport-post.ts). The answers in the
// replies (ack, nack, pong, error) come back as frames too.

import { SseParser, type SseEvent } from './sse.js';
import { CLOSED, HttpSocket, OPEN, SILENT_HEARTBEATS, type Timers } from './transport-http.js';
import type { Fetch } from './transport-post.js';

export type { Fetch } from './transport-post.js';

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

export class SseSocket extends HttpSocket {
  #reader: ReadableStreamDefaultReader<Uint8Array> | null = null;
  #silenceMs = 0; // 0 until the welcome says how often the server writes
  #heard = false; // bytes arrived since the silence timer was armed
  #silenceTimer: unknown = undefined;

  constructor(url: string, fetchImpl: Fetch, headers: { readonly [name: string]: string } = {}, timers: Timers = globalThis) {
    // The server ends the stream once it has taken the close frame.
    super(url, fetchImpl, headers, timers, { what: 'the stream', postUrl: (u) => u, endsWithPost: true });
    void this.#read();
  }

  /**
   * Cancels the reader too: an abort alone leaves a read pending forever when the body had
   * already ended with chunks still queued (Node 20's fetch).
   */
  protected override stop(): void {
    this.#reader?.cancel().catch(() => {});
    super.stop();
  }

  async #read(): Promise<void> {
    let res: Response;
    try {
      res = await this.fetchImpl(this.url, {
        method: 'GET',
        headers: { ...this.headers, accept: 'text/event-stream' },
        signal: this.abort.signal,
        credentials: 'include',
        cache: 'no-store',
      });
    } catch {
      this.unanswered();
      return this.closed();
    }
    try {
      if (res.status !== 200 || !/^text\/event-stream/i.test(res.headers.get('content-type') ?? '') || res.body === null) {
        if (res.status !== 200) this.refused(res);
        else void res.body?.cancel().catch(() => {});
        return this.closed();
      }
      if (this.readyState === CLOSED || this.abort.signal.aborted) return this.closed();
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
    this.closed();
  }

  #event(e: SseEvent): void {
    if (this.readyState !== OPEN) return;
    if (e.event === 'close') {
      // The session ended: its code and reason are what the client decides on.
      try {
        const { code, reason } = JSON.parse(e.data) as { code?: unknown; reason?: unknown };
        if (typeof code === 'number') this.closeCode = code;
        if (typeof reason === 'string') this.closeReason = reason;
      } catch { /* a close without details is still a close */ }
      this.stop();
      return;
    }
    const frame = eventFrame(e);
    if (e.event === 'welcome' && frame !== undefined) {
      const { token, heartbeatMs } = JSON.parse(frame) as { token?: unknown; heartbeatMs?: unknown };
      if (typeof token === 'string') this.token = token;
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
    this.#silenceTimer = this.timers.setTimeout(() => {
      this.#silenceTimer = undefined;
      if (this.readyState !== OPEN) return;
      if (this.#heard) return this.#armSilence();
      this.closeCode = 1006;
      this.closeReason = 'the stream went silent';
      this.stop();
    }, this.#silenceMs);
  }

  protected release(): void {
    if (this.#silenceTimer !== undefined) this.timers.clearTimeout(this.#silenceTimer);
    this.#silenceTimer = undefined;
  }
}
