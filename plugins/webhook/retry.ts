// Retry policy for webhooks: which failures may be retried, and how long to wait.
// Failures are classified before any retry (after Pushpin): the app was not reached,
// may have been reached, or answered.
import { backoffMs, type Backoff } from '../../proxy/backoff.js';

export type Attempt =
  | { readonly kind: 'answered'; readonly status: number; readonly retryAfterMs: number | null }
  /** The request never left: connection refused, DNS, connect timeout. */
  | { readonly kind: 'not-reached'; readonly code: string }
  /** Sent, but no complete answer: reset, timeout. The app may have acted on it. */
  | { readonly kind: 'maybe-reached'; readonly code: string }
  /** A 2xx answer larger than the bound: the app acted on the request; never retried. */
  | { readonly kind: 'too-large'; readonly code: string };

const notReachedCodes = new Set([
  'ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'UND_ERR_CONNECT_TIMEOUT', 'EADDRNOTAVAIL',
]);

export function classifyError(err: unknown): Attempt {
  const e = err as { code?: string; name?: string; cause?: { code?: string } };
  const code = e?.code ?? e?.cause?.code ?? e?.name ?? 'unknown';
  if (code === 'ANSWER_TOO_LARGE') return { kind: 'too-large', code };
  return notReachedCodes.has(code) ? { kind: 'not-reached', code } : { kind: 'maybe-reached', code };
}

export function isRetryableStatus(status: number): boolean {
  return status === 408 || status === 429 || status >= 500;
}

/** Whether another attempt may follow this one. */
export function mayRetry(attempt: Attempt, options: { idempotent: boolean }): boolean {
  switch (attempt.kind) {
    case 'answered': return isRetryableStatus(attempt.status);
    case 'not-reached': return true;
    case 'maybe-reached': return options.idempotent;
    case 'too-large': return false;
  }
}

/** `Retry-After` as delta-seconds or an HTTP date; null when absent or unreadable. */
export function parseRetryAfter(value: string | string[] | undefined, now: number): number | null {
  const v = Array.isArray(value) ? value[0] : value;
  if (v === undefined || v === '') return null;
  if (/^\d+$/.test(v.trim())) return Number(v.trim()) * 1000;
  // Otherwise only an HTTP-date (it names a day and a month); "1.5" or "-5" is neither, not a date in 2001.
  if (!/[A-Za-z]{3}/.test(v)) return null;
  const at = Date.parse(v);
  return Number.isNaN(at) ? null : Math.max(0, at - now);
}

/** The wait before the next attempt: the app's Retry-After (capped) or the backoff. */
export function delayBefore(attempt: number, previous: Attempt, options: Backoff, random?: () => number): number {
  if (previous.kind === 'answered' && previous.retryAfterMs !== null) return Math.min(previous.retryAfterMs, options.capMs);
  return backoffMs(attempt, options, random);
}
