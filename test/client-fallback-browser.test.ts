// A page in Debian's Chromium behind a proxy that drops WebSocket upgrades: it loads the browser
// bundle from /switchboard/client.js, its client moves to Server-Sent Events (the browser's
// WebSocket hides why it failed, so the failure alone decides), gets pushes and sends a message.
import { test } from 'node:test';
import { browserSkip, launchChromium } from './helpers/browser.js';
import assert from 'node:assert/strict';
import { startApp, type TestApp } from './helpers/app.js';
import { startSidecar, type Sidecar } from './helpers/sidecar.js';
import { startBlockingProxy, type BlockingProxy } from './client-fallback-proxy.js';


let app: TestApp;
let sc: Sidecar;
let proxy: BlockingProxy;

// Everything on the proxy's origin: the page (the app's, through the sidecar), the bundle, the
// stream and its POSTs, which get no CORS headers.
const page = `<!doctype html><meta charset="utf-8"><title>client behind a proxy without WebSockets</title>
<script type="module">
  import { SwitchboardClient } from '/switchboard/client.js';
  const client = new SwitchboardClient(location.origin.replace(/^http/, 'ws') + '/ws');
  const seen = (window.seen = { transports: [], opened: null, received: [], closes: 0 });
  client.on('transport', ({ name }) => seen.transports.push(name));
  client.on('open', ({ session }) => { seen.opened = session; });
  client.on('close', () => { seen.closes++; });
  client.on('message', (data, { seq }) => seen.received.push({ seq, data }));
  window.client = client;
</script>`;

test.before(async () => {
  app = await startApp((req) => {
    if (req.url === '/page') return { headers: { 'content-type': 'text/html; charset=utf-8' }, body: page };
    if (req.url === '/ws/connect') return { body: { user: 'page-user', channels: ['room'] } };
    return { status: 204 };
  });
  sc = await startSidecar(app.url);
  proxy = await startBlockingProxy(sc.httpUrl);
});
test.after(async () => {
  await proxy.close();
  await sc.close();
  await app.close();
});

test('a page whose WebSocket is dropped falls back to SSE: pushes by channel and user arrive, send() is acked', { skip: browserSkip }, async (t) => {
  const browser = await launchChromium();
  t.after(() => browser.close());
  const tab = await browser.newPage();
  const errors: string[] = [];
  tab.on('pageerror', (err) => errors.push(err.message));
  type Seen = { transports: string[]; opened: string | null; received: Array<{ seq: number; data: unknown }>; closes: number };
  const seen = () => tab.evaluate(() => (window as unknown as { seen: Seen }).seen);

  await tab.goto(`${proxy.url}/page`);
  await tab.waitForFunction(() => (window as unknown as { seen?: Seen }).seen?.opened);
  const first = await seen();
  assert.deepEqual(first.transports, ['sse']);
  assert.ok(first.closes >= 1, 'the WebSocket attempt failed first');
  assert.ok(proxy.seen.drop >= 1, 'the browser tried an upgrade');
  const info = (await sc.control('GET', `/v1/connections/${first.opened}`)).json;
  assert.equal(info.transport, 'sse');
  assert.equal(info.user, 'page-user');

  assert.equal((await sc.control('POST', '/v1/channels/room/messages', { hello: 'room' })).status, 202);
  assert.equal((await sc.control('POST', '/v1/users/page-user/messages', 'to the user', { 'content-type': 'text/plain' })).status, 202);
  await tab.waitForFunction(() => (window as unknown as { seen: Seen }).seen.received.length === 2);
  assert.deepEqual((await seen()).received, [{ seq: 1, data: { hello: 'room' } }, { seq: 2, data: 'to the user' }]);

  // send() resolves on the ack, which the POST's answer carries once the app's webhook took it.
  await tab.evaluate(() => (window as unknown as { client: { send(d: unknown): Promise<void> } }).client.send({ text: 'from the page' }));
  const message = await app.waitFor((r) => r.url === '/ws/message', 'the page\'s message');
  assert.deepEqual(message.json(), { text: 'from the page' });
  assert.equal(message.headers['x-switchboard-connection'], first.opened);
  assert.deepEqual(errors, []);
});
