// Cluster-wide views (proxy/views.ts): questions arrive from other processes through a
// broker, so they are parsed like any outside input; answers are merged with the nodes named.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { ClusterViews, decodeQuestion, encodeQuestion, type Question, type Scatter } from '../proxy/views.js';
import { MAX_HELD_QUESTION } from '../proxy/limits.js';
import { toAll, toChannel, toConnection, toUser } from '../proxy/target.js';

const text = fc.string({ minLength: 1, maxLength: 30 });
const question: fc.Arbitrary<Question> = fc.oneof(
  text.map((connection) => ({ op: 'info' as const, connection })),
  text.map((channel) => ({ op: 'channelSize' as const, channel })),
  fc.constant({ op: 'node' as const }),
  fc.array(text, { minLength: 1, maxLength: 20 }).map((connections) => ({ op: 'held' as const, connections })),
  fc.record({
    op: fc.constant('list' as const), limit: fc.integer({ min: 1, max: 1000 }),
    user: fc.option(text, { nil: undefined }), channel: fc.option(text, { nil: undefined }),
    cursors: fc.dictionary(fc.constantFrom('n1-0', 'n2-1'), text, { noNullPrototype: true }),
  }, { requiredKeys: ['op', 'limit', 'cursors'] }),
  fc.record({
    op: fc.constant('close' as const),
    target: fc.oneof(text.map(toConnection), text.map(toUser), text.map(toChannel), fc.constant(toAll)),
    code: fc.integer({ min: 4000, max: 4099 }), reason: fc.string({ maxLength: 20 }),
  }),
);

test('property: every question survives the wire', () => {
  fc.assert(fc.property(question, (q) => {
    const back = decodeQuestion(encodeQuestion(q));
    assert.ok(back.ok, back.ok ? '' : back.error);
    assert.deepEqual(back.value, JSON.parse(JSON.stringify(q)));
  }), { numRuns: 1000 });
});

test('property: any bytes decode to a question or a reason, never a throw', () => {
  const valid = encodeQuestion({ op: 'list', limit: 10, cursors: { 'n1-0': 'a' }, user: 'u' }).toString();
  const input = fc.oneof(
    fc.uint8Array({ maxLength: 200 }).map((b) => Buffer.from(b)),
    fc.jsonValue({ maxDepth: 4 }).map((v) => Buffer.from(JSON.stringify(v))),
    fc.record({ op: fc.constantFrom('info', 'list', 'close', 'channelSize', 'node', 'held', 'x'), connections: fc.anything(), connection: fc.anything(), channel: fc.anything(), limit: fc.anything(), cursors: fc.anything(), target: fc.anything(), code: fc.anything(), reason: fc.anything() })
      .map((v) => Buffer.from(JSON.stringify(v) ?? 'null')),
    fc.tuple(fc.nat({ max: valid.length }), fc.nat({ max: 5 }), fc.string({ maxLength: 3 })).map(([at, cut, put]) => Buffer.from(valid.slice(0, at) + put + valid.slice(at + cut))),
  );
  fc.assert(fc.property(input, (bytes) => {
    const q = decodeQuestion(bytes);
    if (!q.ok) assert.equal(typeof q.error, 'string');
  }), { numRuns: 3000 });
});

test('a question of which sessions are held names 1 to MAX_HELD_QUESTION ids, each a string', () => {
  const held = (connections: unknown) => decodeQuestion(Buffer.from(JSON.stringify({ op: 'held', connections })));
  assert.ok(held(['n1-0-a']).ok);
  assert.ok(held(Array.from({ length: MAX_HELD_QUESTION }, (_, i) => `n1-0-${i}`)).ok);
  for (const bad of [[], Array.from({ length: MAX_HELD_QUESTION + 1 }, (_, i) => `n1-0-${i}`), ['ok', 7], [''], 'n1-0-a', null]) {
    const q = held(bad);
    assert.equal(q.ok, false, JSON.stringify(bad).slice(0, 40));
  }
});

test('answers are merged; a process that answers nothing or nonsense makes its node missing', async () => {
  const scatter: Scatter = {
    ask: async () => ({
      answers: [
        { process: 'nb-0', value: 2 },
        { process: 'nc-0', value: 3 },
        { process: 'nc-1', value: 'three' },
      ],
      silent: ['nd-0'],
    }),
  };
  const views = new ClusterViews(scatter, 'na-0', () => 1);
  assert.deepEqual(await views.channelSize('room'), { connections: 6, nodes: { answered: 2, missing: ['nc', 'nd'] } });
  const alone = new ClusterViews({ ask: async () => ({ answers: [], silent: [] }) }, 'na-0', () => 4);
  assert.deepEqual(await alone.close(toUser('u'), 4000, ''), { closed: 4, nodes: { answered: 1, missing: [] } });
});
