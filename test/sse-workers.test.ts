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
import { dataOf, openStream, type Stream } from './sse-stream.js';

const SSE = { accept: 'text/event-stream' };

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
  const [pub, ctl] = [await freePort(), await freePort()];
  const cli = runCli(['--config', writeConfig({
    listen: `127.0.0.1:${pub}`, control: { listen: `127.0.0.1:${ctl}` }, workers: 2, nodeId: 'sw',
    app: { url: app.url }, log: { level: 'info' }, drain: { timeoutMs: 3000 },
    webhooks: { paths: { presence: '/ws/presence' } }, presence: { batchMs: 10 },
  })]);
  t.after(() => { cli.child.kill('SIGKILL'); });
  await cli.waitForOutput(/switchboard primary ready/);
  const streams: Stream[] = [];
  t.after(() => { for (const s of streams) s.drop(); });
  const open = async (path: string, headers: Record<string, string> = SSE) => {
    const s = await openStream(`http://127.0.0.1:${pub}${path}`, headers);
    streams.push(s);
    return s;
  };
  const control = async (method: string, path: string, body?: unknown) => {
    const res = await fetch(`http://127.0.0.1:${ctl}${path}`, { method, headers: body === undefined ? {} : { 'content-type': 'application/json' }, body: body === undefined ? undefined : JSON.stringify(body) });
    return { status: res.status, json: await res.json().catch(() => null) };
  };
  const moved = async () => {
    const text = await (await fetch(`http://127.0.0.1:${ctl}/metrics`)).text();
    return Number(/^switchboard_session_moves_total\{direction="in",result="moved"\} (\d+)$/m.exec(text)?.[1] ?? 0);
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

  // Presence: one member all along; the marker's join comes with nothing before it but ann's.
  const marker = await open('/ws?user=marker&ch=room');
  await marker.next((e) => e.event === 'welcome', 'the marker');
  await eventually(() => presence.some((e) => e.user === 'marker'), 'the marker joined');
  assert.deepEqual(presence.map((e) => `${e.type} ${e.user}`), ['channel_occupied ann', 'member_added ann', 'member_added marker'], 'no leave and join for the moves');
});
