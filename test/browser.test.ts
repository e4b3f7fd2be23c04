// The demo page in Debian's Chromium: the socket breaks on the server side, messages are
// pushed meanwhile, and the page shows every one of them exactly once after it resumes.
import { test } from 'node:test';
import { browserSkip, launchChromium } from './helpers/browser.js';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { randomBytes } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import type { Browser } from 'playwright-core';
import { createDemoApp } from '../config-examples/demo/app.js';
import { startSidecar } from './helpers/sidecar.js';
import { Push } from '../proxy/push.js';
import { toChannel } from '../proxy/target.js';


test('the demo page resumes after a server-side break and shows every message once', { skip: browserSkip }, async (t) => {
  const webhookSecret = `whsec_${randomBytes(32).toString('base64')}`;
  const options = { controlUrl: '', webhookSecret };
  const app = createDemoApp(options);
  app.listen(0, '127.0.0.1');
  await once(app, 'listening');
  const sc = await startSidecar(`http://127.0.0.1:${(app.address() as AddressInfo).port}`, { webhooks: { secret: webhookSecret } });
  options.controlUrl = sc.controlUrl;
  const browser: Browser = await launchChromium();
  t.after(async () => {
    await browser.close();
    await sc.close();
    app.closeAllConnections();
    app.close();
  });

  const page = await browser.newPage();
  const errors: string[] = [];
  page.on('pageerror', (err) => errors.push(err.message));
  await page.goto(`${sc.httpUrl}/?name=tester`);
  await page.waitForFunction(() => document.getElementById('status')?.textContent?.startsWith('connected'));
  const lines = () => page.$$eval('#log li.message', (items) => items.map((li) => ({ seq: (li as HTMLElement).dataset.seq, text: li.textContent })));
  const waitForLines = (n: number) => page.waitForFunction((count) => document.querySelectorAll('#log li.message').length >= count, n);

  assert.equal(await page.inputValue('input[name=name]'), 'tester', 'the name field shows who you joined as');
  // A line sent is shown as pending until the app took it (its ack), then only as the channel's message.
  await page.evaluate(() => {
    const seen = { added: 0, removed: 0 };
    (window as unknown as { pendingSeen: typeof seen }).pendingSeen = seen;
    const isPending = (n: Node) => n instanceof Element && n.classList.contains('pending');
    new MutationObserver((records) => {
      for (const r of records) {
        for (const n of r.addedNodes) if (isPending(n)) seen.added++;
        for (const n of r.removedNodes) if (isPending(n)) seen.removed++;
      }
    }).observe(document.getElementById('log')!, { childList: true });
  });

  // The page's own send goes through the app's message webhook and comes back on the channel.
  await page.fill('input[name=text]', 'hello from the page');
  await page.click('#say button');
  await waitForLines(2);
  await page.waitForFunction(() => (window as unknown as { pendingSeen: { removed: number } }).pendingSeen.removed === 1);
  assert.deepEqual(await page.evaluate(() => (window as unknown as { pendingSeen: object }).pendingSeen), { added: 1, removed: 1 });
  assert.equal(await page.locator('#log li.pending').count(), 0);

  for (let i = 1; i <= 3; i++) {
    assert.equal((await sc.control('POST', '/v1/channels/chat/messages', { from: 'test', text: `before ${i}` })).status, 202);
  }
  await waitForLines(5);

  // Break the socket from the server side: the session detaches and waits for a resume.
  // The page may come back within milliseconds, so the pushes go in synchronously, in the
  // same turn of the event loop that first sees the session detached.
  const [session] = [...sc.sb.registry.all()];
  session.terminate();
  for (let i = 0; i < 100_000 && session.state !== 'detached'; i++) await new Promise((r) => setImmediate(r));
  assert.equal(session.state, 'detached');
  const queued = [1, 2, 3, 4, 5].map((i) => sc.sb.directory.routeLocal(
    toChannel('chat'), new Push({ kind: 'json', json: JSON.stringify({ from: 'test', text: `while away ${i}` }) })).counts.queued);
  assert.deepEqual(queued, [1, 1, 1, 1, 1]);

  await page.waitForFunction(() => document.getElementById('status')?.textContent?.startsWith('resumed'));
  await waitForLines(10);
  await sc.control('POST', '/v1/channels/chat/messages', { from: 'test', text: 'after' });
  await waitForLines(11);
  const shown = await lines();
  assert.deepEqual(shown.map((l) => l.text), [
    'demo: welcome, tester',
    'tester: hello from the page',
    'test: before 1', 'test: before 2', 'test: before 3',
    'test: while away 1', 'test: while away 2', 'test: while away 3', 'test: while away 4', 'test: while away 5',
    'test: after',
  ]);
  assert.equal(new Set(shown.map((l) => l.seq)).size, shown.length, 'no seq shown twice');
  assert.deepEqual(errors, []);
});
