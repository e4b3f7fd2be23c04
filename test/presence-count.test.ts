// Presence counting and delivery without sockets: any sequence of joins, leaves, user changes,
// detaches and resumes yields events whose replay is exactly the final membership, and batches
// keep their order, their ids and their bound. Startup refuses presence only where it has no form.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { ConfigError, validateConfig } from '../proxy/config.js';
import { Membership, PresenceIds, type PresenceEvent, type PresenceEventType } from '../proxy/presence.js';
import { PresenceDelivery } from '../proxy/presence-delivery.js';
import { createLogger } from '../proxy/log.js';
import { FakeClock } from './helpers/fake-clock.js';

/** Replays events as the app would keep state: members per channel, occupied channels; throws on an event that does not fit. */
function replay(events: Array<{ type: PresenceEventType; channel: string; user: string }>, from = new Map<string, Set<string>>()): Map<string, Set<string>> {
  const members = new Map([...from].map(([c, users]) => [c, new Set(users)]));
  for (const e of events) {
    const set = members.get(e.channel);
    switch (e.type) {
      case 'channel_occupied':
        assert.ok(!set, `occupied twice: ${e.channel}`);
        members.set(e.channel, new Set());
        break;
      case 'member_added':
        assert.ok(set && !set.has(e.user), `added without occupied, or twice: ${e.channel}/${e.user}`);
        set.add(e.user);
        break;
      case 'member_removed':
        assert.ok(set?.delete(e.user), `removed but not a member: ${e.channel}/${e.user}`);
        break;
      case 'channel_vacated':
        assert.ok(set && set.size === 0, `vacated with members left: ${e.channel}`);
        members.delete(e.channel);
        break;
    }
  }
  return members;
}

const channels = ['a', 'b'];
const users = ['u', 'v', null];

/** A model of connections: each in some channels under a user, attached or detached (a detached one still counts). */
type Op =
  | { op: 'open'; user: string | null; channels: string[] }
  | { op: 'join' | 'leave'; conn: number; channel: string }
  | { op: 'user'; conn: number; user: string | null }
  | { op: 'detach' | 'resume' | 'end'; conn: number }
  | { op: 'tick'; ms: number };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ op: fc.constant('open' as const), user: fc.constantFrom(...users), channels: fc.subarray(channels) }),
  fc.record({ op: fc.constantFrom('join' as const, 'leave' as const), conn: fc.nat(7), channel: fc.constantFrom(...channels) }),
  fc.record({ op: fc.constant('user' as const), conn: fc.nat(7), user: fc.constantFrom(...users) }),
  fc.record({ op: fc.constantFrom('detach' as const, 'resume' as const, 'end' as const), conn: fc.nat(7) }),
  fc.record({ op: fc.constant('tick' as const), ms: fc.integer({ min: 0, max: 150 }) }),
);

test('any sequence of joins, leaves, user changes, detaches, resumes and ends: the events replay to exactly the final membership', async () => {
  await fc.assert(fc.property(fc.array(opArb, { maxLength: 60 }), fc.constantFrom(0, 100), (ops, leaveDelayMs) => {
    const clock = new FakeClock();
    const events: Array<{ type: PresenceEventType; channel: string; user: string }> = [];
    const m = new Membership({ clock, leaveDelayMs, emit: (type, channel, user) => events.push({ type, channel, user }) });
    const conns: Array<{ user: string | null; channels: Set<string>; alive: boolean }> = [];
    for (const o of ops) {
      const c = 'conn' in o ? conns[o.conn] : undefined;
      switch (o.op) {
        case 'open':
          conns.push({ user: o.user, channels: new Set(o.channels), alive: true });
          for (const ch of o.channels) m.change(ch, o.user, 1, 'left');
          break;
        case 'join':
          if (c?.alive && !c.channels.has(o.channel)) { c.channels.add(o.channel); m.change(o.channel, c.user, 1, 'left'); }
          break;
        case 'leave':
          if (c?.alive && c.channels.delete(o.channel)) m.change(o.channel, c.user, -1, 'left');
          break;
        case 'user':
          if (c?.alive) {
            for (const ch of c.channels) { m.change(ch, c.user, -1, 'left'); m.change(ch, o.user, 1, 'left'); }
            c.user = o.user;
          }
          break;
        // A detached session stays in the registry: the registry tells presence nothing, and neither does a resume.
        case 'detach': case 'resume': break;
        case 'end':
          if (c?.alive) { c.alive = false; for (const ch of c.channels) m.change(ch, c.user, -1, 'ended'); }
          break;
        case 'tick': clock.advance(o.ms); break;
      }
    }
    // Held leaves (leaveDelayMs) fall due.
    clock.advance(1000);
    const expected = new Map<string, Set<string>>();
    for (const c of conns) {
      if (!c.alive || c.user === null) continue;
      for (const ch of c.channels) {
        if (!expected.has(ch)) expected.set(ch, new Set());
        expected.get(ch)!.add(c.user);
      }
    }
    assert.deepEqual(replay(events), expected);
    assert.deepEqual(m.members(), expected);
  }), { numRuns: 500 });
});

