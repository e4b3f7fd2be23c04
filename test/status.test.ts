// `GET /v1/status`, the status page's numbers: read from the metrics text (pure parsing, table
// tests), from one live sidecar under traffic, and from the primary of a node with workers.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { Registry, Counter, Histogram } from 'prom-client';
import { parseMetricsText, shownUrl } from '../proxy/status.js';
import { startApp } from './helpers/app.js';
import { startSidecar } from './helpers/sidecar.js';
import { connect, connectReliable } from './helpers/client.js';
import { startWorkers } from './helpers/process.js';
import { eventually } from './helpers/eventually.js';
import { assertDocumented, documented } from './helpers/openapi.js';

test('the metrics text parses: names, labels with escapes, special values; malformed lines are skipped', () => {
  const samples = parseMetricsText([
    '# HELP x_total A counter',
    '# TYPE x_total counter',
    'x_total{reason="overflow"} 3',
    'x_total{reason="a \\"quoted\\" \\\\ one\\nline",b="2",} 4 1700000000000',
    'gauge 7.5',
    'h_bucket{le="+Inf"} 9',
    'nan_metric NaN',
    'inf_metric -Inf',
    'broken{reason="x} 1',
    'also broken',
    '{nameless="1"} 2',
    '',
  ].join('\n'));
  assert.deepEqual(samples.map((s) => [s.name, s.labels, s.value]), [
    ['x_total', { reason: 'overflow' }, 3],
    ['x_total', { reason: 'a "quoted" \\ one\nline', b: '2' }, 4],
    ['gauge', {}, 7.5],
    ['h_bucket', { le: '+Inf' }, 9],
    ['nan_metric', {}, NaN],
    ['inf_metric', {}, -Infinity],
  ]);
});

test('what prom-client writes, the parser reads back, whatever the label values', async () => {
  await fc.assert(fc.asyncProperty(fc.array(fc.tuple(fc.string({ maxLength: 12 }), fc.integer({ min: 1, max: 1000 })), { maxLength: 6 }), async (incs) => {
    const registry = new Registry();
    const counter = new Counter({ name: 'c_total', help: 'h', labelNames: ['reason'], registers: [registry] });
    const expected = new Map<string, number>();
    for (const [reason, n] of incs) {
      counter.inc({ reason }, n);
      expected.set(reason, (expected.get(reason) ?? 0) + n);
    }
    const read = parseMetricsText(await registry.metrics()).filter((s) => s.name === 'c_total');
    assert.deepEqual(new Map(read.map((s) => [s.labels.reason, s.value])), expected);
  }));
});

test('an app URL is shown without its user and password', () => {
  assert.equal(shownUrl('http://user:secret@app.internal:3000/base'), 'http://app.internal:3000/base');
  assert.equal(shownUrl('http://127.0.0.1:3000'), 'http://127.0.0.1:3000/');
});

test('live: the status follows the traffic and matches the metrics it is read from', async (t) => {
  const app = await startApp((r) => (r.url === '/ws/connect' ? { body: { user: 'u', channels: ['c'] } } : { status: 204 }));
  const sc = await startSidecar(`http://name:password@127.0.0.1:${app.port}`, { session: { outbox: { maxMessages: 50 } } });
  const raw = await connect(sc.wsUrl());
  const { client: reliable } = await connectReliable(sc.wsUrl());
  t.after(async () => {
    raw.ws.terminate();
    reliable.ws.terminate();
    await sc.close();
    await app.close();
  });
  const status = async () => (await documented(sc.controlUrl, 'GET', '/v1/status')).json;
  const before = await status();
  assert.equal(before.appUrl, `http://127.0.0.1:${app.port}/`, 'no password on the page');
  assert.equal(before.node, sc.sb.nodeId);
  assert.equal(before.ready, true);
  assert.equal(before.reason, null);
  assert.equal(before.state, 'ready');
  assert.equal(before.broker, null);
  assert.equal(before.cluster, null);
  assert.equal(before.outbox.maxMessages, 50);
  assert.deepEqual(before.connections.byMode, [{ mode: 'raw', transport: 'websocket', connections: 1 }, { mode: 'reliable', transport: 'websocket', connections: 1 }]);
  assert.equal(before.connections.open, 2);

  for (let i = 0; i < 3; i++) raw.send(`hello ${i}`);
  await app.waitFor((r) => r.url === '/ws/message' && r.text === 'hello 2', 'the third message webhook');
  assert.equal((await sc.control('POST', '/v1/broadcast', { n: 1 })).status, 202);
  await raw.next();
  await eventually(async () => (await status()).webhooks.attempts >= before.webhooks.attempts + 3, 'the webhooks counted');
  const after = await status();
  assert.equal(after.messages.in - before.messages.in, 3);
  assert.ok(after.messages.out - before.messages.out >= 2, 'the broadcast went out to both');
  assert.equal(typeof after.webhooks.p50Ms, 'number');
  assert.ok(after.webhooks.p99Ms >= after.webhooks.p50Ms);
  assert.ok(Date.parse(after.at) >= Date.parse(before.at));
  // The same numbers as /metrics.
  const metrics = (await sc.control('GET', '/metrics')).text;
  const counted = (name: string) => parseMetricsText(metrics).filter((s) => s.name === name).reduce((sum, s) => sum + s.value, 0);
  assert.equal(after.webhooks.failures, counted('switchboard_webhook_failures_total'));
  assert.equal(counted('switchboard_open_connections'), counted('switchboard_connections'));
});

