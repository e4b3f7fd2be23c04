import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startApp, type TestApp } from './helpers/app.js';
import { startSidecar, type Sidecar } from './helpers/sidecar.js';
import { connect, connectReliable, type TestClient } from './helpers/client.js';
import { eventually } from './helpers/eventually.js';

async function setup(t: import('node:test').TestContext, overrides: Record<string, unknown> = {}, handler?: Parameters<typeof startApp>[0]) {
  const app = await startApp(handler);
  const sc = await startSidecar(app.url, overrides);
  t.after(async () => { await sc.close(); await app.close(); });
  return { app, sc };
}

const push = (sc: Sidecar, connection: string, data: unknown, headers: Record<string, string> = {}) =>
  sc.control('POST', `/v1/connections/${connection}/messages`, data, headers);

/** Reads `n` message frames, answering nothing; returns them with any gap frames seen. */
async function read(c: TestClient, n: number): Promise<{ messages: any[]; gaps: any[] }> {
  const messages: any[] = [];
  const gaps: any[] = [];
  while (messages.length < n) {
    const f = await c.nextJson(`message ${messages.length + 1} of ${n}`);
    if (f.type === 'message') messages.push(f);
    else if (f.type === 'gap') gaps.push(f);
  }
  return { messages, gaps };
}

function resumeUrl(sc: Sidecar, token: string, lastSeq: number): string {
  return sc.wsUrl(`/ws?resume=${encodeURIComponent(token)}&lastSeq=${lastSeq}`);
}

test('welcome comes first; seq starts at 1 with no holes; acks trim the outbox', async (t) => {
  const { sc } = await setup(t);
  const { client, welcome } = await connectReliable(sc.wsUrl());
  assert.equal(welcome.type, 'welcome');
  assert.equal(welcome.resumed, false);
  assert.equal(typeof welcome.token, 'string');
  assert.equal(welcome.heartbeatMs, 25000);
  assert.equal(welcome.graceMs, 120000);
  for (let i = 0; i < 5; i++) await push(sc, welcome.session, { i });
  await push(sc, welcome.session, 'text');
  const { messages } = await read(client, 6);
  assert.deepEqual(messages.map((m) => m.seq), [1, 2, 3, 4, 5, 6]);
  assert.deepEqual(messages[0].data, { i: 0 });
  assert.equal(messages[5].data, 'text');
  await sc.control('POST', `/v1/connections/${welcome.session}/messages`, Buffer.from([0, 255]), { 'content-type': 'application/octet-stream' });
  const bin = await client.nextJson();
  assert.equal(bin.binary, Buffer.from([0, 255]).toString('base64'));
  assert.equal(bin.data, undefined);

  assert.equal((await sc.control('GET', `/v1/connections/${welcome.session}`)).json.outbox.messages, 7);
  client.send({ type: 'ack', seq: 4 });
  client.send({ type: 'ping' });
  assert.deepEqual(await client.until('pong'), { type: 'pong' });
  assert.equal((await sc.control('GET', `/v1/connections/${welcome.session}`)).json.outbox.messages, 3);
  await client.close();
});

for (const how of ['terminate', 'tcp reset'] as const) {
  test(`a dropped socket (${how}) resumes with exactly the missed messages, in order, once`, async (t) => {
    const { app, sc } = await setup(t, { webhooks: { paths: { resume: '/ws/resume' } } });
    const { client, welcome } = await connectReliable(sc.wsUrl());
    for (let i = 1; i <= 3; i++) await push(sc, welcome.session, i);
    const first = await read(client, 3);
    client.send({ type: 'ack', seq: 2 });
    if (how === 'terminate') client.ws.terminate();
    else (client.ws as any)._socket.resetAndDestroy();
    await client.closed;
    // Wait until the sidecar has seen the loss, then push while detached.
    await eventually(async () => (await sc.control('GET', `/v1/connections/${welcome.session}`)).json.state === 'detached', 'the session detached', 2_000);
    for (let i = 4; i <= 6; i++) assert.equal((await push(sc, welcome.session, i)).json.queued, 1);

    const connects = app.byPath('/ws/connect').length;
    const lastSeq = first.messages[2].seq;
    const again = await connect(resumeUrl(sc, welcome.token, lastSeq), 'switchboard.v1');
    const w2 = await again.nextJson();
    assert.equal(w2.type, 'welcome');
    assert.equal(w2.resumed, true);
    assert.equal(w2.session, welcome.session);
    const { messages, gaps } = await read(again, 3);
    assert.deepEqual(messages.map((m) => [m.seq, m.data]), [[4, 4], [5, 5], [6, 6]]);
    assert.deepEqual(gaps, []);
    await push(sc, welcome.session, 'live');
    assert.deepEqual(await again.nextJson(), { type: 'message', seq: 7, data: 'live' });
    assert.equal(app.byPath('/ws/connect').length, connects, 'no connect webhook on resume');
    const resumeHook = await app.waitFor((r) => r.url === '/ws/resume', 'resume webhook');
    assert.deepEqual({ ...resumeHook.json<object>(), gapMs: 0 }, { connection: welcome.session, user: null, gapMs: 0, replayed: 3, lost: 0 });
    assert.equal(typeof resumeHook.json().gapMs, 'number');
    assert.equal(app.byPath('/ws/disconnect').length, 0, 'no disconnect while the session lives');
    await again.close();
  });
}

