// The floor under the `sse` scenario: what an open node:http response stream costs per connection
// against an open `ws` socket, with no Switchboard at all. A bare server holds N connections of one
// kind (an SSE response after its first event, or a WebSocket after its first message); it reads
// its own heap and RSS after two forced GCs, before and after.
//
//   npx tsc -p . && node dist/bench/stream-floor.js [connections=10000] [reps=3]
import { fork } from 'node:child_process';
import { once } from 'node:events';
import { createServer, request } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { WebSocket, WebSocketServer } from 'ws';

type Kind = 'sse' | 'ws';
const self = fileURLToPath(import.meta.url);
const [role, ...args] = process.argv.slice(2);

function serve(kind: Kind): void {
  const held: unknown[] = [];
  const server = createServer((_req, res) => {
    if (kind !== 'sse') return void res.writeHead(404).end();
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
    res.write('event: welcome\ndata: {}\n\n');
    held.push(res);
  });
  if (kind === 'ws') new WebSocketServer({ server }).on('connection', (ws) => { held.push(ws); ws.send('hi'); });
  server.listen(0, '127.0.0.1', () => process.send!({ port: (server.address() as AddressInfo).port }));
  process.on('message', () => {
    globalThis.gc?.();
    globalThis.gc?.();
    const m = process.memoryUsage();
    process.send!({ heap: m.heapUsed, rss: m.rss, held: held.length });
  });
}

async function open(kind: Kind, port: number, n: number): Promise<void> {
  const keep: unknown[] = [];
  const one = (i: number) => new Promise<void>((resolve, reject) => {
    const localAddress = `127.0.0.${2 + (i % 50)}`;
    if (kind === 'sse') {
      const req = request({ host: '127.0.0.1', port, path: '/', headers: { accept: 'text/event-stream' }, agent: false, localAddress });
      req.on('response', (res) => res.once('data', () => resolve()));
      req.on('error', reject);
      req.end();
      keep.push(req);
    } else {
      const ws = new WebSocket(`ws://127.0.0.1:${port}/`, { localAddress, perMessageDeflate: false });
      ws.once('message', () => resolve());
      ws.on('error', reject);
      keep.push(ws);
    }
  });
  for (let i = 0; i < n; i += 100) await Promise.all(Array.from({ length: Math.min(100, n - i) }, (_, j) => one(i + j)));
  process.send!({ open: keep.length });
}

async function measure(kind: Kind, n: number): Promise<{ heap: number; rss: number }> {
  const server = fork(self, ['serve', kind], { execArgv: ['--expose-gc'] });
  try {
    const [{ port }] = (await once(server, 'message')) as [{ port: number }];
    const read = async () => { server.send('mem'); return ((await once(server, 'message')) as [{ heap: number; rss: number; held: number }])[0]; };
    const before = await read();
    const client = fork(self, ['open', kind, String(port), String(n)]);
    try {
      await once(client, 'message');
      await new Promise((r) => setTimeout(r, 1000));
      const after = await read();
      if (after.held !== n) throw new Error(`${kind}: the server holds ${after.held} of ${n}`);
      return { heap: (after.heap - before.heap) / n, rss: (after.rss - before.rss) / n };
    } finally {
      client.kill();
    }
  } finally {
    server.kill();
  }
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const kib = (bytes: number) => `${(bytes / 1024).toFixed(2)} KiB`;

if (role === 'serve') serve(args[0] as Kind);
else if (role === 'open') await open(args[0] as Kind, Number(args[1]), Number(args[2]));
else {
  const n = Number(role ?? 10_000);
  const reps = Number(args[0] ?? 3);
  const runs: Record<Kind, Array<{ heap: number; rss: number }>> = { sse: [], ws: [] };
  for (let r = 0; r < reps; r++) {
    for (const kind of (r % 2 ? ['sse', 'ws'] : ['ws', 'sse']) as Kind[]) runs[kind].push(await measure(kind, n));
  }
  for (const what of ['rss', 'heap'] as const) {
    const sse = median(runs.sse.map((x) => x[what]));
    const ws = median(runs.ws.map((x) => x[what]));
    console.log(`${what} per connection: SSE response ${kib(sse)}, ws socket ${kib(ws)}, ratio ${(sse / ws).toFixed(2)}x`);
  }
  console.log(`(${n.toLocaleString('en-US')} connections, medians of ${reps}; bare node:http and ws, no Switchboard)`);
}
