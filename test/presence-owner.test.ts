// The cluster's presence owner without a broker: counts per process, a restarted process's count
// replaced, taking over what a predecessor told (with the members its last batch named told
// again), the told state it keeps, and a handover that stops its batch in flight.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { validateConfig } from '../proxy/config.js';
import { createLogger } from '../proxy/log.js';
import { presenceCollectors } from '../proxy/metrics.js';
import { PresenceIds, type PresenceEvent } from '../proxy/presence.js';
import { PresenceOwner, type SendingState } from '../proxy/presence-owner.js';
import { FakeClock } from './helpers/fake-clock.js';

/** An owner whose app takes every batch at once unless `answer` says otherwise. */
function owner(answer: (events: readonly PresenceEvent[], signal?: AbortSignal) => Promise<boolean> = async () => true) {
  const clock = new FakeClock();
  const taken: string[] = [];
  const sent: Array<readonly PresenceEvent[]> = [];
  const o = new PresenceOwner({
    config: validateConfig({ presence: { batchMs: 0 } }).presence,
    holdMs: { moved: 500, parked: 5000 },
    clock,
    log: createLogger('silent'),
    metrics: presenceCollectors([]),
    ids: new PresenceIds('na-0', 'start'),
    deliver: async (events, signal) => {
      sent.push(events);
      const ok = await answer(events, signal);
      if (ok) taken.push(...events.map((e) => `${e.type} ${e.channel} ${e.user}`));
      return ok;
    },
    frames: null,
  });
  return { o, clock, taken, sent };
}

/** Lets the delivery run: its batch timer (batchMs 0, on the fake clock) and its promises. */
async function settleDown(clock: FakeClock): Promise<void> {
  for (let i = 0; i < 5; i++) {
    clock.advance(0);
    await new Promise<void>((resolve) => setImmediate(resolve));
  }
}

test('a user with connections on two processes is one member; a count replaced by a later one, or by a new start of the process, moves only what changed', async () => {
  const { o, clock, taken } = owner();
  o.begin(null);
  o.full('na-0', 'b1', [['room', 'ann', 2]]);
  o.full('nb-0', 'b1', [['room', 'ann', 1], ['room', 'bob', 1]]);
  o.settle();
  await settleDown(clock);
  assert.deepEqual(taken, ['channel_occupied room ann', 'member_added room ann', 'member_added room bob']);
  o.changes('na-0', 'b1', [['room', 'ann', -1, 'left'], ['room', 'ann', -1, 'left']]);
  o.changes('nb-0', 'old', [['room', 'bob', -1, 'left']]);
  await settleDown(clock);
  assert.equal(taken.length, 3, 'ann still has a connection on nb; a change of a start not counted is skipped');
  // nb restarted (a new boot): its count is replaced, its old connections are gone.
  o.full('nb-0', 'b2', [['room', 'cy', 1]]);
  await settleDown(clock);
  assert.deepEqual(taken.slice(3), ['member_added room cy', 'member_removed room ann', 'member_removed room bob']);
  o.lost('nb-0', 'b1');
  await settleDown(clock);
  assert.equal(taken.length, 6, 'a bye of the earlier start is not this one\'s');
  o.lost('nb-0');
  await settleDown(clock);
  assert.deepEqual(taken.slice(6), ['member_removed room cy', 'channel_vacated room cy']);
  assert.equal(o.counted('nb-0'), false);
});

test('taking over: a told member still held is no event, one nobody holds leaves, a held one never told joins, held leaves go on, and the last batch\'s members are told again', async () => {
  const { o, clock, taken } = owner();
  const due = clock.now() + 1000;
  o.begin({
    members: [['room', ['kept', 'gone', 'parked', 'maybe']]],
    held: [['room', 'parked', due]],
    batch: 4,
  }, { batch: 5, uncertain: [['room', 'maybe'], ['room', 'added?']] });
  o.full('na-0', 'b', [['room', 'kept', 1], ['room', 'new', 1], ['room', 'maybe', 1]]);
  o.settle();
  await settleDown(clock);
  assert.deepEqual(taken, ['member_added room new', 'member_removed room gone', 'member_removed room added?', 'member_added room maybe']);
  assert.deepEqual(o.told().held, [['room', 'parked', due]], 'the held leave is held on');
  clock.advance(1000);
  await settleDown(clock);
  assert.deepEqual(taken.slice(4), ['member_removed room parked']);
  assert.deepEqual(o.told().members, [['room', ['kept', 'maybe', 'new']]], 'what the app took');
  assert.ok(o.told().batch > 5, 'batches numbered on from the predecessor\'s');
  o.kept(o.told().batch);
  assert.deepEqual(o.sending().uncertain, [], 'nothing uncertain once settled, taken and kept');
});

