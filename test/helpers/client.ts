// A real `ws` client that queues what it receives, so tests can await frames in order.
import { WebSocket, type ClientOptions } from 'ws';
import { guard } from './app.js';

export interface Frame {
  readonly data: Buffer;
  readonly binary: boolean;
  readonly text: string;
  json<T = any>(): T;
}

export class TestClient {
  readonly ws: WebSocket;
  readonly frames: Frame[] = [];
  #waiters: Array<(f: Frame) => void> = [];
  closed: Promise<{ code: number; reason: string }>;
  opened: Promise<void>;

  constructor(url: string, protocols?: string | string[], options: ClientOptions = {}) {
    this.ws = new WebSocket(url, protocols, options);
    this.ws.on('message', (data: Buffer, binary) => {
      const f: Frame = { data, binary, text: data.toString('utf8'), json: () => JSON.parse(data.toString('utf8')) };
      const w = this.#waiters.shift();
      if (w) w(f); else this.frames.push(f);
    });
    this.closed = new Promise((resolve) => this.ws.on('close', (code, reason) => resolve({ code, reason: reason.toString() })));
    this.opened = new Promise((resolve, reject) => {
      this.ws.once('open', () => resolve());
      this.ws.once('error', reject);
      this.ws.once('unexpected-response', (_req, res) => reject(Object.assign(new Error(`handshake answered ${res.statusCode}`), { status: res.statusCode, res })));
    });
    this.opened.catch(() => {});
    this.ws.on('error', () => {});
  }

  next(what = 'a frame'): Promise<Frame> {
    const f = this.frames.shift();
    if (f) return Promise.resolve(f);
    return guard(new Promise<Frame>((resolve) => this.#waiters.push(resolve)), what);
  }

  async nextJson<T = any>(what?: string): Promise<T> {
    return (await this.next(what)).json<T>();
  }

  /** Reads frames until one of `type` arrives (reliable mode), returning it. */
  async until<T = any>(type: string): Promise<T> {
    for (;;) {
      const f = await this.nextJson(`a ${type} frame`);
      if (f.type === type) return f as T;
    }
  }

  send(data: string | Buffer | object): void {
    this.ws.send(typeof data === 'object' && !Buffer.isBuffer(data) ? JSON.stringify(data) : data);
  }

  close(code?: number): Promise<{ code: number; reason: string }> {
    if (this.ws.readyState === WebSocket.OPEN || this.ws.readyState === WebSocket.CONNECTING) this.ws.close(code);
    return guard(this.closed, 'client close');
  }
}

export async function connect(url: string, protocols?: string | string[], options?: ClientOptions): Promise<TestClient> {
  const c = new TestClient(url, protocols, options);
  await guard(c.opened, `open ${url}`);
  return c;
}

/** Connects in reliable mode and returns the client with its welcome frame. */
export async function connectReliable(url: string, options?: ClientOptions): Promise<{ client: TestClient; welcome: any }> {
  const client = await connect(url, 'switchboard.v1', options);
  const welcome = await client.nextJson('welcome');
  return { client, welcome };
}
