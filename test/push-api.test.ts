// The push API on the control port (docs/usage.md), against a real sidecar, real clients and a real app.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { startApp, type TestApp } from './helpers/app.js';
import { startSidecar, type Sidecar } from './helpers/sidecar.js';
import { connect, connectReliable, type TestClient } from './helpers/client.js';
import { eventually } from './helpers/eventually.js';

type Query = Record<string, string>;

/**
 * A sidecar whose app answers the connect webhook from the client's query:
 * `?user=u1&channels=a,b&plan=pro` sets that user, those channels and meta.
 */
async function setup(t: TestContext, overrides: Record<string, unknown> = {}) {
  const app: TestApp = await startApp((r) => {
    if (r.url !== '/ws/connect') return { status: 204 };
    const q = r.json().query as Query;
    if (!q.user) return { status: 204 };
    return { body: { user: q.user, channels: q.channels ? q.channels.split(',') : [], ...(q.plan ? { meta: { plan: q.plan } } : {}) } };
  });
  const sc = await startSidecar(app.url, overrides);
  const clients: TestClient[] = [];
  t.after(async () => {
    await Promise.all(clients.map((c) => { c.ws.terminate(); return c.closed; }));
    await sc.close();
    await app.close();
  });
  let n = 0;
  const url = (query: Query) => sc.wsUrl(`/ws?${new URLSearchParams({ tag: `c${++n}`, ...query })}`);
  /** A raw client and its connection id (from the connect webhook). */
  const raw = async (query: Query = {}) => {
    const u = url(query);
    const tag = new URL(u).searchParams.get('tag');
    const client = await connect(u);
    clients.push(client);
    const hook = await app.waitFor((r) => r.url === '/ws/connect' && r.json().query.tag === tag, `connect webhook of ${tag}`);
    return { client, id: hook.json().connection as string };
  };
  /** A reliable client (subprotocol switchboard.v1), its connection id and welcome. */
  const reliable = async (query: Query = {}) => {
    const { client, welcome } = await connectReliable(url(query));
    clients.push(client);
    return { client, id: welcome.session as string, welcome };
  };
  return { app, sc, raw, reliable };
}

const post = (sc: Sidecar, path: string, body: unknown, headers: Record<string, string> = {}) => sc.control('POST', path, body, headers);
const text = (sc: Sidecar, path: string, body: string, headers: Record<string, string> = {}) =>
  sc.control('POST', path, body, { 'content-type': 'text/plain; charset=utf-8', ...headers });
const bytes = (sc: Sidecar, path: string, body: Buffer) => sc.control('POST', path, body, { 'content-type': 'application/octet-stream' });
const to = (id: string) => `/v1/connections/${encodeURIComponent(id)}/messages`;

/** An error answer: the status, and a JSON body of exactly `error` and `message`. */
function assertError(res: { status: number; json: any; headers: Headers }, status: number, code?: string): void {
  assert.equal(res.status, status, `expected ${status}, got ${res.status}: ${JSON.stringify(res.json)}`);
  assert.match(res.headers.get('content-type') ?? '', /^application\/json/);
  assert.deepEqual(Object.keys(res.json).sort(), ['error', 'message']);
  assert.equal(typeof res.json.error, 'string');
  assert.equal(typeof res.json.message, 'string');
  if (code) assert.equal(res.json.error, code);
}

/** Proves nothing else reached the client: the next frame is a marker pushed now. */
async function assertNothingBefore(sc: Sidecar, c: TestClient, id: string, marker = 'marker'): Promise<void> {
  assert.equal((await text(sc, to(id), marker)).status, 202);
  const f = await c.next(`the ${marker}`);
  const got = f.text.startsWith('{"type"') ? f.json().data : f.text;
  assert.equal(got, marker, `expected nothing before the ${marker}, got ${f.text.slice(0, 100)}`);
}

