// The outbox end to end: a client that stops reading makes pushes queue in its session's
// outbox; then overflow, drop-oldest, coalescing, lossy and TTL are seen from the client.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import type { Socket } from 'node:net';
import { startApp } from './helpers/app.js';
import { startSidecar, type Sidecar } from './helpers/sidecar.js';
import { connect, connectReliable, type TestClient } from './helpers/client.js';
import { eventually } from './helpers/eventually.js';

type Mode = 'raw' | 'reliable';
const MODES: readonly Mode[] = ['raw', 'reliable'];

/** Fillers are big, so the socket buffer crosses the high-water mark in a few pushes. */
const FILLER = 'F'.repeat(200_000);

/**
 * 16 KiB, the socket's own writable high-water mark: above it a write always ends in a
 * 'drain' event. (Below it see the last test.)
 */
const HIGH_WATER = 16_384;

async function setup(t: TestContext, mode: Mode, outbox: Record<string, unknown>) {
  const app = await startApp();
  const sc = await startSidecar(app.url, { session: { outbox: { highWaterBytes: HIGH_WATER, maxMessages: 4, ...outbox } } });
  const clients: TestClient[] = [];
  t.after(async () => {
    await Promise.all(clients.map((c) => { c.ws.terminate(); return c.closed; }));
    await sc.close();
    await app.close();
  });
  let id: string;
  let client: TestClient;
  if (mode === 'reliable') {
    const r = await connectReliable(sc.wsUrl());
    client = r.client;
    id = r.welcome.session;
  } else {
    client = await connect(sc.wsUrl());
    id = (await app.waitFor((r) => r.url === '/ws/connect')).json().connection;
  }
  clients.push(client);
  return { sc, client, id };
}

function socketOf(c: TestClient): Socket {
  return (c.ws as unknown as { _socket: Socket })._socket;
}

const send = (sc: Sidecar, id: string, body: string, headers: Record<string, string> = {}) =>
  sc.control('POST', `/v1/connections/${id}/messages`, body, { 'content-type': 'text/plain', ...headers });

/**
 * Stops the client reading, then pushes fillers until one has to wait in the outbox.
 * Returns how many fillers were pushed (the last one is queued, the others were written).
 */
async function stall(sc: Sidecar, c: TestClient, id: string): Promise<number> {
  socketOf(c).pause();
  for (let n = 1; n <= 200; n++) {
    const res = await send(sc, id, FILLER);
    assert.equal(res.status, 202);
    if (res.json.queued === 1) return n;
    assert.equal(res.json.delivered, 1);
  }
  assert.fail('the socket never filled up');
}

interface Read {
  /** Seqs (reliable) or count (raw) of the fillers read. */
  readonly fillers: number[];
  /** Every other frame: text for raw clients, the parsed frame for reliable ones. */
  readonly rest: any[];
}

/** Lets the client read again and collects frames until `last` is seen. */
async function resumeAndRead(c: TestClient, mode: Mode, last: string): Promise<Read> {
  socketOf(c).resume();
  const fillers: number[] = [];
  const rest: any[] = [];
  for (let i = 0; i < 1000; i++) {
    const f = await c.next(`frames up to ${last}`);
    if (mode === 'raw') {
      if (f.text === FILLER) fillers.push(fillers.length + 1);
      else rest.push(f.text);
      if (f.text === last) return { fillers, rest };
    } else {
      const frame = f.json();
      if (frame.type === 'message' && frame.data === FILLER) fillers.push(frame.seq);
      else rest.push(frame);
      if (frame.type === 'message' && frame.data === last) return { fillers, rest };
    }
  }
  assert.fail(`never read ${last}`);
}

async function dropped(sc: Sidecar, reason: string): Promise<number> {
  const m = new RegExp(`^switchboard_dropped_messages_total\\{reason="${reason}"\\} (\\d+)$`, 'm').exec((await sc.control('GET', '/metrics')).text);
  return m ? Number(m[1]) : 0;
}

/** The fillers arrive whole and in order, with no hole: all of them, or all but the queued one when it was dropped. */
function assertFillers(read: Read, pushed: number, queuedOneDropped = false): void {
  const n = queuedOneDropped ? pushed - 1 : pushed;
  assert.deepEqual(read.fillers, Array.from({ length: n }, (_, i) => i + 1));
}

const msg = (seq: number, data: unknown) => ({ type: 'message', seq, data });

