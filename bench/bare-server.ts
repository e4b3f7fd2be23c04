// The baseline: a bare `ws` server doing each scenario's job the plain way, run as its
// own process (forked by the bench with IPC, like Switchboard, and preloaded with the
// same probe).
//   idle    holds connections
//   echo    sends every message straight back
//   fanout  POST /publish on the control port sends the body to every client
// With --workers N > 1 it runs N such processes behind node:cluster (the primary only
// hands out connections), which is how the 50k idle baseline spreads its sockets.
import cluster from 'node:cluster';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { parseArgs } from 'node:util';
import { WebSocketServer } from 'ws';

const { values } = parseArgs({
  options: {
    mode: { type: 'string', default: 'idle' },
    port: { type: 'string' },
    control: { type: 'string' },
    workers: { type: 'string', default: '1' },
  },
});
const mode = values.mode!;
const port = Number(values.port);
const controlPort = values.control ? Number(values.control) : null;
const workers = Number(values.workers);

function ready(): void {
  process.send?.({ bench: 'ready' });
}

process.on('SIGTERM', () => process.exit(0));
process.on('SIGINT', () => process.exit(0));

if (workers > 1 && cluster.isPrimary) {
  let listening = 0;
  for (let i = 0; i < workers; i++) cluster.fork();
  cluster.on('listening', () => {
    if (++listening === workers) ready();
  });
  cluster.on('exit', (_worker, code) => {
    process.stderr.write(`bare ws worker exited (${code})\n`);
  });
} else {
  const server = createServer((_req, res) => {
    res.writeHead(426);
    res.end();
  });
  const wss = new WebSocketServer({ server, perMessageDeflate: false, clientTracking: true });
  wss.on('connection', (ws) => {
    ws.on('error', () => ws.terminate());
    if (mode === 'echo') ws.on('message', (data, isBinary) => ws.send(data as Buffer, { binary: isBinary }));
  });
  // Ready once every port listens; a cluster worker reports to the primary through 'listening'.
  let pending = controlPort !== null && !cluster.isWorker ? 2 : 1;
  const listening = () => {
    if (--pending === 0 && !cluster.isWorker) ready();
  };
  server.listen(port, '127.0.0.1', listening);

  if (controlPort !== null && !cluster.isWorker) {
    // The same job as Switchboard's channel push: read the body, write it to every socket.
    const control = createServer((req: IncomingMessage, res: ServerResponse) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const body = Buffer.concat(chunks);
        let delivered = 0;
        for (const ws of wss.clients) {
          ws.send(body, { binary: false });
          delivered++;
        }
        const answer = JSON.stringify({ delivered });
        res.writeHead(202, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(answer) });
        res.end(answer);
      });
    });
    control.keepAliveTimeout = 60_000;
    control.listen(controlPort, '127.0.0.1', listening);
  }
}
