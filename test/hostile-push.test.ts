// Hostile push bodies: anything the app (or whoever reaches the control port) posts gets
// a clear 4xx, and every parser of outside input answers a value or a typed error.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { startApp } from './helpers/app.js';
import { startSidecar } from './helpers/sidecar.js';
import { connectReliable } from './helpers/client.js';
import { SwitchboardError } from '../proxy/errors.js';
import { jsonBody, parseBatch, pushFromHttp } from '../proxy/push-request.js';
import { parseConnectionId } from '../proxy/target.js';
import { TokenCodec } from '../proxy/token.js';
import { parsePublishBody } from '../plugins/websocket-over-http/publish.js';
import { WohDecodeError, decodeEvents } from '../plugins/websocket-over-http/codec.js';

const nested = (depth: number) => `${'['.repeat(depth)}${']'.repeat(depth)}`;

test('push bodies nested too deep are 400 too_deep on every send route, and the sidecar keeps serving', async (t) => {
  const app = await startApp();
  const sc = await startSidecar(app.url);
  const { client, welcome } = await connectReliable(sc.wsUrl());
  t.after(async () => { await client.close(); await sc.close(); await app.close(); });
  const deep = nested(5000);
  const raw = async (path: string, body: string) => {
    const res = await fetch(`${sc.controlUrl}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
    return { status: res.status, json: await res.json() as { error: string; message: string } };
  };
  for (const path of [`/v1/connections/${welcome.session}/messages`, '/v1/broadcast', '/v1/channels/c/messages', '/v1/users/u/messages']) {
    const r = await raw(path, deep);
    assert.equal(r.status, 400, path);
    assert.equal(r.json.error, 'too_deep', path);
  }
  const batch = await raw('/v1/batch', `{"messages":[{"to":{"all":true},"data":${deep}}]}`);
  assert.equal(batch.status, 400);
  assert.equal(batch.json.error, 'too_deep');

  const publish = await fetch(`${sc.controlUrl}/publish/`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: `{"items":${deep}}` });
  assert.equal(publish.status, 400);
  assert.match(await publish.text(), /deeper than/);

  // A push within the bound still arrives, after all of that.
  const ok = await raw(`/v1/connections/${welcome.session}/messages`, nested(20));
  assert.equal(ok.status, 202);
  const frame = await client.until('message');
  assert.deepEqual(frame.data, JSON.parse(nested(20)));
});

test('property: batch bodies parse to items or a SwitchboardError, never anything else', () => {
  const item = fc.record({
    to: fc.oneof(fc.record({ connection: fc.string() }), fc.record({ user: fc.string() }), fc.record({ all: fc.oneof(fc.boolean(), fc.integer()) }), fc.jsonValue()),
    data: fc.jsonValue(),
    binary: fc.oneof(fc.base64String(), fc.string(), fc.integer()),
    class: fc.oneof(fc.constantFrom('durable', 'lossy', 'other'), fc.jsonValue()),
    coalesceKey: fc.oneof(fc.string({ maxLength: 300 }), fc.jsonValue()),
    ttlMs: fc.oneof(fc.integer(), fc.double(), fc.string(), fc.constant(null)),
    extra: fc.jsonValue(),
  }, { requiredKeys: [] });
  const body = fc.oneof(fc.record({ messages: fc.array(item, { maxLength: 5 }) }), fc.jsonValue(), fc.record({ messages: fc.jsonValue() }));
  fc.assert(fc.property(body, (b) => {
    try {
      const items = parseBatch(jsonBody(JSON.stringify(b) ?? 'null'), Date.now(), 1000, 1_048_576);
      assert.ok(Array.isArray(items));
    } catch (err) {
      assert.ok(err instanceof SwitchboardError, String(err));
      assert.ok(err.status >= 400 && err.status < 500);
    }
  }), { numRuns: 3000 });
  fc.assert(fc.property(fc.string({ unit: 'binary' }), (text) => {
    try {
      jsonBody(text);
    } catch (err) {
      assert.ok(err instanceof SwitchboardError && (err.code === 'bad_json' || err.code === 'too_deep'));
    }
  }), { numRuns: 2000 });
});

test('property: push headers give a push or a 400 bad_header', () => {
  const header = fc.option(fc.string({ unit: 'binary', maxLength: 300 }), { nil: undefined });
  fc.assert(fc.property(header, header, header, (cls, key, ttl) => {
    try {
      pushFromHttp({ kind: 'text', text: 'x' }, { class: cls, coalesceKey: key, ttlMs: ttl }, 0);
    } catch (err) {
      assert.ok(err instanceof SwitchboardError && err.code === 'bad_header', String(err));
    }
  }), { numRuns: 3000 });
});

test('property: connection ids and resume tokens from outside parse to a value or null', () => {
  const tokens = new TokenCodec('a-secret-of-sixteen+', 60_000);
  const good = tokens.issue('n1-0-abc', 1000);
  assert.equal(tokens.verify(good, 2000), 'n1-0-abc');
  fc.assert(fc.property(fc.string({ unit: 'binary', maxLength: 600 }), (s) => {
    const id = parseConnectionId(s);
    assert.ok(id === null || (typeof id.node === 'string' && Number.isInteger(id.worker)));
    const v = tokens.verify(s, 2000);
    assert.ok(v === null || typeof v === 'string');
  }), { numRuns: 5000 });
  // Any change to a valid token makes it invalid.
  fc.assert(fc.property(fc.integer({ min: 0, max: good.length - 1 }), fc.string({ minLength: 1, maxLength: 1 }), (i, c) => {
    const forged = good.slice(0, i) + c + good.slice(i + 1);
    if (forged !== good) assert.notEqual(tokens.verify(forged, 2000), 'n1-0-abc', forged);
  }), { numRuns: 2000 });
});

test('property: GRIP publish bodies and websocket-over-http event streams parse or fail with their own error', () => {
  fc.assert(fc.property(fc.oneof(fc.string({ unit: 'binary' }), fc.json({ depthSize: 'large' })), (text) => {
    const r = parsePublishBody(text);
    assert.ok(r.ok || (r.status === 400 && typeof r.body === 'string'));
  }), { numRuns: 3000 });
  const events = fc.array(fc.oneof(
    fc.constantFrom('TEXT', 'BINARY', 'OPEN', 'CLOSE', 'PING', 'BOGUS', 'TEXT ff', 'TEXT 3'),
    fc.string({ unit: 'binary', maxLength: 40 }),
    fc.constantFrom('\r\n', ' ', '0', 'zz', '\n'),
  ), { maxLength: 12 }).map((parts) => Buffer.from(parts.join(''), 'latin1'));
  fc.assert(fc.property(fc.oneof(events, fc.uint8Array({ maxLength: 200 }).map((a) => Buffer.from(a))), (body) => {
    try {
      assert.ok(Array.isArray(decodeEvents(body)));
    } catch (err) {
      assert.ok(err instanceof WohDecodeError, String(err));
    }
  }), { numRuns: 5000 });
});
