// The presence queries: GET /v1/channels/{c}/presence and GET /v1/users/{u}, on one sidecar, with
// workers, and across a cluster (merged by user, with the nodes that answered), and their bad inputs.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startApp } from './helpers/app.js';
import { startSidecar } from './helpers/sidecar.js';
import { connect, connectReliable, type TestClient } from './helpers/client.js';
import { connectAnswer, startCluster, type TestNode } from './helpers/cluster.js';
import { rabbitSkip } from './helpers/rabbit.js';
import { eventually } from './helpers/eventually.js';
import { startWorkers } from './helpers/process.js';
import { encodeMembersCursor } from '../proxy/presence-query.js';

const skip = rabbitSkip();

/** Every page of a channel's members, `limit` at a time. */
async function allMembers(node: Pick<TestNode, 'control'>, channel: string, limit: number): Promise<{ members: Array<{ user: string; connections: number }>; pages: number }> {
  const members: Array<{ user: string; connections: number }> = [];
  let cursor: string | null = null;
  for (let pages = 1; pages < 100; pages++) {
    const page: any = (await node.control('GET', `/v1/channels/${channel}/presence?limit=${limit}${cursor ? `&cursor=${cursor}` : ''}`)).json;
    assert.ok(page.members.length <= limit, `a page holds at most ${limit}`);
    members.push(...page.members);
    cursor = page.next;
    if (!cursor) return { members, pages };
  }
  throw new Error('no last page');
}

test('members are users with their connections; a connection without a user counts only in connections; a detached session still counts', async (t) => {
  const app = await startApp(connectAnswer);
  const sc = await startSidecar(app.url, { session: { graceMs: 60_000 } });
  const clients: TestClient[] = [];
  t.after(async () => { for (const c of clients) c.ws.terminate(); await sc.close(); await app.close(); });
  for (const q of ['?user=ann&ch=room', '?user=ann&ch=room,other', '?user=bob&ch=room', '?ch=room', '?user=cid&ch=other']) clients.push(await connect(sc.wsUrl(`/ws${q}`)));
  const { client: reliable } = await connectReliable(sc.wsUrl('/ws?user=dee&ch=room'));
  clients.push(reliable);

  assert.deepEqual((await sc.control('GET', '/v1/channels/room/presence')).json, {
    channel: 'room',
    members: [{ user: 'ann', connections: 2 }, { user: 'bob', connections: 1 }, { user: 'dee', connections: 1 }],
    connections: 5,
    next: null,
  });
  assert.deepEqual((await sc.control('GET', '/v1/users/ann')).json, { user: 'ann', online: true, connections: 2, channels: ['other', 'room'] });
  assert.deepEqual((await sc.control('GET', '/v1/users/nobody')).json, { user: 'nobody', online: false, connections: 0, channels: [] });
  assert.deepEqual((await sc.control('GET', '/v1/channels/empty/presence')).json, { channel: 'empty', members: [], connections: 0, next: null });

  // The reliable session's socket drops: detached, still a member within its grace.
  reliable.ws.terminate();
  await eventually(async () => (await sc.control('GET', '/v1/connections?user=dee')).json.connections[0]?.state === 'detached', 'dee detached');
  assert.deepEqual((await sc.control('GET', '/v1/users/dee')).json, { user: 'dee', online: true, connections: 1, channels: ['room'] });
  // A raw connection's end ends its membership.
  await clients[2].close();
  await eventually(async () => (await sc.control('GET', '/v1/channels/room/presence')).json.members.every((m: any) => m.user !== 'bob'), 'bob left');
  assert.deepEqual((await sc.control('GET', '/v1/users/bob')).json, { user: 'bob', online: false, connections: 0, channels: [] });
});

test('a channel with many members comes in pages, each member once, in user order', async (t) => {
  const app = await startApp(connectAnswer);
  const sc = await startSidecar(app.url);
  const clients: TestClient[] = [];
  t.after(async () => { for (const c of clients) c.ws.terminate(); await sc.close(); await app.close(); });
  const users = Array.from({ length: 23 }, (_, i) => `u${String(i).padStart(2, '0')}`);
  for (const u of users) clients.push(await connect(sc.wsUrl(`/ws?user=${u}&ch=big`)));
  clients.push(await connect(sc.wsUrl('/ws?user=u05&ch=big')));
  const { members, pages } = await allMembers(sc, 'big', 5);
  assert.equal(pages, 5);
  assert.deepEqual(members.map((m) => m.user), users);
  assert.deepEqual(members.find((m) => m.user === 'u05'), { user: 'u05', connections: 2 });
  const first = (await sc.control('GET', '/v1/channels/big/presence')).json;
  assert.equal(first.members.length, 23, 'the default page (100) holds them all');
  assert.equal(first.connections, 24);
});

