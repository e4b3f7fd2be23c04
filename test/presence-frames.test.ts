// Presence frames (`presence.frames`): a channel's subscribers get its presence events as frames,
// numbered with the messages in reliable mode, acked and replayed on resume; a JSON text frame in
// raw mode (or none); an `event: presence` on SSE; the client library's `presence` event. A real
// sidecar, real clients, a real app. "Nothing happened" is shown by a marker push arriving with no
// frame before it: a session's frames come in order.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { WebSocket } from 'ws';
import { startApp, type TestApp } from './helpers/app.js';
import { merge, startSidecar, type Sidecar } from './helpers/sidecar.js';
import { connect, connectReliable, type TestClient } from './helpers/client.js';
import { connectAnswer } from './helpers/cluster.js';
import { eventually } from './helpers/eventually.js';
import { openStream, type Stream } from './sse-stream.js';
import { validateConfig, ConfigError } from '../proxy/config.js';
import { channelMatcher, channelPatternProblem } from '../proxy/channel-pattern.js';
import { SwitchboardClient, type PresenceEvent } from '../client/index.js';
import { parseFrame } from '../client/protocol.js';

const FRAMES = { presence: { frames: ['room:*', 'lobby'] } };

async function setup(t: TestContext, overrides: Record<string, unknown> = {}) {
  const app: TestApp = await startApp((r) => (r.url === '/ws/presence' ? { status: 204 } : connectAnswer(r)));
  const sc: Sidecar = await startSidecar(app.url, merge(FRAMES, overrides));
  const clients: TestClient[] = [];
  const streams: Stream[] = [];
  t.after(async () => {
    for (const c of clients) c.ws.terminate();
    for (const s of streams) s.drop();
    await sc.close();
    await app.close();
  });
  /** A reliable client (user and channels by query), with its welcome read. */
  const reliable = async (query: string, url = sc.wsUrl(`/ws${query}`)) => {
    const { client, welcome } = await connectReliable(url);
    clients.push(client);
    return { client, welcome };
  };
  const raw = async (query: string) => {
    const c = await connect(sc.wsUrl(`/ws${query}`));
    clients.push(c);
    return c;
  };
  const sse = async (query: string, headers: Record<string, string> = {}) => {
    const s = await openStream(`${sc.httpUrl}/ws${query}`, { accept: 'text/event-stream', ...headers });
    streams.push(s);
    return s;
  };
  /** Pushes a marker message to a channel. */
  const mark = async (channel: string, text: string) => assert.equal((await sc.control('POST', `/v1/channels/${channel}/messages`, { mark: text })).status, 202);
  const connections = async (user: string) => (await sc.control('GET', `/v1/users/${user}`)).json.connections as number;
  return { app, sc, reliable, raw, sse, mark, connections };
}

/** The frames a reliable client reads up to (and with) the marker message `text`, as short lines. */
async function upTo(client: TestClient, text: string): Promise<string[]> {
  const out: string[] = [];
  for (;;) {
    const f = await client.nextJson(`frames up to the marker ${text}`);
    out.push(f.type === 'presence' ? `${f.seq} ${f.event} ${f.channel} ${f.user}` : f.type === 'message' ? `${f.seq} message ${JSON.stringify(f.data)}` : `${f.type}`);
    if (f.type === 'message' && f.data?.mark === text) return out;
  }
}

