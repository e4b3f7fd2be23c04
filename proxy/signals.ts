// SIGTERM and SIGINT, the same for a sidecar and a workers' primary: the first drains and then
// exits with what the drain says, a second one aborts at once.
import type { Logger } from 'pino';
import { ExitCode } from './errors.js';

export interface Stopping {
  /** Drains; resolves with the exit code. */
  drain(signal: string): Promise<number>;
  /** Stops at once (a second signal). */
  abort(): void;
}

/** Installs the handlers; returns whether a stop has begun (a start that fails then is no error). */
export function onStopSignals(log: Logger, stopping: Stopping, exit: (code: number) => never): () => boolean {
  let begun = false;
  const stop = (signal: string) => {
    if (begun) {
      log.warn({ signal }, 'second signal: aborting');
      stopping.abort();
      exit(ExitCode.failed);
    }
    begun = true;
    log.info({ signal }, 'shutting down');
    stopping.drain(signal).then(exit, (err: unknown) => {
      log.error({ err }, 'drain failed');
      exit(ExitCode.failed);
    });
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  return () => begun;
}
