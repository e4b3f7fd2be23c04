// Presence across a cluster: one owner counts every node's connections, so a user with tabs on
// two nodes is one member, a resume on another node is no leave and join, a dead node's members
// leave with their events sent by a survivor (the owner, or the one that takes over from a dead
// owner), and presence frames reach subscribers on every node. Real nodes, a real RabbitMQ.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import type { Recorded } from './helpers/app.js';
import { connect, connectReliable, type TestClient } from './helpers/client.js';
import { startCluster, type TestNode } from './helpers/cluster.js';
import { eventually } from './helpers/eventually.js';
import { merge } from './helpers/sidecar.js';
import { AmqpClient, rabbitSkip } from './helpers/rabbit.js';

const skip = rabbitSkip();

interface Seen { type: string; channel: string; user: string; id: string }

/** Refused presence requests (an app away), marked so that `taken` skips them. */
const refused = new WeakSet<Recorded>();

/**
 * Short heartbeats: a killed process is counted gone within a second. `down()`: whether the app
 * answers the presence webhook 503 now.
 */
async function setup(t: TestContext, extra: Record<string, unknown> = {}, down: () => boolean = () => false) {
  const cluster = await startCluster(t, merge({
    webhooks: { paths: { presence: '/ws/presence' } },
    presence: { batchMs: 20 },
    cluster: { heartbeatMs: 300, queryTimeoutMs: 300 },
  }, extra), (r) => {
    if (r.url !== '/ws/presence' || !down()) return null;
    refused.add(r);
    return { status: 503 };
  });
  const { app, track } = cluster;
  /** The events the app took (answered 2xx), in the order it took them. */
  const taken = (): Seen[] => app.byPath('/ws/presence').filter((r) => !refused.has(r)).flatMap((r: Recorded) => r.json().events as Seen[]);
  const open = async (at: TestNode, query: string): Promise<TestClient> => track(await connect(at.wsUrl(`/ws${query}`)));
  /** The events after the first `from`, up to and including the marker's join (which it waits for): "nothing else happened". */
  const until = async (at: TestNode, from: number, marker: string, channel = 'room'): Promise<string[]> => {
    await open(at, `?user=${marker}&ch=${channel}`);
    await eventually(() => taken().some((e) => e.type === 'member_added' && e.user === marker), `${marker} joined`);
    const all = taken();
    return brief(all.slice(from, all.findIndex((e) => e.type === 'member_added' && e.user === marker) + 1));
  };
  return { ...cluster, taken, open, until };
}

const brief = (events: Seen[]) => events.map((e) => `${e.type} ${e.channel} ${e.user}`);

/** Waits until the owner has kept, beside the queue, that these users are members of `room` (read, not taken). */
async function keptTold(t: TestContext, url: string, exchange: string, users: string[]): Promise<void> {
  const amqp = await AmqpClient.open(url);
  t.after(() => amqp.close());
  await eventually(async () => {
    const m = await amqp.channel.get(`${exchange}.presence.told`, { noAck: false });
    if (m === false) return false;
    amqp.channel.nack(m, false, true);
    const told = JSON.parse(m.content.toString()) as { members: Array<[string, string[]]> };
    return told.members.some(([c, members]) => c === 'room' && users.every((u) => members.includes(u)));
  }, 'the owner kept what it told');
}

test('tabs of one user on two nodes are one member: one join; closing all but the last is nothing; the last is the leave', { skip }, async (t) => {
  const { node, open, taken, until } = await setup(t);
  const na = await node('na');
  const nb = await node('nb');
  const tabs = [await open(na, '?user=ann&ch=room'), await open(nb, '?user=ann&ch=room'), await open(nb, '?user=ann&ch=room')];
  assert.deepEqual(await until(na, 0, 'm1'), ['channel_occupied room ann', 'member_added room ann', 'member_added room m1']);
  await tabs[0].close();
  await tabs[1].close();
  await eventually(async () => (await na.control('GET', '/v1/users/ann')).json.connections === 1, 'two of the tabs gone');
  let from = taken().length;
  assert.deepEqual(await until(nb, from, 'm2'), ['member_added room m2'], 'closing two of three tabs, on two nodes, is no event');
  await tabs[2].close();
  await eventually(() => taken().some((e) => e.type === 'member_removed' && e.user === 'ann'), 'ann removed');
  from = taken().length;
  assert.deepEqual(await until(na, from - 1, 'm3'), ['member_removed room ann', 'member_added room m3']);
  const all = taken();
  assert.equal(new Set(all.map((e) => e.id)).size, all.length, 'every event has its own id');
});

