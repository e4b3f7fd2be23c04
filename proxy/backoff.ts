// The one server-side backoff: exponential with full jitter (a uniformly random wait up to
// the capped exponential), for webhook retries, at-least-once rounds and broker reconnects.
// The browser client keeps its own (client/backoff.ts), as it ships without the server.

export interface Backoff {
  /** The first retry waits up to this long; each failure doubles it. */
  readonly baseMs: number;
  /** No wait is longer than this. */
  readonly capMs: number;
}

/** The wait before retry number `attempt` (1 = the first retry). */
export function backoffMs(attempt: number, backoff: Backoff, random: () => number = Math.random): number {
  const ceiling = Math.min(backoff.capMs, backoff.baseMs * 2 ** Math.min(Math.max(0, attempt - 1), 30));
  return Math.floor(random() * ceiling);
}
