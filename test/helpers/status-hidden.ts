// A WebSocket as a browser's looks to the client library: `ws` underneath, but without its
// `on(...)`, so a refused handshake's HTTP status cannot be seen (only a close, 1006).
import { WebSocket } from 'ws';
import type { WebSocketLike } from '../../client/index.js';

export class StatusHidden implements WebSocketLike {
  readonly #ws: WebSocket;
  onopen: WebSocketLike['onopen'] = null;
  onmessage: WebSocketLike['onmessage'] = null;
  onclose: WebSocketLike['onclose'] = null;
  onerror: WebSocketLike['onerror'] = null;
  constructor(url: string, protocols: string | string[]) {
    this.#ws = new WebSocket(url, protocols);
    this.#ws.onopen = (e) => this.onopen?.(e);
    this.#ws.onmessage = (e) => this.onmessage?.(e);
    this.#ws.onclose = (e) => this.onclose?.(e);
    this.#ws.onerror = (e) => this.onerror?.(e);
  }
  get readyState() { return this.#ws.readyState; }
  get binaryType() { return this.#ws.binaryType; }
  set binaryType(type: string) { this.#ws.binaryType = type as 'arraybuffer'; }
  send(data: string) { this.#ws.send(data); }
  close(code?: number, reason?: string) { this.#ws.close(code, reason); }
}
