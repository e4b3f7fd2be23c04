import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { startApp } from './helpers/app.js';
import { startSidecar } from './helpers/sidecar.js';
import { connect, connectReliable } from './helpers/client.js';
import { eventually } from './helpers/eventually.js';

test('connect webhook carries the handshake; its answer sets user, channels, meta and initial messages', async (t) => {
  const app = await startApp((r) => r.url === '/ws/connect'
    ? { body: { user: 'u1', channels: ['room'], meta: { plan: 'pro' }, send: ['hello', { n: 1 }] } }
    : { status: 204 });
  const sc = await startSidecar(app.url);
  t.after(async () => { await sc.close(); await app.close(); });

  const c = await connect(sc.wsUrl('/ws?room=a&x=1'), undefined, { headers: { cookie: 'sid=42', 'x-other': 'no' } });
  const hello = await c.next();
  assert.equal(hello.text, 'hello');
  assert.equal(hello.binary, false);
  assert.deepEqual((await c.next()).json(), { n: 1 });

  const connectReq = app.byPath('/ws/connect')[0];
  const body = connectReq.json();
  assert.equal(body.path, '/ws');
  assert.deepEqual(body.query, { room: 'a', x: '1' });
  assert.equal(body.subprotocol, null);
  assert.equal(body.remoteAddress, '127.0.0.1');
  assert.equal(connectReq.headers.cookie, 'sid=42');
  assert.equal(connectReq.headers['x-other'], undefined);
  assert.equal(connectReq.headers['x-switchboard-event'], 'connect');
  assert.equal(connectReq.headers['x-switchboard-connection'], body.connection);
  assert.match(String(connectReq.headers['user-agent']), /^switchboard\/\d/);

  const info = await sc.control('GET', `/v1/connections/${body.connection}`);
  assert.equal(info.status, 200);
  assert.equal(info.json.user, 'u1');
  assert.deepEqual(info.json.channels, ['room']);
  assert.deepEqual(info.json.meta, { plan: 'pro' });
  assert.equal(info.json.mode, 'raw');

  c.send('hi there');
  const msg = await app.waitFor((r) => r.url === '/ws/message', 'message webhook');
  assert.equal(msg.text, 'hi there');
  assert.equal(msg.headers['content-type'], 'text/plain; charset=utf-8');
  assert.equal(msg.headers['x-switchboard-user'], 'u1');
  assert.equal(msg.headers['x-switchboard-meta-plan'], 'pro');
  assert.equal(msg.headers.cookie, 'sid=42', 'handshake headers are replayed on message webhooks');
  assert.equal(msg.headers['idempotency-key'], `${body.connection}:1`);

  await c.close(1000);
  const disc = await app.waitFor((r) => r.url === '/ws/disconnect', 'disconnect webhook');
  const d = disc.json();
  assert.equal(d.connection, body.connection);
  assert.equal(d.user, 'u1');
  assert.equal(d.code, 1000);
  assert.equal(d.messagesIn, 1);
  assert.equal(d.messagesOut, 2);
  assert.equal(d.undelivered, 0);
  assert.equal(typeof d.durationMs, 'number');
});

test('the app rejects a handshake with its own status; a failing, slow or resetting app gives 503', async (t) => {
  let mode: 'deny' | 'fail' | 'slow' | 'reset' = 'deny';
  const app = await startApp(async (r, res) => {
    if (r.url !== '/ws/connect') return { status: 204 };
    if (mode === 'slow') await new Promise((resolve) => setTimeout(resolve, 1000));
    if (mode === 'reset') {
      res.socket?.destroy();
      return 'handled';
    }
    return { status: mode === 'deny' ? 401 : mode === 'fail' ? 500 : 200, body: 'nope' };
  });
  const sc = await startSidecar(app.url, { webhooks: { timeoutMs: 300, retry: { maxAttempts: 2 } } });
  t.after(async () => { await sc.close(); await app.close(); });

  // The app's refusal as the app gave it: its status and body, and no content type it did not set.
  await assert.rejects(connect(sc.wsUrl()), (e: any) => e.status === 401 && e.res.headers['content-type'] === undefined);
  for (const failure of ['fail', 'slow', 'reset'] as const) {
    mode = failure;
    await assert.rejects(connect(sc.wsUrl()), (e: any) => e.status === 503, failure);
  }
  const metrics = await sc.control('GET', '/metrics');
  assert.match(metrics.text, /switchboard_connections_total\{result="rejected_401"\} 1/);
});