test('a leave held by leaveDelayMs is cancelled by a join of the same user and channel; other leaves fall due', () => {
  const clock = new FakeClock();
  const events: string[] = [];
  const m = new Membership({ clock, leaveDelayMs: 500, emit: (type, channel, user) => events.push(`${type} ${channel} ${user}`) });
  m.change('c', 'ann', 1, 'left');
  m.change('c', 'ann', -1, 'ended');
  clock.advance(499);
  m.change('c', 'ann', 1, 'left');
  clock.advance(1000);
  assert.deepEqual(events, ['channel_occupied c ann', 'member_added c ann']);
  // An unsubscribe (not an end) is not held.
  m.change('c', 'ann', -1, 'left');
  assert.deepEqual(events.slice(2), ['member_removed c ann', 'channel_vacated c ann']);
  m.change('c', 'bob', 1, 'left');
  m.change('c', 'bob', -1, 'ended');
  m.flush();
  assert.deepEqual(events.slice(4), ['channel_occupied c bob', 'member_added c bob', 'member_removed c bob', 'channel_vacated c bob']);
  assert.equal(clock.pending, 0, 'the flushed leave left no timer');
});

test('a counter taking over what another told (seed, the counts, settle): its events bring the told members to exactly the counted ones', async () => {
  const membersArb = fc.dictionary(fc.constantFrom(...channels), fc.uniqueArray(fc.constantFrom('u', 'v', 'w'), { minLength: 1 }));
  const countsArb = fc.array(fc.tuple(fc.constantFrom(...channels), fc.constantFrom('u', 'v', 'w')), { maxLength: 8 });
  await fc.assert(fc.property(membersArb, countsArb, fc.array(fc.tuple(fc.constantFrom(...channels), fc.constantFrom('u', 'v', 'w'), fc.integer({ min: 1, max: 500 })), { maxLength: 3 }), (told, counts, heldArb) => {
    const clock = new FakeClock();
    const events: Array<{ type: PresenceEventType; channel: string; user: string }> = [];
    const m = new Membership({ clock, leaveDelayMs: 0, emit: (type, channel, user) => events.push({ type, channel, user }) });
    const members = new Map(Object.entries(told).map(([c, users]) => [c, new Set(users)]));
    // Held leaves are kept for members that were told.
    const held = heldArb.filter(([c, u]) => members.get(c)?.has(u)).map(([c, u, ms]) => [c, u, clock.now() + ms] as const);
    m.seed({ members, held });
    for (const [c, u] of counts) m.change(c, u, 1, 'left');
    m.settle();
    const expected = new Map<string, Set<string>>();
    for (const [c, u] of counts) {
      if (!expected.has(c)) expected.set(c, new Set());
      expected.get(c)!.add(u);
    }
    // Until the held leaves fall due, their members stay.
    const during = new Map([...expected].map(([c, users]) => [c, new Set(users)]));
    for (const [c, u] of held) {
      if (!during.has(c)) during.set(c, new Set());
      during.get(c)!.add(u);
    }
    assert.deepEqual(replay(events, members), during);
    clock.advance(1000);
    assert.deepEqual(replay(events, members), expected);
    assert.deepEqual(m.members(), expected);
  }), { numRuns: 300 });
});

test('the leave of a session that moved or was parked is held for its own time, and a join from its new holder cancels it', () => {
  const clock = new FakeClock();
  const events: string[] = [];
  const m = new Membership({ clock, leaveDelayMs: 0, holdMs: { moved: 200, parked: 5000 }, emit: (type, channel, user) => events.push(`${type} ${channel} ${user}`) });
  m.change('c', 'ann', 1, 'left');
  m.change('c', 'ann', -1, 'moved');
  m.change('c', 'ann', 1, 'left');
  m.change('c', 'bob', 1, 'left');
  m.change('c', 'bob', -1, 'parked');
  clock.advance(1000);
  assert.deepEqual(events, ['channel_occupied c ann', 'member_added c ann', 'member_added c bob'], 'the moved one came back; the parked one is held');
  assert.deepEqual(m.held().map(([c, u]) => `${c} ${u}`), ['c bob']);
  m.change('c', 'ann', -1, 'moved');
  clock.advance(300);
  assert.deepEqual(events.slice(3), ['member_removed c ann'], 'a move nobody completed is a leave, once its time is up');
  clock.advance(5000);
  assert.deepEqual(events.slice(4), ['member_removed c bob', 'channel_vacated c bob']);
  // An end is held by leaveDelayMs only (0 here).
  m.change('c', 'cy', 1, 'left');
  m.change('c', 'cy', -1, 'ended');
  assert.deepEqual(events.slice(6), ['channel_occupied c cy', 'member_added c cy', 'member_removed c cy', 'channel_vacated c cy']);
});

function event(n: number, channel = 'c'): PresenceEvent {
  return { type: 'member_added', channel, user: `u${n}`, id: `x-${n}`, at: new Date(0).toISOString() };
}