test('POST to a connection: JSON, text and binary bodies, as a raw client receives them', async (t) => {
  const { sc, raw } = await setup(t);
  const { client, id } = await raw();

  const json = await post(sc, to(id), { a: 1, b: [true, null], s: 'é' });
  assert.equal(json.status, 202);
  assert.deepEqual(json.json, { delivered: 1, queued: 0, dropped: 0 });
  const f1 = await client.next();
  assert.equal(f1.binary, false);
  assert.deepEqual(f1.json(), { a: 1, b: [true, null], s: 'é' });

  assert.deepEqual((await text(sc, to(id), 'héllo wörld')).json, { delivered: 1, queued: 0, dropped: 0 });
  const f2 = await client.next();
  assert.equal(f2.binary, false);
  assert.equal(f2.text, 'héllo wörld');

  assert.deepEqual((await bytes(sc, to(id), Buffer.from([0, 1, 2, 255]))).json, { delivered: 1, queued: 0, dropped: 0 });
  const f3 = await client.next();
  assert.equal(f3.binary, true);
  assert.deepEqual([...f3.data], [0, 1, 2, 255]);

  // Other spellings of the three kinds.
  assert.equal((await sc.control('POST', to(id), '{"x": 2}', { 'content-type': 'application/json; charset=utf-8' })).status, 202);
  assert.deepEqual((await client.next()).json(), { x: 2 });
  assert.equal((await sc.control('POST', to(id), '[3]', { 'content-type': 'application/vnd.example+json' })).status, 202);
  assert.deepEqual((await client.next()).json(), [3]);
  assert.equal((await sc.control('POST', to(id), '<b>hi</b>', { 'content-type': 'text/html' })).status, 202);
  assert.equal((await client.next()).text, '<b>hi</b>');
  assert.equal((await sc.control('POST', to(id), '"a JSON string"', { 'content-type': 'application/json' })).status, 202);
  assert.equal((await client.next()).text, '"a JSON string"', 'a JSON body is sent as its JSON text');
});

test('POST to a connection: a reliable client gets message frames with seq, data or binary', async (t) => {
  const { sc, reliable } = await setup(t);
  const { client, id } = await reliable();

  assert.deepEqual((await post(sc, to(id), { a: [1, 'x'] })).json, { delivered: 1, queued: 0, dropped: 0 });
  assert.deepEqual(await client.nextJson(), { type: 'message', seq: 1, data: { a: [1, 'x'] } });
  await text(sc, to(id), 'plain text');
  assert.deepEqual(await client.nextJson(), { type: 'message', seq: 2, data: 'plain text' });
  await bytes(sc, to(id), Buffer.from([0, 255, 7]));
  const bin = await client.nextJson();
  assert.deepEqual(bin, { type: 'message', seq: 3, binary: Buffer.from([0, 255, 7]).toString('base64') });
  assert.ok(!('data' in bin));
  await sc.control('POST', to(id), '"a JSON string"', { 'content-type': 'application/json' });
  assert.deepEqual(await client.nextJson(), { type: 'message', seq: 4, data: 'a JSON string' });
  await sc.control('POST', to(id), '  {"spaced": true}\n', { 'content-type': 'application/json' });
  assert.deepEqual(await client.nextJson(), { type: 'message', seq: 5, data: { spaced: true } });
});