test('unacked messages are replayed when the client says it missed them', async (t) => {
  const { sc } = await setup(t);
  const { client, welcome } = await connectReliable(sc.wsUrl());
  for (let i = 1; i <= 4; i++) await push(sc, welcome.session, i);
  await read(client, 4);
  client.ws.terminate();
  await client.closed;
  const again = await connect(resumeUrl(sc, welcome.token, 1), 'switchboard.v1');
  assert.equal((await again.nextJson()).resumed, true);
  const { messages } = await read(again, 3);
  assert.deepEqual(messages.map((m) => m.seq), [2, 3, 4]);
  await again.close();
});

test('a resume while the old socket is open takes the session over: the old one closes 4009', async (t) => {
  const { sc } = await setup(t);
  const { client, welcome } = await connectReliable(sc.wsUrl());
  const again = await connect(resumeUrl(sc, welcome.token, 0), 'switchboard.v1');
  assert.equal((await again.nextJson()).resumed, true);
  assert.equal((await client.closed).code, 4009);
  await push(sc, welcome.session, 'to the new socket');
  assert.equal((await again.nextJson()).data, 'to the new socket');
  assert.equal((await sc.control('GET', `/v1/connections/${welcome.session}`)).json.state, 'open');
  await again.close();
});

test('forged, foreign and expired tokens give a fresh session with a connect webhook', async (t) => {
  const { app, sc } = await setup(t, { session: { graceMs: 50 } });
  const { client, welcome } = await connectReliable(sc.wsUrl());
  const [body, mac] = welcome.token.split('.');
  const forgedBody = Buffer.from(Buffer.from(body, 'base64url').toString().replace(welcome.session, 'someone-else')).toString('base64url');
  for (const token of [`${forgedBody}.${mac}`, 'garbage', `${body}.${'A'.repeat(43)}`]) {
    const c = await connect(resumeUrl(sc, token, 0), 'switchboard.v1');
    const w = await c.nextJson();
    assert.equal(w.resumed, false);
    assert.notEqual(w.session, welcome.session);
    await c.close();
  }
  // Expired: the grace window ends, the session is gone for good.
  client.ws.terminate();
  await app.waitFor((r) => r.url === '/ws/disconnect' && r.json().connection === welcome.session, 'disconnect after grace');
  const late = await connect(resumeUrl(sc, welcome.token, 0), 'switchboard.v1');
  const w = await late.nextJson();
  assert.equal(w.resumed, false);
  assert.notEqual(w.session, welcome.session);
  assert.equal(app.byPath('/ws/connect').length, 5);
  const metrics = (await sc.control('GET', '/metrics')).text;
  assert.match(metrics, /switchboard_resumes_total\{result="invalid"\} 3/);
  assert.match(metrics, /switchboard_resumes_total\{result="expired"\} 1/);
  await late.close();
});

