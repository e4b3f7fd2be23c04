// The client library behind a proxy that drops WebSocket upgrades and buffers event streams until
// they end: it moves websocket → SSE → long-poll, gets pushes by user and channel, sends in order
// with acks over POST, ends its session with close(), and climbs back to a WebSocket on the same
// session once upgrades get through, nothing lost or doubled.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { WebSocket } from 'ws';
import { SwitchboardClient, type ClientOptions } from '../client/index.js';
import { answerFrames, openUrl, pollUrl } from '../client/transport-poll.js';
import { startApp, type TestApp } from './helpers/app.js';
import { startSidecar, type Sidecar } from './helpers/sidecar.js';
import { eventually } from './helpers/eventually.js';
import { record, type Recorder } from './helpers/recorder.js';
import { connectAnswer } from './helpers/cluster.js';
import { connect as connectRaw } from './helpers/client.js';
import { pushWhileClimbing, startBlockingProxy, type BlockingProxy } from './client-fallback-proxy.js';
import fc from 'fast-check';

let app: TestApp;
let sc: Sidecar;
let proxy: BlockingProxy;

test.before(async () => {
  app = await startApp((req) => (req.url.startsWith('/ws/connect') ? { body: { user: 'u1', channels: ['room'] } } : { status: 204 }));
  sc = await startSidecar(app.url, { longPoll: { waitMs: 2000 } });
  proxy = await startBlockingProxy(sc.httpUrl);
  proxy.streamMode = 'buffer';
});
test.after(async () => {
  await proxy.close();
  await sc.close();
  await app.close();
});

const wsUrl = () => `${proxy.url.replace('http:', 'ws:')}/ws`;

function connect(t: TestContext, options: ClientOptions = {}): Recorder {
  const client = new SwitchboardClient(wsUrl(), { WebSocket, backoff: { baseMs: 10, capMs: 50 }, connectTimeoutMs: 300, upgradeRetryMs: 60_000, ...options });
  t.after(() => client.close());
  return record(client);
}

const toUser = (data: unknown) => sc.control('POST', '/v1/users/u1/messages', data);
const toChannel = (data: unknown) => sc.control('POST', '/v1/channels/room/messages', data);
const received = (r: Recorder) => r.messages.map((m) => m.data);
const session = async (id: string) => (await sc.control('GET', `/v1/connections/${id}`)).json;

function assertNoDuplicates(r: Recorder): void {
  const seqs = r.messages.map((m) => m.seq);
  assert.deepEqual(seqs, [...seqs].sort((a, b) => a - b), 'seqs rise');
  assert.equal(new Set(seqs).size, seqs.length, 'no seq twice');
}

test('upgrades dropped and streams buffered: the client moves on to long-poll, gets pushes, and sends in order with acks', async (t) => {
  proxy.upgrades = 'drop';
  const before = { streams: proxy.streams, polls: proxy.polls };
  const r = connect(t);
  await r.until('the open over long-poll', () => r.events.includes('open:false'));
  assert.deepEqual(r.transports, ['long-poll'], 'the buffered stream never opened: only long-poll was announced');
  assert.deepEqual(r.events.slice(0, 4), ['close:true', 'close:true', 'transport:long-poll', 'open:false'], 'the WebSocket, the stream, then long-poll');
  assert.equal(proxy.polls > before.polls, true);
  const info = await session(r.client.session!);
  assert.equal(info.transport, 'long-poll');
  assert.equal(info.user, 'u1');

  assert.equal((await toUser({ n: 1 })).status, 202);
  assert.equal((await toChannel('two')).status, 202);
  await r.until('both pushes', () => r.messages.length === 2);
  assert.deepEqual(received(r), [{ n: 1 }, 'two']);
  assert.deepEqual(r.messages.map((m) => m.seq), [1, 2]);
  await eventually(async () => (await session(r.client.session!)).outbox.messages === 0, 'the outbox emptied by acks');

  const seen = app.byPath('/ws/message').length;
  await Promise.all([1, 2, 3, 4, 5].map((i) => r.client.send({ i })));
  const hooks = app.byPath('/ws/message').slice(seen);
  assert.deepEqual(hooks.map((h) => h.json()), [1, 2, 3, 4, 5].map((i) => ({ i })), 'in send order, once each');
  assert.ok(hooks.every((h) => String(h.headers['idempotency-key']).startsWith(`${r.client.session}:`)));
  await r.client.ping();
  assertNoDuplicates(r);
});

test('close() over long-poll ends the session at once: the app hears 1000', async (t) => {
  proxy.upgrades = 'drop';
  const r = connect(t);
  await r.until('the open over long-poll', () => r.events.includes('open:false'));
  const id = r.client.session!;
  await r.client.close();
  const hook = await app.waitFor((h) => h.url === '/ws/disconnect' && h.json().connection === id, 'the disconnect webhook');
  assert.deepEqual([hook.json().code, hook.json().reason], [1000, 'client closed']);
  assert.equal((await sc.control('GET', `/v1/connections/${id}`)).status, 404, 'ended, not detached for its grace');
});

