// The cluster's presence queue wire (plugins/amqp/presence-wire.ts): what a process sends the
// owner and what the owner keeps survive the round trip; anything else, whatever the bytes, is
// refused with a reason and never thrown on.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { decodePresence, decodeSending, decodeTold, encodePresence, encodeSending, encodeTold, type PresenceMessage } from '../plugins/amqp/presence-wire.js';
import { MAX_CHANNEL, MAX_USER_NAME } from '../proxy/limits.js';

const name = fc.string({ minLength: 1, maxLength: 20 });
const processArb = fc.tuple(fc.stringMatching(/^[a-z0-9]{1,8}$/), fc.nat(64)).map(([n, w]) => `${n}-${w}`);
const boot = fc.stringMatching(/^[A-Za-z0-9_-]{1,12}$/);
const messageArb: fc.Arbitrary<PresenceMessage> = fc.oneof(
  fc.record({ type: fc.constant('full' as const), from: processArb, boot, counts: fc.array(fc.tuple(name, name, fc.integer({ min: 1, max: 1e6 }))) }),
  fc.record({ type: fc.constant('changes' as const), from: processArb, boot, changes: fc.array(fc.tuple(name, name, fc.constantFrom(1 as const, -1 as const), fc.constantFrom('left' as const, 'ended' as const, 'moved' as const, 'parked' as const))) }),
  fc.record({ type: fc.constant('gone' as const), from: processArb, process: processArb }),
  fc.record({ type: fc.constant('bye' as const), from: processArb, boot }),
).map((m) => ({ ...m }) as PresenceMessage); // plain objects, as JSON.parse makes them

test('every presence message survives the round trip', () => {
  fc.assert(fc.property(messageArb, (m) => {
    const { content, type } = encodePresence(m);
    assert.deepEqual(decodePresence(type, content), { ok: true, value: m });
  }), { numRuns: 500 });
});

test('any bytes, any type: a presence message is refused with a reason, never thrown on', () => {
  const type = fc.oneof(fc.constantFrom('full', 'changes', 'gone', 'bye'), fc.string(), fc.constant(undefined), fc.integer());
  const json = fc.oneof(
    fc.json(),
    messageArb.map((m) => encodePresence(m).content.toString()),
    // Well-formed envelopes with one field broken.
    fc.record({ from: fc.oneof(processArb, fc.string()), boot: fc.oneof(boot, fc.integer()), counts: fc.anything(), changes: fc.anything(), process: fc.anything() }).map((o) => JSON.stringify(o)),
  );
  fc.assert(fc.property(type, fc.oneof(json.map((s) => Buffer.from(s)), fc.uint8Array().map((b) => Buffer.from(b))), (t, content) => {
    const r = decodePresence(t, content);
    if (!r.ok) assert.equal(typeof r.error, 'string');
    else assert.ok(['full', 'changes', 'gone', 'bye'].includes(r.value.type));
  }), { numRuns: 1000 });
});

test('presence messages a process would never send are refused, naming what is wrong', () => {
  const refused = (type: string, body: unknown): string => {
    const r = decodePresence(type, Buffer.from(JSON.stringify(body)));
    assert.equal(r.ok, false, `${type} ${JSON.stringify(body)?.slice(0, 80)}`);
    return (r as { error: string }).error;
  };
  const from = 'na-0';
  assert.match(refused('full', { from: 'na', boot: 'b', counts: [] }), /sender/);
  assert.match(refused('full', { from, boot: 'b', counts: [['c', 'u', 0]] }), /connections ≥ 1/);
  assert.match(refused('full', { from, boot: 'b', counts: [['c', 'u', 2 ** 53 - 1]] }), /full: a count/);
  assert.match(refused('full', { from, boot: 'b', counts: [['c'.repeat(MAX_CHANNEL + 1), 'u', 1]] }), /full: a count/);
  assert.match(refused('full', { from, boot: 'b', counts: [['c', 'u'.repeat(MAX_USER_NAME + 1), 1]] }), /full: a count/);
  assert.match(refused('changes', { from, boot: 'b', changes: [['c', 'u', 2, 'left']] }), /±1/);
  assert.match(refused('changes', { from, boot: 'b', changes: [['c', 'u', 1, 'vanished']] }), /why/);
  assert.match(refused('changes', { from, boot: 'b', changes: [['', 'u', 1, 'left']] }), /changes: a change/);
  assert.match(refused('gone', { from, process: 'not a process' }), /gone/);
  assert.match(refused('bye', { from }), /boot/);
  assert.match(refused('hello', { from }), /unknown presence message type/);
  assert.match(refused('full', [1, 2]), /object/);
  assert.match(decodePresence('full', Buffer.from('{"from":')).ok ? '' : 'not JSON', /not JSON/);
});

test('what the owner keeps (the told state, the batch being sent) survives the round trip; anything else is refused', () => {
  const toldArb = fc.record({
    members: fc.array(fc.tuple(name, fc.array(name, { minLength: 1 }))),
    held: fc.array(fc.tuple(name, name, fc.integer({ min: 0, max: 2 ** 45 }))),
    batch: fc.nat(),
  }).map((o) => ({ ...o }));
  const sendingArb = fc.record({ batch: fc.nat(), uncertain: fc.array(fc.tuple(name, name)) }).map((o) => ({ ...o }));
  fc.assert(fc.property(sendingArb, (sending) => {
    assert.deepEqual(decodeSending(encodeSending(sending)), { ok: true, value: sending });
  }), { numRuns: 300 });
  fc.assert(fc.property(toldArb, (told) => {
    assert.deepEqual(decodeTold(encodeTold(told)), { ok: true, value: told });
  }), { numRuns: 300 });
  fc.assert(fc.property(fc.oneof(fc.json().map((s) => Buffer.from(s)), fc.uint8Array().map((b) => Buffer.from(b))), (content) => {
    for (const r of [decodeTold(content), decodeSending(content)]) if (!r.ok) assert.equal(typeof r.error, 'string');
  }), { numRuns: 500 });
  for (const bad of [{ v: 2, members: [], held: [], batch: 0 }, { v: 1, members: [['c', [1]]], held: [], batch: 0 }, { v: 1, members: [], held: [['c', 'u', 'soon']], batch: 0 },
    { v: 1, members: {}, held: [], batch: 0 }, { v: 1, members: [], held: [['c', 'u', 1e300]], batch: 0 }, { v: 1, members: [], held: [], batch: -1 }, { v: 1, members: [], held: [], batch: '3' }]) {
    assert.equal(decodeTold(Buffer.from(JSON.stringify(bad))).ok, false, JSON.stringify(bad));
  }
  assert.deepEqual(decodeTold(Buffer.from('{"v":1,"members":[],"held":[]}')), { ok: true, value: { members: [], held: [], batch: 0 } }, 'no batch number: none taken');
  for (const bad of [{ v: 1, batch: 1, uncertain: [['c']] }, { v: 1, batch: 1.5, uncertain: [] }, { v: 1, uncertain: [] }, { v: 2, batch: 1, uncertain: [] }]) {
    assert.equal(decodeSending(Buffer.from(JSON.stringify(bad))).ok, false, JSON.stringify(bad));
  }
});
