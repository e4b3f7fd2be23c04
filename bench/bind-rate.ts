// How fast the broker changes bindings: what a resume storm's moves wait on (each moved session
// binds its id and its user on the node it arrives at). N bindings of one queue to a topic
// exchange, then their unbindings, all asked at once over 1 or 8 channels; then the same for a
// direct exchange, for comparison (the cluster exchange is a topic exchange by contract: docs/rabbitmq.md).
//
//   npx tsc -p . && node dist/bench/bind-rate.js [bindings=6000]
//
// Uses AMQP_URL when set, else starts a private RabbitMQ (rabbitmq-server must be installed).
import { connect } from 'amqplib';
import { startRabbit } from '../test/helpers/rabbit.js';

const n = Number(process.argv[2] ?? 6000);
const rabbit = process.env.AMQP_URL ? null : await startRabbit();
const url = process.env.AMQP_URL ?? rabbit!.url;
try {
  const model = await connect(url);
  const setup = await model.createChannel();
  for (const type of ['topic', 'direct'] as const) {
    const exchange = `bind-rate.${type}`;
    await setup.assertExchange(exchange, type, { durable: true });
    for (const count of [1, 8]) {
      const { queue } = await setup.assertQueue('', { exclusive: true });
      const channels = await Promise.all(Array.from({ length: count }, () => model.createChannel()));
      const rate = async (bound: boolean) => {
        const start = performance.now();
        await Promise.all(Array.from({ length: n }, (_, i) => {
          const ch = channels[i % count]!;
          return bound ? ch.bindQueue(queue, exchange, `user.u${i}`) : ch.unbindQueue(queue, exchange, `user.u${i}`);
        }));
        return (n / (performance.now() - start)) * 1000;
      };
      const binds = await rate(true);
      const unbinds = await rate(false);
      console.log(`${type} exchange, ${count} channel${count > 1 ? 's' : ''}: ${Math.round(binds)} binds/s, ${Math.round(unbinds)} unbinds/s`);
      for (const ch of channels) await ch.close();
      await setup.deleteQueue(queue);
    }
    await setup.deleteExchange(exchange);
  }
  await model.close();
} finally {
  await rabbit?.close();
}