test('upgrades let through again: the client climbs back from long-poll to a WebSocket on the same session, nothing lost or doubled', async (t) => {
  proxy.upgrades = 'drop';
  const r = connect(t, { upgradeRetryMs: 30 });
  await r.until('the open over long-poll', () => r.events.includes('open:false'));
  const id = r.client.session!;
  const pushed = await pushWhileClimbing(proxy, toUser, r);
  assert.deepEqual(r.transports, ['long-poll', 'websocket']);
  assert.equal(r.client.session, id, 'the same session');
  assert.deepEqual(received(r), pushed);
  assertNoDuplicates(r);
  assert.equal(r.events.filter((e) => e.startsWith('open')).length, 1, 'no second open: the session never dropped');
  assert.equal((await session(id)).transport, 'websocket');
});

test('long-poll alone needs no WebSocket, and its requests carry the headers', async (t) => {
  proxy.upgrades = 'pass';
  const r = connect(t, { WebSocket: undefined, transports: ['long-poll'], headers: { cookie: 'app=8' } });
  await r.until('the open over long-poll', () => r.events.includes('open:false'));
  assert.equal(app.byPath('/ws/connect').at(-1)!.headers.cookie, 'app=8');
  const posts = proxy.posts.length;
  await r.client.send('with headers');
  assert.equal(proxy.posts[posts].cookie, 'app=8');
});

test('property: poll URLs keep the page\'s query, drop a resume\'s, and carry the marker once; answers that are not frames are refused', () => {
  fc.assert(fc.property(fc.array(fc.tuple(fc.constantFrom('room', 'resume', 'lastSeq', 'transport', 'x'), fc.string()), { maxLength: 5 }), fc.option(fc.nat()), (pairs, seq) => {
    const url = `http://h/ws?${new URLSearchParams(pairs)}`;
    const polled = new URL(pollUrl(url, seq));
    assert.deepEqual(polled.searchParams.getAll('transport'), ['long-poll']);
    assert.deepEqual(polled.searchParams.getAll('resume'), []);
    assert.deepEqual(polled.searchParams.getAll('lastSeq'), seq === null ? [] : [String(seq)]);
    assert.deepEqual(polled.searchParams.getAll('room'), new URLSearchParams(pairs).getAll('room'));
    assert.deepEqual(new URL(openUrl(url)).searchParams.getAll('transport'), ['long-poll']);
  }));
  fc.assert(fc.property(fc.string(), (text) => {
    const frames = answerFrames(text);
    if (frames !== null) for (const f of frames) assert.equal(typeof f.frame.type, 'string');
  }));
  assert.deepEqual(answerFrames('[{"type":"message","seq":1,"data":2}]')!.map((f) => f.text), ['{"type":"message","seq":1,"data":2}']);
  assert.equal(answerFrames('{"type":"message"}'), null);
  assert.equal(answerFrames('[1]'), null);
});

test('long-poll: presence frames move the position on like messages, so the next poll is a poll, not a resume', async (t) => {
  const own = await startApp(connectAnswer);
  const side = await startSidecar(own.url, { longPoll: { waitMs: 2000 }, presence: { frames: ['room'] }, webhooks: { paths: { resume: '/ws/resume' } } });
  t.after(async () => { await side.close(); await own.close(); });
  const client = new SwitchboardClient(`${side.wsUrl('/ws')}?user=ann&ch=room`, { transports: ['long-poll'], backoff: { baseMs: 10, capMs: 50 } });
  t.after(() => client.close());
  const presence: string[] = [];
  const messages: unknown[] = [];
  client.on('presence', (e) => { presence.push(`${e.event} ${e.user}`); });
  client.on('message', (data) => { messages.push(data); });
  await eventually(() => presence.includes('member_added ann'), 'her own join, as a frame');
  const bob = await connectRaw(side.wsUrl('/ws?user=bob&ch=room'));
  t.after(() => bob.ws.terminate());
  await eventually(() => presence.includes('member_added bob'), 'bob\'s join, as a frame');
  // Polls go on from the frame's seq: a push comes through the next one, and nothing was resumed.
  await side.control('POST', '/v1/channels/room/messages', { after: 'bob' });
  await eventually(() => messages.length === 1, 'the push after the frames');
  assert.deepEqual(messages, [{ after: 'bob' }]);
  assert.equal(own.byPath('/ws/resume').length, 0, 'no poll was taken for a lost answer');
  assert.deepEqual(presence, ['channel_occupied ann', 'member_added ann', 'member_added bob']);
});
