// Hostile client frames: nothing a client sends takes the process down, and a client that
// does not read cannot make the sidecar hold more than its bound for it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { startApp } from './helpers/app.js';
import { startSidecar } from './helpers/sidecar.js';
import { connectReliable, TestClient } from './helpers/client.js';
import { guard } from './helpers/app.js';
import { parseClientFrame } from '../proxy/frame.js';
import { MAX_CLIENT_ID, MAX_JSON_DEPTH, MAX_MESSAGE_FRAGMENTS } from '../proxy/limits.js';
import { JsonError, jsonDepth, parseJson, tooDeep } from '../proxy/json.js';
import { FrameError } from '../proxy/errors.js';

const nested = (depth: number) => `${'['.repeat(depth)}${']'.repeat(depth)}`;

test('a reliable frame nested thousands deep gets an error frame; the connection and every other client live on', async (t) => {
  const app = await startApp();
  const sc = await startSidecar(app.url);
  const { client: hostile } = await connectReliable(sc.wsUrl());
  const { client: bystander } = await connectReliable(sc.wsUrl());
  t.after(async () => { await hostile.close(); await bystander.close(); await sc.close(); await app.close(); });

  hostile.send(`{"type":"message","id":"m1","data":${nested(5000)}}`);
  const error = await hostile.until('error');
  assert.equal(error.error, 'too_deep');
  assert.equal(typeof error.message, 'string');

  // Brackets inside a string are text, not nesting.
  hostile.send({ type: 'message', id: 'm2', data: nested(5000) });
  assert.deepEqual(await hostile.until('ack'), { type: 'ack', id: 'm2' });
  const seen = await app.waitFor((r) => r.url === '/ws/message');
  assert.equal(seen.json(), nested(5000));
  assert.equal(app.byPath('/ws/message').length, 1, 'the deep frame never reached the app');

  hostile.send({ type: 'ping' });
  assert.deepEqual(await hostile.until('pong'), { type: 'pong' });
  bystander.send({ type: 'ping' });
  assert.deepEqual(await bystander.until('pong'), { type: 'pong' });
});

test('a client that sends pings and never reads is closed 4008 before its answers pass the outbox bound', async (t) => {
  const app = await startApp();
  const sc = await startSidecar(app.url, {
    session: { outbox: { maxBytes: 65_536, highWaterBytes: 16_384 } },
    heartbeat: { timeoutMs: 300 },
    limits: { maxFrameErrors: 1_000_000 },
  });
  const { client } = await connectReliable(sc.wsUrl());
  t.after(async () => { client.ws.terminate(); await sc.close(); await app.close(); });

  const socket = (client.ws as unknown as { _socket: import('node:net').Socket })._socket;
  socket.pause();
  const disconnect = app.waitFor((r) => r.url === '/ws/disconnect', 'the disconnect webhook');
  let ended = false;
  void disconnect.then(() => { ended = true; }, () => {});
  // Bounded: at most 400,000 pings (the kernel's buffers fill long before).
  for (let i = 0; i < 400 && !ended && client.ws.readyState === client.ws.OPEN; i++) {
    for (let j = 0; j < 1000; j++) client.ws.send('{"type":"ping"}');
    await new Promise<void>((resolve) => socket.write('', () => resolve()));
  }
  const seen = await disconnect;
  assert.equal(seen.json().code, 4008, 'closed as a slow consumer');
  const metrics = await sc.control('GET', '/metrics');
  assert.match(metrics.text, /switchboard_disconnections_total\{code="4008"\} 1/);
});

