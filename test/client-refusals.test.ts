// The Node client against a real sidecar whose connect webhook refuses: each refusal is a
// `refused` event with its status and Retry-After; 401 and 403 stop the client for good; 429 and
// 503 are retried, a Retry-After as the next wait; handshake headers reach the app; and what a
// WebSocket that hides the status (a browser's, Node's global one) does instead.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { WebSocket } from 'ws';
import { StatusHidden } from './helpers/status-hidden.js';
import { SwitchboardClient, type ClientEvents, type ClientOptions, type Refusal, type WebSocketLike } from '../client/index.js';
import { startApp, guard, type Answer, type TestApp } from './helpers/app.js';
import { startSidecar, type Sidecar } from './helpers/sidecar.js';

/**
 * Timers as the client asks for them, but none longer than 20 ms: the tests assert the waits the
 * client chose (its `waiting` state) and the order of attempts, never elapsed time.
 */
const quick = {
  setTimeout: (fn: () => void, ms: number) => setTimeout(fn, Math.min(ms, 20)),
  clearTimeout: (handle: unknown) => clearTimeout(handle as NodeJS.Timeout),
};

let app: TestApp;
let sc: Sidecar;
/** The connect webhook's answers, one per attempt, in order; past the last, it accepts. */
let answers: Answer[] = [];

test.before(async () => {
  app = await startApp((req) => {
    if (req.url !== '/ws/connect') return { status: 204 };
    return answers.shift() ?? { status: 200, body: { user: 'u1' } };
  });
  sc = await startSidecar(app.url);
});
test.after(async () => {
  await sc.close();
  await app.close();
});

const connects = () => app.byPath('/ws/connect').length;

/** Every event the client emits, in order, with its state at that moment. */
function record(client: SwitchboardClient) {
  const events: Array<{ name: keyof ClientEvents; args: unknown[]; state: SwitchboardClient['state'] }> = [];
  for (const name of ['open', 'close', 'refused', 'error', 'reset'] as const) {
    client.on(name, (...args: unknown[]) => events.push({ name, args, state: client.state }));
  }
  return events;
}

function until(client: SwitchboardClient, event: 'open' | 'close', match: (arg: any) => boolean = () => true): Promise<void> {
  return guard(new Promise((resolve) => {
    const off = client.on(event, ((arg: unknown) => { if (match(arg)) { off(); resolve(); } }) as never);
  }), `the client's ${event}`);
}

/** WebSocket alone: the fallback to SSE (and a browser's 401 seen there) is test/client-fallback.test.ts's. */
function connect(options: ClientOptions = {}): SwitchboardClient {
  return new SwitchboardClient(sc.wsUrl(), { WebSocket, transports: ['websocket'], random: () => 0.5, backoff: { baseMs: 100, capMs: 1000 }, ...quick, ...options });
}

for (const status of [401, 403]) {
  test(`${status}: one refused event (final), one close, then closed for good: no second attempt`, async (t) => {
    answers = [{ status, body: 'no' }];
    const before = connects();
    const client = connect({ backoff: { baseMs: 1, capMs: 2 } });
    t.after(() => client.close());
    const events = record(client);
    const pending = client.send({ text: 'queued while connecting' });
    await until(client, 'close');
    await assert.rejects(pending, { code: 'closed' }, 'what waited for a connection is rejected');

    assert.deepEqual(events.map((e) => [e.name, ...e.args]), [
      ['refused', { status, retryAfterMs: null, final: true }],
      ['close', { code: 1006, reason: `handshake refused: HTTP ${status}`, willReconnect: false }],
    ]);
    assert.deepEqual(client.state, { status: 'closed', code: 1006, reason: `handshake refused: HTTP ${status}` });
    // A backoff of at most 2 ms would have tried again many times by now.
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(connects() - before, 1, 'the app was asked once');
    assert.equal(events.length, 2);
  });
}

