// Hostile handshakes: a handshake ws refuses never reaches the app and leaves no session;
// a client that leaves during the connect webhook leaves nothing behind; half-sent
// handshakes count against the limits and are cut off after limits.handshakeTimeoutMs.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connect as tcpConnect, type Socket } from 'node:net';
import { once } from 'node:events';
import { guard, startApp } from './helpers/app.js';
import { startSidecar, type Sidecar } from './helpers/sidecar.js';
import { connect, TestClient } from './helpers/client.js';
import { eventually } from './helpers/eventually.js';

const KEY = 'dGhlIHNhbXBsZSBub25jZQ==';

/** Sends a raw request on a fresh socket and returns the status line the sidecar answers. */
async function rawStatus(sc: Sidecar, request: string): Promise<number> {
  const socket = tcpConnect(sc.sb.publicAddress.port, '127.0.0.1');
  let text = '';
  socket.on('data', (d: Buffer) => { text += d.toString('latin1'); });
  socket.on('error', () => {});
  await once(socket, 'connect');
  socket.write(request);
  await guard(once(socket, 'close'), 'the sidecar to answer and close');
  const m = /^HTTP\/1\.1 (\d{3})/.exec(text);
  assert.ok(m, `an HTTP answer, got ${JSON.stringify(text.slice(0, 80))}`);
  return Number(m[1]);
}

const handshake = (lines: string[]) => `${lines.join('\r\n')}\r\n\r\n`;

test('malformed handshakes on a ws path are refused by status, reach no app, and leave no session', async (t) => {
  const app = await startApp(() => ({ status: 200 }));
  const sc = await startSidecar(app.url);
  t.after(async () => { await sc.close(); await app.close(); });
  const base = ['Host: x', 'Connection: Upgrade', 'Upgrade: websocket'];
  const cases: Array<[string, string[], number]> = [
    ['wrong version', ['GET /ws HTTP/1.1', ...base, `Sec-WebSocket-Key: ${KEY}`, 'Sec-WebSocket-Version: 99'], 400],
    ['bad key', ['GET /ws HTTP/1.1', ...base, 'Sec-WebSocket-Key: short', 'Sec-WebSocket-Version: 13'], 400],
    ['no key', ['GET /ws HTTP/1.1', ...base, 'Sec-WebSocket-Version: 13'], 400],
    ['POST', ['POST /ws HTTP/1.1', ...base, `Sec-WebSocket-Key: ${KEY}`, 'Sec-WebSocket-Version: 13', 'Content-Length: 0'], 405],
    ['h2c', ['GET /ws HTTP/1.1', 'Host: x', 'Connection: Upgrade, HTTP2-Settings', 'Upgrade: h2c', 'HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA', `Sec-WebSocket-Key: ${KEY}`, 'Sec-WebSocket-Version: 13'], 400],
    ['malformed subprotocols', ['GET /ws HTTP/1.1', ...base, `Sec-WebSocket-Key: ${KEY}`, 'Sec-WebSocket-Version: 13', 'Sec-WebSocket-Protocol: a,,b'], 400],
  ];
  for (const [what, lines, status] of cases) {
    assert.equal(await rawStatus(sc, handshake(lines)), status, what);
  }
  assert.equal(app.byPath('/ws/connect').length, 0, 'no refused handshake reached the app');
  const list = await sc.control('GET', '/v1/connections');
  assert.deepEqual(list.json.connections, [], 'no ghost sessions');
  assert.equal(sc.sb.registry.size, 0);

  // The sidecar still works.
  const ok = await connect(sc.wsUrl());
  await ok.close();
});

test('a client that leaves during the connect webhook leaves no session, and the app hears of its end once', async (t) => {
  let release!: () => void;
  const released = new Promise<void>((r) => { release = r; });
  let arrived!: () => void;
  const connectArrived = new Promise<void>((r) => { arrived = r; });
  const app = await startApp(async (r) => {
    if (r.url === '/ws/connect') {
      arrived();
      await released;
      return { status: 200, body: { user: 'u1' } };
    }
    return { status: 204 };
  });
  const sc = await startSidecar(app.url);
  t.after(async () => { await sc.close(); await app.close(); });

  const client = new TestClient(sc.wsUrl(), 'switchboard.v1');
  await guard(connectArrived, 'the connect webhook');
  client.ws.terminate();
  await guard(client.closed, 'the client to be gone');
  // The sidecar learns the client is gone when it answers the handshake (an upgraded socket is not read before).
  release();

  const disconnect = await app.waitFor((r) => r.url === '/ws/disconnect', 'the disconnect webhook');
  assert.equal(disconnect.json().user, 'u1');
  assert.equal(disconnect.json().code, 1006);
  await eventually(() => sc.sb.registry.size === 0 && sc.sb.sockets === 0, 'no session and no socket left');
  const list = await sc.control('GET', '/v1/connections');
  assert.deepEqual(list.json.connections, []);
  const pushed = await sc.control('POST', '/v1/users/u1/messages', { hi: 1 });
  assert.deepEqual(pushed.json, { delivered: 0, queued: 0, dropped: 0 }, 'nothing is queued for a ghost');
  assert.equal(app.byPath('/ws/disconnect').length, 1, 'one disconnect');
  const metrics = await sc.control('GET', '/metrics');
  assert.match(metrics.text, /switchboard_sessions 0/);
});

test('half-sent handshakes count against limits.maxConnections and are dropped after limits.handshakeTimeoutMs', async (t) => {
  const app = await startApp();
  const sc = await startSidecar(app.url, { limits: { maxConnections: 2, handshakeTimeoutMs: 400 } });
  const slow: Socket[] = [];
  t.after(async () => { for (const s of slow) s.destroy(); await sc.close(); await app.close(); });

  for (let i = 0; i < 2; i++) {
    const s = tcpConnect(sc.sb.publicAddress.port, '127.0.0.1');
    s.on('error', () => {});
    await once(s, 'connect');
    s.write('GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n');
    slow.push(s);
  }
  await eventually(() => sc.sb.sockets >= 2, 'the sidecar to count both sockets');
  const refused = new TestClient(sc.wsUrl());
  await assert.rejects(refused.opened, (err: { status?: number }) => err.status === 503);

  const answers = slow.map((s) => {
    let text = '';
    s.on('data', (d: Buffer) => { text += d.toString('latin1'); });
    return guard(once(s, 'close').then(() => text), 'a half-sent handshake to be dropped', 5000);
  });
  for (const text of await Promise.all(answers)) assert.match(text, /^HTTP\/1\.1 408/);
  const ok = await connect(sc.wsUrl());
  await ok.close();
});

test('malformed HTTP on the public port gets 400 or 431 and a close, not a bare TCP close', async (t) => {
  const app = await startApp();
  const sc = await startSidecar(app.url);
  t.after(async () => { await sc.close(); await app.close(); });
  assert.equal(await rawStatus(sc, 'POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n'), 400, 'both Content-Length and Transfer-Encoding');
  assert.equal(await rawStatus(sc, 'GET /x HTTP/1.1\r\nHost: x\r\nX-Folded: a\r\n  b\r\n\r\n'), 400, 'obs-fold');
  assert.equal(await rawStatus(sc, 'NOT A REQUEST\r\n\r\n'), 400, 'a bad request line');
  assert.equal(await rawStatus(sc, `GET /ws HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`), 431, 'oversized headers');
  assert.equal(app.requests.length, 0, 'none reached the app');
});
