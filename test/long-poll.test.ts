// Sessions over long-polling on the WebSocket paths (docs/usage.md, "HTTP fallback (long-polling)"),
// read by a raw HTTP client: the opening GET is decided by the connect webhook and answered with the
// welcome; polls are held until frames come or the wait passes, carry the frames a WebSocket would,
// resume by position after a gap or a lost answer, and keep the outbox bounds; drain, close frames,
// concurrent polls, limits, the control API and metrics; the request parser's property.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { startApp, type Handler, type TestApp } from './helpers/app.js';
import { startSidecar, type Sidecar } from './helpers/sidecar.js';
import { eventually } from './helpers/eventually.js';
import { Poller, send } from './helpers/poll.js';
import { acceptsJson, parsePollRequest } from '../proxy/poll-gateway.js';
import { MAX_TOKEN_BYTES } from '../proxy/limits.js';

async function setup(t: TestContext, overrides: Record<string, unknown> = {}, handler?: Handler): Promise<{ app: TestApp; sc: Sidecar; client(path?: string): Poller }> {
  const app = await startApp(handler ?? ((r) => (r.url === '/ws/connect' ? { body: { user: 'u1', channels: ['room'] } } : { status: 204 })));
  const sc = await startSidecar(app.url, overrides);
  const clients: Poller[] = [];
  t.after(async () => {
    for (const c of clients) c.abortAll();
    await sc.close();
    await app.close();
  });
  return {
    app, sc,
    client(path = '/ws') {
      const c = new Poller(sc.httpUrl + path);
      clients.push(c);
      return c;
    },
  };
}

const push = (sc: Sidecar, path: string, body: string | Buffer, type = 'text/plain') => sc.control('POST', path, body, { 'content-type': type });
const stateOf = async (sc: Sidecar, id: string) => (await sc.control('GET', `/v1/connections/${id}`)).json?.state ?? 'gone';

test('a GET with ?transport=long-poll opens a reliable session, decided by the connect webhook, answered at once with the welcome', async (t) => {
  const { app, sc, client } = await setup(t);
  const c = client();
  const a = await c.open('&room=a', { 'x-request-id': 'r-1' });
  assert.equal(a.status, 200);
  assert.equal(a.headers['content-type'], 'application/json');
  assert.equal(a.headers['cache-control'], 'no-store');
  assert.equal(a.json.length, 1);
  const [welcome] = a.json;
  assert.deepEqual(Object.keys(welcome), ['type', 'session', 'token', 'resumed', 'heartbeatMs', 'graceMs']);
  assert.equal(welcome.type, 'welcome');
  assert.equal(welcome.resumed, false);

  const connect = await app.waitFor((r) => r.url === '/ws/connect', 'the connect webhook');
  assert.equal(connect.json().connection, welcome.session);
  assert.deepEqual(connect.json().query, { room: 'a' }, 'the transport marker is not the app\'s');
  assert.equal(connect.json().subprotocol, 'switchboard.v1');
  assert.equal(connect.headers['x-request-id'], 'r-1');

  const info = await sc.control('GET', `/v1/connections/${welcome.session}`);
  assert.equal(info.json.transport, 'long-poll');
  assert.equal(info.json.mode, 'reliable');
  assert.equal(info.json.state, 'open');
  const listed = await sc.control('GET', '/v1/connections?user=u1');
  assert.deepEqual(listed.json.connections.map((x: any) => x.transport), ['long-poll']);
  const metrics = (await sc.control('GET', '/metrics')).text;
  assert.match(metrics, /switchboard_open_connections\{mode="reliable",transport="long-poll"\} 1/);
  const status = (await sc.control('GET', '/v1/status')).json;
  assert.deepEqual(status.connections.byMode, [{ mode: 'reliable', transport: 'long-poll', connections: 1 }], 'the status page counts it');
});

