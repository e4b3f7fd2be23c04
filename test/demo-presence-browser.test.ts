// The demo page's "here now" list in Debian's Chromium: three pages of two users, each opened after
// the others (so its list comes from the app's snapshot, then the frames). Closing bob's page takes
// bob off the others' lists; closing one of alice's two pages leaves alice on the last one.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Page } from 'playwright-core';
import { browserSkip, launchChromium } from './helpers/browser.js';
import { startDemo } from './helpers/demo.js';
import { eventually } from './helpers/eventually.js';

/** The names a page lists, in its order. */
const listed = (page: Page) => page.$$eval('#members li', (lis) => lis.map((li) => li.textContent));

async function shows(page: Page, names: string[], what: string): Promise<void> {
  let last: unknown = null;
  await eventually(async () => JSON.stringify(last = await listed(page)) === JSON.stringify(names), () => `${what}: expected ${JSON.stringify(names)}, the page lists ${JSON.stringify(last)}`);
}

test('the demo lists who is here: three pages, two users; a closed page takes its member away unless the user has another', { skip: browserSkip }, async (t) => {
  const demo = await startDemo();
  t.after(() => demo.close());
  const browser = await launchChromium();
  t.after(() => browser.close());
  const errors: string[] = [];
  const open = async (name: string) => {
    // A context each: pages that share no cookies, as two people's browsers.
    const page = await (await browser.newContext()).newPage();
    page.on('pageerror', (err) => errors.push(err.message));
    await page.goto(`${demo.sc.httpUrl}/?name=${name}`);
    await page.waitForFunction(() => document.getElementById('status')?.textContent?.startsWith('connected'));
    return page;
  };
  const members = async () => (await demo.sc.control('GET', '/v1/channels/chat/presence')).json.members.map((m: { user: string; connections: number }) => `${m.user}:${m.connections}`);

  const alice1 = await open('alice');
  await shows(alice1, ['alice'], 'the first page lists itself');
  const bob = await open('bob');
  await shows(bob, ['alice', 'bob'], 'a page opened after another lists both');
  await shows(alice1, ['alice', 'bob'], 'bob appears on alice\'s page');
  const alice2 = await open('alice');
  await shows(alice2, ['alice', 'bob'], 'alice\'s second page');
  assert.deepEqual(await members(), ['alice:2', 'bob:1']);

  // Bob leaves: the page's close ends his session at once, and both of alice's pages drop him.
  await bob.close();
  await shows(alice1, ['alice'], 'bob gone from alice\'s first page');
  await shows(alice2, ['alice'], 'bob gone from alice\'s second page');
  // One of alice's pages closes: she has another, so she is still here.
  await alice1.close();
  await eventually(async () => JSON.stringify(await members()) === '["alice:1"]', 'alice down to one connection');
  // A chat line after it shows that the page is live and had nothing else to draw.
  await alice2.fill('#say input[name=text]', 'still here');
  await alice2.click('#say button');
  await alice2.waitForFunction(() => [...document.querySelectorAll('#log li.message')].some((li) => li.textContent === 'alice: still here'));
  assert.deepEqual(await listed(alice2), ['alice']);
  assert.deepEqual(errors, []);
});