test('reliable: each event of the channel as a frame with the next seq, in order with the messages; the frame has every field', async (t) => {
  const { reliable, mark } = await setup(t);
  const { client: ann } = await reliable('?user=ann&ch=room:1');
  await mark('room:1', 'a');
  assert.deepEqual(await upTo(ann, 'a'), ['1 channel_occupied room:1 ann', '2 member_added room:1 ann', '3 message {"mark":"a"}']);
  const { client: bob } = await reliable('?user=bob&ch=room:1');
  await mark('room:1', 'b');
  assert.deepEqual(await upTo(ann, 'b'), ['4 member_added room:1 bob', '5 message {"mark":"b"}']);
  // The newcomer sees its own join, numbered in its own session.
  assert.deepEqual(await upTo(bob, 'b'), ['1 member_added room:1 bob', '2 message {"mark":"b"}']);
  await bob.close(1000);
  const removed = await ann.nextJson('bob removed');
  assert.deepEqual(Object.keys(removed), ['type', 'seq', 'event', 'channel', 'user', 'id', 'at']);
  assert.equal(removed.type, 'presence');
  assert.equal(removed.seq, 6);
  assert.equal(removed.event, 'member_removed');
  assert.equal(removed.user, 'bob');
  assert.match(removed.id, /^[a-z0-9]+-0-[0-9a-f]+-[0-9a-z]+$/);
  assert.ok(!Number.isNaN(Date.parse(removed.at)) && removed.at === new Date(removed.at).toISOString(), removed.at);
});

test('only the channels the patterns name: an exact name, a prefix with *; another channel\'s subscriber sees none of them', async (t) => {
  const { reliable, mark } = await setup(t);
  const { client: lobby } = await reliable('?user=lou&ch=lobby');
  const { client: plain } = await reliable('?user=pat&ch=room');
  const { client: other } = await reliable('?user=oli&ch=room:2');
  await reliable('?user=kim&ch=lobby,room,room:1');
  for (const c of ['lobby', 'room', 'room:2']) await mark(c, c);
  assert.deepEqual(await upTo(lobby, 'lobby'), ['1 channel_occupied lobby lou', '2 member_added lobby lou', '3 member_added lobby kim', '4 message {"mark":"lobby"}']);
  // `room:*` does not name `room`: no frames there at all.
  assert.deepEqual(await upTo(plain, 'room'), ['1 message {"mark":"room"}']);
  // room:2's subscriber sees its own channel's events, not room:1's (kim joined room:1 only).
  assert.deepEqual(await upTo(other, 'room:2'), ['1 channel_occupied room:2 oli', '2 member_added room:2 oli', '3 message {"mark":"room:2"}']);
});

test('three tabs of one user: one member_added; two of them closing: nothing; the last: member_removed', async (t) => {
  const { reliable, mark, connections } = await setup(t);
  const { client: watcher } = await reliable('?user=wes&ch=room:x');
  const tabs = [];
  for (let i = 0; i < 3; i++) tabs.push((await reliable('?user=ann&ch=room:x')).client);
  await mark('room:x', 'in');
  assert.deepEqual(await upTo(watcher, 'in'), ['1 channel_occupied room:x wes', '2 member_added room:x wes', '3 member_added room:x ann', '4 message {"mark":"in"}']);
  // 1000 ends a reliable session at once (no grace to wait out).
  await tabs[0].close(1000);
  await tabs[1].close(1000);
  await eventually(async () => (await connections('ann')) === 1, 'two tabs gone');
  await mark('room:x', 'two');
  assert.deepEqual(await upTo(watcher, 'two'), ['5 message {"mark":"two"}']);
  await tabs[2].close(1000);
  await mark('room:x', 'three');
  assert.deepEqual(await upTo(watcher, 'three'), ['6 member_removed room:x ann', '7 message {"mark":"three"}']);
});

test('acked and replayed on resume: frames sent while the client was away come after its lastSeq, in order, once; acks free them', async (t) => {
  const { sc, reliable, mark } = await setup(t);
  const { client: ann, welcome } = await reliable('?user=ann&ch=room:r');
  await mark('room:r', 'a');
  assert.deepEqual(await upTo(ann, 'a'), ['1 channel_occupied room:r ann', '2 member_added room:r ann', '3 message {"mark":"a"}']);
  const outbox = async () => (await sc.control('GET', `/v1/connections/${welcome.session}`)).json.outbox.messages as number;
  assert.equal(await outbox(), 3, 'held until acked');
  ann.send({ type: 'ack', seq: 2 });
  await eventually(async () => (await outbox()) === 1, 'the two presence frames acked');
  // The socket drops (no close frame): the session waits out its grace, still a member.
  ann.ws.terminate();
  await eventually(async () => (await sc.control('GET', `/v1/connections/${welcome.session}`)).json.state === 'detached', 'detached');
  const { client: bob } = await reliable('?user=bob&ch=room:r');
  await bob.close(1000);
  await mark('room:r', 'b');
  const { client: back, welcome: again } = await reliable(`?resume=${encodeURIComponent(welcome.token)}&lastSeq=2`);
  assert.equal(again.resumed, true);
  assert.deepEqual(await upTo(back, 'b'), ['3 message {"mark":"a"}', '4 member_added room:r bob', '5 member_removed room:r bob', '6 message {"mark":"b"}']);
});

