import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { loadConfig, validateConfig } from '../proxy/config.js';

const dir = new URL('../../config-examples/', import.meta.url).pathname;

test('every example config is valid', () => {
  const files = readdirSync(dir, { recursive: true }).map(String).filter((f) => /switchboard.*\.ya?ml$|^(full|minimal|[\w-]+)\.ya?ml$/.test(f.split('/').pop()!) && !f.includes('compose') && !f.includes('k8s') && !f.includes('kubernetes'));
  assert.ok(files.length >= 2);
  for (const f of files) assert.doesNotThrow(() => loadConfig(join(dir, f), {}), f);
});

test('full.yaml documents exactly the defaults', () => {
  assert.deepEqual(loadConfig(join(dir, 'full.yaml'), {}), validateConfig({}));
});
