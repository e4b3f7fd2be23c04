// Shutdown: close() drains (not ready, no new handshakes, 1012 for raw clients, a reconnect
// hint for reliable ones, in-flight webhooks and disconnects finished first), and the CLI
// does the same on SIGTERM, then exits 0.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { guard, startApp } from './helpers/app.js';
import { startSidecar } from './helpers/sidecar.js';
import { connect, connectReliable } from './helpers/client.js';
import { freePort, runCli } from './helpers/process.js';

test('close() drains: readyz 503, new handshakes 503, raw 1012, reliable reconnect, webhooks finished first', async (t) => {
  const events: string[] = [];
  const app = await startApp((r, res) => {
    if (r.url === '/ws/message' && r.text === 'slow') {
      // Answered late: the drain must wait for it.
      setTimeout(() => {
        events.push('message answered');
        res.writeHead(204).end();
      }, 300);
      return 'handled';
    }
    if (r.url === '/ws/disconnect') events.push(`disconnect ${r.json().connection}`);
    return { status: 204 };
  });
  const sc = await startSidecar(app.url, { drain: { timeoutMs: 3000 } });
  t.after(async () => { await sc.close(); await app.close(); });

  const raw1 = await connect(sc.wsUrl('/ws?name=raw1'));
  const raw2 = await connect(sc.wsUrl('/ws?name=raw2'));
  const leaver = await connectReliable(sc.wsUrl('/ws?name=leaver'));
  const stayer = await connectReliable(sc.wsUrl('/ws?name=stayer'));
  const ids = new Map<string, string>();
  for (const name of ['raw1', 'raw2', 'leaver', 'stayer']) {
    const r = await app.waitFor((q) => q.url === '/ws/connect' && q.json().query.name === name);
    ids.set(name, r.json().connection);
  }
  assert.equal((await sc.control('GET', '/readyz')).status, 200);

  raw1.send('slow');
  await app.waitFor((r) => r.url === '/ws/message' && r.text === 'slow', 'the slow message webhook');

  const closing = sc.sb.close().then(() => { events.push('closed'); });

  const ready = await sc.control('GET', '/readyz');
  assert.equal(ready.status, 503, 'not ready while draining');
  await assert.rejects(connect(sc.wsUrl('/ws?name=late')), (e: any) => e.status === 503, 'no new handshakes while draining');
  assert.equal(app.requests.filter((r) => r.url === '/ws/connect' && r.json().query.name === 'late').length, 0);

  assert.equal((await guard(raw1.closed, 'raw1 close')).code, 1012);
  assert.equal((await guard(raw2.closed, 'raw2 close')).code, 1012);

  const hint = await leaver.client.until('reconnect');
  assert.ok(Number.isInteger(hint.afterMs) && hint.afterMs >= 0 && hint.afterMs <= 3000, `afterMs ${hint.afterMs}`);
  await leaver.client.close(1000);
  const stayerHint = await stayer.client.until('reconnect');
  assert.ok(Number.isInteger(stayerHint.afterMs));
  // A reliable client that ignores the hint is closed like the rest before the budget ends.
  assert.equal((await guard(stayer.client.closed, 'stayer close')).code, 1012);

  await guard(closing, 'close() to resolve');
  const at = (e: string) => events.indexOf(e);
  assert.ok(at('message answered') >= 0, 'the in-flight message webhook was answered');
  assert.ok(at('message answered') < at(`disconnect ${ids.get('raw1')}`), "raw1's message reached the app before its disconnect");
  for (const [name, id] of ids) {
    assert.ok(at(`disconnect ${id}`) >= 0, `${name} got its disconnect webhook`);
    assert.ok(at(`disconnect ${id}`) < at('closed'), `${name}'s disconnect came before close() resolved`);
  }
  assert.equal(app.requests.filter((r) => r.url === '/ws/message' && r.text === 'slow').length, 1, 'the slow webhook was not cut and retried');
  const codes = Object.fromEntries(app.byPath('/ws/disconnect').map((r) => [r.json().connection, r.json().code]));
  assert.equal(codes[ids.get('raw1')!], 1012);
  assert.equal(codes[ids.get('raw2')!], 1012);
  assert.equal(codes[ids.get('leaver')!], 1000);
  assert.equal(codes[ids.get('stayer')!], 1012);
  assert.equal(sc.sb.state, 'closed');
  await assert.rejects(fetch(`${sc.httpUrl}/`), 'the public port is closed');
});

test('the CLI drains on SIGTERM: a raw client is closed 1012, the app hears the disconnect, exit code 0', async (t) => {
  const app = await startApp();
  t.after(() => app.close());
  const [pub, ctl] = [await freePort(), await freePort()];
  const dir = mkdtempSync(join(tmpdir(), 'switchboard-drain-'));
  const file = join(dir, 'switchboard.yaml');
  writeFileSync(file, [
    `listen: "127.0.0.1:${pub}"`,
    'control:',
    `  listen: "127.0.0.1:${ctl}"`,
    'app:',
    `  url: "${app.url}"`,
    'log:',
    '  level: info',
    'drain:',
    '  timeoutMs: 3000',
    '',
  ].join('\n'));
  const cli = runCli(['--config', file]);
  t.after(() => { if (cli.child.exitCode === null && cli.child.signalCode === null) cli.child.kill('SIGKILL'); });
  await cli.waitForOutput(/switchboard ready/);

  const c = await connect(`ws://127.0.0.1:${pub}/ws`);
  await app.waitFor((r) => r.url === '/ws/connect');
  c.send('before the signal');
  await app.waitFor((r) => r.url === '/ws/message', 'message webhook');

  cli.child.kill('SIGTERM');
  assert.equal((await guard(c.closed, 'client close on SIGTERM')).code, 1012);
  const exit = await guard(cli.exited, `exit; output: ${cli.output().slice(-500)}`);
  assert.deepEqual(exit, { code: 0, signal: null });
  const disc = app.byPath('/ws/disconnect');
  assert.equal(disc.length, 1, 'the disconnect webhook was sent before the process exited');
  assert.equal(disc[0].json().code, 1012);
});
