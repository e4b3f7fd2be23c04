// The CLI as a real process: exit codes, stderr lines, --check, signals.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:net';
import { startApp, guard } from './helpers/app.js';
import { connect, connectReliable } from './helpers/client.js';
import { runCli, writeConfig, type CliProcess } from './helpers/process.js';

/** Runs the CLI to its exit (killed if it hangs), returning the code and both streams. */
async function runToExit(args: string[], env: Record<string, string> = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const cli = runCli(args, env);
  let stdout = '';
  let stderr = '';
  cli.child.stdout!.on('data', (d: Buffer) => { stdout += d.toString(); });
  cli.child.stderr!.on('data', (d: Buffer) => { stderr += d.toString(); });
  const timer = setTimeout(() => cli.child.kill('SIGKILL'), 15_000);
  const { code } = await cli.exited;
  clearTimeout(timer);
  return { code, stdout, stderr };
}

const lines = (s: string): string[] => s.split('\n').filter((l) => l.length > 0);

async function occupy(t: import('node:test').TestContext): Promise<number> {
  const server: Server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  t.after(() => new Promise<void>((r) => server.close(() => r())));
  return (server.address() as { port: number }).port;
}

/** Starts the CLI on port 0 and reads the ports it bound from its ready log line. */
async function startCli(t: import('node:test').TestContext, config: object): Promise<{ cli: CliProcess; publicPort: number; controlPort: number }> {
  const cli = runCli(['--config', writeConfig(config)]);
  t.after(() => { if (cli.child.exitCode === null && cli.child.signalCode === null) cli.child.kill('SIGKILL'); });
  await cli.waitForOutput(/"msg":"switchboard ready"/, 'the ready log line');
  const line = cli.output().split('\n').find((l) => l.includes('"msg":"switchboard ready"'))!;
  const ready = JSON.parse(line);
  return { cli, publicPort: ready.listen.port, controlPort: ready.control.port };
}

test('a bad config exits 2 with one stderr line per problem, each naming its path', async () => {
  const file = writeConfig({
    listen: '127.0.0.1:0',
    webhooks: { timeoutMs: 'fast' },
    session: { outbox: { onOverflow: 'sometimes' } },
    bogus: true,
  });
  const { code, stdout, stderr } = await runToExit(['--config', file]);
  assert.equal(code, 2);
  assert.equal(stdout, '');
  assert.deepEqual(lines(stderr).sort(), [
    'bogus: unknown key',
    'session.outbox.onOverflow: expected "close" or "drop-oldest", got "sometimes"',
    'webhooks.timeoutMs: expected a positive integer, got "fast"',
  ]);
});

test('a missing config file and a bad environment override also exit 2', async () => {
  const missing = await runToExit(['--config', '/nonexistent/switchboard.yaml']);
  assert.equal(missing.code, 2);
  assert.equal(lines(missing.stderr).length, 1);
  assert.match(missing.stderr, /^\/nonexistent\/switchboard\.yaml: /);

  const level = await runToExit(['--check'], { SWITCHBOARD_LOG_LEVEL: 'chatty' });
  assert.equal(level.code, 2);
  assert.deepEqual(lines(level.stderr), ['log.level: expected a pino level, got "chatty" (set by SWITCHBOARD_LOG_LEVEL)']);
  const open = await runToExit(['--check'], { SWITCHBOARD_CONTROL_LISTEN: '0.0.0.0:0' });
  assert.equal(open.code, 2);
  assert.match(open.stderr, /^control\.token: required/);

  const viaEnv = await runToExit(['--check'], { SWITCHBOARD_CONFIG: writeConfig({ listen: 42 }) });
  assert.equal(viaEnv.code, 2);
  assert.match(viaEnv.stderr, /^listen: /);
});

test('an unknown flag exits 2 with the usage', async () => {
  const { code, stderr } = await runToExit(['--no-such-flag']);
  assert.equal(code, 2);
  assert.match(stderr, /usage: switchboard/);
});

test('--help lists every flag, short forms included, and each one works', async () => {
  const { code, stdout } = await runToExit(['--help']);
  assert.equal(code, 0);
  for (const flag of ['-c, --config FILE', '--check', '--version', '-h, --help']) assert.ok(stdout.includes(flag), flag);
  assert.equal((await runToExit(['-h'])).stdout, stdout);
  assert.match((await runToExit(['--version'])).stdout, /^\d+\.\d+\.\d+\n$/);
  const file = writeConfig({ listen: '127.0.0.1:0' });
  assert.equal((await runToExit(['-c', file, '--check'])).stdout, 'configuration is valid\n');
});

test('--check validates without starting anything', async (t) => {
  const taken = await occupy(t);
  const good = await runToExit(['--check', '--config', writeConfig({ listen: `127.0.0.1:${taken}`, control: { listen: `127.0.0.1:${taken}` } })]);
  assert.equal(good.code, 0, good.stderr);
  assert.match(good.stdout, /valid/);
  assert.equal(good.stderr, '');

  const bad = await runToExit(['--check', '--config', writeConfig({ heartbeat: { intervalMs: 0 } })]);
  assert.equal(bad.code, 2);
  assert.deepEqual(lines(bad.stderr), ['heartbeat.intervalMs: expected a positive integer, got 0']);
});

