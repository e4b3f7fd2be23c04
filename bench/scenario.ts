// What a scenario is: named metrics, and one repetition that measures both servers.
import type { MetricSpec, RepFigures } from './report.js';
import type { ServerKind } from './servers.js';

export interface RunOptions {
  /** Smaller counts and durations, for smoke checks. */
  readonly quick: boolean;
  /** Extra node flags for a server process (--cpu-prof with --profile), none normally. */
  nodeFlags(kind: ServerKind): string[];
  /** Progress lines (stderr). */
  log(message: string): void;
}

export interface Scenario {
  readonly name: string;
  readonly title: string;
  /** Printed under the table: method, and what the figures do not say. */
  readonly notes: readonly string[];
  readonly metrics: readonly MetricSpec[];
  /** One repetition; `index` alternates which server goes first. */
  rep(options: RunOptions, index: number): Promise<RepFigures>;
}

/** Runs the two sides of a repetition, alternating which goes first. */
export async function bothSides<T>(index: number, switchboard: () => Promise<T>, bare: () => Promise<T>): Promise<{ switchboard: T; bare: T }> {
  if (index % 2 === 0) {
    const s = await switchboard();
    return { switchboard: s, bare: await bare() };
  }
  const b = await bare();
  return { switchboard: await switchboard(), bare: b };
}
