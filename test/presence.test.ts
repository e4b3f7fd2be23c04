// Presence events end to end: a real sidecar, real clients, and a real app receiving the presence
// webhook. "Nothing happened" is shown by a later event (a marker user joining) arriving with no
// event before it: events come in order, one batch at a time.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { startApp, type Recorded, type TestApp } from './helpers/app.js';
import { merge, startSidecar, type Sidecar } from './helpers/sidecar.js';
import { connect, connectReliable, type TestClient } from './helpers/client.js';
import { connectAnswer } from './helpers/cluster.js';
import { eventually } from './helpers/eventually.js';

const SECRET = `whsec_${Buffer.alloc(32, 7).toString('base64')}`;

interface Seen { type: string; channel: string; user: string; id: string; at: string }

async function setup(t: TestContext, overrides: Record<string, unknown> = {}, answer: (r: Recorded) => { status: number } | null = () => null) {
  const app: TestApp = await startApp((r) => (r.url === '/ws/presence' ? (answer(r) ?? { status: 204 }) : connectAnswer(r)));
  const sc: Sidecar = await startSidecar(app.url, merge({ webhooks: { paths: { presence: '/ws/presence' }, secret: SECRET }, presence: { batchMs: 20 } }, overrides));
  const clients: TestClient[] = [];
  t.after(async () => { for (const c of clients) c.ws.terminate(); await sc.close(); await app.close(); });
  /** Events the app took (answered 2xx), in the order it took them. */
  const taken = (): Seen[] => app.byPath('/ws/presence').filter((r) => (r as Recorded & { status?: number }).status !== 503).flatMap((r) => r.json().events);
  const open = async (query: string) => {
    const c = await connect(sc.wsUrl(`/ws${query}`));
    clients.push(c);
    return c;
  };
  /** Events after the first `from`, up to and including the marker user's join (which it waits for). */
  const until = async (from: number, marker: string, channel = 'room'): Promise<Seen[]> => {
    await open(`?user=${marker}&ch=${channel}`);
    await eventually(() => taken().some((e) => e.type === 'member_added' && e.user === marker), `${marker} joined`);
    const all = taken();
    return all.slice(from, all.findIndex((e) => e.type === 'member_added' && e.user === marker) + 1);
  };
  const users = async (user: string) => (await sc.control('GET', `/v1/users/${user}`)).json.connections as number;
  return { app, sc, clients, taken, open, until, users };
}

const brief = (events: Seen[]) => events.map((e) => `${e.type} ${e.channel} ${e.user}`);

