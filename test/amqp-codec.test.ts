// The pure parts of the RabbitMQ plugin: backoff, routing keys, the cluster wire format,
// batch outcomes. No broker needed.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { brokerUrl, redact } from '../plugins/amqp/connection.js';
import { backoffMs } from '../proxy/backoff.js';
import { toAll, toChannel, toConnection, toUser } from '../proxy/target.js';
import { bindingKey, decodeMessage, encodeClose, encodePush, escapeName, nodeOf, routingKey } from '../plugins/amqp/cluster-wire.js';
import { outcomeOf } from '../plugins/amqp/upstream.js';
import { Push } from '../proxy/push.js';

test('backoff: full jitter under an exponential ceiling, capped', () => {
  const b = { baseMs: 100, capMs: 1000 };
  assert.equal(backoffMs(1, b, () => 0.999), 99);
  assert.equal(backoffMs(4, b, () => 0.999), 799);
  assert.equal(backoffMs(11, b, () => 0.999), 999);
  assert.equal(backoffMs(1001, b, () => 0.5), 500);
  assert.equal(backoffMs(6, b, () => 0), 0);
});

test('broker URL: a heartbeat unless set; passwords redacted for logs', () => {
  assert.equal(brokerUrl('amqp://u:p@h:5672/vh'), 'amqp://u:p@h:5672/vh?heartbeat=15');
  assert.equal(brokerUrl('amqp://h?heartbeat=5'), 'amqp://h?heartbeat=5');
  assert.equal(redact('amqps://user:secret@host/'), 'amqps://user:***@host/');
});

test('routing keys: escaped names cannot act as topic syntax; long names hash; connections go to their node', () => {
  for (const name of ['a.b', '*', '#', 'a b', 'ünï', '']) {
    assert.match(escapeName(name), /^[A-Za-z0-9_-]*$/, name);
  }
  assert.notEqual(escapeName('a.b'), escapeName('a_b'));
  const long = 'x'.repeat(1000);
  assert.match(escapeName(long), /^~[A-Za-z0-9_-]{43}$/);
  assert.ok(routingKey(toChannel(long)).length < 255);
  assert.equal(routingKey(toChannel('news')), bindingKey('channel', 'news'));
  assert.equal(routingKey(toUser('u1')), `user.${Buffer.from('u1').toString('base64url')}`);
  assert.equal(routingKey(toAll), 'all');
  assert.equal(routingKey(toConnection('nb-0-abc')), 'node.nb');
  assert.equal(nodeOf('nb-3-x-y'), 'nb');
  assert.equal(nodeOf('nodash'), null);
});

test('cluster wire format: a push and a close survive the round trip', () => {
  const now = 1_000_000;
  const push = new Push({ kind: 'binary', data: Buffer.from([1, 2]) }, { class: 'lossy', coalesceKey: 'k', expiresAt: now + 5000 });
  const { content, options } = encodePush('na', toUser('u.1'), push, now);
  assert.equal(options.expiration, '5000');
  const decoded = decodeMessage(content, options.type, options.headers, now + 1000);
  assert.ok(decoded.ok && decoded.value.type === 'push');
  const back = decoded.value;
  assert.deepEqual(back.target, toUser('u.1'));
  assert.equal(back.origin, 'na');
  assert.deepEqual([...(back.push.payload as { data: Buffer }).data], [1, 2]);
  assert.equal(back.push.class, 'lossy');
  assert.equal(back.push.coalesceKey, 'k');
  assert.equal(back.push.expiresAt, now + 1000 + 5000, 'TTL travels as time left');

  for (const p of [new Push({ kind: 'text', text: 'hé' }), new Push({ kind: 'json', json: '{"a":1}' })]) {
    const e = encodePush('na', toAll, p, now);
    const r = decodeMessage(e.content, e.options.type, e.options.headers, now);
    assert.ok(r.ok && r.value.type === 'push');
    const d = r.value;
    assert.deepEqual(d.push.payload, p.payload);
    assert.equal(d.push.expiresAt, Infinity);
    assert.equal(e.options.expiration, undefined);
  }

  // A presence event's frame stays one across nodes; an app's message carries no type header.
  const presence = new Push({ kind: 'json', json: '{"event":"member_added","channel":"c","user":"u","id":"1","at":"t"}' }, { type: 'presence' });
  const pe = encodePush('na', toChannel('c'), presence, now);
  assert.equal(pe.options.headers!['x-switchboard-type'], 'presence');
  const pd = decodeMessage(pe.content, pe.options.type, pe.options.headers, now);
  assert.ok(pd.ok && pd.value.type === 'push' && pd.value.push.type === 'presence');
  assert.equal(pd.value.push.reliableFrame(3), '{"type":"presence","seq":3,"event":"member_added","channel":"c","user":"u","id":"1","at":"t"}');
  assert.equal(encodePush('na', toAll, new Push({ kind: 'text', text: 'x' }), now).options.headers!['x-switchboard-type'], undefined);
  for (const [type, kind, body] of [['urgent', 'json', '{}'], ['presence', 'text', '{}'], ['presence', 'json', '[1]']]) {
    const bad = decodeMessage(Buffer.from(body), 'push', { 'x-switchboard-origin': 'nc', 'x-switchboard-to': 'all', 'x-switchboard-kind': kind, 'x-switchboard-type': type }, now);
    assert.equal(bad.ok, false, `${type} ${kind} ${body} is refused, not thrown`);
  }

  const c = encodeClose('nb', toConnection('na-0-x'), 4001, 'bye');
  const closed = decodeMessage(c.content, c.options.type, c.options.headers, now);
  assert.deepEqual(closed, { ok: true, value: { type: 'close', origin: 'nb', target: toConnection('na-0-x'), code: 4001, reason: 'bye' } });

  assert.ok(decodeMessage(Buffer.alloc(0), 'push', {}, now).ok === false);
  assert.ok(decodeMessage(Buffer.alloc(0), 'probe', { 'x-switchboard-origin': 'x', 'x-switchboard-to': 'all' }, now).ok === false);
  // Header values that arrive as Buffers (long strings from some clients) are read as text.
  const buf = decodeMessage(Buffer.from('x'), 'push', {
    'x-switchboard-origin': Buffer.from('nc'), 'x-switchboard-to': 'channel', 'x-switchboard-name': Buffer.from('c'), 'x-switchboard-kind': 'text',
  }, now);
  assert.ok(buf.ok && buf.value.origin === 'nc');
});

test('a batch is accepted only when every message is confirmed', () => {
  assert.deepEqual(outcomeOf(['confirmed', 'confirmed']), { ok: true });
  assert.equal((outcomeOf(['confirmed', 'nacked']) as { error: string }).error, 'broker_nack');
  assert.equal((outcomeOf(['returned']) as { retryable: boolean }).retryable, false);
  assert.equal((outcomeOf(['aborted', 'nacked']) as { error: string }).error, 'shutting_down');
});