test('a reliable session resumed on another node within its grace: no leave and join', { skip }, async (t) => {
  const { node, taken, until, resume, track } = await setup(t, { session: { graceMs: 10_000 } });
  const na = await node('na');
  const nb = await node('nb');
  const { client, welcome } = await connectReliable(na.wsUrl('/ws?user=rex&ch=room'));
  track(client);
  assert.deepEqual(await until(na, 0, 'm1'), ['channel_occupied room rex', 'member_added room rex', 'member_added room m1']);
  client.ws.terminate();
  const back = await resume(nb, welcome.token as string, 0);
  assert.equal(back.welcome.resumed, true);
  await eventually(async () => (await nb.control('GET', '/v1/users/rex')).json.connections === 1, 'rex held by nb');
  const from = taken().length;
  assert.deepEqual(await until(na, from, 'm2'), ['member_added room m2'], 'the move is no event');
});

test('presence frames reach subscribers on every node, for joins on any node', { skip }, async (t) => {
  const { node, track } = await setup(t, { webhooks: { paths: { presence: null } }, presence: { frames: ['room'], batchMs: 20 } });
  const na = await node('na');
  const nb = await node('nb');
  const watcher = await connectReliable(nb.wsUrl('/ws?user=wes&ch=room'));
  track(watcher.client);
  const occupied = await watcher.client.nextJson('the channel occupied');
  assert.deepEqual([occupied.type, occupied.event, occupied.user], ['presence', 'channel_occupied', 'wes']);
  const own = await watcher.client.nextJson('presence own join');
  assert.deepEqual([own.type, own.event, own.user], ['presence', 'member_added', 'wes']);
  track((await connectReliable(na.wsUrl('/ws?user=ann&ch=room'))).client);
  const seen = await watcher.client.nextJson('ann joining on the other node');
  assert.deepEqual([seen.type, seen.event, seen.channel, seen.user], ['presence', 'member_added', 'room', 'ann']);
  assert.equal(seen.seq, own.seq + 1, 'numbered in the subscriber\'s own sequence');
});

test('SIGKILL of a node that is not the owner: its members leave, the events sent by the owner', { skip }, async (t) => {
  const { node, cli, open, taken, app } = await setup(t);
  const owner = await node('na');
  await open(owner, '?user=first&ch=room');
  await eventually(() => taken().some((e) => e.user === 'first'), 'the owner took the first join');
  const doomed = await cli('nk');
  await open(doomed, '?user=ghost&ch=room');
  await eventually(() => taken().some((e) => e.type === 'member_added' && e.user === 'ghost'), 'ghost joined');
  doomed.proc.child.kill('SIGKILL');
  await doomed.proc.exited;
  await eventually(() => taken().some((e) => e.type === 'member_removed' && e.user === 'ghost'), 'the ghost leaves', 15_000);
  assert.equal(taken().filter((e) => e.type === 'member_removed').length, 1, 'only the dead node\'s member leaves');
  assert.ok(app.byPath('/ws/presence').length > 0);
});

test('SIGKILL of the owner: a survivor takes over, and the dead owner\'s members leave, the survivor\'s stay without a new join', { skip }, async (t) => {
  const { node, cli, open, taken, url, exchange } = await setup(t);
  // The first node to consume the presence queue owns it.
  const doomed = await cli('nk');
  const survivor = await node('na');
  await open(doomed, '?user=ghost&ch=room');
  await open(survivor, '?user=stays&ch=room');
  await eventually(() => ['ghost', 'stays'].every((u) => taken().some((e) => e.type === 'member_added' && e.user === u)), 'both joined');
  // What the owner told is kept beside the queue (within a second): the survivor starts from it.
  await keptTold(t, url, exchange, ['ghost', 'stays']);
  const before = taken().length;
  doomed.proc.child.kill('SIGKILL');
  await doomed.proc.exited;
  await eventually(() => taken().some((e) => e.type === 'member_removed' && e.user === 'ghost'), 'the dead owner\'s member leaves', 15_000);
  assert.deepEqual(brief(taken().slice(before)), ['member_removed room ghost'], 'the survivor\'s member is no new event');
});

