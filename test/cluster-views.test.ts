// Cluster-wide views: the control API of any node answers for every node (scatter-gather
// over a real RabbitMQ), says which nodes answered, and stops counting a node that is gone.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { startApp, type Recorded } from './helpers/app.js';
import { merge, startSidecar, type Sidecar } from './helpers/sidecar.js';
import { connectReliable, type TestClient } from './helpers/client.js';
import { rabbitSkip, startRabbit, uniqueName, type Rabbit } from './helpers/rabbit.js';
import { eventually } from './helpers/eventually.js';
import { freePort, runCli, writeConfig, type CliProcess } from './helpers/process.js';

const skip = rabbitSkip();
let broker: Promise<Rabbit> | null = null;
const rabbit = () => (broker ??= startRabbit());
after(async () => { if (broker) await (await broker).close(); });

const TOKEN_SECRET = 'one-secret-for-every-node';

const appHandler = (req: Recorded) => {
  if (req.url === '/ws/connect') {
    const q = req.json().query as Record<string, string>;
    return { status: 200, body: { ...(q.user ? { user: q.user } : {}), channels: q.ch ? q.ch.split(',') : [] } };
  }
  return { status: 204 };
};

interface Node {
  readonly name: string;
  wsUrl(path: string): string;
  control(method: string, path: string): Promise<{ status: number; json: any }>;
}

async function control(port: number, method: string, path: string) {
  const res = await fetch(`http://127.0.0.1:${port}${path}`, { method });
  const text = await res.text();
  return { status: res.status, json: text.startsWith('{') ? JSON.parse(text) : undefined };
}

async function setup(t: import('node:test').TestContext, cluster: Record<string, unknown>) {
  const r = await rabbit();
  const exchange = uniqueName('cluster');
  const teardown: Array<() => Promise<void>> = [];
  t.after(async () => { for (const f of teardown.reverse()) await f(); });
  const app = await startApp(appHandler);
  teardown.push(() => app.close());
  const clients: TestClient[] = [];
  teardown.push(async () => { await Promise.all(clients.map((c) => c.close().catch(() => {}))); });
  const shared = { cluster: { amqp: { url: r.url, exchange }, ...cluster }, session: { tokenSecret: TOKEN_SECRET }, amqp: { reconnect: { baseMs: 20, capMs: 300 } } };

  const inProcess = async (nodeId: string): Promise<Node & { sc: Sidecar }> => {
    const sc = await startSidecar(app.url, merge({ nodeId }, shared));
    teardown.push(() => sc.close());
    return { name: nodeId, sc, wsUrl: (p) => sc.wsUrl(p), control: (m, p) => sc.control(m, p) };
  };
  const cli = async (nodeId: string, workers: number): Promise<Node & { cli: CliProcess }> => {
    const [pub, ctl] = [await freePort(), await freePort()];
    const proc = runCli(['--config', writeConfig(merge({
      listen: `127.0.0.1:${pub}`, control: { listen: `127.0.0.1:${ctl}` }, workers, nodeId,
      app: { url: app.url }, log: { level: 'info' }, drain: { timeoutMs: 2000 },
    }, shared))]);
    teardown.push(async () => { proc.child.kill('SIGCONT'); proc.child.kill('SIGKILL'); await proc.exited; });
    await proc.waitForOutput(workers > 1 ? /switchboard primary ready/ : /switchboard ready/);
    await eventually(async () => (await control(ctl, 'GET', '/readyz')).status === 200, `${nodeId} ready`);
    return { name: nodeId, cli: proc, wsUrl: (p) => `ws://127.0.0.1:${pub}${p}`, control: (m, p) => control(ctl, m, p) };
  };
  const join = async (node: Node, query: string) => {
    const c = await connectReliable(node.wsUrl(`/ws${query}`));
    clients.push(c.client);
    return { client: c.client, id: c.welcome.session as string };
  };
  return { inProcess, cli, join };
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
  stopped.cli.child.kill('SIGSTOP');
  assert.deepEqual((await a.control('GET', '/v1/channels/room')).json, { channel: 'room', connections: 1, nodes: { answered: 1, missing: ['ns'] } });
  const notFound = await a.control('GET', `/v1/connections/${held.id}`);
  assert.equal(notFound.status, 404);
  assert.match(notFound.json.message, /not answering: ns/);
  assert.deepEqual((await a.control('GET', '/v1/nodes')).json, { nodes: [{ node: 'na', state: 'ready', sessions: 1, processes: 1 }], missing: ['ns'] });
  stopped.cli.child.kill('SIGCONT');
  await eventually(async () => (await a.control('GET', '/v1/channels/room')).json.connections === 2, 'the node answers again');
});

test('a killed node leaves the views within three heartbeats', { skip }, async (t) => {
  const fast = await setup(t, { heartbeatMs: 200, queryTimeoutMs: 300 });
  const a = await fast.inProcess('na');
  const doomed = await fast.cli('nk', 1);
  await everyoneHeard([a, doomed], 2);
  await fast.join(doomed, '?user=k&ch=room');
  assert.equal((await a.control('GET', '/v1/channels/room')).json.connections, 1);
  doomed.cli.child.kill('SIGKILL');
  await doomed.cli.exited;
  await eventually(async () => {
    const { json } = await a.control('GET', '/v1/nodes');
    return json.nodes.length === 1 && json.missing.length === 0;
  }, 'the killed node gone from /v1/nodes');
  assert.deepEqual((await a.control('GET', '/v1/channels/room')).json, { channel: 'room', connections: 0, nodes: { answered: 1, missing: [] } });
  assert.equal((await a.control('GET', '/v1/connections?user=k')).json.connections.length, 0, 'no ghost sessions');
});