test('POST to a user, a channel and broadcast reach exactly their connections', async (t) => {
  const { sc, raw, reliable } = await setup(t);
  const a = await raw({ user: 'u1', channels: 'red' });
  const b = await reliable({ user: 'u1', channels: 'blue' });
  const c = await raw({ user: 'ü 2/x', channels: 'red,blue' });

  assert.deepEqual((await text(sc, '/v1/users/u1/messages', 'to-u1')).json, { delivered: 2, queued: 0, dropped: 0 });
  assert.deepEqual((await text(sc, '/v1/channels/red/messages', 'to-red')).json, { delivered: 2, queued: 0, dropped: 0 });
  assert.deepEqual((await text(sc, `/v1/users/${encodeURIComponent('ü 2/x')}/messages`, 'to-u2')).json, { delivered: 1, queued: 0, dropped: 0 });
  assert.deepEqual((await post(sc, '/v1/broadcast', { all: true })).json, { delivered: 3, queued: 0, dropped: 0 });
  assert.deepEqual((await text(sc, '/v1/users/nobody/messages', 'x')).json, { delivered: 0, queued: 0, dropped: 0 }, 'an unknown user is not an error');
  assert.deepEqual((await text(sc, '/v1/channels/empty/messages', 'x')).json, { delivered: 0, queued: 0, dropped: 0 });

  assert.deepEqual([(await a.client.next()).text, (await a.client.next()).text, (await a.client.next()).text], ['to-u1', 'to-red', '{"all":true}']);
  assert.deepEqual([await b.client.nextJson(), await b.client.nextJson()], [
    { type: 'message', seq: 1, data: 'to-u1' },
    { type: 'message', seq: 2, data: { all: true } },
  ]);
  assert.deepEqual([(await c.client.next()).text, (await c.client.next()).text, (await c.client.next()).text], ['to-red', 'to-u2', '{"all":true}']);
  for (const [client, id] of [[a.client, a.id], [c.client, c.id]] as const) await assertNothingBefore(sc, client, id);

  // Binary to a channel and to everyone: binary frames for raw clients, base64 for reliable ones.
  assert.deepEqual((await bytes(sc, '/v1/channels/blue/messages', Buffer.from([9, 9]))).json, { delivered: 2, queued: 0, dropped: 0 });
  assert.deepEqual((await bytes(sc, '/v1/broadcast', Buffer.from([0, 128, 255]))).json, { delivered: 3, queued: 0, dropped: 0 });
  const ab = await a.client.next();
  assert.equal(ab.binary, true);
  assert.deepEqual([...ab.data], [0, 128, 255]);
  assert.deepEqual(await b.client.nextJson(), { type: 'message', seq: 3, binary: Buffer.from([9, 9]).toString('base64') });
  assert.deepEqual(await b.client.nextJson(), { type: 'message', seq: 4, binary: Buffer.from([0, 128, 255]).toString('base64') });
  const cb = [await c.client.next(), await c.client.next()];
  assert.deepEqual(cb.map((f) => [f.binary, [...f.data]]), [[true, [9, 9]], [true, [0, 128, 255]]]);
});

test('POST /v1/batch: connection, user, channel and all targets; text, JSON and binary items', async (t) => {
  const { sc, raw, reliable } = await setup(t);
  const a = await raw({ user: 'u1', channels: 'red' });
  const b = await reliable({ user: 'u1' });
  const c = await raw({ user: 'u2', channels: 'red' });

  const res = await post(sc, '/v1/batch', {
    messages: [
      { to: { connection: a.id }, data: 'plain "text"' },
      { to: { user: 'u1' }, data: { j: 1 } },
      { to: { channel: 'red' }, binary: Buffer.from([1, 2, 3]).toString('base64') },
      { to: { all: true }, data: [1, 'two'] },
      { to: { connection: b.id }, data: 'for b', class: 'lossy', coalesceKey: 'k', ttlMs: 60_000 },
      { to: { user: 'u2' }, data: 42, class: 'durable' },
    ],
  });
  assert.equal(res.status, 202);
  assert.equal(res.json.delivered, 10);
  assert.equal(res.json.queued, 0);
  assert.equal(res.json.dropped, 0);

  const af = [await a.client.next(), await a.client.next(), await a.client.next(), await a.client.next()];
  assert.deepEqual(af.map((f) => f.binary), [false, false, true, false]);
  assert.equal(af[0].text, 'plain "text"', 'a string is sent as a text frame verbatim');
  assert.equal(af[1].text, '{"j":1}', 'any other value as its JSON text');
  assert.deepEqual([...af[2].data], [1, 2, 3]);
  assert.equal(af[3].text, '[1,"two"]');

  assert.deepEqual([await b.client.nextJson(), await b.client.nextJson(), await b.client.nextJson()], [
    { type: 'message', seq: 1, data: { j: 1 } },
    { type: 'message', seq: 2, data: [1, 'two'] },
    { type: 'message', seq: 3, data: 'for b' },
  ]);
  const cf = [await c.client.next(), await c.client.next(), await c.client.next()];
  assert.deepEqual(cf.map((f) => (f.binary ? [...f.data] : f.text)), [[1, 2, 3], '[1,"two"]', '42']);
  await assertNothingBefore(sc, a.client, a.id);
  await assertNothingBefore(sc, c.client, c.id);
  assert.deepEqual((await post(sc, '/v1/batch', { messages: [] })).status, 202);
});

