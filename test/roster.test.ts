// The cluster roster's fold (plugins/amqp/roster.ts): whatever prefix of a roster queue a
// crash leaves, and whatever was trimmed, reading it gives exactly the sessions held.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { fold, type Wire } from '../plugins/amqp/roster.js';
import type { RosterEntry } from '../proxy/snapshot.js';

type Op = { op: 'add' | 'set' | 'del'; id: number; user: string } | { op: 'full' } | { op: 'flush' };

const ops = fc.array(fc.oneof(
  fc.record({ op: fc.constantFrom('add' as const, 'set' as const, 'del' as const), id: fc.nat({ max: 12 }), user: fc.constantFrom('a', 'b', 'c') }),
  fc.constant({ op: 'full' as const }),
  fc.constant({ op: 'flush' as const }),
), { maxLength: 60 });

const entry = (id: number, user: string): RosterEntry => ({ id: `n1-0-${id}`, user, meta: { user }, connectedAt: id, path: '/ws' });

/** What a process writes for `ops` (changes batched until a flush), and the sessions held after each message. */
function write(list: Op[], boot = 'b1'): { messages: Wire[]; heldAfter: Array<Map<string, RosterEntry>> } {
  const held = new Map<string, RosterEntry>();
  const messages: Wire[] = [];
  const heldAfter: Array<Map<string, RosterEntry>> = [];
  let pending: NonNullable<Wire['changes']> = [];
  let gen = 0;
  const emit = (w: Wire) => { messages.push(w); heldAfter.push(new Map(held)); };
  const flush = () => { if (pending.length > 0) emit({ boot, kind: 'changes', changes: pending }); pending = []; };
  for (const o of list) {
    if (o.op === 'flush') flush();
    else if (o.op === 'full') {
      flush();
      gen++;
      emit({ boot, kind: 'begin', gen });
      const all = [...held.values()];
      for (let i = 0; i < all.length; i += 3) emit({ boot, kind: 'chunk', gen, entries: all.slice(i, i + 3) });
      emit({ boot, kind: 'end', gen });
    } else {
      const id = `n1-0-${o.id}`;
      // As the registry reports them: an add of a new session, a set or del of a held one.
      if (o.op === 'add' && !held.has(id)) { held.set(id, entry(o.id, o.user)); pending.push({ t: 'add', e: entry(o.id, o.user) }); }
      if (o.op === 'set' && held.has(id)) { held.set(id, entry(o.id, o.user)); pending.push({ t: 'set', e: entry(o.id, o.user) }); }
      if (o.op === 'del' && held.has(id)) { held.delete(id); pending.push({ t: 'del', id }); }
    }
  }
  flush();
  return { messages, heldAfter };
}

const sorted = (entries: Iterable<RosterEntry>) => [...entries].sort((a, b) => a.id.localeCompare(b.id));

test('property: a roster cut off anywhere (a crash) reads as the sessions held at that message', () => {
  fc.assert(fc.property(ops, fc.double({ min: 0, max: 1, noNaN: true }), (list, where) => {
    const { messages, heldAfter } = write(list);
    const cut = Math.min(messages.length, Math.floor(where * (messages.length + 1)));
    const expected = cut === 0 ? [] : sorted(heldAfter[cut - 1].values());
    assert.deepEqual(sorted(fold(messages.slice(0, cut))), expected);
  }), { numRuns: 2000 });
});

test('property: trimming everything before a complete full roster changes nothing', () => {
  fc.assert(fc.property(ops, (list) => {
    const { messages } = write([...list, { op: 'full' }, ...list.slice(0, 10)]);
    const ends = messages.map((m, i) => (m.kind === 'end' ? i : -1)).filter((i) => i >= 0);
    const lastEnd = ends[ends.length - 1];
    const begin = messages.map((m, i) => (i < lastEnd && m.kind === 'begin' && m.gen === messages[lastEnd].gen ? i : -1)).reduce((a, b) => Math.max(a, b), -1);
    assert.deepEqual(sorted(fold(messages.slice(begin))), sorted(fold(messages)));
  }), { numRuns: 1000 });
});

test('a predecessor and its successor in one queue: each instance reads from its own last full roster', () => {
  const old = write([{ op: 'add', id: 1, user: 'a' }, { op: 'full' }, { op: 'add', id: 2, user: 'b' }], 'old');
  const fresh = write([{ op: 'full' }, { op: 'add', id: 3, user: 'c' }], 'new');
  assert.deepEqual(sorted(fold([...old.messages, ...fresh.messages])).map((e) => e.id), ['n1-0-1', 'n1-0-2', 'n1-0-3']);
  assert.deepEqual(sorted(fold(old.messages)).map((e) => e.id), ['n1-0-1', 'n1-0-2']);
});

test('property: malformed roster messages are skipped, never thrown on', () => {
  fc.assert(fc.property(fc.array(fc.anything(), { maxLength: 20 }), (junk) => {
    const messages = junk.map((j) => ({ boot: 'x', kind: 'changes', changes: [j, { t: 'add', e: j }, { t: 'set', e: j }, { t: 'del', id: j }] }) as unknown as Wire);
    assert.ok(Array.isArray(fold(messages)));
  }), { numRuns: 500 });
});