test('the outbox bounds count presence frames: over maxMessages while detached, drop-oldest loses the oldest (a gap on resume); close ends the session 4008', async (t) => {
  const { reliable, sc } = await setup(t, { session: { outbox: { maxMessages: 3, onOverflow: 'drop-oldest' } } });
  const { client: ann, welcome } = await reliable('?user=ann&ch=room:o');
  assert.deepEqual([(await ann.nextJson()).seq, (await ann.nextJson()).seq], [1, 2]);
  ann.send({ type: 'ack', seq: 2 });
  await eventually(async () => (await sc.control('GET', `/v1/connections/${welcome.session}`)).json.outbox.messages === 0, 'acked');
  ann.ws.terminate();
  await eventually(async () => (await sc.control('GET', `/v1/connections/${welcome.session}`)).json.state === 'detached', 'detached');
  for (let i = 1; i <= 5; i++) await reliable(`?user=u${i}&ch=room:o`);
  await eventually(async () => (await sc.control('GET', `/v1/connections/${welcome.session}`)).json.outbox.messages === 3, 'three held');
  const { client: back, welcome: again } = await reliable(`?resume=${encodeURIComponent(welcome.token)}&lastSeq=2`);
  assert.equal(again.resumed, true);
  assert.deepEqual(await back.nextJson(), { type: 'gap', from: 3, to: 4 });
  const held = [await back.nextJson(), await back.nextJson(), await back.nextJson()];
  assert.deepEqual(held.map((f) => `${f.seq} ${f.event} ${f.user}`), ['5 member_added u3', '6 member_added u4', '7 member_added u5']);

  const strict = await setup(t, { session: { outbox: { maxMessages: 3 } } });
  const { client: bea, welcome: hers } = await strict.reliable('?user=bea&ch=room:o');
  bea.ws.terminate();
  await eventually(async () => (await strict.sc.control('GET', `/v1/connections/${hers.session}`)).json.state === 'detached', 'detached');
  for (let i = 1; i <= 4; i++) await strict.reliable(`?user=v${i}&ch=room:o`);
  // Its two written frames make way (unacked, evicted); v1's to v3's fill the outbox: v4's is one too many.
  await eventually(async () => (await strict.sc.control('GET', `/v1/connections/${hers.session}`)).status === 404, 'the session ended 4008');
  const { welcome: fresh } = await strict.reliable(`?resume=${encodeURIComponent(hers.token)}&lastSeq=0`);
  assert.equal(fresh.resumed, false);
});

test('a frame that overflows a subscriber\'s outbox ends that session after the change that emitted it: each event once, in order', async (t) => {
  const { app, reliable, sc } = await setup(t, { webhooks: { paths: { presence: '/ws/presence' } }, presence: { batchMs: 0 }, session: { outbox: { maxMessages: 1 } } });
  const { client: ann, welcome } = await reliable('?user=ann&ch=room:v');
  assert.equal((await ann.nextJson()).event, 'channel_occupied');
  ann.ws.terminate();
  await eventually(async () => (await sc.control('GET', `/v1/connections/${welcome.session}`)).json.state === 'detached', 'detached');
  // bob's join takes ann's one place; his leave is one frame too many: ann's session ends (4008).
  const { client: bob } = await reliable('?user=bob&ch=room:v');
  await bob.close(1000);
  const events = () => app.byPath('/ws/presence').flatMap((r) => r.json().events as Array<{ type: string; user: string }>).map((e) => `${e.type} ${e.user}`);
  await eventually(() => events().includes('channel_vacated ann'), () => `the channel vacated; got ${JSON.stringify(events())}`);
  await eventually(async () => (await sc.control('GET', '/v1/channels/room:v/presence')).json.members.length === 0, 'nobody left');
  assert.deepEqual(events(), ['channel_occupied ann', 'member_added ann', 'member_added bob', 'member_removed bob', 'member_removed ann', 'channel_vacated ann']);
});

