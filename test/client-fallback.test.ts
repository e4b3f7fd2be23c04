// The client library behind a proxy that refuses WebSocket upgrades: it moves to Server-Sent
// Events for the same session, gets pushes by user and channel, sends in order with acks,
// resumes a dropped stream without loss or duplicates, and climbs back to a WebSocket on the same
// session once upgrades get through. An answered refusal (401) never falls back.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { WebSocket } from 'ws';
import { StatusHidden } from './helpers/status-hidden.js';
import { SwitchboardClient, type ClientOptions } from '../client/index.js';
import { startApp, type Answer, type TestApp } from './helpers/app.js';
import { record, type Recorder } from './helpers/recorder.js';
import { startSidecar, type Sidecar } from './helpers/sidecar.js';
import { eventually } from './helpers/eventually.js';
import { pushWhileClimbing, startBlockingProxy, type BlockingProxy } from './client-fallback-proxy.js';

let app: TestApp;
let sc: Sidecar;
let proxy: BlockingProxy;
/** The connect webhook's answers, one per attempt; past the last, it accepts as user u1 in channel room. */
let answers: Answer[] = [];

test.before(async () => {
  app = await startApp((req) => {
    if (req.url.startsWith('/ws/connect')) return answers.shift() ?? { body: { user: 'u1', channels: ['room'] } };
    return { status: 204 };
  });
  sc = await startSidecar(app.url, { webhooks: { paths: { subscribe: '/ws/subscribe' } } });
  proxy = await startBlockingProxy(sc.httpUrl);
});
test.after(async () => {
  await proxy.close();
  await sc.close();
  await app.close();
});

const wsUrl = () => `${proxy.url.replace('http:', 'ws:')}/ws`;

function connect(t: TestContext, options: ClientOptions = {}, url = wsUrl()): Recorder {
  const client = new SwitchboardClient(url, { WebSocket, backoff: { baseMs: 10, capMs: 50 }, upgradeRetryMs: 30, ...options });
  t.after(() => client.close());
  return record(client);
}

const toUser = (data: unknown) => sc.control('POST', '/v1/users/u1/messages', data);
const toChannel = (data: unknown) => sc.control('POST', '/v1/channels/room/messages', data);
const received = (r: Recorder) => r.messages.map((m) => m.data);
const session = async (id: string) => (await sc.control('GET', `/v1/connections/${id}`)).json;

/** Every seq once, rising: nothing delivered twice. */
function assertNoDuplicates(r: Recorder): void {
  const seqs = r.messages.map((m) => m.seq);
  assert.deepEqual(seqs, [...seqs].sort((a, b) => a - b), 'seqs rise');
  assert.equal(new Set(seqs).size, seqs.length, 'no seq twice');
}

test('upgrades dropped: the client moves to SSE, gets pushes by user and channel, and sends in order with acks', async (t) => {
  proxy.upgrades = 'drop';
  const before = { drop: proxy.seen.drop, connects: app.byPath('/ws/connect').length };
  const r = connect(t);
  await r.until('the open over SSE', () => r.events.includes('open:false'));
  assert.deepEqual(r.transports, ['sse']);
  assert.deepEqual(r.events.slice(0, 3), ['close:true', 'transport:sse', 'open:false'], 'the failed WebSocket, then SSE');
  assert.equal(proxy.seen.drop - before.drop >= 1, true);
  assert.equal(app.byPath('/ws/connect').length - before.connects, 1, 'one connect webhook: the WebSocket never reached the sidecar');
  const info = await session(r.client.session!);
  assert.equal(info.transport, 'sse');
  assert.equal(info.user, 'u1');

  assert.equal((await toUser({ n: 1 })).status, 202);
  assert.equal((await toChannel('two')).status, 202);
  await r.until('both pushes', () => r.messages.length === 2);
  assert.deepEqual(received(r), [{ n: 1 }, 'two']);
  assert.deepEqual(r.messages.map((m) => m.seq), [1, 2]);
  // Acks go by POST, batched: the outbox empties.
  await eventually(async () => (await session(r.client.session!)).outbox.messages === 0, 'the outbox emptied by acks');

  const seen = app.byPath('/ws/message').length;
  await Promise.all([1, 2, 3, 4, 5].map((i) => r.client.send({ i })));
  const hooks = app.byPath('/ws/message').slice(seen);
  assert.deepEqual(hooks.map((h) => h.json()), [1, 2, 3, 4, 5].map((i) => ({ i })), 'in send order, once each');
  assert.equal(new Set(hooks.map((h) => h.headers['idempotency-key'])).size, 5);
  assert.ok(hooks.every((h) => String(h.headers['idempotency-key']).startsWith(`${r.client.session}:`)));

  // Subscribing over POST: the subscribe webhook decides, then a channel push arrives.
  r.client.subscribe('extra');
  const asked = await app.waitFor((h) => h.url === '/ws/subscribe', 'the subscribe webhook');
  assert.equal(asked.json().channel, 'extra');
  await eventually(async () => (await session(r.client.session!)).channels.includes('extra'), 'the subscribe applied');
  await sc.control('POST', '/v1/channels/extra/messages', { extra: true });
  await r.until('the push to the new channel', () => r.messages.length === 3);
  assert.deepEqual(received(r)[2], { extra: true });
  assertNoDuplicates(r);
});

