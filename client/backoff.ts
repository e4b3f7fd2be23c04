// Reconnect delays: exponential with full jitter. Pure functions; randomness is a
// parameter so tests pass a fixed random().

export interface BackoffOptions {
  /** First ceiling; attempt n waits up to baseMs·2^n. Default 500. */
  readonly baseMs: number;
  /** No delay exceeds this. Default 30000. */
  readonly capMs: number;
  /** Reconnect attempts in a row before giving up. Default Infinity. */
  readonly maxAttempts: number;
}

export const defaultBackoff: BackoffOptions = Object.freeze({
  baseMs: 500,
  capMs: 30_000,
  maxAttempts: Infinity,
});

/** Fills in defaults and rejects values that would make the delays meaningless. */
export function resolveBackoff(options: Partial<BackoffOptions> = {}): BackoffOptions {
  const resolved = { ...defaultBackoff, ...options };
  for (const key of ['baseMs', 'capMs'] as const) {
    if (!Number.isFinite(resolved[key]) || resolved[key] < 0) {
      throw new RangeError(`backoff.${key}: expected a finite number >= 0, got ${String(resolved[key])}`);
    }
  }
  if (resolved.capMs < resolved.baseMs) {
    throw new RangeError(`backoff.capMs: expected >= backoff.baseMs (${resolved.baseMs}), got ${resolved.capMs}`);
  }
  const max = resolved.maxAttempts;
  if (!(max === Infinity || (Number.isInteger(max) && max >= 0))) {
    throw new RangeError(`backoff.maxAttempts: expected an integer >= 0 or Infinity, got ${String(max)}`);
  }
  return Object.freeze(resolved);
}

/**
 * Delay before reconnect attempt `attempt` (0 = the first after a drop), or
 * undefined once `maxAttempts` attempts have been made. Full jitter (uniform in
 * [0, ceiling)) spreads a crowd of clients dropped at the same moment.
 */
export function backoffDelay(
  attempt: number,
  options: BackoffOptions,
  random: () => number,
): number | undefined {
  if (attempt >= options.maxAttempts) return undefined;
  // 2 ** attempt overflows to Infinity long before attempts run out; min() absorbs it.
  const ceiling = Math.min(options.capMs, options.baseMs * 2 ** attempt);
  return Math.floor(random() * ceiling);
}

/**
 * Delay for a server `reconnect` hint: what the server asked for, plus up to
 * baseMs of jitter so every client told the same afterMs does not return at once.
 */
export function hintDelay(afterMs: number, options: BackoffOptions, random: () => number): number {
  return Math.max(0, afterMs) + Math.floor(random() * options.baseMs);
}
