// Placeholder replaced by the multi-process runner: one process for now.
import type { Config } from './config.js';

export async function runWorkers(config: Readonly<Config>): Promise<boolean> {
  return config.workers !== 1 && false;
}
