// `npm run bench [-- [--quick] [--reps N] [--json FILE] [--profile DIR] [scenario...]]`
// Runs each scenario against Switchboard and a bare ws server, repetition by
// repetition, and prints one table per scenario: medians, and the ratio (the median of
// per-repetition ratios). Every child process is killed on exit, errors included.
import { writeFileSync, mkdirSync } from 'node:fs';
import { cpus, loadavg, totalmem } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { installCleanup, killAll } from './procs.js';
import { summarize, table, type Line, type RepFigures } from './report.js';
import type { RunOptions, Scenario } from './scenario.js';
import { clusterCost, crashScenario } from './scenarios/cluster.js';
import { echoScenario } from './scenarios/echo.js';
import { fanoutScenario } from './scenarios/fanout.js';
import { idle, idle50k, idle50kKernel } from './scenarios/idle.js';
import { resumeScenario } from './scenarios/resume.js';
import { clusterStormScenario, rollingScenario } from './scenarios/rolling.js';
import { sseScenario } from './scenarios/sse.js';
import { longPollScenario } from './scenarios/long-poll.js';
import { presenceCluster, presenceCost, presenceFramesCost, presenceQuery } from './scenarios/presence.js';

const scenarios: readonly Scenario[] = [idle, idle50k, idle50kKernel, echoScenario, fanoutScenario, resumeScenario, clusterCost, crashScenario, rollingScenario, clusterStormScenario, sseScenario, longPollScenario, presenceCost, presenceFramesCost, presenceQuery, presenceCluster];

const usage = `usage: npm run bench -- [options] [scenario...]

scenarios: ${scenarios.map((s) => s.name).join(', ')} (default: all)

  --quick        1 repetition, smaller counts: a smoke check
  --reps N       repetitions (default 3; medians need at least 3)
  --json FILE    also write every figure, per repetition, as JSON
  --profile DIR  run the servers with --cpu-prof: DIR/switchboard, DIR/bare-ws
                 (summarize with node dist/bench/profile-summary.js FILE)
  --help         this text
`;

interface Outcome {
  readonly scenario: string;
  readonly title: string;
  readonly lines?: Line[];
  readonly failed?: string;
}

async function runScenario(scenario: Scenario, reps: number, options: RunOptions): Promise<Outcome> {
  const figures: RepFigures[] = [];
  const started = performance.now();
  try {
    for (let i = 0; i < reps; i++) {
      options.log(`── ${scenario.name}: repetition ${i + 1} of ${reps}`);
      figures.push(await scenario.rep(options, i));
    }
  } catch (err) {
    return { scenario: scenario.name, title: scenario.title, failed: (err as Error).stack ?? String(err) };
  }
  options.log(`── ${scenario.name}: ${((performance.now() - started) / 1000).toFixed(0)} s`);
  return { scenario: scenario.name, title: scenario.title, lines: summarize(scenario.metrics, figures) };
}

function print(outcome: Outcome, scenario: Scenario, reps: number): void {
  const out = process.stdout;
  out.write(`\n## ${outcome.scenario}: ${outcome.title}\n\n`);
  if (outcome.failed) return void out.write(`FAILED: ${outcome.failed}\n`);
  out.write(`${table(outcome.lines!)}\n\n`);
  out.write(`(medians of ${reps} repetition${reps === 1 ? '' : 's'}; ratio = median of per-repetition switchboard / bare ws)\n`);
  for (const note of scenario.notes) out.write(`${note}\n`);
}

async function main(): Promise<number> {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      quick: { type: 'boolean', default: false },
      reps: { type: 'string' },
      json: { type: 'string' },
      profile: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    process.stdout.write(usage);
    return 0;
  }
  const unknown = positionals.filter((p) => !scenarios.some((s) => s.name === p));
  if (unknown.length > 0) {
    process.stderr.write(`unknown scenario: ${unknown.join(', ')}\n\n${usage}`);
    return 2;
  }
  const reps = values.reps !== undefined ? Number(values.reps) : values.quick ? 1 : 3;
  if (!Number.isInteger(reps) || reps < 1 || reps > 20) {
    process.stderr.write(`--reps: expected an integer from 1 to 20, got ${values.reps}\n`);
    return 2;
  }
  const profileDir = values.profile ? resolve(values.profile) : null;
  installCleanup();
  const options: RunOptions = {
    quick: values.quick!,
    nodeFlags(kind) {
      if (profileDir === null) return [];
      const dir = join(profileDir, kind === 'switchboard' ? 'switchboard' : 'bare-ws');
      mkdirSync(dir, { recursive: true });
      return ['--cpu-prof', `--cpu-prof-dir=${dir}`];
    },
    log: (m) => process.stderr.write(`[${new Date().toISOString().slice(11, 19)}] ${m}\n`),
  };
  const selected = positionals.length > 0 ? scenarios.filter((s) => positionals.includes(s.name)) : scenarios;

  const machine = `${cpus().length} cores (${cpus()[0]?.model.trim() ?? 'unknown'}), ${(totalmem() / 2 ** 30).toFixed(1)} GiB, node ${process.version}`;
  const load = () => loadavg().map((l) => l.toFixed(2)).join(' ');
  process.stdout.write(`# Switchboard benchmarks${values.quick ? ' (quick)' : ''}\n\n${machine}\nload average at start: ${load()}\n`);
  const started = performance.now();
  const outcomes: Outcome[] = [];
  for (const scenario of selected) {
    const outcome = await runScenario(scenario, reps, options);
    outcomes.push(outcome);
    print(outcome, scenario, reps);
  }
  process.stdout.write(`\nload average at end: ${load()}\ntotal: ${((performance.now() - started) / 1000).toFixed(0)} s\n`);
  if (values.json) {
    writeFileSync(values.json, JSON.stringify({ machine, quick: values.quick, reps, date: new Date().toISOString(), outcomes }, null, 2));
  }
  return outcomes.some((o) => o.failed) ? 1 : 0;
}

main().then(
  (code) => {
    killAll();
    process.exit(code);
  },
  (err: unknown) => {
    process.stderr.write(`bench: ${(err as Error).stack ?? String(err)}\n`);
    killAll();
    process.exit(1);
  },
);
