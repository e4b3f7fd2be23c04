// Several Switchboard nodes sharing a real RabbitMQ (`cluster.amqp`): pushes and closes
// cross nodes; bindings follow the sessions each node holds.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { startApp, type TestApp } from './helpers/app.js';
import { merge, startSidecar, type Sidecar } from './helpers/sidecar.js';
import { connectReliable, type TestClient } from './helpers/client.js';
import { AmqpClient, rabbitSkip, startRabbit, uniqueName, type Rabbit } from './helpers/rabbit.js';
import { eventually } from './helpers/eventually.js';
import { bindingKey } from '../plugins/amqp/cluster-wire.js';

const skip = rabbitSkip();
let broker: Promise<Rabbit> | null = null;
const rabbit = () => (broker ??= startRabbit());
after(async () => { if (broker) await (await broker).close(); });

/** The app: `?user=u&ch=a,b` on the WebSocket URL decides user and channels; subscriptions are allowed. */
const appHandler = (req: { url: string; json(): any }) => {
  if (req.url === '/ws/connect') {
    const q = req.json().query as Record<string, string>;
    return { status: 200, body: { ...(q.user ? { user: q.user } : {}), channels: q.ch ? q.ch.split(',') : [] } };
  }
  return { status: 204 };
};

async function cluster(t: import('node:test').TestContext, ids: string[], overrides: Record<string, unknown> = {}) {
  const r = await rabbit();
  const exchange = uniqueName('cluster');
  const teardown: Array<() => Promise<void>> = [];
  t.after(async () => { for (const f of teardown.reverse()) await f(); });
  const app: TestApp = await startApp(appHandler as never);
  teardown.push(() => app.close());
  const amqp = await AmqpClient.open(r.url);
  teardown.push(() => amqp.close());
  const nodes: Sidecar[] = [];
  for (const nodeId of ids) {
    const sc = await startSidecar(app.url, merge({
      nodeId,
      cluster: { amqp: { url: r.url, exchange } },
      session: { tokenSecret: 'one-secret-for-every-node' },
      amqp: { reconnect: { baseMs: 20, capMs: 300 } },
      webhooks: { paths: { subscribe: '/ws/subscribe' } },
    }, overrides));
    teardown.push(() => sc.close());
    nodes.push(sc);
  }
  await eventually(() => nodes.every((n) => n.sb.readiness().ready), 'every node ready');
  const clients: TestClient[] = [];
  teardown.push(async () => { await Promise.all(clients.map((c) => c.close().catch(() => {}))); });
  const join = async (sc: Sidecar, query = '') => {
    const c = await connectReliable(sc.wsUrl(`/ws${query}`));
    clients.push(c.client);
    return { client: c.client, id: c.welcome.session as string };
  };
  return { r, app, amqp, exchange, nodes, join };
}

const isProbe = (f: any) => f.type === 'message' && f.data && typeof f.data === 'object' && 'probe' in f.data;

/** The next pushed data, skipping probes. */
async function nextData(c: TestClient): Promise<unknown> {
  for (;;) {
    const f = await c.nextJson('a pushed message');
    if (f.type === 'message' && !isProbe(f)) return f.data ?? { binary: f.binary };
  }
}

const pathOf = (target: Record<string, string | true>) =>
  'channel' in target ? `/v1/channels/${encodeURIComponent(target.channel as string)}/messages`
  : 'user' in target ? `/v1/users/${encodeURIComponent(target.user as string)}/messages`
  : 'connection' in target ? `/v1/connections/${encodeURIComponent(target.connection as string)}/messages`
  : '/v1/broadcast';

/**
 * Binding is asynchronous: push probes from `from` until each client has received one, so
 * every node has bound its queue for the target. Probes are skipped by `nextData`.
 */
async function routesSettled(from: Sidecar, target: Record<string, string | true>, clients: TestClient[]): Promise<void> {
  const pending = new Set(clients);
  let k = 0;
  await eventually(async () => {
    for (const c of [...pending]) if (c.frames.some((f) => isProbe(f.json()))) pending.delete(c);
    if (pending.size === 0) return true;
    assert.equal((await from.control('POST', pathOf(target), { probe: k++ })).status, 202);
    return false;
  }, () => `cluster bindings (${pending.size} of ${clients.length} clients without a probe after ${k})`);
}

