// The broker goes away and comes back: events wait in the bounded buffer, a full buffer
// nacks at once (retryable), /readyz is 503, and after the reconnect everything is
// re-declared and every message a client sent reaches the exchange. Needs a broker run by
// the test helper (it is stopped and started), so it skips with AMQP_URL.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { WebSocket } from 'ws';
import { startApp } from './helpers/app.js';
import { merge, startSidecar, type Sidecar } from './helpers/sidecar.js';
import { connectReliable } from './helpers/client.js';
import { AmqpClient, rabbitSkip, startRabbit, uniqueName, type Rabbit } from './helpers/rabbit.js';
import { eventually } from './helpers/eventually.js';

const skip = rabbitSkip() || (process.env.AMQP_URL ? 'stops and starts the broker: needs one run by the test helper (unset AMQP_URL)' : false);
let broker: Promise<Rabbit> | null = null;
const rabbit = () => (broker ??= startRabbit());
after(async () => { if (broker) await (await broker).close(); });

async function setup(t: import('node:test').TestContext, nodeIds: string[], amqpOverrides: Record<string, unknown> = {}) {
  const r = await rabbit();
  const names = { exchange: uniqueName('events'), queue: uniqueName('worker'), cluster: uniqueName('cluster'), pushQueue: uniqueName('push'), dead: uniqueName('dead') };
  // A durable worker queue: what it takes survives the restart.
  const admin = await AmqpClient.open(r.url);
  await admin.channel.assertExchange(names.exchange, 'topic', { durable: true });
  await admin.channel.assertQueue(names.queue, { durable: true });
  await admin.channel.bindQueue(names.queue, names.exchange, 'message');
  await admin.close();
  const teardown: Array<() => Promise<void>> = [];
  t.after(async () => { for (const f of teardown.reverse()) await f(); });
  const app = await startApp();
  teardown.push(() => app.close());
  const nodes: Sidecar[] = [];
  for (const nodeId of nodeIds) {
    const sc = await startSidecar(app.url, {
      nodeId,
      upstream: 'amqp',
      amqp: merge({ url: r.url, exchange: names.exchange, pushQueue: names.pushQueue, deadLetterExchange: names.dead, reconnect: { baseMs: 20, capMs: 250 } }, amqpOverrides),
      cluster: { amqp: { url: r.url, exchange: names.cluster } },
      session: { tokenSecret: 'one-secret-for-every-node' },
      webhooks: { paths: { connect: null } },
    });
    teardown.push(() => sc.close());
    nodes.push(sc);
  }
  await eventually(() => nodes.every((n) => n.sb.readiness().ready), 'nodes ready');
  return { r, names, nodes, teardown };
}

test('broker down: a buffered message waits for the broker, a full buffer nacks at once', { skip }, async (t) => {
  const { r, nodes: [a], teardown } = await setup(t, ['ba'], { bufferMessages: 1 });
  const buffered = async (n: number) => new RegExp(`switchboard_amqp_buffer_messages ${n}\\b`).test((await a.control('GET', '/metrics')).text);
  // A buffer of one: each connect event must be confirmed before the next handshake is taken.
  const x = await connectReliable(a.wsUrl());
  teardown.push(() => x.client.close().then(() => {}));
  await eventually(() => buffered(0), 'connect event confirmed');
  const y = await connectReliable(a.wsUrl());
  teardown.push(() => y.client.close().then(() => {}));
  await eventually(() => buffered(0), 'connect event confirmed');

  await r.stop();
  await eventually(async () => (await a.control('GET', '/readyz')).status === 503, '/readyz 503 while the broker is down');
  x.client.send({ type: 'message', data: 1, id: 'waits' });
  await eventually(() => buffered(1), 'the message is buffered');
  y.client.send({ type: 'message', data: 2, id: 'refused' });
  assert.deepEqual(await y.client.until('nack'), { type: 'nack', id: 'refused', error: 'buffer_full', retryable: true });
  assert.equal(x.client.frames.length, 0, 'the buffered message is neither acked nor nacked while the broker is away');
  // A push cannot reach other nodes now: the API says so.
  const push = await a.control('POST', '/v1/broadcast', { x: 1 });
  assert.equal(push.status, 503);

  await r.start();
  assert.deepEqual(await x.client.until('ack'), { type: 'ack', id: 'waits' });
  await eventually(() => a.sb.readiness().ready, 'ready again');
  y.client.send({ type: 'message', data: 2, id: 'refused' });
  assert.deepEqual(await y.client.until('ack'), { type: 'ack', id: 'refused' });
  assert.match((await a.control('GET', '/metrics')).text, /switchboard_amqp_publish_total\{result="buffer_full"\} 1/);
});

