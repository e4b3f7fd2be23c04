// upstream: amqp and the push queue, against a real RabbitMQ.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { startApp, type TestApp } from './helpers/app.js';
import { merge, startSidecar, type Sidecar } from './helpers/sidecar.js';
import { connect, connectReliable } from './helpers/client.js';
import { AmqpClient, rabbitSkip, startRabbit, uniqueName, type Rabbit } from './helpers/rabbit.js';
import { eventually } from './helpers/eventually.js';

const skip = rabbitSkip();
let broker: Promise<Rabbit> | null = null;
const rabbit = () => (broker ??= startRabbit());
after(async () => { if (broker) await (await broker).close(); });

interface Names { exchange: string; pushQueue: string; dlx: string }

async function setup(t: import('node:test').TestContext, overrides: Record<string, unknown> = {}, handler?: Parameters<typeof startApp>[0]) {
  const r = await rabbit();
  const names: Names = { exchange: uniqueName('events'), pushQueue: uniqueName('push'), dlx: uniqueName('dead') };
  // Torn down in reverse order of creation; each part is registered as it starts, so a failed start leaks nothing.
  const teardown: Array<() => Promise<void>> = [];
  t.after(async () => { for (const f of teardown.reverse()) await f(); });
  const app: TestApp = await startApp(handler);
  teardown.push(() => app.close());
  const amqp = await AmqpClient.open(r.url);
  teardown.push(() => amqp.close());
  const sc: Sidecar = await startSidecar(app.url, merge({
    upstream: 'amqp',
    amqp: { url: r.url, exchange: names.exchange, pushQueue: names.pushQueue, deadLetterExchange: names.dlx, reconnect: { baseMs: 20, capMs: 300 } },
  }, overrides));
  teardown.push(() => sc.close());
  return { r, app, sc, amqp, names };
}

test('client events reach the exchange: routing keys, webhook headers, messageId, persistent, content type', { skip }, async (t) => {
  const { app, sc, amqp, names } = await setup(t, {}, (req) => {
    if (req.url === '/ws/connect') return { status: 200, body: { user: 'u1', meta: { plan: 'pro' } } };
    return { status: 204 };
  });
  const events = await amqp.collect(names.exchange, '#');

  const { client, welcome } = await connectReliable(sc.wsUrl(), { headers: { cookie: 'sid=abc' } });
  const id = welcome.session as string;
  client.send({ type: 'message', data: { a: 1 }, id: 'm1' });
  assert.deepEqual(await client.until('ack'), { type: 'ack', id: 'm1' });

  const [connectEvent, message] = await events.waitFor(2);
  assert.equal(app.byPath('/ws/connect').length, 1, 'the connect webhook still decides the handshake');
  assert.equal(connectEvent.fields.routingKey, 'connect');
  assert.equal(connectEvent.properties.messageId, `connect_${id}`);
  assert.equal(connectEvent.properties.headers!['x-switchboard-user'], 'u1');
  assert.equal(connectEvent.properties.headers!.cookie, 'sid=abc');
  const body = JSON.parse(connectEvent.content.toString());
  assert.equal(body.connection, id);
  assert.equal(body.user, 'u1');
  assert.equal(body.path, '/ws');

  assert.equal(message.fields.routingKey, 'message');
  assert.equal(message.properties.messageId, `${id}:m1`);
  assert.equal(message.properties.deliveryMode, 2, 'persistent');
  assert.equal(message.properties.contentType, 'application/json');
  assert.equal(message.content.toString(), '{"a":1}');
  const h = message.properties.headers!;
  assert.equal(h['x-switchboard-event'], 'message');
  assert.equal(h['x-switchboard-connection'], id);
  assert.equal(h['x-switchboard-user'], 'u1');
  assert.equal(h['x-switchboard-meta-plan'], 'pro');
  assert.equal(h['idempotency-key'], `${id}:m1`);
  assert.equal(h.cookie, 'sid=abc', 'handshake headers are replayed');

  // Raw mode: text and binary frames, idempotency key from the inbound seq.
  const raw = await connect(sc.wsUrl());
  raw.send('hello');
  raw.send(Buffer.from([1, 2, 3]));
  const [, , , text, binary] = await events.waitFor(5);
  assert.equal(text.properties.contentType, 'text/plain; charset=utf-8');
  assert.equal(text.content.toString(), 'hello');
  assert.match(text.properties.messageId as string, /:1$/);
  assert.equal(binary.properties.contentType, 'application/octet-stream');
  assert.deepEqual([...binary.content], [1, 2, 3]);
  assert.match(binary.properties.messageId as string, /:2$/);

  await client.close(1000);
  await raw.close(1000);
  const all = await events.waitFor(7);
  const disconnects = all.filter((m) => m.fields.routingKey === 'disconnect');
  assert.equal(disconnects.length, 2);
  const d = disconnects.find((m) => m.properties.messageId === `disconnect_${id}`)!;
  const info = JSON.parse(d.content.toString());
  assert.equal(info.connection, id);
  assert.equal(info.code, 1000);
  assert.equal(info.messagesIn, 1);
});

