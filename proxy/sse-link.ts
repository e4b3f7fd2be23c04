// A ClientLink over a Server-Sent Events response (docs/usage.md, "HTTP fallback (SSE)"). The stream carries only what
// the server sends; what the client sends comes by POST (proxy/sse-gateway.ts) and enters the
// session as frames, as a WebSocket's would. Its write buffer is its bufferedAmount, so the
// outbox holds messages back from a reader that does not keep up, as on a WebSocket.
import type { ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { CloseCode } from './errors.js';
import type { ServerFrame } from './frame.js';
import type { ClientLink, LinkListener, Wire } from './link.js';
import { LOST, PostedFrames, type PostTarget, type SendAnswer } from './posted-frames.js';
import type { Push } from './push.js';
import type { SentFrame } from './sse-send.js';
import { SSE_HEARTBEAT, sseClose, sseFrame, sseWire } from './sse-wire.js';

export type { SendAnswer } from './posted-frames.js';

const EMPTY = Buffer.alloc(0);

export class SseLink implements ClientLink, Wire, PostTarget {
  readonly transport = 'sse';
  /** The link spells its frames itself: the answers a POST waits for go in its reply, not on the stream. */
  readonly wire: Wire = this;
  readonly #res: ServerResponse;
  readonly #socket: Socket;
  #listener: LinkListener | null = null;
  /** Set once this side ended the stream: the code the session closed with. */
  #ended: { code: number; reason: string } | null = null;
  #closed = false;
  readonly #posted = new PostedFrames({
    ended: () => this.ended,
    listener: () => this.#listener,
    closeByClient: (reason) => this.#end(sseClose(CloseCode.normal, reason), CloseCode.normal, reason),
  });

  /** `res` has its headers written; the stream is this link's from here. */
  constructor(res: ServerResponse, socket: Socket) {
    this.#res = res;
    this.#socket = socket;
    res.on('close', () => {
      this.#closed = true;
      const ended = this.#ended ?? { code: LOST, reason: '' };
      this.#listener?.onClosed(this, ended.code, ended.reason);
      this.#posted.linkGone();
    });
  }

  /** True once the stream is gone or ending: a POST then has nothing to speak to. */
  get ended(): boolean {
    return this.#closed || this.#ended !== null;
  }

  message(seq: number, push: Push): string {
    return sseWire.message(seq, push);
  }

  frame(f: ServerFrame): string {
    return this.#posted.takes(f) ? '' : sseFrame(f);
  }

  /** Frames a POST carries, into the session in order (proxy/posted-frames.ts). */
  deliver(frames: readonly SentFrame[]): Promise<SendAnswer[]> {
    return this.#posted.deliver(frames);
  }

  get bufferedAmount(): number {
    return this.#res.writableLength;
  }

  send(frame: string | Buffer): void {
    // An empty frame is one a POST answers instead.
    if (this.#ended === null && frame.length > 0) this.#res.write(frame);
  }

  cork(): void {
    this.#res.cork();
  }

  uncork(): void {
    this.#res.uncork();
  }

  whenDrained(fn: () => void): void {
    const res = this.#res;
    if (res.writableNeedDrain) res.once('drain', fn);
    else if (this.#socket.writableNeedDrain) this.#socket.once('drain', fn);
    else this.#socket.write(EMPTY, () => fn());
  }

  /** The session's inbound queue is full: POSTs wait (as a WebSocket's frames wait in TCP). */
  pause(): void {
    this.#posted.pause();
  }

  resume(): void {
    this.#posted.resume();
  }

  ping(): void {
    if (this.#ended !== null) return;
    // No pong on a stream: the comment having gone out to the kernel is the sign of life.
    this.#res.write(SSE_HEARTBEAT, (err) => { if (!err) this.#listener?.onPong(); });
  }

  askReconnect(afterMs: number): void {
    // A plain EventSource does not act on the event: the stream ends, and `retry:` spreads the comebacks.
    this.#end(sseFrame({ type: 'reconnect', afterMs }), CloseCode.serviceRestart, 'reconnect asked');
  }

  close(code: number, reason: string): void {
    this.#end(sseClose(code, reason), code, reason);
  }

  terminate(): void {
    this.#ended ??= { code: LOST, reason: '' };
    this.#res.destroy();
  }

  listen(listener: LinkListener | null): void {
    this.#listener = listener;
  }

  #end(last: string, code: number, reason: string): void {
    if (this.#ended !== null) return;
    this.#ended = { code, reason };
    this.#res.end(last);
  }
}
