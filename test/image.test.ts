// The image's runtime stage, reproduced without docker (no image registry is reachable where the
// suite runs): the files its COPY lines copy, its npm ci, its user, its entrypoint and its health
// check, started the way the README's `docker run` line starts it. The test reads the Dockerfile,
// so a change there is a change here.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, cpSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join, relative } from 'node:path';
import { randomBytes } from 'node:crypto';
import { startApp, guard } from './helpers/app.js';
import { connect } from './helpers/client.js';
import { freePort } from './helpers/process.js';

const root = new URL('../../', import.meta.url).pathname;

interface Instruction { readonly op: string; readonly args: string }
interface Stage { readonly name: string | null; readonly steps: Instruction[] }

/** The Dockerfile's instructions by stage; continuation lines joined, comments dropped. */
function stages(text: string): Stage[] {
  const out: Stage[] = [];
  const joined = text.replace(/\\\n/g, ' ').split('\n').map((l) => l.trim()).filter((l) => l !== '' && !l.startsWith('#'));
  for (const line of joined) {
    const [, op, args] = /^(\w+)\s+(.*)$/.exec(line) ?? [];
    assert.ok(op, `a Dockerfile line we cannot read: ${line}`);
    if (op.toUpperCase() === 'FROM') out.push({ name: /\sAS\s+(\S+)$/i.exec(args)?.[1] ?? null, steps: [] });
    else out[out.length - 1].steps.push({ op: op.toUpperCase(), args });
  }
  return out;
}

/** The JSON array of an exec-form instruction (ENTRYPOINT, CMD), after any `--option=value`. */
function execForm(args: string): string[] {
  const list = JSON.parse(args.slice(args.indexOf('['))) as unknown;
  assert.ok(Array.isArray(list) && list.every((a) => typeof a === 'string'), `expected an exec-form list: ${args}`);
  return list;
}

/** `.dockerignore` patterns (relative to the context root, `*` within a name, `**` across names). */
function ignoredBy(text: string): (rel: string) => boolean {
  const patterns = text.split('\n').map((l) => l.trim()).filter((l) => l !== '' && !l.startsWith('#')).map((p) => {
    const body = p.replace(/^\/+|\/+$/g, '').split('**').map((part) => part.split('*').map((s) => s.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('[^/]*')).join('.*');
    return new RegExp(`^${body}(/.*)?$`);
  });
  return (rel) => patterns.some((p) => p.test(rel));
}

// Steps of the Dockerfile the test does not run on the host, each with why.
const notReproduced: Record<string, string> = {
  'npm cache clean --force': 'it keeps the image layer small; here it would empty the machine\'s npm cache',
};

const dockerfile = stages(readFileSync(join(root, 'Dockerfile'), 'utf8'));
const runtime = dockerfile[dockerfile.length - 1];
const step = (op: string): Instruction[] => runtime.steps.filter((s) => s.op === op);
const ignored = ignoredBy(existsSync(join(root, '.dockerignore')) ? readFileSync(join(root, '.dockerignore'), 'utf8') : '');

let dir = '';
const npmCiRuns: string[][] = [];

/** npm without the variables an enclosing `npm test` sets (its local prefix would be the repository's). */
function npmEnv(): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^npm_/i.test(k)));
}

/** Copies a COPY line's sources: from the context, or from the build stage (its WORKDIR is the checkout, built with tsc). */
function copy(args: string): void {
  const words = args.split(/\s+/);
  const from = words.find((w) => w.startsWith('--from='))?.slice('--from='.length);
  const [dest, ...sources] = words.filter((w) => !w.startsWith('--')).reverse();
  let prefix = '';
  if (from !== undefined) {
    const stage = dockerfile.find((s) => s.name === from);
    assert.ok(stage, `COPY --from=${from}: no such stage`);
    prefix = stage.steps.filter((s) => s.op === 'WORKDIR').pop()?.args ?? '/';
  }
  for (const source of sources.reverse()) {
    let rel = source;
    if (from !== undefined) {
      assert.ok(source.startsWith(`${prefix}/`), `COPY --from=${from} ${source}: outside the build stage's WORKDIR ${prefix}`);
      rel = source.slice(prefix.length + 1);
    }
    const src = join(root, rel);
    assert.ok(existsSync(src), `COPY ${source}: ${relative(root, src)} does not exist (run tsc first)`);
    const target = statSync(src).isDirectory() || !dest.endsWith('/') ? join(dir, dest) : join(dir, dest, basename(src));
    cpSync(src, target, { recursive: true, filter: (p) => from !== undefined || !ignored(relative(root, p)) });
  }
}

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'switchboard-image-'));
  chmodSync(dir, 0o755); // WORKDIR is created world-readable; the image's user must read it
  for (const { op, args } of runtime.steps) {
    if (op === 'COPY') copy(args);
    if (op !== 'RUN') continue;
    for (const command of args.split('&&').map((c) => c.trim())) {
      if (command in notReproduced) continue;
      assert.match(command, /^npm ci(\s|$)/, `RUN ${command}: the test does not know how to reproduce it`);
      const argv = [...command.split(/\s+/).slice(1), '--prefer-offline', `--prefix=${dir}`];
      const result = spawnSync('npm', argv, { cwd: dir, env: npmEnv(), encoding: 'utf8', timeout: 120_000 });
      assert.equal(result.status, 0, `npm ${argv.join(' ')}: ${result.stderr}`);
      npmCiRuns.push(argv);
    }
  }
});