test('three nodes: channel, user and broadcast pushes reach every node once', { skip }, async (t) => {
  const { nodes: [a, b, c], join } = await cluster(t, ['na', 'nb', 'nc']);
  const a1 = await join(a, '?user=u1&ch=news');
  const b1 = await join(b, '?user=u1&ch=news');
  const c1 = await join(c, '?user=u2&ch=news');
  await routesSettled(a, { channel: 'news' }, [b1.client, c1.client]);
  await routesSettled(c, { user: 'u1' }, [a1.client, b1.client]);

  const sent = await a.control('POST', '/v1/channels/news/messages', { n: 1 });
  assert.equal(sent.status, 202);
  assert.equal(sent.json.published, true);
  assert.equal(sent.json.delivered, 1, 'local counts');
  await c.control('POST', '/v1/users/u1/messages', 'to u1', { 'content-type': 'text/plain' });
  await b.control('POST', '/v1/broadcast', Buffer.from([7]), { 'content-type': 'application/octet-stream' });
  await a.control('POST', '/v1/broadcast', { end: true });

  // Pushes from different nodes have no order between them (each takes its own path through
  // the broker, or none when local); pushes from one node keep theirs.
  const read = async (cl: TestClient, n: number) => { const out = []; for (let i = 0; i < n; i++) out.push(JSON.stringify(await nextData(cl))); return out; };
  const check = async (cl: TestClient, expected: unknown[]) => {
    const got = await read(cl, expected.length);
    assert.deepEqual([...got].sort(), expected.map((e) => JSON.stringify(e)).sort(), 'each push once');
    assert.ok(got.indexOf('{"n":1}') < got.indexOf('{"end":true}'), 'pushes of one node in order');
  };
  await check(a1.client, [{ n: 1 }, 'to u1', { binary: 'Bw==' }, { end: true }]);
  await check(b1.client, [{ n: 1 }, 'to u1', { binary: 'Bw==' }, { end: true }]);
  await check(c1.client, [{ n: 1 }, { binary: 'Bw==' }, { end: true }]);
  // Nothing more: a marker from one node arrives next, with no duplicate before it.
  await b.control('POST', '/v1/broadcast', { marker: true });
  for (const cl of [a1.client, b1.client, c1.client]) assert.deepEqual(await nextData(cl), { marker: true });
});

test('a connection push goes to its node only; an unknown local connection is 404', { skip }, async (t) => {
  const { nodes: [a, b], amqp, exchange, join } = await cluster(t, ['na', 'nb', 'nc']);
  const spy = await amqp.collect(exchange, 'node.*');
  const b1 = await join(b);
  assert.ok(b1.id.startsWith('nb-'));
  const res = await a.control('POST', `/v1/connections/${b1.id}/messages`, { hi: 'b' }, { 'x-switchboard-ttl-ms': '60000', 'x-switchboard-class': 'lossy' });
  assert.equal(res.status, 202);
  assert.equal(res.json.published, true);
  assert.deepEqual(await nextData(b1.client), { hi: 'b' });
  const [m] = await spy.waitFor(1);
  assert.equal(m.fields.routingKey, 'node.nb');
  assert.equal(m.properties.headers!['x-switchboard-origin'], 'na');
  assert.equal(m.properties.headers!['x-switchboard-class'], 'lossy');
  assert.ok(Number(m.properties.expiration) > 0 && Number(m.properties.expiration) <= 60000);
  assert.equal((await a.control('POST', '/v1/connections/na-0-nothere/messages', { x: 1 })).status, 404);
  // One more through B itself: local, nothing published.
  const local = await b.control('POST', `/v1/connections/${b1.id}/messages`, { hi: 'again' });
  assert.equal(local.json.published, undefined);
  assert.deepEqual(await nextData(b1.client), { hi: 'again' });
  assert.equal(spy.messages.length, 1);
});

