#!/usr/bin/env node
// `switchboard [--config FILE]`: exit 2 on bad config (one line per problem), exit 1 when
// a port is taken, exit 0 after a drain on SIGTERM/SIGINT.
import { parseArgs } from 'node:util';
import cluster from 'node:cluster';
import type { Config } from './config.js';
import { PortInUseError } from './address.js';
import { version } from './version.js';
import { builtinPlugins } from '../plugins/index.js';
import { ExitCode } from './errors.js';
import { onStopSignals } from './signals.js';

const usage = `usage: switchboard [--config FILE] [--check]

  -c, --config FILE   YAML or JSON configuration (default: $SWITCHBOARD_CONFIG, else built-in defaults)
      --check         validate the configuration (and the environment's overrides) and exit
      --version       print the version
  -h, --help          this text

Environment overrides (SWITCHBOARD_*, each also as <NAME>_FILE): docs/operations.md.
Exit codes: 0 stopped after a drain, 1 a port in use or a failed drain, 2 a bad configuration.
`;

function fail(code: number, lines: readonly string[]): never {
  for (const line of lines) process.stderr.write(`${line}\n`);
  process.exit(code);
}

/**
 * The last net: an exception that escapes every guard (a socket, timer or broker callback)
 * is logged at fatal, and the process keeps serving its other clients. Each entry point
 * has its own guard first; this one only keeps a fault of ours from dropping everyone.
 */
function guardProcess(config: Readonly<Config>): void {
  let log: { fatal(o: object, m: string): void } | null = null;
  const report = async (kind: string, err: unknown) => {
    const { createLogger } = await import('./log.js');
    log ??= createLogger(config.log.level, { role: 'process' });
    log.fatal({ err, kind }, 'escaped every guard: logged, the process keeps running');
  };
  process.on('uncaughtException', (err) => void report('uncaughtException', err));
  process.on('unhandledRejection', (err) => void report('unhandledRejection', err));
}

async function main(): Promise<void> {
  let args;
  try {
    args = parseArgs({
      options: {
        config: { type: 'string', short: 'c' },
        check: { type: 'boolean' },
        version: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
    }).values;
  } catch (err) {
    fail(ExitCode.config, [(err as Error).message, usage]);
  }
  if (args.help) return void process.stdout.write(usage);
  if (args.version) return void process.stdout.write(`${version}\n`);

  const { runWorkers, WORKER_CONFIG } = await import('./workers.js');
  let config: Readonly<Config>;
  const fromPrimary = cluster.isWorker ? process.env[WORKER_CONFIG] : undefined;
  if (fromPrimary !== undefined) {
    config = JSON.parse(fromPrimary) as Config;
  } else {
    // The schema (zod, yaml) loads only where a config file is read.
    const { ConfigError, loadConfig } = await import('./config.js');
    try {
      config = loadConfig(args.config);
    } catch (err) {
      if (err instanceof ConfigError) fail(ExitCode.config, err.problems);
      throw err;
    }
  }
  if (args.check) return void process.stdout.write('configuration is valid\n');
  guardProcess(config);

  if (await runWorkers(config, builtinPlugins, (code) => process.exit(code))) return;

  const { Switchboard } = await import('./switchboard.js');
  const switchboard = new Switchboard(config, { plugins: builtinPlugins });
  // Handlers first: a signal that arrives while starting still drains (or aborts the start).
  const stopping = onStopSignals(switchboard.log, {
    drain: async () => { await switchboard.close(); return ExitCode.ok; },
    abort: () => switchboard.destroy(),
  }, (code) => process.exit(code));
  try {
    await switchboard.start();
  } catch (err) {
    switchboard.destroy();
    if (stopping()) process.exit(ExitCode.ok);
    if (err instanceof PortInUseError) fail(ExitCode.failed, [err.message]);
    throw err;
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`switchboard: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(ExitCode.failed);
});