test('raw mode: a JSON text frame {"type":"presence","event",…} without seq; with rawFrames "none", no frame at all', async (t) => {
  const { raw, mark } = await setup(t);
  const ann = await raw('?user=ann&ch=lobby');
  await mark('lobby', 'a');
  const first = await ann.next();
  assert.equal(first.binary, false);
  const occupied = first.json();
  assert.deepEqual(Object.keys(occupied), ['type', 'event', 'channel', 'user', 'id', 'at']);
  assert.deepEqual([occupied.type, occupied.event, occupied.channel, occupied.user], ['presence', 'channel_occupied', 'lobby', 'ann']);
  assert.deepEqual((await ann.nextJson()).event, 'member_added');
  assert.deepEqual(await ann.nextJson(), { mark: 'a' });

  const quiet = await setup(t, { presence: { rawFrames: 'none' } });
  const bea = await quiet.raw('?user=bea&ch=lobby');
  const { client: watcher } = await quiet.reliable('?user=wes&ch=lobby');
  await quiet.mark('lobby', 'q');
  assert.deepEqual(await bea.nextJson(), { mark: 'q' }, 'no presence frame before the marker');
  // Reliable sessions still get them.
  assert.deepEqual(await upTo(watcher, 'q'), ['1 member_added lobby wes', '2 message {"mark":"q"}']);
});

test('SSE: an event "presence" with id <seq> and the event\'s JSON as data, numbered with the messages; Last-Event-ID resumes after it', async (t) => {
  const { sse, mark, reliable } = await setup(t);
  const s = await sse('?user=ann&ch=room:s');
  await mark('room:s', 'a');
  await s.next((e) => e.event === 'message', 'the marker');
  const events = s.events.filter((e) => e.event !== 'welcome');
  assert.deepEqual(events.map((e) => [e.event, e.lastEventId, e.hasId]), [['presence', '1', true], ['presence', '2', true], ['message', '3', true]]);
  const added = JSON.parse(events[1].data);
  assert.deepEqual(Object.keys(added), ['event', 'channel', 'user', 'id', 'at']);
  assert.deepEqual([added.event, added.channel, added.user], ['member_added', 'room:s', 'ann']);
  // The stream drops; bob comes and goes; the browser comes back with its cookie and the last id.
  s.drop();
  const { client: bob } = await reliable('?user=bob&ch=room:s');
  await bob.close(1000);
  await mark('room:s', 'b');
  const back = await sse('?user=ann&ch=room:s', { cookie: s.cookies().join('; '), 'last-event-id': '3' });
  await back.next((e) => e.event === 'message', 'the marker after the resume');
  assert.equal(JSON.parse(back.events[0].data).resumed, true);
  assert.deepEqual(back.events.slice(1).map((e) => [e.event, e.lastEventId, e.event === 'presence' ? JSON.parse(e.data).event : e.data]),
    [['presence', '4', 'member_added'], ['presence', '5', 'member_removed'], ['message', '6', '{"mark":"b"}']]);
});

