// Sessions over Server-Sent Events on the WebSocket paths (docs/usage.md, "HTTP fallback (SSE)"), read by a raw HTTP
// client and a parser that follows the standard: the connect webhook decides, pushes by every
// target arrive with ids = seq, heartbeats are comments, drain asks to reconnect, overflow
// closes with 4008 as an event, and a dropped stream resumes from Last-Event-ID.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { request } from 'node:http';
import { startApp, type Handler, type TestApp } from './helpers/app.js';
import { startSidecar, type Sidecar } from './helpers/sidecar.js';
import { eventually } from './helpers/eventually.js';
import { dataOf, openStream, parseStream, type SseEvent, type Stream } from './sse-stream.js';
import { dataLines, sseEvent, sseWire } from '../proxy/sse-wire.js';
import { acceptsEventStream, pickResumable, sseCookies, withoutSseCookies } from '../proxy/sse-gateway.js';
import { Push } from '../proxy/push.js';
import { parseSendBody } from '../proxy/sse-send.js';
import { MAX_SEND_FRAMES } from '../proxy/limits.js';

const SSE = { accept: 'text/event-stream' };

async function setup(t: TestContext, overrides: Record<string, unknown> = {}, handler?: Handler): Promise<{ app: TestApp; sc: Sidecar; streams: Stream[]; open(headers?: Record<string, string>, path?: string): Promise<Stream> }> {
  const app = await startApp(handler ?? ((r) => (r.url === '/ws/connect' ? { body: { user: 'u1', channels: ['room'] } } : { status: 204 })));
  const sc = await startSidecar(app.url, overrides);
  const streams: Stream[] = [];
  t.after(async () => {
    for (const s of streams) s.drop();
    await sc.close();
    await app.close();
  });
  return {
    app, sc, streams,
    async open(headers = SSE, path = '/ws') {
      const s = await openStream(sc.httpUrl + path, headers);
      streams.push(s);
      return s;
    },
  };
}

const welcomeOf = async (s: Stream) => dataOf(await s.next((e) => e.event === 'welcome', 'welcome'));
const messages = (s: Stream) => s.events.filter((e) => e.event === 'message' || e.event === 'binary');
const push = (sc: Sidecar, path: string, body: string, type = 'text/plain') => sc.control('POST', path, body, { 'content-type': type });

test('a GET with Accept: text/event-stream opens a reliable session, decided by the connect webhook', async (t) => {
  const { app, sc, open } = await setup(t);
  const s = await open({ ...SSE, cookie: 'app=1; sb_sse_x=forged', 'x-request-id': 'r-1' }, '/ws?room=a');
  assert.equal(s.status, 200);
  assert.equal(s.headers['content-type'], 'text/event-stream');
  assert.equal(s.headers['cache-control'], 'no-cache');
  assert.equal(s.headers['x-accel-buffering'], 'no');
  const welcome = await welcomeOf(s);
  assert.deepEqual(Object.keys(welcome), ['session', 'token', 'resumed', 'heartbeatMs', 'graceMs']);
  assert.equal(welcome.resumed, false);
  assert.equal(welcome.heartbeatMs, sc.config.heartbeat.intervalMs);
  assert.equal(welcome.graceMs, sc.config.session.graceMs);

  const connect = await app.waitFor((r) => r.url === '/ws/connect', 'the connect webhook');
  const body = connect.json();
  assert.equal(body.connection, welcome.session);
  assert.deepEqual(body.query, { room: 'a' });
  assert.equal(body.subprotocol, 'switchboard.v1');
  assert.equal(connect.headers.cookie, 'app=1', "the app gets its own cookies, not Switchboard's");
  assert.equal(connect.headers['x-request-id'], 'r-1');

  const cookie = [s.headers['set-cookie'] ?? []].flat().find((c) => c.startsWith(`sb_sse_${welcome.session}=`));
  assert.ok(cookie, 'the session cookie is set');
  assert.match(cookie, /; Path=\/ws;/);
  assert.match(cookie, /; HttpOnly/);
  assert.match(cookie, /; SameSite=Lax/);
  assert.match(cookie, new RegExp(`; Max-Age=${sc.config.session.tokenTtlMs / 1000}`));
  const cleared = [s.headers['set-cookie'] ?? []].flat().find((c) => c.startsWith('sb_sse_x='));
  assert.match(cleared ?? '', /Max-Age=0/, 'a cookie with a token that does not verify is cleared');

  const info = await sc.control('GET', `/v1/connections/${welcome.session}`);
  assert.equal(info.json.transport, 'sse');
  assert.equal(info.json.mode, 'reliable');
  assert.equal(info.json.user, 'u1');
  const metrics = (await sc.control('GET', '/metrics')).text;
  assert.match(metrics, /switchboard_open_connections\{mode="reliable",transport="sse"\} 1/);
  const status = (await sc.control('GET', '/v1/status')).json;
  assert.deepEqual(status.connections.byMode, [{ mode: 'reliable', transport: 'sse', connections: 1 }], 'the status page counts it');
});

