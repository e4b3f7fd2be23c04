// Presence events with `workers`: the primary counts the node's members, so a user with tabs on
// both workers is one member; a crashed worker's members leave (and no one else's); a batch whose
// worker dies while the app is away is sent again by another; a drain sends every last leave
// before the process exits. Real CLI processes, real clients, a real app.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { startApp, type Recorded } from './helpers/app.js';
import { connectReliable, type TestClient } from './helpers/client.js';
import { connectAnswer } from './helpers/cluster.js';
import { freePort, runCli, writeConfig } from './helpers/process.js';
import { eventually } from './helpers/eventually.js';

interface Seen { type: string; channel: string; user: string; id: string }
interface Tab { client: TestClient; session: string; worker: string }

async function setup(t: TestContext, extra: Record<string, unknown> = {}) {
  /** Events the app took (answered 204), in the order it took them; attempts it refused while `down`. */
  const taken: Seen[] = [];
  const refused: Recorded[] = [];
  const accepted: Recorded[] = [];
  const state = { down: false };
  const app = await startApp((r) => {
    if (r.url !== '/ws/presence') return connectAnswer(r);
    if (state.down) {
      refused.push(r);
      return { status: 503 };
    }
    accepted.push(r);
    taken.push(...(r.json().events as Seen[]));
    return { status: 204 };
  });
  t.after(() => app.close());
  const [pub, ctl] = [await freePort(), await freePort()];
  const cli = runCli(['--config', writeConfig({
    listen: `127.0.0.1:${pub}`, control: { listen: `127.0.0.1:${ctl}` }, workers: 2, nodeId: 'pw',
    app: { url: app.url }, log: { level: 'info' }, drain: { timeoutMs: 5000 },
    webhooks: { paths: { presence: '/ws/presence' }, retry: { maxAttempts: 2, baseMs: 20, capMs: 50 } },
    presence: { batchMs: 20 },
    ...extra,
  })]);
  t.after(() => { cli.child.kill('SIGKILL'); });
  await cli.waitForOutput(/switchboard primary ready/);
  const tabs: Tab[] = [];
  t.after(() => { for (const tab of tabs) tab.client.ws.terminate(); });
  const open = async (user: string, channel = 'room'): Promise<Tab> => {
    const { client, welcome } = await connectReliable(`ws://127.0.0.1:${pub}/ws?user=${user}&ch=${channel}`);
    const tab = { client, session: welcome.session as string, worker: (welcome.session as string).split('-')[1] };
    tabs.push(tab);
    return tab;
  };
  /** Tabs of `user` until both workers hold one (the cluster module hands connections round-robin). */
  const spread = async (user: string): Promise<Tab[]> => {
    const mine: Tab[] = [];
    for (let i = 0; i < 20 && new Set(mine.map((m) => m.worker)).size < 2; i++) mine.push(await open(user));
    assert.deepEqual([...new Set(mine.map((m) => m.worker))].sort(), ['0', '1'], `${user}'s tabs on both workers`);
    return mine;
  };
  /** The events from `from` up to the marker user's join, which it makes and waits for. */
  const until = async (from: number, marker: string): Promise<string[]> => {
    await open(marker);
    await eventually(() => taken.some((e) => e.type === 'member_added' && e.user === marker), `${marker} joined`);
    return brief(taken.slice(from, taken.findIndex((e) => e.type === 'member_added' && e.user === marker) + 1));
  };
  const control = async (path: string) => (await fetch(`http://127.0.0.1:${ctl}${path}`)).json();
  /** The pid of worker `index` (its environment names it). */
  const workerPid = (index: string): number => {
    const pids = execFileSync('pgrep', ['-P', String(cli.child.pid)]).toString().trim().split('\n').map(Number);
    const pid = pids.find((p) => readFileSync(`/proc/${p}/environ`, 'utf8').split('\0').includes(`SWITCHBOARD_WORKER_INDEX=${index}`));
    assert.ok(pid, `worker ${index} runs`);
    return pid;
  };
  return { app, cli, ctl, taken, refused, accepted, state, open, spread, until, control, workerPid };
}