for (const mode of MODES) {
  test(`${mode}: onOverflow close: a full outbox closes the slow consumer with 4008, counted as overflow`, async (t) => {
    const { sc, client, id } = await setup(t, mode, { onOverflow: 'close' });
    await stall(sc, client, id);
    for (const m of ['m1', 'm2', 'm3']) assert.deepEqual((await send(sc, id, m)).json, { delivered: 0, queued: 1, dropped: 0 });
    assert.deepEqual((await send(sc, id, 'm4')).json, { delivered: 0, queued: 0, dropped: 1 });
    socketOf(client).resume();
    const closed = await client.closed;
    assert.equal(closed.code, 4008);
    assert.equal(await dropped(sc, 'overflow'), 1);
    assert.match((await sc.control('GET', '/metrics')).text, /^switchboard_disconnections_total\{code="4008"\} 1$/m);
    // The session is over: not detached waiting for a resume.
    await eventually(async () => (await sc.control('GET', `/v1/connections/${id}`)).status === 404, 'the session over (404), not detached waiting for a resume', 2_000);
  });

  test(`${mode}: onOverflow drop-oldest: the client gets the newest messages${mode === 'reliable' ? ', after a gap frame' : ''}`, async (t) => {
    const { sc, client, id } = await setup(t, mode, { onOverflow: 'drop-oldest' });
    const pushed = await stall(sc, client, id);
    for (const m of ['m1', 'm2', 'm3', 'm4', 'm5', 'm6']) assert.deepEqual((await send(sc, id, m)).json, { delivered: 0, queued: 1, dropped: 0 });
    assert.equal(await dropped(sc, 'overflow'), 3, 'the queued filler, m1 and m2 made room');
    const read = await resumeAndRead(client, mode, 'm6');
    assertFillers(read, pushed, true);
    if (mode === 'raw') {
      assert.deepEqual(read.rest, ['m3', 'm4', 'm5', 'm6']);
    } else {
      const first = pushed + 3; // the queued filler had seq `pushed`, then m1, m2 were dropped
      assert.deepEqual(read.rest, [
        { type: 'gap', from: pushed, to: first - 1 },
        msg(first, 'm3'), msg(first + 1, 'm4'), msg(first + 2, 'm5'), msg(first + 3, 'm6'),
      ]);
    }
    assert.equal(client.ws.readyState, client.ws.OPEN, 'drop-oldest keeps the connection');
  });

  test(`${mode}: a coalesced push replaces the queued one in place${mode === 'reliable' ? ', keeping its seq: no gap' : ''}`, async (t) => {
    const { sc, client, id } = await setup(t, mode, {});
    const pushed = await stall(sc, client, id);
    const key = { 'x-switchboard-coalesce-key': 'price' };
    assert.deepEqual((await send(sc, id, 'price 1', key)).json, { delivered: 0, queued: 1, dropped: 0 });
    assert.deepEqual((await send(sc, id, 'other')).json, { delivered: 0, queued: 1, dropped: 0 });
    assert.deepEqual((await send(sc, id, 'price 2', key)).json, { delivered: 0, queued: 1, dropped: 0 });
    assert.deepEqual((await send(sc, id, 'price 3', key)).json, { delivered: 0, queued: 1, dropped: 0 });
    assert.deepEqual((await send(sc, id, 'last')).json, { delivered: 0, queued: 1, dropped: 0 }, 'coalescing freed room: no overflow');
    if (mode === 'raw') assert.equal((await sc.control('GET', `/v1/connections/${id}`)).json.outbox.messages, 4);
    const read = await resumeAndRead(client, mode, 'last');
    assertFillers(read, pushed);
    if (mode === 'raw') assert.deepEqual(read.rest, ['price 3', 'other', 'last']);
    else assert.deepEqual(read.rest, [msg(pushed + 1, 'price 3'), msg(pushed + 2, 'other'), msg(pushed + 3, 'last')]);
    assert.equal(await dropped(sc, 'overflow'), 0);
  });

  test(`${mode}: lossy pushes are dropped first and never close the connection`, async (t) => {
    const { sc, client, id } = await setup(t, mode, { onOverflow: 'close' });
    const pushed = await stall(sc, client, id);
    const lossy = { 'x-switchboard-class': 'lossy' };
    assert.equal((await send(sc, id, 'L1', lossy)).json.queued, 1);
    assert.equal((await send(sc, id, 'D1')).json.queued, 1);
    assert.equal((await send(sc, id, 'D2')).json.queued, 1);
    assert.deepEqual((await send(sc, id, 'D3')).json, { delivered: 0, queued: 1, dropped: 0 }, 'L1 made room; no 4008');
    assert.deepEqual((await send(sc, id, 'L2', lossy)).json, { delivered: 0, queued: 0, dropped: 1 }, 'full of durable messages: the lossy push goes');
    assert.equal(await dropped(sc, 'lossy'), 2);
    assert.equal(await dropped(sc, 'overflow'), 0);
    const read = await resumeAndRead(client, mode, 'D3');
    assertFillers(read, pushed);
    const s = pushed + 1; // L1's seq
    if (mode === 'raw') assert.deepEqual(read.rest, ['D1', 'D2', 'D3']);
    else assert.deepEqual(read.rest, [{ type: 'gap', from: s, to: s }, msg(s + 1, 'D1'), msg(s + 2, 'D2'), msg(s + 3, 'D3')]);
    assert.deepEqual((await send(sc, id, 'after')).json, { delivered: 1, queued: 0, dropped: 0 });
    if (mode === 'raw') {
      assert.equal((await client.next()).text, 'after');
    } else {
      // L2 was given seq s+4 when it was dropped: the client learns of it before the next message.
      assert.deepEqual(await client.nextJson(), { type: 'gap', from: s + 4, to: s + 4 });
      assert.deepEqual(await client.nextJson(), msg(s + 5, 'after'));
    }
  });

  test(`${mode}: a push whose TTL ran out while queued is not sent${mode === 'reliable' ? ' (a gap instead)' : ''}`, async (t) => {
    const { sc, client, id } = await setup(t, mode, {});
    const pushed = await stall(sc, client, id);
    assert.equal((await send(sc, id, 'short-lived', { 'x-switchboard-ttl-ms': '50' })).json.queued, 1);
    const expiresBy = sc.sb.clock.now() + 50;
    assert.equal((await send(sc, id, 'long-lived', { 'x-switchboard-ttl-ms': '600000' })).json.queued, 1);
    assert.equal((await send(sc, id, 'forever')).json.queued, 1);
    // Past the short TTL by the sidecar's own clock, before the client reads.
    await eventually(() => sc.sb.clock.now() > expiresBy, 'the sidecar clock past the short TTL');
    const read = await resumeAndRead(client, mode, 'forever');
    assertFillers(read, pushed);
    const s = pushed + 1;
    if (mode === 'raw') assert.deepEqual(read.rest, ['long-lived', 'forever']);
    else assert.deepEqual(read.rest, [{ type: 'gap', from: s, to: s }, msg(s + 1, 'long-lived'), msg(s + 2, 'forever')]);
    assert.equal(await dropped(sc, 'ttl'), 1);
  });
}