test('429 with Retry-After, 503, 503 with Retry-After: refused each time, the waits follow Retry-After, then open', async (t) => {
  answers = [
    { status: 429, headers: { 'retry-after': '3' } },
    { status: 503 }, // the sidecar answers 503 for any 5xx
    { status: 500, headers: { 'retry-after': '1' } },
  ];
  const before = connects();
  const client = connect();
  t.after(() => client.close());
  const events = record(client);
  await until(client, 'open');

  assert.deepEqual(events.map((e) => e.name), ['refused', 'close', 'refused', 'close', 'refused', 'close', 'open']);
  const refusals = events.filter((e) => e.name === 'refused').map((e) => e.args[0] as Refusal);
  assert.deepEqual(refusals, [
    { status: 429, retryAfterMs: 3000, final: false },
    { status: 503, retryAfterMs: null, final: false },
    { status: 503, retryAfterMs: 1000, final: false },
  ]);
  // The wait chosen after each refusal (random() = 0.5, baseMs 100): Retry-After plus half of baseMs
  // as jitter; without one, the backoff of that attempt (half of min(capMs, 100·2ⁿ)).
  const waits = events.filter((e) => e.name === 'close').map((e) => e.state);
  assert.deepEqual(waits, [
    { status: 'waiting', attempt: 1, delayMs: 3000 + 50 },
    { status: 'waiting', attempt: 2, delayMs: 100 },
    { status: 'waiting', attempt: 3, delayMs: 1000 + 50 },
  ]);
  for (const e of events.filter((e) => e.name === 'close')) assert.equal((e.args[0] as { willReconnect: boolean }).willReconnect, true);
  assert.equal(connects() - before, 4, 'three refused attempts, then the one accepted');
  await client.send({ text: 'after the refusals' });
});

test('retried refusals count as failed attempts: backoff.maxAttempts bounds them', async (t) => {
  answers = [{ status: 503 }, { status: 503 }, { status: 429, headers: { 'retry-after': '0' } }, { status: 503 }];
  const before = connects();
  const client = connect({ backoff: { baseMs: 1, capMs: 2, maxAttempts: 2 } });
  t.after(() => client.close());
  const events = record(client);
  await until(client, 'close', (c) => !c.willReconnect);
  assert.deepEqual(events.filter((e) => e.name === 'refused').map((e) => (e.args[0] as Refusal).status), [503, 503, 429]);
  assert.equal(client.state.status, 'closed');
  assert.equal(connects() - before, 3, 'the first attempt and two retries');
  answers = [];
});

test('options.headers go with every handshake (as `ws` takes them) and reach the connect webhook', async (t) => {
  const before = connects();
  const client = connect({ headers: { authorization: 'Bearer t0k3n', cookie: 'sid=abc' } });
  t.after(() => client.close());
  await until(client, 'open');
  const connect1 = app.byPath('/ws/connect')[before];
  assert.equal(connect1.headers.authorization, 'Bearer t0k3n');
  assert.equal(connect1.headers.cookie, 'sid=abc');
});

test('headers with a WebSocket that cannot set them (none given, or the platform\'s) throw at construction', (t) => {
  class Platform {}
  const saved = Object.getOwnPropertyDescriptor(globalThis, 'WebSocket');
  Object.defineProperty(globalThis, 'WebSocket', { value: Platform, configurable: true, writable: true });
  t.after(() => {
    if (saved) Object.defineProperty(globalThis, 'WebSocket', saved);
    else delete (globalThis as { WebSocket?: unknown }).WebSocket;
  });
  const headers = { authorization: 'Bearer x' };
  assert.throws(() => new SwitchboardClient('ws://127.0.0.1:1/ws', { headers }), { name: 'TypeError', message: /options\.headers needs options\.WebSocket from the `ws` package/ });
  assert.throws(() => new SwitchboardClient('ws://127.0.0.1:1/ws', { headers, WebSocket: Platform as never }), { name: 'TypeError' });
});


test('a WebSocket that hides the status (a browser\'s): a 401 is a failed attempt like any 1006, retried with backoff', async (t) => {
  answers = [{ status: 401 }, { status: 401 }];
  const before = connects();
  const client = connect({ WebSocket: StatusHidden, backoff: { baseMs: 1, capMs: 2 } });
  t.after(() => client.close());
  const events = record(client);
  await until(client, 'open');
  assert.deepEqual(events.map((e) => [e.name, e.args[0]]).slice(0, 2), [
    ['close', { code: 1006, reason: '', willReconnect: true }],
    ['close', { code: 1006, reason: '', willReconnect: true }],
  ]);
  assert.equal(events.filter((e) => e.name === 'refused').length, 0, 'no status, so no refused event');
  assert.equal(connects() - before, 3);
});
