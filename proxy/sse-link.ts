// A ClientLink over a Server-Sent Events response (SPEC §2.5). The stream carries only what
// the server sends; what the client sends comes by POST (proxy/sse-gateway.ts) and enters the
// session as frames, as a WebSocket's would. Its write buffer is its bufferedAmount, so the
// outbox holds messages back from a reader that does not keep up, as on a WebSocket.
import type { ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { CloseCode } from './errors.js';
import type { ClientLink, LinkListener } from './link.js';
import { SSE_HEARTBEAT, sseClose, sseFrame, sseWire } from './sse-wire.js';

const EMPTY = Buffer.alloc(0);
/** The code a link reports when the stream ended without the session closing it (client gone, network lost). */
const LOST = 1006;

export class SseLink implements ClientLink {
  readonly transport = 'sse';
  readonly wire = sseWire;
  readonly #res: ServerResponse;
  readonly #socket: Socket;
  #listener: LinkListener | null = null;
  /** Set once this side ended the stream: the code the session closed with. */
  #ended: { code: number; reason: string } | null = null;

  /** `res` has its headers written; the stream is this link's from here. */
  constructor(res: ServerResponse, socket: Socket) {
    this.#res = res;
    this.#socket = socket;
    res.on('close', () => {
      const ended = this.#ended ?? { code: LOST, reason: '' };
      this.#listener?.onClosed(this, ended.code, ended.reason);
    });
  }

  get bufferedAmount(): number {
    return this.#res.writableLength;
  }

  send(frame: string | Buffer): void {
    if (this.#ended === null) this.#res.write(frame);
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

  // Nothing to read on the stream: messages come by POST, each bounded on its own.
  pause(): void {}
  resume(): void {}

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