test('POST /v1/batch: bad input is 400 with {error,message}, and nothing of the batch is sent', async (t) => {
  const { sc, raw } = await setup(t);
  const a = await raw();
  const good = { to: { connection: a.id }, data: 'must not arrive' };
  const bad: Array<[string, unknown]> = [
    ['a list', [good]],
    ['no messages', { items: [good] }],
    ['messages not a list', { messages: { 0: good } }],
    ['an item not an object', { messages: [good, 'hello'] }],
    ['no target', { messages: [good, { data: 1 }] }],
    ['an empty user', { messages: [good, { to: { user: '' }, data: 1 }] }],
    ['all: false', { messages: [good, { to: { all: false }, data: 1 }] }],
    ['two targets', { messages: [good, { to: { user: 'a', channel: 'b' }, data: 1 }] }],
    ['an unknown target', { messages: [good, { to: { room: 'x' }, data: 1 }] }],
    ['an unknown item key', { messages: [good, { to: { all: true }, data: 1, priority: 'high' }] }],
    ['both data and binary', { messages: [good, { to: { all: true }, data: 1, binary: 'AAEC' }] }],
    ['neither data nor binary', { messages: [good, { to: { all: true } }] }],
    ['bad base64', { messages: [good, { to: { all: true }, binary: '!!not base64!!' }] }],
    ['binary not a string', { messages: [good, { to: { all: true }, binary: [1, 2] }] }],
    ['a bad class', { messages: [good, { to: { all: true }, data: 1, class: 'urgent' }] }],
    ['a bad coalesceKey', { messages: [good, { to: { all: true }, data: 1, coalesceKey: 7 }] }],
    ['a bad ttlMs', { messages: [good, { to: { all: true }, data: 1, ttlMs: -5 }] }],
  ];
  for (const [what, body] of bad) {
    const res = await post(sc, '/v1/batch', body);
    assert.equal(res.status, 400, `${what}: ${res.status} ${res.text}`);
    assertError(res, 400);
  }
  const unknownKey = await post(sc, '/v1/batch', { messages: [good, { to: { all: true }, data: 1, priority: 'high' }] });
  assert.match(unknownKey.json.message, /messages\[1\]\.priority/, 'the message names the item and key');

  const notJson = await sc.control('POST', '/v1/batch', '{"messages": [', { 'content-type': 'application/json' });
  assertError(notJson, 400);

  const tooMany = await post(sc, '/v1/batch', { messages: Array.from({ length: 1001 }, () => good) });
  assertError(tooMany, 413, 'too_large');

  assertError(await sc.control('POST', '/v1/batch', JSON.stringify({ messages: [good] }), { 'content-type': 'text/plain' }), 415);
  await assertNothingBefore(sc, a.client, a.id);
});

test('POST /v1/batch: an unknown top-level key is 400, like an unknown item key', async (t) => {
  const { sc, raw } = await setup(t);
  const a = await raw();
  const res = await post(sc, '/v1/batch', { messages: [{ to: { connection: a.id }, data: 'x' }], mesages: [] });
  assertError(res, 400);
});

test('404 for an unknown connection on every connection route', async (t) => {
  const { sc } = await setup(t);
  const routes: Array<[string, string, unknown?]> = [
    ['POST', '/v1/connections/nope/messages', { x: 1 }],
    ['GET', '/v1/connections/nope'],
    ['DELETE', '/v1/connections/nope'],
    ['PUT', '/v1/connections/nope/channels/c'],
    ['DELETE', '/v1/connections/nope/channels/c'],
  ];
  for (const [method, path, body] of routes) {
    const res = await sc.control(method, path, body);
    assertError(res, 404, 'unknown_connection');
  }
  assertError(await sc.control('GET', '/v1/connections/%E0%A4%A'), 400);
});

