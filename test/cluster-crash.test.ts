// A crash leaves no ghosts: when a process dies without a drain (SIGKILL), the disconnect
// webhooks of its sessions are sent by a survivor, or by its successor of the same name; a
// resume with a lost session's token gets a new session; the views stop listing it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Recorded } from './helpers/app.js';
import { connect, connectReliable } from './helpers/client.js';
import { AmqpClient, rabbitSkip } from './helpers/rabbit.js';
import { eventually } from './helpers/eventually.js';
import { startCluster } from './helpers/cluster.js';

const skip = rabbitSkip();

/** Short heartbeats: a killed process is counted gone within a second. */
const setup = (t: import('node:test').TestContext) => startCluster(t, { cluster: { heartbeatMs: 300, queryTimeoutMs: 300 } });

const disconnectsOf = (app: { byPath(p: string): Recorded[] }, id: string) => app.byPath('/ws/disconnect').filter((r) => r.json().connection === id);

test('SIGKILL: a survivor sends the disconnects of the dead node\'s sessions, once each; their tokens give new sessions; no ghosts in the views', { skip }, async (t) => {
  const { app, node, cli, track } = await setup(t);
  const survivor = await node('na');
  const doomed = await cli('nk');
  const reliable = await connectReliable(doomed.wsUrl('/ws?user=r1&meta=gold'));
  track(reliable.client);
  const detached = await connectReliable(doomed.wsUrl('/ws?user=r2'));
  track(detached.client);
  const raw = track(await connect(doomed.wsUrl('/ws?user=raw')));
  const ended = await connectReliable(doomed.wsUrl('/ws?user=done'));
  await ended.client.close(1000);
  await app.waitFor((r) => r.url === '/ws/disconnect' && r.json().connection === ended.welcome.session, 'the normal disconnect');
  detached.client.ws.terminate();
  await eventually(async () => (await survivor.control('GET', '/v1/nodes')).json.nodes.some((n: any) => n.node === 'nk' && n.sessions === 3), 'the survivor sees the three sessions');
  const rawId = (await survivor.control('GET', '/v1/connections?user=raw')).json.connections[0].connection as string;

  doomed.proc.child.kill('SIGKILL');
  await doomed.proc.exited;
  const lost = [reliable.welcome.session, detached.welcome.session, rawId] as string[];
  for (const id of lost) {
    const [d] = await Promise.all([app.waitFor((r) => r.url === '/ws/disconnect' && r.json().connection === id, `the disconnect of ${id}`)]);
    assert.equal(d.json().code, 1006);
    assert.equal(d.json().reason, 'node lost');
  }
  const gold = disconnectsOf(app, reliable.welcome.session)[0];
  assert.equal(gold.json().user, 'r1');
  assert.equal(gold.headers['x-switchboard-user'], 'r1');
  assert.equal(gold.headers['x-switchboard-meta-tier'], 'gold');
  for (const id of lost) assert.equal(disconnectsOf(app, id).length, 1, `one disconnect for ${id}`);
  assert.equal(disconnectsOf(app, ended.welcome.session).length, 1, 'the session that had ended is not told of twice');

  // No ghosts: the views stop counting the dead node; its tokens start new sessions.
  await eventually(async () => (await survivor.control('GET', '/v1/nodes')).json.nodes.length === 1, 'the dead node gone from /v1/nodes');
  assert.deepEqual((await survivor.control('GET', '/v1/connections?user=r1')).json.connections, []);
  const fresh = track(await connect(survivor.wsUrl(`/ws?resume=${encodeURIComponent(detached.welcome.token)}&lastSeq=0`), 'switchboard.v1'));
  const welcome = await fresh.nextJson('welcome');
  assert.equal(welcome.resumed, false, 'a lost session is never resumed in part');
});

test('SIGKILL of a lone sidecar: its successor of the same name sends the disconnects its predecessor could not', { skip }, async (t) => {
  const { app, cli, track } = await setup(t);
  const first = await cli('solo');
  const a = await connectReliable(first.wsUrl('/ws?user=a'));
  track(a.client);
  const b = track(await connect(first.wsUrl('/ws?user=b')));
  void b;
  // Both sessions and their users are in the roster, confirmed by the broker (it keeps them for the successor).
  await eventually(async () => {
    const text = (await first.control('GET', '/metrics')).text ?? '';
    return Number(/^switchboard_roster_changes_total\{result="confirmed"\} (\d+)/m.exec(text)?.[1] ?? 0) >= 4;
  }, 'the roster changes confirmed');
  first.proc.child.kill('SIGKILL');
  await first.proc.exited;
  assert.equal(app.byPath('/ws/disconnect').length, 0);
  await cli('solo');
  const told = await app.waitFor((r) => r.url === '/ws/disconnect' && r.json().connection === a.welcome.session, 'the disconnect, from the successor');
  assert.equal(told.json().reason, 'node lost');
  await eventually(() => app.byPath('/ws/disconnect').length === 2, 'both sessions told of');
  assert.deepEqual(app.byPath('/ws/disconnect').map((r) => r.json().user).sort(), ['a', 'b']);
});