test('the client library: a `presence` event per frame, with its seq, in order with the messages', async (t) => {
  const { sc, mark } = await setup(t);
  const client = new SwitchboardClient(sc.wsUrl('/ws?user=ann&ch=room:c'), { WebSocket, backoff: { baseMs: 10, capMs: 50 } });
  t.after(() => client.close());
  const seen: string[] = [];
  const events: PresenceEvent[] = [];
  client.on('presence', (e, { seq }) => { events.push(e); seen.push(`${seq} ${e.event} ${e.user}`); });
  client.on('message', (data, { seq }) => seen.push(`${seq} message ${JSON.stringify(data)}`));
  await new Promise<void>((resolve) => client.on('open', () => resolve()));
  await mark('room:c', 'a');
  await eventually(() => seen.length === 3, () => `three events; got ${JSON.stringify(seen)}`);
  const other = new SwitchboardClient(sc.wsUrl('/ws?user=bob&ch=room:c'), { WebSocket });
  await new Promise<void>((resolve) => other.on('open', () => resolve()));
  await mark('room:c', 'b');
  await eventually(() => seen.length === 5, () => `five events; got ${JSON.stringify(seen)}`);
  await sc.sb.directory.close({ kind: 'user', name: 'bob' }, 4000, 'bye');
  await eventually(() => seen.length === 6, () => `bob removed; got ${JSON.stringify(seen)}`);
  await mark('room:c', 'c');
  await eventually(() => seen.length === 7, () => `seven events; got ${JSON.stringify(seen)}`);
  assert.deepEqual(seen, [
    '1 channel_occupied ann', '2 member_added ann', '3 message {"mark":"a"}',
    '4 member_added bob', '5 message {"mark":"b"}',
    '6 member_removed bob', '7 message {"mark":"c"}',
  ]);
  assert.deepEqual(Object.keys(events[1]).sort(), ['at', 'channel', 'event', 'id', 'user']);
  assert.equal(events[1].channel, 'room:c');
  other.close();
});

test('the webhook and the frames carry the same events with the same ids; frames need no webhook (and the webhook no frames)', async (t) => {
  const { app, reliable, mark } = await setup(t, { webhooks: { paths: { presence: '/ws/presence' } }, presence: { batchMs: 0 } });
  const { client: ann } = await reliable('?user=ann&ch=room:w');
  await mark('room:w', 'a');
  const frames = (await upTo(ann, 'a')).length;
  assert.equal(frames, 3);
  await eventually(() => app.byPath('/ws/presence').flatMap((r) => r.json().events).length === 2, 'the webhook\'s two events');
  const hooked = app.byPath('/ws/presence').flatMap((r) => r.json().events as Array<{ id: string; type: string }>);
  assert.deepEqual(hooked.map((e) => e.type), ['channel_occupied', 'member_added']);
  // The frames' ids are the webhook's.
  const again = await setup(t, { webhooks: { paths: { presence: '/ws/presence' } }, presence: { batchMs: 0 } });
  const { client } = await again.reliable('?user=ann&ch=room:w');
  const f1 = await client.nextJson();
  const f2 = await client.nextJson();
  await eventually(() => again.app.byPath('/ws/presence').flatMap((r) => r.json().events).length === 2, 'two events');
  assert.deepEqual(again.app.byPath('/ws/presence').flatMap((r) => r.json().events.map((e: { id: string }) => e.id)), [f1.id, f2.id]);
  // Presence webhook without frames: no frames.
  const hookOnly = await setup(t, { webhooks: { paths: { presence: '/ws/presence' } }, presence: { frames: [] } });
  const { client: c } = await hookOnly.reliable('?user=ann&ch=room:w');
  await hookOnly.mark('room:w', 'h');
  assert.deepEqual(await upTo(c, 'h'), ['1 message {"mark":"h"}']);
  await eventually(() => hookOnly.app.byPath('/ws/presence').length > 0, 'the webhook still goes');
});