test('with session.outbox.highWaterBytes 0, small queued messages are still sent once the client reads again', async (t) => {
  const app = await startApp();
  const sc = await startSidecar(app.url, { session: { outbox: { highWaterBytes: 0, maxMessages: 100_000, maxBytes: 64 * 1024 * 1024 } } });
  const client = await connect(sc.wsUrl());
  t.after(async () => { client.ws.terminate(); await client.closed; await sc.close(); await app.close(); });
  const id = (await app.waitFor((r) => r.url === '/ws/connect')).json().connection;

  socketOf(client).pause();
  const item = { to: { connection: id }, data: 's'.repeat(1000) };
  let delivered = 0;
  let queued = 0;
  for (let i = 0; i < 50 && queued === 0; i++) {
    const res = await sc.control('POST', '/v1/batch', { messages: Array.from({ length: 1000 }, () => item) });
    assert.equal(res.status, 202);
    delivered += res.json.delivered;
    queued += res.json.queued;
  }
  assert.ok(queued > 0, 'messages had to wait in the outbox');
  socketOf(client).resume();
  const expected = delivered + queued;
  let got = 0;
  await eventually(() => {
    got += client.frames.length;
    client.frames.length = 0;
    return got >= expected;
  }, () => `all ${expected} frames (${expected - got} never arrived)`, 5_000);
  assert.equal(got, expected, 'no frame twice');
  assert.equal((await sc.control('GET', `/v1/connections/${id}`)).json.outbox.messages, 0, 'nothing left in the outbox');
});
