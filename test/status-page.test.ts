// The status page in Debian's Chromium: loaded while clients send messages and the app pushes,
// its numbers change in place (no reload), it asks only the control port, it fits a phone, and
// it reads the token from its fragment or asks for it.
import { test } from 'node:test';
import { browserSkip, launchChromium } from './helpers/browser.js';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { startApp } from './helpers/app.js';
import { startSidecar } from './helpers/sidecar.js';
import { connect, connectReliable, type TestClient } from './helpers/client.js';
import { startWorkers } from './helpers/process.js';


const token = 'status-page-token-0123456789';
const PNG = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

const text = (page: Page, id: string) => page.$eval(`#${id}`, (el) => el.textContent ?? '');

test('the status page updates in place under traffic, asks only the control port, and fits a phone', { skip: browserSkip }, async (t) => {
  const app = await startApp((r) => (r.url === '/ws/connect' ? { body: { user: 'u', channels: ['room'] } } : { status: 204 }));
  const sc = await startSidecar(app.url, { control: { token } });
  const browser: Browser = await launchChromium();
  const clients: TestClient[] = [await connect(sc.wsUrl()), (await connectReliable(sc.wsUrl())).client];
  let traffic = true;
  t.after(async () => {
    traffic = false;
    await browser.close();
    for (const c of clients) c.ws.terminate();
    await sc.close();
    await app.close();
  });

  // A bounded traffic loop: clients send, the app pushes, until the test ends or 2,000 rounds.
  const loop = (async () => {
    for (let i = 0; traffic && i < 2000; i++) {
      clients[0].send(`frame ${i}`);
      await sc.control('POST', '/v1/channels/room/messages', { i }, { authorization: `Bearer ${token}` });
      await new Promise((r) => setTimeout(r, 20));
    }
  })();
  t.after(() => loop);

  const page = await browser.newPage();
  const errors: string[] = [];
  const requests: string[] = [];
  page.on('pageerror', (err) => errors.push(err.message));
  page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
  page.on('request', (r) => requests.push(r.url()));
  await page.goto(`${sc.controlUrl}/#token=${token}`);
  assert.equal(new URL(page.url()).hash, '', 'the token leaves the address bar');
  await page.waitForFunction(() => /\d/.test(document.getElementById('in-total')?.textContent ?? ''), undefined, { timeout: 10_000 });
  assert.equal(await text(page, 'node'), sc.sb.nodeId);
  assert.equal(await text(page, 'app'), `http://127.0.0.1:${app.port}/`);
  assert.equal(await text(page, 'state'), 'ready');
  assert.equal(await text(page, 'version'), JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')).version);
  assert.equal(await text(page, 'cluster-none'), 'not in a cluster');
  assert.match(await page.$eval('#by-mode', (el) => el.textContent ?? ''), /raw.*websocket.*1/s);

  // No reload: the same document, its numbers changed by the page's own polling.
  await page.evaluate(() => { (window as unknown as { marker: number }).marker = 1; });
  const first = { in: await text(page, 'in-total'), out: await text(page, 'out-total') };
  await page.waitForFunction((was) => document.getElementById('in-total')!.textContent !== was.in && document.getElementById('out-total')!.textContent !== was.out, first, { timeout: 15_000 });
  await page.waitForFunction(() => /\d/.test(document.getElementById('in-rate')?.textContent ?? ''), undefined, { timeout: 10_000 });
  assert.equal(await page.evaluate(() => (window as unknown as { marker?: number }).marker), 1, 'the page was not reloaded');
  assert.match(await text(page, 'webhook-p50'), /\d/);

  const origin = new URL(sc.controlUrl).origin;
  assert.ok(requests.length >= 3, 'the page polled');
  assert.deepEqual(requests.filter((u) => new URL(u).origin !== origin), [], 'nothing but the control port');
  assert.deepEqual(errors, [], 'no script errors, no policy violations');

  // A phone: nothing wider than the screen.
  await page.setViewportSize({ width: 360, height: 740 });
  const widths = await page.evaluate(() => ({ scroll: document.documentElement.scrollWidth, client: document.documentElement.clientWidth }));
  assert.ok(widths.scroll <= widths.client, `no horizontal scroll on a phone (${widths.scroll} > ${widths.client})`);
  assert.equal(await page.$eval('meta[name=viewport]', (m) => m.getAttribute('content')), 'width=device-width, initial-scale=1');

  const dir = mkdtempSync(join(tmpdir(), 'switchboard-status-'));
  const file = join(dir, 'status-phone.png');
  await page.screenshot({ path: file, fullPage: true });
  const png = readFileSync(file);
  assert.ok(png.length > PNG.length, 'a screenshot was written');
  assert.deepEqual(png.subarray(0, 8), PNG, 'it is a PNG');
});

test('without a token in the address, the page asks for it and then shows the numbers', { skip: browserSkip }, async (t) => {
  const app = await startApp();
  const sc = await startSidecar(app.url, { control: { token } });
  const browser = await launchChromium();
  t.after(async () => { await browser.close(); await sc.close(); await app.close(); });
  const page = await browser.newPage();
  const statuses: number[] = [];
  page.on('response', (r) => { if (r.url().endsWith('/v1/status')) statuses.push(r.status()); });
  await page.goto(`${sc.controlUrl}/`);
  await page.waitForSelector('#login', { state: 'visible', timeout: 10_000 });
  assert.equal(await text(page, 'node'), '–', 'nothing is shown without the token');
  assert.ok(statuses.length > 0 && statuses.every((s) => s === 401));
  await page.fill('#token', token);
  await page.click('#login button');
  await page.waitForFunction((node) => document.getElementById('node')?.textContent === node, sc.sb.nodeId, { timeout: 10_000 });
  await page.waitForSelector('#login', { state: 'hidden' });
});

test('with workers, the primary\'s page shows every worker\'s connections', { skip: browserSkip }, async (t) => {
  const app = await startApp();
  t.after(() => app.close());
  const { pub, ctl } = await startWorkers(t, app.url, 'pw');
  const browser = await launchChromium();
  t.after(() => browser.close());
  const page = await browser.newPage();
  await page.goto(`http://127.0.0.1:${ctl}/`);
  await page.waitForFunction(() => document.getElementById('node')?.textContent === 'pw', undefined, { timeout: 10_000 });
  assert.equal(await text(page, 'processes'), '2');
  assert.equal(await text(page, 'open'), '0');
  // Connections made after the page loaded, on whichever workers take them, appear without a reload.
  const clients = await Promise.all([0, 1, 2].map(() => connect(`ws://127.0.0.1:${pub}/ws`)));
  t.after(() => { for (const c of clients) c.ws.terminate(); });
  await page.waitForFunction(() => document.getElementById('open')?.textContent === '3', undefined, { timeout: 10_000 });
  assert.match(await page.$eval('#by-mode', (el) => el.textContent ?? ''), /raw.*websocket.*3/s);
});