test('a drained node\'s reliable sessions are parked: members still; one claimed on another node is no event, one never claimed leaves once its grace ends', { skip }, async (t) => {
  const { node, cli, open, taken, resume, track } = await setup(t, { session: { graceMs: 8000 } });
  await node('na');
  const na = await node('nb');
  const draining = await cli('nd');
  const claimed = await connectReliable(draining.wsUrl('/ws?user=claimed&ch=room'));
  track(claimed.client);
  track((await connectReliable(draining.wsUrl('/ws?user=unclaimed&ch=room'))).client);
  await open(draining, '?user=raw&ch=room');
  await eventually(() => ['claimed', 'unclaimed', 'raw'].every((u) => taken().some((e) => e.type === 'member_added' && e.user === u)), 'all three joined');
  draining.proc.child.kill('SIGTERM');
  await draining.proc.exited;
  // A raw session ends with the drain: its leave is not held.
  await eventually(() => taken().some((e) => e.type === 'member_removed' && e.user === 'raw'), 'the raw session\'s leave');
  const back = await resume(na, claimed.welcome.token, 0);
  assert.equal(back.welcome.resumed, true, 'claimed from where it was parked');
  await eventually(() => taken().some((e) => e.type === 'member_removed' && e.user === 'unclaimed'), 'the unclaimed one leaves once its grace is over', 20_000);
  assert.deepEqual(brief(taken().filter((e) => e.user === 'claimed' && e.type.startsWith('member_'))), ['member_added room claimed'], 'the claimed one never left');
});

test('a draining owner hands over: the next owner holds its parked members on, and a member elsewhere is no new event', { skip }, async (t) => {
  const { node, cli, open, taken, until, resume, track } = await setup(t, { session: { graceMs: 8000 } });
  const owner = await cli('no');
  const na = await node('na');
  const moving = await connectReliable(owner.wsUrl('/ws?user=mover&ch=room'));
  track(moving.client);
  await open(na, '?user=stays&ch=room');
  await eventually(() => ['mover', 'stays'].every((u) => taken().some((e) => e.type === 'member_added' && e.user === u)), 'both joined');
  const before = taken().length;
  owner.proc.child.kill('SIGTERM');
  await owner.proc.exited;
  const back = await resume(na, moving.welcome.token, 0);
  assert.equal(back.welcome.resumed, true);
  assert.deepEqual(await until(na, before, 'm1'), ['member_added room m1'], 'no leave or join for the parked member, none for the other');
});

test('a full restart reconciles: members the app was told of that nobody holds leave once a node is back', { skip }, async (t) => {
  const { node, cli, open, taken, url, exchange } = await setup(t);
  const only = await cli('nk');
  await open(only, '?user=ghost&ch=room');
  await eventually(() => taken().some((e) => e.type === 'member_added' && e.user === 'ghost'), 'ghost joined');
  await keptTold(t, url, exchange, ['ghost']);
  only.proc.child.kill('SIGKILL');
  await only.proc.exited;
  await node('na');
  await eventually(() => taken().some((e) => e.type === 'member_removed' && e.user === 'ghost'), 'the ghost leaves', 15_000);
  assert.deepEqual(brief(taken()), ['channel_occupied room ghost', 'member_added room ghost', 'member_removed room ghost', 'channel_vacated room ghost']);
});

