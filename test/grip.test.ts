// An app written for Pushpin, on the published @fanoutio/serve-grip and @fanoutio/grip
// packages and unmodified, behind Switchboard's websocket-over-http dialect.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { startSidecar, type Sidecar } from './helpers/sidecar.js';
import { connect, TestClient } from './helpers/client.js';
import { guard } from './helpers/app.js';
import { eventually } from './helpers/eventually.js';

interface GripApp {
  readonly url: string;
  /** Raw request bodies the app received, in order (WebSocket-over-HTTP events). */
  bodies(): Promise<string[]>;
  /** Has the app publish through its own Publisher. */
  publish(item: { channel: string; text?: string; base64?: string; close?: number }): Promise<{ status: number; text: string }>;
}

const appPath = new URL('./fixtures/grip-app.js', import.meta.url).pathname;

/** The app in its own process, on a port of its own; `configure` tells it where to publish. */
async function spawnApp(t: TestContext): Promise<GripApp & { configure(gripUrl: string): Promise<void> }> {
  const child = spawn(process.execPath, [appPath], { stdio: ['pipe', 'pipe', 'inherit'] });
  t.after(async () => {
    if (child.exitCode === null) {
      child.kill('SIGTERM');
      await once(child, 'exit');
    }
  });
  let out = '';
  const seen = (pattern: RegExp, what: string) => guard(new Promise<RegExpExecArray>((resolve) => {
    const check = () => { const m = pattern.exec(out); if (m) { child.stdout!.off('data', onData); resolve(m); } };
    const onData = (d: Buffer) => { out += d.toString(); check(); };
    child.stdout!.on('data', onData);
    check();
  }), what);
  const port = Number((await seen(/listening (\d+)\n/, 'the GRIP app to listen'))[1]);
  const url = `http://127.0.0.1:${port}`;
  return {
    url,
    async configure(gripUrl) {
      child.stdin!.write(`${gripUrl}\n`);
      await seen(/configured\n/, 'the GRIP app to take its publish URL');
    },
    bodies: async () => (await fetch(`${url}/_bodies`)).json() as Promise<string[]>,
    publish: async (item) => {
      const res = await fetch(`${url}/_publish`, { method: 'POST', body: JSON.stringify(item) });
      return { status: res.status, text: await res.text() };
    },
  };
}

const gripUrlOf = (sc: Sidecar, signed?: { iss: string; key: string }) =>
  `${sc.controlUrl}/${signed ? `?iss=${signed.iss}&key=${encodeURIComponent(signed.key)}` : ''}`;

/** The app first (on a port of its own), then Switchboard in front of it, then the app learns where to publish. */
async function setup(t: TestContext, grip: Record<string, unknown> = {}, signed?: { iss: string; key: string }): Promise<{ app: GripApp; sc: Sidecar }> {
  const app = await spawnApp(t);
  const sc = await startSidecar(app.url, { webhooks: { dialect: 'websocket-over-http' }, grip });
  t.after(() => sc.close());
  await app.configure(gripUrlOf(sc, signed));
  return { app, sc };
}

async function open(sc: Sidecar, query = ''): Promise<TestClient> {
  return connect(sc.wsUrl(`/ws${query}`));
}

test('accept, echo in order, meta round trip, and the events the app sees', async (t) => {
  const { app, sc } = await setup(t);
  const c = await open(sc, '?room=1');
  assert.match((await app.bodies())[0], /^OPEN\r\n$/);
  for (let i = 0; i < 5; i++) c.send(`m${i}`);
  for (let i = 0; i < 5; i++) assert.equal((await c.next()).text, `echo:m${i}`);
  c.send('meta?');
  assert.equal((await c.next()).text, 'meta:alice');
  await c.close(1000);
  await eventually(async () => (await app.bodies()).some((b) => b.startsWith('CLOSE')), 'CLOSE event at the app');
  assert.ok((await app.bodies()).some((b) => b.includes('TEXT 2\r\nm0\r\n')));
});

test('Publisher.publishFormats reaches subscribers; a published close carries its code', async (t) => {
  const { app, sc } = await setup(t);
  const a = await open(sc);
  const b = await open(sc);
  assert.deepEqual(await app.publish({ channel: 'room', text: 'to everyone' }), { status: 200, text: 'published' });
  assert.equal((await a.next()).text, 'to everyone');
  assert.equal((await b.next()).text, 'to everyone');
  assert.equal((await app.publish({ channel: 'room', base64: Buffer.from([1, 2, 3]).toString('base64') })).status, 200);
  const bin = await a.next();
  assert.equal(bin.binary, true);
  assert.deepEqual([...bin.data], [1, 2, 3]);
  b.send('leave');
  await eventually(async () => (await sc.control('GET', '/v1/channels/room')).json.connections === 1, 'unsubscribe');
  assert.equal((await app.publish({ channel: 'room', close: 4012 })).status, 200);
  assert.equal((await a.closed).code, 4012);
  assert.equal(b.ws.readyState, b.ws.OPEN);
  await b.close();
});