test('bad inputs to the presence routes get 400 bad_query', async (t) => {
  const app = await startApp(connectAnswer);
  const sc = await startSidecar(app.url);
  t.after(async () => { await sc.close(); await app.close(); });
  const bad = [
    `/v1/channels/${'c'.repeat(257)}/presence`,
    '/v1/channels/%E0%A4%A/presence',
    '/v1/channels/room/presence?limit=0',
    '/v1/channels/room/presence?limit=1001',
    '/v1/channels/room/presence?limit=ten',
    '/v1/channels/room/presence?limit=',
    '/v1/channels/room/presence?cursor=!',
    '/v1/channels/room/presence?cursor=',
    // Base64url with stray bits, or not UTF-8: not a cursor this API returned.
    '/v1/channels/room/presence?cursor=YR',
    `/v1/channels/room/presence?cursor=${Buffer.from([0xff, 0xfe]).toString('base64url')}`,
    `/v1/users/${'u'.repeat(1025)}`,
    '/v1/users/%E0%A4%A',
  ];
  for (const path of bad) {
    const res = await sc.control('GET', path);
    assert.equal(res.status, 400, `${path}: ${res.text}`);
    assert.equal(res.json.error, path.includes('%E0') ? 'bad_request' : 'bad_query', path);
  }
  // At the bounds: accepted.
  assert.equal((await sc.control('GET', `/v1/channels/${'c'.repeat(256)}/presence?limit=1000`)).status, 200);
  assert.equal((await sc.control('GET', `/v1/users/${'u'.repeat(1024)}`)).status, 200);
  assert.equal((await sc.control('GET', `/v1/channels/room/presence?cursor=${encodeMembersCursor('zed')}`)).status, 200);
});

test('with workers, members on several workers merge by user', async (t) => {
  const app = await startApp(connectAnswer);
  t.after(() => app.close());
  const { pub, ctl } = await startWorkers(t, app.url, 'pw', 2);
  const control = async (method: string, path: string) => {
    const res = await fetch(`http://127.0.0.1:${ctl}${path}`, { method });
    return { status: res.status, json: await res.json() as any };
  };
  const clients: TestClient[] = [];
  t.after(() => { for (const c of clients) c.ws.terminate(); });
  // Enough connections that both workers hold some (the kernel spreads them).
  for (let i = 0; i < 12; i++) clients.push(await connect(`ws://127.0.0.1:${pub}/ws?user=${i % 3 === 0 ? 'solo' : `u${i % 2}`}&ch=room`));
  clients.push(await connect(`ws://127.0.0.1:${pub}/ws?ch=room`));
  const workers = new Set((await control('GET', '/v1/connections?limit=1000')).json.connections.map((c: any) => c.connection.split('-')[1]));
  assert.equal(workers.size, 2, 'both workers hold connections');
  assert.deepEqual((await control('GET', '/v1/channels/room/presence')).json, {
    channel: 'room', members: [{ user: 'solo', connections: 4 }, { user: 'u0', connections: 4 }, { user: 'u1', connections: 4 }], connections: 13, next: null,
  });
  const paged = await allMembers({ control }, 'room', 1);
  assert.deepEqual(paged.members.map((m) => `${m.user}:${m.connections}`), ['solo:4', 'u0:4', 'u1:4']);
  assert.deepEqual((await control('GET', '/v1/users/u1')).json, { user: 'u1', online: true, connections: 4, channels: ['room'] });
});

test('in a cluster, any node answers for every node, merged by user; a node that does not answer is named', { skip }, async (t) => {
  const c = await startCluster(t, { cluster: { heartbeatMs: 10_000, queryTimeoutMs: 300 } });
  const a = await c.node('pa');
  const b = await c.cli('pb', 1);
  for (const n of [a, b]) {
    await eventually(async () => (await n.control('GET', '/v1/nodes')).json.nodes.length === 2, `${n.name} sees both nodes`);
  }
  await c.join(a, '?user=ann&ch=room');
  await c.join(b, '?user=ann&ch=room,side');
  await c.join(b, '?user=bob&ch=room');
  await c.join(a, '?ch=room');
  const everywhere = { answered: 2, missing: [] };
  for (const n of [a, b]) {
    assert.deepEqual((await n.control('GET', '/v1/channels/room/presence')).json, {
      channel: 'room', members: [{ user: 'ann', connections: 2 }, { user: 'bob', connections: 1 }], connections: 4, next: null, nodes: everywhere,
    }, `from ${n.name}`);
    assert.deepEqual((await n.control('GET', '/v1/users/ann')).json, { user: 'ann', online: true, connections: 2, channels: ['room', 'side'], nodes: everywhere });
  }
  const first = (await a.control('GET', '/v1/channels/room/presence?limit=1')).json;
  assert.deepEqual(first.members, [{ user: 'ann', connections: 2 }]);
  const second = (await a.control('GET', `/v1/channels/room/presence?limit=1&cursor=${first.next}`)).json;
  assert.deepEqual(second.members, [{ user: 'bob', connections: 1 }]);

  b.proc.child.kill('SIGSTOP');
  const missing = { answered: 1, missing: ['pb'] };
  assert.deepEqual((await a.control('GET', '/v1/channels/room/presence')).json, {
    channel: 'room', members: [{ user: 'ann', connections: 1 }], connections: 2, next: null, nodes: missing,
  });
  assert.deepEqual((await a.control('GET', '/v1/users/bob')).json, { user: 'bob', online: false, connections: 0, channels: [], nodes: missing });
  b.proc.child.kill('SIGCONT');
  await eventually(async () => (await a.control('GET', '/v1/users/bob')).json.online === true, 'pb answers again');
});
