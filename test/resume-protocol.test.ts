// A resume's token may travel as subprotocols instead of in the URL, so that access logs (which
// record URLs) never see it: the server takes it from there, never echoes it, never passes it
// to the app; the client library sends it that way with `resumeIn: 'protocol'`.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { WebSocket } from 'ws';
import { startApp } from './helpers/app.js';
import { startSidecar } from './helpers/sidecar.js';
import { connectReliable, TestClient } from './helpers/client.js';
import { guard } from './helpers/app.js';
import { eventually } from './helpers/eventually.js';
import { SwitchboardClient } from '../client/index.js';
import { toConnection, toUser } from '../proxy/target.js';
import { Push } from '../proxy/push.js';

test('a resume in subprotocols: the session and what was held come back; the token is not echoed, nor seen by the app', async (t) => {
  const app = await startApp();
  const sc = await startSidecar(app.url, { webhooks: { forwardHeaders: ['sec-websocket-protocol'] } });
  t.after(async () => { await sc.close(); await app.close(); });
  const { client, welcome } = await connectReliable(sc.wsUrl());
  client.ws.terminate();
  await eventually(() => sc.sb.registry.get(welcome.session)?.state === 'detached', 'the session detached');
  await sc.sb.directory.route(toConnection(welcome.session), new Push({ kind: 'text', text: 'held' }));

  // A last-seq that is not a number is read as 0, as a bad lastSeq in the query is.
  const back = new TestClient(sc.wsUrl(), ['switchboard.v1', `switchboard.resume.${welcome.token}`, 'switchboard.last-seq.not-a-number']);
  await guard(back.opened, 'the resume handshake');
  assert.equal(back.ws.protocol, 'switchboard.v1', 'the resume subprotocols are not echoed');
  const again = await back.nextJson();
  assert.deepEqual([again.type, again.session, again.resumed], ['welcome', welcome.session, true]);
  assert.deepEqual(await back.nextJson(), { type: 'message', seq: 1, data: 'held' });
  await back.close(1000);

  // A token that does not verify: a new session, whose connect webhook never carries the token.
  const fresh = new TestClient(sc.wsUrl(), ['switchboard.v1', 'switchboard.resume.forged.token', 'switchboard.last-seq.3']);
  await guard(fresh.opened, 'a new session');
  assert.equal((await fresh.nextJson()).resumed, false);
  const connects = app.byPath('/ws/connect');
  const last = connects[connects.length - 1];
  assert.equal(last.headers['sec-websocket-protocol'], 'switchboard.v1');
  assert.equal(last.json().subprotocol, 'switchboard.v1');
  assert.ok(!JSON.stringify(connects.map((r) => [r.url, r.headers, r.text])).includes(welcome.token), 'the token never reaches the app');
  await fresh.close(1000);
});

test('the client library with resumeIn: "protocol" resumes without the token in its URL', async (t) => {
  const app = await startApp((r) => (r.url === '/ws/connect' ? { body: { user: 'ada' } } : { status: 204 }));
  const sc = await startSidecar(app.url);
  t.after(async () => { await sc.close(); await app.close(); });
  const urls: string[] = [];
  class Recording extends WebSocket {
    constructor(url: string, protocols: string | string[]) {
      urls.push(url);
      super(url, protocols);
    }
  }
  const client = new SwitchboardClient(sc.wsUrl(), { WebSocket: Recording as never, resumeIn: 'protocol', backoff: { baseMs: 10, capMs: 50 } });
  t.after(() => client.close());
  const opened: Array<{ session: string; resumed: boolean }> = [];
  client.on('open', (info) => opened.push(info));
  const received: unknown[] = [];
  client.on('message', (data) => received.push(data));
  await eventually(() => opened.length === 1, 'the first welcome');
  const session = sc.sb.registry.get(opened[0].session)!;
  session.terminate();
  // The client comes back within milliseconds: the push goes in the same turn that first sees
  // the session detached, so it is held for the resume.
  for (let i = 0; i < 100_000 && session.state !== 'detached'; i++) await new Promise((r) => setImmediate(r));
  assert.equal(session.state, 'detached');
  await sc.sb.directory.route(toUser('ada'), new Push({ kind: 'json', json: '{"n":1}' }));
  await eventually(() => opened.length === 2, 'the resume');
  assert.deepEqual(opened[1], { session: opened[0].session, resumed: true });
  await eventually(() => received.length === 1, 'the held message');
  assert.deepEqual(received, [{ n: 1 }]);
  assert.equal(urls.length, 2);
  assert.ok(urls.every((u) => !u.includes('resume')), urls.join(' '));
});