test('a refused connect answers with the app\'s status and body', async (t) => {
  const { client } = await setup(t, {}, (r) => (r.url === '/ws/connect' ? { status: 403, headers: { 'content-type': 'text/plain' }, body: 'not you' } : { status: 204 }));
  const a = await client().open();
  assert.equal(a.status, 403);
  assert.equal(a.text, 'not you');
});

test('pushes by connection, user, channel and broadcast arrive in order with seq, as the frames a WebSocket carries', async (t) => {
  const { sc, client } = await setup(t);
  const c = client();
  const [welcome] = (await c.open()).json;
  const held = c.poll();
  assert.equal((await push(sc, `/v1/connections/${welcome.session}/messages`, 'to the connection')).status, 202);
  const first = await held.answer;
  assert.equal(first.status, 200, 'a held poll is answered when a push comes');
  await push(sc, '/v1/users/u1/messages', 'to the user');
  await push(sc, '/v1/channels/room/messages', '{ "to": "the channel" }', 'application/json');
  await push(sc, '/v1/broadcast', Buffer.from([0, 255, 10]), 'application/octet-stream');
  await c.until((f) => f.filter((x) => x.type === 'message').length === 4, 'four messages');
  assert.deepEqual(c.messages(), [
    { type: 'message', seq: 1, data: 'to the connection' },
    { type: 'message', seq: 2, data: 'to the user' },
    { type: 'message', seq: 3, data: { to: 'the channel' } },
    { type: 'message', seq: 4, binary: Buffer.from([0, 255, 10]).toString('base64') },
  ]);
});

test('a poll with nothing to take is answered with an empty array after longPoll.waitMs, and the session stays open', async (t) => {
  const { sc, client } = await setup(t, { longPoll: { waitMs: 50 } });
  const c = client();
  const [welcome] = (await c.open()).json;
  const a = await c.poll().answer;
  assert.equal(a.status, 200);
  assert.deepEqual(a.json, []);
  assert.equal(await stateOf(sc, welcome.session), 'open');
});

test('a second poll while one is held answers the first with an empty array and takes what comes', async (t) => {
  const { sc, client } = await setup(t);
  const c = client();
  const [welcome] = (await c.open()).json;
  const first = c.poll();
  // The first is held once the sidecar has it: a heartbeat-free way to know is that the second one displaces it.
  await eventually(async () => (await sc.control('GET', '/metrics')).text.includes('transport="long-poll"'), 'the session counted');
  const second = c.poll();
  assert.deepEqual((await first.answer).json, [], 'the earlier poll is answered empty');
  await push(sc, `/v1/connections/${welcome.session}/messages`, 'x');
  assert.deepEqual((await second.answer).json, [{ type: 'message', seq: 1, data: 'x' }]);
});

test('a gap in polling past the heartbeat detaches the session; a poll within the grace resumes it from its position, nothing lost or doubled', async (t) => {
  const { app, sc, client } = await setup(t, { heartbeat: { intervalMs: 50, timeoutMs: 50 }, webhooks: { paths: { resume: '/ws/resume' } } });
  const c = client();
  const [welcome] = (await c.open()).json;
  for (const text of ['one', 'two']) await push(sc, `/v1/connections/${welcome.session}/messages`, text);
  await c.until((f) => f.filter((x) => x.type === 'message').length === 2, 'two messages');
  await eventually(async () => (await stateOf(sc, welcome.session)) === 'detached', 'the session detached');
  for (const text of ['three', 'four']) await push(sc, `/v1/connections/${welcome.session}/messages`, text);

  const a = await c.poll().answer;
  assert.equal(a.status, 200);
  assert.deepEqual(a.json.map((f: any) => f.type), ['welcome', 'message', 'message']);
  assert.equal(a.json[0].resumed, true);
  assert.equal(a.json[0].session, welcome.session);
  assert.deepEqual(a.json.slice(1).map((f: any) => [f.seq, f.data]), [[3, 'three'], [4, 'four']]);
  const resume = await app.waitFor((r) => r.url === '/ws/resume', 'the resume webhook');
  assert.deepEqual([resume.json().replayed, resume.json().lost], [2, 0]);
  assert.equal(app.byPath('/ws/connect').length, 1, 'a resume makes no connect webhook');
  assert.deepEqual(c.messages().map((m) => m.seq), [1, 2, 3, 4], 'nothing doubled');
});

