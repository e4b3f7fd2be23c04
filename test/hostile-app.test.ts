// A hostile or broken app, and hostile handshake headers on their way to it: the connect webhook
// is tried once within its timeout, every timeout holds to the millisecond rather than undici's
// second, the sidecar's own headers cannot be forged, and any user or meta value travels.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { guard, startApp } from './helpers/app.js';
import { startSidecar } from './helpers/sidecar.js';
import { connectReliable, TestClient } from './helpers/client.js';
import { decodeHeaderValue, headerValue } from '../plugins/webhook/header-value.js';
import { userAgent } from '../proxy/version.js';

const never = () => new Promise<never>(() => {});

test('an app that never answers the connect webhook: one attempt, and the handshake ends 503 soon after webhooks.timeoutMs', async (t) => {
  const app = await startApp(async (r) => (r.url === '/ws/connect' ? never() : { status: 204 }));
  const sc = await startSidecar(app.url, { webhooks: { timeoutMs: 300, retry: { maxAttempts: 5, baseMs: 5, capMs: 20 } } });
  t.after(async () => { await sc.close(); await app.close(); });
  const client = new TestClient(sc.wsUrl());
  await assert.rejects(guard(client.opened, 'the handshake to end', 3000), (err: { status?: number }) => err.status === 503);
  assert.equal(app.byPath('/ws/connect').length, 1, 'connect is not retried');
});

test('webhooks.timeoutMs holds: an answer slower than it is a retryable nack before the app has even answered', async (t) => {
  let answered = false;
  const app = await startApp(async (r) => {
    if (r.url !== '/ws/message') return { status: 200 };
    await new Promise((resolve) => setTimeout(resolve, 900));
    answered = true;
    return { status: 204 };
  });
  const sc = await startSidecar(app.url, { webhooks: { timeoutMs: 200, retry: { maxAttempts: 1 } } });
  t.after(async () => { await sc.close(); await app.close(); });
  const { client } = await connectReliable(sc.wsUrl());
  client.send({ type: 'message', data: 'slow', id: 's1' });
  assert.deepEqual(await client.until('nack'), { type: 'nack', id: 's1', error: 'webhook_failed', retryable: true });
  assert.equal(answered, false, 'the nack came before the app answered: the timeout did not wait for it');
  await client.close();
});

test('client handshake headers cannot stand in for the sidecar\'s own, in either dialect', async (t) => {
  const forged = {
    'X-Switchboard-User': 'admin', 'X-Switchboard-Connection': 'fake', 'X-Switchboard-Event': 'fake',
    'X-Switchboard-Meta-Role': 'root', 'webhook-signature': 'v1,forged', 'webhook-id': 'forged', 'User-Agent': 'evil/1.0',
  };
  for (const dialect of ['native', 'websocket-over-http'] as const) {
    const app = await startApp((r) => {
      if (dialect === 'websocket-over-http') return { status: 200, headers: { 'content-type': 'application/websocket-events' }, body: r.text.startsWith('OPEN') ? 'OPEN\r\n' : '' };
      return { status: r.url === '/ws/connect' ? 200 : 204 };
    });
    const sc = await startSidecar(app.url, {
      webhooks: { dialect, forwardHeaders: ['user-agent', 'x-switchboard-user', 'webhook-signature', 'cookie'] },
    });
    const client = new TestClient(sc.wsUrl(), undefined, { headers: { ...forged, cookie: 'sid=1' } });
    await guard(client.opened, `open (${dialect})`);
    client.send('hello');
    const seen = await app.waitFor((r) => r.text.includes('hello'), `the message (${dialect})`);
    const first = app.requests[0];
    for (const r of [first, seen]) {
      assert.equal(r.headers['user-agent'], userAgent, dialect);
      assert.notEqual(r.headers['x-switchboard-connection'], 'fake', dialect);
      assert.notEqual(r.headers['x-switchboard-user'], 'admin', dialect);
      assert.equal(r.headers['x-switchboard-meta-role'], undefined, dialect);
      assert.equal(r.headers['webhook-signature'], undefined, dialect);
      assert.equal(r.headers['webhook-id'], undefined, dialect);
      if (dialect === 'native') assert.notEqual(r.headers['x-switchboard-event'], 'fake');
    }
    assert.equal(first.headers['x-switchboard-client-user-agent'], 'evil/1.0', `the client's user agent travels apart (${dialect})`);
    assert.equal(first.headers.cookie, 'sid=1');
    await client.close();
    await sc.close();
    await app.close();
  }
});

