// Cluster-wide views: the control API of any node answers for every node (scatter-gather
// over a real RabbitMQ), says which nodes answered, and stops counting a node that is gone.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { TestClient } from './helpers/client.js';
import { rabbitSkip } from './helpers/rabbit.js';
import { eventually } from './helpers/eventually.js';
import { startCluster, type TestNode } from './helpers/cluster.js';

const skip = rabbitSkip();
type Node = TestNode;

async function setup(t: import('node:test').TestContext, cluster: Record<string, unknown>) {
  const c = await startCluster(t, { cluster });
  return { inProcess: c.node, cli: c.cli, join: c.join };
}

/** Every node has heard from every other (a view asked too early would not wait for a node it never heard of). */
async function everyoneHeard(nodes: Node[], processes: number): Promise<void> {
  for (const n of nodes) {
    await eventually(async () => {
      const { json } = await n.control('GET', '/v1/nodes');
      return json.nodes.reduce((sum: number, v: any) => sum + v.processes, 0) === processes;
    }, `${n.name} sees ${processes} processes`);
  }
}

test('any node answers for the whole cluster, workers included: channels, lists, one connection, closes, and the nodes', { skip }, async (t) => {
  const { inProcess, cli, join } = await setup(t, {});
  const a = await inProcess('na');
  const b = await inProcess('nb');
  const w = await cli('nw', 2);
  const nodes = [a, b, w];
  await everyoneHeard(nodes, 4);

  const sessions: Array<{ node: Node; client: TestClient; id: string }> = [];
  for (const [node, query] of [[a, '?user=u1&ch=room'], [b, '?user=u1&ch=room'], [b, '?user=u2&ch=room'], [w, '?user=u1&ch=room'], [w, '?user=u1'], [w, '?user=u3&ch=room']] as const) {
    sessions.push({ node, ...(await join(node, query)) });
  }
  const everywhere = { answered: 3, missing: [] };
  for (const n of nodes) {
    assert.deepEqual((await n.control('GET', '/v1/channels/room')).json, { channel: 'room', connections: 5, nodes: everywhere }, `channel size from ${n.name}`);
    const listed = (await n.control('GET', '/v1/connections?user=u1')).json;
    assert.deepEqual(listed.connections.map((c: any) => c.connection).sort(), [0, 1, 3, 4].map((i) => sessions[i].id).sort(), `list from ${n.name}`);
    assert.deepEqual(listed.nodes, everywhere);
    const info = (await n.control('GET', `/v1/connections/${sessions[5].id}`)).json;
    assert.equal(info.user, 'u3', `from ${n.name}: ${JSON.stringify(info)}`);
    assert.deepEqual(info.nodes, everywhere);
  }
  // Paging over every node: each connection once.
  const seen: string[] = [];
  let cursor: string | null = null;
  for (let pages = 0; pages < 10; pages++) {
    const page: any = (await a.control('GET', `/v1/connections?limit=2${cursor ? `&cursor=${cursor}` : ''}`)).json;
    assert.ok(page.connections.length <= 2);
    seen.push(...page.connections.map((c: any) => c.connection));
    cursor = page.next;
    if (!cursor) break;
  }
  assert.deepEqual(seen.sort(), sessions.map((s) => s.id).sort());

  const view = (await b.control('GET', '/v1/nodes')).json;
  assert.deepEqual(view, {
    nodes: [
      { node: 'na', state: 'ready', sessions: 1, processes: 1 },
      { node: 'nb', state: 'ready', sessions: 2, processes: 1 },
      { node: 'nw', state: 'ready', sessions: 3, processes: 2 },
    ],
    missing: [],
  });

  // Closes count what they closed, everywhere.
  const one = await a.control('DELETE', `/v1/connections/${sessions[2].id}?code=4001`);
  assert.deepEqual(one.json, { closed: 1, nodes: everywhere });
  assert.equal((await sessions[2].client.closed).code, 4001);
  const revoked = await w.control('DELETE', '/v1/users/u1?code=4003&reason=revoked');
  assert.deepEqual(revoked.json, { closed: 4, nodes: everywhere });
  for (const i of [0, 1, 3, 4]) assert.deepEqual(await sessions[i].client.closed, { code: 4003, reason: 'revoked' });
  assert.equal((await a.control('GET', `/v1/connections/${sessions[0].id}`)).status, 404);
  assert.equal((await a.control('DELETE', `/v1/connections/${sessions[0].id}`)).status, 404);
  await eventually(async () => (await a.control('GET', '/v1/channels/room')).json.connections === 1, 'one left in the room');
});

