// The vocabulary a user meets is documented: every nack code, frame error and close code in
// proxy/errors.ts has its row in docs/usage.md, and the docs list none that do not exist.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { CloseCode, ExitCode, FrameError, NackCode } from '../proxy/errors.js';
import * as limits from '../proxy/limits.js';
import { environmentKeys } from '../proxy/config.js';

const usage = readFileSync(new URL('../../docs/usage.md', import.meta.url), 'utf8');

function section(title: string): string {
  const start = usage.indexOf(`### ${title}\n`);
  assert.ok(start >= 0, `docs/usage.md has a "${title}" section`);
  const end = usage.indexOf('\n#', start + 1);
  return usage.slice(start, end < 0 ? undefined : end);
}

test('every nack code is documented in its table, and the table lists only real ones', () => {
  const rows = [...section('Nack codes').matchAll(/^\| `([a-z_]+)` \| (yes|no) \|/gm)].map((m) => m[1]);
  assert.deepEqual(new Set(rows), new Set(Object.keys(NackCode)));
  assert.equal(rows.length, Object.keys(NackCode).length, 'one row each');
});

test('every frame error code is named next to the nack codes', () => {
  const text = section('Nack codes');
  for (const code of Object.keys(FrameError).filter((c) => !(c in NackCode))) assert.ok(text.includes(`\`${code}\``), code);
});

test('every close code Switchboard sends has a row', () => {
  const rows = section('Close codes');
  for (const [name, code] of Object.entries(CloseCode)) {
    const covered = rows.includes(`| ${code} |`) || (code >= 4000 && code <= 4099 && rows.includes('| 4000–4099 |'));
    assert.ok(covered, `${name} (${code})`);
  }
});

test('every fixed limit is in the table of fixed limits', () => {
  const text = section('Fixed limits');
  for (const name of Object.keys(limits)) assert.ok(text.includes(`\`${name}\``), name);
  const named = [...text.matchAll(/`([A-Z][A-Z_]+)`/g)].map((m) => m[1]);
  for (const name of named) assert.ok(name in limits, `${name} is documented but not in proxy/limits.ts`);
});

test('every exit code is in docs/operations.md', () => {
  const operations = readFileSync(new URL('../../docs/operations.md', import.meta.url), 'utf8');
  const table = operations.slice(operations.indexOf('### Exit codes'));
  for (const [name, code] of Object.entries(ExitCode)) assert.ok(table.includes(`| ${code} |`), `${name} (${code})`);
});

test('every environment variable is in the table in docs/operations.md, with the key it sets', () => {
  const operations = readFileSync(new URL('../../docs/operations.md', import.meta.url), 'utf8');
  const table = operations.slice(operations.indexOf('## Configuration from the environment'));
  const rows = new Map([...table.matchAll(/^\| `(SWITCHBOARD_\w+)` \| `([\w.]+)`/gm)].map((m) => [m[1], m[2]]));
  assert.deepEqual(rows, new Map(environmentKeys));
});

test('the docs link only to files that are in the repository', () => {
  const root = new URL('../../', import.meta.url);
  const pages = ['README.md', 'client/README.md', ...readdirSync(new URL('docs/', root)).filter((f) => f.endsWith('.md')).map((f) => `docs/${f}`)];
  for (const page of pages) {
    const text = readFileSync(new URL(page, root), 'utf8');
    assert.ok(!/SPEC\.md|SPEC §/.test(text), `${page} cites a file that is not in the repository`);
    for (const [, target] of text.matchAll(/\]\(([^)#\s]+)(?:#[^)]*)?\)/g)) {
      if (/^[a-z]+:/.test(target)) continue;
      assert.ok(existsSync(new URL(target, new URL(page, root))), `${page} links to ${target}, which does not exist`);
    }
  }
});
