// Disconnect webhooks are sent at least once: kept trying, with backoff, while the app is down,
// for webhooks.retry.atLeastOnceMs; counted while they wait; given up with a log line naming the connection.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import pino from 'pino';
import { startApp } from './helpers/app.js';
import { startSidecar } from './helpers/sidecar.js';
import { connect } from './helpers/client.js';
import { FakeClock } from './helpers/fake-clock.js';
import { eventually } from './helpers/eventually.js';
import { sendAtLeastOnce } from '../plugins/webhook/at-least-once.js';
import type { WebhookResult } from '../plugins/webhook/sender.js';

test('a disconnect outlives retry.maxAttempts while the app is down, counted as waiting, and arrives once the app is back', async (t) => {
  let gaugeWhileDown: string | null = null;
  let sc!: Awaited<ReturnType<typeof startSidecar>>;
  const app = await startApp(async (r) => {
    if (r.url !== '/ws/disconnect') return { status: 200 };
    const n = app.byPath('/ws/disconnect').length;
    // The third attempt is in the second round: the first one's failure is being waited out.
    if (n === 3) gaugeWhileDown = /switchboard_webhooks_waiting\{event="disconnect"\} (\d+)/.exec((await sc.control('GET', '/metrics')).text)?.[1] ?? null;
    return { status: n < 6 ? 503 : 204 };
  });
  sc = await startSidecar(app.url, { webhooks: { retry: { maxAttempts: 2, baseMs: 5, capMs: 40, atLeastOnceMs: 60_000 } } });
  t.after(async () => { await sc.close(); await app.close(); });
  const client = await connect(sc.wsUrl());
  await client.close(1000);
  const sixth = await app.waitFor((r) => r.url === '/ws/disconnect' && app.byPath('/ws/disconnect').length >= 6, 'the sixth disconnect attempt');
  assert.equal(sixth.json().code, 1000);
  assert.equal(gaugeWhileDown, '1', 'counted while it waits');
  const ids = new Set(app.byPath('/ws/disconnect').map((r) => r.headers['x-switchboard-connection']));
  assert.equal(ids.size, 1, 'one session, retried');
  // Once taken, nothing waits.
  await eventually(async () => /switchboard_webhooks_waiting\{event="disconnect"\} 0/.test((await sc.control('GET', '/metrics')).text), 'no disconnect counted as waiting once it was taken');
});

test('websocket-over-http: CLOSE and DISCONNECT are sent at least once too, while the app answers 503', async (t) => {
  const failures = new Map<string, number>();
  const app = await startApp((r) => {
    const events = { status: 200, headers: { 'content-type': 'application/websocket-events' } };
    if (r.text.startsWith('OPEN')) return { ...events, body: 'OPEN\r\n' };
    const kind = /^(CLOSE|DISCONNECT)/.exec(r.text)?.[1];
    if (!kind) return { ...events, body: '' };
    const n = (failures.get(kind) ?? 0) + 1;
    failures.set(kind, n);
    return n <= 3 ? { status: 503 } : { ...events, body: '' };
  });
  const sc = await startSidecar(app.url, {
    webhooks: { dialect: 'websocket-over-http', secret: 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', retry: { maxAttempts: 1, baseMs: 5, capMs: 20, atLeastOnceMs: 60_000 } },
  });
  t.after(async () => { await sc.close(); await app.close(); });
  const closing = await connect(sc.wsUrl());
  await closing.close(1000);
  const lost = await connect(sc.wsUrl());
  lost.ws.terminate();
  for (const kind of ['CLOSE', 'DISCONNECT']) {
    // The fourth request of its kind is the one the app takes.
    await app.waitFor((r) => r.text.startsWith(kind) && app.requests.filter((q) => q.text.startsWith(kind)).length >= 4, `the fourth ${kind}`);
  }
  const closes = app.requests.filter((r) => r.text.startsWith('CLOSE'));
  assert.equal(new Set(closes.map((r) => r.headers['connection-id'])).size, 1, 'one connection, retried');
  assert.equal(closes.length, 4);
  assert.equal(new Set(closes.map((r) => r.headers['webhook-id'])).size, 1, 'one webhook-id across the rounds, so the app can tell a repeat');
});

test('an at-least-once event is given up after its time, with a log line naming the connection', async () => {
  const clock = new FakeClock(0);
  const lines: string[] = [];
  const log = pino({ level: 'error' }, new Writable({ write(chunk, _e, done) { lines.push(String(chunk)); done(); } }));
  let sends = 0;
  let waiting = 0;
  const failing = async (): Promise<WebhookResult> => {
    sends++;
    return { answered: true, status: 503, headers: {}, body: Buffer.alloc(0) };
  };
  const done = sendAtLeastOnce('disconnect', 'n1-0-abc', failing, {
    forMs: 10_000, backoff: { baseMs: 100, capMs: 1000 }, clock, log,
    waiting: { inc: () => waiting++, dec: () => waiting-- }, stopped: () => false,
  });
  let result: boolean | undefined;
  void done.then((r) => { result = r; });
  for (let i = 0; i < 200 && result === undefined; i++) {
    await new Promise((r) => setImmediate(r));
    clock.advance(500);
  }
  assert.equal(result, false);
  assert.ok(sends > 3, `tried in rounds (${sends})`);
  assert.equal(waiting, 0, 'no longer counted as waiting');
  assert.equal(lines.length, 1);
  const line = JSON.parse(lines[0]);
  assert.equal(line.connection, 'n1-0-abc');
  assert.match(line.msg, /disconnect webhook given up/);

  // A 4xx other than 408/429 is the app's answer: taken, not retried.
  let once = 0;
  const refused = await sendAtLeastOnce('disconnect', 'n1-0-def', async () => { once++; return { answered: true, status: 410, headers: {}, body: Buffer.alloc(0) }; }, {
    forMs: 10_000, backoff: { baseMs: 100, capMs: 1000 }, clock, log, waiting: { inc() {}, dec() {} }, stopped: () => false,
  });
  assert.equal(refused, true);
  assert.equal(once, 1);
});

test('an at-least-once event whose signal aborts (another process sends it) makes no further attempt, and is no error', async () => {
  const clock = new FakeClock(0);
  const lines: string[] = [];
  const log = pino({ level: 'error' }, new Writable({ write(chunk, _e, done) { lines.push(String(chunk)); done(); } }));
  let sends = 0;
  let waiting = 0;
  const stop = new AbortController();
  const done = sendAtLeastOnce('presence', 'presence_x', async () => {
    sends++;
    return { answered: true, status: 503, headers: {}, body: Buffer.alloc(0) };
  }, { forMs: 600_000, backoff: { baseMs: 10_000, capMs: 10_000 }, clock, log, waiting: { inc: () => waiting++, dec: () => waiting-- }, stopped: () => false, signal: stop.signal });
  for (let i = 0; i < 5 && sends === 0; i++) await new Promise((r) => setImmediate(r));
  assert.equal(sends, 1);
  // Waiting out its backoff when the signal comes: it wakes, and sends nothing more.
  stop.abort();
  assert.equal(await done, false);
  assert.equal(sends, 1, 'no attempt after the abort');
  assert.equal(waiting, 0);
  assert.deepEqual(lines, [], 'not logged as given up');
});