test('killed mid-drain: a survivor tells the app only of sessions that are gone, not of those that moved on or were parked before the roster said so', { skip }, async (t) => {
  const { app, node, cli, track, resume, url, exchange } = await setup(t);
  const survivor = await node('na');
  // A long drain: it is killed in the middle of it, before it parks anything of its own.
  const doomed = await cli('nk', 1, { drain: { timeoutMs: 60_000 } });
  const moving = await connectReliable(doomed.wsUrl('/ws?user=mover'));
  track(moving.client);
  const staying = await connectReliable(doomed.wsUrl('/ws?user=stayer'));
  track(staying.client);
  // The mover resumes on the survivor: its session moves there, and the doomed node's roster drops it.
  const moved = await resume(survivor, moving.welcome.token as string, 0);
  assert.equal(moved.welcome.resumed, true);
  assert.equal(moved.welcome.session, moving.welcome.session);
  // A process killed between a move (or a park) and its roster's next write leaves the roster saying
  // it still holds the session: written here as that late roster change would have been, for the
  // moved session and for one parked meanwhile (its parked queue exists).
  const amqp = await AmqpClient.open(url);
  t.after(() => amqp.close());
  const parkedId = 'nk-0-parkedmeanwhile';
  await amqp.channel.assertQueue(`${exchange}.parked.${parkedId}`, { durable: false, autoDelete: false });
  t.after(() => amqp.channel.deleteQueue(`${exchange}.parked.${parkedId}`).then(() => {}, () => {}));
  const entry = (id: string, user: string) => ({ id, user, meta: {}, connectedAt: Date.now(), path: '/ws' });
  const stale = { boot: 'late', kind: 'changes', changes: [{ t: 'add', e: entry(moving.welcome.session as string, 'mover') }, { t: 'add', e: entry(parkedId, 'parked') }] };
  assert.notEqual(await queueOf(amqp, `${exchange}.roster.nk-0`), null, 'the doomed process has its roster');
  const confirmed = await amqp.model.createConfirmChannel();
  confirmed.sendToQueue(`${exchange}.roster.nk-0`, Buffer.from(JSON.stringify(stale)), { persistent: true });
  await confirmed.waitForConfirms();
  await confirmed.close();

  // It drains (the others hear so), and is killed before its drain is over.
  doomed.proc.child.kill('SIGTERM');
  await eventually(async () => (await survivor.control('GET', '/v1/nodes')).json.nodes.some((n: any) => n.node === 'nk' && n.state === 'draining'), 'the survivor sees it draining');
  doomed.proc.child.kill('SIGKILL');
  await doomed.proc.exited;
  const told = await app.waitFor((r) => r.url === '/ws/disconnect' && r.json().connection === staying.welcome.session, 'the disconnect of the session that died with its node');
  assert.equal(told.json().reason, 'node lost');
  // The roster is deleted once all it held was decided and told.
  await eventually(async () => (await queueOf(amqp, `${exchange}.roster.nk-0`)) === null, 'the dead roster read and deleted');
  assert.deepEqual(disconnectsOf(app, moving.welcome.session as string), [], 'no disconnect for the session alive on the survivor');
  assert.deepEqual(disconnectsOf(app, parkedId), [], 'no disconnect for the parked session: its expiry or claim tells');
  // And the moved session is live: a push by its id reaches it.
  assert.equal((await survivor.control('POST', `/v1/connections/${moving.welcome.session}/messages`, { still: 'here' })).status, 202);
  for (;;) {
    const frame = await moved.client.nextJson('the push to the moved session');
    if (frame.type !== 'message') continue;
    assert.deepEqual(frame.data, { still: 'here' });
    break;
  }
});

/** A queue's counts, or null when there is none (on a channel of its own: a missing queue closes it). */
async function queueOf(amqp: AmqpClient, queue: string): Promise<{ messageCount: number } | null> {
  const ch = await amqp.model.createChannel();
  ch.on('error', () => {});
  try {
    return await ch.checkQueue(queue);
  } catch {
    return null;
  } finally {
    await ch.close().catch(() => {});
  }
}
