// A page with nothing but `new EventSource(url, { withCredentials: true })` in Debian's
// Chromium: it receives pushes; the network is cut (a TCP proxy in front of the sidecar that the
// test cuts and holds down) while more are pushed; the browser reconnects by itself, with its
// cookie and Last-Event-ID, and the page gets exactly the missed messages, on the same session.
import { test } from 'node:test';
import { browserSkip, launchChromium } from './helpers/browser.js';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect, createServer, type AddressInfo, type Socket } from 'node:net';
import type { Browser } from 'playwright-core';
import { startApp } from './helpers/app.js';
import { startSidecar } from './helpers/sidecar.js';
import { eventually } from './helpers/eventually.js';


const PAGE = `<!doctype html><meta charset="utf-8"><title>sse</title><script>
window.got = []; window.welcomes = [];
const source = new EventSource('/ws', { withCredentials: true });
source.onmessage = (e) => window.got.push({ id: e.lastEventId, data: e.data });
source.addEventListener('welcome', (e) => window.welcomes.push(JSON.parse(e.data)));
</script>`;

/** A TCP proxy the test can cut (every connection at once) and hold down (new ones closed at once). */
async function cuttableProxy(port: number) {
  const open = new Set<Socket>();
  let down = false;
  const server = createServer((client) => {
    if (down) return void client.destroy();
    const upstream = connect(port, '127.0.0.1');
    for (const s of [client, upstream]) {
      open.add(s);
      s.on('error', () => {});
      s.on('close', () => { open.delete(s); client.destroy(); upstream.destroy(); });
    }
    client.pipe(upstream);
    upstream.pipe(client);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    cut() { down = true; for (const s of open) s.destroy(); },
    restore() { down = false; },
    close() { for (const s of open) s.destroy(); server.close(); },
  };
}

test('a plain EventSource gets pushes, and after a cut network the missed ones once the browser came back by itself', { skip: browserSkip }, async (t) => {
  const app = await startApp((r) => {
    if (r.url === '/page') return { headers: { 'content-type': 'text/html; charset=utf-8' }, body: PAGE };
    if (r.url === '/ws/connect') return { body: { user: 'reader', channels: ['news'] } };
    return { status: 204 };
  });
  const sc = await startSidecar(app.url, { webhooks: { paths: { resume: '/ws/resume' } } });
  const proxy = await cuttableProxy(sc.sb.publicAddress.port);
  const browser: Browser = await launchChromium();
  t.after(async () => {
    await browser.close();
    proxy.close();
    await sc.close();
    await app.close();
  });

  const page = await browser.newPage();
  const errors: string[] = [];
  page.on('pageerror', (err) => errors.push(err.message));
  await page.goto(`${proxy.url}/page`);
  await page.waitForFunction(() => (window as any).welcomes.length === 1);
  const { session } = (await page.evaluate(() => (window as any).welcomes[0])) as { session: string };
  const got = () => page.evaluate(() => (window as any).got as Array<{ id: string; data: string }>);

  await sc.control('POST', '/v1/channels/news/messages', 'one', { 'content-type': 'text/plain' });
  await sc.control('POST', '/v1/users/reader/messages', { two: 2 });
  await page.waitForFunction(() => (window as any).got.length === 2);

  proxy.cut();
  await eventually(async () => (await sc.control('GET', `/v1/connections/${session}`)).json.state === 'detached', 'the session detached');
  await sc.control('POST', '/v1/channels/news/messages', 'three', { 'content-type': 'text/plain' });
  await sc.control('POST', '/v1/broadcast', 'four', { 'content-type': 'text/plain' });
  proxy.restore();

  await page.waitForFunction(() => (window as any).got.length >= 4, undefined, { timeout: 30_000 });
  assert.deepEqual(await got(), [
    { id: '1', data: 'one' },
    { id: '2', data: '{"two":2}' },
    { id: '3', data: 'three' },
    { id: '4', data: 'four' },
  ]);
  const welcomes = (await page.evaluate(() => (window as any).welcomes)) as Array<{ session: string; resumed: boolean }>;
  assert.deepEqual(welcomes.map((w) => [w.session, w.resumed]), [[session, false], [session, true]]);
  assert.equal(app.byPath('/ws/connect').length, 1, 'the reconnection made no connect webhook');
  const resume = await app.waitFor((r) => r.url === '/ws/resume', 'the resume webhook');
  assert.deepEqual([resume.json().replayed, resume.json().lost], [2, 0]);
  assert.equal((await sc.control('GET', `/v1/connections/${session}`)).json.transport, 'sse');
  assert.deepEqual(errors, []);
});
