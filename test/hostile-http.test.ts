// Hostile plain HTTP through the public port: a client cannot pose as Switchboard to the app,
// cannot reach the app's webhook paths, and learns nothing of the app's address.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { once } from 'node:events';
import { WebSocketServer } from 'ws';
import { startApp } from './helpers/app.js';
import { startSidecar } from './helpers/sidecar.js';
import { connect } from './helpers/client.js';
import { freePort } from './helpers/process.js';
import { canonicalPath } from '../proxy/forwarding.js';

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
  for (const path of ['/ws/connect', '/ws/message', '/ws/disconnect', '/ws//message', '/ws/%6Dessage', '/ws/./message', '/x/../ws/message', '/ws/message/', '/ws/message?x=1', '/%E0%A4%A']) {
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
  ];
  for (const [input, output] of table) assert.equal(canonicalPath(input), output, input);
});
