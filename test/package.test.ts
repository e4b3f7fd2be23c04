// The package as someone else's project gets it: `npm pack` (once for this file) ships only what
// runs; the tarball installs into a fresh project without a build; `npx switchboard --check` works
// there; a strict TypeScript project compiles against the client's types; and the client
// README's example runs as written against a real sidecar and app.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { transform } from 'esbuild';
import { startApp, type TestApp } from './helpers/app.js';
import { startSidecar, type Sidecar } from './helpers/sidecar.js';

const run = promisify(execFile);
const root = new URL('../../', import.meta.url).pathname;
const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc');
const work = mkdtempSync(join(tmpdir(), 'switchboard-package-'));
const project = join(work, 'consumer');

/**
 * npm's environment for a child npm: this suite may run under `npm test`, whose npm_* variables
 * describe the repository, not the fresh project. The cache, the registry and the user's npmrc stay.
 */
const npmEnv = Object.fromEntries(Object.entries(process.env).filter(([k]) =>
  !/^npm_/i.test(k) && k !== 'INIT_CWD' || /^npm_config_(cache|registry|userconfig|https?_proxy|proxy|noproxy)$/i.test(k)));

function npm(args: string[], cwd: string) {
  return run('npm', args, { cwd, env: npmEnv, maxBuffer: 16 * 1024 * 1024 });
}

interface Packed {
  readonly filename: string;
  readonly files: ReadonlyArray<{ readonly path: string }>;
}

/** One pack for the whole file; its --json listing is what --dry-run --json prints. */
let packed: Promise<{ tarball: string; files: string[] }> | undefined;
function pack() {
  // --ignore-scripts: `npm test` has just built dist; prepack would build it again under the running suite.
  packed ??= npm(['pack', '--json', '--ignore-scripts', '--pack-destination', work], root).then(({ stdout }) => {
    const [info] = JSON.parse(stdout) as Packed[];
    return { tarball: join(work, info.filename), files: info.files.map((f) => f.path).sort() };
  });
  return packed;
}

/** The tarball installed into a fresh project, once; npm's output kept for the assertions. */
let installed: Promise<string> | undefined;
function install() {
  installed ??= pack().then(async ({ tarball }) => {
    rmSync(project, { recursive: true, force: true });
    mkdirSync(project, { recursive: true });
    writeFileSync(join(project, 'package.json'), JSON.stringify({ name: 'consumer', version: '1.0.0', private: true, type: 'module' }));
    // The dependencies' tarballs come from the cache the repository's `npm ci` filled.
    const { stdout, stderr } = await npm(['install', '--prefer-offline', '--no-audit', '--no-fund', tarball], project);
    return stdout + stderr;
  });
  return installed;
}

test.after(() => rmSync(work, { recursive: true, force: true }));