test('a refused connect answers with the app\'s status and body, and a new GET after it works', async (t) => {
  let refuse = true;
  const { open } = await setup(t, {}, (r) => (r.url === '/ws/connect' && refuse ? { status: 401, headers: { 'content-type': 'text/plain' }, body: 'log in first' } : { status: 204 }));
  const s = await open();
  assert.equal(s.status, 401);
  assert.equal(await s.body(), 'log in first');
  refuse = false;
  const ok = await open();
  assert.equal(ok.status, 200);
  assert.equal((await welcomeOf(ok)).resumed, false);
});

test('pushes by connection, user, channel and broadcast arrive in order with ids = seq; JSON, binary and multi-line text', async (t) => {
  const { sc, open } = await setup(t);
  const s = await open();
  const { session } = await welcomeOf(s);
  assert.equal((await push(sc, `/v1/connections/${session}/messages`, 'to the connection')).status, 202);
  assert.equal((await push(sc, '/v1/users/u1/messages', 'to the user')).status, 202);
  assert.equal((await push(sc, '/v1/channels/room/messages', '{ "to": "the channel", "n": 1.50 }', 'application/json')).status, 202);
  assert.equal((await push(sc, '/v1/broadcast', 'line one\nline two\r\nline three\n', 'text/plain')).status, 202);
  assert.equal((await sc.control('POST', '/v1/broadcast', Buffer.from([0, 255, 10, 13]), { 'content-type': 'application/octet-stream' })).status, 202);
  await eventually(() => messages(s).length === 5, 'five messages');
  const got = messages(s);
  assert.deepEqual(got.map((e) => e.lastEventId), ['1', '2', '3', '4', '5']);
  assert.ok(got.every((e) => e.hasId));
  assert.deepEqual(got.slice(0, 4).map((e) => e.event), ['message', 'message', 'message', 'message']);
  assert.equal(got[0].data, 'to the connection');
  assert.equal(got[1].data, 'to the user');
  assert.equal(got[2].data, '{ "to": "the channel", "n": 1.50 }', 'a JSON push arrives as its own JSON text');
  assert.equal(got[3].data, 'line one\nline two\nline three\n');
  assert.equal(got[4].event, 'binary');
  assert.deepEqual(Buffer.from(got[4].data, 'base64'), Buffer.from([0, 255, 10, 13]));
});

test('heartbeats are comment lines, and a stream that takes them stays open', async (t) => {
  const { sc, open } = await setup(t, { heartbeat: { intervalMs: 40, timeoutMs: 200 } });
  const s = await open();
  const { session } = await welcomeOf(s);
  await eventually(() => s.parser.comments.length >= 5, 'five heartbeat comments');
  assert.ok(s.parser.comments.every((c) => c.trim() === 'heartbeat'));
  assert.equal((await sc.control('GET', `/v1/connections/${session}`)).json.state, 'open');
});