after(() => { if (dir) rmSync(dir, { recursive: true, force: true }); });

test('the runtime stage installs the production dependencies, and none of the dev ones', () => {
  assert.equal(npmCiRuns.length, 1, 'one npm ci in the runtime stage');
  assert.ok(npmCiRuns[0].includes('--omit=dev'), 'npm ci --omit=dev');
  assert.ok(npmCiRuns[0].includes('--ignore-scripts'), 'no install scripts (package.json\'s prepare needs the dev dependencies)');
  const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { dependencies: Record<string, string>; devDependencies: Record<string, string> };
  for (const name of Object.keys(pkg.dependencies)) assert.ok(existsSync(join(dir, 'node_modules', name, 'package.json')), `${name} installed`);
  for (const name of Object.keys(pkg.devDependencies)) assert.ok(!existsSync(join(dir, 'node_modules', name)), `${name} (a dev dependency) not installed`);
  assert.ok(existsSync(join(dir, execForm(step('ENTRYPOINT')[0].args)[1])), 'the entrypoint\'s script was copied');
});

test('the image runs as a numeric non-root user', () => {
  const users = step('USER');
  assert.equal(users.length, 1, 'one USER in the runtime stage');
  const [uid, gid] = users[0].args.split(':');
  assert.match(uid, /^\d+$/, 'a numeric user: Kubernetes\' runAsNonRoot cannot check a name');
  assert.notEqual(Number(uid), 0, 'not root');
  assert.ok(gid === undefined || (/^\d+$/.test(gid) && Number(gid) !== 0), 'a numeric group that is not root\'s');
});