test('workers in a cluster each count for themselves: tabs on any worker are one member, and the event metrics are listed once', { skip }, async (t) => {
  const { node, cli, open, taken, until } = await setup(t);
  const na = await node('na');
  const nw = await cli('nw', 2);
  const tabs = [];
  for (let i = 0; i < 4; i++) tabs.push(await open(nw, '?user=ann&ch=room'));
  assert.deepEqual(await until(na, 0, 'm1'), ['channel_occupied room ann', 'member_added room ann', 'member_added room m1']);
  for (const tab of tabs) await tab.close();
  await eventually(() => taken().some((e) => e.type === 'member_removed' && e.user === 'ann'), 'ann removed');
  const from = taken().length;
  assert.deepEqual(await until(nw, from, 'm2'), ['member_added room m2'], 'one leave, nothing more');
  assert.equal(taken().filter((e) => e.user === 'ann').length, 3);
  const text = (await nw.control('GET', '/metrics')).text ?? '';
  assert.equal(text.match(/^# TYPE switchboard_presence_events_total /gm)?.length, 1, 'summed over the workers, once');
});

test('the owner dies while the app is away: the next owner derives the leaves it could not send, and the app ends with the right members', { skip }, async (t) => {
  let down = false;
  const { node, cli, open, taken, app, url, exchange } = await setup(t, { webhooks: { retry: { maxAttempts: 2, baseMs: 5, capMs: 20 } } }, () => down);
  const doomed = await cli('nk');
  const na = await node('na');
  const leaver = await open(na, '?user=leaver&ch=room');
  await open(na, '?user=stays&ch=room');
  await open(doomed, '?user=ghost&ch=room');
  await eventually(() => ['leaver', 'stays', 'ghost'].every((u) => taken().some((e) => e.type === 'member_added' && e.user === u)), 'all three joined');
  await keptTold(t, url, exchange, ['leaver', 'stays', 'ghost']);
  down = true;
  await leaver.close();
  await eventually(() => app.byPath('/ws/presence').filter((r) => refused.has(r) && (r.json().events as Seen[]).some((e) => e.user === 'leaver')).length >= 2, 'the owner tried to send the leave');
  doomed.proc.child.kill('SIGKILL');
  await doomed.proc.exited;
  down = false;
  await eventually(() => ['leaver', 'ghost'].every((u) => taken().some((e) => e.type === 'member_removed' && e.user === u)), () => `both leaves delivered: ${JSON.stringify(brief(taken()))}`, 15_000);
  // Applied as set operations, what the app took is exactly who is there.
  const members = new Set<string>();
  for (const e of taken()) {
    if (e.type === 'member_added') members.add(e.user);
    if (e.type === 'member_removed') members.delete(e.user);
  }
  assert.deepEqual([...members], ['stays']);
  assert.ok(!taken().some((e) => e.type === 'member_removed' && e.user === 'stays'), 'the member that stayed never left');
});

test('malformed messages on the presence queue and a malformed told state are skipped: the owner counts on', { skip }, async (t) => {
  const { node, open, taken, until, url, exchange } = await setup(t);
  const amqp = await AmqpClient.open(url);
  t.after(() => amqp.close());
  // Before any owner: what the app was told is unreadable, so the first owner starts from nothing.
  await amqp.channel.assertQueue(`${exchange}.presence.told`, { durable: true, arguments: { 'x-max-length': 1 } });
  amqp.channel.sendToQueue(`${exchange}.presence.told`, Buffer.from('{"v":1,"members":"all of them"}'));
  const na = await node('na');
  await open(na, '?user=ann&ch=room');
  await eventually(() => taken().some((e) => e.user === 'ann'), 'ann joined');
  const q = `${exchange}.presence`;
  for (const [type, body] of [['full', 'not json'], ['changes', '{"from":"na-0","boot":"x","changes":[["room","ann",7,"left"]]}'], ['bye', '{"from":"na-0"}'], ['gone', '{"from":"zz-0","process":"na-0"}'], [undefined, '{}'], ['full', JSON.stringify({ from: 'na-0', boot: 'b', counts: [['room', 'x'.repeat(5000), 1]] })]] as const) {
    amqp.channel.sendToQueue(q, Buffer.from(body), type === undefined ? {} : { type });
  }
  const from = taken().length;
  assert.deepEqual(await until(na, from, 'm1'), ['member_added room m1'], 'nothing else happened: ann is still a member');
});