test('the app closes with a code; the app refuses a handshake with its own status and body', async (t) => {
  const { sc } = await setup(t);
  const c = await open(sc);
  c.send('close-me');
  assert.equal((await c.closed).code, 4011);
  const refused = await open(sc, '?deny=1').then(() => null, (e: any) => e);
  assert.equal(refused.status, 403);
  const body = await new Promise<string>((resolve) => {
    let text = '';
    refused.res.on('data', (d: Buffer) => { text += d; });
    refused.res.on('end', () => resolve(text));
  });
  assert.equal(body, 'you may not\n');
  assert.match(String(refused.res.headers['content-type']), /^text\/plain/);
});

test('GRIP detach: messages from the client are no longer relayed, pushes still arrive', async (t) => {
  const { app, sc } = await setup(t);
  const c = await open(sc);
  c.send('detach');
  // Frames that travel in the same request as 'detach' reach the app, as with Pushpin; wait for
  // the app's answer to have been carried out.
  assert.equal((await c.next()).text, 'detached');
  c.send('after detach');
  c.send('after detach 2');
  assert.equal((await app.publish({ channel: 'room', text: 'still subscribed' })).status, 200);
  assert.equal((await c.next()).text, 'still subscribed');
  assert.ok(!(await app.bodies()).some((b) => b.includes('after detach')));
  await c.close();
});

test('GRIP keep-alive control messages make Switchboard send the keep-alive to the client', async (t) => {
  const { sc } = await setup(t);
  const c = await open(sc);
  c.send('keep-alive');
  assert.equal((await c.next()).text, 'still here');
  assert.equal((await c.next()).text, 'still here');
  await c.close();
});

test('publish auth: a JWT publisher is accepted, a wrong key is refused as Pushpin would', async (t) => {
  const key = 'a-shared-publish-key-of-some-length';
  const { app, sc } = await setup(t, { publishAuth: { jwt: { key, iss: 'app' } } }, { iss: 'app', key });
  const c = await open(sc);
  assert.equal((await app.publish({ channel: 'room', text: 'signed' })).status, 200);
  assert.equal((await c.next()).text, 'signed');
  const forger = await spawnApp(t);
  await forger.configure(gripUrlOf(sc, { iss: 'app', key: 'not the key at all' }));
  const forged = await forger.publish({ channel: 'room', text: 'forged' });
  assert.equal(forged.status, 502);
  assert.match(forged.text, /nauthorized/);
  const plain = await fetch(`${sc.controlUrl}/publish/`, { method: 'POST', body: '{"items":[]}' });
  assert.equal(plain.status, 401);
  await c.close();
});

test('publish answers bad bodies and methods the way Pushpin does', async (t) => {
  const { sc } = await setup(t);
  const bad = await fetch(`${sc.controlUrl}/publish/`, { method: 'POST', body: 'not json' });
  assert.equal(bad.status, 400);
  assert.equal(await bad.text(), 'Body is not valid JSON.\n');
  const shape = await fetch(`${sc.controlUrl}/publish`, { method: 'POST', body: '[]' });
  assert.equal(shape.status, 400);
  assert.equal(await shape.text(), 'Invalid format.\n');
  const get = await fetch(`${sc.controlUrl}/publish/`);
  assert.equal(get.status, 405);
  assert.equal(get.headers.get('allow'), 'POST');
  const json = await fetch(`${sc.controlUrl}/publish/`, { method: 'POST', headers: { accept: 'application/json' }, body: '{"items":[]}' });
  assert.equal(json.status, 200);
  assert.deepEqual(await json.json(), { message: 'Published' });
});

test('malformed events from the app close the client with 1011 and are logged, never a crash', async (t) => {
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString();
      res.writeHead(200, { 'content-type': 'application/websocket-events' });
      res.end(body.startsWith('OPEN') ? 'OPEN\r\n' : 'TEXT zz\r\nbroken');
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const sc = await startSidecar(`http://127.0.0.1:${(server.address() as AddressInfo).port}`, { webhooks: { dialect: 'websocket-over-http' } });
  t.after(async () => { await sc.close(); server.closeAllConnections(); server.close(); });
  const c = await open(sc);
  c.send('anything');
  assert.equal((await c.closed).code, 1011);
  const again = await open(sc);
  assert.equal(again.ws.readyState, again.ws.OPEN, 'the sidecar keeps serving');
  await again.close();
});
