// Hostile broker messages: every message taken from the push queue ends acked or
// dead-lettered with a reason, so no message can stall the queue's prefetch.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { startApp } from './helpers/app.js';
import { startSidecar } from './helpers/sidecar.js';
import { connectReliable } from './helpers/client.js';
import { AmqpClient, rabbitSkip, startRabbit, uniqueName, type Rabbit } from './helpers/rabbit.js';
import { eventually } from './helpers/eventually.js';

const skip = rabbitSkip();
let broker: Promise<Rabbit> | null = null;
after(async () => { if (broker) await (await broker).close(); });

test('push-queue messages nested too deep are dead-lettered with too_deep, more of them than prefetch, and the queue goes on', { skip }, async (t) => {
  const r = await (broker ??= startRabbit());
  const names = { pushQueue: uniqueName('push'), dlx: uniqueName('dead') };
  const app = await startApp();
  const amqp = await AmqpClient.open(r.url);
  const sc = await startSidecar(app.url, {
    webhooks: { paths: { connect: null } },
    amqp: { url: r.url, pushQueue: names.pushQueue, deadLetterExchange: names.dlx, prefetch: 2, reconnect: { baseMs: 20, capMs: 300 } },
  });
  t.after(async () => { await sc.close(); await amqp.close(); await app.close(); });
  await eventually(() => sc.sb.readiness().ready, 'sidecar ready');
  const { client, welcome } = await connectReliable(sc.wsUrl());
  t.after(() => client.close().then(() => {}));
  const dead = await amqp.consume(`${names.dlx}.queue`);

  const deep = `${'['.repeat(5000)}${']'.repeat(5000)}`;
  for (let i = 0; i < 5; i++) {
    amqp.channel.sendToQueue(names.pushQueue, Buffer.from(`{"messages":[{"to":{"all":true},"data":${deep}}]}`), { contentType: 'application/json', messageId: `deep${i}` });
  }
  amqp.channel.sendToQueue(names.pushQueue, Buffer.from(JSON.stringify({ messages: [{ to: { connection: welcome.session }, data: 'after' }] })), { messageId: 'good' });

  const letters = await dead.waitFor(5);
  assert.deepEqual(letters.map((m) => m.properties.messageId), ['deep0', 'deep1', 'deep2', 'deep3', 'deep4']);
  for (const m of letters) assert.match(m.properties.headers!['x-switchboard-error'], /^too_deep: /);
  const frame = await client.until('message');
  assert.equal(frame.data, 'after', 'the push after them is delivered');
  await eventually(async () => (await amqp.channel.checkQueue(names.pushQueue)).messageCount === 0, 'push queue drained');
});
