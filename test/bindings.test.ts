// A process's cluster queue bindings (plugins/amqp/bindings.ts) against a real broker: changes
// go over several channels at once, yet whatever order they are asked in, once a key's changes
// are settled the queue is bound for it exactly when the last change asked for it said so.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { Bindings } from '../plugins/amqp/bindings.js';
import { rabbit } from './helpers/cluster.js';
import { AmqpClient, rabbitSkip, uniqueName } from './helpers/rabbit.js';

const skip = rabbitSkip();

async function setUp(t: { after(fn: () => Promise<void>): void }) {
  const r = await rabbit();
  const amqp = await AmqpClient.open(r.url);
  t.after(() => amqp.close());
  const exchange = uniqueName('bindings');
  await amqp.channel.assertExchange(exchange, 'topic', { durable: false, autoDelete: false });
  const { queue } = await amqp.channel.assertQueue('', { exclusive: true });
  const bindings = new Bindings(queue, exchange);
  await bindings.open(amqp.model, (ch) => ch.on('error', () => {}));
  t.after(async () => { await amqp.channel.deleteExchange(exchange).catch(() => {}); });
  return { amqp, exchange, bindings };
}

test('any sequence of binds and unbinds, once settled, leaves each key as its last change said', { skip }, async (t) => {
  const { amqp, exchange, bindings } = await setUp(t);
  const keys = Array.from({ length: 12 }, (_, i) => `user.k${i}`);
  let round = 0;
  await fc.assert(fc.asyncProperty(
    fc.array(fc.record({ key: fc.nat({ max: keys.length - 1 }), bound: fc.boolean() }), { minLength: 1, maxLength: 40 }),
    async (changes) => {
      round++;
      const last = new Map<string, boolean>();
      // All asked at once, as registry changes come: none awaited before the next.
      const asked = changes.map(({ key, bound }) => {
        last.set(keys[key]!, bound);
        return bindings.set(keys[key]!, bound);
      });
      await bindings.settled([...last.keys()]);
      for (const [key, bound] of last) assert.equal(await amqp.routable(exchange, key), bound, `round ${round}: ${key}`);
      await Promise.all(asked);
    },
  ), { numRuns: 15 });
});

test('settled waits only for the keys asked about, and fails once the connection is gone', { skip }, async (t) => {
  const { amqp, exchange, bindings } = await setUp(t);
  await bindings.settled(['user.never-asked']);
  const many = Array.from({ length: 200 }, (_, i) => bindings.set(`channel.c${i}`, true));
  await bindings.settled(['channel.c199']);
  assert.equal(await amqp.routable(exchange, 'channel.c199'), true);
  await Promise.all(many);
  bindings.lost();
  assert.equal(bindings.up, false);
  await assert.rejects(bindings.settled(['channel.c1']), /connection was lost/);
  await assert.rejects(bindings.set('channel.c1', false), /connection is down/);
});
