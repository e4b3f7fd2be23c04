// A ClientLink over long-polling (docs/usage.md, "HTTP fallback (long-polling)"). No connection
// lasts: the session writes its frames here as to a socket, and they wait until the client's next
// poll takes them, as one JSON array of the frames a WebSocket would carry. What no poll has taken
// yet is the link's bufferedAmount, so the outbox holds messages back from a client that does not
// poll as from a WebSocket that does not read, and its bounds and overflow policy hold. A poll with
// nothing to take is held until something comes or `waitMs` passes (then an empty array). What the
// client sends comes by POST (proxy/posted-frames.ts), as on SSE.
import type { ServerResponse } from 'node:http';
import type { Clock } from './clock.js';
import { CloseCode } from './errors.js';
import { encodeServerFrame, type ServerFrame } from './frame.js';
import type { ClientLink, LinkListener, Wire } from './link.js';
import { LOST, PostedFrames, type PostTarget, type SendAnswer } from './posted-frames.js';
import type { Push } from './push.js';
import type { SentFrame } from './sse-send.js';

/** Headers of every poll's answer: JSON that no cache or proxy may keep. */
export const POLL_HEADERS: Readonly<Record<string, string>> = Object.freeze({ 'content-type': 'application/json', 'cache-control': 'no-store' });

/** The last frame of a link the session closed: its code and reason, as a WebSocket close frame says them. */
export function pollClose(code: number, reason: string): string {
  return JSON.stringify({ type: 'close', code, reason });
}

