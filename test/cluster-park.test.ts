// Parked sessions: a draining node parks in RabbitMQ the reliable sessions whose clients did
// not come back, with their grace; any process claims one within it, with what was pushed to
// it meanwhile; one nobody claims ends with one disconnect webhook.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { WebSocket } from 'ws';
import type { TestClient } from './helpers/client.js';
import { SwitchboardClient } from '../client/index.js';
import { AmqpClient, rabbitSkip } from './helpers/rabbit.js';
import { eventually } from './helpers/eventually.js';
import { rabbit, startCluster } from './helpers/cluster.js';

const skip = rabbitSkip();

/** Half of drain.timeoutMs is the reconnect spread: short, so a drain reaches parking soon. */
const setup = (t: import('node:test').TestContext, config: Record<string, unknown> = {}) =>
  startCluster(t, { session: { graceMs: 60_000 }, drain: { timeoutMs: 1000 }, ...config });

/** Nodes A and B, and one detached reliable session of `user` on A, parked by A's drain (A is closed). */
async function parkedOnA(t: import('node:test').TestContext, user: string) {
  const cluster = await setup(t);
  const a = await cluster.node('na');
  const b = await cluster.node('nb');
  const s = await cluster.join(a, `?user=${user}`);
  s.client.ws.terminate();
  await eventually(() => a.sb.registry.get(s.id)?.state === 'detached', 'detached');
  await a.close();
  return { ...cluster, a, b, s };
}

async function messages(c: TestClient, n: number): Promise<unknown[]> {
  const out = [];
  while (out.length < n) {
    const f = await c.nextJson('a message');
    assert.notEqual(f.type, 'gap', JSON.stringify(f));
    if (f.type === 'message') out.push(f.data);
  }
  return out;
}

test('a drain parks the sessions that did not move; another node claims one with the pushes it got while parked, in order', { skip }, async (t) => {
  const { app, node, join, resume } = await setup(t);
  const a = await node('na');
  const b = await node('nb');
  const away = await join(a, '?user=parked&ch=room');
  const stays = await join(a, '?user=stubborn');
  assert.equal((await a.control('POST', `/v1/connections/${away.id}/messages`, { n: 1 })).status, 202);
  assert.deepEqual(await messages(away.client, 1), [{ n: 1 }]);
  away.client.ws.terminate();
  await eventually(() => a.sb.registry.get(away.id)?.state === 'detached', 'detached');
  assert.equal((await a.control('POST', `/v1/connections/${away.id}/messages`, { n: 2 })).status, 202);

  // A drains: nobody resumes within its spread, so both are parked; the attached one is closed 1012.
  await a.close();
  assert.equal((await stays.client.closed).code, 1012);
  assert.equal(app.byPath('/ws/disconnect').length, 0, 'parked, not ended');
  // While parked: pushes by connection, user and channel, through B.
  for (const [path, n] of [[`/v1/connections/${away.id}/messages`, 3], ['/v1/users/parked/messages', 4], ['/v1/channels/room/messages', 5]] as const) {
    const res = await b.control('POST', path, { n });
    assert.equal(res.status, 202, path);
  }
  const connects = app.byPath('/ws/connect').length;
  const claimed = await resume(b, away.token, 1);
  assert.equal(claimed.welcome.resumed, true);
  assert.equal(claimed.welcome.session, away.id);
  assert.deepEqual(await messages(claimed.client, 4), [{ n: 2 }, { n: 3 }, { n: 4 }, { n: 5 }]);
  assert.equal(b.sb.registry.get(away.id)?.user, 'parked');
  assert.deepEqual([...(b.sb.registry.get(away.id)?.channels ?? [])], ['room']);
  // Live on B now: a push through B reaches it directly.
  assert.deepEqual((await b.control('POST', `/v1/connections/${away.id}/messages`, { n: 6 })).json, { delivered: 1, queued: 0, dropped: 0 });
  assert.deepEqual(await messages(claimed.client, 1), [{ n: 6 }]);
  // The one closed 1012 comes back too.
  const back = await resume(b, stays.token, 0);
  assert.equal(back.welcome.resumed, true);
  assert.equal(app.byPath('/ws/connect').length, connects, 'no connect webhook for a claimed session');
  assert.equal(app.byPath('/ws/disconnect').length, 0);
  // Claimed once: the parked copy is gone.
  const again = await resume(b, away.token, 0);
  assert.equal(again.welcome.resumed, true, 'held by B now, so a resume there takes it over');
  assert.equal((await claimed.client.closed).code, 4009);
});