test('a predecessor\'s batch that the told state says was taken is not told again', async () => {
  const { o, clock, taken } = owner();
  o.begin({ members: [['room', ['ann']]], held: [], batch: 7 }, { batch: 7, uncertain: [['room', 'ann'], ['room', 'bob']] });
  o.full('na-0', 'b', [['room', 'ann', 1]]);
  o.settle();
  await settleDown(clock);
  assert.deepEqual(taken, []);
});

test('each batch is kept before it goes, naming every member of the batches since the last kept told state; a write refused holds the batch back', async () => {
  const kept: SendingState[] = [];
  let refuse = 1;
  const { o, clock, sent } = owner();
  o.beforeSend = async () => {
    if (refuse-- > 0) return false;
    kept.push(o.sending());
    return true;
  };
  o.begin(null);
  o.full('na-0', 'b', [['room', 'ann', 1]]);
  o.settle();
  await settleDown(clock);
  assert.equal(sent.length, 0, 'not sent before it is kept');
  clock.advance(1000);
  await settleDown(clock);
  assert.deepEqual(kept, [{ batch: 1, uncertain: [['room', 'ann']] }]);
  assert.deepEqual(o.told(), { members: [['room', ['ann']]], held: [], batch: 1 });
  o.full('na-0', 'b', [['room', 'ann', 1], ['room', 'bob', 1]]);
  await settleDown(clock);
  assert.deepEqual(kept[1], { batch: 2, uncertain: [['room', 'ann'], ['room', 'bob']] }, 'ann\'s batch is not covered by a kept told state yet');
  o.kept(2);
  o.full('na-0', 'b', [['room', 'bob', 1]]);
  await settleDown(clock);
  assert.deepEqual(kept[2], { batch: 3, uncertain: [['room', 'ann']] }, 'once kept, only the batches after');
});

test('a predecessor\'s uncertain members count as told until settled, so a told state kept meanwhile still has them', async () => {
  const { o, clock } = owner();
  o.begin({ members: [], held: [], batch: 1 }, { batch: 2, uncertain: [['room', 'x']] });
  assert.deepEqual(o.told().members, [['room', ['x']]]);
  o.settle();
  await settleDown(clock);
  assert.deepEqual(o.told().members, [], 'x left (nobody holds it), and the app took that');
});

test('another process owning: the batch in flight makes no further attempt, and its late answer tells this process nothing', async () => {
  let release: (ok: boolean) => void = () => {};
  let aborted = false;
  const { o, sent, clock } = owner((_events, signal) => new Promise((resolve) => {
    release = resolve;
    signal?.addEventListener('abort', () => { aborted = true; });
  }));
  o.begin(null);
  o.full('na-0', 'b', [['room', 'ann', 1]]);
  o.settle();
  await settleDown(clock);
  assert.equal(sent.length, 1);
  o.end();
  assert.equal(aborted, true, 'told to stop');
  assert.equal(o.owning, false);
  o.begin(null);
  release(true);
  await settleDown(clock);
  assert.deepEqual(o.told().members, [], 'the earlier ownership\'s batch is not this one\'s');
});

test('a batch the handover cut short is counted neither delivered nor given up', async () => {
  const metrics = presenceCollectors([]);
  const clock = new FakeClock();
  let answer: (ok: boolean) => void = () => {};
  const o = new PresenceOwner({
    config: validateConfig({ presence: { batchMs: 0 } }).presence, holdMs: { moved: 0, parked: 0 }, clock, log: createLogger('silent'), metrics,
    ids: new PresenceIds('na-0', 's'), frames: null, deliver: () => new Promise((resolve) => { answer = resolve; }),
  });
  o.begin(null);
  o.full('na-0', 'b', [['room', 'ann', 1]]);
  o.settle();
  await settleDown(clock);
  o.end();
  answer(false);
  await settleDown(clock);
  const counts = (await metrics.presenceEventsTotal.get()).values.map((v) => `${v.labels.result}=${v.value}`);
  assert.deepEqual(counts, []);
  assert.equal((await metrics.presenceEventsPending.get()).values[0].value, 0, 'nothing left pending');
});

test('a counted process not heard for a while is stale; one just counted, or heard, is not', () => {
  const { o, clock } = owner();
  o.begin(null);
  o.full('na-0', 'b', [['room', 'ann', 1]]);
  clock.advance(1000);
  o.full('nb-0', 'b', [['room', 'bob', 1]]);
  const before = clock.now() - 500;
  assert.deepEqual(o.stale(new Set(['nc-0']), before), ['na-0'], 'nb was counted too recently to tell');
  assert.deepEqual(o.stale(new Set(['na-0']), before), [], 'na is heard');
});