test('npm pack ships the compiled proxy, plugins and client (types, browser build), config examples, README and docs: nothing else', async () => {
  const { files } = await pack();
  for (const path of [
    'package.json', 'README.md', 'client/README.md',
    'dist/proxy/cli.js', 'dist/proxy/switchboard.js', 'dist/proxy/browser-client.js', 'dist/plugins/index.js', 'dist/plugins/webhook/native.js',
    'dist/client/index.js', 'dist/client/index.d.ts', 'dist/client/client.d.ts',
    'dist/client/browser/client.js', 'dist/client/browser/client.min.js',
    'config-examples/minimal.yaml', 'config-examples/full.yaml', 'config-examples/cluster/switchboard.yaml', 'deploy/kubernetes/cluster.yaml',
    'docs/usage.md', 'docs/operations.md', 'docs/decisions.md',
  ]) assert.ok(files.includes(path), `${path} is in the package`);
  const shipped = [
    /^(package\.json|README\.md|client\/README\.md)$/,
    /^dist\/(proxy|plugins)\/.+\.js$/,
    /^dist\/client\/(.+\.js|.+\.d\.ts)$/,
    /^config-examples\/[^/]+\.yaml$/, /^config-examples\/cluster\/[^/]+$/, /^deploy\/kubernetes\/[^/]+\.yaml$/,
    /^docs\/[^/]+\.md$/,
  ];
  for (const path of files) assert.ok(shipped.some((p) => p.test(path)), `${path} should not be in the package`);
  for (const path of files) {
    assert.ok(!/^(test|bench|dist\/test|dist\/bench|dist\/config-examples|proxy|plugins|\.ci)\//.test(path), `${path}: tests, benchmarks and sources stay out`);
    assert.ok(!/\.map$/.test(path) && !/(?<!\.d)\.ts$/.test(path), `${path}: no TypeScript sources, no source maps`);
  }
  // Every module of the client has its declarations.
  for (const path of files.filter((f) => /^dist\/client\/[^/]+\.js$/.test(f))) {
    assert.ok(files.includes(path.replace(/\.js$/, '.d.ts')), `${path} has a .d.ts`);
  }
});

test('the packed package.json: no script runs at install time, `exports` carry `types`', async () => {
  const { tarball } = await pack();
  const { stdout } = await run('tar', ['-xOzf', tarball, 'package/package.json']);
  const pkg = JSON.parse(stdout) as { scripts: Record<string, string>; exports: Record<string, unknown>; bin: Record<string, string> };
  for (const script of ['preinstall', 'install', 'postinstall', 'prepare']) assert.equal(pkg.scripts[script], undefined, `no ${script} script`);
  assert.deepEqual(pkg.exports, {
    './client': { types: './dist/client/index.d.ts', default: './dist/client/index.js' },
    './package.json': './package.json',
  });
  assert.deepEqual(pkg.bin, { switchboard: 'dist/proxy/cli.js' });
});

test('installed from the tarball into a fresh project: no build runs, and `npx switchboard --check` validates a config there', async () => {
  const output = await install();
  assert.doesNotMatch(output, /install-scripts|prepare|tsc/, `npm ran or flagged a script:\n${output}`);
  const pkg = JSON.parse(readFileSync(join(project, 'node_modules', 'switchboard', 'package.json'), 'utf8')) as { version: string };

  writeFileSync(join(project, 'switchboard.yaml'), 'app:\n  url: http://127.0.0.1:3000\nws:\n  paths: [/ws]\n');
  // --no: if the bin were missing, npx must fail rather than fetch a package of that name.
  const npx = (args: string[]) => run('npx', ['--no', '--', 'switchboard', ...args], { cwd: project, env: npmEnv });
  const checked = await npx(['--check', '--config', 'switchboard.yaml']);
  assert.equal(checked.stdout, 'configuration is valid\n');
  assert.equal((await npx(['--version'])).stdout, `${pkg.version}\n`);

  writeFileSync(join(project, 'broken.yaml'), 'app:\n  url: 42\nlisten: nowhere\n');
  const broken = await npx(['--check', '--config', 'broken.yaml']).then(() => null, (err: { code: number; stderr: string }) => err);
  assert.ok(broken, 'a bad config fails');
  assert.equal(broken.code, 2, 'a bad config exits 2');
  assert.match(broken.stderr, /app\.url/);
});

test('a strict TypeScript project compiles against the installed client\'s types, typed events included', async () => {
  await install();
  const runtime = Object.keys(await import(join(project, 'node_modules', 'switchboard', 'dist', 'client', 'index.js'))).sort();
  assert.ok(runtime.includes('SwitchboardClient'));
  const compilerOptions = {
    strict: true, noEmit: true, target: 'ES2022', lib: ['ES2022', 'DOM'], types: [],
    exactOptionalPropertyTypes: true, noUncheckedIndexedAccess: true, noImplicitOverride: true,
    skipLibCheck: false, verbatimModuleSyntax: true,
  };
  writeFileSync(join(project, 'tsconfig.json'), JSON.stringify({ compilerOptions: { ...compilerOptions, module: 'NodeNext', moduleResolution: 'NodeNext' }, files: ['consumer.ts'] }));
  writeFileSync(join(project, 'tsconfig.bundler.json'), JSON.stringify({ compilerOptions: { ...compilerOptions, module: 'ESNext', moduleResolution: 'bundler' }, files: ['consumer.ts'] }));
  writeFileSync(join(project, 'consumer.ts'), `
// Every runtime export has a declaration (a missing one is a compile error).
import { ${runtime.join(', ')} } from 'switchboard/client';
import type { ClientEvents, ClientOptions, ClientState, Refusal, WebSocketConstructor, BackoffOptions, ClientErrorCode } from 'switchboard/client';
void [${runtime.join(', ')}];

const options: ClientOptions = { backoff: { baseMs: 100, maxAttempts: 5 }, resumeIn: 'protocol', headers: { authorization: 'Bearer x' } };
const client = new SwitchboardClient('wss://example.com/ws', { ...options, WebSocket: WebSocket });
const browserSocket: WebSocketConstructor = WebSocket; // the DOM's WebSocket fits
void browserSocket;

client.on('open', ({ session, resumed }) => { const s: string = session; const r: boolean = resumed; void [s, r]; });
client.on('message', (data, { seq }) => { const d: unknown = data; const n: number = seq; void [d, n]; });
client.on('gap', ({ from, to }) => { const n: number = from + to; void n; });
client.on('close', ({ code, reason, willReconnect }) => { const c: number = code; const r: string = reason; const w: boolean = willReconnect; void [c, r, w]; });
client.on('error', (err) => { const code: string = err.code; const retryable: boolean = err.retryable; void [code, retryable]; });
const off = client.on('refused', (refusal: Refusal) => {
  const status: number = refusal.status;
  const after: number | null = refusal.retryAfterMs;
  const final: boolean = refusal.final;
  void [status, after, final];
});
off();
// @ts-expect-error: no such event
client.on('opened', () => {});
// @ts-expect-error: a refusal has no code
client.on('refused', ({ code }) => code);
// @ts-expect-error: retryAfterMs may be null
client.on('refused', ({ retryAfterMs }) => retryAfterMs.toFixed());
// @ts-expect-error: headers are strings
new SwitchboardClient('ws://x', { headers: { 'x-n': 1 } });

const state: ClientState = client.state;
if (state.status === 'waiting') { const ms: number = state.delayMs; void ms; }
// @ts-expect-error: only a waiting state has a delay
void state.delayMs;
const sent: Promise<void> = client.send({ text: 'typed' });
void sent.catch((err: unknown) => { if (err instanceof SwitchboardClientError) { const c: ClientErrorCode | string = err.code; void c; } });
const backoff: BackoffOptions = defaultBackoff;
const handlers: Partial<ClientEvents> = {};
void [backoff, handlers, refusalIsFinal(401) === true];
`);
  for (const config of ['tsconfig.json', 'tsconfig.bundler.json']) {
    const result = await run(process.execPath, [tsc, '-p', join(project, config)], { cwd: project }).then(() => null, (err: { stdout: string }) => err.stdout);
    assert.equal(result, null, `${config}:\n${result}`);
  }
});

let app: TestApp | undefined;
let sc: Sidecar | undefined;
test.after(async () => {
  await sc?.close();
  await app?.close();
});

test('the client README\'s example runs as written against a real sidecar, and says why when it is refused', async () => {
  await install();
  const readme = readFileSync(join(root, 'client', 'README.md'), 'utf8');
  const example = /```ts\n([\s\S]*?)```/.exec(readme)?.[1];
  assert.ok(example !== undefined && example.includes('process.env.SWITCHBOARD_URL'), 'the first ts block is the example, reading its URL from the environment');
  // What a TypeScript user's toolchain does with it: types stripped, nothing else.
  const { code } = await transform(example, { loader: 'ts', format: 'esm' });
  writeFileSync(join(project, 'example.mjs'), code);

  app = await startApp((req) => {
    if (req.url === '/ws/connect') {
      return req.headers.authorization === 'Bearer dev-token' ? { body: { user: 'readme' } } : { status: 401, body: 'bad token' };
    }
    return { status: 204 };
  });
  sc = await startSidecar(app.url, { webhooks: { paths: { subscribe: '/ws/subscribe' } } });
  const env = { ...process.env, SWITCHBOARD_URL: sc.wsUrl() };
  const { stdout, stderr } = await run(process.execPath, ['example.mjs'], { cwd: project, env, timeout: 20_000 });
  assert.match(stdout, /^open \S+ false$/m);
  assert.equal(stderr, '');
  const message = app.byPath('/ws/message');
  assert.equal(message.length, 1);
  assert.deepEqual(message[0].json(), { text: 'hello' });
  assert.equal((await app.waitFor((r) => r.url === '/ws/subscribe', 'the subscribe webhook')).json().channel, 'room:42');
  assert.ok(app.byPath('/ws/disconnect').length <= 1);

  // The wrong token: the app refuses with 401, the example says so, and the client stops (the send rejects).
  const refused = await run(process.execPath, ['example.mjs'], { cwd: project, env: { ...env, TOKEN: 'wrong' }, timeout: 20_000 })
    .then(() => null, (err: { code: number; stderr: string }) => err);
  assert.ok(refused, 'exits non-zero');
  assert.match(refused.stderr, /^refused with HTTP 401, giving up$/m);
  assert.match(refused.stderr, /the Switchboard client is closed/);
  assert.equal(app.byPath('/ws/message').length, 1, 'nothing more reached the app');
});