for (const which of ['public', 'control'] as const) {
  test(`a ${which} port already in use exits 1 with a message naming the port`, async (t) => {
    const taken = await occupy(t);
    const config = which === 'public'
      ? { listen: `127.0.0.1:${taken}`, control: { listen: '127.0.0.1:0' } }
      : { listen: '127.0.0.1:0', control: { listen: `127.0.0.1:${taken}` } };
    const { code, stderr } = await runToExit(['--config', writeConfig({ ...config, log: { level: 'silent' } })]);
    assert.equal(code, 1);
    assert.ok(stderr.includes(String(taken)), `stderr names port ${taken}: ${stderr}`);
    assert.match(stderr, /in use/);
  });
}

test('SIGTERM drains a running sidecar: clients closed 1012, disconnect webhook sent, exit 0', async (t) => {
  const app = await startApp();
  t.after(() => app.close());
  const { cli, publicPort, controlPort } = await startCli(t, {
    listen: '127.0.0.1:0', control: { listen: '127.0.0.1:0' }, app: { url: app.url }, log: { level: 'info' }, drain: { timeoutMs: 2000 },
  });
  assert.equal((await fetch(`http://127.0.0.1:${controlPort}/readyz`)).status, 200);
  const raw = await connect(`ws://127.0.0.1:${publicPort}/ws`);
  const { client: reliable } = await connectReliable(`ws://127.0.0.1:${publicPort}/ws`);
  t.after(() => { raw.ws.terminate(); reliable.ws.terminate(); });

  cli.child.kill('SIGTERM'); // the handshakes above mean the CLI is past start(): its handlers are set
  assert.equal((await guard(raw.closed, 'raw client closed')).code, 1012);
  assert.equal((await reliable.until('reconnect')).type, 'reconnect');
  const { code, signal } = await guard(cli.exited, 'exit after SIGTERM', 15_000);
  assert.equal(signal, null);
  assert.equal(code, 0);
  assert.equal(app.byPath('/ws/disconnect').length, 2, 'both sessions ended and the app heard of it before the exit');
});

test('SIGINT on an idle sidecar also exits 0', async (t) => {
  const { cli, controlPort } = await startCli(t, { listen: '127.0.0.1:0', control: { listen: '127.0.0.1:0' }, log: { level: 'info' }, drain: { timeoutMs: 1000 } });
  // An answered request means the CLI went past start(): its signal handlers are in place.
  assert.equal((await fetch(`http://127.0.0.1:${controlPort}/healthz`)).status, 200);
  cli.child.kill('SIGINT');
  const { code, signal } = await guard(cli.exited, 'exit after SIGINT', 15_000);
  assert.deepEqual({ code, signal }, { code: 0, signal: null });
});

test('a SIGTERM sent as soon as the ready line is logged is still a drain and exit 0', async (t) => {
  // The ready line (and /readyz 200) must not come before the signal handlers: a
  // supervisor may stop the process the moment it looks ready. Several tries, since a
  // wrong order only shows when the signal wins the race.
  const config = { listen: '127.0.0.1:0', control: { listen: '127.0.0.1:0' }, log: { level: 'info' }, drain: { timeoutMs: 1000 } };
  const results: Array<{ code: number | null; signal: string | null }> = [];
  for (let round = 0; round < 2; round++) {
    results.push(...await Promise.all(Array.from({ length: 6 }, async () => {
      const cli = runCli(['--config', writeConfig(config)]);
      t.after(() => { if (cli.child.exitCode === null && cli.child.signalCode === null) cli.child.kill('SIGKILL'); });
      await cli.waitForOutput(/"msg":"switchboard ready"/, 'the ready log line');
      cli.child.kill('SIGTERM');
      const { code, signal } = await guard(cli.exited, 'exit after SIGTERM', 15_000);
      return { code, signal };
    })));
  }
  const killed = results.filter((r) => r.code !== 0);
  assert.deepEqual(killed, [], `${killed.length} of ${results.length} processes died of the signal instead of draining`);
});

test('an exception that escapes every guard is logged and the process keeps serving', async (t) => {
  const app = await startApp();
  t.after(() => app.close());
  // Thrown from a callback and from a promise nobody awaits, once the test asks (SIGUSR2): after
  // the sidecar has started, whatever the machine's load.
  const escape = "process.on('SIGUSR2', () => setImmediate(() => { Promise.reject(new Error('lost promise')); throw new Error('boom'); }));";
  const cli = runCli(['--config', writeConfig({ listen: '127.0.0.1:0', control: { listen: '127.0.0.1:0' }, app: { url: app.url } })], {
    NODE_OPTIONS: `--import=data:text/javascript,${encodeURIComponent(escape)}`,
  });
  t.after(() => { if (cli.child.exitCode === null) cli.child.kill('SIGKILL'); });
  await cli.waitForOutput(/"msg":"switchboard ready"/, 'the ready log line');
  const ready = JSON.parse(cli.output().split('\n').find((l) => l.includes('"msg":"switchboard ready"'))!);
  cli.child.kill('SIGUSR2');
  await cli.waitForOutput(/"kind":"uncaughtException"[^\n]*escaped every guard|escaped every guard[^\n]*"kind":"uncaughtException"/, 'the uncaught exception logged');
  await cli.waitForOutput(/"kind":"unhandledRejection"[^\n]*escaped every guard|escaped every guard[^\n]*"kind":"unhandledRejection"/, 'the unhandled rejection logged');
  assert.equal((await fetch(`http://127.0.0.1:${ready.control.port}/healthz`)).status, 200);
  const client = await connect(`ws://127.0.0.1:${ready.listen.port}/ws`);
  await client.close();
  assert.equal(cli.child.exitCode, null, 'still running');
});