test('routing key prefix; with connect webhook null every handshake is accepted and published', { skip }, async (t) => {
  const { app, sc, amqp, names } = await setup(t, { amqp: { routingKeyPrefix: 'sb.' }, webhooks: { paths: { connect: null } } });
  const events = await amqp.collect(names.exchange, 'sb.*');
  const { client, welcome } = await connectReliable(sc.wsUrl());
  client.send({ type: 'message', data: 'x', id: 'a' });
  await client.until('ack');
  const [c, m] = await events.waitFor(2);
  assert.equal(c.fields.routingKey, 'sb.connect');
  assert.equal(m.fields.routingKey, 'sb.message');
  assert.equal(m.properties.messageId, `${welcome.session}:a`);
  assert.equal(app.requests.length, 0, 'no webhook at all');
  await client.close(1000);
});

test('a rejected handshake publishes nothing', { skip }, async (t) => {
  const { sc, amqp, names } = await setup(t, {}, (req) => (req.url === '/ws/connect' && req.json().query.deny ? { status: 403 } : { status: 204 }));
  const events = await amqp.collect(names.exchange, '#');
  await assert.rejects(connect(sc.wsUrl('/ws?deny=1')), /403/);
  const { client, welcome } = await connectReliable(sc.wsUrl());
  const [first] = await events.waitFor(1);
  assert.equal(first.properties.messageId, `connect_${welcome.session}`, 'the first event is the accepted client');
  await client.close(1000);
});

test('acks wait for the publisher confirm: a broker nack becomes a retryable nack, unroutable a final one', { skip }, async (t) => {
  const { sc, amqp, names } = await setup(t, { webhooks: { paths: { connect: null } } });
  const { client } = await connectReliable(sc.wsUrl());

  // Nobody bound to "message" yet: mandatory publish comes back.
  client.send({ type: 'message', data: 1, id: 'lost' });
  assert.deepEqual(await client.until('nack'), { type: 'nack', id: 'lost', error: 'unroutable', retryable: false });

  // A full queue that rejects publishes makes the broker nack the message.
  const full = uniqueName('full');
  await amqp.channel.assertQueue(full, { exclusive: true, arguments: { 'x-max-length': 0, 'x-overflow': 'reject-publish' } });
  await amqp.channel.bindQueue(full, names.exchange, 'message');
  client.send({ type: 'message', data: 2, id: 'refused' });
  assert.deepEqual(await client.until('nack'), { type: 'nack', id: 'refused', error: 'broker_nack', retryable: true });

  await amqp.channel.unbindQueue(full, names.exchange, 'message');
  const events = await amqp.collect(names.exchange, 'message');
  client.send({ type: 'message', data: 3, id: 'taken' });
  assert.deepEqual(await client.until('ack'), { type: 'ack', id: 'taken' });
  const [m] = await events.waitFor(1);
  assert.equal(m.content.toString(), '3');
  const metrics = (await sc.control('GET', '/metrics')).text;
  assert.match(metrics, /switchboard_amqp_publish_total\{result="nacked"\} 1/);
  assert.match(metrics, /switchboard_amqp_publish_total\{result="returned"\} 1/);
  assert.match(metrics, /switchboard_amqp_publish_duration_seconds_count \d+/);
  await client.close(1000);
});

