// Hostile configuration: whatever the file holds, the CLI exits 2 with one line naming
// the problem's path, never a stack trace.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync, mkdtempSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import fc from 'fast-check';
import { ConfigError, validateConfig } from '../proxy/config.js';
import { runCli } from './helpers/process.js';

function file(name: string, text: string): string {
  const path = join(mkdtempSync(join(tmpdir(), 'sb-config-')), name);
  writeFileSync(path, text);
  return path;
}

async function exitOf(path: string): Promise<{ code: number | null; stderr: string }> {
  const p = runCli(['--config', path, '--check']);
  const { code } = await p.exited;
  return { code, stderr: p.output() };
}

test('a config nested thousands deep (JSON or YAML) exits 2 with a line naming the problem', async () => {
  const deepJson = `{"limits":${'{"a":'.repeat(5000)}1${'}'.repeat(5000)}}`;
  const deepYaml = `limits:\n  a: ${'['.repeat(5000)}${']'.repeat(5000)}\n`;
  for (const path of [file('deep.json', deepJson), file('deep.yaml', deepYaml)]) {
    const { code, stderr } = await exitOf(path);
    assert.equal(code, 2, stderr);
    const lines = stderr.trim().split('\n');
    assert.equal(lines.length, 1, stderr);
    assert.match(lines[0], /deeper than/);
    assert.doesNotMatch(stderr, /\n\s+at /, 'no stack trace');
  }
});

test('weak secrets and durations Node timers cannot hold are refused with their path', () => {
  const problems = (input: unknown) => {
    try {
      validateConfig(input);
      return [];
    } catch (err) {
      return (err as ConfigError).problems;
    }
  };
  const short = `whsec_${Buffer.alloc(8, 1).toString('base64')}`;
  assert.match(problems({ webhooks: { secret: short } })[0], /^webhooks\.secret: .*at least 16 bytes/);
  assert.match(problems({ webhooks: { secret: [`whsec_${Buffer.alloc(32, 1).toString('base64')}`, short] } })[0], /^webhooks\.secret\.1: /);
  assert.deepEqual(problems({ webhooks: { secret: `whsec_${Buffer.alloc(16, 1).toString('base64')}` } }), []);
  assert.match(problems({ proxy: { trustedProxies: ['10.0.0.0/8', 'nope'] } })[0], /^proxy\.trustedProxies\.1: expected an IP address or CIDR/);
  assert.match(problems({ proxy: { trustedProxies: ['10.0.0.0/33'] } })[0], /^proxy\.trustedProxies\.0: /);
  for (const key of [['drain', 'timeoutMs'], ['proxy', 'timeoutMs'], ['heartbeat', 'intervalMs'], ['session', 'graceMs'], ['webhooks', 'timeoutMs'], ['limits', 'handshakeTimeoutMs']]) {
    const input = { [key[0]]: { [key[1]]: 2 ** 31 } };
    const found = problems(input);
    assert.equal(found.length, 1, found.join('\n'));
    assert.match(found[0], new RegExp(`^${key.join('\\.')}: expected .*2147483647`));
  }
});

test('property: any parsed config is validated or refused with ConfigError lines, never another error', () => {
  fc.assert(fc.property(fc.object({ maxDepth: 6 }), (input) => {
    try {
      validateConfig(input);
    } catch (err) {
      assert.ok(err instanceof ConfigError, String(err));
      for (const line of err.problems) assert.match(line, /^[^\n]+: [^\n]+$/);
    }
  }), { numRuns: 500 });
});