const brief = (events: Seen[]) => events.map((e) => `${e.type} ${e.channel} ${e.user}`);

test('workers: tabs of one user on both workers are one member; the last tab closing anywhere removes it', async (t) => {
  const { ctl, taken, spread, until, control } = await setup(t);
  const ann = await spread('ann');
  assert.deepEqual(await until(0, 'm1'), ['channel_occupied room ann', 'member_added room ann', 'member_added room m1'], 'one join, however many workers hold her tabs');
  assert.equal((await control('/v1/users/ann')).connections, ann.length);

  // Every tab on worker 0 closes: she is still on worker 1, so nothing.
  const [gone, kept] = [ann.filter((a) => a.worker === '0'), ann.filter((a) => a.worker === '1')];
  for (const tab of gone) await tab.client.close(1000);
  let seen: unknown;
  await eventually(async () => (seen = await control('/v1/users/ann')).connections === kept.length, () => `worker 0's tabs gone: ${JSON.stringify(seen)} ${kept.length}`);
  const from = taken.length;
  assert.deepEqual(await until(from, 'm2'), ['member_added room m2'], 'tabs closing on one worker while another holds one: no event');

  for (const tab of kept) await tab.client.close(1000);
  await eventually(() => taken.some((e) => e.type === 'member_removed' && e.user === 'ann'), 'ann removed');
  assert.deepEqual(brief(taken.filter((e) => e.user === 'ann')), ['channel_occupied room ann', 'member_added room ann', 'member_removed room ann']);
  assert.ok(taken.every((e) => e.id.startsWith('pw-primary-')), 'the primary names the events');
  assert.equal(new Set(taken.map((e) => e.id)).size, taken.length, 'ids unique');
  // The primary counts them, once: no second series from the workers.
  let text = '';
  await eventually(async () => {
    text = await (await fetch(`http://127.0.0.1:${ctl}/metrics`)).text();
    return new RegExp(`^switchboard_presence_events_total\\{result="delivered"\\} ${taken.length}$`, 'm').test(text);
  }, () => `delivered counted: ${/^switchboard_presence_events_total.*$/m.exec(text)?.[0]}`);
  assert.equal(text.match(/^# TYPE switchboard_presence_events_total /gm)?.length, 1);
  assert.match(text, /^switchboard_presence_events_pending 0$/m);
});

test('workers: a crashed worker\'s members leave and no one else does; a drain sends every last leave before the exit', async (t) => {
  const { cli, taken, open, spread, until, workerPid } = await setup(t);
  await spread('ann');
  const solo: Tab[] = [];
  for (let i = 0; i < 6; i++) solo.push(await open(`u${i}`));
  const onZero = solo.filter((s) => s.worker === '0').map((s) => `u${solo.indexOf(s)}`);
  const onOne = solo.filter((s) => s.worker === '1').map((s) => `u${solo.indexOf(s)}`);
  assert.ok(onZero.length > 0 && onOne.length > 0, 'single-tab users on both workers');
  await until(0, 'm1');

  const from = taken.length;
  process.kill(workerPid('0'), 'SIGKILL');
  await cli.waitForOutput(/worker exited: its members leave/);
  await eventually(() => onZero.every((u) => taken.some((e) => e.type === 'member_removed' && e.user === u)), () => `worker 0's members removed ${JSON.stringify(onZero)} ${JSON.stringify(brief(taken.slice(from)))} ${cli.output().slice(-3000)}`);
  // m1 joined through one worker or the other; whoever was only on worker 0 left.
  const removed = taken.slice(from).filter((e) => e.type === 'member_removed').map((e) => e.user);
  assert.ok(!removed.includes('ann'), 'ann still has a tab on worker 1');
  for (const u of onOne) assert.ok(!removed.includes(u), `${u} (worker 1) stays`);
  await cli.waitForOutput(/worker exited: restarting it/);
  await eventually(() => (cli.output().match(/"worker":0[^\n]*switchboard ready/g) ?? []).length === 2, 'worker 0 ready again');
  // Members on the restarted worker too: the drain must wait for its leaves as well.
  const late: Tab[] = [];
  for (let i = 0; i < 6 && !late.some((l) => l.worker === '0'); i++) late.push(await open(`late${i}`));
  assert.ok(late.some((l) => l.worker === '0'), 'a member on the restarted worker');
  await eventually(() => late.every((l, i) => taken.some((e) => e.type === 'member_added' && e.user === `late${i}`)), 'the late joins');

  // A drain: every member left is removed, and the app has it all before the process exits.
  const present = new Set<string>();
  for (const e of taken) {
    if (e.type === 'member_added') present.add(e.user);
    if (e.type === 'member_removed') present.delete(e.user);
  }
  assert.ok(present.has('ann') && onOne.every((u) => present.has(u)));
  cli.child.kill('SIGTERM');
  assert.deepEqual(await cli.exited, { code: 0, signal: null });
  const last = taken.slice(-2);
  assert.deepEqual(brief(last).at(-1), `channel_vacated room ${last[0].user}`, 'the channel is vacated last');
  for (const u of present) assert.ok(taken.some((e) => e.type === 'member_removed' && e.user === u && taken.indexOf(e) >= from), `${u} removed in the drain`);
  assert.equal(new Set(taken.map((e) => e.id)).size, taken.length, 'no event taken twice');
});

test('workers: a batch whose worker dies while the app is away is sent again, by the restarted or the other worker', async (t) => {
  const { cli, taken, refused, accepted, state, open, until, workerPid } = await setup(t);
  await until(0, 'm0');
  state.down = true;
  await open('late');
  await eventually(() => refused.some((r) => r.json().events.some((e: Seen) => e.user === 'late')), 'the app refused late\'s join');
  const id = refused.at(-1)!.headers['webhook-id'];
  // The lowest running worker sends the batches: worker 0.
  process.kill(workerPid('0'), 'SIGKILL');
  await cli.waitForOutput(/worker exited: restarting it/);
  state.down = false;
  await eventually(() => taken.some((e) => e.type === 'member_added' && e.user === 'late'), 'late\'s join taken after all');
  assert.equal(taken.filter((e) => e.type === 'member_added' && e.user === 'late').length, 1, 'taken once');
  const took = accepted.find((r) => r.json().events.some((e: Seen) => e.type === 'member_added' && e.user === 'late'))!;
  assert.equal(took.headers['webhook-id'], id, 'the same batch, by its id, not a new one');
});

test('workers: presence frames reach the channel\'s subscribers on every worker, in order with their seqs, once per member', async (t) => {
  const { spread, control } = await setup(t, { presence: { batchMs: 20, frames: ['room'] } });
  const watchers = await spread('w');
  /** The presence frames a tab got, as `event user`, up to and including the one that `ends` it. */
  const framesUntil = async (tab: Tab, ends: string): Promise<string[]> => {
    const seen: Array<{ seq: number; brief: string }> = [];
    for (;;) {
      const f = await tab.client.until('presence');
      seen.push({ seq: f.seq, brief: `${f.event} ${f.user}` });
      if (`${f.event} ${f.user}` === ends) break;
    }
    assert.deepEqual(seen.map((s) => s.seq), [...seen.map((s) => s.seq)].sort((a, b) => a - b), 'seqs rise');
    return seen.map((s) => s.brief);
  };
  // Each watcher saw its own join; now a second user's two tabs (on both workers) are one member.
  // The first tab saw its own join; the others came after it, as no event.
  assert.deepEqual(await framesUntil(watchers[0], 'member_added w'), ['channel_occupied w', 'member_added w']);
  const zoe = await spread('zoe');
  for (const w of watchers) assert.deepEqual(await framesUntil(w, 'member_added zoe'), ['member_added zoe'], 'one frame for two tabs, on whichever worker the watcher is');
  for (const tab of zoe) await tab.client.close(1000);
  for (const w of watchers) assert.deepEqual(await framesUntil(w, 'member_removed zoe'), ['member_removed zoe']);
  assert.equal((await control('/v1/users/w')).connections, watchers.length);
});