test('an outbox that fills and drops shows in the status: waits, depth and drops by reason', async (t) => {
  const app = await startApp((r) => (r.url === '/ws/connect' ? { body: { user: 'slow' } } : { status: 204 }));
  const sc = await startSidecar(app.url, { session: { outbox: { maxMessages: 4, onOverflow: 'drop-oldest' } } });
  const { client } = await connectReliable(sc.wsUrl());
  t.after(async () => { client.ws.terminate(); await sc.close(); await app.close(); });
  // Detached, the session holds what comes in its outbox: the fifth push drops the oldest.
  const [session] = [...sc.sb.registry.all()];
  session.terminate();
  await eventually(() => session.state === 'detached', 'the session detached');
  for (let i = 0; i < 6; i++) assert.equal((await sc.control('POST', '/v1/users/slow/messages', { i })).status, 202);
  const s = (await documented(sc.controlUrl, 'GET', '/v1/status')).json;
  assert.ok(s.dropped.total >= 2, JSON.stringify(s.dropped));
  assert.equal(s.dropped.total, Object.values(s.dropped.byReason as Record<string, number>).reduce((a, b) => a + b, 0));
  assert.ok(s.outbox.waits >= 1, JSON.stringify(s.outbox));
  assert.ok(s.outbox.p99 !== null && s.outbox.p99 <= 4 + 1, JSON.stringify(s.outbox));
  assert.equal(s.connections.open, 0);
  assert.equal(s.connections.sessions, 1);
});

test('workers: the primary answers the status for every worker, and serves the page', async (t) => {
  const app = await startApp((r) => (r.url === '/ws/connect' ? { body: { user: 'w' } } : { status: 204 }));
  t.after(() => app.close());
  const { pub, ctl } = await startWorkers(t, app.url, 'wk');
  const clients = await Promise.all([0, 1, 2, 3].map((i) => (i % 2 ? connectReliable(`ws://127.0.0.1:${pub}/ws`).then((c) => c.client) : connect(`ws://127.0.0.1:${pub}/ws`))));
  t.after(() => { for (const c of clients) c.ws.terminate(); });
  const base = `http://127.0.0.1:${ctl}`;
  let s: any;
  await eventually(async () => {
    s = (await documented(base, 'GET', '/v1/status')).json;
    return s.connections.open === 4;
  }, () => `four connections on the status: ${JSON.stringify(s?.connections)}`);
  assert.equal(s.node, 'wk');
  assert.equal(s.processes, 2);
  assert.deepEqual(s.connections.byMode, [{ mode: 'raw', transport: 'websocket', connections: 2 }, { mode: 'reliable', transport: 'websocket', connections: 2 }]);
  clients[0].send('one');
  await eventually(async () => (await documented(base, 'GET', '/v1/status')).json.messages.in >= s.messages.in + 1, 'a message counted by the primary');
  const page = await fetch(`${base}/`);
  assert.equal(page.status, 200);
  assertDocumented('GET', '/', { status: page.status, contentType: page.headers.get('content-type'), text: '' });
  assert.match(await page.text(), /<script>/);
});
