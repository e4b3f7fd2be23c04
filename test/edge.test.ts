// The public port's edges: plain HTTP and foreign WebSockets go to the app untouched,
// a dead app gives 502, oversized frames close 1009, and subprotocols pick the mode.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { once } from 'node:events';
import { WebSocketServer } from 'ws';
import { guard, startApp, type Answer } from './helpers/app.js';
import { startSidecar } from './helpers/sidecar.js';
import { connect, connectReliable } from './helpers/client.js';
import { freePort } from './helpers/process.js';
import { eventually } from './helpers/eventually.js';

test('plain HTTP is reverse-proxied: method, path, query, body and headers arrive; status and headers come back', async (t) => {
  const app = await startApp((r): Answer => {
    if (r.url.startsWith('/api/')) return { status: 201, headers: { 'x-app': 'yes', 'content-type': 'text/plain', 'cache-control': 'no-store' }, body: `got ${r.method} ${r.text}` };
    if (r.url === '/missing') return { status: 404, headers: { 'content-type': 'text/plain' }, body: 'no such page' };
    return { status: 204 };
  });
  const sc = await startSidecar(app.url);
  t.after(async () => { await sc.close(); await app.close(); });
  const port = sc.sb.publicAddress.port;

  const res = await fetch(`${sc.httpUrl}/api/items?x=1&y=two%20words`, {
    method: 'PUT',
    headers: { 'content-type': 'application/json', 'x-custom': 'abc', cookie: 'sid=7', authorization: 'Bearer t0k' },
    body: JSON.stringify({ name: 'widget' }),
  });
  assert.equal(res.status, 201);
  assert.equal(res.headers.get('x-app'), 'yes');
  assert.equal(res.headers.get('cache-control'), 'no-store');
  assert.equal(await res.text(), 'got PUT {"name":"widget"}');

  const seen = app.requests.find((r) => r.url.startsWith('/api/'))!;
  assert.equal(seen.method, 'PUT');
  assert.equal(seen.url, '/api/items?x=1&y=two%20words');
  assert.deepEqual(seen.json(), { name: 'widget' });
  assert.equal(seen.headers['content-type'], 'application/json');
  assert.equal(seen.headers['x-custom'], 'abc');
  assert.equal(seen.headers.cookie, 'sid=7');
  assert.equal(seen.headers.authorization, 'Bearer t0k');
  assert.equal(seen.headers['x-forwarded-for'], '127.0.0.1');
  assert.equal(seen.headers['x-forwarded-proto'], 'http');
  assert.equal(seen.headers['x-forwarded-host'], `127.0.0.1:${port}`);
  assert.equal(seen.headers.host, `127.0.0.1:${port}`, 'the original Host reaches the app');
  assert.equal(app.byPath('/ws/connect').length, 0, 'plain HTTP makes no webhook');

  const missing = await fetch(`${sc.httpUrl}/missing`);
  assert.equal(missing.status, 404, "the app's error statuses pass through unchanged");
  assert.equal(await missing.text(), 'no such page');

  // A GET on a WebSocket path without an upgrade is just HTTP, for the app.
  const plainOnWsPath = await fetch(`${sc.httpUrl}/ws`);
  assert.equal(plainOnWsPath.status, 204);
});

