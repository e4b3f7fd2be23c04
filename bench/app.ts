// The app behind Switchboard in the benchmarks, as small as an app can be, in its own
// process: POST /ws/message answers with the body it got (same content type), or a
// batch (`X-Switchboard-Batch`) with `{"send":[...]}` of its texts; POST /ws/connect puts
// the client in channel "bench"; anything else gets 204.
import { createServer } from 'node:http';
import { parseArgs } from 'node:util';

const { values } = parseArgs({ options: { port: { type: 'string' } } });
const channels = Buffer.from('{"channels":["bench"]}');

const server = createServer((req, res) => {
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  req.on('end', () => {
    const path = req.url?.split('?')[0];
    if (req.method === 'POST' && path === '/ws/message') {
      let body = Buffer.concat(chunks);
      let type = req.headers['content-type'] ?? 'text/plain';
      if (req.headers['x-switchboard-batch'] !== undefined) {
        const { messages } = JSON.parse(body.toString('utf8')) as { messages: { text: string }[] };
        body = Buffer.from(JSON.stringify({ send: messages.map((m) => m.text) }));
        type = 'application/json';
      }
      res.writeHead(200, { 'content-type': type, 'content-length': body.length });
      res.end(body);
    } else if (req.method === 'POST' && path === '/ws/connect') {
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': channels.length });
      res.end(channels);
    } else {
      res.writeHead(204);
      res.end();
    }
  });
});
server.keepAliveTimeout = 60_000;
server.listen(Number(values.port), '127.0.0.1', () => process.send?.({ bench: 'ready' }));
process.on('SIGTERM', () => process.exit(0));
