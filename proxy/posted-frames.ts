// What the client of an HTTP link (SSE, long-polling) sends by POST (proxy/sse-gateway.ts): its
// frames go into the session in order, as a WebSocket's would, and the answers the session gives
// them (the ack or nack of an id, a pong, an error) go back in the POST's reply, not to the link.
// Both HTTP links hold one of these, so sending is one code path whatever carries the rest.
import type { ServerFrame } from './frame.js';
import type { LinkListener } from './link.js';
import type { SentFrame } from './sse-send.js';

/** The header that names a session on what its client sends by POST, and on a poll: the resume token from its welcome. */
export const TOKEN_HEADER = 'x-switchboard-token';

/** What a POST gets for one frame: the answer the session gave it, or that it was taken. */
export type SendAnswer = ServerFrame | { readonly type: 'accepted' };

/** A link a POST can speak to (proxy/sse-gateway.ts finds it by session). */
export interface PostTarget {
  /** True once the link is gone or ending: a POST then has nothing to speak to. */
  readonly ended: boolean;
  deliver(frames: readonly SentFrame[]): Promise<SendAnswer[]>;
}

/** What the frames need of the link that holds them. */
export interface PostedHost {
  ended(): boolean;
  listener(): LinkListener | null;
  /** The client ends its session (a `close` frame): the link ends as after a WebSocket client's close 1000. */
  closeByClient(reason: string): void;
}

export class PostedFrames {
  readonly #host: PostedHost;
  /** While a POST's frame is read: the answers the session gives at once (pong, error). */
  #caught: ServerFrame[] | null = null;
  /** POSTs waiting for the ack or nack of a client id, first come first served. */
  readonly #waiting = new Map<string, Array<(f: ServerFrame) => void>>();
  /** While the session's inbound queue is full: POSTs wait here before their frames go in. */
  #paused: Array<() => void> | null = null;

  constructor(host: PostedHost) {
    this.#host = host;
  }

  /** True when `f` answers a POST (it goes in that reply, not to the link). */
  takes(f: ServerFrame): boolean {
    if (this.#caught !== null && (f.type === 'pong' || f.type === 'error')) {
      this.#caught.push(f);
      return true;
    }
    if (f.type !== 'ack' && f.type !== 'nack') return false;
    const waiters = this.#waiting.get(f.id);
    const waiter = waiters?.shift();
    if (!waiter) return false;
    if (waiters!.length === 0) this.#waiting.delete(f.id);
    waiter(f);
    return true;
  }

  /**
   * Frames a POST carries, into the session in order, as a WebSocket's frames would go; resolves
   * with the answer to each: its ack or nack when it has an id, a pong or an error when the
   * session answers at once, else `accepted`.
   */
  async deliver(frames: readonly SentFrame[]): Promise<SendAnswer[]> {
    const host = this.#host;
    while (this.#paused !== null && !host.ended()) await new Promise<void>((wake) => this.#paused!.push(wake));
    const answers: Array<Promise<SendAnswer> | SendAnswer> = [];
    for (const f of frames) {
      const listener = host.listener();
      if (host.ended() || listener === null) {
        answers.push(f.id === undefined ? { type: 'error', error: 'closed', message: 'the link closed' } : { type: 'nack', id: f.id, error: 'closed', retryable: true });
        continue;
      }
      if (f.close !== undefined) {
        // The client ends its session: the frames before it are answered first, then the link
        // closes as a WebSocket client's close 1000 would, so the session ends now (the disconnect
        // webhook says 1000 and this reason), no grace.
        const before = await Promise.all(answers);
        answers.length = 0;
        answers.push(...before);
        if (host.ended()) {
          answers.push({ type: 'error', error: 'closed', message: 'the link closed' });
          continue;
        }
        host.closeByClient(f.close);
        answers.push({ type: 'accepted' });
        continue;
      }
      let waited: Promise<ServerFrame> | null = null;
      let waiter: ((f: ServerFrame) => void) | null = null;
      if (f.id !== undefined) {
        waited = new Promise((resolve) => { waiter = resolve; });
        const list = this.#waiting.get(f.id);
        if (list) list.push(waiter!);
        else this.#waiting.set(f.id, [waiter!]);
      }
      const caught: ServerFrame[] = [];
      this.#caught = caught;
      try {
        listener.onFrame(Buffer.from(f.text), false);
      } finally {
        this.#caught = null;
      }
      if (caught.length > 0) {
        // Answered at once (a malformed frame, a ping): nothing else will come for its id.
        if (waiter !== null) this.#unwait(f.id!, waiter);
        answers.push(caught[0]);
      } else {
        answers.push(waited ?? { type: 'accepted' });
      }
    }
    return Promise.all(answers);
  }

  /** The session's inbound queue is full: POSTs wait (as a WebSocket's frames wait in TCP). */
  pause(): void {
    this.#paused ??= [];
  }

  resume(): void {
    this.#wake();
  }

  /**
   * The link is gone: whatever was not answered may still reach the app, so it is nacked
   * `closed`, retryable: the client sends it again, with its id, after it resumed.
   */
  linkGone(): void {
    for (const [id, waiters] of this.#waiting) for (const w of waiters) w({ type: 'nack', id, error: 'closed', retryable: true });
    this.#waiting.clear();
    this.#wake();
  }

  #unwait(id: string, waiter: (f: ServerFrame) => void): void {
    const list = this.#waiting.get(id);
    if (!list) return;
    const at = list.indexOf(waiter);
    if (at >= 0) list.splice(at, 1);
    if (list.length === 0) this.#waiting.delete(id);
  }

  #wake(): void {
    const paused = this.#paused;
    this.#paused = null;
    for (const wake of paused ?? []) wake();
  }
}

/** The code a link reports when it ended without the session closing it (client gone, network lost). */
export const LOST = 1006;