test('push queue: a batch body is routed like POST /v1/batch (also with the webhook upstream)', { skip }, async (t) => {
  const { sc, amqp, names } = await setup(t, { upstream: 'webhook' }, (req) => {
    if (req.url === '/ws/connect') return { status: 200, body: { user: 'u7', channels: ['news'] } };
    return { status: 204 };
  });
  await eventually(() => sc.sb.readiness().ready, 'sidecar ready');
  const { client, welcome } = await connectReliable(sc.wsUrl());
  const send = (body: unknown, contentType = 'application/json') =>
    amqp.channel.sendToQueue(names.pushQueue, Buffer.from(typeof body === 'string' ? body : JSON.stringify(body)), { contentType, persistent: true });
  send({ messages: [
    { to: { connection: welcome.session }, data: { n: 1 } },
    { to: { user: 'u7' }, data: 'two' },
    { to: { channel: 'news' }, binary: Buffer.from([9]).toString('base64') },
    { to: { all: true }, data: [4] },
  ] });
  const got = [];
  while (got.length < 4) {
    const f = await client.nextJson();
    if (f.type === 'message') got.push(f);
  }
  assert.deepEqual(got.map((f) => f.seq), [1, 2, 3, 4]);
  assert.deepEqual(got[0].data, { n: 1 });
  assert.equal(got[1].data, 'two');
  assert.equal(got[2].binary, 'CQ==');
  assert.deepEqual(got[3].data, [4]);
  await eventually(async () => (await amqp.channel.checkQueue(names.pushQueue)).messageCount === 0, 'push queue drained');
  await client.close(1000);
});

test('push queue: malformed messages are dead-lettered with the reason, never dropped', { skip }, async (t) => {
  const { sc, amqp, names } = await setup(t, { upstream: 'webhook', webhooks: { paths: { connect: null } } });
  await eventually(() => sc.sb.readiness().ready, 'sidecar ready');
  const dead = await amqp.consume(`${names.dlx}.queue`);
  amqp.channel.sendToQueue(names.pushQueue, Buffer.from('{not json'), { contentType: 'application/json', messageId: 'bad1' });
  amqp.channel.sendToQueue(names.pushQueue, Buffer.from(JSON.stringify({ messages: [{ to: { nobody: 'x' }, data: 1 }] })), { messageId: 'bad2', headers: { trace: 't-2' } });
  amqp.channel.sendToQueue(names.pushQueue, Buffer.from('hello'), { contentType: 'text/plain', messageId: 'bad3' });
  const [a, b, c] = await dead.waitFor(3);
  assert.equal(a.properties.messageId, 'bad1');
  assert.match(a.properties.headers!['x-switchboard-error'], /^bad_json: /);
  assert.equal(a.content.toString(), '{not json');
  assert.equal(b.properties.messageId, 'bad2');
  assert.match(b.properties.headers!['x-switchboard-error'], /^bad_body: messages\[0\]\.to/);
  assert.equal(b.properties.headers!.trace, 't-2', 'original headers are kept');
  assert.equal(c.properties.messageId, 'bad3');
  assert.match(c.properties.headers!['x-switchboard-error'], /^unsupported_type: /);
  await eventually(async () => (await amqp.channel.checkQueue(names.pushQueue)).messageCount === 0, 'push queue drained');
});

test('/readyz answers 503 while the broker is unreachable at start', { skip }, async (t) => {
  const app = await startApp();
  const sc = await startSidecar(app.url, {
    upstream: 'amqp',
    amqp: { url: 'amqp://guest:guest@127.0.0.1:1', pushQueue: null, reconnect: { baseMs: 50, capMs: 200 } },
    webhooks: { paths: { connect: null } },
  });
  t.after(async () => { await sc.close(); await app.close(); });
  const ready = await sc.control('GET', '/readyz');
  assert.equal(ready.status, 503);
  assert.match(ready.json.reason, /amqp/);
});

test('an event too large to encode is refused alone; the publisher goes on', { skip }, async (t) => {
  const { sc, amqp, names } = await setup(t, {}, (req) => {
    if (req.url !== '/ws/connect') return { status: 204 };
    return { status: 200, body: req.json().query.big ? { meta: { big: 'x'.repeat(70_000) } } : {} };
  });
  const events = await amqp.collect(names.exchange, 'message');
  const big = await connectReliable(sc.wsUrl('/ws?big=1'));
  const small = await connectReliable(sc.wsUrl());
  big.client.send({ type: 'message', data: 1, id: 'b' });
  assert.deepEqual(await big.client.until('nack'), { type: 'nack', id: 'b', error: 'too_large', retryable: false });
  small.client.send({ type: 'message', data: 2, id: 's' });
  assert.deepEqual(await small.client.until('ack'), { type: 'ack', id: 's' });
  const [m] = await events.waitFor(1);
  assert.equal(m.content.toString(), '2');
  await big.client.close(1000);
  await small.client.close(1000);
});
