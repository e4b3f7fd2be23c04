// Hostile plain HTTP through the public port: a client cannot pose as Switchboard to the app,
// cannot reach the app's webhook paths, and learns nothing of the app's address.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, request as httpRequest, type IncomingMessage } from 'node:http';
import { connect as tcpConnect, type AddressInfo } from 'node:net';
import { once } from 'node:events';
import { WebSocketServer } from 'ws';
import { guard, startApp } from './helpers/app.js';
import { startSidecar, testConfig } from './helpers/sidecar.js';
import { Switchboard } from '../proxy/switchboard.js';
import { builtinPlugins } from '../plugins/index.js';
import { Writable } from 'node:stream';
import pino from 'pino';
import fc from 'fast-check';
import { connect } from './helpers/client.js';
import { freePort } from './helpers/process.js';
import { canonicalPath, webhookPathMatcher } from '../proxy/forwarding.js';

const forged = { 'x-switchboard-user': 'admin', 'x-switchboard-event': 'message', 'x-switchboard-connection': 'n-0-x', 'webhook-id': 'w', 'webhook-timestamp': '1', 'webhook-signature': 'v1,xx' };

test('proxied requests never carry client-sent X-Switchboard-* or Standard Webhooks headers', async (t) => {
  const app = await startApp(() => ({ status: 204 }));
  const sc = await startSidecar(app.url);
  t.after(async () => { await sc.close(); await app.close(); });
  const res = await fetch(`${sc.httpUrl}/api/chat`, { method: 'POST', headers: { ...forged, 'x-kept': 'yes' }, body: 'hi' });
  assert.equal(res.status, 204);
  const seen = app.requests.find((r) => r.url === '/api/chat')!;
  for (const name of Object.keys(forged)) assert.equal(seen.headers[name], undefined, name);
  assert.equal(seen.headers['x-kept'], 'yes');
});

