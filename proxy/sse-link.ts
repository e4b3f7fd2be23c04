// A ClientLink over a Server-Sent Events response (docs/usage.md, "HTTP fallback (SSE)"). The stream carries only what
// the server sends; what the client sends comes by POST (proxy/sse-gateway.ts) and enters the
// session as frames, as a WebSocket's would. Its write buffer is its bufferedAmount, so the
// outbox holds messages back from a reader that does not keep up, as on a WebSocket.
import type { ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { CloseCode } from './errors.js';
import type { ServerFrame } from './frame.js';
import type { ClientLink, LinkListener, Wire } from './link.js';
import type { Push } from './push.js';
import type { SentFrame } from './sse-send.js';
import { SSE_HEARTBEAT, sseClose, sseFrame, sseWire } from './sse-wire.js';

/** What a POST gets for one frame: the answer the session gave it, or that it was taken. */
export type SendAnswer = ServerFrame | { readonly type: 'accepted' };

const EMPTY = Buffer.alloc(0);
/** The code a link reports when the stream ended without the session closing it (client gone, network lost). */
const LOST = 1006;

export class SseLink implements ClientLink, Wire {
  readonly transport = 'sse';
  /** The link spells its frames itself: the answers a POST waits for go in its reply, not on the stream. */
  readonly wire: Wire = this;
  readonly #res: ServerResponse;
  readonly #socket: Socket;
  #listener: LinkListener | null = null;
  /** Set once this side ended the stream: the code the session closed with. */
  #ended: { code: number; reason: string } | null = null;
  #closed = false;
  /** While a POST's frame is read: the answers the session gives at once (pong, error). */
  #caught: ServerFrame[] | null = null;
  /** POSTs waiting for the ack or nack of a client id, first come first served. */
  readonly #waiting = new Map<string, Array<(f: ServerFrame) => void>>();
  /** While the session's inbound queue is full: POSTs wait here before their frames go in. */
  #paused: Array<() => void> | null = null;

  /** `res` has its headers written; the stream is this link's from here. */
  constructor(res: ServerResponse, socket: Socket) {
    this.#res = res;
    this.#socket = socket;
    res.on('close', () => {
      this.#closed = true;
      const ended = this.#ended ?? { code: LOST, reason: '' };
      this.#listener?.onClosed(this, ended.code, ended.reason);
      // Whatever was not answered may still reach the app: the client sends it again, with its id, after it resumed.
      for (const [id, waiters] of this.#waiting) for (const w of waiters) w({ type: 'nack', id, error: 'closed', retryable: true });
      this.#waiting.clear();
      this.#wake();
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
    if (this.#caught !== null && (f.type === 'pong' || f.type === 'error')) {
      this.#caught.push(f);
      return '';
    }
    if (f.type === 'ack' || f.type === 'nack') {
      const waiters = this.#waiting.get(f.id);
      const waiter = waiters?.shift();
      if (waiter) {
        if (waiters!.length === 0) this.#waiting.delete(f.id);
        waiter(f);
        return '';
      }
    }
    return sseFrame(f);
  }

  /**
   * Frames a POST carries, into the session in order, as a WebSocket's frames would go; resolves
   * with the answer to each: its ack or nack when it has an id, a pong or an error when the
   * session answers at once, else `accepted`.
   */
  async deliver(frames: readonly SentFrame[]): Promise<SendAnswer[]> {
    while (this.#paused !== null && !this.ended) await new Promise<void>((wake) => this.#paused!.push(wake));
    const answers: Array<Promise<SendAnswer> | SendAnswer> = [];
    for (const f of frames) {
      if (this.ended || this.#listener === null) {
        answers.push(f.id === undefined ? { type: 'error', error: 'closed', message: 'the stream closed' } : { type: 'nack', id: f.id, error: 'closed', retryable: true });
        continue;
      }
      if (f.close !== undefined) {
        // The client ends its session: the frames before it are answered first, then the stream
        // closes as a WebSocket client's close 1000 would, so the session ends now (the disconnect
        // webhook says 1000 and this reason), no grace.
        const before = await Promise.all(answers);
        answers.length = 0;
        answers.push(...before);
        if (this.ended) {
          answers.push({ type: 'error', error: 'closed', message: 'the stream closed' });
          continue;
        }
        this.#end(sseClose(CloseCode.normal, f.close), CloseCode.normal, f.close);
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
        this.#listener.onFrame(Buffer.from(f.text), false);
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
    this.#paused ??= [];
  }

  resume(): void {
    this.#wake();
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
