// SSE sessions with `workers` and no cluster broker: a stream's reconnection lands on whichever
// worker the cluster module picks, and the session comes to it from the worker that held it
// (proxy/worker-moves.ts): same session, every message once and in order, pushes by connection id
// still reach it, and presence sees no leave and join. Real CLI processes, real HTTP clients.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startApp, type Recorded } from './helpers/app.js';
import { connectAnswer } from './helpers/cluster.js';
import { freePort, runCli, writeConfig } from './helpers/process.js';
import { eventually } from './helpers/eventually.js';
import { httpOnce as http, postFrames as post } from './helpers/http.js';
import { dataOf, openStream, type Stream } from './sse-stream.js';

const SSE = { accept: 'text/event-stream' };


async function startWorkers(t: { after(fn: () => void): void }, app: { url: string }, extra: Record<string, unknown> = {}) {
  const [pub, ctl] = [await freePort(), await freePort()];
  const cli = runCli(['--config', writeConfig({
    listen: `127.0.0.1:${pub}`, control: { listen: `127.0.0.1:${ctl}` }, workers: 2, nodeId: 'sw',
    app: { url: app.url }, log: { level: 'info' }, drain: { timeoutMs: 3000 }, ...extra,
  })]);
  t.after(() => { cli.child.kill('SIGKILL'); });
  await cli.waitForOutput(/switchboard primary ready/);
  const control = async (method: string, path: string, body?: unknown) => {
    const res = await fetch(`http://127.0.0.1:${ctl}${path}`, { method, headers: body === undefined ? {} : { 'content-type': 'application/json' }, body: body === undefined ? undefined : JSON.stringify(body) });
    return { status: res.status, json: await res.json().catch(() => null) };
  };
  const moved = async () => {
    const text = await (await fetch(`http://127.0.0.1:${ctl}/metrics`)).text();
    return Number(/^switchboard_session_moves_total\{direction="in",result="moved"\} (\d+)$/m.exec(text)?.[1] ?? 0);
  };
  return { pub, control, moved };
}

test('workers without a broker: a dropped SSE stream resumes on either worker, its session moving there, nothing lost or doubled, no presence events', async (t) => {
  const presence: Array<{ type: string; user: string }> = [];
  const app = await startApp((r: Recorded) => {
    if (r.url === '/ws/presence') {
      presence.push(...r.json().events);
      return { status: 204 };
    }
    return connectAnswer(r);
  });
  t.after(() => app.close());
  const { pub, control, moved } = await startWorkers(t, app, { webhooks: { paths: { presence: '/ws/presence' } }, presence: { batchMs: 10 } });
  const streams: Stream[] = [];
  t.after(() => { for (const s of streams) s.drop(); });
  const open = async (path: string, headers: Record<string, string> = SSE) => {
    const s = await openStream(`http://127.0.0.1:${pub}${path}`, headers);
    streams.push(s);
    return s;
  };
  let s = await open('/ws?user=ann&ch=room');
  const welcome = dataOf(await s.next((e) => e.event === 'welcome', 'welcome'));
  const id: string = welcome.session;
  const cookie = s.cookies().join('; ');
  let n = 0;
  const seen: number[] = [];
  const collect = (stream: Stream) => stream.parser.events.filter((e) => e.event === 'message').map((e) => JSON.parse(e.data).n as number);
  await control('POST', `/v1/connections/${id}/messages`, { n: ++n });
  await s.next((e) => e.event === 'message', 'the first message');
  seen.push(...collect(s));

  // Drop and resume until the session has moved between the workers at least twice (the cluster
  // module hands connections round-robin, so it does within a few), alternating the two resume
  // forms: a library client's ?resume=&lastSeq=, a browser's cookie and Last-Event-ID.
  for (let round = 0; round < 8 && (await moved()) < 2; round++) {
    s.drop();
    await eventually(async () => (await control('GET', `/v1/connections/${id}`)).json?.state === 'detached', 'the session detached');
    await control('POST', '/v1/users/ann/messages', { n: ++n });
    await control('POST', '/v1/channels/room/messages', { n: ++n });
    const last = String(seen.at(-1));
    s = round % 2 === 0
      ? await open(`/ws?resume=${encodeURIComponent(welcome.token)}&lastSeq=${last}`)
      : await open('/ws?user=ann&ch=room', { ...SSE, cookie, 'last-event-id': last });
    const back = dataOf(await s.next((e) => e.event === 'welcome', `welcome of round ${round}`));
    assert.deepEqual([back.session, back.resumed], [id, true], `round ${round}: the same session, resumed`);
    await s.next((e) => e.event === 'message' && JSON.parse(e.data).n === n, `round ${round}: the held messages`);
    seen.push(...collect(s));
    // A push by connection id reaches it wherever it went.
    const direct = await control('POST', `/v1/connections/${id}/messages`, { n: ++n });
    assert.equal(direct.json?.delivered, 1, `round ${round}: the push by connection id found it`);
    await s.next((e) => e.event === 'message' && JSON.parse(e.data).n === n, `round ${round}: the push by id`);
    seen.push(n);
  }
  assert.ok((await moved()) >= 2, 'the session moved between the workers');
  assert.deepEqual(seen, Array.from({ length: n }, (_, i) => i + 1), 'every message once, in order');
  const info = await control('GET', `/v1/connections/${id}`);
  assert.deepEqual([info.status, info.json.transport, info.json.user], [200, 'sse', 'ann']);

  // What the client sends lands on either worker: each POST is answered by the worker holding the
  // session (a first token names the worker it started on, and the session moved since).
  const sent = app.byPath('/ws/message').length;
  const tokens = [welcome.token, dataOf(s.events.find((e) => e.event === 'welcome')!).token];
  for (let i = 0; i < 6; i++) {
    const answer = await post(`http://127.0.0.1:${pub}`, tokens[i % 2], { type: 'message', id: `m${i}`, data: { i } });
    assert.deepEqual([answer.status, answer.json], [200, { type: 'ack', id: `m${i}` }], `POST ${i}`);
  }
  assert.deepEqual(app.byPath('/ws/message').slice(sent).map((r) => r.json()), [0, 1, 2, 3, 4, 5].map((i) => ({ i })), 'in order, once each');
  const batch = await post(`http://127.0.0.1:${pub}`, welcome.token, [{ type: 'ping' }, { type: 'message', id: 'last', data: 'last' }]);
  assert.deepEqual(batch.json, [{ type: 'pong' }, { type: 'ack', id: 'last' }]);

  // Presence: one member all along; the marker's join comes with nothing before it but ann's.
  const marker = await open('/ws?user=marker&ch=room');
  await marker.next((e) => e.event === 'welcome', 'the marker');
  await eventually(() => presence.some((e) => e.user === 'marker'), 'the marker joined');
  assert.deepEqual(presence.map((e) => `${e.type} ${e.user}`), ['channel_occupied ann', 'member_added ann', 'member_added marker'], 'no leave and join for the moves');
});