test('a dropped stream resumes the same session: what was pushed meanwhile arrives once, in order', async (t) => {
  proxy.upgrades = 'drop';
  const r = connect(t, { upgradeRetryMs: 60_000 });
  await r.until('the open over SSE', () => r.events.includes('open:false'));
  const id = r.client.session!;
  await toUser(1);
  await r.until('the first push', () => r.messages.length === 1);

  const closes = r.events.filter((e) => e.startsWith('close')).length;
  assert.equal(proxy.dropStreams(), 1);
  await r.until('the close of the cut stream', () => r.events.filter((e) => e.startsWith('close')).length > closes);
  for (let i = 2; i <= 6; i++) await toUser(i);
  await r.until('the resumed open', () => r.events.at(-1) === 'open:true' || r.messages.length === 6);
  await r.until('every push', () => r.messages.length === 6);
  assert.equal(r.client.session, id, 'the same session');
  assert.deepEqual(received(r), [1, 2, 3, 4, 5, 6]);
  assert.ok(!r.events.includes('reset') && !r.events.includes('gap'));
  assert.deepEqual(r.transports, ['sse'], 'still SSE: the resume did not announce a new transport');
  assertNoDuplicates(r);
});

test('close() over SSE ends the session at once: what was sent before goes first, the app hears 1000', async (t) => {
  proxy.upgrades = 'drop';
  const r = connect(t, { upgradeRetryMs: 60_000 });
  await r.until('the open over SSE', () => r.events.includes('open:false'));
  const id = r.client.session!;
  const seen = app.byPath('/ws/message').length;
  // Sent, then closed at once: the sends are rejected (closed) but still go ahead of the close.
  const sends = [1, 2, 3].map((i) => r.client.send({ closing: i }).catch((err: { code: string }) => err.code));
  await r.client.close();
  const hook = await app.waitFor((h) => h.url === '/ws/disconnect' && h.json().connection === id, 'the disconnect webhook');
  assert.deepEqual([hook.json().code, hook.json().reason], [1000, 'client closed']);
  assert.deepEqual(app.byPath('/ws/message').slice(seen).map((h) => h.json()), [1, 2, 3].map((i) => ({ closing: i })), 'the sends came first, in order');
  assert.equal((await sc.control('GET', `/v1/connections/${id}`)).status, 404, 'ended, not detached for its grace');
  assert.deepEqual(await Promise.all(sends), ['closed', 'closed', 'closed']);
  assert.equal(r.client.state.status, 'closed');
});

test('offline for a while (every request fails unanswered): the client keeps to the transport that worked, and resumes on it', async (t) => {
  proxy.upgrades = 'drop';
  let offline = false;
  let failed = 0;
  const tried: string[] = [];
  const flaky: typeof fetch = (input, init) => {
    if (!offline) return fetch(input, init);
    failed++;
    tried.push(String(input).includes('transport=long-poll') ? 'long-poll' : init?.method === 'POST' ? 'post' : 'sse');
    return Promise.reject(new TypeError('fetch failed'));
  };
  const r = connect(t, { upgradeRetryMs: 60_000, fetch: flaky as never });
  await r.until('the open over SSE', () => r.events.includes('open:false'));
  const id = r.client.session!;
  offline = true;
  const closes = r.events.filter((e) => e.startsWith('close')).length;
  assert.equal(proxy.dropStreams(), 1);
  await r.until('the drop', () => r.events.filter((e) => e.startsWith('close')).length > closes);
  await eventually(() => failed >= 3, 'a few attempts while offline');
  offline = false;
  await toUser('back');
  await r.until('the push after coming back', () => r.messages.some((m) => m.data === 'back'));
  assert.equal(r.client.session, id, 'the same session');
  assert.deepEqual(r.transports, ['sse'], 'still SSE: an unanswered request is not a blocked transport');
  assert.ok(!tried.includes('long-poll'), `no long-poll tried while offline: ${tried.join(' ')}`);
  assert.equal((await session(id)).transport, 'sse');
});

test('upgrades let through again: the client climbs back to a WebSocket on the same session, nothing lost or doubled', async (t) => {
  proxy.upgrades = 'drop';
  const r = connect(t);
  await r.until('the open over SSE', () => r.events.includes('open:false'));
  const id = r.client.session!;
  // Pushes keep coming while the proxy starts letting upgrades through.
  const pushed = await pushWhileClimbing(proxy, toUser, r);
  assert.deepEqual(r.transports, ['sse', 'websocket']);
  assert.equal(r.client.session, id, 'the same session');
  assert.deepEqual(received(r), pushed);
  assertNoDuplicates(r);
  assert.equal(r.events.filter((e) => e.startsWith('open')).length, 1, 'no second open: the session never dropped');
  assert.ok(!r.events.slice(2).some((e) => e.startsWith('close')), 'no close after the SSE open');
  assert.equal((await session(id)).transport, 'websocket');

  const seen = app.byPath('/ws/message').length;
  await r.client.send('over the WebSocket');
  assert.deepEqual(app.byPath('/ws/message').slice(seen).map((h) => h.text), ['"over the WebSocket"']);
  await r.client.ping();
});

