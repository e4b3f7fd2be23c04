import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { join } from 'node:path';
import { loadConfig, validateConfig } from '../proxy/config.js';

const dir = new URL('../../config-examples/', import.meta.url).pathname;

test('every example config is valid', () => {
  const files = readdirSync(dir, { recursive: true }).map(String).filter((f) => /switchboard.*\.ya?ml$|^(full|minimal|[\w-]+)\.ya?ml$/.test(f.split('/').pop()!) && !f.includes('compose') && !f.includes('k8s') && !f.includes('kubernetes'));
  assert.ok(files.length >= 2);
  // What every deployment of the examples sets (the cluster example needs it: tokens verify on every node).
  const env = { SWITCHBOARD_TOKEN_SECRET: 'the-same-secret-on-every-node' };
  for (const f of files) assert.doesNotThrow(() => loadConfig(join(dir, f), env), f);
});

test('the cluster example refuses to start without the shared token secret, naming the key', () => {
  assert.throws(() => loadConfig(join(dir, 'cluster/switchboard.yaml'), {}), /^ConfigError: session\.tokenSecret: required when cluster\.amqp\.url is set/);
});

test('full.yaml documents exactly the defaults', () => {
  assert.deepEqual(loadConfig(join(dir, 'full.yaml'), {}), validateConfig({}));
});

/** Leaf keys of a config object, dotted; lists and null are leaves. */
function leaves(value: unknown, prefix = ''): Map<string, unknown> {
  const out = new Map<string, unknown>();
  for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
    const key = prefix ? `${prefix}.${k}` : k;
    if (v !== null && typeof v === 'object' && !Array.isArray(v)) for (const [kk, vv] of leaves(v, key)) out.set(kk, vv);
    else out.set(key, v);
  }
  return out;
}

test('the schema, full.yaml and the reference in docs/usage.md name the same keys with the same defaults', () => {
  const defaults = leaves(validateConfig({}));
  // The file itself, not the file merged over defaults: a key missing from it is caught.
  const written = leaves(parseYaml(readFileSync(join(dir, 'full.yaml'), 'utf8')));
  assert.deepEqual([...written.keys()].sort(), [...defaults.keys()].sort(), 'full.yaml has every key and no other');
  for (const [key, value] of defaults) assert.deepEqual(written.get(key), value, `full.yaml: ${key}`);

  const usage = readFileSync(new URL('../../docs/usage.md', import.meta.url), 'utf8');
  const reference = usage.slice(usage.indexOf('## Configuration reference'));
  const documented = new Map([...reference.matchAll(/^\| `([\w.]+)` \| `([^`]*)` \|/gm)].map((m) => [m[1], m[2]]));
  assert.deepEqual([...documented.keys()].sort(), [...defaults.keys()].sort(), 'docs/usage.md has every key and no other');
  for (const [key, value] of defaults) assert.equal(documented.get(key), JSON.stringify(value), `docs/usage.md: ${key}`);
});
