// Unit tests of the per-session outbox: no sockets, just pushes in and entries out.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Outbox, type DropReason, type Entry, type OutboxLimits } from '../proxy/outbox.js';
import { Push, type MessageClass } from '../proxy/push.js';

interface Opts {
  readonly class?: MessageClass;
  readonly key?: string;
  readonly expiresAt?: number;
}

/** A text push of exactly `bytes` bytes (padded with dots), labelled for assertions. */
function msg(label: string, opts: Opts = {}, bytes = 10): Push {
  return new Push({ kind: 'text', text: label.padEnd(bytes, '.') }, { class: opts.class, coalesceKey: opts.key ?? null, expiresAt: opts.expiresAt });
}

const label = (p: Push): string => (p.payload.kind === 'text' ? p.payload.text.replace(/\.+$/, '') : '?');

function outbox(limits: Partial<OutboxLimits> = {}) {
  const drops: Array<{ reason: DropReason; seq: number; label: string }> = [];
  const box = new Outbox({ maxMessages: 4, maxBytes: 1000, onOverflow: 'close', ...limits }, (reason: DropReason, entry: Entry) => {
    drops.push({ reason, seq: entry.seq, label: label(entry.push) });
  });
  return { box, drops };
}

/** Takes every writable entry, as a socket with room would. */
function drain(box: Outbox, retain: boolean, now = 0): Array<[number, string]> {
  const out: Array<[number, string]> = [];
  for (let i = 0; i < 1000 && box.peek(now); i++) {
    const e = box.markSent(retain);
    out.push([e.seq, label(e.push)]);
  }
  return out;
}

test('queues in order with seqs from 1, counting messages and bytes', () => {
  const { box, drops } = outbox();
  assert.equal(box.nextSeq, 1);
  const a = box.enqueue(msg('a', {}, 10));
  const b = box.enqueue(msg('b', {}, 25));
  assert.equal(a.result, 'queued');
  assert.equal(b.result, 'queued');
  assert.equal(a.result === 'queued' && a.entry.seq, 1);
  assert.equal(b.result === 'queued' && b.entry.seq, 2);
  assert.equal(box.messages, 2);
  assert.equal(box.bytes, 35);
  assert.equal(box.unsent, 2);
  assert.equal(box.nextSeq, 3);
  assert.deepEqual(drain(box, false), [[1, 'a'], [2, 'b']]);
  assert.equal(box.messages, 0);
  assert.equal(box.bytes, 0);
  assert.deepEqual(drops, []);
});

test('policy close: a durable push beyond maxMessages is an overflow and changes nothing', () => {
  const { box, drops } = outbox({ maxMessages: 3 });
  for (const l of ['a', 'b', 'c']) assert.equal(box.enqueue(msg(l)).result, 'queued');
  assert.deepEqual(box.enqueue(msg('d')), { result: 'overflow' });
  assert.equal(box.messages, 3);
  assert.equal(box.bytes, 30);
  assert.deepEqual(drops, [], 'the session closes 4008; nothing is dropped one by one');
  assert.deepEqual(drain(box, false), [[1, 'a'], [2, 'b'], [3, 'c']]);
});

test('policy close: a durable push beyond maxBytes is an overflow', () => {
  const { box, drops } = outbox({ maxMessages: 100, maxBytes: 100 });
  assert.equal(box.enqueue(msg('a', {}, 60)).result, 'queued');
  assert.equal(box.enqueue(msg('b', {}, 40)).result, 'queued', 'exactly maxBytes fits');
  assert.deepEqual(box.enqueue(msg('c', {}, 1)), { result: 'overflow' });
  assert.equal(box.bytes, 100);
  assert.deepEqual(drops, []);
});

test('policy drop-oldest: the oldest queued messages go, with their seqs, reason overflow', () => {
  const { box, drops } = outbox({ maxMessages: 3, onOverflow: 'drop-oldest' });
  for (const l of ['a', 'b', 'c', 'd', 'e']) assert.equal(box.enqueue(msg(l)).result, 'queued');
  assert.deepEqual(drops, [{ reason: 'overflow', seq: 1, label: 'a' }, { reason: 'overflow', seq: 2, label: 'b' }]);
  assert.equal(box.messages, 3);
  assert.deepEqual(drain(box, false), [[3, 'c'], [4, 'd'], [5, 'e']]);
});

