// The demo's "legacy" app: plain node:http, no WebSocket code. It serves a chat page,
// answers Switchboard's webhooks, pushes chat lines back through the push API, and tells a page
// who is in the chat (Switchboard's presence query) when it opens.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { dirname, join, normalize } from 'node:path';
import { Webhook, WebhookVerificationError } from 'standardwebhooks';

const here = dirname(fileURLToPath(import.meta.url));
/** The compiled client library, served to the page as ES modules. */
const clientDir = join(here, '..', '..', 'client');
const pagePath = join(here, '..', '..', '..', 'config-examples', 'demo', 'index.html');

export interface DemoAppOptions {
  /** Where Switchboard's push API listens. */
  readonly controlUrl: string;
  readonly controlToken?: string;
  /** Switchboard's `webhooks.secret` (`whsec_…`): every webhook is verified with it. */
  readonly webhookSecret: string;
}

function body(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

export function createDemoApp(options: DemoAppOptions): Server {
  // Standard Webhooks: Switchboard signs id, timestamp and body; a request from anyone
  // else (a client that found the app's port, a replay older than five minutes) fails here.
  const webhook = new Webhook(options.webhookSecret);
  const verified = async (req: IncomingMessage): Promise<string> => {
    const text = await body(req);
    webhook.verify(text, req.headers as Record<string, string>);
    return text;
  };


  const control = (path: string, init: RequestInit = {}) => fetch(`${options.controlUrl}${path}`, {
    ...init,
    headers: { ...(init.headers as Record<string, string> | undefined), ...(options.controlToken ? { authorization: `Bearer ${options.controlToken}` } : {}) },
  });

  const routes: Record<string, (req: IncomingMessage, res: ServerResponse) => Promise<void>> = {
    'GET /': async (_req, res) => {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      res.end(await readFile(pagePath));
    },
    // Who is in the chat now, for a page that just opened: Switchboard knows (its presence query);
    // the page keeps the list up to date from the presence frames that follow.
    'GET /members': async (_req, res) => {
      const names: string[] = [];
      let cursor: string | null = null;
      do {
        const answer = await control(`/v1/channels/chat/presence?limit=1000${cursor ? `&cursor=${cursor}` : ''}`);
        if (!answer.ok) throw new Error(`presence query answered ${answer.status}`);
        const page = await answer.json() as { members: Array<{ user: string }>; next: string | null };
        for (const m of page.members) names.push(m.user);
        cursor = page.next;
      } while (cursor !== null);
      res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' });
      res.end(JSON.stringify({ members: names }));
    },
    // Switchboard asks whether this client may connect; the answer names the user.
    'POST /ws/connect': async (req, res) => {
      const { query } = JSON.parse(await verified(req)) as { query: Record<string, string> };
      const name = (query.name ?? '').replace(/[^\w -]/g, '').slice(0, 24) || `guest-${Math.floor(Math.random() * 1000)}`;
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ user: name, channels: ['chat'], send: [{ from: 'demo', text: `welcome, ${name}` }] }));
    },
    // A chat line from a client: the app relays it to everyone in the channel.
    'POST /ws/message': async (req, res) => {
      const text = await verified(req);
      let line: unknown;
      try {
        line = JSON.parse(text);
      } catch {
        line = text;
      }
      const from = String(req.headers['x-switchboard-user'] ?? 'someone');
      const said = typeof line === 'object' && line !== null && 'text' in line ? String((line as { text: unknown }).text) : String(line);
      const answer = await control('/v1/channels/chat/messages', {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ from, text: said.slice(0, 500) }),
      });
      res.writeHead(answer.ok ? 204 : 502);
      res.end();
    },
    'POST /ws/disconnect': async (req, res) => {
      await verified(req);
      res.writeHead(204);
      res.end();
    },
  };

  return createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    const route = routes[`${req.method} ${path}`];
    if (route) {
      route(req, res).catch((err: unknown) => {
        res.writeHead(err instanceof WebhookVerificationError ? 401 : 500, { 'content-type': 'text/plain' });
        res.end(err instanceof WebhookVerificationError ? `bad webhook signature: ${err.message}\n` : '');
      });
      return;
    }
    if (req.method === 'GET' && path.startsWith('/client/') && path.endsWith('.js')) {
      const file = normalize(join(clientDir, path.slice('/client/'.length)));
      if (!file.startsWith(clientDir)) return void res.writeHead(404).end();
      readFile(file).then(
        (js) => { res.writeHead(200, { 'content-type': 'text/javascript; charset=utf-8' }); res.end(js); },
        () => { res.writeHead(404); res.end(); },
      );
      return;
    }
    res.writeHead(404, { 'content-type': 'text/plain' });
    res.end('not found');
  });
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const port = Number(process.env.PORT ?? 3000);
  const webhookSecret = process.env.SWITCHBOARD_WEBHOOK_SECRET;
  if (!webhookSecret) {
    process.stderr.write('SWITCHBOARD_WEBHOOK_SECRET is not set: the app verifies every webhook with the secret Switchboard signs with (npm start sets one)\n');
    process.exit(2);
  }
  const server = createDemoApp({ controlUrl: process.env.SWITCHBOARD_CONTROL_URL ?? 'http://127.0.0.1:8081', webhookSecret });
  // A busy port is one line, not a stack trace.
  server.on('error', (err: NodeJS.ErrnoException) => {
    process.stderr.write(err.code === 'EADDRINUSE' ? `demo app: port ${port} on 127.0.0.1 is already in use (set PORT)\n` : `demo app: ${err.message}\n`);
    process.exit(1);
  });
  server.listen(port, '127.0.0.1', () => process.stdout.write(`demo app on http://127.0.0.1:${(server.address() as { port: number }).port}\n`));
  process.on('SIGTERM', () => {
    server.closeAllConnections();
    server.close(() => process.exit(0));
  });
}
