// A ClientLink over a `ws` WebSocket and its TCP socket. Its listeners are shared by every
// link (they find the link on the socket), so a connection costs no closures.
import type { Socket } from 'node:net';
import type { WebSocket } from 'ws';
import { wsCloseCode } from './errors.js';
import { jsonWire, type ClientLink, type LinkListener } from './link.js';

const LINK = Symbol('link');
type Bound = WebSocket & { [LINK]?: WebSocketLink };
const EMPTY = Buffer.alloc(0);

export class WebSocketLink implements ClientLink {
  readonly transport = 'websocket';
  readonly wire = jsonWire;
  readonly #ws: WebSocket;
  readonly #socket: Socket;
  #listener: LinkListener | null = null;

  constructor(ws: WebSocket, socket: Socket) {
    this.#ws = ws;
    this.#socket = socket;
    (ws as Bound)[LINK] = this;
    ws.on('message', WebSocketLink.#onMessage);
    ws.on('pong', WebSocketLink.#onPong);
    ws.on('close', WebSocketLink.#onClose);
    ws.on('error', WebSocketLink.#onError);
  }

  get bufferedAmount(): number {
    return this.#ws.bufferedAmount;
  }

  send(frame: string | Buffer, binary = false): void {
    this.#ws.send(frame, { binary });
  }

  cork(): void {
    this.#socket.cork();
  }

  uncork(): void {
    this.#socket.uncork();
  }

  whenDrained(fn: () => void): void {
    // 'drain' comes only after a write was refused; below the socket's own high-water mark,
    // an empty write's callback tells when what is buffered has gone out.
    if (this.#socket.writableNeedDrain) this.#socket.once('drain', fn);
    else this.#socket.write(EMPTY, () => fn());
  }

  pause(): void {
    this.#ws.pause();
  }

  resume(): void {
    this.#ws.resume();
  }

  ping(): void {
    this.#ws.ping();
  }

  askReconnect(afterMs: number): void {
    this.#ws.send(jsonWire.frame({ type: 'reconnect', afterMs }));
  }

  close(code: number, reason: string): void {
    this.#ws.close(code, reason);
  }

  terminate(): void {
    this.#ws.terminate();
  }

  listen(listener: LinkListener | null): void {
    this.#listener = listener;
  }

  static #onMessage(this: Bound, data: Buffer, isBinary: boolean): void {
    this[LINK]!.#listener?.onFrame(data, isBinary);
  }

  static #onPong(this: Bound): void {
    this[LINK]!.#listener?.onPong();
  }

  static #onClose(this: Bound, code: number, reason: Buffer): void {
    const link = this[LINK]!;
    link.#listener?.onClosed(link, code, reason.toString());
  }

  static #onError(this: Bound, err: Error): void {
    const link = this[LINK]!;
    // ws closes the socket itself on a frame it refuses, then reports 1006 (it stops
    // reading): the code it sent travels with the error.
    const code = wsCloseCode(err);
    if (code !== undefined) link.#listener?.onRefused(link, code, err.message);
  }
}