test('config: bad patterns and what cannot carry the frames yet are refused, each naming its key', () => {
  const problems = (input: unknown): string[] => {
    try {
      validateConfig(input);
      return [];
    } catch (err) {
      assert.ok(err instanceof ConfigError);
      return [...err.problems];
    }
  };
  assert.deepEqual(problems({ presence: { frames: ['', 'x'.repeat(257), 7, 'room:*'] } }), [
    'presence.frames.0: expected a non-empty channel name or pattern, got ""',
    `presence.frames.1: expected a channel name or pattern of at most 256 characters, got "${'x'.repeat(56)}...`,
    'presence.frames.2: expected a channel name or pattern (a string), got 7',
  ]);
  assert.deepEqual(problems({ presence: { frames: 'room:*' } }), ['presence.frames: expected a list of channel names or patterns, got "room:*"']);
  assert.deepEqual(problems({ presence: { frames: Array.from({ length: 257 }, (_, i) => `c${i}`) } }).map((p) => p.split(',')[0]), ['presence.frames: expected at most 256 patterns']);
  assert.deepEqual(problems({ presence: { rawFrames: 'xml' } }), ['presence.rawFrames: expected "json" or "none", got "xml"']);
  assert.deepEqual(problems({ workers: 2, presence: { frames: ['room:*'] } }), [], 'with workers the primary routes them');
  assert.deepEqual(problems({ cluster: { amqp: { url: 'amqp://127.0.0.1' } }, session: { tokenSecret: 's'.repeat(32) }, presence: { frames: ['room:*'] } }), [], 'in a cluster the owner routes them');
  assert.deepEqual(validateConfig({}).presence.frames, []);
  assert.equal(validateConfig({}).presence.rawFrames, 'json');
});

test('property: any pattern list is accepted or refused with a message, never a throw; a pattern matches as * for any run of characters', () => {
  const chars = fc.constantFrom('a', 'b', ':', '*', '\u00e9', '\ud83d\ude00');
  const word = fc.array(chars, { maxLength: 8 }).map((cs) => cs.join(''));
  fc.assert(fc.property(fc.array(fc.oneof(word, fc.string(), fc.anything()), { maxLength: 5 }), (frames) => {
    let refused: unknown = null;
    try {
      validateConfig({ presence: { frames } });
    } catch (err) {
      refused = err;
    }
    if (refused !== null) {
      assert.ok(refused instanceof ConfigError);
      for (const p of refused.problems) assert.match(p, /^presence\.frames(\.\d+)?: /);
    }
  }));
  const reference = (pattern: string) => new RegExp(`^${pattern.split('*').map((s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('.*')}$`, 's');
  fc.assert(fc.property(fc.array(word.filter((w) => channelPatternProblem(w) === null), { minLength: 1, maxLength: 3 }), word.filter((w) => !w.includes('*')), (patterns, name) => {
    const expected = patterns.some((p) => reference(p).test(name));
    assert.equal(channelMatcher(patterns)(name), expected, `${JSON.stringify(patterns)} ~ ${JSON.stringify(name)}`);
  }), { numRuns: 2000 });
  assert.equal(channelMatcher(['room:*'])('room:'), true);
  assert.equal(channelMatcher(['room:*'])('room'), false);
  assert.equal(channelMatcher(['a*b*a'])('aba'), true);
  assert.equal(channelMatcher(['a*a'])('a'), false);
  assert.equal(channelMatcher([])('anything'), false);
});

test('property: the client\'s parser takes any presence-typed frame without throwing: a well-formed event or undefined', () => {
  const value = fc.oneof(fc.string(), fc.integer(), fc.constant(null), fc.constantFrom('member_added', 'member_removed', 'channel_occupied', 'channel_vacated'), fc.anything());
  const frame = fc.record({ type: fc.constant('presence'), seq: fc.oneof(fc.integer(), fc.double(), fc.string(), fc.constant(undefined)), event: value, channel: value, user: value, id: value, at: value }, { requiredKeys: ['type'] });
  fc.assert(fc.property(fc.oneof(frame.map((f) => JSON.stringify(f)), fc.string()), (text) => {
    const parsed = parseFrame(text);
    if (parsed === undefined || parsed.type !== 'presence') return;
    assert.ok(Number.isSafeInteger(parsed.seq) && parsed.seq >= 1);
    assert.ok(['member_added', 'member_removed', 'channel_occupied', 'channel_vacated'].includes(parsed.presence.event));
    for (const k of ['channel', 'user', 'id', 'at'] as const) assert.equal(typeof parsed.presence[k], 'string');
  }), { numRuns: 3000 });
});