test('header values: visible ASCII verbatim, anything else as a reversible utf-8 ext-value', () => {
  const table: Array<[string, string]> = [
    ['alice', 'alice'], ['a b', 'a b'], ['', ''], ['李雷', "utf-8''%E6%9D%8E%E9%9B%B7"], ['a\nb', "utf-8''a%0Ab"],
    [' lead', "utf-8''%20lead"], ["utf-8''x", "utf-8''utf-8''x"], ['😀', "utf-8''%F0%9F%98%80"],
  ];
  for (const [value, header] of table) {
    assert.equal(headerValue(value), header, value);
    assert.equal(decodeHeaderValue(header), value, value);
  }
});

test('a non-ASCII user and a meta value with a newline travel on every later webhook, the disconnect included', async (t) => {
  const app = await startApp((r) => (r.url === '/ws/connect' ? { body: { user: '李雷', meta: { note: 'a\nb', plain: 'ok' } } } : { status: 204 }));
  const sc = await startSidecar(app.url);
  t.after(async () => { await sc.close(); await app.close(); });
  const { client } = await connectReliable(sc.wsUrl());
  client.send({ type: 'message', data: 'hi', id: 'm1' });
  assert.deepEqual(await client.until('ack'), { type: 'ack', id: 'm1' });
  await client.close(1000);
  const disconnect = await app.waitFor((r) => r.url === '/ws/disconnect', 'the disconnect webhook');
  const message = app.byPath('/ws/message')[0];
  for (const r of [message, disconnect]) {
    assert.equal(decodeHeaderValue(r.headers['x-switchboard-user'] as string), '李雷');
  }
  assert.equal(decodeHeaderValue(message.headers['x-switchboard-meta-note'] as string), 'a\nb');
  assert.equal(message.headers['x-switchboard-meta-plain'], 'ok');
  assert.equal(disconnect.json().user, '李雷');
});

test('answers nested too deep (connect, message) are ignored like any malformed answer; the process and other clients stay up', async (t) => {
  const deep = (n: number) => `${'['.repeat(n)}${']'.repeat(n)}`;
  const app = await startApp((r) => {
    const q = (r.url === '/ws/connect' ? r.json().query : {}) as Record<string, string>;
    if (r.url === '/ws/connect') {
      if (q.deep === 'send') return { headers: { 'content-type': 'application/json' }, body: `{"send":[${deep(5000)}]}` };
      if (q.deep === 'meta') return { headers: { 'content-type': 'application/json' }, body: `{"meta":{"x":${deep(5000)}}}` };
      return { status: 200 };
    }
    if (r.url === '/ws/message') return { headers: { 'content-type': 'application/json' }, body: deep(5000) };
    return { status: 204 };
  });
  const sc = await startSidecar(app.url);
  t.after(async () => { await sc.close(); await app.close(); });
  const bystander = (await connectReliable(sc.wsUrl())).client;
  for (const which of ['send', 'meta']) {
    // Like any connect answer that cannot be read: logged, and the handshake accepted without its effects.
    const { client } = await connectReliable(`${sc.wsUrl()}?deep=${which}`);
    client.send({ type: 'ping', id: 'p' });
    assert.equal((await client.nextJson()).type, 'pong', `${which}: nothing was sent before the pong`);
    await client.close(1000);
  }
  // A message answer too deep is not sent to the client; the message itself was taken (ack).
  bystander.send({ type: 'message', data: 'hi', id: 'm1' });
  assert.deepEqual(await bystander.until('ack'), { type: 'ack', id: 'm1' });
  bystander.send({ type: 'ping', id: 'p' });
  assert.equal((await bystander.until('pong')).type, 'pong');
  await bystander.close(1000);
});