test('the disconnect webhook fires once, when the grace window ends, with what was undelivered', async (t) => {
  const { app, sc } = await setup(t, { session: { graceMs: 100 } });
  const { client, welcome } = await connectReliable(sc.wsUrl());
  client.ws.terminate();
  await client.closed;
  await push(sc, welcome.session, 'never read');
  const disc = await app.waitFor((r) => r.url === '/ws/disconnect', 'disconnect webhook');
  assert.equal(disc.json().connection, welcome.session);
  assert.equal(disc.json().undelivered, 1);
  assert.equal(disc.json().code, 1006);
  assert.equal((await push(sc, welcome.session, 'x')).status, 404);
  // Once: another session dropped after that ends a whole grace window later, and by its
  // disconnect the first session has had no second one.
  const later = await connectReliable(sc.wsUrl());
  later.client.ws.terminate();
  await later.client.closed;
  await app.waitFor((r) => r.url === '/ws/disconnect' && r.json().connection === later.welcome.session, 'the later session\'s disconnect webhook');
  assert.equal(app.byPath('/ws/disconnect').filter((r) => r.json().connection === welcome.session).length, 1);
});

test('while detached: coalesced pushes replace in place, lossy ones go first, overflow leaves a gap', async (t) => {
  const { sc } = await setup(t, { session: { outbox: { maxMessages: 4, onOverflow: 'drop-oldest' } } });
  const { client, welcome } = await connectReliable(sc.wsUrl());
  client.ws.terminate();
  await client.closed;
  await eventually(async () => (await sc.control('GET', `/v1/connections/${welcome.session}`)).json.state === 'detached', 'the session detached', 1_000);
  await push(sc, welcome.session, 'd1'); // seq 1
  await push(sc, welcome.session, { price: 1 }, { 'x-switchboard-coalesce-key': 'price' }); // seq 2
  await push(sc, welcome.session, 'l1', { 'x-switchboard-class': 'lossy' }); // seq 3
  await push(sc, welcome.session, { price: 2 }, { 'x-switchboard-coalesce-key': 'price' }); // replaces seq 2
  await push(sc, welcome.session, 'd2'); // seq 4
  await push(sc, welcome.session, 'd3'); // seq 5: the lossy seq 3 goes
  await push(sc, welcome.session, 'd4'); // seq 6: the oldest (seq 1) goes
  const again = await connect(resumeUrl(sc, welcome.token, 0), 'switchboard.v1');
  assert.equal((await again.nextJson()).resumed, true);
  const frames = [];
  for (let i = 0; i < 6; i++) frames.push(await again.nextJson());
  assert.deepEqual(frames, [
    { type: 'gap', from: 1, to: 1 },
    { type: 'message', seq: 2, data: { price: 2 } },
    { type: 'gap', from: 3, to: 3 },
    { type: 'message', seq: 4, data: 'd2' },
    { type: 'message', seq: 5, data: 'd3' },
    { type: 'message', seq: 6, data: 'd4' },
  ]);
  const metrics = (await sc.control('GET', '/metrics')).text;
  assert.match(metrics, /switchboard_dropped_messages_total\{reason="lossy"\} 1/);
  assert.match(metrics, /switchboard_dropped_messages_total\{reason="overflow"\} 1/);
  await again.close();
});

test('malformed frames get error frames and the socket stays open, until too many: 1008', async (t) => {
  const { sc } = await setup(t, { limits: { maxFrameErrors: 5 } });
  const { client } = await connectReliable(sc.wsUrl());
  const bad: Array<[string | Buffer, string]> = [
    ['not json', 'bad_json'],
    ['[1,2]', 'bad_json'],
    [JSON.stringify({ type: 'nope' }), 'bad_type'],
    [JSON.stringify({ type: 'message' }), 'bad_field'],
  ];
  for (const [frame, error] of bad) {
    client.send(frame);
    const e = await client.nextJson();
    assert.equal(e.type, 'error');
    assert.equal(e.error, error);
    assert.equal(typeof e.message, 'string');
  }
  client.send({ type: 'ping' });
  assert.equal((await client.nextJson()).type, 'pong');
  client.send(Buffer.from([1, 2]));
  assert.equal((await client.nextJson()).error, 'binary_frame');
  assert.equal((await client.closed).code, 1008);
});