test('policy drop-oldest by bytes: as many old messages go as the new one needs', () => {
  const { box, drops } = outbox({ maxMessages: 100, maxBytes: 100, onOverflow: 'drop-oldest' });
  for (const l of ['a', 'b', 'c', 'd']) box.enqueue(msg(l, {}, 25));
  assert.equal(box.enqueue(msg('big', {}, 60)).result, 'queued');
  assert.deepEqual(drops.map((d) => d.label), ['a', 'b', 'c']);
  assert.equal(box.bytes, 85);
  assert.ok(box.bytes <= 100);
  assert.deepEqual(drain(box, false), [[4, 'd'], [5, 'big']]);
});

test('a push larger than maxBytes: overflow under close, dropped itself under drop-oldest (nothing else goes)', () => {
  const close = outbox({ maxBytes: 50 });
  close.box.enqueue(msg('a', {}, 10));
  assert.deepEqual(close.box.enqueue(msg('huge', {}, 51)), { result: 'overflow' });

  const oldest = outbox({ maxBytes: 50, onOverflow: 'drop-oldest' });
  oldest.box.enqueue(msg('a', {}, 10));
  assert.deepEqual(oldest.box.enqueue(msg('huge', {}, 51)), { result: 'dropped' });
  assert.deepEqual(oldest.drops.map((d) => [d.reason, d.label]), [['overflow', 'huge']]);
  assert.equal(oldest.box.messages, 1, 'the queued message stays');

  const lossy = outbox({ maxBytes: 50 });
  assert.deepEqual(lossy.box.enqueue(msg('huge', { class: 'lossy' }, 51)), { result: 'dropped' });
  assert.deepEqual(lossy.drops.map((d) => [d.reason, d.label]), [['lossy', 'huge']]);
});

for (const onOverflow of ['close', 'drop-oldest'] as const) {
  test(`lossy messages are dropped first (policy ${onOverflow})`, () => {
    const { box, drops } = outbox({ maxMessages: 3, onOverflow });
    box.enqueue(msg('d1'));
    box.enqueue(msg('l1', { class: 'lossy' }));
    box.enqueue(msg('d2'));
    assert.equal(box.enqueue(msg('d3')).result, 'queued', 'room is made from the lossy message, not by closing');
    assert.deepEqual(drops, [{ reason: 'lossy', seq: 2, label: 'l1' }]);
    assert.deepEqual(drain(box, false), [[1, 'd1'], [3, 'd2'], [4, 'd3']]);
  });
}

test('a lossy push into an outbox full of durable messages is dropped itself, never an overflow', () => {
  const { box, drops } = outbox({ maxMessages: 2 });
  box.enqueue(msg('d1'));
  box.enqueue(msg('d2'));
  assert.deepEqual(box.enqueue(msg('l1', { class: 'lossy' })), { result: 'dropped' });
  assert.deepEqual(drops, [{ reason: 'lossy', seq: 3, label: 'l1' }]);
  assert.equal(box.nextSeq, 4, 'the dropped push used a seq, so a reliable client will see a gap');
  assert.deepEqual(drain(box, false), [[1, 'd1'], [2, 'd2']]);
});

test('a newer lossy push replaces an older queued lossy one when full', () => {
  const { box, drops } = outbox({ maxMessages: 2 });
  box.enqueue(msg('d1'));
  box.enqueue(msg('l1', { class: 'lossy' }));
  assert.equal(box.enqueue(msg('l2', { class: 'lossy' })).result, 'queued');
  assert.deepEqual(drops.map((d) => [d.reason, d.label]), [['lossy', 'l1']]);
  assert.deepEqual(drain(box, false), [[1, 'd1'], [3, 'l2']]);
});