/** A reliable client sending ids at a steady pace, re-sending what is nacked as retryable (after a pause). */
function sender(url: string, prefix: string, total: number) {
  const ws = new WebSocket(url, 'switchboard.v1');
  const sends: string[] = [];
  const acked: string[] = [];
  const finalNacks: unknown[] = [];
  let session = '';
  let retryable = 0;
  const todo = Array.from({ length: total }, (_, i) => `${prefix}-${i + 1}`);
  let outstanding = 0;
  let resolveDone!: () => void;
  const done = new Promise<void>((resolve) => { resolveDone = resolve; });
  let timer: NodeJS.Timeout | null = null;
  const tick = () => {
    timer = null;
    if (outstanding < 8 && todo.length > 0) {
      const id = todo.shift()!;
      sends.push(id);
      outstanding++;
      ws.send(JSON.stringify({ type: 'message', id, data: { id } }));
    }
    if (todo.length > 0) timer = setTimeout(tick, 3);
  };
  ws.on('message', (raw: Buffer) => {
    const f = JSON.parse(raw.toString());
    if (f.type === 'welcome') { session = f.session; tick(); return; }
    if (f.type === 'ack') {
      outstanding--;
      acked.push(f.id);
      if (acked.length === total) resolveDone();
    } else if (f.type === 'nack') {
      outstanding--;
      if (!f.retryable) { finalNacks.push(f); return; }
      retryable++;
      setTimeout(() => { todo.push(f.id); if (timer === null) tick(); }, 50);
    }
  });
  return {
    ws, sends, acked, finalNacks, done,
    get session() { return session; },
    get retryable() { return retryable; },
    close: async () => { if (timer) clearTimeout(timer); ws.close(); if (ws.readyState !== WebSocket.CLOSED) await once(ws, 'close'); },
  };
}

test('broker restarted mid-traffic: every id acked in send order, none lost; topology and cluster bindings come back', { skip }, async (t) => {
  const { r, names, nodes: [a, b], teardown } = await setup(t, ['ra', 'rb'], { bufferMessages: 12 });
  const PER_CLIENT = 150;
  const senders = [a, a, b, b, a].map((sc, i) => sender(sc.wsUrl(), `c${i}`, PER_CLIENT));
  teardown.push(async () => { await Promise.all(senders.map((s) => s.close())); });
  // A subscriber on b for a channel: its binding must be re-declared after the restart.
  const sub = await connectReliable(b.wsUrl());
  teardown.push(async () => { await sub.client.close(); });
  await b.control('PUT', `/v1/connections/${sub.welcome.session}/channels/after`);

  const ackedSoFar = () => senders.reduce((n, s) => n + s.acked.length, 0);
  await eventually(() => ackedSoFar() >= senders.length * PER_CLIENT / 4, 'traffic flowing');
  await r.stop();
  await eventually(async () => (await a.control('GET', '/readyz')).status === 503 && (await b.control('GET', '/readyz')).status === 503, 'both nodes not ready');
  await r.start();
  await Promise.all(senders.map((s, i) => eventually(() => s.acked.length === PER_CLIENT, `client ${i} fully acked`, 60_000)));

  for (const s of senders) {
    assert.deepEqual(s.finalNacks, []);
    assert.equal(new Set(s.acked).size, PER_CLIENT, 'each id acked once');
    // Acks come in the order of each id's last send (a nacked id is acked after its re-send).
    const lastSend = new Map<string, number>();
    s.sends.forEach((id, i) => lastSend.set(id, i));
    const order = s.acked.map((id) => lastSend.get(id)!);
    assert.deepEqual(order, [...order].sort((x, y) => x - y), 'acks in send order');
  }

  // Every id reached the worker queue (de-duplicated by messageId: confirms lost with the
  // connection mean a re-publish).
  const worker = await AmqpClient.open(r.url);
  teardown.push(() => worker.close());
  const expected = new Set(senders.flatMap((s) => s.acked.map((id) => `${s.session}:${id}`)));
  const seen = new Set<string>();
  const got = await worker.consume(names.queue);
  await eventually(() => {
    for (const m of got.messages) seen.add(m.properties.messageId as string);
    return [...expected].every((id) => seen.has(id));
  }, 'every id on the worker queue', 30_000);
  const lost = [...expected].filter((id) => !seen.has(id)).length;
  assert.equal(lost, 0);
  t.diagnostic(`${expected.size} ids, ${got.messages.length - seen.size} duplicates, ${senders.reduce((n, s) => n + s.retryable, 0)} retryable nacks re-sent`);

  // Cluster bindings re-declared: a push from a reaches the subscriber on b.
  let k = 0;
  await eventually(async () => {
    await a.control('POST', '/v1/channels/after/messages', { k: k++ });
    return sub.client.frames.some((f) => f.json().type === 'message');
  }, 'cluster channel push after the restart');
  // The push queue consumer is back too.
  worker.channel.sendToQueue(names.pushQueue, Buffer.from(JSON.stringify({ messages: [{ to: { connection: sub.welcome.session }, data: 'queued' }] })));
  for (;;) {
    const f = await sub.client.nextJson('queued push after the restart');
    if (f.type === 'message' && f.data === 'queued') break;
  }
});