test('subscribe is denied without a subscribe webhook, and decided by the app with one', async (t) => {
  const { sc: denied } = await setup(t);
  const { client: c1 } = await connectReliable(denied.wsUrl());
  c1.send({ type: 'subscribe', channel: 'news', id: 's1' });
  assert.deepEqual(await c1.until('nack'), { type: 'nack', id: 's1', error: 'subscribe_denied', retryable: false });
  c1.send({ type: 'subscribe', channel: 'news' });
  assert.equal((await c1.until('error')).error, 'subscribe_denied');
  await c1.close();

  const { app, sc } = await setup(t, { webhooks: { paths: { subscribe: '/ws/subscribe' } } },
    (r) => (r.url === '/ws/subscribe' ? { status: r.json().channel === 'secret' ? 403 : 204 } : { status: 204 }));
  const { client, welcome } = await connectReliable(sc.wsUrl());
  client.send({ type: 'subscribe', channel: 'news', id: 'a' });
  assert.deepEqual(await client.until('ack'), { type: 'ack', id: 'a' });
  client.send({ type: 'subscribe', channel: 'secret', id: 'b' });
  assert.equal((await client.until('nack')).error, 'subscribe_denied');
  const sub = app.byPath('/ws/subscribe')[0].json();
  assert.deepEqual(sub, { connection: welcome.session, user: null, channel: 'news' });
  assert.equal((await sc.control('POST', '/v1/channels/news/messages', { hi: 1 })).json.delivered, 1);
  assert.deepEqual((await client.until('message')).data, { hi: 1 });
  assert.equal((await sc.control('POST', '/v1/channels/secret/messages', 'x', { 'content-type': 'text/plain' })).json.delivered, 0);
  client.send({ type: 'unsubscribe', channel: 'news', id: 'c' });
  assert.deepEqual(await client.until('ack'), { type: 'ack', id: 'c' });
  assert.equal((await sc.control('POST', '/v1/channels/news/messages', { hi: 2 })).json.delivered, 0);
  await client.close();
});

test('a client close with 1000 ends a reliable session at once', async (t) => {
  const { app, sc } = await setup(t);
  const { client, welcome } = await connectReliable(sc.wsUrl());
  await client.close(1000);
  const disc = await app.waitFor((r) => r.url === '/ws/disconnect');
  assert.equal(disc.json().connection, welcome.session);
  assert.equal(disc.json().code, 1000);
});

test('1,000 sessions dropped at once all resume with zero loss and no duplicates', async (t) => {
  const { sc } = await setup(t, { webhooks: { paths: { connect: null, disconnect: null } } });
  const n = 1000;
  const sessions = await Promise.all(Array.from({ length: n }, () => connectReliable(sc.wsUrl())));
  const before = 5;
  const during = 5;
  for (let i = 1; i <= before; i++) assert.equal((await sc.control('POST', '/v1/broadcast', { i })).json.delivered, n);
  const lastSeqs = await Promise.all(sessions.map(async ({ client }) => (await read(client, before)).messages.at(-1).seq));
  for (const { client } of sessions) client.ws.terminate();
  await Promise.all(sessions.map(({ client }) => client.closed));
  await eventually(async () => /^switchboard_connections 0$/m.test((await sc.control('GET', '/metrics')).text), 'every socket seen closed', 6_000);
  for (let i = before + 1; i <= before + during; i++) assert.equal((await sc.control('POST', '/v1/broadcast', { i })).json.queued, n);

  const started = performance.now();
  const resumed = await Promise.all(sessions.map(async ({ welcome }, k) => {
    const c = await connect(resumeUrl(sc, welcome.token, lastSeqs[k]), 'switchboard.v1');
    const w = await c.nextJson();
    return { c, w };
  }));
  const results = await Promise.all(resumed.map(async ({ c }) => (await read(c, during)).messages));
  const elapsed = performance.now() - started;
  let lost = 0;
  let duplicates = 0;
  resumed.forEach(({ w }, k) => {
    assert.equal(w.resumed, true);
    assert.equal(w.session, sessions[k].welcome.session);
    const got = results[k].map((m) => m.data.i);
    lost += during - new Set(got).size;
    duplicates += got.length - new Set(got).size;
    assert.deepEqual(got, [6, 7, 8, 9, 10]);
  });
  assert.equal(lost, 0);
  assert.equal(duplicates, 0);
  t.diagnostic(`1000 sessions resumed and replayed in ${Math.round(elapsed)} ms; lost ${lost}`);
  await Promise.all(resumed.map(({ c }) => c.close()));
});