test('a poll from below what the last answer handed out (that answer was lost) gets it again after a resumed welcome', async (t) => {
  const { sc, client } = await setup(t);
  const c = client();
  const [welcome] = (await c.open()).json;
  for (const text of ['one', 'two']) await push(sc, `/v1/connections/${welcome.session}/messages`, text);
  await c.until((f) => f.filter((x) => x.type === 'message').length === 2, 'two messages');
  const again = await c.poll(0).answer;
  assert.deepEqual(again.json.map((f: any) => [f.type, f.seq]), [['welcome', undefined], ['message', 1], ['message', 2]]);
  assert.equal(again.json[0].resumed, true);
  assert.equal((await sc.control('GET', `/v1/connections/${welcome.session}`)).json.transport, 'long-poll');
});

test('past the outbox bound with drop-oldest, a gap frame comes before the first later message', async (t) => {
  const { sc, client } = await setup(t, { session: { outbox: { maxMessages: 2, highWaterBytes: 0, onOverflow: 'drop-oldest' } } });
  const c = client();
  const [welcome] = (await c.open()).json;
  for (const text of ['1', '2', '3', '4', '5']) await push(sc, `/v1/connections/${welcome.session}/messages`, text);
  await c.until((f) => f.some((x) => x.type === 'message' && x.seq === 5), 'the last message');
  const after = c.frames.filter((f) => f.type !== 'welcome');
  const gapAt = after.findIndex((f) => f.type === 'gap');
  assert.ok(gapAt >= 0, 'a gap frame');
  const gap = after[gapAt];
  assert.equal(after[gapAt + 1].seq, gap.to + 1, 'the gap comes right before the first message after it');
  const covered = new Set<number>();
  for (const f of after) {
    if (f.type === 'message') covered.add(f.seq);
    else for (let s = f.from; s <= f.to; s++) covered.add(s);
  }
  assert.deepEqual([...covered].sort((x, y) => x - y), [1, 2, 3, 4, 5], 'every seq is delivered or named lost');
});

test('past the outbox bound with close, the poll answers the 4008 close frame and the session ends', async (t) => {
  const { sc, client } = await setup(t, { session: { outbox: { maxMessages: 2, highWaterBytes: 0 } } });
  const c = client();
  const [welcome] = (await c.open()).json;
  for (let i = 0; i < 5 && (await stateOf(sc, welcome.session)) === 'open'; i++) await push(sc, `/v1/connections/${welcome.session}/messages`, `m${i}`);
  await c.until((f) => f.some((x) => x.type === 'close'), 'the close frame');
  assert.deepEqual(c.frames.at(-1), { type: 'close', code: 4008, reason: 'slow consumer' });
  await eventually(async () => (await stateOf(sc, welcome.session)) === 'gone', 'the session ended');
  const after = await c.poll().answer;
  assert.equal(after.status, 404);
  assert.equal(after.json.error, 'unknown_connection');
});

test('messages go by POST with the token and are acked in the reply; a poll\'s lastSeq acks what it had', async (t) => {
  const { app, sc, client } = await setup(t);
  const c = client();
  const [welcome] = (await c.open()).json;
  const a = await c.post({ type: 'message', id: 'm1', data: { hello: 1 } });
  assert.equal(a.status, 200);
  assert.deepEqual(a.json, { type: 'ack', id: 'm1' });
  const hook = await app.waitFor((r) => r.url === '/ws/message', 'the message webhook');
  assert.deepEqual(hook.json(), { hello: 1 });
  assert.equal(hook.headers['idempotency-key'], `${welcome.session}:m1`);
  await push(sc, `/v1/connections/${welcome.session}/messages`, 'x');
  await c.until((f) => f.some((x) => x.type === 'message'), 'the message');
  assert.equal((await sc.control('GET', `/v1/connections/${welcome.session}`)).json.outbox.messages, 1, 'held until acked');
  const held = c.poll();
  await eventually(async () => (await sc.control('GET', `/v1/connections/${welcome.session}`)).json.outbox.messages === 0, 'the poll acked it');
  held.abort();
});

