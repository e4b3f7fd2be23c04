// Admission limits on the handshake (503, 429, 503 + Retry-After, each counted) and the
// heartbeat end to end: a client that never pongs is cut off, a live one is not.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { WebSocket, type ClientOptions } from 'ws';
import { guard, startApp } from './helpers/app.js';
import { startSidecar } from './helpers/sidecar.js';
import { connect, TestClient } from './helpers/client.js';
import { eventually } from './helpers/eventually.js';

interface Refusal {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: any;
}

/** A handshake expected to be refused: its status, headers and JSON body. */
function refused(url: string, options: ClientOptions = {}): Promise<Refusal> {
  return guard(new Promise<Refusal>((resolve, reject) => {
    const ws = new WebSocket(url, options);
    ws.on('open', () => { ws.terminate(); reject(new Error('the handshake was accepted')); });
    ws.on('error', (err) => reject(err));
    ws.on('unexpected-response', (_req, res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let body: unknown = text;
        try { body = JSON.parse(text); } catch { /* not JSON */ }
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body });
        ws.terminate();
      });
    });
  }), `refusal of ${url}`);
}

/** Tries to connect until it works (a freed slot takes a moment to be seen); bounded. */
async function connectSoon(url: string, options?: ClientOptions, ms = 2_000): Promise<TestClient> {
  const got: { client?: TestClient; last?: unknown } = {};
  await eventually(async () => {
    try {
      got.client = await connect(url, undefined, options);
      return true;
    } catch (err) {
      got.last = err;
      return false;
    }
  }, () => `a connection to ${url} (last refused: ${String(got.last)})`, ms, 40);
  return got.client!;
}

async function metric(sc: { control: (m: string, p: string) => Promise<{ text: string }> }, series: string): Promise<number | null> {
  const text = (await sc.control('GET', '/metrics')).text;
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? null : Number(line.slice(series.length + 1));
}

test('limits.maxConnections: the next handshake gets 503; a freed slot lets a new one in', async (t) => {
  const app = await startApp();
  const sc = await startSidecar(app.url, { limits: { maxConnections: 2 } });
  const clients: TestClient[] = [];
  t.after(async () => { for (const c of clients) await c.close().catch(() => {}); await sc.close(); await app.close(); });

  clients.push(await connect(sc.wsUrl()), await connect(sc.wsUrl()));
  const r = await refused(sc.wsUrl());
  assert.equal(r.status, 503);
  assert.equal(r.body.error, 'too_many_connections');
  assert.equal(typeof r.body.message, 'string');
  assert.equal((await refused(sc.wsUrl())).status, 503);
  assert.equal(app.byPath('/ws/connect').length, 2, 'a refused handshake never reaches the app');
  assert.equal(await metric(sc, 'switchboard_connections_total{result="too_many_connections"}'), 2);
  assert.equal(await metric(sc, 'switchboard_connections_total{result="accepted"}'), 2);

  // Plain HTTP is not a connection: the app stays reachable through the sidecar.
  assert.equal((await fetch(`${sc.httpUrl}/anything`)).status, 204);

  await clients.shift()!.close();
  clients.push(await connectSoon(sc.wsUrl()));
  assert.equal((await refused(sc.wsUrl())).status, 503, 'the limit still holds with the new client');
  assert.equal(await metric(sc, 'switchboard_connections_total{result="accepted"}'), 3);
});

test('limits.maxConnectionsPerIp: 429 for that address, another address still connects', async (t) => {
  const app = await startApp();
  const sc = await startSidecar(app.url, { limits: { maxConnectionsPerIp: 2 } });
  const clients: TestClient[] = [];
  t.after(async () => { for (const c of clients) await c.close().catch(() => {}); await sc.close(); await app.close(); });
  const one = { localAddress: '127.0.0.1' };
  const two = { localAddress: '127.0.0.2' };

  clients.push(await connect(sc.wsUrl(), undefined, one), await connect(sc.wsUrl(), undefined, one));
  const r = await refused(sc.wsUrl(), one);
  assert.equal(r.status, 429);
  assert.equal(r.body.error, 'too_many_per_ip');

  const other = await connect(sc.wsUrl('/ws?from=two'), undefined, two);
  clients.push(other);
  const seen = (await app.waitFor((q) => q.url === '/ws/connect' && q.json().query.from === 'two')).json();
  assert.equal(seen.remoteAddress, '127.0.0.2');
  clients.push(await connect(sc.wsUrl(), undefined, two));
  assert.equal((await refused(sc.wsUrl(), two)).status, 429, 'each address has its own count');
  assert.equal(await metric(sc, 'switchboard_connections_total{result="too_many_per_ip"}'), 2);

  await clients.shift()!.close();
  clients.push(await connectSoon(sc.wsUrl(), one));
  assert.equal((await refused(sc.wsUrl(), one)).status, 429);
  assert.equal(await metric(sc, 'switchboard_connections_total{result="too_many_per_ip"}'), 3);
});

