// The client against a scripted peer: a real `ws` server on 127.0.0.1:0 that plays the
// server side of reliable mode (docs/usage.md) step by step, and the `ws` package's WebSocket in the client.

import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import type { IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { WebSocket, WebSocketServer } from 'ws';
import {
  PROTOCOL,
  SwitchboardClient,
  SwitchboardClientError,
  reconnectsAfter,
  resumeUrl,
  type ClientEvents,
  type ClientOptions,
} from '../client/index.js';

type Frame = Record<string, unknown>;

/** A queue that hands items to whoever waits, in order, buffering the rest. */
class Inbox<T> {
  readonly #items: T[] = [];
  readonly #waiters: Array<{ match: (item: T) => boolean; resolve: (item: T) => void }> = [];

  put(item: T): void {
    const i = this.#waiters.findIndex((w) => w.match(item));
    if (i === -1) this.#items.push(item);
    else this.#waiters.splice(i, 1)[0].resolve(item);
  }

  /** The first item (buffered or future) that matches, removing it. */
  take(match: (item: T) => boolean = () => true): Promise<T> {
    const i = this.#items.findIndex(match);
    if (i !== -1) return Promise.resolve(this.#items.splice(i, 1)[0]);
    return new Promise((resolve) => this.#waiters.push({ match, resolve }));
  }

  get buffered(): readonly T[] {
    return this.#items;
  }
}

/** One server-side connection. */
class Peer {
  readonly url: URL;
  readonly protocol: string;
  readonly frames = new Inbox<Frame>();
  readonly closed: Promise<{ code: number; reason: string }>;

  constructor(
    readonly socket: WebSocket,
    request: IncomingMessage,
  ) {
    this.url = new URL(request.url ?? '/', 'ws://127.0.0.1');
    this.protocol = socket.protocol;
    socket.on('message', (data) => this.frames.put(JSON.parse(String(data)) as Frame));
    this.closed = new Promise((resolve) =>
      socket.on('close', (code, reason) => resolve({ code, reason: reason.toString() })),
    );
  }

  send(frame: Frame): void {
    this.socket.send(JSON.stringify(frame));
  }

  welcome(session = 's1', token = `token-${session}`, resumed = false): void {
    this.send({ type: 'welcome', session, token, resumed, heartbeatMs: 25000, graceMs: 120000 });
  }

  message(seq: number, data: unknown = `m${seq}`): void {
    this.send({ type: 'message', seq, data });
  }

  next(type: string): Promise<Frame> {
    return this.frames.take((f) => f.type === type);
  }
}

class ScriptedServer {
  readonly connections = new Inbox<Peer>();
  readonly #peers = new Set<Peer>();

  private constructor(
    readonly wss: WebSocketServer,
    readonly url: string,
  ) {
    wss.on('connection', (socket, request) => {
      const peer = new Peer(socket, request);
      this.#peers.add(peer);
      this.connections.put(peer);
    });
  }

  static async start(): Promise<ScriptedServer> {
    const wss = new WebSocketServer({
      host: '127.0.0.1',
      port: 0,
      handleProtocols: (protocols) => (protocols.has(PROTOCOL) ? PROTOCOL : false),
    });
    await new Promise<void>((resolve) => wss.once('listening', resolve));
    const { port } = wss.address() as AddressInfo;
    return new ScriptedServer(wss, `ws://127.0.0.1:${port}/ws`);
  }

  next(): Promise<Peer> {
    return this.connections.take();
  }

  async stop(): Promise<void> {
    for (const peer of this.#peers) peer.socket.terminate();
    await new Promise<void>((resolve) => this.wss.close(() => resolve()));
  }
}

/** Starts a server and a client for one test; tears both down after it, client first. */
async function setup(t: TestContext, options: ClientOptions = {}, query = '') {
  const server = await ScriptedServer.start();
  const client = new SwitchboardClient(server.url + query, {
    WebSocket,
    backoff: { baseMs: 5, capMs: 20 },
    random: () => 0.5,
    ...options,
  });
  t.after(async () => {
    await client.close();
    await server.stop();
  });
  return { server, client };
}

/** The arguments of the next `event` (matching `match`, if given). */
function next<K extends keyof ClientEvents>(
  client: SwitchboardClient,
  event: K,
  match: (...args: Parameters<ClientEvents[K]>) => boolean = () => true,
): Promise<Parameters<ClientEvents[K]>> {
  return new Promise((resolve) => {
    const off = client.on(event, ((...args: Parameters<ClientEvents[K]>) => {
      if (!match(...args)) return;
      off();
      resolve(args);
    }) as ClientEvents[K]);
  });
}

async function openSession(server: ScriptedServer, client: SwitchboardClient, session = 's1', resumed = false) {
  const peer = await server.next();
  const opened = next(client, 'open');
  peer.welcome(session, `token-${session}`, resumed);
  await opened;
  return peer;
}

test('resumeUrl merges resume and lastSeq into the query', () => {
  const table: Array<[url: string, expected: string]> = [
    ['ws://h/ws', 'ws://h/ws?resume=t&lastSeq=7'],
    ['ws://h/ws?room=a', 'ws://h/ws?room=a&resume=t&lastSeq=7'],
    ['ws://h/ws?resume=old&lastSeq=1&room=a', 'ws://h/ws?resume=t&lastSeq=7&room=a'],
    ['ws://h/ws?', 'ws://h/ws?resume=t&lastSeq=7'],
    ['/ws?x=1#frag', '/ws?x=1&resume=t&lastSeq=7#frag'],
  ];
  for (const [url, expected] of table) assert.equal(resumeUrl(url, 't', 7), expected, url);
  assert.equal(resumeUrl('ws://h/ws', 'a+b/c=', 0), 'ws://h/ws?resume=a%2Bb%2Fc%3D&lastSeq=0');
});

test('reconnectsAfter: which close codes are worth a reconnect', () => {
  const table: Array<[code: number, expected: boolean]> = [
    [1000, false],
    [1001, true],
    [1006, true],
    [1008, false],
    [1009, false],
    [1011, true],
    [1012, true],
    [1013, true],
    [4000, false],
    [4008, true],
    [4009, false],
    [4099, false],
    [4100, true],
  ];
  for (const [code, expected] of table) assert.equal(reconnectsAfter(code), expected, String(code));
});

test('welcome opens the session over switchboard.v1', async (t) => {
  const { server, client } = await setup(t);
  assert.equal(client.state.status, 'connecting');
  const peer = await server.next();
  assert.equal(peer.protocol, PROTOCOL);
  assert.equal(peer.url.searchParams.has('resume'), false);
  const opened = next(client, 'open');
  peer.welcome('s1', 'tok1');
  assert.deepEqual(await opened, [{ session: 's1', resumed: false }]);
  assert.deepEqual(client.state, { status: 'open', session: 's1' });
  assert.equal(client.session, 's1');
});

test('messages arrive in order, duplicates are dropped, binary is decoded, gaps are reported', async (t) => {
  const { server, client } = await setup(t, { ackEvery: 4, ackIntervalMs: 60_000 });
  const peer = await openSession(server, client);
  const log: unknown[] = [];
  client.on('message', (data, meta) => log.push(['message', data, meta.seq]));
  client.on('gap', (gap) => log.push(['gap', gap]));
  const last = next(client, 'message', (_data, meta) => meta.seq === 7);

  peer.message(1, { a: 1 });
  peer.message(2, 'two');
  peer.message(2, 'two again'); // a duplicate: dropped
  peer.send({ type: 'message', seq: 3, binary: Buffer.from([1, 2, 255]).toString('base64') });
  peer.message(1, 'old'); // a duplicate: dropped
  peer.send({ type: 'gap', from: 4, to: 6 });
  peer.message(7, 'seven');
  await last;

  assert.deepEqual(log, [
    ['message', { a: 1 }, 1],
    ['message', 'two', 2],
    ['message', new Uint8Array([1, 2, 255]), 3],
    ['gap', { from: 4, to: 6 }],
    ['message', 'seven', 7],
  ]);
  assert.equal(client.lastSeq, 7);
  // Four un-acked (three messages and the gap's end) trigger one cumulative ack.
  assert.deepEqual(await peer.next('ack'), { type: 'ack', seq: 6 });
  // close() flushes what is still un-acked.
  await client.close();
  assert.deepEqual(await peer.next('ack'), { type: 'ack', seq: 7 });
});

test('presence frames: a presence event each, numbered with the messages (duplicates dropped, holes reported); malformed ones are bad_frame', async (t) => {
  const { server, client } = await setup(t, { ackEvery: 4, ackIntervalMs: 60_000 });
  const peer = await openSession(server, client);
  const log: unknown[] = [];
  client.on('message', (data, meta) => log.push(['message', data, meta.seq]));
  client.on('presence', (e, meta) => log.push(['presence', e, meta.seq]));
  client.on('gap', (gap) => log.push(['gap', gap]));
  const errors: string[] = [];
  client.on('error', (err) => errors.push(err.code));
  const last = next(client, 'message', (_data, meta) => meta.seq === 6);
  const event = (seq: number, e: string, user: string) => ({ type: 'presence', seq, event: e, channel: 'room', user, id: `n-0-a-${seq}`, at: '2026-01-01T00:00:00.000Z' });

  peer.send(event(1, 'channel_occupied', 'ann'));
  peer.send(event(2, 'member_added', 'ann'));
  peer.message(3, 'three');
  peer.send(event(2, 'member_added', 'ann')); // a duplicate: dropped
  // Malformed: no seq, an unknown event, a field of the wrong type, a missing field.
  peer.send({ ...event(4, 'member_added', 'bob'), seq: undefined });
  peer.send(event(4, 'member_renamed', 'bob'));
  peer.send({ ...event(4, 'member_added', 'bob'), user: 7 });
  const { at: _at, ...noTime } = event(4, 'member_added', 'bob');
  peer.send(noTime);
  peer.send(event(5, 'member_removed', 'bob')); // 4 never came: a hole
  peer.message(6, 'six');
  await last;

  const info = (seq: number, e: string, user: string) => ({ event: e, channel: 'room', user, id: `n-0-a-${seq}`, at: '2026-01-01T00:00:00.000Z' });
  assert.deepEqual(log, [
    ['presence', info(1, 'channel_occupied', 'ann'), 1],
    ['presence', info(2, 'member_added', 'ann'), 2],
    ['message', 'three', 3],
    ['gap', { from: 4, to: 4 }],
    ['presence', info(5, 'member_removed', 'bob'), 5],
    ['message', 'six', 6],
  ]);
  assert.deepEqual(errors, ['bad_frame', 'bad_frame', 'bad_frame', 'bad_frame']);
  // Acks count presence frames: cumulative over both.
  assert.deepEqual(await peer.next('ack'), { type: 'ack', seq: 5 });
  await client.close();
  assert.deepEqual(await peer.next('ack'), { type: 'ack', seq: 6 });
});

test('acks are batched: one timer per interval, the highest contiguous seq', async (t) => {
  const timers = new Map<number, { fn: () => void; ms: number }>();
  let nextTimer = 0;
  const { server, client } = await setup(t, {
    ackIntervalMs: 200,
    setTimeout: (fn, ms) => {
      timers.set(++nextTimer, { fn, ms });
      return nextTimer;
    },
    clearTimeout: (handle) => timers.delete(handle as number),
  });
  const peer = await openSession(server, client);
  const third = next(client, 'message', (_d, meta) => meta.seq === 3);
  peer.message(1);
  peer.message(2);
  peer.message(3);
  await third;

  assert.deepEqual([...timers.values()].map((timer) => timer.ms), [200]);
  const [[id, timer]] = [...timers];
  timers.delete(id);
  timer.fn();
  const ack = await peer.frames.take();
  assert.deepEqual(ack, { type: 'ack', seq: 3 }, 'the first frame the server sees is the batched ack');
  assert.equal(timers.size, 0, 'nothing left to ack, so no timer');
});

test('send resolves on ack and rejects on nack with code and retryable', async (t) => {
  const { server, client } = await setup(t);
  const peer = await openSession(server, client);

  const accepted = client.send({ hello: 1 });
  const retryable = client.send('try later');
  const refused = client.send([1, 2]);
  const frames = [await peer.next('message'), await peer.next('message'), await peer.next('message')];
  assert.deepEqual(
    frames.map((f) => f.data),
    [{ hello: 1 }, 'try later', [1, 2]],
  );
  const ids = frames.map((f) => f.id);
  assert.ok(ids.every((id) => typeof id === 'string'));
  assert.equal(new Set(ids).size, 3, 'ids are unique');

  peer.send({ type: 'ack', id: ids[0] });
  peer.send({ type: 'nack', id: ids[1], error: 'upstream_unavailable', retryable: true });
  peer.send({ type: 'nack', id: ids[2], error: 'app_rejected', retryable: false });
  await accepted;
  await assert.rejects(retryable, (err: unknown) => {
    assert.ok(err instanceof SwitchboardClientError);
    assert.equal(err.code, 'upstream_unavailable');
    assert.equal(err.retryable, true);
    return true;
  });
  await assert.rejects(refused, { name: 'SwitchboardClientError', code: 'app_rejected', retryable: false });
});

test('a dropped socket reconnects with resume=<token>&lastSeq=<n>, keeping the query', async (t) => {
  const { server, client } = await setup(t, {}, '?room=a');
  const peer = await openSession(server, client, 's1');
  assert.equal(peer.url.searchParams.get('room'), 'a');
  client.on('reset', () => assert.fail('a resumed session is not a reset'));
  const second = next(client, 'message', (_d, meta) => meta.seq === 2);
  peer.message(1);
  peer.message(2);
  await second;

  const closed = next(client, 'close');
  peer.socket.terminate();
  assert.deepEqual(await closed, [{ code: 1006, reason: '', willReconnect: true }]);

  const peer2 = await server.next();
  assert.equal(peer2.url.pathname, '/ws');
  assert.equal(peer2.url.searchParams.get('room'), 'a');
  assert.equal(peer2.url.searchParams.get('resume'), 'token-s1');
  assert.equal(peer2.url.searchParams.get('lastSeq'), '2');
  const opened = next(client, 'open');
  peer2.welcome('s1', 'token-s1b', true);
  assert.deepEqual(await opened, [{ session: 's1', resumed: true }]);

  const seqs: number[] = [];
  client.on('message', (_d, meta) => seqs.push(meta.seq));
  const third = next(client, 'message', (_d, meta) => meta.seq === 3);
  peer2.message(2); // held and re-sent by the server: a duplicate
  peer2.message(3);
  await third;
  assert.deepEqual(seqs, [3]);

  // The newest token is the one used next time.
  peer2.socket.terminate();
  const peer3 = await server.next();
  assert.equal(peer3.url.searchParams.get('resume'), 'token-s1b');
  assert.equal(peer3.url.searchParams.get('lastSeq'), '3');
});

test('resumed:false after a session emits reset, restarts seq and re-subscribes', async (t) => {
  const { server, client } = await setup(t);
  const peer = await openSession(server, client, 's1');
  client.subscribe('news');
  assert.deepEqual(await peer.next('subscribe'), { type: 'subscribe', channel: 'news' });
  const fifth = next(client, 'message', (_d, meta) => meta.seq === 5);
  for (let seq = 1; seq <= 5; seq++) peer.message(seq);
  await fifth;

  peer.socket.terminate();
  const peer2 = await server.next();
  assert.equal(peer2.url.searchParams.get('lastSeq'), '5');
  const opened = next(client, 'open');
  const reset = next(client, 'reset');
  peer2.welcome('s2', 'token-s2', false);
  assert.deepEqual(await opened, [{ session: 's2', resumed: false }]);
  assert.deepEqual(await reset, [{ session: 's2', previousSession: 's1' }]);
  assert.equal(client.lastSeq, 0);
  assert.deepEqual(await peer2.next('subscribe'), { type: 'subscribe', channel: 'news' });

  const first = next(client, 'message');
  peer2.message(1, 'fresh');
  assert.deepEqual(await first, ['fresh', { seq: 1 }]);
});

test('a reconnect hint closes the socket and resumes with the same token', async (t) => {
  const { server, client } = await setup(t);
  const peer = await openSession(server, client, 's1');
  const first = next(client, 'message');
  peer.message(1);
  await first;

  const closed = next(client, 'close');
  peer.send({ type: 'reconnect', afterMs: 0 });
  assert.deepEqual(await closed, [{ code: 1000, reason: 'reconnect requested', willReconnect: true }]);
  assert.equal((await peer.closed).code, 4100, 'not 1000: that would end the session');
  const peer2 = await server.next();
  assert.equal(peer2.url.searchParams.get('resume'), 'token-s1');
  assert.equal(peer2.url.searchParams.get('lastSeq'), '1');
});

for (const code of [1000, 1008, 1009, 4000, 4009, 4099]) {
  test(`close code ${code} stops reconnecting and rejects pending sends`, async (t) => {
    const { server, client } = await setup(t);
    const peer = await openSession(server, client);
    const pending = client.send('unanswered');
    await peer.next('message');
    const closed = next(client, 'close');
    peer.socket.close(code, 'bye');
    assert.deepEqual(await closed, [{ code, reason: 'bye', willReconnect: false }]);
    assert.deepEqual(client.state, { status: 'closed', code, reason: 'bye' });
    await assert.rejects(pending, { name: 'SwitchboardClientError', code: 'closed' });
    await assert.rejects(client.send('late'), { code: 'closed' });
  });
}

for (const code of [1001, 1011, 1012, 1013, 4008]) {
  test(`close code ${code} reconnects with backoff and tries to resume`, async (t) => {
    const { server, client } = await setup(t);
    const peer = await openSession(server, client, 's1');
    const closed = next(client, 'close');
    peer.socket.close(code, 'later');
    assert.deepEqual(await closed, [{ code, reason: 'later', willReconnect: true }]);
    assert.equal(client.state.status, 'waiting');
    const peer2 = await server.next();
    assert.equal(peer2.url.searchParams.get('resume'), 'token-s1');
    if (code === 4008) {
      // The slow consumer's session is gone server-side: a new one, so a reset.
      const reset = next(client, 'reset');
      peer2.welcome('s2', 'token-s2', false);
      assert.deepEqual(await reset, [{ session: 's2', previousSession: 's1' }]);
    }
  });
}

test('offline queue: sends wait while disconnected, unacked ones are re-sent in order, the limit holds', async (t) => {
  const { server, client } = await setup(t, { offlineQueueLimit: 3 });
  const peer = await openSession(server, client, 's1');
  const a = client.send('a');
  const sentA = await peer.next('message');

  const closed = next(client, 'close');
  peer.socket.terminate();
  await closed;
  assert.notEqual(client.state.status, 'open');
  const b = client.send('b');
  const c = client.send('c');
  await assert.rejects(client.send('d'), (err: unknown) => {
    assert.ok(err instanceof SwitchboardClientError);
    assert.equal(err.code, 'offline_queue_full');
    assert.match(err.message, /offline queue is full \(3 messages/);
    return true;
  });

  const peer2 = await server.next();
  peer2.welcome('s1', 'token-s1', true);
  // Nothing goes out before the welcome, so these are the first three frames.
  const resent = [await peer2.frames.take(), await peer2.frames.take(), await peer2.frames.take()];
  assert.deepEqual(
    resent.map((f) => [f.type, f.data]),
    [
      ['message', 'a'],
      ['message', 'b'],
      ['message', 'c'],
    ],
  );
  assert.equal(resent[0].id, sentA.id, 'a re-sent message keeps its id, so the server de-duplicates it');
  for (const f of resent) peer2.send({ type: 'ack', id: f.id });
  await Promise.all([a, b, c]);
});

test('close() closes for good with 1000 and rejects pending sends and pings', async (t) => {
  const { server, client } = await setup(t);
  await assert.rejects(client.ping(), { code: 'not_open' });
  const peer = await openSession(server, client);
  const pending = client.send('x');
  const ping = client.ping();
  await peer.next('ping');
  const closed = next(client, 'close');
  const done = client.close();
  // Rejected synchronously by close(); assert before awaiting anything else.
  await assert.rejects(pending, { code: 'closed', message: /client is closed/ });
  await assert.rejects(ping, { code: 'disconnected' });
  assert.deepEqual(await closed, [{ code: 1000, reason: 'client closed', willReconnect: false }]);
  await done;
  await client.close(); // idempotent
  assert.equal(client.state.status, 'closed');
  await assert.rejects(client.send('y'), { code: 'closed' });
  assert.equal((await peer.closed).code, 1000);
});

test('ping resolves on pong; subscribe and unsubscribe send frames; error frames become error events', async (t) => {
  const { server, client } = await setup(t);
  client.subscribe('early'); // before the first welcome: sent once the session opens
  const peer = await openSession(server, client);
  assert.deepEqual(await peer.frames.take(), { type: 'subscribe', channel: 'early' });

  const pong = client.ping();
  assert.deepEqual(await peer.next('ping'), { type: 'ping' });
  peer.send({ type: 'pong' });
  await pong;

  client.subscribe('room:1');
  client.unsubscribe('early');
  assert.deepEqual(await peer.frames.take(), { type: 'subscribe', channel: 'room:1' });
  assert.deepEqual(await peer.frames.take(), { type: 'unsubscribe', channel: 'early' });

  const error = next(client, 'error');
  peer.send({ type: 'error', error: 'subscribe_denied', message: 'no subscribe webhook configured' });
  const [err] = await error;
  assert.equal(err.code, 'subscribe_denied');
  assert.equal(err.message, 'no subscribe webhook configured');
  assert.equal(client.state.status, 'open', 'an error frame does not close the connection');
});

test('a first frame that is not a welcome is a protocol error: reconnect', async (t) => {
  const { server, client } = await setup(t);
  const peer = await server.next();
  const error = next(client, 'error');
  const closed = next(client, 'close');
  peer.message(1);
  assert.equal((await error)[0].code, 'bad_frame');
  assert.deepEqual(await closed, [{ code: 1002, reason: 'protocol error', willReconnect: true }]);
  await openSession(server, client);
});

test('gives up after backoff.maxAttempts failed connects', async (t) => {
  // A port that refuses connections: bind one, then free it.
  const server = await ScriptedServer.start();
  await server.stop();
  const client = new SwitchboardClient(server.url, {
    WebSocket,
    backoff: { baseMs: 2, capMs: 4, maxAttempts: 2 },
    random: () => 0.5,
  });
  t.after(() => client.close());
  const closes: boolean[] = [];
  await new Promise<void>((resolve) =>
    client.on('close', ({ code, willReconnect }) => {
      assert.equal(code, 1006);
      closes.push(willReconnect);
      if (!willReconnect) resolve();
    }),
  );
  assert.deepEqual(closes, [true, true, false]);
  assert.equal(client.state.status, 'closed');
});

test('options are checked at construction', () => {
  const table: Array<[options: ClientOptions, message: RegExp]> = [
    [{ ackIntervalMs: 0 }, /^ackIntervalMs/],
    [{ ackEvery: -1 }, /^ackEvery/],
    [{ offlineQueueLimit: Number.NaN }, /^offlineQueueLimit/],
    [{ backoff: { baseMs: -1 } }, /^backoff\.baseMs/],
  ];
  for (const [options, message] of table) {
    assert.throws(() => new SwitchboardClient('ws://127.0.0.1:1/ws', { WebSocket, ...options }), { message });
  }
  assert.throws(() => new SwitchboardClient('not a url', { WebSocket }), { code: 'bad_url' });
});