test('a drain sends a reconnect event with afterMs (as retry:) and ends the stream', async (t) => {
  const { sc, open } = await setup(t);
  const s = await open();
  await welcomeOf(s);
  const closing = sc.sb.close();
  const e = await s.next((x) => x.event === 'reconnect', 'the reconnect event');
  const { afterMs } = dataOf(e);
  assert.ok(Number.isInteger(afterMs) && afterMs >= 0);
  assert.equal(e.retry, afterMs, 'retry: tells a plain EventSource when to come back');
  await s.ended;
  await closing;
});

test('a reader that falls behind fills its outbox: the session closes with a 4008 close event', async (t) => {
  const { sc, open } = await setup(t, { session: { outbox: { highWaterBytes: 16_384, maxMessages: 4, maxBytes: 8_000_000 } } });
  const s = await open();
  const { session } = await welcomeOf(s);
  s.res.pause();
  const filler = 'F'.repeat(200_000);
  let state = 'open';
  for (let i = 0; i < 500 && state === 'open'; i++) {
    await push(sc, `/v1/connections/${session}/messages`, filler);
    state = (await sc.control('GET', `/v1/connections/${session}`)).json?.state ?? 'gone';
  }
  assert.notEqual(state, 'open', 'the outbox overflowed');
  s.res.resume();
  const close = await s.next((e) => e.event === 'close', 'the close event', 30_000);
  assert.deepEqual(dataOf(close), { code: 4008, reason: 'slow consumer' });
  await s.ended;
});

test('a dropped stream resumed with its cookie and Last-Event-ID gets exactly the missed messages, without a connect webhook', async (t) => {
  const { app, sc, open } = await setup(t, { webhooks: { paths: { resume: '/ws/resume' } } });
  const s = await open();
  const { session } = await welcomeOf(s);
  for (const text of ['one', 'two']) await push(sc, `/v1/connections/${session}/messages`, text);
  await eventually(() => messages(s).length === 2, 'two messages');
  s.drop();
  await eventually(async () => (await sc.control('GET', `/v1/connections/${session}`)).json.state === 'detached', 'the session detached');
  for (const text of ['three', 'four']) await push(sc, `/v1/connections/${session}/messages`, text);

  const again = await open({ ...SSE, cookie: s.cookies().join('; '), 'last-event-id': messages(s).at(-1)!.lastEventId });
  const welcome = await welcomeOf(again);
  assert.equal(welcome.session, session);
  assert.equal(welcome.resumed, true);
  await eventually(() => messages(again).length === 2, 'the two missed messages');
  assert.deepEqual(messages(again).map((e) => [e.lastEventId, e.data]), [['3', 'three'], ['4', 'four']]);
  assert.ok(!again.events.some((e) => e.event === 'gap'));
  const resume = await app.waitFor((r) => r.url === '/ws/resume', 'the resume webhook');
  assert.deepEqual([resume.json().replayed, resume.json().lost], [2, 0]);
  assert.equal(app.byPath('/ws/connect').length, 1, 'a resume makes no connect webhook');

  // Live traffic follows the replay on the same stream.
  await push(sc, '/v1/broadcast', 'five');
  await eventually(() => messages(again).length === 3, 'the live message');
  assert.equal(messages(again)[2].lastEventId, '5');
});

test('a gap event comes first when the outbox dropped some of the missed messages', async (t) => {
  const { sc, open } = await setup(t, { session: { outbox: { maxMessages: 2, onOverflow: 'drop-oldest' } } });
  const s = await open();
  const { session } = await welcomeOf(s);
  await push(sc, `/v1/connections/${session}/messages`, 'one');
  await eventually(() => messages(s).length === 1, 'one message');
  s.drop();
  await eventually(async () => (await sc.control('GET', `/v1/connections/${session}`)).json.state === 'detached', 'the session detached');
  for (const text of ['two', 'three', 'four', 'five']) await push(sc, `/v1/connections/${session}/messages`, text);
  const again = await open({ ...SSE, cookie: s.cookies().join('; '), 'last-event-id': '1' });
  assert.equal((await welcomeOf(again)).resumed, true);
  await eventually(() => messages(again).length === 2, 'the two held messages');
  const after = again.events.slice(again.events.findIndex((e) => e.event === 'welcome') + 1);
  assert.deepEqual(after.map((e) => [e.event, e.event === 'gap' ? dataOf(e) : e.data]), [['gap', { from: 2, to: 3 }], ['message', 'four'], ['message', 'five']]);
  assert.deepEqual(messages(again).map((e) => e.lastEventId), ['4', '5']);
});