test('message bodies keep their type: text, binary and reliable JSON; replies come back', async (t) => {
  const app = await startApp((r) => {
    if (r.url !== '/ws/message') return { status: 204 };
    if (r.text === 'reply-json') return { body: { echoed: true } };
    if (r.text === 'reply-text') return { headers: { 'content-type': 'text/plain' }, body: 'plain answer' };
    if (r.headers['content-type'] === 'application/octet-stream') return { headers: { 'content-type': 'application/octet-stream' }, body: Buffer.from([9, 8, 7]) };
    return { status: 204 };
  });
  const sc = await startSidecar(app.url);
  t.after(async () => { await sc.close(); await app.close(); });

  const c = await connect(sc.wsUrl());
  c.send('reply-json');
  assert.deepEqual((await c.next()).json(), { echoed: true });
  c.send('reply-text');
  assert.equal((await c.next()).text, 'plain answer');
  c.send(Buffer.from([1, 2, 3]));
  const bin = await c.next();
  assert.equal(bin.binary, true);
  assert.deepEqual([...bin.data], [9, 8, 7]);
  const binReq = app.byPath('/ws/message').find((r) => r.headers['content-type'] === 'application/octet-stream')!;
  assert.deepEqual([...binReq.body], [1, 2, 3]);
  await c.close();

  const { client, welcome } = await connectReliable(sc.wsUrl());
  client.send({ type: 'message', data: { a: [1, 'x'] }, id: 'm1' });
  assert.deepEqual(await client.until('ack'), { type: 'ack', id: 'm1' });
  const jsonReq = app.byPath('/ws/message').find((r) => r.headers['content-type'] === 'application/json')!;
  assert.deepEqual(jsonReq.json(), { a: [1, 'x'] });
  assert.equal(jsonReq.headers['idempotency-key'], `${welcome.session}:m1`);
  await client.close();
});

test('message webhooks of one connection arrive in order, one at a time', async (t) => {
  let inFlight = 0;
  let maxInFlight = 0;
  const app = await startApp(async (r) => {
    if (r.url !== '/ws/message') return { status: 204 };
    inFlight++;
    maxInFlight = Math.max(maxInFlight, inFlight);
    await new Promise((res) => setTimeout(res, Math.random() * 3));
    inFlight--;
    return { status: 204 };
  });
  const sc = await startSidecar(app.url);
  t.after(async () => { await sc.close(); await app.close(); });
  const c = await connect(sc.wsUrl());
  for (let i = 0; i < 50; i++) c.send(`m${i}`);
  await app.waitFor((r) => r.text === 'm49', 'the last message');
  assert.deepEqual(app.byPath('/ws/message').map((r) => r.text), Array.from({ length: 50 }, (_, i) => `m${i}`));
  assert.equal(maxInFlight, 1);
  await c.close();
});

test('retries a 503 then delivers; honours Retry-After; 4xx is not retried', async (t) => {
  let failures = 2;
  const app = await startApp((r) => {
    if (r.url !== '/ws/message') return { status: 204 };
    if (r.text === '"flaky"' && failures-- > 0) return { status: 503, headers: { 'retry-after': '0' } };
    if (r.text === '"bad"') return { status: 422 };
    return { status: 204 };
  });
  const sc = await startSidecar(app.url);
  t.after(async () => { await sc.close(); await app.close(); });
  const { client } = await connectReliable(sc.wsUrl());
  client.send({ type: 'message', data: 'flaky', id: 'a' });
  assert.deepEqual(await client.until('ack'), { type: 'ack', id: 'a' });
  const flaky = app.byPath('/ws/message').filter((r) => r.text === '"flaky"');
  assert.equal(flaky.length, 3);
  assert.equal(new Set(flaky.map((r) => r.headers['idempotency-key'])).size, 1, 'the key is stable across retries');

  client.send({ type: 'message', data: 'bad', id: 'b' });
  const nack = await client.until('nack');
  assert.deepEqual(nack, { type: 'nack', id: 'b', error: 'rejected', retryable: false });
  assert.equal(app.byPath('/ws/message').filter((r) => r.text === '"bad"').length, 1);
  await client.close();
});

test('an unreachable app: retries are exhausted, the client gets a retryable nack, the failure is counted', async (t) => {
  const app = await startApp();
  const deadUrl = app.url;
  await app.close();
  const sc = await startSidecar(deadUrl, { webhooks: { paths: { connect: null, disconnect: null }, retry: { maxAttempts: 3 } } });
  t.after(() => sc.close());
  const { client } = await connectReliable(sc.wsUrl());
  client.send({ type: 'message', data: 1, id: 'x' });
  const nack = await client.until('nack');
  assert.equal(nack.retryable, true);
  assert.equal(nack.error, 'webhook_failed');
  const metrics = await sc.control('GET', '/metrics');
  assert.match(metrics.text, /switchboard_webhook_failures_total\{event="message"\} 1/);
  await client.close();
});

