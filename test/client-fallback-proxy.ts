// A proxy in front of the sidecar as a corporate one looks to the client: plain HTTP passes
// through (streams included, unless told to buffer them as some proxies and scanners do), WebSocket
// upgrades are dropped or left hanging until told to let them through. Real sockets on loopback, port 0.
import { createServer, request, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http';
import { connect, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { once } from 'node:events';
import type { Recorder } from './helpers/recorder.js';

export type UpgradeMode = 'drop' | 'hang' | 'pass';
/** What an event stream meets: passed as it comes, or held whole (status, headers and body) until it ends. */
export type StreamMode = 'pass' | 'buffer';

export interface BlockingProxy {
  readonly url: string;
  /** What an upgrade meets: destroyed at once, never answered, or piped to the sidecar. */
  upgrades: UpgradeMode;
  /** What event streams meet. */
  streamMode: StreamMode;
  /** Requests that were long-polls (GETs with ?transport=long-poll), answered through the proxy. */
  readonly polls: number;
  /** Upgrades seen, by what they met. */
  readonly seen: { drop: number; hang: number; pass: number };
  /** Event streams answered through the proxy (GETs with Accept: text/event-stream). */
  readonly streams: number;
  /** The headers of every POST passed through. */
  readonly posts: IncomingHttpHeaders[];
  /** Cuts every open event stream (or those whose request URL contains `only`), as a proxy that times a long response out does. */
  dropStreams(only?: string): number;
  /** Stops passing what open event streams carry, keeping their connections open. */
  freezeStreams(): number;
  close(): Promise<void>;
}

export async function startBlockingProxy(target: string): Promise<BlockingProxy> {
  const to = new URL(target);
  const open = new Map<ServerResponse, IncomingMessage>(); // each stream's answer from the sidecar
  const urls = new WeakMap<ServerResponse, string>(); // and the URL it was asked for
  const sockets = new Set<Socket>();
  let streams = 0;
  let polls = 0;
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    if (req.method === 'POST') proxy.posts.push(req.headers);
    const isStream = req.method === 'GET' && /text\/event-stream/.test(req.headers.accept ?? '');
    if (req.method === 'GET' && /[?&]transport=long-poll/.test(req.url ?? '')) polls++;
    const upstream = request({ host: to.hostname, port: to.port, method: req.method, path: req.url, headers: req.headers }, (answer) => {
      if (isStream && proxy.streamMode === 'buffer') {
        // Nothing reaches the client until the stream ends: a welcome never arrives in time.
        const chunks: Buffer[] = [];
        answer.on('data', (c: Buffer) => chunks.push(c));
        answer.on('end', () => res.writeHead(answer.statusCode ?? 502, answer.headers).end(Buffer.concat(chunks)));
        res.on('close', () => answer.destroy());
        return;
      }
      res.writeHead(answer.statusCode ?? 502, answer.headers);
      if (isStream && answer.statusCode === 200) {
        streams++;
        open.set(res, answer);
        urls.set(res, req.url ?? '');
        res.on('close', () => open.delete(res));
      }
      res.flushHeaders();
      answer.pipe(res);
      res.on('close', () => answer.destroy());
    });
    upstream.on('error', () => res.destroy());
    req.pipe(upstream);
  });
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  server.on('upgrade', (req: IncomingMessage, socket: Socket, head: Buffer) => {
    const mode = proxy.upgrades;
    proxy.seen[mode]++;
    if (mode === 'drop') return socket.destroy();
    if (mode === 'hang') return; // the socket stays open and unanswered until the client gives up
    const upstream = connect(Number(to.port), to.hostname, () => {
      const lines = [`${req.method} ${req.url} HTTP/1.1`];
      for (let i = 0; i < req.rawHeaders.length; i += 2) lines.push(`${req.rawHeaders[i]}: ${req.rawHeaders[i + 1]}`);
      upstream.write(`${lines.join('\r\n')}\r\n\r\n`);
      upstream.write(head);
      upstream.pipe(socket);
      socket.pipe(upstream);
    });
    sockets.add(upstream);
    upstream.on('close', () => { sockets.delete(upstream); socket.destroy(); });
    upstream.on('error', () => socket.destroy());
    socket.on('error', () => upstream.destroy());
    socket.on('close', () => upstream.destroy());
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as AddressInfo).port;
  const proxy: BlockingProxy = {
    url: `http://127.0.0.1:${port}`,
    upgrades: 'drop',
    streamMode: 'pass',
    get polls() { return polls; },
    seen: { drop: 0, hang: 0, pass: 0 },
    get streams() { return streams; },
    posts: [],
    dropStreams(only) {
      const cut = [...open.keys()].filter((res) => only === undefined || (urls.get(res) ?? '').includes(only));
      for (const res of cut) res.destroy();
      return cut.length;
    },
    freezeStreams() {
      for (const [res, answer] of open) {
        answer.unpipe(res);
        answer.pause();
      }
      return open.size;
    },
    async close() {
      for (const s of sockets) s.destroy();
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
  return proxy;
}

/**
 * The climb back to a WebSocket under load: pushes 1, 2, … to the client's user (through `push`)
 * while the proxy starts letting upgrades through at the tenth, until the client is on a
 * WebSocket; then `last`, and waits for it. Returns every push, in order.
 */
export async function pushWhileClimbing(
  proxy: BlockingProxy,
  push: (data: unknown) => Promise<unknown>,
  client: Recorder,
): Promise<Array<number | string>> {
  const pushed: Array<number | string> = [];
  let pushing = true;
  const pusher = (async () => {
    for (let i = 1; pushing || i <= 20; i++) {
      await push(i);
      pushed.push(i);
      if (i === 10) proxy.upgrades = 'pass';
    }
  })();
  await client.until('the move to a WebSocket', () => client.transports.at(-1) === 'websocket');
  pushing = false;
  await pusher;
  await push('last');
  pushed.push('last');
  await client.until('every push', () => client.messages.at(-1)?.data === 'last');
  return pushed;
}