test('coalescing replaces a queued message in place, keeping its seq and position', () => {
  const { box, drops } = outbox();
  box.enqueue(msg('p1', { key: 'price' }, 10));
  box.enqueue(msg('other', {}, 10));
  const r = box.enqueue(msg('p2', { key: 'price' }, 30));
  assert.equal(r.result, 'coalesced');
  assert.equal(r.result === 'coalesced' && r.entry.seq, 1);
  assert.equal(box.messages, 2);
  assert.equal(box.bytes, 40, 'bytes follow the replacement');
  assert.equal(box.nextSeq, 3, 'no seq is used by a coalesced push');
  assert.deepEqual(drops, [], 'a replacement is not a drop');
  assert.deepEqual(drain(box, false), [[1, 'p2'], [2, 'other']]);
});

test('coalescing: once written, a key no longer matches; different keys do not mix', () => {
  const { box } = outbox();
  box.enqueue(msg('a1', { key: 'a' }));
  assert.deepEqual(drain(box, true), [[1, 'a1']]);
  assert.equal(box.enqueue(msg('a2', { key: 'a' })).result, 'queued', 'the written one is not replaced');
  assert.equal(box.enqueue(msg('b1', { key: 'b' })).result, 'queued');
  assert.equal(box.enqueue(msg('a3', { key: 'a' })).result, 'coalesced');
  assert.deepEqual(drain(box, true), [[2, 'a3'], [3, 'b1']]);
});

test('coalescing: a key whose message was dropped starts afresh', () => {
  const { box, drops } = outbox({ maxMessages: 2, onOverflow: 'drop-oldest' });
  box.enqueue(msg('k1', { key: 'k' }));
  box.enqueue(msg('x'));
  box.enqueue(msg('y')); // drops k1
  assert.deepEqual(drops.map((d) => d.label), ['k1']);
  const r = box.enqueue(msg('k2', { key: 'k' }));
  assert.equal(r.result, 'queued');
  assert.equal(r.result === 'queued' && r.entry.seq, 4);
  assert.deepEqual(drain(box, false), [[3, 'y'], [4, 'k2']]);
});

test('coalescing keeps the byte bound', () => {
  const { box } = outbox({ maxMessages: 10, maxBytes: 100, onOverflow: 'drop-oldest' });
  box.enqueue(msg('k1', { key: 'k' }, 10));
  box.enqueue(msg('x', {}, 80));
  box.enqueue(msg('k2', { key: 'k' }, 60));
  assert.ok(box.bytes <= 100, `outbox holds ${box.bytes} bytes with maxBytes 100`);
});

test('TTL: peek skips and drops expired messages (reason ttl)', () => {
  const { box, drops } = outbox();
  box.enqueue(msg('short', { expiresAt: 100 }));
  box.enqueue(msg('long', { expiresAt: 1000 }));
  box.enqueue(msg('forever'));
  assert.equal(label(box.peek(50)!.push), 'short', 'not expired yet');
  const e = box.peek(100);
  assert.equal(e && label(e.push), 'long', 'expired exactly at expiresAt');
  assert.deepEqual(drops, [{ reason: 'ttl', seq: 1, label: 'short' }]);
  assert.equal(box.messages, 2);
  assert.equal(box.bytes, 20);
  assert.deepEqual(drain(box, false, 5000), [[3, 'forever']]);
  assert.deepEqual(drops.map((d) => d.reason), ['ttl', 'ttl']);
  assert.equal(box.peek(5000), undefined);
});

test('written messages are retained until a cumulative ack', () => {
  const { box } = outbox({ maxMessages: 10 });
  for (const l of ['a', 'b', 'c', 'd']) box.enqueue(msg(l));
  assert.deepEqual(drain(box, true).map(([s]) => s), [1, 2, 3, 4]);
  assert.equal(box.messages, 4, 'kept for replay');
  assert.equal(box.unsent, 0);
  assert.equal(box.ack(2), 2);
  assert.equal(box.messages, 2);
  assert.equal(box.bytes, 20);
  assert.equal(box.ack(2), 0, 'acking again is harmless');
  assert.equal(box.ack(1), 0, 'an older ack is harmless');
  box.enqueue(msg('e'));
  assert.equal(box.ack(99), 2, 'an ack never removes what was not written');
  assert.equal(box.messages, 1);
  assert.equal(box.unsent, 1);
  assert.deepEqual(drain(box, true), [[5, 'e']]);
});

