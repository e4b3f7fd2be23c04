// The demo app trusts only what Switchboard signed: its webhook routes verify the Standard
// Webhooks signature and answer 401 otherwise, and `app.js` will not start without a secret.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { Webhook } from 'standardwebhooks';
import { newSecret, startDemo } from './helpers/demo.js';
import { connect } from './helpers/client.js';
import { guard } from './helpers/app.js';
import { eventually } from './helpers/eventually.js';
import { freePort } from './helpers/process.js';
import { createServer } from 'node:net';

async function demo(t: { after(fn: () => unknown): void }) {
  const d = await startDemo();
  t.after(() => d.close());
  return d;
}

const line = JSON.stringify({ text: 'I am admin' });

test('the demo app answers signed webhooks: a chat line goes round through the app', async (t) => {
  const { sc } = await demo(t);
  const a = await connect(`${sc.wsUrl()}?name=alice`);
  assert.deepEqual(await a.nextJson(), { from: 'demo', text: 'welcome, alice' });
  a.send({ text: 'hello' });
  assert.deepEqual(await a.nextJson(), { from: 'alice', text: 'hello' });
  await a.close();
});

test('the demo app refuses unsigned, wrongly signed, altered and stale webhooks with 401', async (t) => {
  const { appUrl, sc, webhookSecret } = await demo(t);
  const watcher = await connect(`${sc.wsUrl()}?name=watcher`);
  await watcher.nextJson();
  const post = (headers: Record<string, string>, body = line) =>
    fetch(`${appUrl}/ws/message`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-switchboard-user': 'admin', ...headers }, body });
  const signed = (secret: string, body: string, at = new Date()) => {
    const id = `msg_${randomBytes(8).toString('hex')}`;
    return { 'webhook-id': id, 'webhook-timestamp': String(Math.floor(at.getTime() / 1000)), 'webhook-signature': new Webhook(secret).sign(id, at, body) };
  };

  assert.equal((await post({})).status, 401, 'unsigned');
  assert.equal((await post(signed(newSecret(), line))).status, 401, 'signed with another secret');
  assert.equal((await post(signed(webhookSecret, '{"text":"something else"}'))).status, 401, 'body altered after signing');
  assert.equal((await post(signed(webhookSecret, line, new Date(Date.now() - 10 * 60_000)))).status, 401, 'ten minutes old');
  for (const path of ['/ws/connect', '/ws/disconnect']) {
    assert.equal((await fetch(`${appUrl}${path}`, { method: 'POST', body: '{"query":{}}' })).status, 401, path);
  }
  // A correctly signed one is accepted: the check is the signature, not the sender.
  assert.equal((await post(signed(webhookSecret, line))).status, 204);
  assert.deepEqual(await watcher.nextJson(), { from: 'admin', text: 'I am admin' });
  // None of the refused ones reached the channel before it.
  assert.equal(watcher.frames.length, 0);
  await watcher.close();
});

test('the demo app does not start without SWITCHBOARD_WEBHOOK_SECRET', async () => {
  const env: NodeJS.ProcessEnv = { ...process.env, PORT: '0' };
  delete env.SWITCHBOARD_WEBHOOK_SECRET;
  const child = spawn(process.execPath, [new URL('../config-examples/demo/app.js', import.meta.url).pathname], { env, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (c: Buffer) => (stderr += c));
  const [code] = await guard(once(child, 'exit'), 'the demo app to exit');
  assert.equal(code, 2);
  assert.match(stderr, /SWITCHBOARD_WEBHOOK_SECRET/);
});

/** The launcher `npm start` runs, in a process group of its own, as a terminal would start it. */
function launch(env: Record<string, string>) {
  const child = spawn(process.execPath, [new URL('../config-examples/demo/start.js', import.meta.url).pathname], {
    env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'], detached: true,
  });
  let output = '';
  child.stdout!.on('data', (c: Buffer) => (output += c));
  child.stderr!.on('data', (c: Buffer) => (output += c));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return { child, exited, output: () => output };
}

test('npm start: a banner once both listen, naming the ports and a push that works; Ctrl-C drains once and exits 0', async (t) => {
  const [app, pub, control] = [await freePort(), await freePort(), await freePort()];
  const demo = launch({ PORT: String(app), SWITCHBOARD_LISTEN: `127.0.0.1:${pub}`, SWITCHBOARD_CONTROL_LISTEN: `127.0.0.1:${control}` });
  t.after(() => { try { process.kill(-demo.child.pid!, 'SIGKILL'); } catch { /* gone */ } });
  await eventually(() => demo.output().includes('Ctrl-C stops both'), () => `the banner; got: ${demo.output()}`, 20_000);
  const out = demo.output();
  assert.ok(out.indexOf('"msg":"switchboard ready"') < out.indexOf('Switchboard demo:'), 'the banner comes after the ports listen');
  assert.ok(out.includes(`open http://localhost:${pub}`) && out.includes(`http://127.0.0.1:${control}/`), out);
  // The banner's curl, as fetch: the line reaches a client of the demo.
  const client = await connect(`ws://127.0.0.1:${pub}/ws?name=reader`);
  await client.nextJson();
  const push = await fetch(`http://127.0.0.1:${control}/v1/channels/chat/messages`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"from":"curl","text":"hello"}' });
  assert.equal(push.status, 202);
  assert.deepEqual(await client.nextJson(), { from: 'curl', text: 'hello' });
  // A terminal's Ctrl-C goes to the whole foreground group.
  process.kill(-demo.child.pid!, 'SIGINT');
  assert.equal(await guard(demo.exited, 'the demo to stop', 20_000), 0);
  assert.ok(!demo.output().includes('second signal'), demo.output());
  assert.match(demo.output(), /"msg":"closed"/);
});

test('npm start with a port in use: one line naming it, no stack trace, exit 1', async (t) => {
  const busy = createServer();
  await new Promise<void>((resolve) => busy.listen(0, '127.0.0.1', () => resolve()));
  t.after(() => busy.close());
  const taken = (busy.address() as AddressInfo).port;
  const demo = launch({ PORT: String(await freePort()), SWITCHBOARD_LISTEN: `127.0.0.1:${taken}`, SWITCHBOARD_CONTROL_LISTEN: `127.0.0.1:${await freePort()}` });
  t.after(() => { try { process.kill(-demo.child.pid!, 'SIGKILL'); } catch { /* gone */ } });
  assert.equal(await guard(demo.exited, 'the demo to give up', 20_000), 1);
  assert.match(demo.output(), new RegExp(`public port ${taken} on 127\\.0\\.0\\.1 is already in use`));
  assert.ok(!/^\s+at /m.test(demo.output()), `no stack trace: ${demo.output()}`);
});
