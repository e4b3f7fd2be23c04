// The demo with WebSockets blocked, in Debian's Chromium: both pages open through a proxy that
// drops every upgrade, so their clients hold their sessions over Server-Sent Events. They chat; the
// proxy cuts one page's stream while that page is offline, the other page says two lines meanwhile,
// and once back the first page resumes its session and shows both lines, each once, in order.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Page } from 'playwright-core';
import { browserSkip, launchChromium } from './helpers/browser.js';
import { startDemo } from './helpers/demo.js';
import { eventually } from './helpers/eventually.js';
import { startBlockingProxy } from './client-fallback-proxy.js';

/** The chat lines a page shows, in order. */
const lines = (page: Page) => page.$$eval('#log li.message', (lis) => lis.map((li) => li.textContent));
const status = (page: Page) => page.$eval('#status', (p) => p.textContent ?? '');

async function say(page: Page, text: string): Promise<void> {
  await page.fill('#say input[name=text]', text);
  await page.click('#say button');
  // Acked: the app took it (its pending line is gone).
  await page.waitForFunction(() => document.querySelectorAll('#log li.pending').length === 0);
}

test('the demo through a proxy that refuses upgrades: two pages chat over SSE; a dropped stream resumes with the lines it missed, once each', { skip: browserSkip }, async (t) => {
  const demo = await startDemo();
  t.after(() => demo.close());
  const proxy = await startBlockingProxy(demo.sc.httpUrl);
  t.after(() => proxy.close());
  const browser = await launchChromium();
  t.after(() => browser.close());
  const errors: string[] = [];
  const open = async (name: string) => {
    const context = await browser.newContext();
    const page = await context.newPage();
    page.on('pageerror', (err) => errors.push(err.message));
    await page.goto(`${proxy.url}/?name=${name}`);
    await page.waitForFunction(() => document.getElementById('status')?.textContent?.startsWith('connected'));
    return { context, page };
  };
  const transport = async (user: string) => (await demo.sc.control('GET', `/v1/connections?user=${user}`)).json.connections.map((c: { transport: string | null }) => c.transport);

  const ann = await open('ann');
  const bob = await open('bob');
  assert.deepEqual(await transport('ann'), ['sse']);
  assert.deepEqual(await transport('bob'), ['sse']);
  assert.ok(proxy.seen.drop >= 2, 'both pages tried a WebSocket first');
  await say(ann.page, 'hi bob');
  await eventually(async () => (await lines(bob.page)).includes('ann: hi bob'), 'bob sees ann\'s line');

  // Bob's network goes, and the proxy cuts his stream: his session waits for him (its grace).
  await bob.context.setOffline(true);
  assert.equal(proxy.dropStreams('name=bob'), 1);
  await eventually(async () => (await status(bob.page)).startsWith('reconnecting'), 'bob\'s page sees the drop');
  await say(ann.page, 'are you there?');
  await say(ann.page, 'I will wait');
  assert.deepEqual((await lines(bob.page)).filter((l) => l !== 'demo: welcome, bob'), ['ann: hi bob'], 'nothing reached bob while he was away');

  await bob.context.setOffline(false);
  let shown = '';
  await eventually(async () => (shown = await status(bob.page)).startsWith('resumed'), () => `bob's page resumes; it shows "${shown}"`, 30_000);
  await eventually(async () => (await lines(bob.page)).includes('ann: I will wait'), 'the missed lines', 10_000);
  assert.deepEqual(await lines(bob.page), ['demo: welcome, bob', 'ann: hi bob', 'ann: are you there?', 'ann: I will wait']);
  // Still on SSE, and the same session: the lines were held for it, not sent again to a new one.
  assert.deepEqual(await transport('bob'), ['sse']);
  await say(bob.page, 'back');
  await eventually(async () => (await lines(ann.page)).includes('bob: back'), 'ann sees bob again');
  assert.deepEqual(await lines(ann.page), ['demo: welcome, ann', 'ann: hi bob', 'ann: are you there?', 'ann: I will wait', 'bob: back']);
  assert.deepEqual(errors, []);
});