test('?resume=<token> resumes as on a WebSocket; Last-Event-ID sets the position', async (t) => {
  const { sc, open } = await setup(t);
  const s = await open();
  const { session, token } = await welcomeOf(s);
  for (const text of ['one', 'two', 'three']) await push(sc, `/v1/connections/${session}/messages`, text);
  await eventually(() => messages(s).length === 3, 'three messages');
  s.drop();
  await eventually(async () => (await sc.control('GET', `/v1/connections/${session}`)).json.state === 'detached', 'the session detached');
  const again = await open({ ...SSE, 'last-event-id': '1' }, `/ws?resume=${encodeURIComponent(token)}&lastSeq=0`);
  const welcome = await welcomeOf(again);
  assert.deepEqual([welcome.session, welcome.resumed], [session, true]);
  await eventually(() => messages(again).length === 2, 'the messages after 1');
  assert.deepEqual(messages(again).map((e) => e.data), ['two', 'three']);
});

test('two tabs share their cookies: the reconnection of the one that dropped resumes its own session', async (t) => {
  const { sc, open } = await setup(t);
  const a = await open();
  const { session: sessionA } = await welcomeOf(a);
  const b = await open({ ...SSE, cookie: a.cookies().join('; ') });
  const { session: sessionB } = await welcomeOf(b);
  assert.notEqual(sessionA, sessionB, 'a new EventSource (no Last-Event-ID) is a new session even with the cookies of another');
  const jar = [...a.cookies(), ...b.cookies()].join('; ');
  // Both at seq 1: only which one is detached tells them apart.
  await push(sc, `/v1/connections/${sessionA}/messages`, 'for a');
  await push(sc, `/v1/connections/${sessionB}/messages`, 'for b');
  await eventually(() => messages(a).length === 1 && messages(b).length === 1, 'one message each');
  a.drop();
  await eventually(async () => (await sc.control('GET', `/v1/connections/${sessionA}`)).json.state === 'detached', 'a detached');
  await push(sc, `/v1/connections/${sessionA}/messages`, 'missed by a');
  const again = await open({ ...SSE, cookie: jar, 'last-event-id': '1' });
  const welcome = await welcomeOf(again);
  assert.deepEqual([welcome.session, welcome.resumed], [sessionA, true]);
  await eventually(() => messages(again).length === 1, 'the missed message');
  assert.equal(messages(again)[0].data, 'missed by a');
  assert.equal((await sc.control('GET', `/v1/connections/${sessionB}`)).json.state, 'open', 'the other tab keeps its stream');
});

test('bad requests on a WebSocket path get clear errors and the sidecar stays up', async (t) => {
  const { sc, open } = await setup(t);
  // Without Accept: text/event-stream a GET stays the app's (plain HTTP, as before SSE).
  const plain = await open({ accept: 'text/html' });
  assert.equal(plain.status, 204, 'the app answered');
  // What names a session is Switchboard's: a GET that is no stream, or another method, is a clear error.
  const noAccept = await open({ accept: 'text/html', 'x-switchboard-token': 'x' });
  assert.equal(noAccept.status, 406);
  assert.equal(JSON.parse(await noAccept.body()).error, 'not_acceptable');
  const put = await openStream(`${sc.httpUrl}/ws`, { 'x-switchboard-token': 'x' }, 'PUT');
  assert.equal(put.status, 405);
  assert.equal(put.headers.allow, 'GET, POST');
  assert.equal(JSON.parse(await put.body()).error, 'method_not_allowed');

  // A forged cookie, a bad token, a Last-Event-ID that is no seq: each gets a new session.
  for (const headers of [
    { ...SSE, cookie: 'sb_sse_n1-0-x=forged.token', 'last-event-id': '3' },
    { ...SSE, 'last-event-id': 'not a number', cookie: 'sb_sse_y=' },
  ]) {
    const s = await open(headers);
    assert.equal(s.status, 200);
    assert.equal((await welcomeOf(s)).resumed, false);
  }
  const badToken = await open(SSE, '/ws?resume=nope&lastSeq=-4');
  assert.equal((await welcomeOf(badToken)).resumed, false);
  assert.equal((await fetch(`${sc.controlUrl}/healthz`)).status, 200);
});

