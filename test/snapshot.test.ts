// The session snapshot (proxy/snapshot.ts) arrives from a broker: outside input. Any bytes
// decode to a snapshot or a reason, never a throw; every valid snapshot survives the trip.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { decodeSnapshot, decodeTail, encodeJson, fromWireMessage, toWireMessage, SNAPSHOT_VERSION, type HeldMessage, type SessionSnapshot } from '../proxy/snapshot.js';
import { Push } from '../proxy/push.js';
import { TokenCodec, homeOf } from '../proxy/token.js';

const wire = fc.record({
  kind: fc.constantFrom('text' as const, 'json' as const, 'binary' as const),
  text: fc.string({ maxLength: 40 }),
  json: fc.jsonValue({ maxDepth: 3 }).map((v) => JSON.stringify(v)),
  bytes: fc.uint8Array({ maxLength: 40 }),
  class: fc.constantFrom('durable' as const, 'lossy' as const),
  key: fc.option(fc.string({ maxLength: 10 })),
  ttlMs: fc.option(fc.nat({ max: 1e9 })),
  pushId: fc.option(fc.string({ maxLength: 20 })),
  presence: fc.boolean(),
}).map((m) => (m.presence
  // A presence frame (presence.frames): a JSON object, typed.
  ? { kind: 'json' as const, body: '{"event":"member_added","user":"u"}', class: m.class, key: m.key, ttlMs: m.ttlMs, pushId: m.pushId, type: 'presence' as const }
  : {
    kind: m.kind,
    body: m.kind === 'text' ? m.text : m.kind === 'json' ? m.json : Buffer.from(m.bytes).toString('base64'),
    class: m.class, key: m.key, ttlMs: m.ttlMs, pushId: m.pushId,
  }));

const strings = fc.dictionary(fc.string({ maxLength: 8 }), fc.string({ maxLength: 12 }), { maxKeys: 4, noNullPrototype: true });

const snapshot: fc.Arbitrary<SessionSnapshot> = fc.record({
  id: fc.string({ minLength: 1, maxLength: 20 }),
  user: fc.option(fc.string({ maxLength: 10 })),
  meta: strings, query: strings, headers: strings,
  channels: fc.uniqueArray(fc.string({ maxLength: 10 }), { maxLength: 4 }),
  firstSeq: fc.integer({ min: 1, max: 1000 }),
  messages: fc.array(wire, { maxLength: 8 }),
  sentFraction: fc.double({ min: 0, max: 1, noNaN: true }),
  counts: fc.tuple(fc.nat(), fc.nat(), fc.nat()),
}).map((r) => {
  const messages: HeldMessage[] = r.messages.map((m, i) => ({ ...m, seq: r.firstSeq + i * 2 }));
  return {
    v: SNAPSHOT_VERSION, id: r.id, path: '/ws', url: '/ws?x=1', query: r.query, remoteAddress: '127.0.0.1',
    subprotocol: 'switchboard.v1', headers: r.headers, connectedAt: 1_700_000_000_000, user: r.user, meta: r.meta,
    channels: r.channels, nextSeq: r.firstSeq + messages.length * 2, sent: Math.floor(r.sentFraction * messages.length),
    messages, messagesIn: r.counts[0], messagesOut: r.counts[1], detachedForMs: r.counts[2],
  };
});

test('property: every snapshot survives encoding and decoding', () => {
  fc.assert(fc.property(snapshot, (s) => {
    const decoded = decodeSnapshot(encodeJson(s));
    assert.ok(decoded.ok, decoded.ok ? '' : decoded.error);
    assert.deepEqual(decoded.value, s);
  }), { numRuns: 500 });
});

test('property: any bytes decode to a snapshot or a reason, never a throw', () => {
  const valid = encodeJson(fc.sample(snapshot, 1)[0]).toString();
  const input = fc.oneof(
    fc.uint8Array({ maxLength: 300 }).map((b) => Buffer.from(b)),
    fc.jsonValue({ maxDepth: 4 }).map((v) => Buffer.from(JSON.stringify(v))),
    // A valid one with a piece cut out or put in.
    fc.tuple(fc.nat({ max: valid.length }), fc.nat({ max: 8 }), fc.string({ maxLength: 4 })).map(([at, cut, put]) => Buffer.from(valid.slice(0, at) + put + valid.slice(at + cut))),
  );
  fc.assert(fc.property(input, (bytes) => {
    const s = decodeSnapshot(bytes);
    if (!s.ok) assert.equal(typeof s.error, 'string');
    const t = decodeTail(bytes);
    if (!t.ok) assert.equal(typeof t.error, 'string');
  }), { numRuns: 3000 });
});