test('bad polls: each with its status and code', async (t) => {
  const { app, sc, client } = await setup(t);
  const c = client();
  await c.open();
  const url = `${sc.httpUrl}/ws?transport=long-poll`;
  const cases: Array<[string, Record<string, string>, number, string]> = [
    [`${url}&lastSeq=1`, { 'x-switchboard-token': 'forged.token' }, 403, 'bad_token'],
    [`${url}&lastSeq=-1`, { 'x-switchboard-token': c.token }, 400, 'bad_query'],
    [`${url}&lastSeq=1e3`, { 'x-switchboard-token': c.token }, 400, 'bad_query'],
    [`${url}&lastSeq=${'9'.repeat(16)}`, { 'x-switchboard-token': c.token }, 400, 'bad_query'],
    [url, { 'x-switchboard-token': c.token }, 400, 'bad_query'],
    [`${url}&lastSeq=1&lastSeq=2`, { 'x-switchboard-token': c.token }, 400, 'bad_query'],
    [`${url}&transport=long-poll&lastSeq=0`, { 'x-switchboard-token': c.token }, 400, 'bad_query'],
    [`${url}&lastSeq=0&resume=${c.token}`, { 'x-switchboard-token': c.token }, 400, 'bad_query'],
    [`${url}&lastSeq=0`, { 'x-switchboard-token': 't'.repeat(MAX_TOKEN_BYTES + 1) }, 400, 'bad_header'],
    [`${url}&lastSeq=0`, { 'x-switchboard-token': c.token, accept: 'text/html' }, 406, 'not_acceptable'],
    [`${url}&resume=`, {}, 400, 'bad_query'],
  ];
  for (const [u, headers, status, code] of cases) {
    const a = await send(u, 'GET', headers).answer;
    assert.equal(a.status, status, `${u} ${JSON.stringify(headers)}: ${a.text}`);
    assert.equal(a.json.error, code);
    assert.equal(typeof a.json.message, 'string');
  }
  const other = await send(`${sc.httpUrl}/ws?transport=other`, 'GET').answer;
  assert.equal(other.status, 204, 'a GET without the marker stays the app\'s');
  assert.ok(app.requests.some((r) => r.url === '/ws?transport=other'));
});

test('a drain answers the held poll with a reconnect frame; a poll after it is refused 503', async (t) => {
  const { sc, client } = await setup(t);
  const c = client();
  await c.open();
  const held = c.poll();
  await eventually(async () => (await sc.control('GET', '/metrics')).text.includes('transport="long-poll"'), 'the session counted');
  const closing = sc.sb.close();
  const a = await held.answer;
  assert.equal(a.status, 200);
  assert.equal(a.json.length, 1);
  assert.equal(a.json[0].type, 'reconnect');
  assert.ok(Number.isInteger(a.json[0].afterMs));
  const after = await c.poll().answer.catch(() => null);
  if (after !== null) assert.equal(after.status, 503, 'a resume on a draining sidecar is refused');
  await closing;
});

test('a POSTed close frame ends the session now: the held poll gets close 1000, the app disconnect 1000', async (t) => {
  const { app, client } = await setup(t);
  const c = client();
  const [welcome] = (await c.open()).json;
  const held = c.poll();
  const a = await c.post([{ type: 'message', id: 'last', data: 1 }, { type: 'close', reason: 'bye' }]);
  assert.deepEqual(a.json, [{ type: 'ack', id: 'last' }, { type: 'accepted' }]);
  assert.deepEqual((await held.answer).json, [{ type: 'close', code: 1000, reason: 'bye' }]);
  const gone = await app.waitFor((r) => r.url === '/ws/disconnect', 'the disconnect webhook');
  assert.equal(gone.json().connection, welcome.session);
  assert.equal(gone.json().code, 1000);
  assert.equal(gone.json().reason, 'bye');
  assert.equal((await c.poll().answer).status, 404);
});

