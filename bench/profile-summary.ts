// `node dist/bench/profile-summary.js FILE.cpuprofile [--top N]`: where a `--cpu-prof`
// profile of the sidecar spent its time: self time by package or area, and the
// heaviest functions. Idle time is left out of the percentages.
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

interface ProfileNode {
  readonly id: number;
  readonly callFrame: { readonly functionName: string; readonly url: string; readonly lineNumber: number };
}

interface Profile {
  readonly nodes: readonly ProfileNode[];
  readonly samples: readonly number[];
  readonly timeDeltas: readonly number[];
}

/** The package or area a frame belongs to. */
function area(frame: ProfileNode['callFrame']): string {
  const { url, functionName } = frame;
  if (url === '') return functionName.startsWith('(') ? functionName : '(native)';
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (pkg) return pkg[1];
  const internal = /^node:(?:internal\/)?([^/]+)/.exec(url);
  if (internal) return `node:${internal[1].replace(/\.js$/, '')}`;
  const own = /\/dist\/((?:proxy|plugins|bench)(?:\/[^/]+)?)/.exec(url);
  if (own) return `switchboard ${own[1].replace(/\.js$/, '')}`;
  return url;
}

function main(): void {
  const { values, positionals } = parseArgs({ allowPositionals: true, options: { top: { type: 'string', default: '25' } } });
  const top = Number(values.top);
  for (const file of positionals) {
    const profile = JSON.parse(readFileSync(file, 'utf8')) as Profile;
    const byId = new Map(profile.nodes.map((n) => [n.id, n]));
    const self = new Map<number, number>();
    profile.samples.forEach((id, i) => self.set(id, (self.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0)));
    const areas = new Map<string, number>();
    const functions = new Map<string, number>();
    let busy = 0;
    for (const [id, us] of self) {
      const frame = byId.get(id)!.callFrame;
      if (frame.functionName === '(idle)') continue;
      busy += us;
      const a = area(frame);
      areas.set(a, (areas.get(a) ?? 0) + us);
      const name = `${frame.functionName || '(anonymous)'}  ${a}${frame.url ? `:${frame.lineNumber + 1}` : ''}`;
      functions.set(name, (functions.get(name) ?? 0) + us);
    }
    const pct = (us: number) => `${((100 * us) / busy).toFixed(1).padStart(5)}%`;
    process.stdout.write(`\n${file}\nbusy ${(busy / 1000).toFixed(0)} ms (idle excluded)\n\nself time by area:\n`);
    for (const [a, us] of [...areas].sort((x, y) => y[1] - x[1]).slice(0, top)) process.stdout.write(`  ${pct(us)}  ${a}\n`);
    process.stdout.write('\nheaviest functions (self):\n');
    for (const [f, us] of [...functions].sort((x, y) => y[1] - x[1]).slice(0, top)) process.stdout.write(`  ${pct(us)}  ${f}\n`);
  }
}

main();