test('limits.connectRatePerSec / connectBurst: beyond the burst, 503 with Retry-After; later it admits again', async (t) => {
  const app = await startApp();
  const sc = await startSidecar(app.url, { limits: { connectRatePerSec: 2, connectBurst: 2 } });
  const clients: TestClient[] = [];
  t.after(async () => { for (const c of clients) await c.close().catch(() => {}); await sc.close(); await app.close(); });

  clients.push(await connect(sc.wsUrl()), await connect(sc.wsUrl()));
  const r = await refused(sc.wsUrl());
  assert.equal(r.status, 503);
  assert.equal(r.body.error, 'rate_limited');
  const retryAfter = String(r.headers['retry-after']);
  assert.match(retryAfter, /^\d+$/, 'Retry-After is whole seconds');
  assert.ok(Number(retryAfter) >= 1);
  assert.equal(await metric(sc, 'switchboard_connections_total{result="rate_limited"}'), 1);
  assert.equal(app.byPath('/ws/connect').length, 2);

  clients.push(await connectSoon(sc.wsUrl(), undefined, 2_400));
  assert.equal(await metric(sc, 'switchboard_connections_total{result="accepted"}'), 3);
});

test('heartbeat: a client that never answers pings is terminated and the app hears of it; a live one stays', async (t) => {
  const app = await startApp();
  // A little slack in the timeout so a loaded machine's slow pong is not a miss.
  const sc = await startSidecar(app.url, { heartbeat: { intervalMs: 100, timeoutMs: 250 } });
  const clients: TestClient[] = [];
  t.after(async () => { for (const c of clients) await c.close().catch(() => {}); await sc.close(); await app.close(); });

  const live = await connect(sc.wsUrl('/ws?who=live'));
  clients.push(live);
  let livePings = 0;
  live.ws.on('ping', () => { livePings++; });

  const mute = await connect(sc.wsUrl('/ws?who=mute'), undefined, { autoPong: false });
  clients.push(mute);
  let mutePings = 0;
  mute.ws.on('ping', () => { mutePings++; });
  const muteId = (await app.waitFor((r) => r.url === '/ws/connect' && r.json().query.who === 'mute')).json().connection;

  const muteClosed = await guard(mute.closed, 'the mute client to be cut off', 5000);
  assert.equal(muteClosed.code, 1006, 'terminated by the server: no close frame');
  assert.ok(mutePings >= 1, 'it was pinged before being cut off');
  const disc = await app.waitFor((r) => r.url === '/ws/disconnect' && r.json().connection === muteId, 'disconnect webhook of the mute client');
  assert.equal(disc.json().code, 1006);
  assert.equal((await sc.control('GET', `/v1/connections/${muteId}`)).status, 404);

  // Five intervals' worth of pings, all answered: the live client is still there.
  await eventually(() => livePings >= 5 || live.ws.readyState !== WebSocket.OPEN, () => `five pings to the live client (got ${livePings})`, 3_000);
  assert.equal(live.ws.readyState, WebSocket.OPEN, `a client answering every ping was cut off after ${livePings} pings`);
  assert.ok(livePings >= 5, `live client got ${livePings} pings`);
  const liveId = (await app.waitFor((r) => r.url === '/ws/connect' && r.json().query.who === 'live')).json().connection;
  assert.equal((await sc.control('GET', `/v1/connections/${liveId}`)).status, 200);
  assert.equal(app.byPath('/ws/disconnect').length, 1);
});

test('heartbeat: a client that never pongs but keeps sending frames is not cut off', async (t) => {
  const app = await startApp();
  const sc = await startSidecar(app.url, { heartbeat: { intervalMs: 100, timeoutMs: 100 } });
  const busy = await connect(sc.wsUrl(), undefined, { autoPong: false });
  t.after(async () => { await busy.close().catch(() => {}); await sc.close(); await app.close(); });

  // 30 frames 20 ms apart: six intervals, never 100 ms of silence.
  for (let i = 0; i < 30; i++) {
    busy.send(`tick ${i}`);
    await new Promise((r) => setTimeout(r, 20));
  }
  await app.waitFor((r) => r.url === '/ws/message' && r.text === 'tick 29', 'the last frame');
  assert.equal(busy.ws.readyState, WebSocket.OPEN);
  assert.equal(app.byPath('/ws/disconnect').length, 0);
});

test('limits.listenBacklog sets the public port\'s accept queue (Node would use 511)', async (t) => {
  const app = await startApp();
  const sc = await startSidecar(app.url, { limits: { listenBacklog: 1234 } });
  t.after(async () => { await sc.close(); await app.close(); });
  const port = new URL(sc.wsUrl()).port;
  // For a listening socket, ss reports the accept queue's size as Send-Q.
  const line = execFileSync('ss', ['-Hltn', `sport = :${port}`]).toString().trim();
  const sendQ = Number(line.split(/\s+/)[2]);
  const somaxconn = Number(readFileSync('/proc/sys/net/core/somaxconn', 'utf8'));
  assert.equal(sendQ, Math.min(1234, somaxconn), line);
});