test('a client that leaves during the connect webhook gets no session, and the app hears of its end once', async (t) => {
  let release!: () => void;
  const released = new Promise<void>((r) => { release = r; });
  const { app, sc } = await setup(t, {}, async (r) => {
    if (r.url === '/ws/connect') {
      await released;
      return { body: { user: 'gone' } };
    }
    return { status: 204 };
  });
  const req = request(`${sc.httpUrl}/ws`, { headers: SSE, agent: false });
  req.on('error', () => {});
  req.end();
  const connect = await app.waitFor((r) => r.url === '/ws/connect', 'the connect webhook');
  req.destroy();
  await eventually(() => sc.sb.sockets === 0, 'the socket closed');
  release();
  const disconnect = await app.waitFor((r) => r.url === '/ws/disconnect', 'the disconnect webhook');
  assert.deepEqual([disconnect.json().connection, disconnect.json().user], [connect.json().connection, 'gone']);
  assert.equal(sc.sb.registry.size, 0);
  assert.equal(app.byPath('/ws/disconnect').length, 1);
});

test('unit: Accept, cookies and the choice among a browser\'s sessions', () => {
  assert.equal(acceptsEventStream('text/event-stream'), true);
  assert.equal(acceptsEventStream('text/html, text/event-stream;q=0.5'), true);
  assert.equal(acceptsEventStream('text/event-stream;q=0'), false);
  assert.equal(acceptsEventStream('*/*'), false);
  assert.equal(acceptsEventStream(undefined), false);
  assert.deepEqual([...sseCookies('a=1; sb_sse_s1=t1;sb_sse_s2=t2; b')], [['s1', 't1'], ['s2', 't2']]);
  assert.equal(sseCookies(Array.from({ length: 100 }, (_, i) => `sb_sse_${i}=t`).join('; ')).size, 32);
  assert.equal(withoutSseCookies('a=1; sb_sse_s1=t1; b=2'), 'a=1; b=2');
  assert.equal(withoutSseCookies('sb_sse_s1=t1'), undefined);

  const s = (attached: boolean, lastWritten: number) => ({ attached, lastWritten });
  const one = s(false, 3);
  assert.equal(pickResumable([s(true, 3), one], 3), one, 'the detached one, not the open tab');
  assert.equal(pickResumable([one], 1), one, 'the only one, at any position');
  const exact = s(false, 7);
  assert.equal(pickResumable([s(false, 3), exact], 7), exact, 'several detached: the one whose last seq is the event id');
  assert.equal(pickResumable([s(false, 3), s(false, 3)], 3), null, 'two that fit equally: none');
  assert.equal(pickResumable([s(true, 3), s(true, 5)], 4), null);
  assert.equal(pickResumable([], 4), null);
});

test('property: any payload text round-trips through a standard SSE parser (line breaks as LF)', () => {
  fc.assert(fc.property(fc.string({ unit: 'grapheme' }), fc.nat(), (text, seq) => {
    const [e] = parseStream(sseWire.message(seq + 1, new Push({ kind: 'text', text })));
    assert.equal(e.data, text.replace(/\r\n|\r/g, '\n'));
    assert.equal(e.lastEventId, String(seq + 1));
    assert.equal(e.event, 'message');
  }), { numRuns: 500 });
  fc.assert(fc.property(fc.stringMatching(/^[a-z]{1,10}$/), fc.array(fc.constantFrom('a', ' ', '\n', '\r', '\r\n', ':', 'data: x', 'é', '\u2028'), { maxLength: 30 }), (name, parts) => {
    const text = parts.join('');
    const events = parseStream(sseEvent(name, text) + sseEvent(null, 'after'));
    assert.deepEqual(events.map((e) => [e.event, e.data]), [[name, text.replace(/\r\n|\r/g, '\n')], ['message', 'after']]);
  }), { numRuns: 500 });
  assert.equal(dataLines('a\r\nb\rc\nd'), 'data: a\ndata: b\ndata: c\ndata: d\n');
});

