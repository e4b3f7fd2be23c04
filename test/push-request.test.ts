// Unit tests of push requests: JSON bodies, the push headers (class, coalesce key, TTL) and
// batch bodies, as the push API and the push queue both read them; every bad input is a
// SwitchboardError with its code.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { SwitchboardError, type ErrorCode } from '../proxy/errors.js';
import { jsonBody, parseBatch, pushFromHttp, type PushHeaders } from '../proxy/push-request.js';
import { MAX_COALESCE_KEY } from '../proxy/limits.js';
import type { Payload } from '../proxy/payload.js';
import type { Target } from '../proxy/target.js';

const NOW = 1_700_000_000_000;
const text: Payload = { kind: 'text', text: 'hello' };

/** Runs `fn`, which must throw a SwitchboardError of `code` whose message matches `message`. */
function fails(fn: () => unknown, code: ErrorCode, message?: RegExp): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof SwitchboardError, `a SwitchboardError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    if (message) assert.match(err.message, message);
    return true;
  });
}

const batch = (body: unknown, maxItems = 100, maxItemBytes = 1000) => parseBatch(body, NOW, maxItems, maxItemBytes);
const one = (item: Record<string, unknown>) => batch({ messages: [item] })[0];

// ── jsonBody ────────────────────────────────────────────────────────────────────

test('jsonBody: a JSON text gives its value', () => {
  assert.deepEqual(jsonBody('{"messages":[{"to":{"all":true},"data":1}]}'), { messages: [{ to: { all: true }, data: 1 }] });
  assert.deepEqual(jsonBody(' [1, "two", null] '), [1, 'two', null]);
  assert.equal(jsonBody('"text"'), 'text');
  assert.equal(jsonBody('null'), null);
});

test('jsonBody: text that is not JSON is 400 bad_json; nesting past the bound is 400 too_deep', () => {
  for (const bad of ['', ' ', '{', '{"a":}', "{'a':1}", 'undefined', '[1,]', '{"a":1}x']) fails(() => jsonBody(bad), 'bad_json', /not valid JSON/);
  fails(() => jsonBody(`${'['.repeat(65)}${']'.repeat(65)}`), 'too_deep');
  assert.deepEqual(jsonBody(`${'['.repeat(64)}${']'.repeat(64)}`), JSON.parse(`${'['.repeat(64)}${']'.repeat(64)}`), '64 levels are fine');
  for (const bad of ['{', `${'{"a":'.repeat(100)}1${'}'.repeat(100)}`]) {
    try {
      jsonBody(bad);
      assert.fail('no error');
    } catch (err) {
      assert.ok(err instanceof SwitchboardError);
      assert.equal(err.status, 400);
      assert.deepEqual(Object.keys(err.toJSON()), ['error', 'message']);
    }
  }
});

// ── pushFromHttp ────────────────────────────────────────────────────────────────

test('pushFromHttp: without headers, a durable push with no coalesce key that never expires', () => {
  const push = pushFromHttp(text, {}, NOW);
  assert.equal(push.payload, text);
  assert.equal(push.class, 'durable');
  assert.equal(push.coalesceKey, null);
  assert.equal(push.expiresAt, Infinity);
  assert.equal(push.bytes, 5);
});

test('pushFromHttp: X-Switchboard-Class, -Coalesce-Key and -TTL-Ms set the push\'s class, key and expiry', () => {
  const push = pushFromHttp(text, { class: 'lossy', coalesceKey: 'price', ttlMs: '1500' }, NOW);
  assert.equal(push.class, 'lossy');
  assert.equal(push.coalesceKey, 'price');
  assert.equal(push.expiresAt, NOW + 1500);
  assert.equal(pushFromHttp(text, { class: 'durable' }, NOW).class, 'durable');
  assert.equal(pushFromHttp(text, { coalesceKey: 'k'.repeat(MAX_COALESCE_KEY) }, NOW).coalesceKey, 'k'.repeat(MAX_COALESCE_KEY));
  assert.equal(pushFromHttp(text, { ttlMs: '007' }, NOW).expiresAt, NOW + 7);
  assert.equal(pushFromHttp(text, { ttlMs: String(Number.MAX_SAFE_INTEGER) }, NOW).expiresAt, NOW + Number.MAX_SAFE_INTEGER);
});

test('pushFromHttp: a bad push header is 400 bad_header naming the header', () => {
  const table: Array<[headers: PushHeaders, header: RegExp]> = [
    [{ class: 'LOSSY' }, /^X-Switchboard-Class: /],
    [{ class: '' }, /^X-Switchboard-Class: /],
    [{ class: 'best-effort' }, /^X-Switchboard-Class: expected "durable" or "lossy", got "best-effort"/],
    [{ coalesceKey: '' }, /^X-Switchboard-Coalesce-Key: /],
    [{ coalesceKey: 'k'.repeat(MAX_COALESCE_KEY + 1) }, /^X-Switchboard-Coalesce-Key: expected a string of 1 to 256 characters/],
    [{ ttlMs: '0' }, /^X-Switchboard-TTL-Ms: /],
    [{ ttlMs: '-5' }, /^X-Switchboard-TTL-Ms: /],
    [{ ttlMs: '1.5' }, /^X-Switchboard-TTL-Ms: /],
    [{ ttlMs: '1e3' }, /^X-Switchboard-TTL-Ms: /],
    [{ ttlMs: ' 5' }, /^X-Switchboard-TTL-Ms: /],
    [{ ttlMs: '' }, /^X-Switchboard-TTL-Ms: /],
    [{ ttlMs: 'soon' }, /^X-Switchboard-TTL-Ms: expected a positive integer of milliseconds, got "soon"/],
    [{ ttlMs: String(Number.MAX_SAFE_INTEGER + 1) }, /^X-Switchboard-TTL-Ms: /],
  ];
  for (const [headers, header] of table) {
    fails(() => pushFromHttp(text, headers, NOW), 'bad_header', header);
    assert.throws(() => pushFromHttp(text, headers, NOW), (err: SwitchboardError) => err.status === 400);
  }
});

// ── parseBatch ──────────────────────────────────────────────────────────────────

test('parseBatch: each "to" is a target of its kind: connection, user, channel or everyone', () => {
  const items = batch({ messages: [
    { to: { connection: 'n1-0-abc' }, data: 1 },
    { to: { user: 'alice' }, data: 2 },
    { to: { channel: 'news.eu' }, data: 3 },
    { to: { all: true }, data: 4 },
  ] });
  const targets: Target[] = [
    { kind: 'connection', id: 'n1-0-abc' },
    { kind: 'user', name: 'alice' },
    { kind: 'channel', name: 'news.eu' },
    { kind: 'all' },
  ];
  assert.deepEqual(items.map((i) => i.target), targets);
  assert.deepEqual(items.map((i) => i.push.payload), [1, 2, 3, 4].map((n) => ({ kind: 'json', json: String(n) })));
});

test('parseBatch: "data" as a string is a text frame, anything else JSON; "binary" is base64', () => {
  const to = { all: true };
  assert.deepEqual(one({ to, data: 'hi' }).push.payload, { kind: 'text', text: 'hi' });
  assert.deepEqual(one({ to, data: { a: [1, null] } }).push.payload, { kind: 'json', json: '{"a":[1,null]}' });
  assert.deepEqual(one({ to, data: null }).push.payload, { kind: 'json', json: 'null' });
  assert.deepEqual(one({ to, data: '' }).push.payload, { kind: 'text', text: '' });
  const bin = one({ to, binary: Buffer.from([0, 255, 7]).toString('base64') }).push;
  assert.equal(bin.payload.kind, 'binary');
  assert.deepEqual([...(bin.payload as { data: Buffer }).data], [0, 255, 7]);
  assert.equal(bin.bytes, 3);
  assert.equal(one({ to, binary: '' }).push.bytes, 0, 'an empty binary message');
});

test('parseBatch: class, coalesceKey and ttlMs of an item set its push; absent or null, the defaults', () => {
  const to = { user: 'u' };
  const push = one({ to, data: 'x', class: 'lossy', coalesceKey: 'k', ttlMs: 250 }).push;
  assert.equal(push.class, 'lossy');
  assert.equal(push.coalesceKey, 'k');
  assert.equal(push.expiresAt, NOW + 250);
  assert.equal(one({ to, data: 'x', ttlMs: '250' }).push.expiresAt, NOW + 250, 'a digit string is read as the header is');
  const plain = one({ to, data: 'x', class: null, coalesceKey: null, ttlMs: null }).push;
  assert.equal(plain.class, 'durable');
  assert.equal(plain.coalesceKey, null);
  assert.equal(plain.expiresAt, Infinity);
});

test('parseBatch: an empty batch is no items; up to maxItems are taken, one more is 413 too_large', () => {
  assert.deepEqual(batch({ messages: [] }), []);
  const item = { to: { all: true }, data: 1 };
  assert.equal(batch({ messages: Array.from({ length: 3 }, () => item) }, 3).length, 3);
  fails(() => batch({ messages: Array.from({ length: 4 }, () => item) }, 3), 'too_large', /at most 3 messages, got 4/);
});

test('parseBatch: an item larger than maxItemBytes is 413 too_large, counted in payload bytes', () => {
  const to = { all: true };
  assert.equal(batch({ messages: [{ to, data: 'x'.repeat(10) }] }, 10, 10)[0].push.bytes, 10);
  fails(() => batch({ messages: [{ to, data: 'x'.repeat(11) }] }, 10, 10), 'too_large', /^messages\[0\]: 11 bytes/);
  fails(() => batch({ messages: [{ to, data: 'é'.repeat(6) }] }, 10, 10), 'too_large', /12 bytes/);
  fails(() => batch({ messages: [{ to, data: { a: 'xxxxx' } }] }, 10, 10), 'too_large', /13 bytes/);
  assert.equal(batch({ messages: [{ to, binary: Buffer.alloc(10).toString('base64') }] }, 10, 10)[0].push.bytes, 10, 'binary counts decoded bytes');
  fails(() => batch({ messages: [{ to, binary: Buffer.alloc(11).toString('base64') }] }, 10, 10), 'too_large');
});

test('parseBatch: a body that is not {"messages": [...]} is 400 bad_body', () => {
  for (const body of [null, undefined, 1, 'x', true, [], [{ to: { all: true }, data: 1 }], {}, { messages: 'x' }, { messages: {} }, { messages: null }, { Messages: [] }]) {
    fails(() => batch(body), 'bad_body', /^expected \{"messages": \[\.\.\.\]\}$/);
  }
  fails(() => batch({ messages: [], extra: 1 }), 'bad_body', /^extra: unknown key$/);
  fails(() => batch(jsonBody('{"messages":[],"__proto__":{}}')), 'bad_body', /^__proto__: unknown key$/);
});

test('parseBatch: a malformed item is 400 bad_body naming the item and the field', () => {
  const to = { all: true };
  const table: Array<[item: unknown, message: RegExp]> = [
    [null, /^messages\[1\]: expected an object$/],
    ['x', /^messages\[1\]: expected an object$/],
    [[to, 1], /^messages\[1\]: expected an object$/],
    [{ to, data: 1, extra: true }, /^messages\[1\]\.extra: unknown key$/],
    [{ to }, /^messages\[1\]: expected exactly one of "data" and "binary"$/],
    [{ to, data: 1, binary: 'AA==' }, /^messages\[1\]: expected exactly one of "data" and "binary"$/],
    [{ to, binary: 5 }, /^messages\[1\]\.binary: expected base64$/],
    [{ to, binary: 'not base64!' }, /^messages\[1\]\.binary: expected base64$/],
    [{ to, binary: 'AA===' }, /^messages\[1\]\.binary: expected base64$/],
    [{ to, binary: 'AA-_' }, /^messages\[1\]\.binary: expected base64$/],
    // Lengths base64 cannot have, and a last group whose spare bits are set.
    [{ to, binary: 'A' }, /^messages\[1\]\.binary: expected base64$/],
    [{ to, binary: '=' }, /^messages\[1\]\.binary: expected base64$/],
    [{ to, binary: '==' }, /^messages\[1\]\.binary: expected base64$/],
    [{ to, binary: 'AAAAA' }, /^messages\[1\]\.binary: expected base64$/],
    [{ to, binary: 'AB==' }, /^messages\[1\]\.binary: expected base64$/],
    [{ to, data: 1, class: 'other' }, /^messages\[1\]\.class: expected "durable" or "lossy", got "other"$/],
    [{ to, data: 1, class: 1 }, /^messages\[1\]\.class: /],
    [{ to, data: 1, coalesceKey: '' }, /^messages\[1\]\.coalesceKey: /],
    [{ to, data: 1, coalesceKey: 7 }, /^messages\[1\]\.coalesceKey: /],
    [{ to, data: 1, coalesceKey: 'k'.repeat(MAX_COALESCE_KEY + 1) }, /^messages\[1\]\.coalesceKey: /],
    [{ to, data: 1, ttlMs: 0 }, /^messages\[1\]\.ttlMs: /],
    [{ to, data: 1, ttlMs: -1 }, /^messages\[1\]\.ttlMs: /],
    [{ to, data: 1, ttlMs: 1.5 }, /^messages\[1\]\.ttlMs: /],
    [{ to, data: 1, ttlMs: '1.5' }, /^messages\[1\]\.ttlMs: /],
    [{ to, data: 1, ttlMs: true }, /^messages\[1\]\.ttlMs: /],
    [{ to, data: 1, ttlMs: Number.MAX_SAFE_INTEGER + 1 }, /^messages\[1\]\.ttlMs: /],
  ];
  for (const [item, message] of table) {
    fails(() => batch({ messages: [{ to, data: 'fine' }, item] }), 'bad_body', message);
  }
});

test('parseBatch: a "to" that names no single target is 400 bad_body', () => {
  const bad: unknown[] = [
    undefined, null, 'alice', ['user', 'alice'], {},
    { connection: '' }, { user: '' }, { channel: '' }, { connection: 5 }, { user: null },
    { all: false }, { all: 'yes' }, { all: 1 },
    { user: 'a', channel: 'b' }, { all: true, user: 'a' },
    { nobody: 'x' }, { Connection: 'x' }, { toString: 'x' },
  ];
  for (const to of bad) {
    const item = to === undefined ? { data: 1 } : { to, data: 1 };
    fails(() => batch({ messages: [item] }), 'bad_body', /^messages\[0\]\.to: expected \{"connection"\|"user"\|"channel": "…"\} or \{"all": true\}/);
  }
  fails(() => batch(jsonBody('{"messages":[{"to":{"__proto__":"x"},"data":1}]}')), 'bad_body', /^messages\[0\]\.to: /);
});

test('property: a well-formed batch item parses to its target and a push carrying what it said', () => {
  const target = fc.oneof(
    fc.record({ kind: fc.constantFrom('connection', 'user', 'channel'), name: fc.string({ minLength: 1, maxLength: 20 }) }),
    fc.constant({ kind: 'all', name: '' }),
  );
  const content = fc.oneof(
    fc.record({ data: fc.jsonValue({ maxDepth: 3 }) }),
    fc.record({ binary: fc.uint8Array({ maxLength: 40 }).map((a) => Buffer.from(a).toString('base64')) }),
  );
  const options = fc.record({
    class: fc.constantFrom('durable', 'lossy'),
    coalesceKey: fc.string({ minLength: 1, maxLength: MAX_COALESCE_KEY }),
    ttlMs: fc.integer({ min: 1, max: 86_400_000 }),
  }, { requiredKeys: [] });
  fc.assert(fc.property(fc.array(fc.tuple(target, content, options), { maxLength: 5 }), (specs) => {
    const messages = specs.map(([t, c, o]) => ({ to: t.kind === 'all' ? { all: true } : { [t.kind]: t.name }, ...c, ...o }));
    // Through JSON, as a request body arrives.
    const items = parseBatch(jsonBody(JSON.stringify({ messages })), NOW, 100, 1_048_576);
    assert.equal(items.length, specs.length);
    items.forEach(({ target: got, push }, i) => {
      const [t, c, o] = specs[i];
      assert.deepEqual(got, t.kind === 'all' ? { kind: 'all' } : t.kind === 'connection' ? { kind: 'connection', id: t.name } : { kind: t.kind, name: t.name });
      if ('binary' in c) {
        assert.equal(push.payload.kind, 'binary');
        assert.equal((push.payload as { data: Buffer }).data.toString('base64'), c.binary);
      } else if (typeof c.data === 'string') {
        assert.deepEqual(push.payload, { kind: 'text', text: c.data });
      } else {
        assert.equal(push.payload.kind, 'json');
        // Compared as it arrived, through JSON (where -0 is 0).
        assert.deepEqual(JSON.parse((push.payload as { json: string }).json), JSON.parse(JSON.stringify(c.data)));
      }
      assert.equal(push.class, o.class ?? 'durable');
      assert.equal(push.coalesceKey, o.coalesceKey ?? null);
      assert.equal(push.expiresAt, o.ttlMs === undefined ? Infinity : NOW + o.ttlMs);
    });
  }), { numRuns: 2000 });
});

test('property: a batch with one field of one item spoiled is refused with bad_body, never another error', () => {
  const spoil = fc.constantFrom<[string, unknown]>(
    ['to', { all: false }], ['to', {}], ['to', 'x'], ['data', undefined], ['binary', '%%'], ['class', 'sometimes'],
    ['coalesceKey', ''], ['ttlMs', 0], ['ttlMs', 'x'], ['extra', 1],
  );
  fc.assert(fc.property(fc.integer({ min: 1, max: 5 }), fc.nat(), spoil, (n, at, [field, value]) => {
    const messages: Array<Record<string, unknown>> = Array.from({ length: n }, (_, i) => ({ to: { connection: `n1-0-${i}` }, data: { i } }));
    const item = messages[at % n];
    if (field === 'data') delete item.data;
    else item[field] = value;
    fails(() => parseBatch(jsonBody(JSON.stringify({ messages })), NOW, 100, 1_048_576), 'bad_body', new RegExp(`^messages\\[${at % n}\\]`));
  }), { numRuns: 1000 });
});
