// One set of behaviour tests that every upstream passes: native webhooks, websocket-over-http
// and amqp. A new upstream proves itself by adding a harness here. Each harness starts a real
// sidecar with its upstream and a real "app side" (an HTTP app, or a RabbitMQ consumer), and
// says how its world stalls and refuses; the tests hold the contract the same for all:
//   - a connection's messages reach the app side in order, each once, each acked;
//   - while the app side cannot take messages, none is acked and none is lost: once it is
//     back they all arrive, in order, and are acked;
//   - a refusal that may pass later is a nack with retryable: true; a final one retryable: false;
//   - the disconnect is sent at least once: an app side that is away when it happens gets it.
import { test, after, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { startApp } from './helpers/app.js';
import { merge, startSidecar, type Sidecar } from './helpers/sidecar.js';
import { connectReliable, type TestClient } from './helpers/client.js';
import { eventually } from './helpers/eventually.js';
import { AmqpClient, rabbitSkip, startRabbit, uniqueName, type Rabbit } from './helpers/rabbit.js';
import { decodeEvents } from '../plugins/websocket-over-http/codec.js';

interface World {
  readonly sc: Sidecar;
  /** What the app side took, in order: client message texts. */
  taken(): string[];
  /** Disconnect events the app side took. */
  disconnects(): number;
  /** Until `resume`, the app side takes nothing (answers are held, or the broker is down). */
  stall(): Promise<void>;
  resume(): Promise<void>;
  /** From now on, messages are refused: `transient` may pass later, `final` will not. */
  refuse(kind: 'transient' | 'final'): Promise<void>;
  /** The app side goes away (refuses everything, or the broker stops) and comes back. */
  away(): Promise<void>;
  back(): Promise<void>;
  /** Whether a disconnect is waiting for the app side to come back (counted by a metric). */
  disconnectWaiting(): Promise<boolean>;
  /** Resolves once nothing sent so far waits to be taken (amqp: every event confirmed). */
  idle(): Promise<void>;
}

interface Harness {
  readonly name: string;
  readonly skip: string | false;
  /** The upstream has no final refusal of a message (websocket-over-http only closes). */
  readonly finalRefusal: boolean;
  start(t: TestContext): Promise<World>;
}

const retry = { maxAttempts: 2, baseMs: 5, capMs: 20, atLeastOnceMs: 60_000 };

/** An HTTP app that holds answers while stalled and refuses when told. */
async function httpWorld(t: TestContext, dialect: 'native' | 'websocket-over-http'): Promise<World> {
  const taken: string[] = [];
  let disconnects = 0;
  let held: Array<() => void> = [];
  let stalled = false;
  let refusing: 'transient' | 'final' | null = null;
  let gone = false;
  const woh = dialect === 'websocket-over-http';
  const events = { 'content-type': 'application/websocket-events' };
  const app = await startApp(async (r, res) => {
    if (woh && r.text.startsWith('OPEN')) return { headers: events, body: 'OPEN\r\n' };
    if (!woh && r.url === '/ws/connect') return { status: 200 };
    while (stalled) await new Promise<void>((resolve) => held.push(resolve));
    if (gone) return { status: 503 };
    const texts = woh ? decodeEvents(r.body).filter((e) => e.type === 'TEXT').map((e) => e.content!.toString()) : r.url === '/ws/message' ? [r.text] : [];
    const isDisconnect = woh ? /^(CLOSE|DISCONNECT)/.test(r.text) : r.url === '/ws/disconnect';
    if (refusing && texts.length > 0) {
      // websocket-over-http retries only what did not reach the app: a cut connection.
      if (woh) return void res.destroy();
      return { status: refusing === 'transient' ? 503 : 400 };
    }
    taken.push(...texts);
    if (isDisconnect) disconnects++;
    return woh ? { headers: events, body: '' } : { status: 204 };
  });
  const sc = await startSidecar(app.url, { webhooks: { dialect, retry } });
  t.after(async () => { stalled = false; for (const h of held) h(); await sc.close(); await app.close(); });
  return {
    sc,
    taken: () => taken,
    disconnects: () => disconnects,
    stall: async () => { stalled = true; },
    resume: async () => {
      stalled = false;
      const waiting = held;
      held = [];
      for (const h of waiting) h();
    },
    refuse: async (kind) => { refusing = kind; },
    away: async () => { gone = true; },
    back: async () => { gone = false; },
    disconnectWaiting: async () => /switchboard_webhooks_waiting\{event="disconnect"\} 1\b/.test((await sc.control('GET', '/metrics')).text),
    idle: async () => {},
  };
}

let broker: Promise<Rabbit> | null = null;
const rabbit = () => (broker ??= startRabbit());
after(async () => { if (broker) await (await broker).close(); });

/** RabbitMQ as the app side: a durable queue bound to the event exchange, consumed in order. */
async function amqpWorld(t: TestContext): Promise<World> {
  const r = await rabbit();
  const exchange = uniqueName('events');
  const queue = uniqueName('app');
  const app = await startApp();
  let consumer = await AmqpClient.open(r.url);
  // Durable, so it is bound and routable the moment the broker is back after a stop.
  const first = await consumer.collect(exchange, '#', queue);
  const collectors = [first];
  const sc = await startSidecar(app.url, merge({
    upstream: 'amqp',
    // A small buffer (and so batches of at most 8), for the test that fills it.
    amqp: { url: r.url, exchange, pushQueue: null, reconnect: { baseMs: 20, capMs: 200 }, bufferMessages: 8 },
  }, { webhooks: { paths: { connect: null } } }));
  let down = false;
  t.after(async () => {
    if (down) await r.start();
    await sc.close();
    await consumer.channel.deleteQueue(queue).catch(() => {});
    await consumer.close();
    await app.close();
  });
  const all = () => collectors.flatMap((c) => c.messages);
  const stop = async () => {
    down = true;
    await r.stop();
    await eventually(async () => (await sc.control('GET', '/readyz')).status === 503, 'the sidecar sees the broker gone');
  };
  const back = async () => {
    await r.start();
    down = false;
    // The consumer's connection went with the broker: a new one takes the same queue.
    consumer = await AmqpClient.open(r.url);
    collectors.push(await consumer.consume(queue));
    await eventually(() => sc.sb.readiness().ready, 'the sidecar back on the broker');
  };
  return {
    sc,
    taken: () => all().filter((m) => m.fields.routingKey === 'message').map((m) => m.content.toString()),
    disconnects: () => all().filter((m) => m.fields.routingKey === 'disconnect').length,
    stall: stop,
    resume: back,
    away: stop,
    back,
    // Held unconfirmed until the broker is back.
    disconnectWaiting: async () => /switchboard_amqp_buffer_messages [1-9]/.test((await sc.control('GET', '/metrics')).text),
    idle: () => eventually(async () => /switchboard_amqp_buffer_messages 0\b/.test((await sc.control('GET', '/metrics')).text), 'every event confirmed'),
    refuse: async (kind) => {
      // The broker away: what waits fills the buffer, and the rest is refused at once.
      if (kind === 'transient') return stop();
      // No queue bound for message events: mandatory publishes come back unroutable.
      await consumer.channel.unbindQueue(queue, exchange, '#');
      await consumer.channel.bindQueue(queue, exchange, 'disconnect');
    },
  };
}

const harnesses: Harness[] = [
  { name: 'native webhooks', skip: false, finalRefusal: true, start: (t) => httpWorld(t, 'native') },
  { name: 'websocket-over-http', skip: false, finalRefusal: false, start: (t) => httpWorld(t, 'websocket-over-http') },
  { name: 'amqp', skip: rabbitSkip(), finalRefusal: true, start: amqpWorld },
];

async function sendAll(client: TestClient, texts: string[]): Promise<void> {
  for (const text of texts) client.send({ type: 'message', data: text, id: text });
}

/** Acks for `ids`, in any interleaving with other frames. */
async function acks(client: TestClient, ids: string[]): Promise<void> {
  const want = new Set(ids);
  while (want.size > 0) {
    const f = await client.nextJson(`acks for ${[...want].join(', ')}`);
    if (f.type === 'nack') assert.fail(`nacked: ${JSON.stringify(f)}`);
    if (f.type === 'ack') want.delete(f.id);
  }
}

const ids = (prefix: string, n: number) => Array.from({ length: n }, (_, i) => `${prefix}${i + 1}`);

for (const h of harnesses) {
  test(`${h.name}: a connection's messages reach the app side in order, each once, each acked`, { skip: h.skip }, async (t) => {
    const world = await h.start(t);
    const { client } = await connectReliable(world.sc.wsUrl());
    await world.idle();
    const sent = ids('m', 40);
    await sendAll(client, sent);
    await acks(client, sent);
    // Reliable data is JSON: a string arrives as its JSON text.
    await eventually(() => world.taken().length >= sent.length, () => `all taken (${world.taken().length})`);
    assert.deepEqual(world.taken(), sent.map((s) => JSON.stringify(s)));
    await client.close(1000);
  });

  test(`${h.name}: while the app side cannot take messages none is acked or lost; once back, all arrive in order`, { skip: h.skip }, async (t) => {
    const world = await h.start(t);
    const { client } = await connectReliable(world.sc.wsUrl());
    await world.idle();
    await sendAll(client, ['before']);
    await acks(client, ['before']);
    await world.stall();
    const held = ids('h', 3);
    await sendAll(client, held);
    // Nothing is answered while stalled: a ping sent after them is answered first.
    client.send({ type: 'ping' });
    assert.equal((await client.nextJson('the pong')).type, 'pong');
    await world.resume();
    await acks(client, held);
    await eventually(() => world.taken().length >= 1 + held.length, () => `all taken (${world.taken().join(' ')})`);
    assert.deepEqual(world.taken(), ['before', ...held].map((s) => JSON.stringify(s)));
    await client.close(1000);
  });

  test(`${h.name}: a refusal that may pass later is a retryable nack; a final one is not retryable`, { skip: h.skip }, async (t) => {
    const world = await h.start(t);
    const { client } = await connectReliable(world.sc.wsUrl());
    // Ten connections: each has its first batch waiting, more than amqp's buffer of 8 holds.
    const others: TestClient[] = [];
    for (let i = 0; i < 9; i++) {
      // One at a time: each handshake's own event fits in the buffer.
      others.push((await connectReliable(world.sc.wsUrl())).client);
      await world.idle();
    }
    t.after(() => { for (const c of others) c.ws.terminate(); });
    await world.refuse('transient');
    // Several connections send: where messages wait to be taken (amqp's buffer), the ones past
    // its bound are refused at once; elsewhere each is refused after its retries.
    const nacks = [client, ...others].map((c, i) => {
      void sendAll(c, ids(`t${i}-`, 10));
      return c.until('nack');
    });
    const nack = await Promise.race(nacks);
    for (const p of nacks) p.catch(() => {});
    assert.equal(nack.retryable, true, JSON.stringify(nack));
    for (const c of [client, ...others]) c.ws.terminate();
    await world.back();
    if (!h.finalRefusal) return;
    const fresh = await h.start(t);
    const second = await connectReliable(fresh.sc.wsUrl());
    await fresh.refuse('final');
    second.client.send({ type: 'message', data: 'never', id: 'f1' });
    const final = await second.client.until('nack');
    assert.deepEqual([final.id, final.retryable], ['f1', false], JSON.stringify(final));
    await second.client.close(1000);
  });

  test(`${h.name}: the disconnect is sent at least once, also to an app side that was away when it happened`, { skip: h.skip }, async (t) => {
    const world = await h.start(t);
    const { client } = await connectReliable(world.sc.wsUrl());
    await world.away();
    await client.close(1000);
    // Past its first round of attempts, it waits for the app side.
    await eventually(() => world.disconnectWaiting(), 'the disconnect waiting for the app side');
    assert.equal(world.disconnects(), 0, 'not taken while away');
    await world.back();
    await eventually(() => world.disconnects() >= 1, 'the disconnect, once the app side is back');
  });
}