test('webhooks are signed the Standard Webhooks way, one signature per secret', async (t) => {
  const keyA = Buffer.from('first secret key material!!');
  const keyB = Buffer.from('second secret key material!');
  const app = await startApp(() => ({ status: 204 }));
  const sc = await startSidecar(app.url, { webhooks: { secret: [`whsec_${keyA.toString('base64')}`, `whsec_${keyB.toString('base64')}`] } });
  t.after(async () => { await sc.close(); await app.close(); });
  const c = await connect(sc.wsUrl());
  c.send('signed');
  const req = await app.waitFor((r) => r.url === '/ws/message');
  const id = String(req.headers['webhook-id']);
  const ts = String(req.headers['webhook-timestamp']);
  assert.match(ts, /^\d+$/);
  const expected = [keyA, keyB].map((k) => `v1,${createHmac('sha256', k).update(`${id}.${ts}.signed`).digest('base64')}`);
  assert.equal(req.headers['webhook-signature'], expected.join(' '));
  await c.close();
});

test('batched message webhooks: what queued meanwhile goes in one request, each item acked, replies sent', async (t) => {
  let release!: () => void;
  const firstHeld = new Promise<void>((r) => { release = r; });
  const app = await startApp(async (r) => {
    if (r.url !== '/ws/message') return { status: 204 };
    const { messages } = r.json<{ messages: Array<{ seq: number; key: string; data?: unknown; text?: string; binary?: string }> }>();
    if (messages[0].seq === 1) await firstHeld;
    return { body: { send: messages.map((m) => ({ echo: m.seq })) } };
  });
  const sc = await startSidecar(app.url, { webhooks: { batchMessages: 50 } });
  t.after(async () => { await sc.close(); await app.close(); });
  const { client, welcome } = await connectReliable(sc.wsUrl());
  client.send({ type: 'message', data: { n: 1 }, id: 'a1' });
  await app.waitFor((r) => r.url === '/ws/message', 'the first webhook');
  for (let i = 2; i <= 5; i++) client.send({ type: 'message', data: { n: i }, id: `a${i}` });
  // All four are taken by the sidecar (counted as they arrive) while the first webhook is held.
  const taken = /^switchboard_messages_total\{direction="in",mode="reliable"\} 5$/m;
  await eventually(async () => taken.test((await sc.control('GET', '/metrics')).text), 'the sidecar to take the four messages sent while the first webhook is held');
  release();
  const acks: string[] = [];
  const echoes: unknown[] = [];
  while (acks.length < 5 || echoes.length < 5) {
    const f = await client.nextJson();
    if (f.type === 'ack') acks.push(f.id);
    if (f.type === 'message') echoes.push(f.data);
  }
  assert.deepEqual(acks, ['a1', 'a2', 'a3', 'a4', 'a5']);
  assert.deepEqual(echoes, [1, 2, 3, 4, 5].map((n) => ({ echo: n })));
  const requests = app.byPath('/ws/message');
  assert.equal(requests.length, 2, 'the four queued messages went in one request');
  assert.equal(requests[1].headers['x-switchboard-batch'], '4');
  assert.deepEqual(requests[1].json().messages.map((m: any) => [m.seq, m.key, m.data]), [2, 3, 4, 5].map((n) => [n, `${welcome.session}:a${n}`, { n }]));
  assert.equal(requests[1].headers['idempotency-key'], `${welcome.session}:a2..${welcome.session}:a5`);
  await client.close();

  const raw = await connect(sc.wsUrl());
  raw.send('plain text');
  raw.send(Buffer.from([7]));
  const items = async () => app.byPath('/ws/message').slice(2).flatMap((r) => r.json().messages);
  await eventually(async () => (await items()).length >= 2, 'both raw messages in batch webhooks', 1_000);
  const [text, bin] = await items();
  assert.equal(text.text, 'plain text');
  assert.equal(bin.binary, Buffer.from([7]).toString('base64'));
  await raw.close();
});

test('batched message webhooks: a 4xx nacks every item of the batch; an answer that is not a send list sends nothing', async (t) => {
  const app = await startApp(async (r) => {
    if (r.url !== '/ws/message') return { status: 204 };
    const { messages } = r.json<{ messages: Array<{ text?: string; data?: { n: number } }> }>();
    if (messages.some((m) => m.data?.n === 1)) return { status: 422, body: 'no' };
    return { status: 200, headers: { 'content-type': 'application/json' }, body: '{"send": not json' };
  });
  const sc = await startSidecar(app.url, { webhooks: { batchMessages: 10 } });
  t.after(async () => { await sc.close(); await app.close(); });
  const { client } = await connectReliable(sc.wsUrl());
  client.send({ type: 'message', data: { n: 1 }, id: 'x1' });
  const nack = await client.nextJson();
  assert.deepEqual(nack, { type: 'nack', id: 'x1', error: 'rejected', retryable: false });
  client.send({ type: 'message', data: { n: 2 }, id: 'x2' });
  // The garbled answer is logged, the message is acked, and nothing reaches the client but the ack.
  assert.deepEqual(await client.nextJson(), { type: 'ack', id: 'x2' });
  client.send({ type: 'ping' });
  assert.equal((await client.nextJson()).type, 'pong');
  await client.close();
});