test('snapshots that would break the receiver are refused with a reason', () => {
  const good = fc.sample(snapshot.filter((s) => s.messages.length >= 2), 1)[0];
  const bad: Array<[string, unknown]> = [
    ['unknown snapshot version', { ...good, v: 2 }],
    ['bad id', { ...good, id: '' }],
    ['held messages out of order', { ...good, messages: [...good.messages].reverse() }],
    ['held messages out of order', { ...good, nextSeq: good.messages[0].seq }],
    ['more sent than held', { ...good, sent: good.messages.length + 1 }],
    ['bad message kind', { ...good, messages: [{ ...good.messages[0], kind: 'xml' }] }],
    ['a JSON message that is not JSON', { ...good, messages: [{ ...good.messages[0], kind: 'json', body: '{' }] }],
    ['bad message TTL', { ...good, messages: [{ ...good.messages[0], ttlMs: -1 }] }],
    ['bad message type', { ...good, messages: [{ ...good.messages[0], type: 'shout' }] }],
    ['a presence frame is a JSON object', { ...good, messages: [{ ...good.messages[0], kind: 'text', body: 'hi', type: 'presence' }] }],
    ['bad query, headers or meta', { ...good, meta: { a: 1 } }],
    ['bad subprotocol, user or channels', { ...good, channels: [1] }],
    ['bad nextSeq', { ...good, nextSeq: 1.5 }],
  ];
  for (const [reason, value] of bad) {
    const decoded = decodeSnapshot(Buffer.from(JSON.stringify(value)));
    assert.equal(decoded.ok, false, reason);
    assert.match((decoded as { error: string }).error, new RegExp(reason.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')));
  }
  const deep = decodeSnapshot(Buffer.from(`${'['.repeat(100)}${']'.repeat(100)}`));
  assert.equal(deep.ok, false, 'nesting is bounded');
});

test('a push keeps its payload, class, key, TTL left and id across the wire', () => {
  const push = new Push({ kind: 'binary', data: Buffer.from([0, 255, 7]) }, { class: 'lossy', coalesceKey: 'k', expiresAt: 10_500, id: 'n1.ab.1' });
  const back = fromWireMessage(toWireMessage(push, 10_000), 50_000);
  assert.deepEqual(back.payload, push.payload);
  assert.equal(back.class, 'lossy');
  assert.equal(back.coalesceKey, 'k');
  assert.equal(back.expiresAt, 50_500, 'the time left, on the receiver\'s clock');
  assert.equal(back.id, 'n1.ab.1');
  assert.equal(fromWireMessage(toWireMessage(new Push({ kind: 'text', text: 'x' }), 0), 0).expiresAt, Infinity);
  // A presence frame stays one across the wire (a move, a parked session).
  const frame = fromWireMessage(toWireMessage(new Push({ kind: 'json', json: '{"event":"member_added"}' }, { type: 'presence' }), 0), 0);
  assert.equal(frame.type, 'presence');
  assert.equal(fromWireMessage(toWireMessage(push, 0), 0).type, 'message');
});

test('a token names the process holding its session only when that is not the one its id names', () => {
  const home = new TokenCodec('a-secret-of-sixteen+', 60_000, 'n1-0');
  const elsewhere = new TokenCodec('a-secret-of-sixteen+', 60_000, 'n2-3');
  assert.deepEqual(home.read(home.issue('n1-0-abc', 1000), 2000), { session: 'n1-0-abc', holder: 'n1-0' });
  const moved = elsewhere.issue('n1-0-abc', 1000);
  assert.deepEqual(home.read(moved, 2000), { session: 'n1-0-abc', holder: 'n2-3' }, 'verifies on every node with the shared secret');
  assert.ok(moved.length > home.issue('n1-0-abc', 1000).length);
  // The holder is signed: pointing the token at another process breaks it.
  const [body, mac] = moved.split('.');
  const redirected = Buffer.from(Buffer.from(body, 'base64url').toString().replace('~n2-3', '~n9-9')).toString('base64url');
  assert.equal(home.read(`${redirected}.${mac}`, 2000), null);
  assert.equal(homeOf('n1-0-abc'), 'n1-0');
  assert.equal(homeOf('no-node'), null);
});
