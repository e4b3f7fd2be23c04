// A real HTTP app on port 0 that records every request and answers with a handler.
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { once } from 'node:events';

export interface Recorded {
  readonly method: string;
  readonly url: string;
  readonly headers: IncomingMessage['headers'];
  readonly body: Buffer;
  readonly text: string;
  json<T = any>(): T;
}

export type Answer = { status?: number; headers?: Record<string, string>; body?: string | Buffer | object } | void;
export type Handler = (req: Recorded, res: ServerResponse) => Answer | 'handled' | Promise<Answer | 'handled'>;

export interface TestApp {
  readonly url: string;
  readonly port: number;
  readonly requests: Recorded[];
  handler: Handler;
  /** Resolves with the first recorded request (past or future) matching. */
  waitFor(match: (r: Recorded) => boolean, what?: string): Promise<Recorded>;
  byPath(path: string): Recorded[];
  close(): Promise<void>;
}

export async function startApp(handler: Handler = () => ({ status: 204 })): Promise<TestApp> {
  const requests: Recorded[] = [];
  const waiters: Array<{ match: (r: Recorded) => boolean; resolve: (r: Recorded) => void }> = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', async () => {
      const body = Buffer.concat(chunks);
      const rec: Recorded = {
        method: req.method ?? '', url: req.url ?? '', headers: req.headers, body, text: body.toString('utf8'),
        json: () => JSON.parse(body.toString('utf8')),
      };
      requests.push(rec);
      for (const w of [...waiters]) if (w.match(rec)) { waiters.splice(waiters.indexOf(w), 1); w.resolve(rec); }
      try {
        const answer = await app.handler(rec, res);
        if (answer === 'handled') return;
        const a = answer ?? {};
        let out = a.body;
        const headers = { ...(a.headers ?? {}) };
        if (out !== undefined && !Buffer.isBuffer(out) && typeof out === 'object') {
          out = JSON.stringify(out);
          headers['content-type'] ??= 'application/json';
        }
        res.writeHead(a.status ?? 200, headers);
        res.end(out);
      } catch {
        res.destroy();
      }
    });
  });
  server.keepAliveTimeout = 60_000;
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as AddressInfo).port;
  const app: TestApp = {
    url: `http://127.0.0.1:${port}`,
    port,
    requests,
    handler,
    waitFor(match, what = 'request') {
      const seen = requests.find(match);
      if (seen) return Promise.resolve(seen);
      return guard(new Promise<Recorded>((resolve) => waiters.push({ match, resolve })), `app never received ${what}`);
    },
    byPath: (path) => requests.filter((r) => r.url.split('?')[0] === path),
    async close() {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
  return app;
}

/** Rejects with `what` instead of hanging the suite when something never happens. */
export function guard<T>(p: Promise<T>, what: string, ms = 10_000): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`gave up waiting: ${what}`)), ms);
    p.then((v) => { clearTimeout(t); resolve(v); }, (e) => { clearTimeout(t); reject(e); });
  });
}