test('a node that does not answer is named as missing; a node that is gone stops being counted', { skip }, async (t) => {
  // Long heartbeats: the stopped node stays counted as live while the views are asked.
  const slow = await setup(t, { heartbeatMs: 10_000, queryTimeoutMs: 300 });
  const a = await slow.inProcess('na');
  const stopped = await slow.cli('ns', 1);
  await everyoneHeard([a, stopped], 2);
  const held = await slow.join(stopped, '?user=s&ch=room');
  await slow.join(a, '?ch=room');
  stopped.proc.child.kill('SIGSTOP');
  assert.deepEqual((await a.control('GET', '/v1/channels/room')).json, { channel: 'room', connections: 1, nodes: { answered: 1, missing: ['ns'] } });
  const notFound = await a.control('GET', `/v1/connections/${held.id}`);
  assert.equal(notFound.status, 404);
  assert.match(notFound.json.message, /not answering: ns/);
  assert.deepEqual((await a.control('GET', '/v1/nodes')).json, { nodes: [{ node: 'na', state: 'ready', sessions: 1, processes: 1 }], missing: ['ns'] });
  stopped.proc.child.kill('SIGCONT');
  await eventually(async () => (await a.control('GET', '/v1/channels/room')).json.connections === 2, 'the node answers again');
});

test('a killed node leaves the views within three heartbeats', { skip }, async (t) => {
  const fast = await setup(t, { heartbeatMs: 200, queryTimeoutMs: 300 });
  const a = await fast.inProcess('na');
  const doomed = await fast.cli('nk', 1);
  await everyoneHeard([a, doomed], 2);
  await fast.join(doomed, '?user=k&ch=room');
  assert.equal((await a.control('GET', '/v1/channels/room')).json.connections, 1);
  doomed.proc.child.kill('SIGKILL');
  await doomed.proc.exited;
  await eventually(async () => {
    const { json } = await a.control('GET', '/v1/nodes');
    return json.nodes.length === 1 && json.missing.length === 0;
  }, 'the killed node gone from /v1/nodes');
  assert.deepEqual((await a.control('GET', '/v1/channels/room')).json, { channel: 'room', connections: 0, nodes: { answered: 1, missing: [] } });
  assert.equal((await a.control('GET', '/v1/connections?user=k')).json.connections.length, 0, 'no ghost sessions');
});

test('a subscription changed on any node reaches the connection where it is held, workers included; one held nowhere is 404 naming the nodes that answered', { skip }, async (t) => {
  const { inProcess, cli, join } = await setup(t, {});
  const a = await inProcess('na');
  const w = await cli('nw', 2);
  await everyoneHeard([a, w], 3);
  const there = await join(w, '?user=far');
  const put = await a.control('PUT', `/v1/connections/${there.id}/channels/news`);
  assert.equal(put.status, 200);
  assert.deepEqual(put.json, { connection: there.id, channel: 'news', subscribed: true, nodes: { answered: 2, missing: [] } });
  await eventually(async () => (await a.control('GET', '/v1/channels/news')).json.connections === 1, 'the cluster counts it in the channel');
  // A channel push through the other node reaches it.
  for (;;) {
    assert.equal((await a.control('POST', '/v1/channels/news/messages', { n: 1 })).status, 202);
    const f = await there.client.nextJson('the channel push');
    if (f.type === 'message') {
      assert.deepEqual(f.data, { n: 1 });
      break;
    }
  }
  const del = await w.control('DELETE', `/v1/connections/${there.id}/channels/news`);
  assert.deepEqual(del.json, { connection: there.id, channel: 'news', subscribed: false, nodes: { answered: 2, missing: [] } });
  assert.equal((await a.control('GET', '/v1/channels/news')).json.connections, 0);
  const nobody = await a.control('PUT', '/v1/connections/nw-0-nosuchone/channels/news');
  assert.equal(nobody.status, 404);
  assert.equal(nobody.json.error, 'unknown_connection');
});
