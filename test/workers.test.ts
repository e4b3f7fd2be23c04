import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { startApp } from './helpers/app.js';
import { connect, connectReliable, type TestClient } from './helpers/client.js';
import { freePort, runCli, startWorkers, writeConfig } from './helpers/process.js';
import { eventually } from './helpers/eventually.js';

async function control(port: number, method: string, path: string, body?: unknown) {
  const res = await fetch(`http://127.0.0.1:${port}${path}`, {
    method,
    headers: body === undefined ? {} : { 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, text, json: text.startsWith('{') ? JSON.parse(text) : undefined };
}

test('two workers: one push API over both, aggregated metrics, a crashed worker restarted, SIGTERM drains both', async (t) => {
  const app = await startApp((r) => r.url === '/ws/connect'
    ? { body: { user: `u${r.json().query.n}`, channels: [Number(r.json().query.n) % 2 ? 'odd' : 'even'] } }
    : { status: 204 });
  t.after(() => app.close());
  const [pub, ctl, met] = [await freePort(), await freePort(), await freePort()];
  const cli = runCli(['--config', writeConfig({
    listen: `127.0.0.1:${pub}`, control: { listen: `127.0.0.1:${ctl}` }, metrics: { listen: `127.0.0.1:${met}` }, workers: 2, nodeId: 'n1',
    app: { url: app.url }, log: { level: 'info' }, drain: { timeoutMs: 5000 },
  })]);
  t.after(() => { cli.child.kill('SIGKILL'); });
  await cli.waitForOutput(/switchboard primary ready/);

  const clients: Array<{ client: TestClient; session: string }> = [];
  for (let n = 0; n < 8; n++) {
    const { client, welcome } = await connectReliable(`ws://127.0.0.1:${pub}/ws?n=${n}`);
    clients.push({ client, session: welcome.session });
  }
  const workers = new Set(clients.map((c) => c.session.split('-')[1]));
  assert.deepEqual([...workers].sort(), ['0', '1'], 'connections spread over both workers, ids name them');
  assert.ok(clients.every((c) => c.session.startsWith('n1-')));

  // By connection, on either worker.
  for (const { client, session } of clients.slice(0, 2)) {
    assert.deepEqual((await control(ctl, 'POST', `/v1/connections/${session}/messages`, { to: session })).json, { delivered: 1, queued: 0, dropped: 0 });
    assert.deepEqual((await client.until('message')).data, { to: session });
  }
  assert.equal((await control(ctl, 'POST', '/v1/connections/n1-0-nope/messages', {})).status, 404);
  assert.equal((await control(ctl, 'POST', '/v1/broadcast', { all: 1 })).json.delivered, 8);
  assert.equal((await control(ctl, 'POST', '/v1/channels/odd/messages', { odd: 1 })).json.delivered, 4);
  assert.equal((await control(ctl, 'POST', '/v1/users/u3/messages', { u: 3 })).json.delivered, 1);
  assert.equal((await control(ctl, 'GET', '/v1/channels/even')).json.connections, 4);
  const info = await control(ctl, 'GET', `/v1/connections/${clients[5].session}`);
  assert.equal(info.json.user, 'u5');
  // metrics.listen is the primary's: every worker's metrics, aggregated, and its readiness.
  const scraped = await (await fetch(`http://127.0.0.1:${met}/metrics`)).text();
  assert.match(scraped, /switchboard_connections 8\b/);
  assert.equal((await fetch(`http://127.0.0.1:${met}/readyz`)).status, 200);

  // Paging across workers: every connection once.
  const seen: string[] = [];
  let cursor: string | null = null;
  for (let pages = 0; pages < 10; pages++) {
    const page: any = (await control(ctl, 'GET', `/v1/connections?limit=3${cursor ? `&cursor=${cursor}` : ''}`)).json;
    seen.push(...page.connections.map((c: any) => c.connection));
    cursor = page.next;
    if (!cursor) break;
  }
  assert.deepEqual(seen.sort(), clients.map((c) => c.session).sort());

  const metrics = (await control(ctl, 'GET', '/metrics')).text;
  assert.match(metrics, /^switchboard_connections 8$/m);
  assert.match(metrics, /^switchboard_worker_restarts_total 0$/m);

  // Crash one worker: its clients lose their sockets, it comes back, the count says so.
  const pids = execFileSync('pgrep', ['-P', String(cli.child.pid)]).toString().trim().split('\n').map(Number);
  assert.equal(pids.length, 2);
  for (const pid of pids) {
    const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    assert.ok(argv.includes('--max-semi-space-size=4'), `worker ${pid} runs with the workers' young generation: ${argv.join(' ')}`);
  }
  process.kill(pids[0], 'SIGKILL');
  await cli.waitForOutput(/worker exited: restarting it/);
  // Generous bounds: right after a crash, /metrics can wait seconds for the new worker (and answer 500).
  let restarted = { status: 0, text: '' };
  await eventually(async () => {
    restarted = await control(ctl, 'GET', '/metrics');
    return /^switchboard_worker_restarts_total 1$/m.test(restarted.text);
  }, () => `the restart counted (last /metrics ${restarted.status}: ${/^switchboard_worker_restarts_total .*$/m.exec(restarted.text)?.[0] ?? restarted.text.slice(0, 200)})`, 30_000, 50);
  await eventually(async () => (await control(ctl, 'GET', '/readyz')).status === 200, '/readyz 200 with the worker back', 30_000, 50);

  const raw = await connect(`ws://127.0.0.1:${pub}/ws?n=9`);
  cli.child.kill('SIGTERM');
  assert.equal((await raw.closed).code, 1012);
  const survivors = clients.filter((c) => c.client.ws.readyState === 1);
  assert.ok(survivors.length >= 1);
  for (const { client } of survivors) assert.equal((await client.until('reconnect')).type, 'reconnect');
  assert.deepEqual(await cli.exited, { code: 0, signal: null });
  // Every session of the live worker got its disconnect webhook before the exit.
  const disconnected = new Set(app.byPath('/ws/disconnect').map((r) => r.json().connection));
  for (const { session } of survivors) assert.ok(disconnected.has(session), `disconnect for ${session}`);
});

test("workers keep the operator's young-generation size when NODE_OPTIONS sets one", async (t) => {
  const [pub, ctl] = [await freePort(), await freePort()];
  const cli = runCli(['--config', writeConfig({
    listen: `127.0.0.1:${pub}`, control: { listen: `127.0.0.1:${ctl}` }, workers: 2, log: { level: 'info' },
  })], { NODE_OPTIONS: '--max-semi-space-size=8' });
  t.after(() => { cli.child.kill('SIGKILL'); });
  await cli.waitForOutput(/switchboard primary ready/);
  const pids = execFileSync('pgrep', ['-P', String(cli.child.pid)]).toString().trim().split('\n').map(Number);
  assert.equal(pids.length, 2);
  for (const pid of pids) {
    assert.ok(!readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').includes('--max-semi-space-size=4'));
    assert.match(readFileSync(`/proc/${pid}/environ`, 'utf8'), /NODE_OPTIONS=--max-semi-space-size=8/);
  }
  cli.child.kill('SIGTERM');
  assert.deepEqual(await cli.exited, { code: 0, signal: null });
});

test('two workers: 200 reliable sessions dropped and resumed all come back with their session and held messages, whichever worker the reconnect lands on', async (t) => {
  const app = await startApp((r) => (r.url === '/ws/connect' ? { body: { user: `u${r.json().query.n}` } } : { status: 204 }));
  t.after(() => app.close());
  const { cli, pub, ctl } = await startWorkers(t, app.url, 'n2');

  const sessions: Array<{ session: string; token: string; client: TestClient }> = [];
  for (let n = 0; n < 200; n++) {
    const { client, welcome } = await connectReliable(`ws://127.0.0.1:${pub}/ws?n=${n}`);
    sessions.push({ session: welcome.session, token: welcome.token, client });
  }
  // Drop every socket; a push while detached is held for the resume.
  for (const s of sessions) s.client.ws.terminate();
  for (const s of sessions) {
    await eventually(async () => (await control(ctl, 'GET', `/v1/connections/${s.session}`)).json?.state === 'detached', `session ${s.session} detached`);
    assert.equal((await control(ctl, 'POST', `/v1/connections/${s.session}/messages`, { held: s.session })).json.queued, 1);
  }
  let resumed = 0;
  for (const s of sessions) {
    const { client, welcome } = await connectReliable(`ws://127.0.0.1:${pub}/ws?resume=${encodeURIComponent(s.token)}&lastSeq=0`);
    t.after(() => client.close().then(() => {}));
    if (welcome.resumed === true && welcome.session === s.session) resumed++;
    const held = await client.until('message');
    assert.deepEqual(held.data, { held: s.session });
    s.client = client;
  }
  assert.equal(resumed, 200, 'every session resumed');
  // Round-robin accepts put sessions on both workers, so about half the reconnects land on the other one.
  const onFirst = sessions.filter((s) => s.session.split('-')[1] === '0').length;
  assert.ok(onFirst > 0 && onFirst < 200, 'sessions live on both workers');
  assert.equal(app.byPath('/ws/connect').length, 200, 'no resume made a new connect');
});

test('workers: while a worker does not answer for its metrics, /metrics and /v1/status are a 503, not partial counters; then whole again', async (t) => {
  const app = await startApp();
  t.after(() => app.close());
  const { cli, ctl } = await startWorkers(t, app.url, 'mq');
  const pids = execFileSync('pgrep', ['-P', String(cli.child.pid)]).toString().trim().split('\n').map(Number);
  assert.equal(pids.length, 2);
  const whole = await fetch(`http://127.0.0.1:${ctl}/metrics`);
  assert.equal(whole.status, 200);
  await whole.text();
  // A worker that cannot answer (stopped, as one that hangs or is being replaced).
  process.kill(pids[0]!, 'SIGSTOP');
  t.after(() => { try { process.kill(pids[0]!, 'SIGCONT'); } catch { /* gone */ } });
  const res = await fetch(`http://127.0.0.1:${ctl}/metrics`);
  assert.equal(res.status, 503);
  assert.equal(res.headers.get('retry-after'), '1');
  assert.match(res.headers.get('content-type') ?? '', /application\/json/);
  assert.equal((await res.json() as { error: string }).error, 'metrics_unavailable');
  // The status page's numbers come from the same text: the same clear answer.
  const status = await fetch(`http://127.0.0.1:${ctl}/v1/status`);
  assert.equal(status.status, 503);
  assert.equal((await status.json() as { error: string }).error, 'metrics_unavailable');
  process.kill(pids[0]!, 'SIGCONT');
  await eventually(async () => (await fetch(`http://127.0.0.1:${ctl}/metrics`)).status === 200, 'metrics whole again', 15_000);
});