test('three tabs of one user are one member: one join (after occupied); two closed: nothing; the last: removed, then vacated', async (t) => {
  const { app, taken, open, until, users } = await setup(t);
  const tabs = [await open('?user=ann&ch=room'), await open('?user=ann&ch=room'), await open('?user=ann&ch=room')];
  await open('?ch=room');
  assert.deepEqual(brief(await until(0, 'm1')), ['channel_occupied room ann', 'member_added room ann', 'member_added room m1']);
  await tabs[0].close();
  await tabs[1].close();
  await eventually(async () => (await users('ann')) === 1, 'two tabs gone');
  const from = taken().length;
  assert.deepEqual(brief(await until(from, 'm2')), ['member_added room m2'], 'closing two of three tabs is no event');
  await tabs[2].close();
  await eventually(() => taken().some((e) => e.type === 'member_removed' && e.user === 'ann'), 'ann removed');
  // In a fresh channel: occupied, added; then removed, vacated.
  const c = await open('?user=zoe&ch=solo');
  await eventually(() => taken().some((e) => e.user === 'zoe'), 'zoe in');
  await c.close();
  await eventually(() => taken().some((e) => e.type === 'channel_vacated' && e.channel === 'solo'), 'solo vacated');
  assert.deepEqual(brief(taken().filter((e) => e.channel === 'solo')), ['channel_occupied solo zoe', 'member_added solo zoe', 'member_removed solo zoe', 'channel_vacated solo zoe']);
  // Each event: a unique id, an ISO time; each request signed and headed like every webhook.
  const all = taken();
  assert.equal(new Set(all.map((e) => e.id)).size, all.length);
  for (const e of all) assert.equal(new Date(e.at).toISOString(), e.at);
  for (const r of app.byPath('/ws/presence')) {
    assert.equal(r.headers['x-switchboard-event'], 'presence');
    assert.match(String(r.headers['user-agent']), /^switchboard\//);
    assert.equal(r.headers['x-switchboard-connection'], undefined);
    const id = String(r.headers['webhook-id']);
    assert.equal(id, `presence_${r.json().events[0].id}`);
    assert.equal(r.headers['idempotency-key'], id);
    const mac = createHmac('sha256', Buffer.from(SECRET.slice(6), 'base64')).update(`${id}.${r.headers['webhook-timestamp']}.${r.text}`).digest('base64');
    assert.equal(r.headers['webhook-signature'], `v1,${mac}`);
  }
});

test('a reliable session detached and resumed within its grace: no event; its grace ending: the leave', async (t) => {
  const { sc, taken, until, clients } = await setup(t, { session: { graceMs: 1500 } });
  const { client, welcome } = await connectReliable(sc.wsUrl('/ws?user=rex&ch=room'));
  clients.push(client);
  assert.deepEqual(brief(await until(0, 'm1')), ['channel_occupied room rex', 'member_added room rex', 'member_added room m1']);
  client.ws.terminate();
  await eventually(async () => (await sc.control('GET', `/v1/connections/${welcome.session}`)).json.state === 'detached', 'detached');
  const back = await connect(sc.wsUrl(`/ws?resume=${encodeURIComponent(welcome.token)}&lastSeq=0`), 'switchboard.v1');
  clients.push(back);
  assert.equal((await back.nextJson()).resumed, true);
  const from = taken().length;
  assert.deepEqual(brief(await until(from, 'm2')), ['member_added room m2'], 'a blip and a resume are no event');
  // Dropped again, not resumed: removed once the grace has passed.
  back.ws.terminate();
  await eventually(() => taken().some((e) => e.type === 'member_removed' && e.user === 'rex'), 'rex removed after the grace');
  assert.deepEqual(brief(taken().slice(from + 1)), ['member_removed room rex']);
});

test('presence.leaveDelayMs: a raw client that reconnects within it makes no event', async (t) => {
  const { taken, open, until, users } = await setup(t, { presence: { batchMs: 20, leaveDelayMs: 60_000 } });
  const first = await open('?user=raw&ch=room');
  assert.deepEqual(brief(await until(0, 'm1')), ['channel_occupied room raw', 'member_added room raw', 'member_added room m1']);
  await first.close();
  await eventually(async () => (await users('raw')) === 0, 'the first session ended');
  await open('?user=raw&ch=room');
  const from = taken().length;
  assert.deepEqual(brief(await until(from, 'm2')), ['member_added room m2'], 'the reconnect within the delay is no event');
});

test('a webhook outage during leaves: every event arrives once the app is back, each id always with the same content', async (t) => {
  let down = false;
  const { app, taken, open, until } = await setup(t, { webhooks: { paths: { presence: '/ws/presence' }, retry: { maxAttempts: 2, baseMs: 5, capMs: 20 } } },
    (r) => {
      const status = down ? 503 : 204;
      (r as Recorded & { status?: number }).status = status;
      return { status };
    });
  const tabs = [];
  for (const u of ['a1', 'a2', 'a3', 'a4']) tabs.push(await open(`?user=${u}&ch=room`));
  await until(0, 'm1');
  down = true;
  for (const tab of tabs) await tab.close();
  // Refused at least twice (two rounds): then the app comes back.
  await eventually(() => app.byPath('/ws/presence').filter((r) => (r as Recorded & { status?: number }).status === 503).length >= 4, 'the app refused presence twice');
  down = false;
  await eventually(() => taken().filter((e) => e.type === 'member_removed').length === 4, () => `every leave delivered: ${JSON.stringify(brief(taken()))}`);
  assert.deepEqual(brief(taken()).filter((e) => e.includes('removed')), ['member_removed room a1', 'member_removed room a2', 'member_removed room a3', 'member_removed room a4']);
  // Across every attempt (refused or taken): an id never changes its event, a request id never changes its body.
  const byId = new Map<string, string>();
  const byRequest = new Map<string, string>();
  for (const r of app.byPath('/ws/presence')) {
    const key = String(r.headers['idempotency-key']);
    assert.equal(r.headers['webhook-id'], key);
    assert.equal(byRequest.get(key) ?? r.text, r.text, `request ${key} changed`);
    byRequest.set(key, r.text);
    for (const e of r.json().events as Seen[]) {
      assert.equal(byId.get(e.id) ?? JSON.stringify(e), JSON.stringify(e), `event ${e.id} changed`);
      byId.set(e.id, JSON.stringify(e));
    }
  }
  assert.ok([...byRequest.keys()].length < app.byPath('/ws/presence').length, 'some request was sent again');
});

test('a join storm of 500 sessions arrives in ceil(events / batchMax) requests', async (t) => {
  const batchMax = 167;
  // batchMs at its most: only full batches go out during the test, so the count does not depend on time.
  const { app, taken, open } = await setup(t, { presence: { batchMs: 86_400_000, batchMax } });
  await Promise.all(Array.from({ length: 500 }, (_, i) => open(`?user=s${i}&ch=storm`)));
  const events = 501;
  await eventually(() => taken().length === events, () => `all ${events} events (have ${taken().length})`);
  const requests = app.byPath('/ws/presence').length;
  assert.ok(requests <= Math.ceil(events / batchMax), `${requests} requests`);
  assert.equal(taken()[0].type, 'channel_occupied');
  assert.equal(new Set(taken().filter((e) => e.type === 'member_added').map((e) => e.user)).size, 500);
});

test('a sidecar that stops sends the leaves of its sessions first', async (t) => {
  const app: TestApp = await startApp((r) => (r.url === '/ws/presence' ? { status: 204 } : connectAnswer(r)));
  t.after(() => app.close());
  const sc = await startSidecar(app.url, { webhooks: { paths: { presence: '/ws/presence' } }, presence: { batchMs: 86_400_000, leaveDelayMs: 60_000 } });
  const tabs: TestClient[] = [];
  for (const u of ['x', 'y']) tabs.push(await connect(sc.wsUrl(`/ws?user=${u}&ch=room`)));
  await sc.close();
  const all = app.byPath('/ws/presence').flatMap((r) => r.json().events as Seen[]);
  assert.deepEqual(brief(all), ['channel_occupied room x', 'member_added room x', 'member_added room y', 'member_removed room x', 'member_removed room y', 'channel_vacated room y']);
});
