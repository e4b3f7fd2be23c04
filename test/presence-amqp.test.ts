// Presence events with `upstream: amqp`: each batch is one persistent message with routing key
// `presence` on the events exchange, its messageId naming the batch; the broker's confirm counts.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { startApp } from './helpers/app.js';
import { startSidecar } from './helpers/sidecar.js';
import { connect, type TestClient } from './helpers/client.js';
import { connectAnswer } from './helpers/cluster.js';
import { AmqpClient, rabbitSkip, startRabbit, uniqueName, type Rabbit } from './helpers/rabbit.js';
import { eventually } from './helpers/eventually.js';

const skip = rabbitSkip();
let broker: Promise<Rabbit> | null = null;
const rabbit = () => (broker ??= startRabbit());
after(async () => { if (broker) await (await broker).close(); });

test('with upstream amqp, presence batches are published with routing key presence, in order, each id once', { skip }, async (t) => {
  const r = await rabbit();
  const exchange = uniqueName('events');
  const app = await startApp(connectAnswer);
  const amqp = await AmqpClient.open(r.url);
  const sc = await startSidecar(app.url, {
    upstream: 'amqp',
    amqp: { url: r.url, exchange, pushQueue: null, reconnect: { baseMs: 20, capMs: 300 } },
    webhooks: { paths: { presence: '/unused' } },
    presence: { batchMs: 20, batchMax: 2 },
  });
  const clients: TestClient[] = [];
  t.after(async () => { for (const c of clients) c.ws.terminate(); await sc.close(); await amqp.close(); await app.close(); });
  const published = await amqp.collect(exchange, 'presence');
  await eventually(() => sc.sb.readiness().ready, 'connected to the broker');
  for (const u of ['a', 'b', 'a']) clients.push(await connect(sc.wsUrl(`/ws?user=${u}&ch=room`)));
  const connections = async () => (await sc.control('GET', '/v1/channels/room')).json.connections as number;
  for (const [i, c] of clients.entries()) {
    await c.close();
    await eventually(async () => (await connections()) === 2 - i, 'the session ended');
  }
  const events = () => published.messages.flatMap((m) => JSON.parse(m.content.toString()).events as Array<{ type: string; user: string; id: string }>);
  await eventually(() => events().some((e) => e.type === 'channel_vacated'), 'the channel vacated');
  assert.deepEqual(events().map((e) => `${e.type} ${e.user}`), [
    'channel_occupied a', 'member_added a', 'member_added b', 'member_removed b', 'member_removed a', 'channel_vacated a',
  ]);
  for (const m of published.messages) {
    const body = JSON.parse(m.content.toString());
    assert.ok(body.events.length <= 2, 'at most batchMax a message');
    assert.equal(m.fields.routingKey, 'presence');
    assert.equal(m.properties.messageId, `presence_${body.events[0].id}`);
    assert.equal(m.properties.headers!['x-switchboard-event'], 'presence');
    assert.equal(m.properties.deliveryMode, 2, 'persistent');
    assert.equal(m.properties.contentType, 'application/json');
  }
  assert.equal(new Set(events().map((e) => e.id)).size, events().length);
  assert.equal(app.byPath('/unused').length, 0, 'nothing is POSTed');
});