test('413 when a push is larger than limits.maxMessageBytes, declared or streamed', async (t) => {
  const { sc, raw } = await setup(t, { limits: { maxMessageBytes: 64 } });
  const a = await raw();
  assertError(await text(sc, to(a.id), 'x'.repeat(65)), 413, 'too_large');
  assertError(await bytes(sc, to(a.id), Buffer.alloc(65)), 413, 'too_large');
  assertError(await post(sc, '/v1/broadcast', { s: 'y'.repeat(64) }), 413, 'too_large');

  // Chunked: no content-length to refuse up front.
  const streamed = await new Promise<{ status: number; body: string }>((resolve, reject) => {
    const u = new URL(`${sc.controlUrl}${to(a.id)}`);
    const req = request({ host: u.hostname, port: u.port, path: u.pathname, method: 'POST', headers: { 'content-type': 'text/plain', 'transfer-encoding': 'chunked' } }, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => { body += d.toString(); });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    for (let i = 0; i < 10; i++) req.write('0123456789');
    req.end();
  });
  assert.equal(streamed.status, 413);
  assert.equal(JSON.parse(streamed.body).error, 'too_large');

  const batch = await post(sc, '/v1/batch', { messages: [{ to: { all: true }, data: 'z'.repeat(65) }] });
  assertError(batch, 413, 'too_large');

  assert.equal((await text(sc, to(a.id), 'k'.repeat(64))).status, 202, 'exactly the limit is fine');
  assert.equal((await a.client.next()).text, 'k'.repeat(64));
  await assertNothingBefore(sc, a.client, a.id);
});

test('415 for an unsupported or missing content type; 400 for a JSON body that is not JSON', async (t) => {
  const { sc, raw } = await setup(t);
  const a = await raw();
  assertError(await sc.control('POST', to(a.id), '<x/>', { 'content-type': 'application/xml' }), 415, 'unsupported_type');
  assertError(await sc.control('POST', to(a.id), 'a=1', { 'content-type': 'application/x-www-form-urlencoded' }), 415, 'unsupported_type');
  assertError(await sc.control('POST', to(a.id), Buffer.from('no type')), 415, 'unsupported_type');
  assertError(await sc.control('POST', '/v1/broadcast', Buffer.from('no type')), 415, 'unsupported_type');
  assertError(await sc.control('POST', to(a.id), '{"a":', { 'content-type': 'application/json' }), 400, 'bad_json');
  await assertNothingBefore(sc, a.client, a.id);
});

test('bad X-Switchboard-Class, TTL and coalesce key headers are 400; good ones are accepted', async (t) => {
  const { sc, raw } = await setup(t);
  const a = await raw();
  const badHeaders: Array<Record<string, string>> = [
    { 'x-switchboard-class': 'urgent' },
    { 'x-switchboard-class': 'lossy, durable' },
    { 'x-switchboard-ttl-ms': 'soon' },
    { 'x-switchboard-ttl-ms': '0' },
    { 'x-switchboard-ttl-ms': '-5' },
    { 'x-switchboard-ttl-ms': '1.5' },
    { 'x-switchboard-ttl-ms': '99999999999999999999' },
    { 'x-switchboard-coalesce-key': 'k'.repeat(300) },
  ];
  for (const h of badHeaders) {
    const res = await text(sc, to(a.id), 'must not arrive', h);
    assertError(res, 400);
    const [name] = Object.keys(h);
    assert.ok(res.json.message.toLowerCase().includes(name), `the message names ${name}: ${res.json.message}`);
  }
  await assertNothingBefore(sc, a.client, a.id);
  const goodHeaders: Array<Record<string, string>> = [
    { 'x-switchboard-class': 'lossy' }, { 'x-switchboard-class': 'durable' }, { 'x-switchboard-ttl-ms': '60000' }, { 'x-switchboard-coalesce-key': 'price' },
  ];
  for (const h of goodHeaders) {
    const res = await text(sc, to(a.id), 'ok', h);
    assert.deepEqual(res.json, { delivered: 1, queued: 0, dropped: 0 }, JSON.stringify(h));
    assert.equal((await a.client.next()).text, 'ok');
  }
});

test('control.token: 401 without or with a wrong bearer, 200 with it; /healthz and /readyz stay open', async (t) => {
  const { sc, raw } = await setup(t, { control: { token: 's3cret-token' } });
  const a = await raw();
  for (const auth of [undefined, 'Bearer wrong', 'Bearer s3cret-token-and-more', 'Basic czNjcmV0LXRva2Vu', 's3cret-token']) {
    const headers: Record<string, string> = auth ? { authorization: auth } : {};
    assertError(await sc.control('GET', '/v1/connections', undefined, headers), 401, 'unauthorized');
    assertError(await sc.control('POST', '/v1/broadcast', { x: 1 }, headers), 401, 'unauthorized');
    assertError(await sc.control('DELETE', `/v1/connections/${a.id}`, undefined, headers), 401, 'unauthorized');
  }
  const ok = { authorization: 'Bearer s3cret-token' };
  const list = await sc.control('GET', '/v1/connections', undefined, ok);
  assert.equal(list.status, 200);
  assert.deepEqual(list.json.connections.map((c: any) => c.connection), [a.id]);
  assert.deepEqual((await sc.control('POST', '/v1/broadcast', { x: 1 }, ok)).json, { delivered: 1, queued: 0, dropped: 0 });
  assert.equal((await a.client.next()).text, '{"x":1}');
  assert.equal((await sc.control('GET', '/healthz')).status, 200);
  assert.equal((await sc.control('GET', '/readyz')).status, 200);
  assert.equal(a.client.ws.readyState, a.client.ws.OPEN, 'the refused DELETEs closed nothing');
});