test('a stream that goes silent (held open, carrying nothing) is given up after its heartbeats and resumed', async (t) => {
  const quiet = await startSidecar(app.url, { heartbeat: { intervalMs: 50 } });
  const front = await startBlockingProxy(quiet.httpUrl);
  t.after(async () => {
    await front.close();
    await quiet.close();
  });
  const r = connect(t, { upgradeRetryMs: 60_000 }, `${front.url.replace('http:', 'ws:')}/ws`);
  await r.until('the open over SSE', () => r.events.includes('open:false'));
  const id = r.client.session!;
  assert.equal(front.freezeStreams(), 1);
  for (const n of [1, 2, 3]) assert.equal((await quiet.control('POST', '/v1/users/u1/messages', n)).status, 202);
  await r.until('the three pushes on a new stream', () => r.messages.length === 3);
  assert.deepEqual(received(r), [1, 2, 3]);
  assert.equal(r.client.session, id, 'the same session');
  assert.deepEqual(r.events, ['close:true', 'transport:sse', 'open:false', 'close:true', 'open:true']);
  assert.equal(front.streams, 2);
  assertNoDuplicates(r);
});

test('an upgrade left hanging: after connectTimeoutMs the client moves to SSE', async (t) => {
  proxy.upgrades = 'hang';
  const r = connect(t, { connectTimeoutMs: 200, upgradeRetryMs: 60_000 });
  await r.until('the open over SSE', () => r.events.includes('open:false'));
  assert.deepEqual(r.transports, ['sse']);
  assert.equal(r.client.state.status, 'open');
  await toChannel('hello');
  await r.until('the push', () => r.messages.length === 1);
});

test('a 401 from the connect webhook is a refusal, not a block: no fallback, closed for good', async (t) => {
  proxy.upgrades = 'pass';
  answers = [{ status: 401, body: 'no' }];
  const before = { connects: app.byPath('/ws/connect').length, streams: proxy.streams };
  const r = connect(t);
  const pending = r.client.send('never');
  await r.until('the close', () => r.events.some((e) => e.startsWith('close')));
  await assert.rejects(pending, { code: 'closed' });
  assert.deepEqual(r.events, ['refused:401', 'close:false']);
  assert.deepEqual(r.transports, []);
  assert.equal(r.client.state.status, 'closed');
  assert.equal(app.byPath('/ws/connect').length - before.connects, 1, 'asked once');
  assert.equal(proxy.streams, before.streams, 'no stream opened');
});


test('a 401 the WebSocket hides (as a browser\'s does): the SSE attempt sees the status, and it is final there', async (t) => {
  proxy.upgrades = 'pass';
  answers = [{ status: 401 }, { status: 401 }];
  const before = app.byPath('/ws/connect').length;
  const r = connect(t, { WebSocket: StatusHidden as never });
  await r.until('the final close', () => r.events.includes('close:false'));
  assert.deepEqual(r.events, ['close:true', 'refused:401', 'close:false']);
  assert.equal(app.byPath('/ws/connect').length - before, 2, 'the WebSocket, then the stream');
  assert.equal(r.client.state.status, 'closed');
});

test('transports: checked at construction; SSE alone needs no WebSocket and takes headers', async (t) => {
  for (const transports of [[], ['sse', 'sse'], ['carrier-pigeon'], 'sse'] as never[]) {
    assert.throws(() => new SwitchboardClient(wsUrl(), { WebSocket, transports }), { name: 'RangeError', message: /^transports/ });
  }
  for (const key of ['connectTimeoutMs', 'upgradeRetryMs'] as const) {
    assert.throws(() => new SwitchboardClient(wsUrl(), { WebSocket, [key]: 0 }), { message: new RegExp(`^${key}`) });
  }
  proxy.upgrades = 'pass';
  // Node 20 has no global WebSocket: with SSE alone none is needed, and headers reach the app.
  const r = connect(t, { WebSocket: undefined, transports: ['sse'], headers: { cookie: 'app=7', authorization: 'Bearer t' } });
  await r.until('the open over SSE', () => r.events.includes('open:false'));
  assert.deepEqual(r.transports, ['sse']);
  const hook = app.byPath('/ws/connect').at(-1)!;
  assert.equal(hook.headers.cookie, 'app=7');
  assert.equal(hook.headers.authorization, 'Bearer t');
  const seen = app.byPath('/ws/message').length;
  const posts = proxy.posts.length;
  await r.client.send('with headers');
  assert.deepEqual(app.byPath('/ws/message').slice(seen).map((h) => h.text), ['"with headers"']);
  const post = proxy.posts[posts];
  assert.equal(post.authorization, 'Bearer t', 'the POST carries the headers too');
  assert.equal(post.cookie, 'app=7');
  assert.match(String(post['x-switchboard-token']), /./);
});
