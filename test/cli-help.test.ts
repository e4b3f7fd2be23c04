// `--help` lists every flag the command line takes: the flags are read from the parser's own
// options in proxy/cli.ts, so a flag added there without a line in the usage fails here.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { once } from 'node:events';
import { runCli } from './helpers/process.js';

test('--help names every option the parser takes, with its short form', async () => {
  const source = readFileSync(new URL('../../proxy/cli.ts', import.meta.url), 'utf8');
  const block = /parseArgs\(\{\s*options: \{([\s\S]*?)\n\s*\},\n\s*\}\)/.exec(source);
  assert.ok(block, 'the parser options are found in proxy/cli.ts');
  const flags = [...block[1].matchAll(/^\s*(\w+): \{ type: '(?:string|boolean)'(?:, short: '(\w)')? \},?$/gm)].map((m) => ({ name: m[1], short: m[2] }));
  assert.equal(flags.length, block[1].trim().split('\n').length, 'every option line was read');
  assert.ok(flags.length >= 4);
  const cli = runCli(['--help']);
  // 'close', not 'exit': the output is read whole only once the pipes are closed.
  await once(cli.child, 'close');
  assert.equal((await cli.exited).code, 0);
  const help = cli.output();
  for (const { name, short } of flags) {
    assert.match(help, new RegExp(`^\\s+${short ? `-${short}, ` : ''}--${name}\\b`, 'm'), `--help lists ${short ? `-${short}, ` : ''}--${name}`);
  }
});