test('bindings follow the registry: bound on the first local session, unbound on the last', { skip }, async (t) => {
  const { nodes: [a], amqp, exchange, join } = await cluster(t, ['na']);
  const channel = 'odd.name*#with dots';
  const key = bindingKey('channel', channel);
  assert.match(key, /^channel\.[A-Za-z0-9_-]+$/, 'escaped: no topic syntax');
  assert.equal(await amqp.routable(exchange, key), false);
  const first = await join(a, '?user=solo');
  const second = await join(a, '?user=solo');
  for (const c of [first, second]) {
    c.client.send({ type: 'subscribe', channel, id: 's' });
    assert.deepEqual(await c.client.until('ack'), { type: 'ack', id: 's' });
  }
  await eventually(() => amqp.routable(exchange, key), 'channel bound');
  await eventually(() => amqp.routable(exchange, bindingKey('user', 'solo')), 'user bound');
  assert.equal(await amqp.routable(exchange, 'node.na'), true);
  assert.equal(await amqp.routable(exchange, 'all'), true);

  first.client.send({ type: 'unsubscribe', channel, id: 'u' });
  await first.client.until('ack');
  // The second subscriber keeps the binding.
  assert.equal(await amqp.routable(exchange, key), true);
  second.client.send({ type: 'unsubscribe', channel, id: 'u' });
  await second.client.until('ack');
  await eventually(async () => !(await amqp.routable(exchange, key)), 'channel unbound after the last subscriber left');

  await first.client.close(1000);
  assert.equal(await amqp.routable(exchange, bindingKey('user', 'solo')), true, 'one session of the user is left');
  await second.client.close(1000);
  await eventually(async () => !(await amqp.routable(exchange, bindingKey('user', 'solo'))), 'user unbound after the last session ended');
  assert.equal(await amqp.routable(exchange, 'node.na'), true);
});

test('DELETE /v1/users and /v1/connections close sessions on other nodes', { skip }, async (t) => {
  const { nodes: [a, b, c], join } = await cluster(t, ['na', 'nb', 'nc']);
  const b1 = await join(b, '?user=evil');
  const c1 = await join(c, '?user=evil');
  const c2 = await join(c, '?user=fine');
  await routesSettled(a, { user: 'evil' }, [b1.client, c1.client]);
  const res = await a.control('DELETE', '/v1/users/evil?code=4003&reason=revoked');
  assert.equal(res.status, 200);
  assert.deepEqual(await b1.client.closed, { code: 4003, reason: 'revoked' });
  assert.deepEqual(await c1.client.closed, { code: 4003, reason: 'revoked' });
  const one = await b.control('DELETE', `/v1/connections/${c2.id}?code=4001`);
  assert.equal(one.status, 200);
  assert.equal((await c2.client.closed).code, 4001);
});

test('the push queue feeds the cluster: a queued push reaches sockets on every node', { skip }, async (t) => {
  const r = await rabbit();
  const pushQueue = uniqueName('push');
  const { nodes: [a, b], amqp, join } = await cluster(t, ['na', 'nb'], { amqp: { url: r.url, pushQueue, deadLetterExchange: uniqueName('dead') } });
  const a1 = await join(a, '?ch=room');
  const b1 = await join(b, '?ch=room');
  await routesSettled(a, { channel: 'room' }, [b1.client]);
  await routesSettled(b, { channel: 'room' }, [a1.client]);
  for (let i = 0; i < 5; i++) amqp.channel.sendToQueue(pushQueue, Buffer.from(JSON.stringify({ messages: [{ to: { channel: 'room' }, data: { i } }] })));
  for (const cl of [a1.client, b1.client]) {
    const got = [];
    for (let i = 0; i < 5; i++) got.push(await nextData(cl));
    // Both nodes consume the queue, so arrival order across them is not the queue's.
    assert.deepEqual(got.map((g) => (g as { i: number }).i).sort(), [0, 1, 2, 3, 4], 'each once');
  }
});