test('a frame ws refuses ends the session with the close code ws sent: too many fragments is 1008, bad UTF-8 is 1007', async (t) => {
  const app = await startApp();
  const sc = await startSidecar(app.url);
  t.after(async () => { await sc.close(); await app.close(); });
  const fragmented = new TestClient(sc.wsUrl());
  await guard(fragmented.opened, 'open');
  for (let i = 0; i <= MAX_MESSAGE_FRAGMENTS && fragmented.ws.readyState === fragmented.ws.OPEN; i++) fragmented.ws.send('a', { fin: false });
  assert.equal((await guard(fragmented.closed, 'the close')).code, 1008);
  const badUtf8 = new TestClient(sc.wsUrl());
  await guard(badUtf8.opened, 'open');
  // A text frame whose bytes are not UTF-8, written by hand (masked, as a client must).
  const socket = (badUtf8.ws as unknown as { _socket: import('node:net').Socket })._socket;
  socket.write(Buffer.from([0x81, 0x82, 0, 0, 0, 0, 0xc3, 0x28]));
  assert.equal((await guard(badUtf8.closed, 'the close')).code, 1007);
  const disconnects = await app.waitFor(() => app.byPath('/ws/disconnect').length >= 2, 'both disconnects').then(() => app.byPath('/ws/disconnect').map((r) => r.json().code as number));
  assert.deepEqual(disconnects.sort(), [1007, 1008]);
  const metrics = (await sc.control('GET', '/metrics')).text;
  assert.match(metrics, /switchboard_disconnections_total\{code="1008"\} 1/);
  assert.match(metrics, /switchboard_disconnections_total\{code="1007"\} 1/);
});

test('property: the frame codec answers every text with a frame or a typed fault, never an exception', () => {
  const codes = new Set(Object.keys(FrameError));
  const check = (text: string) => {
    const f = parseClientFrame(text);
    if (f.type === 'fault') assert.ok(codes.has(f.error), f.error);
    else assert.ok(['message', 'ack', 'ping', 'subscribe', 'unsubscribe'].includes(f.type));
  };
  fc.assert(fc.property(fc.string({ unit: 'binary' }), check), { numRuns: 2000 });
  fc.assert(fc.property(fc.json({ depthSize: 'large' }), check), { numRuns: 2000 });
  const frameish = fc.record({
    type: fc.constantFrom('message', 'ack', 'ping', 'subscribe', 'unsubscribe', 'nope'),
    data: fc.jsonValue(),
    id: fc.oneof(fc.string({ maxLength: MAX_CLIENT_ID + 2 }), fc.integer(), fc.constant(undefined)),
    seq: fc.oneof(fc.integer(), fc.double(), fc.string()),
    channel: fc.oneof(fc.string({ maxLength: 300 }), fc.constant(null)),
  }, { requiredKeys: ['type'] });
  fc.assert(fc.property(frameish, (v) => check(JSON.stringify(v))), { numRuns: 3000 });
  fc.assert(fc.property(fc.integer({ min: MAX_JSON_DEPTH + 1, max: 20_000 }), (depth) => {
    const f = parseClientFrame(`{"type":"message","data":${nested(depth)}}`);
    assert.equal(f.type === 'fault' && f.error, 'too_deep');
  }), { numRuns: 50 });
});

test('property: parseJson agrees with JSON.parse within the depth bound and refuses beyond it, never throwing', () => {
  const depthOf = (v: unknown): number => (v !== null && typeof v === 'object' ? 1 + Math.max(0, ...Object.values(v).map(depthOf)) : 0);
  fc.assert(fc.property(fc.jsonValue({ maxDepth: 12 }), (v) => {
    const text = JSON.stringify(v);
    assert.equal(jsonDepth(text), depthOf(v));
    const parsed = parseJson(text, 12);
    assert.ok(parsed.ok);
    assert.deepEqual(parsed.value, JSON.parse(text));
    assert.equal(parsed.ok && depthOf(parsed.value) > 4 ? parseJson(text, 4).ok : false, false);
  }), { numRuns: 2000 });
  fc.assert(fc.property(fc.string({ unit: 'binary' }), (text) => {
    const parsed = parseJson(text);
    if (!parsed.ok) assert.ok(parsed.error instanceof JsonError && ['bad_json', 'too_deep'].includes(parsed.error.code));
  }), { numRuns: 3000 });
  assert.deepEqual(tooDeep(JSON.parse(nested(3)), 2), ['0', '0']);
  assert.equal(tooDeep(JSON.parse(nested(2)), 2), null);
});

test('guard: the test helpers bound every wait', async () => {
  await assert.rejects(guard(new Promise(() => {}), 'never', 20), /gave up waiting: never/);
});