test('a parked session nobody claims ends with one disconnect webhook when its grace runs out', { skip }, async (t) => {
  const { app, node, join } = await setup(t, { session: { graceMs: 1500 } });
  const a = await node('na');
  await node('nb');
  const lonely = await join(a, '?user=lonely');
  lonely.client.ws.terminate();
  await eventually(() => a.sb.registry.get(lonely.id)?.state === 'detached', 'detached');
  await a.close();
  const gone = await app.waitFor((r) => r.url === '/ws/disconnect' && r.json().connection === lonely.id, 'the disconnect of the expired parked session');
  assert.equal(gone.json().user, 'lonely');
  assert.equal(gone.json().code, 1012);
  assert.equal(app.byPath('/ws/disconnect').filter((r) => r.json().connection === lonely.id).length, 1);
});

test('a single sidecar restarted: clients resume on the replacement process, whatever its node id', { skip }, async (t) => {
  const { app, node, join, resume } = await setup(t);
  const first = await node('solo');
  const sessions = [await join(first, '?user=u1'), await join(first, '?user=u2')];
  for (const s of sessions) assert.equal((await first.control('POST', `/v1/connections/${s.id}/messages`, { for: s.id })).status, 202);
  for (const s of sessions) assert.deepEqual(await messages(s.client, 1), [{ for: s.id }]);
  await first.close();
  // The same node id (a pod that keeps its name), and another (a random one).
  const same = await node('solo');
  const one = await resume(same, sessions[0].token, 1);
  assert.equal(one.welcome.resumed, true);
  assert.equal(one.welcome.session, sessions[0].id);
  const other = await node('fresh');
  const two = await resume(other, sessions[1].token, 1);
  assert.equal(two.welcome.resumed, true);
  assert.equal(two.welcome.session, sessions[1].id);
  assert.equal(app.byPath('/ws/disconnect').length, 0);
  assert.equal(app.byPath('/ws/connect').length, 2);
});

test('a parked session survives a broker restart, with what was pushed to it while parked', { skip }, async (t) => {
  const r = await rabbit();
  if (!r.owned) return t.skip('the broker is not this test\'s to restart (AMQP_URL)');
  const { b, s: held, resume } = await parkedOnA(t, 'durable');
  assert.equal((await b.control('POST', '/v1/users/durable/messages', { kept: 1 })).status, 202);
  await r.stop();
  await r.start();
  await eventually(() => b.sb.readiness().ready, 'B reconnected to the broker');
  const claimed = await resume(b, held.token, 0);
  assert.equal(claimed.welcome.resumed, true);
  assert.deepEqual(await messages(claimed.client, 1), [{ kept: 1 }]);
});