export class PollLink implements ClientLink, Wire, PostTarget {
  readonly transport = 'long-poll';
  /** The link spells its frames itself: the answers a POST waits for go in its reply, not in a poll. */
  readonly wire: Wire = this;
  readonly #clock: Clock;
  readonly #waitMs: number;
  #listener: LinkListener | null = null;
  /** Frames written and not yet taken by a poll, with their size. */
  #frames: string[] = [];
  #bytes = 0;
  /** The highest message seq written here, and the highest a poll took. */
  #written = 0;
  #taken = 0;
  /** The highest seq a poll acked. */
  #acked = 0;
  /** The poll held until frames come, and its wait. */
  #held: ServerResponse | null = null;
  #waitTimer: unknown = undefined;
  #answerQueued = false;
  #corked = 0;
  /** Set once the session ended the link: its code; the link is gone once a poll took the last frame. */
  #ended: { code: number; reason: string } | null = null;
  #closed = false;
  #drained: Array<() => void> = [];
  readonly #posted = new PostedFrames({
    ended: () => this.ended,
    listener: () => this.#listener,
    closeByClient: (reason) => {
      this.#end(pollClose(CloseCode.normal, reason), CloseCode.normal, reason);
      // The client ends it now: with no poll held (a page being closed aborted it) none may come.
      if (this.#held === null) this.#finish();
    },
  });

  constructor(clock: Clock, waitMs: number) {
    this.#clock = clock;
    this.#waitMs = waitMs;
  }

  /** True once the link is gone or ending: a POST or a poll then has nothing to speak to. */
  get ended(): boolean {
    return this.#closed || this.#ended !== null;
  }

  /** True once the link is gone for good (its last frame taken, or cut): a poll then resumes on a new one. */
  get gone(): boolean {
    return this.#closed;
  }

  /** The highest message seq a poll took: a later poll from below it lost that answer. */
  get taken(): number {
    return this.#taken;
  }

  /**
   * A poll: `lastSeq` acks everything up to it (as a WebSocket client's ack frame), then the
   * answer is what waits, at once, or what comes within the wait. A poll that comes while another
   * is held answers that one (empty): the client gave it up, or lost it.
   */
  poll(res: ServerResponse, lastSeq: number): void {
    const listener = this.#listener;
    if (lastSeq > this.#acked) {
      this.#acked = lastSeq;
      listener?.onFrame(Buffer.from(`{"type":"ack","seq":${lastSeq}}`), false);
    }
    listener?.onPong();
    if (this.#closed) return void res.writeHead(200, POLL_HEADERS).end('[]');
    const previous = this.#held;
    if (previous !== null) this.#release(previous, '[]');
    this.#held = res;
    res.once('close', () => {
      if (this.#held !== res) return;
      this.#held = null;
      this.#cancelWait();
    });
    if (this.#frames.length > 0) return this.#queueAnswer();
    this.#waitTimer = this.#clock.setTimeout(() => {
      this.#waitTimer = undefined;
      const held = this.#held;
      if (held !== null && this.#frames.length === 0) this.#release(held, '[]');
    }, this.#waitMs);
  }

  message(seq: number, push: Push): string {
    this.#written = seq;
    return push.reliableFrame(seq);
  }

  frame(f: ServerFrame): string {
    return this.#posted.takes(f) ? '' : encodeServerFrame(f);
  }

  /** Frames a POST carries, into the session in order (proxy/posted-frames.ts). */
  deliver(frames: readonly SentFrame[]): Promise<SendAnswer[]> {
    return this.#posted.deliver(frames);
  }

  get bufferedAmount(): number {
    return this.#bytes;
  }

  send(frame: string | Buffer): void {
    // An empty frame is one a POST answers instead; nothing follows the last frame.
    if (this.#ended !== null || this.#closed || frame.length === 0) return;
    this.#push(typeof frame === 'string' ? frame : frame.toString('utf8'));
  }

  cork(): void {
    this.#corked++;
  }

  uncork(): void {
    if (this.#corked > 0 && --this.#corked === 0) this.#queueAnswer();
  }

  whenDrained(fn: () => void): void {
    if (this.#bytes === 0 || this.#closed) queueMicrotask(fn);
    else this.#drained.push(fn);
  }

  pause(): void {
    this.#posted.pause();
  }

  resume(): void {
    this.#posted.resume();
  }

  ping(): void {
    // No pong without a request: a poll held open is the sign of life. Without one, the heartbeat's
    // timeout is the bound on the gap between polls; past it the link is lost and the session detaches.
    if (this.#held !== null && !this.#closed) this.#listener?.onPong();
  }

  askReconnect(afterMs: number): void {
    this.#end(encodeServerFrame({ type: 'reconnect', afterMs }), CloseCode.serviceRestart, 'reconnect asked');
  }

  close(code: number, reason: string): void {
    this.#end(pollClose(code, reason), code, reason);
  }

  terminate(): void {
    this.#ended ??= { code: LOST, reason: '' };
    const held = this.#held;
    this.#held = null;
    held?.destroy();
    this.#finish();
  }

  listen(listener: LinkListener | null): void {
    this.#listener = listener;
  }

  #push(frame: string): void {
    this.#frames.push(frame);
    this.#bytes += frame.length;
    this.#queueAnswer();
  }

  /** What is written in one run (a flush, a gap and its message) leaves in one answer. */
  #queueAnswer(): void {
    if (this.#held === null || this.#answerQueued || this.#corked > 0) return;
    this.#answerQueued = true;
    queueMicrotask(() => {
      this.#answerQueued = false;
      this.#answer();
    });
  }

  #answer(): void {
    const held = this.#held;
    if (held === null || this.#frames.length === 0 || this.#corked > 0) return;
    const body = `[${this.#frames.join(',')}]`;
    this.#frames = [];
    this.#bytes = 0;
    this.#taken = this.#written;
    this.#release(held, body);
    if (this.#ended !== null) return this.#finish();
    const drained = this.#drained;
    this.#drained = [];
    for (const fn of drained) fn();
  }

  #release(res: ServerResponse, body: string): void {
    if (this.#held === res) {
      this.#held = null;
      this.#cancelWait();
    }
    if (!res.headersSent && !res.destroyed) res.writeHead(200, POLL_HEADERS).end(body);
  }

  #cancelWait(): void {
    if (this.#waitTimer !== undefined) this.#clock.clearTimeout(this.#waitTimer);
    this.#waitTimer = undefined;
  }

  #end(last: string, code: number, reason: string): void {
    if (this.#ended !== null || this.#closed) return;
    this.#push(last);
    this.#ended = { code, reason };
    // No answer reaches this link any more (the session ended, moved or took another link): POSTs
    // waiting for one are nacked `closed` now, not when a poll comes for the last frame, if ever.
    this.#posted.linkGone();
  }

  /** The link is gone: the session hears why, POSTs waiting for answers are nacked. */
  #finish(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#cancelWait();
    const ended = this.#ended ?? { code: LOST, reason: '' };
    this.#frames = [];
    this.#bytes = 0;
    this.#listener?.onClosed(this, ended.code, ended.reason);
    this.#posted.linkGone();
    const drained = this.#drained;
    this.#drained = [];
    for (const fn of drained) fn();
  }
}