test('an answer larger than limits.maxMessageBytes is never sent on nor retried: the message is nacked answer_too_large (counted), the socket stays', async (t) => {
  const app = await startApp((r) => (r.url === '/ws/message'
    ? { headers: { 'content-type': 'text/plain' }, body: r.text === '"big"' ? 'x'.repeat(5000) : 'small' }
    : { status: 204 }));
  const sc = await startSidecar(app.url, { limits: { maxMessageBytes: 4096 }, webhooks: { retry: { maxAttempts: 2, baseMs: 1, capMs: 2 } } });
  t.after(async () => { await sc.close(); await app.close(); });
  const { client } = await connectReliable(sc.wsUrl());
  client.send({ type: 'message', data: 'big', id: 'b1' });
  assert.deepEqual(await client.nextJson(), { type: 'nack', id: 'b1', error: 'answer_too_large', retryable: false });
  assert.equal(app.byPath('/ws/message').length, 1, 'not retried: the app accepted the message');
  client.send({ type: 'message', data: 'fine', id: 'b2' });
  const frames = [await client.nextJson(), await client.nextJson()];
  assert.deepEqual(frames.find((f) => f.type === 'ack'), { type: 'ack', id: 'b2' });
  assert.equal(frames.find((f) => f.type === 'message')?.data, 'small');
  const metrics = (await sc.control('GET', '/metrics')).text;
  assert.match(metrics, /^switchboard_webhook_failures_total\{event="message"\} 1$/m);
  assert.match(metrics, /^switchboard_webhook_answers_too_large_total\{event="message"\} 1$/m);
  await client.close();
});

test('a hostile app (slow, resetting, cutting an answer short): retried with the same key, acked once it answers, nacked when it never does', async (t) => {
  const attempts = new Map<string, number>();
  const app = await startApp(async (r, res) => {
    if (r.url !== '/ws/message') return { status: 204 };
    const what = JSON.parse(r.text) as string;
    const n = (attempts.get(what) ?? 0) + 1;
    attempts.set(what, n);
    if ((what === 'slow' && n === 1) || what === 'never') {
      await new Promise((resolve) => setTimeout(resolve, 1500));
      return { body: 'too late' };
    }
    if (what === 'reset' && n === 1) {
      res.socket?.destroy();
      return 'handled';
    }
    if (what === 'cut' && n === 1) {
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '100' });
      res.write('only part');
      setImmediate(() => res.socket?.destroy());
      return 'handled';
    }
    return { headers: { 'content-type': 'text/plain' }, body: `ok:${what}` };
  });
  const sc = await startSidecar(app.url, { webhooks: { timeoutMs: 300, retry: { maxAttempts: 2, baseMs: 1, capMs: 5 } } });
  t.after(async () => { await sc.close(); await app.close(); });
  const { client } = await connectReliable(sc.wsUrl());

  for (const what of ['slow', 'reset', 'cut']) {
    client.send({ type: 'message', data: what, id: what });
    const frames = [await client.nextJson(), await client.nextJson()];
    assert.deepEqual(frames.find((f) => f.type === 'ack'), { type: 'ack', id: what }, what);
    assert.equal(frames.find((f) => f.type === 'message')?.data, `ok:${what}`, `${what}: only the full answer is sent`);
    const sent = app.byPath('/ws/message').filter((r) => JSON.parse(r.text) === what);
    assert.equal(sent.length, 2, `${what}: one retry`);
    assert.equal(sent[0].headers['idempotency-key'], sent[1].headers['idempotency-key'], `${what}: the same key on the retry`);
  }

  client.send({ type: 'message', data: 'never', id: 'never' });
  assert.deepEqual(await client.nextJson(), { type: 'nack', id: 'never', error: 'webhook_failed', retryable: true });
  const metrics = (await sc.control('GET', '/metrics')).text;
  assert.match(metrics, /^switchboard_webhook_failures_total\{event="message"\} 1$/m);
  client.send({ type: 'ping' });
  assert.equal((await client.nextJson()).type, 'pong');
  await client.close();
});
