// The browser build of the client: one ES module with no imports (and a minified copy), served
// by the sidecar on the public port at /switchboard/client.js and /switchboard/client.min.js
// before the reverse proxy; and a page in Debian's Chromium that loads it with one
// <script type="module"> from the sidecar (another origin), gets a push and sends a message.
import { test } from 'node:test';
import { browserSkip, launchChromium } from './helpers/browser.js';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { build } from 'esbuild';
import { startApp, type TestApp } from './helpers/app.js';
import { startSidecar, type Sidecar } from './helpers/sidecar.js';

const bundleDir = new URL('../client/browser/', import.meta.url);
const files = { 'client.js': readFileSync(new URL('client.js', bundleDir)), 'client.min.js': readFileSync(new URL('client.min.js', bundleDir)) };


let app: TestApp;
let sc: Sidecar;
/** The page the app serves; it names the sidecar, which listens only once the app does. */
let page = '';

test.before(async () => {
  app = await startApp((req) => {
    if (req.url === '/page') return { headers: { 'content-type': 'text/html; charset=utf-8' }, body: page };
    if (req.url === '/ws/connect') return { body: { user: 'page-user', channels: ['room'] } };
    return { status: 204 };
  });
  sc = await startSidecar(app.url);
});
test.after(async () => {
  await sc.close();
  await app.close();
});

for (const [file, body] of Object.entries(files)) {
  test(`${file}: one ES module without imports, no \`ws\` in it, exporting what the Node entry exports`, async () => {
    const path = new URL(file, bundleDir).pathname;
    // esbuild's own reading of the file: every import it would have to follow, dynamic ones included.
    const { metafile } = await build({ entryPoints: [path], bundle: true, write: false, metafile: true, format: 'esm', logLevel: 'silent' });
    const inputs = Object.values(metafile.inputs);
    assert.equal(inputs.length, 1, 'nothing but the file itself');
    assert.deepEqual(inputs[0].imports, []);
    assert.equal(inputs[0].format, 'esm');
    const text = body.toString('utf8');
    for (const mark of ['permessage-deflate', 'Sec-WebSocket-Key', 'require(']) assert.ok(!text.includes(mark), `${file} holds ${mark}`);
    const browser = await import(new URL(file, bundleDir).href) as Record<string, unknown>;
    const node = await import('../client/index.js') as Record<string, unknown>;
    assert.deepEqual(Object.keys(browser).sort(), Object.keys(node).sort());
  });
}
test('the minified copy is smaller', () => assert.ok(files['client.min.js'].length < files['client.js'].length * 0.7));

test('the public port serves both files before the reverse proxy: type, ETag, 304, HEAD, 405', async () => {
  const before = app.requests.length;
  for (const [file, body] of Object.entries(files)) {
    const url = `${sc.httpUrl}/switchboard/${file}`;
    const res = await fetch(url);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('content-type'), 'text/javascript; charset=utf-8');
    assert.equal(res.headers.get('cache-control'), 'public, no-cache');
    assert.equal(res.headers.get('access-control-allow-origin'), '*');
    assert.equal(res.headers.get('x-content-type-options'), 'nosniff');
    assert.equal(res.headers.get('content-length'), String(body.length));
    const etag = res.headers.get('etag');
    assert.match(etag ?? '', /^"[\w-]{22}"$/);
    assert.ok(Buffer.from(await res.arrayBuffer()).equals(body), 'the built file, byte for byte');

    const again = await fetch(`${url}?v=0.1.0`, { headers: { 'if-none-match': `W/"other", ${etag}` } });
    assert.equal(again.status, 304, 'unchanged: 304, the query ignored');
    assert.equal(again.headers.get('etag'), etag);
    assert.equal(await again.text(), '');

    const head = await fetch(url, { method: 'HEAD' });
    assert.equal(head.status, 200);
    assert.equal(head.headers.get('content-length'), String(body.length));
    assert.equal(await head.text(), '');

    for (const method of ['POST', 'PUT', 'DELETE', 'OPTIONS']) {
      const refused = await fetch(url, { method, body: method === 'POST' || method === 'PUT' ? 'x' : undefined });
      assert.equal(refused.status, 405, method);
      assert.equal(refused.headers.get('allow'), 'GET, HEAD');
      assert.equal((await refused.json()).error, 'method_not_allowed');
    }
  }
  assert.equal(app.requests.length, before, 'none of them reached the app');
  // Only those two paths: the rest of /switchboard/ is the app's.
  assert.equal((await fetch(`${sc.httpUrl}/switchboard/client.mjs`)).status, 204);
  assert.equal((await fetch(`${sc.httpUrl}/switchboard/client.js/x`)).status, 204);
  assert.deepEqual(app.requests.slice(before).map((r) => r.url), ['/switchboard/client.mjs', '/switchboard/client.js/x']);
});

test('a page on the app\'s origin loads the client from the sidecar, connects, gets a push and sends to the app', { skip: browserSkip }, async (t) => {
  page = `<!doctype html><meta charset="utf-8"><title>client from the sidecar</title>
<script type="module">
  import { SwitchboardClient } from '${sc.httpUrl}/switchboard/client.js';
  const client = new SwitchboardClient('${sc.wsUrl()}');
  const seen = (window.seen = { opened: null, received: [] });
  client.on('open', ({ session }) => { seen.opened = session; });
  client.on('message', (data, { seq }) => seen.received.push({ seq, data }));
  window.client = client;
</script>`;
  const browser = await launchChromium();
  t.after(() => browser.close());
  const tab = await browser.newPage();
  const errors: string[] = [];
  tab.on('pageerror', (err) => errors.push(err.message));
  tab.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
  type Seen = { opened: string | null; received: Array<{ seq: number; data: unknown }> };
  const seen = () => tab.evaluate(() => (window as unknown as { seen: Seen }).seen);

  await tab.goto(`${app.url}/page`);
  await tab.waitForFunction(() => (window as unknown as { seen?: Seen }).seen?.opened);
  const session = (await seen()).opened!;
  assert.equal(sc.sb.registry.get(session)?.user, 'page-user', 'the sidecar holds the page\'s session');

  assert.equal((await sc.control('POST', '/v1/channels/room/messages', { hello: 'page' })).status, 202);
  await tab.waitForFunction(() => (window as unknown as { seen: Seen }).seen.received.length === 1);
  assert.deepEqual((await seen()).received, [{ seq: 1, data: { hello: 'page' } }]);

  // send() resolves on the ack, which comes once the app's message webhook took it.
  await tab.evaluate(() => (window as unknown as { client: { send(d: unknown): Promise<void> } }).client.send({ text: 'from the page' }));
  const message = await app.waitFor((r) => r.url === '/ws/message', 'the page\'s message');
  assert.deepEqual(message.json(), { text: 'from the page' });
  assert.equal(message.headers['x-switchboard-connection'], session);

  // The minified copy is the same module.
  const exported = await tab.evaluate(async (url) => Object.keys(await import(url)).sort(), `${sc.httpUrl}/switchboard/client.min.js`);
  assert.ok(exported.includes('SwitchboardClient'));
  assert.deepEqual(errors, []);
});