test('rewind: drops what the client has and writes the rest again, in order', () => {
  const { box } = outbox({ maxMessages: 10 });
  for (const l of ['a', 'b', 'c', 'd']) box.enqueue(msg(l));
  drain(box, true);
  box.enqueue(msg('e'));
  box.rewind(2);
  assert.equal(box.unsent, 3);
  assert.deepEqual(drain(box, true), [[3, 'c'], [4, 'd'], [5, 'e']]);
  box.rewind(0);
  assert.deepEqual(drain(box, true).map(([s]) => s), [3, 4, 5], 'rewinding further back replays only what is held');
});

test('written-but-unacked messages are evicted first to make room (reason unacked_evicted)', () => {
  const { box, drops } = outbox({ maxMessages: 3 });
  box.enqueue(msg('a'));
  box.enqueue(msg('b'));
  drain(box, true);
  box.enqueue(msg('c'));
  assert.equal(box.enqueue(msg('d')).result, 'queued', 'not an overflow: an unacked one made room');
  assert.equal(box.enqueue(msg('e')).result, 'queued');
  assert.deepEqual(drops, [{ reason: 'unacked_evicted', seq: 1, label: 'a' }, { reason: 'unacked_evicted', seq: 2, label: 'b' }]);
  assert.deepEqual(box.enqueue(msg('f')), { result: 'overflow' }, 'queued durable ones are not evicted under close');
  box.rewind(0);
  assert.deepEqual(drain(box, true), [[3, 'c'], [4, 'd'], [5, 'e']]);
});

test('sentDirectly assigns the next seq; retained it is replayable, not retained it only uses the seq', () => {
  const { box, drops } = outbox({ maxMessages: 2 });
  assert.equal(box.sentDirectly(msg('a'), true).seq, 1);
  assert.equal(box.sentDirectly(msg('b'), false).seq, 2);
  assert.equal(box.messages, 1);
  assert.equal(box.unsent, 0);
  assert.equal(box.sentDirectly(msg('c'), true).seq, 3);
  assert.equal(box.sentDirectly(msg('d'), true).seq, 4);
  assert.deepEqual(drops, [{ reason: 'unacked_evicted', seq: 1, label: 'a' }]);
  box.rewind(0);
  assert.deepEqual(drain(box, true), [[3, 'c'], [4, 'd']]);
});

test('a push that cannot be held evicts nothing for it', () => {
  const { box, drops } = outbox({ maxMessages: 10, maxBytes: 100 });
  box.enqueue(msg('unacked', {}, 50));
  drain(box, true);
  box.enqueue(msg('queued', {}, 50));
  // 60 lossy bytes do not fit even after evicting the unacked message: only the push goes.
  assert.deepEqual(box.enqueue(msg('l', { class: 'lossy' }, 60)), { result: 'dropped' });
  assert.deepEqual(drops.map((d) => [d.reason, d.label]), [['lossy', 'l']]);
  assert.equal(box.messages, 2, 'the unacked message is still there for a replay');
});

test('clear empties everything and says how much was held', () => {
  const { box, drops } = outbox({ maxMessages: 10 });
  box.enqueue(msg('a'));
  box.enqueue(msg('b'));
  drain(box, true);
  box.enqueue(msg('c', { key: 'k' }));
  assert.equal(box.clear(), 3);
  assert.equal(box.messages, 0);
  assert.equal(box.bytes, 0);
  assert.equal(box.unsent, 0);
  assert.equal(box.peek(0), undefined);
  assert.deepEqual(drops, []);
  assert.equal(box.enqueue(msg('d', { key: 'k' })).result, 'queued', 'no stale coalesce key survives');
});