/** `docker run … switchboard`'s `-e NAME=value` and `-p` from the README's Docker section. */
function readmeDockerRun(): { env: Map<string, string>; ports: string[] } {
  const readme = readFileSync(join(root, 'README.md'), 'utf8');
  const section = readme.slice(readme.indexOf('## Docker'), readme.indexOf('\n## ', readme.indexOf('## Docker') + 1));
  const commands = section.replace(/\\\n/g, ' ').split('\n').filter((l) => /^docker run\b.*\sswitchboard\s*$/.test(l.replace(/\s+#.*$/, '')));
  assert.equal(commands.length, 1, 'the README runs the switchboard image once');
  const env = new Map([...commands[0].matchAll(/-e\s+(\w+)=(\S+)/g)].map((m) => [m[1], m[2]] as [string, string]));
  const ports = [...commands[0].matchAll(/-p\s+(?:[\d.]+:)?\d+:(\d+)/g)].map((m) => m[1]);
  return { env, ports };
}

function run(argv: string[], env: NodeJS.ProcessEnv, user: { uid: number; gid: number } | null) {
  const [command, ...args] = argv;
  // The image's `node` is this machine's node.
  return spawn(command === 'node' ? process.execPath : command, args, { cwd: dir, env, stdio: ['ignore', 'pipe', 'pipe'], ...(user ?? {}) });
}

async function healthcheck(env: NodeJS.ProcessEnv, user: { uid: number; gid: number } | null): Promise<number | null> {
  const check = step('HEALTHCHECK');
  assert.equal(check.length, 1, 'one HEALTHCHECK');
  const child = run(execForm(check[0].args.slice(check[0].args.indexOf('CMD'))), env, user);
  const [code] = await guard(new Promise<[number | null]>((resolve) => child.on('exit', (c) => resolve([c]))), 'the health check to exit');
  return code;
}

test('started as the README\'s docker run line says, as the image\'s user: it serves, takes pushes with the token, passes the health check, and exits 0 on SIGTERM', async (t) => {
  const readme = readmeDockerRun();
  assert.ok(readme.ports.every((p) => step('EXPOSE').some((e) => e.args.split(/\s+/).includes(p))), 'the README publishes only ports the image exposes');
  assert.ok(readme.env.has('SWITCHBOARD_APP_URL'), 'the README names the app');
  assert.match(readme.env.get('SWITCHBOARD_CONTROL_LISTEN') ?? '', /^0\.0\.0\.0:\d+$/, 'the README opens the control port to the network');
  assert.ok(readme.env.has('SWITCHBOARD_CONTROL_TOKEN'), 'with a token');

  const app = await startApp((req) => (req.url === '/ws/connect' ? { body: { user: 'u1', channels: ['chat'] } } : { status: 204 }));
  t.after(() => app.close());
  const token = randomBytes(32).toString('hex');
  const controlPort = await freePort();
  // A container's environment: the Dockerfile's ENV, the README's -e, nothing of this machine's but PATH.
  const env: NodeJS.ProcessEnv = { PATH: process.env.PATH };
  for (const { args } of step('ENV')) for (const [, k, v] of args.matchAll(/(\w+)=(\S+)/g)) env[k] = v;
  for (const [k, v] of readme.env) env[k] = v;
  // What a test machine changes: loopback addresses only, the app on its own port, a fresh token.
  env.SWITCHBOARD_APP_URL = app.url;
  env.SWITCHBOARD_CONTROL_LISTEN = `127.0.0.1:${controlPort}`;
  env.SWITCHBOARD_CONTROL_TOKEN = token;
  env.SWITCHBOARD_LISTEN = '127.0.0.1:0';
  const [uid, gid] = step('USER')[0].args.split(':').map(Number);
  // Only root may switch users; elsewhere the suite already runs as a user that is not root.
  const user = process.getuid?.() === 0 ? { uid, gid: gid ?? uid } : null;

  assert.notEqual(await healthcheck(env, user), 0, 'the health check fails while nothing listens');

  const child = run(execForm(step('ENTRYPOINT')[0].args), env, user);
  let out = '';
  child.stdout!.on('data', (d: Buffer) => { out += d.toString(); });
  child.stderr!.on('data', (d: Buffer) => { out += d.toString(); });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
  t.after(() => { if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL'); });
  await guard(new Promise<void>((resolve) => {
    const check = () => { if (out.includes('"msg":"switchboard ready"')) resolve(); };
    child.stdout!.on('data', check);
    check();
  }), `the ready log line; got: ${out.slice(-500)}`, 15_000);
  const ready = JSON.parse(out.split('\n').find((l) => l.includes('"msg":"switchboard ready"'))!);
  assert.equal(ready.control.port, controlPort);

  if (user && existsSync(`/proc/${child.pid}/status`)) {
    const status = readFileSync(`/proc/${child.pid}/status`, 'utf8');
    assert.equal(/^Uid:\s+(\d+)/m.exec(status)?.[1], String(uid), 'the process runs as the image\'s user');
  }
  assert.equal(await healthcheck(env, user), 0, 'the health check passes');

  const client = await connect(`ws://127.0.0.1:${ready.listen.port}/ws`);
  const push = (headers: Record<string, string>) => fetch(`http://127.0.0.1:${controlPort}/v1/channels/chat/messages`, {
    method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify({ text: 'hi' }),
  });
  assert.equal((await push({})).status, 401, 'no push without the token');
  assert.equal((await push({ authorization: `Bearer ${token}` })).status, 202);
  assert.deepEqual((await client.next('the push')).json(), { text: 'hi' });

  child.kill('SIGTERM');
  assert.deepEqual(await guard(exited, 'the exit after SIGTERM', 15_000), { code: 0, signal: null });
  await app.waitFor((r) => r.url === '/ws/disconnect', 'the disconnect webhook of the drained client');
  await client.closed;
  assert.notEqual(await healthcheck(env, user), 0, 'the health check fails once it has stopped');
});

test('the Dockerfile reader refuses what it cannot follow', () => {
  assert.throws(() => stages('FROM x\nnonsense'), /cannot read/);
  assert.throws(() => execForm('CMD node -e x'), SyntaxError);
  assert.throws(() => execForm('CMD ["node", 1]'), /exec-form/);
  const ignore = ignoredBy('node_modules\n*.log\n# a comment\ndist/');
  assert.deepEqual(['node_modules', 'node_modules/ws/index.js', 'a.log', 'dist/proxy/cli.js', 'docs/a.log', 'proxy/cli.ts'].map(ignore), [true, true, true, true, false, false]);
});