test('limits: the opening GET is refused past limits.maxConnectionsPerIp (429) and limits.maxConnections (503)', async (t) => {
  for (const [limits, status, code] of [[{ maxConnectionsPerIp: 1 }, 429, 'too_many_per_ip'], [{ maxConnections: 1 }, 503, 'too_many_connections']] as const) {
    const { sc, client } = await setup(t, { limits });
    const c = client();
    await c.open();
    const held = c.poll();
    await eventually(async () => (await sc.control('GET', '/metrics')).text.includes('transport="long-poll"'), 'the session counted');
    // The held poll's socket counts; a second client is one too many.
    const refused = await client().open();
    assert.equal(refused.status, status);
    assert.equal(refused.json.error, code);
    held.abort();
  }
});

test('the SSE POST answers 409 for a long-poll session with no live link; a poll resumes it first', async (t) => {
  const { sc, client } = await setup(t, { heartbeat: { intervalMs: 50, timeoutMs: 50 } });
  const c = client();
  const [welcome] = (await c.open()).json;
  await eventually(async () => (await stateOf(sc, welcome.session)) === 'detached', 'the session detached');
  const a = await c.post({ type: 'message', id: 'x', data: 1 });
  assert.equal(a.status, 409);
  assert.equal(a.json.error, 'not_streaming');
  const resumed = await c.poll().answer;
  assert.equal(resumed.json[0].resumed, true);
  assert.deepEqual((await c.post({ type: 'message', id: 'x', data: 1 })).json, { type: 'ack', id: 'x' });
});

test('the opening GET carries what the connect webhook sends, after the welcome', async (t) => {
  const { client } = await setup(t, {}, (r) => (r.url === '/ws/connect'
    ? { body: { user: 'u1', send: [{ hello: 1 }, 'two'] } }
    : { status: 204 }));
  const a = await client().open();
  assert.deepEqual(a.json.map((f: any) => f.type), ['welcome', 'message', 'message']);
  assert.deepEqual(a.json.slice(1), [{ type: 'message', seq: 1, data: { hello: 1 } }, { type: 'message', seq: 2, data: 'two' }]);
});

test('an opening GET with ?resume=<token>&lastSeq=<n> resumes a detached session, without a connect webhook', async (t) => {
  const { app, sc, client } = await setup(t, { heartbeat: { intervalMs: 50, timeoutMs: 50 } });
  const c = client();
  const [welcome] = (await c.open()).json;
  await push(sc, `/v1/connections/${welcome.session}/messages`, 'one');
  await c.until((f) => f.some((x) => x.type === 'message'), 'the message');
  await eventually(async () => (await stateOf(sc, welcome.session)) === 'detached', 'the session detached');
  await push(sc, `/v1/connections/${welcome.session}/messages`, 'two');
  const again = client();
  const a = await again.open(`&resume=${encodeURIComponent(c.token)}&lastSeq=1`);
  assert.deepEqual(a.json.map((f: any) => [f.type, f.seq]), [['welcome', undefined], ['message', 2]]);
  assert.equal(a.json[0].resumed, true);
  assert.equal(a.json[0].session, welcome.session);
  assert.equal(app.byPath('/ws/connect').length, 1);
  const fresh = await client().open('&resume=forged.token&lastSeq=1');
  assert.equal(fresh.json[0].resumed, false, 'a token that does not verify gives a new session');
});