test('a proxied WebSocket upgrade (not on ws.paths) loses them too', async (t) => {
  const upgrades: IncomingMessage[] = [];
  const server = createServer();
  const wss = new WebSocketServer({ server });
  wss.on('connection', (_ws, req) => upgrades.push(req));
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const sc = await startSidecar(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
  t.after(async () => { await sc.close(); wss.close(); server.close(); });
  const c = await connect(sc.wsUrl('/other'), undefined, { headers: forged });
  await c.close();
  assert.equal(upgrades.length, 1);
  for (const name of Object.keys(forged)) assert.equal(upgrades[0].headers[name], undefined, name);
});

test('the webhook paths are 404 from the public port, however spelled, unless proxy.exposeWebhookPaths', async (t) => {
  const app = await startApp(() => ({ status: 200, body: 'app' }));
  const sc = await startSidecar(app.url);
  t.after(async () => { await sc.close(); await app.close(); });
  for (const path of ['/ws/connect', '/ws/message', '/ws/disconnect', '/ws//message', '/ws/%6Dessage', '/ws/./message', '/x/../ws/message', '/ws/message/', '/ws/message?x=1', '/%E0%A4%A',
    '/ws/%256Dessage', '/ws/%25256Dessage', '/WS/Message', '/ws/message;jsessionid=1', '/x/..;/ws/message', '/ws/%2e%2e/ws/message', '/%2525252525252541']) {
    const res = await fetch(`${sc.httpUrl}${path}`, { method: 'POST', headers: { 'x-switchboard-user': 'admin' }, body: '"hi"' });
    assert.equal(res.status, 404, path);
    assert.equal(((await res.json()) as { error: string }).error, 'not_found', path);
  }
  assert.equal(app.requests.length, 0, 'none reached the app');
  assert.equal((await fetch(`${sc.httpUrl}/ws/messages`)).status, 200, 'other paths still reach the app');

  const open = await startSidecar(app.url, { proxy: { exposeWebhookPaths: true } });
  t.after(() => open.close());
  assert.equal((await fetch(`${open.httpUrl}/ws/message`, { method: 'POST', body: 'x' })).status, 200);
});

test('the 502 for an app that is down does not reveal its address', async (t) => {
  const port = await freePort();
  const sc = await startSidecar(`http://127.0.0.1:${port}`);
  t.after(() => sc.close());
  const res = await fetch(`${sc.httpUrl}/anything`);
  assert.equal(res.status, 502);
  const text = await res.text();
  assert.equal(JSON.parse(text).error, 'bad_gateway');
  assert.ok(!text.includes(String(port)) && !text.includes('127.0.0.1'), text);
});

test('canonical paths: decoded, slashes collapsed, dot segments resolved', () => {
  const table: Array<[string, string | null]> = [
    ['/', '/'], ['/a/b', '/a/b'], ['//a///b', '/a/b'], ['/a/./b', '/a/b'], ['/a/../b', '/b'], ['/../../b', '/b'],
    ['/a%2Fb', '/a/b'], ['/%61', '/a'], ['/a/', '/a/'], ['/a?x=/b', '/a'], ['/%E0%A4%A', null], ['/a\\b', '/a/b'],
    ['/%2561', '/a'], ['/%25', '/%'], ['/100%25off', '/100%off'], ['/%252525252561', null],
  ];
  for (const [input, output] of table) assert.equal(canonicalPath(input), output, input);
});

test('forwarding headers: a client\'s are dropped unless its peer is a trusted proxy; on proxied requests and the connect webhook alike', async (t) => {
  const app = await startApp((r) => ({ status: r.url === '/ws/connect' ? 200 : 204 }));
  const spoof = { 'x-forwarded-for': '6.6.6.6', 'x-forwarded-proto': 'https', 'x-forwarded-host': 'evil.example', forwarded: 'for=6.6.6.6', 'x-real-ip': '6.6.6.6' };
  for (const trusted of [false, true]) {
    const sc = await startSidecar(app.url, trusted ? { proxy: { trustedProxies: ['127.0.0.0/8', '::1'] } } : {});
    const port = sc.sb.publicAddress.port;
    await fetch(`${sc.httpUrl}/page?trusted=${trusted}`, { headers: spoof });
    const c = await connect(sc.wsUrl(`/ws?trusted=${trusted}`), undefined, { headers: spoof });
    await c.close();
    const page = app.requests.find((r) => r.url === `/page?trusted=${trusted}`)!;
    const hook = app.requests.filter((r) => r.url === '/ws/connect').at(-1)!;
    if (trusted) {
      assert.equal(page.headers['x-forwarded-for'], '6.6.6.6, 127.0.0.1');
      assert.equal(page.headers['x-forwarded-proto'], 'https');
      assert.equal(page.headers['x-forwarded-host'], 'evil.example');
      assert.equal(page.headers.forwarded, 'for=6.6.6.6, for=127.0.0.1;proto=https;host="evil.example"');
      assert.equal(hook.headers['x-forwarded-for'], '6.6.6.6, 127.0.0.1');
    } else {
      assert.equal(page.headers['x-forwarded-for'], '127.0.0.1');
      assert.equal(page.headers['x-forwarded-proto'], 'http');
      assert.equal(page.headers['x-forwarded-host'], `127.0.0.1:${port}`);
      assert.equal(page.headers.forwarded, `for=127.0.0.1;proto=http;host="127.0.0.1:${port}"`);
      assert.equal(page.headers['x-real-ip'], undefined);
      assert.equal(hook.headers['x-forwarded-for'], '127.0.0.1', 'the connect webhook sees the same');
    }
    await sc.close();
  }
  await app.close();
});

test('hop-by-hop headers, those named in Connection included, are not forwarded either way', async (t) => {
  const app = await startApp(() => ({ status: 200, headers: { connection: 'x-app-hop', 'x-app-hop': 'secret', 'keep-alive': 'timeout=5', 'x-app-kept': 'yes', 'proxy-authenticate': 'Basic' }, body: 'ok' }));
  const sc = await startSidecar(app.url);
  t.after(async () => { await sc.close(); await app.close(); });
  const answer = await new Promise<{ headers: Record<string, string | string[] | undefined> }>((resolve, reject) => {
    const req = httpRequest(`${sc.httpUrl}/hop`, { headers: { connection: 'x-client-hop, keep-alive', 'x-client-hop': 'secret', 'proxy-authorization': 'Basic eA==', te: 'trailers', 'x-client-kept': 'yes' } }, (res) => {
      res.resume();
      res.on('end', () => resolve({ headers: res.headers }));
    });
    req.on('error', reject);
    req.end();
  });
  const seen = app.requests.find((r) => r.url === '/hop')!;
  assert.equal(seen.headers['x-client-hop'], undefined);
  assert.equal(seen.headers['proxy-authorization'], undefined);
  assert.equal(seen.headers.te, undefined);
  assert.equal(seen.headers['x-client-kept'], 'yes');
  assert.equal(answer.headers['x-app-hop'], undefined);
  assert.equal(answer.headers['proxy-authenticate'], undefined);
  assert.equal(answer.headers['x-app-kept'], 'yes');
});

test('a proxied request the app does not answer within proxy.timeoutMs gets 504', async (t) => {
  const app = await startApp(async (r) => (r.url === '/slow' ? new Promise<never>(() => {}) : { status: 204 }));
  const sc = await startSidecar(app.url, { proxy: { timeoutMs: 200 } });
  t.after(async () => { await sc.close(); await app.close(); });
  const res = await fetch(`${sc.httpUrl}/slow`);
  assert.equal(res.status, 504);
  assert.equal(((await res.json()) as { error: string }).error, 'gateway_timeout');
});

test('a chunked request body reaches the app whole, and the next request on the same connection is its own', async (t) => {
  const app = await startApp((r) => ({ status: 200, headers: { 'content-type': 'text/plain' }, body: `got ${r.method} ${r.text}` }));
  const sc = await startSidecar(app.url);
  t.after(async () => { await sc.close(); await app.close(); });
  const socket = tcpConnect(sc.sb.publicAddress.port, '127.0.0.1');
  let text = '';
  socket.on('data', (d: Buffer) => { text += d.toString('latin1'); });
  await once(socket, 'connect');
  socket.write('GET /one HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: keep-alive, x-hop\r\nX-Hop: 1\r\n\r\n5\r\nhello\r\n0\r\n\r\n');
  socket.write('GET /two HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
  await guard(once(socket, 'close'), 'both answers');
  assert.match(text, /got GET hello/);
  assert.match(text, /got GET (?:\r\n|$)/);
  assert.deepEqual(app.requests.map((r) => [r.url, r.text]), [['/one', 'hello'], ['/two', '']]);
  assert.equal(app.requests[0].headers['x-hop'], undefined);
});

test('webhooks going out unsigned to a non-loopback app log a startup warning; signed or loopback ones do not', async () => {
  const warnings = async (overrides: Record<string, unknown>) => {
    const lines: string[] = [];
    const log = pino({ level: 'warn' }, new Writable({ write(chunk, _e, done) { lines.push(String(chunk)); done(); } }));
    // The app is never contacted: nothing connects, and start() does not call it.
    const sb = new Switchboard(testConfig('http://app.example:3000', overrides), { plugins: builtinPlugins, log, metrics: undefined });
    await sb.start();
    await sb.close();
    return lines.map((l) => JSON.parse(l) as { level: number; msg: string }).filter((l) => /unsigned/.test(l.msg));
  };
  const unsigned = await warnings({});
  assert.equal(unsigned.length, 1);
  assert.equal(unsigned[0].level, 40, 'a warning, not an error');
  assert.deepEqual(await warnings({ webhooks: { secret: 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw' } }), []);
  assert.deepEqual(await warnings({ app: { url: 'http://127.0.0.1:3000' } }), []);
  assert.deepEqual(await warnings({ app: { url: 'http://[::1]:3000' } }), []);
});

test('property: any request target gives null or a canonical path, and a matcher answer, without throwing', () => {
  const isWebhook = webhookPathMatcher(['/ws/connect', '/ws/message', null]);
  const piece = fc.oneof(fc.constantFrom('/', '//', '.', '..', '%', '%2', '%25', '%2e', '%2F', '%5C', '\\', ';', '?', 'ws', 'message', 'M', '%6D', '%E0%A4'), fc.string({ maxLength: 4 }));
  fc.assert(fc.property(fc.array(piece, { maxLength: 24 }).map((p) => p.join('')), (target) => {
    const path = canonicalPath(target);
    if (path !== null) {
      assert.ok(path.startsWith('/'), path);
      assert.ok(!/\/\/|(^|\/)\.\.?(\/|$)/.test(path), `${target} gave ${path}`);
    }
    assert.equal(typeof isWebhook(target), 'boolean');
  }), { numRuns: 2000 });
});

test('metrics.listen: metrics and health on a port of their own without the token; nothing else there', async (t) => {
  const app = await startApp();
  const token = 'a-control-token-of-some-length';
  const sc = await startSidecar(app.url, { control: { token }, metrics: { listen: '127.0.0.1:0' } });
  t.after(async () => { await sc.close(); await app.close(); });
  const port = sc.sb.metricsAddress!.port;
  const metrics = await fetch(`http://127.0.0.1:${port}/metrics`);
  assert.equal(metrics.status, 200);
  assert.match(await metrics.text(), /switchboard_connections /);
  assert.equal((await fetch(`http://127.0.0.1:${port}/healthz`)).status, 200);
  assert.equal((await fetch(`http://127.0.0.1:${port}/readyz`)).status, 200);
  assert.equal((await fetch(`http://127.0.0.1:${port}/v1/broadcast`, { method: 'POST', body: '{}' })).status, 404, 'no push API there');
  assert.equal((await fetch(`http://127.0.0.1:${port}/metrics`, { method: 'DELETE' })).status, 405);
  assert.equal((await sc.control('GET', '/metrics')).status, 401, 'the control port still wants its token');
  assert.equal((await sc.control('GET', '/metrics', undefined, { authorization: `Bearer ${token}` })).status, 200);
});
