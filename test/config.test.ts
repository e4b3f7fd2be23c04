// The configuration schema and loader: errors with paths, defaults, env overrides, files.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError, loadConfig, validateConfig } from '../proxy/config.js';

/** The problems validateConfig reports for `input` (fails the test when it accepts it). */
function problems(input: unknown): readonly string[] {
  try {
    validateConfig(input);
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected a ConfigError, got ${String(err)}`);
    assert.equal(err.message, err.problems.join('\n'));
    return err.problems;
  }
  assert.fail(`accepted ${JSON.stringify(input)}`);
}

function loadProblems(file: string | undefined, env: NodeJS.ProcessEnv): readonly string[] {
  try {
    loadConfig(file, env);
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected a ConfigError, got ${String(err)}`);
    return err.problems;
  }
  assert.fail('loadConfig accepted it');
}

function tempDir(t: import('node:test').TestContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'switchboard-config-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

test('a wrong value is reported with its path, what was expected and what was given', () => {
  assert.deepEqual(problems({ webhooks: { timeoutMs: 'fast' } }), ['webhooks.timeoutMs: expected a positive integer, got "fast"']);
  assert.deepEqual(problems({ webhooks: { timeoutMs: 0 } }), ['webhooks.timeoutMs: expected a positive integer, got 0']);
  assert.deepEqual(problems({ heartbeat: { intervalMs: 2.5 } }), ['heartbeat.intervalMs: expected a positive integer, got 2.5']);
  assert.deepEqual(problems({ session: { graceMs: -1 } }), ['session.graceMs: expected an integer >= 0, got -1']);
  assert.deepEqual(problems({ session: { outbox: { onOverflow: 'block' } } }), ['session.outbox.onOverflow: expected "close" or "drop-oldest", got "block"']);
  assert.match(problems({ workers: 0 })[0], /^workers: expected a positive integer.*, got 0$/);
  const [listen] = problems({ listen: 'everywhere' });
  assert.match(listen, /^listen: expected "host:port".*, got "everywhere"$/);
  assert.match(problems({ listen: '127.0.0.1:70000' })[0], /^listen: /);
  assert.match(problems({ app: { url: 'ftp://example.com' } })[0], /^app\.url: expected an http\(s\) URL, got "ftp:\/\/example.com"$/);
  assert.match(problems({ ws: { paths: [] } })[0], /^ws\.paths: /);
  assert.match(problems({ ws: { paths: ['ws'] } })[0], /^ws\.paths\.0: /);
  assert.match(problems({ webhooks: { paths: { message: 'no-slash' } } })[0], /^webhooks\.paths\.message: /);
  assert.match(problems({ webhooks: { secret: 'plain' } })[0], /^webhooks\.secret: /);
  assert.match(problems({ log: { level: 'loud' } })[0], /^log\.level: .*got "loud"$/);
  assert.match(problems({ limits: { maxMessageBytes: '1mb' } })[0], /^limits\.maxMessageBytes: expected a positive integer, got "1mb"$/);
  assert.deepEqual(problems({ limits: { listenBacklog: 0 } }), ['limits.listenBacklog: expected a positive integer, got 0']);
  assert.deepEqual(problems({ webhooks: { batchMessages: 0 } }), ['webhooks.batchMessages: expected a positive integer, got 0']);
  assert.deepEqual(problems({ webhooks: { batchMessages: 1001 } }), ['webhooks.batchMessages: expected a positive integer up to 1000, got 1001']);
});

test('every problem is reported at once, one line each', () => {
  const found = problems({
    webhooks: { timeoutMs: 'fast', retry: { maxAttempts: -1 } },
    limits: { maxConnections: 'lots' },
    drain: { timeoutMs: null },
  });
  assert.equal(found.length, 4, found.join('\n'));
  for (const p of found) assert.doesNotMatch(p, /\n/);
  assert.deepEqual(found.map((p) => p.split(':')[0]).sort(), ['drain.timeoutMs', 'limits.maxConnections', 'webhooks.retry.maxAttempts', 'webhooks.timeoutMs']);
});

test('unknown keys are errors, at any depth, each named by its path', () => {
  assert.deepEqual(problems({ listne: '127.0.0.1:1' }), ['listne: unknown key (did you mean "listen"?)']);
  assert.deepEqual(problems({ session: { outbox: { maxMesages: 5 } } }), ['session.outbox.maxMesages: unknown key (did you mean "maxMessages"?)']);
  const two = problems({ extra: 1, webhooks: { retry: { tries: 3 } } });
  assert.deepEqual([...two].sort(), ['extra: unknown key', 'webhooks.retry.tries: unknown key']);
});

test('a non-object config is refused', () => {
  assert.equal(problems([1, 2]).length, 1);
  assert.equal(problems('listen: 1').length, 1);
  assert.equal(problems({ session: 5 })[0].split(':')[0], 'session');
});

test('defaults follow the contract table (docs/usage.md, Configuration reference)', () => {
  const c = validateConfig({});
  assert.equal(c.listen, '0.0.0.0:8080');
  assert.equal(c.workers, 1);
  assert.equal(c.app.url, 'http://127.0.0.1:3000');
  assert.deepEqual(c.ws.paths, ['/ws']);
  assert.equal(c.control.listen, '127.0.0.1:8081');
  assert.equal(c.control.token, null);
  assert.equal(c.heartbeat.intervalMs, 25000);
  assert.equal(c.heartbeat.timeoutMs, 10000);
  assert.equal(c.session.graceMs, 120000);
  assert.equal(c.session.outbox.maxMessages, 1024);
  assert.equal(c.session.outbox.maxBytes, 1048576);
  assert.equal(c.session.outbox.highWaterBytes, 262144);
  assert.equal(c.session.outbox.onOverflow, 'close');
  assert.equal(c.limits.maxMessageBytes, 1048576);
  assert.equal(c.limits.maxConnections, 100000);
  assert.equal(c.limits.maxConnectionsPerIp, 0);
  assert.equal(c.limits.connectRatePerSec, 0);
  assert.equal(c.limits.connectBurst, 0);
  assert.equal(c.webhooks.timeoutMs, 5000);
  assert.equal(c.webhooks.retry.maxAttempts, 5);
  assert.equal(c.webhooks.secret, null);
  assert.equal(c.drain.timeoutMs, 30000);
  // The webhook defaults of the contract.
  assert.deepEqual({ ...c.webhooks.paths }, { connect: '/ws/connect', message: '/ws/message', subscribe: null, resume: null, disconnect: '/ws/disconnect', presence: null });
  assert.deepEqual([...c.webhooks.forwardHeaders], ['cookie', 'authorization', 'origin', 'user-agent', 'accept-language', 'x-forwarded-for', 'x-request-id']);
  assert.equal(c.webhooks.replayHandshakeHeaders, true);
  assert.deepEqual(validateConfig(null), c, 'no config at all is the defaults');
});

test('a partial section keeps the defaults of its other keys', () => {
  const c = validateConfig({ session: { outbox: { maxMessages: 8 } }, webhooks: { retry: { maxAttempts: 2 } } });
  assert.equal(c.session.outbox.maxMessages, 8);
  assert.equal(c.session.outbox.maxBytes, 1048576);
  assert.equal(c.session.graceMs, 120000);
  assert.equal(c.webhooks.retry.maxAttempts, 2);
  assert.equal(c.webhooks.timeoutMs, 5000);
  assert.equal(validateConfig({ workers: 'auto' }).workers, 'auto');
  assert.equal(validateConfig({ webhooks: { paths: { connect: null } } }).webhooks.paths.connect, null);
});

test('the result is frozen, all the way down', () => {
  const input = { ws: { paths: ['/a', '/b'] }, session: { outbox: { maxMessages: 8 } } };
  const c = validateConfig(input);
  assert.ok(Object.isFrozen(c));
  assert.ok(Object.isFrozen(c.session));
  assert.ok(Object.isFrozen(c.session.outbox));
  assert.ok(Object.isFrozen(c.ws.paths));
  assert.ok(Object.isFrozen(c.webhooks.paths));
  assert.throws(() => { (c as { listen: string }).listen = 'x'; }, TypeError);
  assert.throws(() => { (c.session.outbox as { maxMessages: number }).maxMessages = 1; }, TypeError);
  assert.throws(() => { (c.ws.paths as string[]).push('/c'); }, TypeError);
  // The caller's object is not frozen or changed.
  assert.ok(!Object.isFrozen(input.ws.paths));
  input.ws.paths.push('/c');
  assert.deepEqual([...c.ws.paths], ['/a', '/b']);
  // A second config is independent of the first.
  const d = validateConfig({});
  assert.deepEqual([...d.ws.paths], ['/ws']);
});

test('control.token is required when control.listen is not loopback', () => {
  for (const listen of ['0.0.0.0:8081', '10.1.2.3:8081', '[::]:8081']) {
    const found = problems({ control: { listen } });
    assert.equal(found.length, 1, found.join('\n'));
    assert.match(found[0], /^control\.token: required/);
    assert.ok(found[0].includes(listen), 'the message names the address');
    assert.equal(validateConfig({ control: { listen, token: 'a-long-enough-s3cret' } }).control.token, 'a-long-enough-s3cret');
    const weak = problems({ control: { listen, token: 's3cret' } });
    assert.equal(weak.length, 1, weak.join('\n'));
    assert.match(weak[0], /^control\.token: must be at least 16 characters/, 'a guessable token on a reachable port is refused');
  }
  for (const listen of ['127.0.0.1:8081', '127.0.0.2:9', 'localhost:8081', '[::1]:8081', ':8081']) {
    assert.equal(validateConfig({ control: { listen } }).control.listen, listen);
  }
  assert.match(problems({ control: { listen: '0.0.0.0:8081', token: '' } })[0], /^control\.token: /);
});

test('cross-field rules: highWaterBytes within maxBytes; amqp upstream needs a url', () => {
  assert.match(problems({ session: { outbox: { highWaterBytes: 2000, maxBytes: 1000 } } })[0], /^session\.outbox\.highWaterBytes: /);
  assert.match(problems({ upstream: 'amqp' })[0], /^amqp\.url: /);
  assert.equal(validateConfig({ upstream: 'amqp', amqp: { url: 'amqp://localhost' } }).upstream, 'amqp');
});

test('loadConfig reads YAML and JSON files', (t) => {
  const dir = tempDir(t);
  const yaml = join(dir, 'switchboard.yaml');
  writeFileSync(yaml, '# comment\nlisten: 127.0.0.1:9000\nsession:\n  outbox:\n    maxMessages: 16\nws:\n  paths: [/a, /b]\n');
  const y = loadConfig(yaml, {});
  assert.equal(y.listen, '127.0.0.1:9000');
  assert.equal(y.session.outbox.maxMessages, 16);
  assert.deepEqual([...y.ws.paths], ['/a', '/b']);
  assert.ok(Object.isFrozen(y));

  const json = join(dir, 'switchboard.json');
  writeFileSync(json, JSON.stringify({ app: { url: 'http://127.0.0.1:4000' }, webhooks: { timeoutMs: 900 } }));
  const j = loadConfig(json, {});
  assert.equal(j.app.url, 'http://127.0.0.1:4000');
  assert.equal(j.webhooks.timeoutMs, 900);

  const empty = join(dir, 'empty.yaml');
  writeFileSync(empty, '');
  assert.deepEqual(loadConfig(empty, {}), validateConfig({}), 'an empty file is the defaults');
  assert.deepEqual(loadConfig(undefined, {}), validateConfig({}), 'no file is the defaults');
});

test('a bad value in a file is reported by its path', (t) => {
  const dir = tempDir(t);
  const yaml = join(dir, 'bad.yml');
  writeFileSync(yaml, 'webhooks:\n  timeoutMs: fast\nsesion: {}\n');
  assert.deepEqual([...loadProblems(yaml, {})].sort(), ['sesion: unknown key (did you mean "session"?)', 'webhooks.timeoutMs: expected a positive integer, got "fast"']);
});

test('unreadable and unparsable files are ConfigErrors naming the file', (t) => {
  const dir = tempDir(t);
  const missing = join(dir, 'missing.yaml');
  const [m] = loadProblems(missing, {});
  assert.ok(m.startsWith(`${missing}: `), m);
  assert.match(m, /ENOENT/);

  const badJson = join(dir, 'bad.json');
  writeFileSync(badJson, '{"listen": ');
  const [bj] = loadProblems(badJson, {});
  assert.ok(bj.startsWith(`${badJson}: `), bj);

  const badYaml = join(dir, 'bad.yaml');
  writeFileSync(badYaml, 'listen: [unclosed\n  : : :\n');
  const [by] = loadProblems(badYaml, {});
  assert.ok(by.startsWith(`${badYaml}: `), by);
  assert.doesNotMatch(by, /\n/);

  const list = join(dir, 'list.yaml');
  writeFileSync(list, '- 1\n- 2\n');
  const [l] = loadProblems(list, {});
  assert.ok(l.startsWith(`${list}: `), l);

  const dirAsFile = loadProblems(dir, {});
  assert.equal(dirAsFile.length, 1);
  assert.ok(dirAsFile[0].startsWith(`${dir}: `));

  if (process.getuid?.() !== 0) {
    const locked = join(dir, 'locked.yaml');
    writeFileSync(locked, 'listen: 127.0.0.1:1\n');
    chmodSync(locked, 0o000);
    const [lk] = loadProblems(locked, {});
    assert.match(lk, /EACCES/);
  }
});

test('environment variables override the file', (t) => {
  const dir = tempDir(t);
  const file = join(dir, 'base.yaml');
  writeFileSync(file, 'listen: 127.0.0.1:9000\napp:\n  url: http://127.0.0.1:1111\nlog:\n  level: warn\n');
  const c = loadConfig(file, {
    SWITCHBOARD_APP_URL: 'http://127.0.0.1:2222',
    SWITCHBOARD_LISTEN: '127.0.0.1:9100',
    SWITCHBOARD_CONTROL_LISTEN: '127.0.0.1:9101',
    SWITCHBOARD_AMQP_URL: 'amqp://guest:guest@127.0.0.1:5672',
    SWITCHBOARD_LOG_LEVEL: 'debug',
    SWITCHBOARD_WORKERS: '3',
  });
  assert.equal(c.app.url, 'http://127.0.0.1:2222');
  assert.equal(c.listen, '127.0.0.1:9100');
  assert.equal(c.control.listen, '127.0.0.1:9101');
  assert.equal(c.amqp.url, 'amqp://guest:guest@127.0.0.1:5672');
  assert.equal(c.log.level, 'debug');
  assert.equal(c.workers, 3);
  assert.equal(loadConfig(file, { SWITCHBOARD_WORKERS: 'auto' }).workers, 'auto');
  assert.equal(loadConfig(file, { SWITCHBOARD_LISTEN: '' }).listen, '127.0.0.1:9000', 'an empty variable is ignored');
  const secret = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw';
  assert.equal(loadConfig(file, { SWITCHBOARD_WEBHOOK_SECRET: secret }).webhooks.secret, secret);
  assert.throws(() => loadConfig(file, { SWITCHBOARD_WEBHOOK_SECRET: 'not-a-secret' }), /webhooks\.secret/);
});

test('SWITCHBOARD_CONFIG names the file when none is given; an explicit file wins', (t) => {
  const dir = tempDir(t);
  const a = join(dir, 'a.json');
  const b = join(dir, 'b.yaml');
  writeFileSync(a, JSON.stringify({ listen: '127.0.0.1:7001' }));
  writeFileSync(b, 'listen: 127.0.0.1:7002\n');
  assert.equal(loadConfig(undefined, { SWITCHBOARD_CONFIG: a }).listen, '127.0.0.1:7001');
  assert.equal(loadConfig(b, { SWITCHBOARD_CONFIG: a }).listen, '127.0.0.1:7002');
});

test('bad environment values are reported by the config path they set', () => {
  assert.deepEqual(loadProblems(undefined, { SWITCHBOARD_LOG_LEVEL: 'chatty' }), ['log.level: expected a pino level, got "chatty" (set by SWITCHBOARD_LOG_LEVEL)']);
  assert.match(loadProblems(undefined, { SWITCHBOARD_LISTEN: 'nowhere' })[0], /^listen: .*"nowhere"/);
  assert.match(loadProblems(undefined, { SWITCHBOARD_APP_URL: 'not a url' })[0], /^app\.url: /);
  assert.match(loadProblems(undefined, { SWITCHBOARD_AMQP_URL: 'http://broker' })[0], /^amqp\.url: /);
  assert.match(loadProblems(undefined, { SWITCHBOARD_WORKERS: 'two' })[0], /^workers: .*"two"/);
  const [open] = loadProblems(undefined, { SWITCHBOARD_CONTROL_LISTEN: '0.0.0.0:9101' });
  assert.match(open, /^control\.token: required/);
});

test('secrets from the environment, directly or from a file (<NAME>_FILE); a refused one is never shown', (t) => {
  const dir = tempDir(t);
  const secret = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw';
  const file = join(dir, 'webhook-secret');
  writeFileSync(file, `${secret}\n`);
  assert.equal(loadConfig(undefined, { SWITCHBOARD_WEBHOOK_SECRET_FILE: file }).webhooks.secret, secret, 'one trailing newline dropped');
  assert.equal(loadConfig(undefined, { SWITCHBOARD_TOKEN_SECRET: 'a-token-secret-of-16+' }).session.tokenSecret, 'a-token-secret-of-16+');
  const tokenFile = join(dir, 'control-token');
  writeFileSync(tokenFile, 'a-control-token-long-enough');
  assert.equal(loadConfig(undefined, { SWITCHBOARD_CONTROL_TOKEN_FILE: tokenFile }).control.token, 'a-control-token-long-enough');

  assert.deepEqual(loadProblems(undefined, { SWITCHBOARD_WEBHOOK_SECRET: secret, SWITCHBOARD_WEBHOOK_SECRET_FILE: file }),
    ['SWITCHBOARD_WEBHOOK_SECRET and SWITCHBOARD_WEBHOOK_SECRET_FILE are both set: use one']);
  assert.deepEqual(loadProblems(undefined, { SWITCHBOARD_TOKEN_SECRET_FILE: join(dir, 'missing') }),
    [`SWITCHBOARD_TOKEN_SECRET_FILE: cannot read ${join(dir, 'missing')} (ENOENT)`]);
  const weak = 'too-short';
  const [refused] = loadProblems(undefined, { SWITCHBOARD_TOKEN_SECRET: weak });
  assert.match(refused, /^session\.tokenSecret: .*a string of 9 characters \(set by SWITCHBOARD_TOKEN_SECRET\)$/);
  assert.ok(!refused.includes(weak), 'the value itself is not in the message');
  writeFileSync(file, 'whsec_short');
  const [fromFile] = loadProblems(undefined, { SWITCHBOARD_WEBHOOK_SECRET_FILE: file });
  assert.match(fromFile, /^webhooks\.secret: .*\(set by SWITCHBOARD_WEBHOOK_SECRET_FILE\)$/);
  assert.ok(!fromFile.includes('whsec_short'));
  assert.ok(!problems({ control: { listen: '0.0.0.0:1', token: 'hunter2' } }).join('\n').includes('hunter2'));
});

test('a YAML mistake is shown whole, with the lines around it', (t) => {
  const dir = tempDir(t);
  const file = join(dir, 'broken.yaml');
  writeFileSync(file, 'listen: 127.0.0.1:9000\nwebhooks:\n  timeoutMs: [1, 2\n  secret: null\n');
  const lines = loadProblems(file, {});
  assert.ok(lines.length > 1, lines.join('\n'));
  assert.match(lines[0], /broken\.yaml: /);
  assert.ok(lines.slice(1).some((l) => l.includes('timeoutMs')), `the lines around the mistake: ${lines.join('\n')}`);
});

test('metrics.listen takes an address or null, and says what it expected otherwise', () => {
  assert.equal(validateConfig({ metrics: { listen: '127.0.0.1:9090' } }).metrics.listen, '127.0.0.1:9090');
  assert.equal(validateConfig({}).metrics.listen, null);
  const [bad] = problems({ metrics: { listen: 'nowhere' } });
  assert.match(bad, /^metrics\.listen: .*"nowhere"$/);
});

test('an unknown key that is one or two edits from a known one names it; a stranger one does not', () => {
  assert.deepEqual(problems({ webhooks: { timeoutMS: 1 } }), ['webhooks.timeoutMS: unknown key (did you mean "timeoutMs"?)']);
  assert.deepEqual(problems({ sesion: { graceMs: 1 } }), ['sesion: unknown key (did you mean "session"?)']);
  assert.deepEqual(problems({ banana: 1 }), ['banana: unknown key']);
});