test('property: the poll request parser answers any query and headers without throwing, and takes what is well-formed', () => {
  const value = fc.oneof(fc.string(), fc.stringMatching(/^\d{1,16}$/), fc.constant('long-poll'));
  const names = fc.constantFrom('transport', 'lastSeq', 'resume', 'room');
  fc.assert(fc.property(
    fc.array(fc.tuple(names, value), { maxLength: 6 }),
    fc.option(fc.oneof(fc.string({ maxLength: 600 }), fc.constant('tok.en'))),
    fc.option(fc.oneof(fc.string(), fc.constantFrom('application/json', '*/*', 'text/html', 'application/json;q=0'))),
    (pairs, token, accept) => {
      const query = new URLSearchParams(pairs);
      const headers: Record<string, string> = {};
      if (token !== null) headers['x-switchboard-token'] = token;
      if (accept !== null) headers.accept = accept;
      const r = parsePollRequest(query, headers);
      if (!r.ok) {
        assert.ok(['bad_query', 'bad_header', 'not_acceptable'].includes(r.error.code));
        assert.ok(r.error.message.length > 0);
        return;
      }
      assert.deepEqual(query.getAll('transport'), ['long-poll']);
      const seq = query.get('lastSeq');
      if (r.value.kind === 'poll') {
        assert.equal(r.value.token, token);
        assert.equal(String(r.value.lastSeq), String(Number(seq)));
      } else {
        assert.equal(token, null);
      }
    },
  ), { numRuns: 2000 });
  // Well-formed ones, built.
  fc.assert(fc.property(fc.nat({ max: 1e15 - 1 }), fc.stringMatching(/^[A-Za-z0-9._-]{1,100}$/), (seq, token) => {
    const r = parsePollRequest(new URLSearchParams({ transport: 'long-poll', lastSeq: String(seq) }), { 'x-switchboard-token': token, accept: 'application/json' });
    assert.deepEqual(r, { ok: true, value: { kind: 'poll', token, lastSeq: seq } });
  }));
});

test('property: acceptsJson takes absent, application/json, application/* and */* with a weight above 0, and any text without throwing', () => {
  assert.equal(acceptsJson(undefined), true);
  assert.equal(acceptsJson('text/html, application/json;q=0.5'), true);
  assert.equal(acceptsJson('application/json;q=0'), false);
  assert.equal(acceptsJson('text/event-stream'), false);
  fc.assert(fc.property(fc.string(), (s) => {
    assert.equal(typeof acceptsJson(s), 'boolean');
  }));
});

test('a POSTed close frame with no poll held (a page closed, its poll aborted) ends the session at once', async (t) => {
  const { app, sc, client } = await setup(t);
  const c = client();
  const [welcome] = (await c.open()).json;
  const a = await c.post({ type: 'close', reason: 'page closed' });
  assert.deepEqual([a.status, a.json], [200, { type: 'accepted' }]);
  const gone = await app.waitFor((r) => r.url === '/ws/disconnect', 'the disconnect webhook');
  assert.deepEqual([gone.json().connection, gone.json().code, gone.json().reason], [welcome.session, 1000, 'page closed']);
  await eventually(async () => (await sc.control('GET', `/v1/connections/${welcome.session}`)).status === 404, 'the session ended, not waiting for a poll');
});

test('a POST waiting for the app when its link is taken over (a poll resumed on a new link) is answered nack closed, not left hanging', async (t) => {
  let release: (() => void) | null = null;
  const { sc, client } = await setup(t, {}, async (r) => {
    if (r.url === '/ws/connect') return { body: { user: 'u1', channels: ['room'] } };
    if (r.url === '/ws/message') await new Promise<void>((done) => { release = done; });
    return { status: 204 };
  });
  const c = client();
  const [welcome] = (await c.open()).json;
  await push(sc, `/v1/connections/${welcome.session}/messages`, 'one');
  await c.until((f) => c.messages().length === 1 && f.length > 0, 'the message');
  const waiting = c.post({ type: 'message', id: 'slow', data: 1 });
  await eventually(() => release !== null, 'the app holding the message webhook');
  // The answer with seq 1 "was lost": a poll from 0 resumes on a new link, taking the session over.
  const again = await c.poll(0).answer;
  assert.equal(again.json[0].resumed, true);
  const answered = await waiting;
  assert.deepEqual([answered.status, answered.json], [200, { type: 'nack', id: 'slow', error: 'closed', retryable: true }]);
  release!();
});