test('control.token: the Bearer scheme name is case-insensitive (RFC 7235)', async (t) => {
  const { sc } = await setup(t, { control: { token: 's3cret-token' } });
  assert.equal((await sc.control('GET', '/v1/connections', undefined, { authorization: 'bearer s3cret-token' })).status, 200);
});

test('DELETE a connection closes it with the code and reason given; bad codes are 400', async (t) => {
  const { app, sc, raw, reliable } = await setup(t);
  const a = await raw();
  const b = await reliable();

  for (const q of ['code=1000', 'code=3999', 'code=4100', 'code=abc', 'code=4000.5', 'code=', `reason=${'r'.repeat(124)}`]) {
    const res = await sc.control('DELETE', `/v1/connections/${a.id}?${q}`);
    assertError(res, 400);
  }
  await assertNothingBefore(sc, a.client, a.id, 'still open');

  const res = await sc.control('DELETE', `/v1/connections/${a.id}?code=4001&reason=${encodeURIComponent('bye now')}`);
  assert.equal(res.status, 200);
  assert.deepEqual(await a.client.closed, { code: 4001, reason: 'bye now' });
  const disc = await app.waitFor((r) => r.url === '/ws/disconnect' && r.json().connection === a.id, 'disconnect webhook of a');
  assert.equal(disc.json().code, 4001);
  assert.equal(disc.json().reason, 'bye now');

  assert.equal((await sc.control('DELETE', `/v1/connections/${b.id}`)).status, 200);
  assert.equal((await b.client.closed).code, 4000, 'the default code is 4000');
  // Closed by the app, a reliable session does not wait for a resume.
  await eventually(async () => (await sc.control('GET', `/v1/connections/${b.id}`)).status === 404, 'the closed reliable session is gone', 2_000);
  const again = await connect(sc.wsUrl(`/ws?resume=${encodeURIComponent(b.welcome.token)}&lastSeq=0`), 'switchboard.v1');
  t.after(() => { again.ws.terminate(); });
  const w = await again.nextJson();
  assert.equal(w.resumed, false);
  assert.notEqual(w.session, b.id);
  assertError(await text(sc, to(a.id), 'gone'), 404, 'unknown_connection');
});

test('DELETE a user closes every connection of that user (revocation), and only those', async (t) => {
  const { sc, raw, reliable } = await setup(t);
  const a = await raw({ user: 'u1' });
  const b = await reliable({ user: 'u1' });
  const c = await raw({ user: 'u2' });

  const res = await sc.control('DELETE', '/v1/users/u1?code=4003&reason=revoked');
  assert.equal(res.status, 200);
  assert.equal(res.json.closed, 2);
  assert.deepEqual(await a.client.closed, { code: 4003, reason: 'revoked' });
  assert.deepEqual(await b.client.closed, { code: 4003, reason: 'revoked' });
  await eventually(async () => (await sc.control('GET', '/v1/connections?user=u1')).json.connections.length === 0, 'u1 has no connections', 2_000);
  assert.deepEqual((await text(sc, '/v1/users/u1/messages', 'x')).json, { delivered: 0, queued: 0, dropped: 0 });
  const again = await connect(sc.wsUrl(`/ws?resume=${encodeURIComponent(b.welcome.token)}&lastSeq=0`), 'switchboard.v1');
  t.after(() => { again.ws.terminate(); });
  assert.equal((await again.nextJson()).resumed, false, 'a revoked session cannot be resumed');

  assert.deepEqual((await text(sc, '/v1/users/u2/messages', 'still here')).json, { delivered: 1, queued: 0, dropped: 0 });
  assert.equal((await c.client.next()).text, 'still here');
  assert.equal((await sc.control('DELETE', '/v1/users/nobody')).status, 200);
  assertError(await sc.control('DELETE', '/v1/users/u2?code=99'), 400);
});