test('the client library follows a drain hint to another node and keeps its session: no reset, no webhooks', { skip }, async (t) => {
  // A budget a move fits in however busy the machine (docs/cluster.md: a move still under way when it runs out gives up).
  const { app, node } = await setup(t, { drain: { timeoutMs: 6000 } });
  const a = await node('na');
  const b = await node('nb');
  // Sockets go where a load balancer would send them: to A until it drains, then to B.
  let target = a;
  class Balanced extends WebSocket {
    constructor(url: string, protocols: string | string[]) {
      super(url.replace(/^ws:\/\/[^/]+/, target.wsUrl('').replace(/\/$/, '')), protocols);
    }
  }
  const client = new SwitchboardClient(a.wsUrl(), { WebSocket: Balanced as never, backoff: { baseMs: 10, capMs: 50 } });
  t.after(() => client.close());
  const opened: Array<{ session: string; resumed: boolean }> = [];
  let resets = 0;
  client.on('open', (info) => opened.push(info));
  client.on('reset', () => resets++);
  const got: unknown[] = [];
  client.on('message', (data) => got.push(data));
  await eventually(() => opened.length === 1, 'the first welcome');
  const id = opened[0].session;
  assert.equal((await a.control('POST', `/v1/connections/${id}/messages`, { n: 1 })).status, 202);
  await eventually(() => got.length === 1, 'the first push');
  target = b;
  await a.close();
  await eventually(() => opened.length === 2, 'the welcome on B');
  assert.deepEqual(opened[1], { session: id, resumed: true });
  assert.equal(resets, 0);
  assert.equal((await b.control('POST', `/v1/connections/${id}/messages`, { n: 2 })).json.delivered, 1);
  await eventually(() => got.length === 2, 'a push on B');
  assert.deepEqual(got, [{ n: 1 }, { n: 2 }]);
  assert.equal(app.byPath('/ws/connect').length, 1);
  assert.equal(app.byPath('/ws/disconnect').length, 0);
});

test('a resume that reaches the holder while it parks the session waits for the parked copy and claims it: no reset', { skip }, async (t) => {
  const { b, s, resume, url, exchange } = await parkedOnA(t, 'racer');
  // The parked copy is kept out of reach for now (as while its holder still writes it), and
  // the process the token names answers the take as a holder in the middle of parking it does.
  const amqp = await AmqpClient.open(url);
  t.after(() => amqp.close());
  const hold = await amqp.model.createChannel();
  let held = 0;
  await hold.consume(`${exchange}.parked.${s.id}`, () => { held++; }, { exclusive: true, noAck: false });
  await eventually(() => held >= 2, 'the parked snapshot and tail held aside');
  const { queue } = await amqp.channel.assertQueue('', { exclusive: true });
  await amqp.channel.bindQueue(queue, exchange, 'proc.na-0');
  const asked: string[] = [];
  await amqp.channel.consume(queue, (m) => {
    if (!m) return;
    asked.push(String(m.properties.type));
    amqp.channel.publish('', m.properties.replyTo, Buffer.alloc(0), { type: 'parking', correlationId: m.properties.correlationId });
    // The parked copy is complete a moment later.
    if (m.properties.type === 'take') setTimeout(() => void hold.close().catch(() => {}), 200);
  }, { noAck: true });

  const claimed = await resume(b, s.token, 0);
  assert.deepEqual(asked, ['take']);
  assert.equal(claimed.welcome.resumed, true, 'claimed from where it was being parked');
  assert.equal(claimed.welcome.session, s.id);
  assert.equal(b.sb.registry.get(s.id)?.user, 'racer');
});

test('a claimed session\'s resume webhook counts the time it spent parked in its gapMs', { skip }, async (t) => {
  const cluster = await setup(t, { webhooks: { paths: { resume: '/ws/resume' } } });
  const a = await cluster.node('na');
  const b = await cluster.node('nb');
  const s = await cluster.join(a, '?user=sleeper');
  s.client.ws.terminate();
  await eventually(() => a.sb.registry.get(s.id)?.state === 'detached', 'detached');
  const detachedBy = Date.now();
  await a.close();
  // Parked for a while: the gap the app hears of must cover it (without it, gapMs stops at the park).
  await new Promise((r) => setTimeout(r, 300));
  const resumedFrom = Date.now();
  const claimed = await cluster.resume(b, s.token, 0);
  assert.equal(claimed.welcome.resumed, true);
  const hook = await cluster.app.waitFor((r) => r.url === '/ws/resume' && r.json().connection === s.id, 'the resume webhook');
  // The session was detached no later than `detachedBy` and resumed no earlier than `resumedFrom` (one clock: one process).
  assert.ok(hook.json().gapMs >= resumedFrom - detachedBy, `gapMs ${hook.json().gapMs} covers the ${resumedFrom - detachedBy} ms it was away`);
});