test('workers without a broker: long-poll polls and POSTs land on either worker; the session follows, every message once, in order', async (t) => {
  const app = await startApp(connectAnswer);
  t.after(() => app.close());
  const { pub, control, moved } = await startWorkers(t, app);
  const json = { accept: 'application/json' };
  const opened = await http(`http://127.0.0.1:${pub}`, 'GET', '/ws?transport=long-poll&user=bob&ch=room', json);
  assert.equal(opened.status, 200);
  const [welcome] = opened.json;
  const id: string = welcome.session;
  let token: string = welcome.token;
  let lastSeq = 0;
  const got: number[] = [];
  const sent = app.byPath('/ws/message').length;
  for (let i = 1; i <= 8; i++) {
    assert.equal((await control('POST', '/v1/users/bob/messages', { n: i })).status, 202);
    // Each poll on a connection of its own: the worker it lands on has the session, or takes it over.
    while (!got.includes(i)) {
      const answer = await http(`http://127.0.0.1:${pub}`, 'GET', `/ws?transport=long-poll&lastSeq=${lastSeq}`, { ...json, 'x-switchboard-token': token });
      assert.equal(answer.status, 200, `poll for ${i}: ${JSON.stringify(answer.json)}`);
      for (const frame of answer.json) {
        if (frame.type === 'welcome') {
          assert.deepEqual([frame.session, frame.resumed], [id, true], 'the same session, resumed');
          token = frame.token;
        } else if (frame.type === 'message') {
          assert.equal(frame.seq, lastSeq + 1, 'seqs without a hole or a repeat');
          lastSeq = frame.seq;
          got.push(frame.data.n);
        }
      }
    }
    const ack = await post(`http://127.0.0.1:${pub}`, i % 2 ? welcome.token : token, { type: 'message', id: `p${i}`, data: { i } });
    assert.deepEqual([ack.status, ack.json], [200, { type: 'ack', id: `p${i}` }], `POST ${i}`);
  }
  assert.deepEqual(got, [1, 2, 3, 4, 5, 6, 7, 8]);
  assert.ok((await moved()) >= 1, 'the session moved between the workers');
  assert.deepEqual(app.byPath('/ws/message').slice(sent).map((r) => r.json().i), [1, 2, 3, 4, 5, 6, 7, 8], 'what it sent: in order, once each');
  assert.equal((await control('GET', `/v1/connections/${id}`)).json.transport, 'long-poll');
});