test('PUT and DELETE a channel subscription decide whether channel pushes arrive', async (t) => {
  const { sc, raw } = await setup(t);
  const a = await raw();
  const ch = 'news & views';
  const path = `/v1/channels/${encodeURIComponent(ch)}`;
  const sub = `/v1/connections/${a.id}/channels/${encodeURIComponent(ch)}`;

  assert.equal((await text(sc, `${path}/messages`, 'before')).json.delivered, 0);
  assert.equal((await sc.control('PUT', sub)).status, 200);
  assert.equal((await sc.control('PUT', sub)).status, 200, 'subscribing twice is harmless');
  assert.deepEqual((await sc.control('GET', path)).json.connections, 1);
  assert.deepEqual((await sc.control('GET', `/v1/connections/${a.id}`)).json.channels, [ch]);
  assert.deepEqual((await text(sc, `${path}/messages`, 'while subscribed')).json, { delivered: 1, queued: 0, dropped: 0 });
  assert.equal((await a.client.next()).text, 'while subscribed');

  assert.equal((await sc.control('DELETE', sub)).status, 200);
  assert.equal((await text(sc, `${path}/messages`, 'after')).json.delivered, 0);
  assert.equal((await sc.control('GET', path)).json.connections, 0);
  assert.deepEqual((await sc.control('GET', `/v1/connections/${a.id}`)).json.channels, []);
  await assertNothingBefore(sc, a.client, a.id);
});

test('GET a connection: user, channels, meta, connectedAt, mode, state and outbox', async (t) => {
  const { sc, raw, reliable } = await setup(t);
  const a = await raw({ user: 'u1', channels: 'x,y', plan: 'pro' });
  const b = await reliable();
  const keys = ['channels', 'connectedAt', 'connection', 'meta', 'mode', 'outbox', 'state', 'user'];

  const ai = (await sc.control('GET', `/v1/connections/${a.id}`)).json;
  for (const k of keys) assert.ok(k in ai, `info has ${k}`);
  assert.equal(ai.connection, a.id);
  assert.equal(ai.user, 'u1');
  assert.deepEqual([...ai.channels].sort(), ['x', 'y']);
  assert.deepEqual(ai.meta, { plan: 'pro' });
  assert.ok(!Number.isNaN(Date.parse(ai.connectedAt)), `connectedAt is a date: ${ai.connectedAt}`);
  assert.equal(ai.mode, 'raw');
  assert.equal(ai.state, 'open');
  assert.deepEqual(ai.outbox, { messages: 0, bytes: 0 });

  await text(sc, to(b.id), '12345');
  await text(sc, to(b.id), '123');
  await b.client.nextJson();
  await b.client.nextJson();
  const bi = (await sc.control('GET', `/v1/connections/${b.id}`)).json;
  for (const k of keys) assert.ok(k in bi, `info has ${k}`);
  assert.equal(bi.user, null);
  assert.deepEqual(bi.channels, []);
  assert.deepEqual(bi.meta, {});
  assert.equal(bi.mode, 'reliable');
  assert.equal(bi.state, 'open');
  assert.deepEqual(bi.outbox, { messages: 2, bytes: 8 }, 'unacked messages are held for a replay');
});

