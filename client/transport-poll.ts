// Reliable mode over long-polling (docs/usage.md, "HTTP fallback (long-polling)"), shaped as the
// client's WebSocketLike so the client cannot tell it from a WebSocket: a GET with
// `?transport=long-poll` opens (or resumes) the session and is answered with the welcome, then each
// poll names the session with its token and its position with `lastSeq`, and is answered with a
// JSON array of the frames a WebSocket would carry, handed to the client one by one. What the
// client sends goes by POST, as on SSE (client/transport-post.ts).

import { CLOSED, CONNECTING, HttpSocket, OPEN, SILENT_HEARTBEATS, type Timers } from './transport-http.js';
import { TOKEN_HEADER, type Fetch } from './transport-post.js';

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

export class PollSocket extends HttpSocket {
  /** The highest seq the answers carried (messages, gaps): the next poll's position. */
  #lastSeq = 0;
  /** How long one poll may stay unanswered before the link counts as dead; 0 until the welcome. */
  #pollBoundMs = 0;
  #pollTimer: unknown = undefined;

  constructor(url: string, fetchImpl: Fetch, headers: { readonly [name: string]: string } = {}, timers: Timers = globalThis) {
    // The held poll takes the close frame's answer (close 1000): the POST's answer ends nothing.
    super(url, fetchImpl, headers, timers, { what: 'the long-poll', postUrl: (u) => u.split('?')[0], endsWithPost: false });
    void this.#run();
  }

  async #run(): Promise<void> {
    let res: Response;
    try {
      res = await this.#get(openUrl(this.url), {});
    } catch {
      this.unanswered();
      return this.closed();
    }
    try {
      if (res.status !== 200) {
        this.refused(res);
        return this.closed();
      }
      for (;;) {
        const frames = answerFrames(await res.text());
        this.#disarm();
        if (frames === null) {
          this.closeReason = 'the server answered a poll with something that is not frames';
          break;
        }
        if (!this.#take(frames)) break;
        res = await this.#get(pollUrl(this.url, this.#lastSeq), { [TOKEN_HEADER]: this.token! });
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
    this.closed();
  }

  #get(url: string, headers: { [name: string]: string }): Promise<Response> {
    if (this.#pollBoundMs > 0) {
      // A poll the server holds is answered within its wait; one that stays out far longer went
      // through a proxy that holds a dead connection open.
      this.#pollTimer = this.timers.setTimeout(() => {
        this.#pollTimer = undefined;
        this.closeReason = 'a poll went unanswered';
        this.stop();
      }, this.#pollBoundMs);
    }
    return this.fetchImpl(url, {
      method: 'GET',
      headers: { ...this.headers, ...headers, accept: 'application/json' },
      signal: this.abort.signal,
      credentials: 'include',
      cache: 'no-store',
    });
  }

  #disarm(): void {
    if (this.#pollTimer !== undefined) this.timers.clearTimeout(this.#pollTimer);
    this.#pollTimer = undefined;
  }

  /** An answer's frames, to the client in order; false once the link is over (closed, asked to reconnect). */
  #take(frames: ReadonlyArray<{ readonly frame: AnsweredFrame; readonly text: string }>): boolean {
    for (const { frame: f, text } of frames) {
      if (this.readyState === CLOSED) return false;
      switch (f.type) {
        case 'close':
          // The session ended: its code and reason are what the client decides on.
          if (typeof f.code === 'number') this.closeCode = f.code;
          if (typeof f.reason === 'string') this.closeReason = f.reason;
          return false;
        case 'welcome':
          if (typeof f.token === 'string') this.token = f.token;
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
        this.closeCode = 1012;
        return false;
      }
    }
    return this.readyState !== CLOSED && this.token !== null;
  }

  protected release(): void {
    this.#disarm();
  }
}