function delivery(clock: FakeClock, options: { batchMs?: number; batchMax?: number; maxPending?: number; taken?: () => boolean } = {}) {
  const sent: PresenceEvent[][] = [];
  const counts = { delivered: 0, given_up: 0, dropped: 0 };
  let pending = 0;
  const waiting: Array<() => void> = [];
  const d = new PresenceDelivery({
    batchMs: options.batchMs ?? 100, batchMax: options.batchMax ?? 3, maxPending: options.maxPending ?? 100, clock, log: createLogger('silent'),
    deliver: async (events) => {
      sent.push([...events]);
      await new Promise<void>((resolve) => waiting.push(resolve));
      return options.taken?.() ?? true;
    },
    counted: (result, n) => { counts[result] += n; },
    pending: { inc: (n) => { pending += n; }, dec: (n) => { pending -= n; } },
  });
  return { d, sent, counts, pending: () => pending, answer: () => waiting.shift()?.() };
}

const settle = () => new Promise((r) => setImmediate(r));

test('batches: a full batch goes at once, the rest after batchMs; one at a time, in order; a batch is the same on every attempt', async () => {
  const clock = new FakeClock();
  const { d, sent, counts, pending, answer } = delivery(clock, { batchMax: 3 });
  for (let i = 1; i <= 4; i++) d.push(event(i));
  assert.deepEqual(sent.map((b) => b.map((e) => e.id)), [['x-1', 'x-2', 'x-3']], 'a full batch at once');
  clock.advance(1000);
  assert.equal(sent.length, 1, 'one batch at a time');
  answer();
  await settle();
  // The fourth waits its own batchMs.
  assert.equal(sent.length, 1);
  clock.advance(100);
  assert.deepEqual(sent.map((b) => b.map((e) => e.id)), [['x-1', 'x-2', 'x-3'], ['x-4']]);
  answer();
  await settle();
  assert.deepEqual(counts, { delivered: 4, given_up: 0, dropped: 0 });
  assert.equal(pending(), 0);
});

test('while the app does not take them, events wait up to maxPending; beyond, they are dropped and counted; close sends the rest', async () => {
  const clock = new FakeClock();
  const { d, sent, counts, pending, answer } = delivery(clock, { batchMax: 2, maxPending: 3 });
  for (let i = 1; i <= 7; i++) d.push(event(i));
  // Two in flight, three waiting, two dropped.
  assert.equal(sent.length, 1);
  assert.equal(counts.dropped, 2);
  assert.equal(pending(), 5);
  const closed = d.close();
  for (let i = 0; i < 3; i++) { answer(); await settle(); }
  await closed;
  assert.deepEqual(sent.map((b) => b.map((e) => e.id)), [['x-1', 'x-2'], ['x-3', 'x-4'], ['x-5']]);
  assert.deepEqual(counts, { delivered: 5, given_up: 0, dropped: 2 });
});

test('event ids are unique per process start', () => {
  const a = new PresenceIds('n-0', 'aaaa');
  const b = new PresenceIds('n-0', 'bbbb');
  const ids = [a.next(), a.next(), b.next()];
  assert.equal(new Set(ids).size, 3);
  assert.match(ids[0], /^n-0-aaaa-1$/);
});

test('presence events are refused only where they have no form (the websocket-over-http dialect)', () => {
  const refused = (config: Record<string, unknown>): string[] => {
    try {
      validateConfig({ webhooks: { paths: { presence: '/ws/presence' } }, ...config });
    } catch (err) {
      assert.ok(err instanceof ConfigError, String(err));
      return [...err.problems];
    }
    return [];
  };
  assert.deepEqual(refused({}), [], 'one process, native webhooks: accepted');
  assert.deepEqual(refused({ cluster: { amqp: { url: 'amqp://127.0.0.1' } }, session: { tokenSecret: 'x'.repeat(32) } }), [], 'a cluster: its owner counts the members');
  for (const workers of [2, 'auto']) assert.deepEqual(refused({ workers }), [], `workers ${workers}: the primary counts the members`);
  assert.deepEqual(refused({ upstream: 'amqp', amqp: { url: 'amqp://127.0.0.1' } }), [], 'the amqp upstream publishes them');
  assert.match(refused({ webhooks: { dialect: 'websocket-over-http', paths: { presence: '/p' } } }).join('\n'), /webhooks\.paths\.presence: .*websocket-over-http/);
  // Without presence events, all of those are fine.
  assert.doesNotThrow(() => validateConfig({ workers: 2 }));
  for (const bad of [{ batchMax: 0 }, { batchMax: 10_001 }, { batchMs: -1 }, { maxPending: 0 }, { leaveDelayMs: 'soon' }, { surprise: 1 }]) {
    assert.throws(() => validateConfig({ presence: bad }), (err: unknown) => err instanceof ConfigError && err.problems.every((p) => p.startsWith('presence.')), JSON.stringify(bad));
  }
});