test('property: JSON and binary payloads keep their exact text and bytes', () => {
  fc.assert(fc.property(fc.json(), fc.uint8Array({ maxLength: 200 }), (json, bytes) => {
    const [j] = parseStream(sseWire.message(1, new Push({ kind: 'json', json })));
    assert.equal(j.data, json.replace(/\r\n|\r/g, '\n'));
    const [b] = parseStream(sseWire.message(2, new Push({ kind: 'binary', data: Buffer.from(bytes) })));
    assert.equal(b.event, 'binary');
    assert.deepEqual(Buffer.from(b.data, 'base64'), Buffer.from(bytes));
  }), { numRuns: 300 });
});

/** A POST of what the client sends, as the documented plain `fetch` form. */
async function send(sc: Sidecar, token: string | null, body: unknown, headers: Record<string, string> = {}) {
  const res = await fetch(`${sc.httpUrl}/ws`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(token === null ? {} : { 'x-switchboard-token': token }), ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  const text = await res.text();
  try { return { status: res.status, json: JSON.parse(text) }; } catch { throw new Error(`${res.status} answered ${JSON.stringify(text)} to ${JSON.stringify(body).slice(0, 80)}`); }
}

test('POSTs reach the message webhook in order, one at a time, and are answered with their ack', async (t) => {
  const { app, sc, open } = await setup(t, { webhooks: { paths: { subscribe: '/ws/subscribe' } } }, (r) => {
    if (r.url === '/ws/connect') return { body: { user: 'u1' } };
    if (r.url === '/ws/message' && r.json().refuse) return { status: 422 };
    return { status: 204 };
  });
  const s = await open();
  const { session, token } = await welcomeOf(s);
  for (const n of [1, 2, 3]) assert.deepEqual(await send(sc, token, { type: 'message', id: `m${n}`, data: { n } }), { status: 200, json: { type: 'ack', id: `m${n}` } });
  const batch = await send(sc, token, [{ type: 'message', id: 'm4', data: { n: 4 } }, { type: 'message', data: { n: 5 } }, { type: 'message', id: 'm6', data: { n: 6 } }, { type: 'ping' }]);
  assert.deepEqual(batch, { status: 200, json: [{ type: 'ack', id: 'm4' }, { type: 'accepted' }, { type: 'ack', id: 'm6' }, { type: 'pong' }] });
  const bodies = app.byPath('/ws/message');
  assert.deepEqual(bodies.map((r) => r.json().n), [1, 2, 3, 4, 5, 6], 'in the order sent');
  assert.equal(bodies[0].headers['idempotency-key'], `${session}:m1`);
  assert.equal(bodies[0].headers['content-type'], 'application/json');
  assert.deepEqual(await send(sc, token, { type: 'message', id: 'no', data: { refuse: true } }), { status: 200, json: { type: 'nack', id: 'no', error: 'rejected', retryable: false } });

  // Subscriptions, through the subscribe webhook, and cumulative acks.
  assert.deepEqual((await send(sc, token, { type: 'subscribe', channel: 'news', id: 's1' })).json, { type: 'ack', id: 's1' });
  assert.equal((await app.waitFor((r) => r.url === '/ws/subscribe', 'the subscribe webhook')).json().channel, 'news');
  await push(sc, '/v1/channels/news/messages', 'news one');
  await push(sc, '/v1/channels/news/messages', 'news two');
  await eventually(() => messages(s).length === 2, 'the channel messages');
  assert.equal((await sc.control('GET', `/v1/connections/${session}`)).json.outbox.messages, 2, 'held until acked');
  assert.deepEqual((await send(sc, token, { type: 'ack', seq: 2 })).json, { type: 'accepted' });
  assert.equal((await sc.control('GET', `/v1/connections/${session}`)).json.outbox.messages, 0);
  assert.deepEqual((await send(sc, token, { type: 'unsubscribe', channel: 'news', id: 'u1' })).json, { type: 'ack', id: 'u1' });
  assert.deepEqual((await sc.control('GET', `/v1/connections/${session}`)).json.channels, []);
  assert.ok(!s.events.some((e) => e.event === 'ack' || e.event === 'pong'), 'answers a POST gets are not on the stream too');
});

test('bad POSTs get clear errors, and the session and the sidecar stay up', async (t) => {
  const { sc, open } = await setup(t, { limits: { maxMessageBytes: 1024 } });
  const s = await open();
  const { session, token } = await welcomeOf(s);
  const plain = await fetch(`${sc.httpUrl}/ws`, { method: 'POST', body: '{}' });
  assert.equal(plain.status, 204, 'a POST that names no session stays the app\'s');
  await plain.text();
  assert.deepEqual([(await send(sc, '', { type: 'ping' })).status, (await send(sc, '', { type: 'ping' })).json.error], [403, 'bad_token']);
  assert.equal((await send(sc, 'forged.token', { type: 'ping' })).json.error, 'bad_token');
  assert.equal((await send(sc, token, 'x'.repeat(2000))).json.error, 'too_large');
  assert.deepEqual([(await send(sc, token, '{"type":')).status, (await send(sc, token, '{"type":')).json.error], [400, 'bad_json']);
  assert.equal((await send(sc, token, '['.repeat(100) + ']'.repeat(100))).json.error, 'too_deep');
  assert.equal((await send(sc, token, [])).json.error, 'bad_body');
  assert.equal((await send(sc, token, [1])).json.error, 'bad_body');
  assert.deepEqual([(await send(sc, token, 'ping', { 'content-type': 'text/plain' })).status, (await send(sc, token, 'ping', { 'content-type': 'text/plain' })).json.error], [415, 'unsupported_type']);
  const badFrame = await send(sc, token, { type: 'message', id: 'x' });
  assert.equal(badFrame.status, 400);
  assert.deepEqual([badFrame.json.type, badFrame.json.error], ['error', 'bad_field']);
  assert.equal((await send(sc, token, { type: 'shout' })).json.error, 'bad_type');
  assert.equal((await send(sc, token, [{ type: 'ping' }, { type: 'message' }])).json[1].error, 'bad_field', 'an array answers each frame');
  assert.equal(s.events.filter((e) => e.event === 'error').length, 0, 'frame errors are answered in the reply, not on the stream');
  for (const reason of [5, null, 'é'.repeat(62)]) {
    const bad = await send(sc, token, [{ type: 'ping' }, { type: 'close', reason }]);
    assert.deepEqual([bad.status, bad.json.error], [400, 'bad_body'], `close reason ${JSON.stringify(reason)?.slice(0, 20)}`);
    assert.match(bad.json.message, /at most 123 bytes/);
  }
  assert.equal((await send(sc, token, { type: 'ping' })).json.type, 'pong', 'the session still takes frames');

  // A detached session: its stream must come back first. An ended one: gone.
  s.drop();
  await eventually(async () => (await sc.control('GET', `/v1/connections/${session}`)).json.state === 'detached', 'the session detached');
  assert.deepEqual([(await send(sc, token, { type: 'ping' })).status, (await send(sc, token, { type: 'ping' })).json.error], [409, 'not_streaming']);
  assert.equal((await sc.control('DELETE', `/v1/connections/${session}`)).status < 300, true);
  await eventually(async () => (await sc.control('GET', `/v1/connections/${session}`)).status === 404, 'the session ended');
  assert.deepEqual([(await send(sc, token, { type: 'ping' })).status, (await send(sc, token, { type: 'ping' })).json.error], [404, 'unknown_connection']);
  assert.equal((await fetch(`${sc.controlUrl}/healthz`)).status, 200);
});

test('a close frame ends the session now: what came before it goes first, the stream says 1000, the app hears it, no grace', async (t) => {
  const { app, sc, open } = await setup(t, { session: { graceMs: 600_000 } });
  const s = await open();
  const { session, token } = await welcomeOf(s);
  const reason = 'tab closed ' + 'é'.repeat(50);
  const answers = await send(sc, token, [{ type: 'message', id: 'm1', data: { n: 1 } }, { type: 'close', reason }, { type: 'message', id: 'm2', data: { n: 2 } }]);
  assert.equal(answers.status, 200);
  assert.deepEqual(answers.json, [{ type: 'ack', id: 'm1' }, { type: 'accepted' }, { type: 'nack', id: 'm2', error: 'closed', retryable: true }]);
  const closed = await s.next((e) => e.event === 'close', 'the close event');
  assert.deepEqual(dataOf(closed), { code: 1000, reason });
  await s.ended;
  const disconnect = await app.waitFor((r) => r.url === '/ws/disconnect', 'the disconnect webhook');
  assert.deepEqual([disconnect.json().connection, disconnect.json().code, disconnect.json().reason], [session, 1000, reason]);
  assert.deepEqual(app.byPath('/ws/message').map((r) => r.json().n), [1], 'only the frame before the close');
  assert.equal((await sc.control('GET', `/v1/connections/${session}`)).status, 404, 'ended, not detached for its grace');
  assert.deepEqual([(await send(sc, token, { type: 'ping' })).status, (await send(sc, token, { type: 'ping' })).json.error], [404, 'unknown_connection']);
});

test('property: the POST body parser takes one frame or an array of them, and answers any text without throwing', () => {
  const frame = fc.dictionary(fc.string({ maxLength: 8 }), fc.jsonValue({ maxDepth: 3 }), { maxKeys: 5 }).filter((f) => f.type !== 'close');
  fc.assert(fc.property(fc.array(frame, { minLength: 1, maxLength: MAX_SEND_FRAMES }), fc.boolean(), (frames, single) => {
    const body = single ? frames[0] : frames;
    const parsed = parseSendBody(JSON.stringify(body));
    assert.ok(parsed.ok);
    const expected = single ? [frames[0]] : frames;
    assert.equal(parsed.value.single, single);
    assert.deepEqual(parsed.value.frames.map((f) => JSON.parse(f.text)), JSON.parse(JSON.stringify(expected)));
    assert.deepEqual(parsed.value.frames.map((f) => f.id), expected.map((f) => (typeof f.id === 'string' ? f.id : undefined)));
  }), { numRuns: 300 });
  fc.assert(fc.property(fc.oneof(fc.string(), fc.json(), fc.jsonValue().map((v) => JSON.stringify([v]))), (text) => {
    const parsed = parseSendBody(text);
    if (!parsed.ok) assert.ok(['bad_json', 'too_deep', 'bad_body'].includes(parsed.error.code));
  }), { numRuns: 500 });
  assert.equal(parseSendBody(JSON.stringify(Array.from({ length: MAX_SEND_FRAMES + 1 }, () => ({ type: 'ping' })))).ok, false);
  // A close frame: taken with no reason or a string of at most 123 bytes of UTF-8, refused otherwise.
  fc.assert(fc.property(fc.option(fc.oneof(fc.string({ maxLength: 130, unit: 'grapheme' }), fc.jsonValue({ maxDepth: 1 })), { nil: undefined }), (reason) => {
    const parsed = parseSendBody(JSON.stringify([{ type: 'close', reason }]));
    const fits = reason === undefined || (typeof reason === 'string' && Buffer.byteLength(reason) <= 123);
    assert.equal(parsed.ok, fits);
    if (parsed.ok) assert.equal(parsed.value.frames[0].close, reason ?? '');
    else assert.equal(parsed.error.code, 'bad_body');
  }), { numRuns: 300 });
});

export type { SseEvent };