test('an upgrade on a path not in ws.paths is proxied to the app as a WebSocket, and echo works', async (t) => {
  const upgrades: IncomingMessage[] = [];
  const webhooks: string[] = [];
  const server = createServer((req, res) => {
    webhooks.push(req.url ?? '');
    req.resume();
    res.writeHead(204).end();
  });
  const wss = new WebSocketServer({ noServer: true, handleProtocols: (p) => (p.has('chat') ? 'chat' : false) });
  server.on('upgrade', (req, socket, head) => {
    upgrades.push(req);
    wss.handleUpgrade(req, socket, head, (ws) => {
      ws.on('message', (data, isBinary) => ws.send(isBinary ? data : `echo:${data.toString()}`, { binary: isBinary }));
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const appUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const sc = await startSidecar(appUrl, { ws: { paths: ['/ws'] } });
  t.after(async () => {
    await sc.close();
    for (const c of wss.clients) c.terminate();
    wss.close();
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
  });

  const c = await connect(sc.wsUrl('/app/socket?room=9'), 'chat');
  assert.equal(c.ws.protocol, 'chat', "the app's subprotocol choice comes back");
  c.send('hello');
  assert.equal((await c.next('echo')).text, 'echo:hello');
  c.send(Buffer.from([1, 2, 3]));
  const bin = await c.next('binary echo');
  assert.equal(bin.binary, true);
  assert.deepEqual([...bin.data], [1, 2, 3]);

  assert.equal(upgrades.length, 1);
  assert.equal(upgrades[0].url, '/app/socket?room=9');
  assert.equal(upgrades[0].headers['x-forwarded-for'], '127.0.0.1');
  assert.deepEqual(webhooks, [], 'a proxied WebSocket makes no connect webhook');
  const metrics = await sc.control('GET', '/metrics');
  assert.doesNotMatch(metrics.text, /switchboard_connections_total\{result="accepted"\}/, 'not counted as a Switchboard connection');

  const closed = await c.close(1000);
  assert.equal(closed.code, 1000);
});

test('app down: proxied HTTP gets 502 with a JSON body, and the sidecar keeps serving', async (t) => {
  const port = await freePort();
  const sc = await startSidecar(`http://127.0.0.1:${port}`);
  let revived: ReturnType<typeof createServer> | null = null;
  t.after(async () => {
    await sc.close();
    if (revived) {
      revived.closeAllConnections();
      await new Promise<void>((r) => revived!.close(() => r()));
    }
  });

  for (let i = 0; i < 3; i++) {
    const res = await fetch(`${sc.httpUrl}/page?i=${i}`, { method: i === 1 ? 'POST' : 'GET', body: i === 1 ? 'x' : undefined });
    assert.equal(res.status, 502);
    assert.match(res.headers.get('content-type') ?? '', /^application\/json/);
    const body = await res.json() as { error: string; message: string };
    assert.equal(body.error, 'bad_gateway');
    assert.equal(typeof body.message, 'string');
  }
  await assert.rejects(connect(sc.wsUrl('/elsewhere')), (e: any) => e.status === 502, 'a proxied upgrade gets 502 too');
  await assert.rejects(connect(sc.wsUrl()), (e: any) => e.status === 503, 'no connect webhook answer: 503');
  assert.equal((await sc.control('GET', '/healthz')).status, 200);

  // The app comes up on its port: the same sidecar now proxies to it.
  revived = createServer((_req, res) => res.writeHead(200, { 'content-type': 'text/plain' }).end('back'));
  revived.listen(port, '127.0.0.1');
  await once(revived, 'listening');
  const res = await fetch(`${sc.httpUrl}/page`);
  assert.equal(res.status, 200);
  assert.equal(await res.text(), 'back');
});

test('a frame larger than limits.maxMessageBytes closes a raw connection with 1009, and the app is told 1009', async (t) => {
  const app = await startApp();
  const sc = await startSidecar(app.url, { limits: { maxMessageBytes: 1024 } });
  t.after(async () => { await sc.close(); await app.close(); });

  const c = await connect(sc.wsUrl());
  c.send('a'.repeat(1024));
  const fits = await app.waitFor((r) => r.url === '/ws/message', 'the frame at the limit');
  assert.equal(fits.body.length, 1024);
  c.send('b'.repeat(1025));
  const closed = await guard(c.closed, 'close after the oversized frame');
  assert.equal(closed.code, 1009);
  const disc = await app.waitFor((r) => r.url === '/ws/disconnect', 'disconnect webhook');
  assert.equal(app.byPath('/ws/message').length, 1, 'the oversized frame never reached the app');
  assert.equal(disc.json().code, 1009, 'the disconnect webhook names the close the sidecar sent');
  const metrics = await sc.control('GET', '/metrics');
  assert.match(metrics.text, /switchboard_disconnections_total\{code="1009"\} 1/);
});

test('a frame larger than limits.maxMessageBytes closes a reliable connection with 1009 and ends its session', async (t) => {
  const app = await startApp();
  const sc = await startSidecar(app.url, { limits: { maxMessageBytes: 1024 } });
  t.after(async () => { await sc.close(); await app.close(); });

  const { client, welcome } = await connectReliable(sc.wsUrl());
  client.send({ type: 'message', data: 'x'.repeat(2000) });
  assert.equal((await guard(client.closed, 'reliable close')).code, 1009);
  // A close the sidecar chose is deliberate: the session ends now, not after graceMs.
  await eventually(() => app.byPath('/ws/disconnect').length > 0, 'the disconnect webhook (the session ended instead of waiting for a resume)', 2_000);
  const disc = app.byPath('/ws/disconnect');
  assert.equal(disc.length, 1, 'the session ended (disconnect webhook) instead of waiting for a resume');
  assert.equal(disc[0].json().connection, welcome.session);
  assert.equal(disc[0].json().code, 1009);
});

test('subprotocols: a raw client offering foo gets foo; switchboard.v1 gets reliable mode and a welcome', async (t) => {
  const app = await startApp();
  const sc = await startSidecar(app.url);
  t.after(async () => { await sc.close(); await app.close(); });

  const foo = await connect(sc.wsUrl('/ws?who=foo'), 'foo');
  assert.equal(foo.ws.protocol, 'foo');
  const fooConnect = (await app.waitFor((r) => r.url === '/ws/connect' && r.json().query.who === 'foo')).json();
  assert.equal(fooConnect.subprotocol, 'foo');
  const info = await sc.control('GET', `/v1/connections/${fooConnect.connection}`);
  assert.equal(info.json.mode, 'raw');
  assert.equal((await sc.control('POST', `/v1/connections/${fooConnect.connection}/messages`, 'plain', { 'content-type': 'text/plain' })).status, 202);
  const first = await foo.next('the push');
  assert.equal(first.text, 'plain', 'raw mode: no welcome, the push verbatim');

  const two = await connect(sc.wsUrl('/ws?who=two'), ['foo', 'bar']);
  assert.equal(two.ws.protocol, 'foo', 'the first offered protocol is chosen');

  const { client, welcome } = await connectReliable(sc.wsUrl('/ws?who=rel'));
  assert.equal(client.ws.protocol, 'switchboard.v1');
  assert.equal(welcome.type, 'welcome');
  assert.equal(typeof welcome.session, 'string');
  assert.equal(typeof welcome.token, 'string');
  assert.equal(welcome.resumed, false);
  assert.equal(welcome.heartbeatMs, sc.config.heartbeat.intervalMs);
  assert.equal(welcome.graceMs, sc.config.session.graceMs);
  const relConnect = (await app.waitFor((r) => r.url === '/ws/connect' && r.json().query.who === 'rel')).json();
  assert.equal(relConnect.subprotocol, 'switchboard.v1');
  assert.equal(relConnect.connection, welcome.session);

  const mixed = await connect(sc.wsUrl('/ws?who=mixed'), ['foo', 'switchboard.v1']);
  assert.equal(mixed.ws.protocol, 'switchboard.v1', 'switchboard.v1 wins wherever it is in the offer');
  assert.equal((await mixed.nextJson('welcome')).type, 'welcome');

  for (const c of [foo, two, client, mixed]) await c.close();
});
