// With workers, the primary consumes the push queue and routes each push to every worker.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from './helpers/client.js';
import { freePort, runCli, writeConfig } from './helpers/process.js';
import { AmqpClient, rabbitSkip, startRabbit, uniqueName, type Rabbit } from './helpers/rabbit.js';
import { eventually } from './helpers/eventually.js';

const skip = rabbitSkip();
let broker: Rabbit | null = null;
after(async () => { await broker?.close(); });

test('two workers: a push from the queue reaches clients on both, once', { skip }, async (t) => {
  broker = await startRabbit();
  const queue = uniqueName('push');
  const [pub, ctl] = [await freePort(), await freePort()];
  const cli = runCli(['--config', writeConfig({
    listen: `127.0.0.1:${pub}`, control: { listen: `127.0.0.1:${ctl}` }, workers: 2, nodeId: 'qw',
    app: { url: 'http://127.0.0.1:1' }, webhooks: { paths: { connect: null, message: null, disconnect: null } },
    amqp: { url: broker.url, pushQueue: queue, deadLetterExchange: uniqueName('dead') },
    log: { level: 'info' }, drain: { timeoutMs: 3000 },
  })]);
  t.after(() => { cli.child.kill('SIGKILL'); });
  await cli.waitForOutput(/switchboard primary ready/);
  await eventually(async () => (await fetch(`http://127.0.0.1:${ctl}/readyz`)).status === 200, 'ready with the push queue consumer');

  const clients = await Promise.all(Array.from({ length: 6 }, () => connect(`ws://127.0.0.1:${pub}/ws`)));
  const infos = await (await fetch(`http://127.0.0.1:${ctl}/v1/connections?limit=10`)).json() as { connections: Array<{ connection: string }> };
  assert.deepEqual(new Set(infos.connections.map((c) => c.connection.split('-')[1])), new Set(['0', '1']));

  const amqp = await AmqpClient.open(broker.url);
  t.after(() => amqp.close());
  amqp.channel.sendToQueue(queue, Buffer.from(JSON.stringify({ messages: [{ to: { all: true }, data: 'from the queue' }] })), { contentType: 'application/json' });
  for (const c of clients) assert.equal((await c.next()).text, 'from the queue');
  await eventually(async () => (await amqp.channel.checkQueue(queue)).messageCount === 0, 'queue drained');
  // Delivered once: a marker sent the same way after it is the next frame, with no copy before it.
  amqp.channel.sendToQueue(queue, Buffer.from(JSON.stringify({ messages: [{ to: { all: true }, data: 'marker' }] })), { contentType: 'application/json' });
  for (const c of clients) assert.equal((await c.next('the marker')).text, 'marker', 'delivered once: nothing before the marker');

  cli.child.kill('SIGTERM');
  assert.deepEqual(await cli.exited, { code: 0, signal: null });
});