test('GET /v1/connections: user and channel filters; limit and cursor page through all, once each', async (t) => {
  const { sc, raw } = await setup(t);
  const ids: string[] = [];
  for (let i = 0; i < 7; i++) ids.push((await raw({ user: `u${i % 2}`, ...(i % 3 === 0 ? { channels: 'x' } : {}) })).id);

  async function all(query: string, limit: number): Promise<{ ids: string[]; pages: number }> {
    const seen: string[] = [];
    let cursor: string | null = null;
    for (let pages = 1; pages <= 20; pages++) {
      const res: any = await sc.control('GET', `/v1/connections?${query}&limit=${limit}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`);
      assert.equal(res.status, 200, res.text);
      assert.deepEqual(Object.keys(res.json).sort(), ['connections', 'next']);
      assert.ok(res.json.connections.length <= limit);
      for (const c of res.json.connections) {
        assert.equal(typeof c.connectedAt, 'string');
        assert.equal(c.state, 'open');
        seen.push(c.connection);
      }
      cursor = res.json.next;
      if (cursor === null) return { ids: seen, pages };
      assert.equal(typeof cursor, 'string');
    }
    assert.fail('paging did not end');
  }

  const everything = await all('', 3);
  assert.equal(everything.ids.length, 7, 'no duplicates');
  assert.deepEqual([...everything.ids].sort(), [...ids].sort(), 'no omissions');
  assert.equal(everything.pages, 3);
  assert.deepEqual((await all('', 100)).ids.sort(), [...ids].sort());
  assert.deepEqual((await all('', 7)).pages, 1);

  const u0 = ids.filter((_, i) => i % 2 === 0);
  const byUser = await all('user=u0', 2);
  assert.deepEqual([...byUser.ids].sort(), [...u0].sort());
  assert.equal(byUser.pages, 2);
  assert.deepEqual((await all('channel=x', 1)).ids.sort(), [ids[0], ids[3], ids[6]].sort());
  assert.deepEqual((await all('user=u0&channel=x', 1)).ids.sort(), [ids[0], ids[6]].sort());
  assert.deepEqual((await all('user=nobody', 5)).ids, []);
  assert.deepEqual((await all('channel=none', 5)).ids, []);

  for (const q of ['limit=0', 'limit=-1', 'limit=abc', 'limit=1.5', 'limit=1001', 'limit=', 'cursor=!!', 'cursor=a%20b', `cursor=${'a'.repeat(300)}`]) {
    assertError(await sc.control('GET', `/v1/connections?${q}`), 400);
  }
});

test('GET /v1/channels/{channel} counts its subscribers', async (t) => {
  const { sc, raw, reliable } = await setup(t);
  await raw({ user: 'a', channels: 'room 1,other' });
  await reliable({ user: 'b', channels: 'room 1' });
  const res = await sc.control('GET', `/v1/channels/${encodeURIComponent('room 1')}`);
  assert.equal(res.status, 200);
  assert.equal(res.json.channel, 'room 1');
  assert.equal(res.json.connections, 2);
  assert.equal((await sc.control('GET', '/v1/channels/other')).json.connections, 1);
  assert.equal((await sc.control('GET', '/v1/channels/none')).json.connections, 0);
});

test('/healthz, /readyz and /metrics while running', async (t) => {
  const { sc, raw, reliable } = await setup(t);
  const a = await raw();
  await reliable();
  const health = await sc.control('GET', '/healthz');
  assert.equal(health.status, 200);
  const ready = await sc.control('GET', '/readyz');
  assert.equal(ready.status, 200);
  assert.equal(ready.json.status, 'ready');

  await text(sc, to(a.id), 'one');
  await text(sc, to(a.id), 'two');
  await a.client.next();
  const metrics = await sc.control('GET', '/metrics');
  assert.equal(metrics.status, 200);
  assert.match(metrics.headers.get('content-type') ?? '', /^text\/plain/);
  assert.match(metrics.text, /^switchboard_connections 2$/m);
  assert.match(metrics.text, /^switchboard_messages_total\{direction="out",mode="raw"\} 2$/m);
  assert.match(metrics.text, /^# TYPE switchboard_dropped_messages_total counter$/m);
});

test('an unknown route is a JSON 404; a wrong method on a known route is a JSON 405', async (t) => {
  const { sc } = await setup(t);
  assertError(await sc.control('GET', '/nope'), 404, 'not_found');
  assertError(await sc.control('POST', '/v1/connections/x/messages/extra', { a: 1 }), 404, 'not_found');
  assertError(await sc.control('GET', '/v2/broadcast'), 404, 'not_found');
  assertError(await sc.control('GET', '/v1/broadcast'), 405, 'method_not_allowed');
  assertError(await sc.control('PATCH', '/v1/connections/x'), 405, 'method_not_allowed');
  assertError(await sc.control('POST', '/healthz', { a: 1 }), 405, 'method_not_allowed');
  assertError(await sc.control('DELETE', '/v1/channels/x'), 405, 'method_not_allowed');
  assertError(await sc.control('GET', '/v1/batch'), 405, 'method_not_allowed');
});
