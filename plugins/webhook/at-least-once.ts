// Events the contract sends at least once (disconnect): each round is a normal send with its
// retries; between rounds, a backoff, until the app takes it or `webhooks.retry.atLeastOnceMs`
// has passed. Waiting events are counted; one given up is logged with its connection.
import type { Logger } from 'pino';
import { sleep, type Clock } from '../../proxy/clock.js';
import { isRetryableStatus } from './retry.js';
import { backoffMs } from '../../proxy/backoff.js';
import type { WebhookResult } from './sender.js';
import type { Config } from '../../proxy/config.js';
import type { Metrics } from '../../proxy/metrics.js';

export interface AtLeastOnceOptions {
  /** How long to keep trying, from the first attempt. */
  readonly forMs: number;
  readonly backoff: { readonly baseMs: number; readonly capMs: number };
  readonly clock: Clock;
  readonly log: Logger;
  /** The gauge of events waiting for a next round. */
  readonly waiting: { inc(): void; dec(): void };
  /** True once the sender is destroyed: no further round. */
  readonly stopped: () => boolean;
  /** Aborted once another process sends the event: no further round, and not an error. */
  readonly signal?: AbortSignal;
}

/** Taken: the app answered with anything but a status that asks for a retry. */
function taken(result: WebhookResult): boolean {
  return result.answered && !isRetryableStatus(result.status);
}

/** Resolves true once the app took the event, false when it was given up (logged). */
export async function sendAtLeastOnce(
  event: string, connection: string, send: () => Promise<WebhookResult>, options: AtLeastOnceOptions,
): Promise<boolean> {
  const { clock, log, signal } = options;
  const deadline = clock.now() + options.forMs;
  let waiting = false;
  try {
    for (let round = 1; ; round++) {
      if (signal?.aborted) {
        log.info({ connection, event, rounds: round - 1 }, `${event} webhook left to another process`);
        return false;
      }
      const result = await send();
      if (taken(result)) return true;
      const wait = backoffMs(round, options.backoff);
      if (options.stopped() || clock.now() + wait >= deadline) {
        log.error({ connection, event, rounds: round, shuttingDown: options.stopped() }, `${event} webhook given up: the app never took it`);
        return false;
      }
      if (!waiting) {
        waiting = true;
        options.waiting.inc();
      }
      await sleepUnless(wait, clock, signal);
    }
  } finally {
    if (waiting) options.waiting.dec();
  }
}

/** Waits `ms`, or less when `signal` aborts meanwhile. */
function sleepUnless(ms: number, clock: Clock, signal: AbortSignal | undefined): Promise<void> {
  if (!signal) return sleep(ms, clock);
  if (signal.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => { clock.clearTimeout(timer); signal.removeEventListener('abort', done); resolve(); };
    const timer = clock.setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
  });
}

/**
 * A dialect's at-least-once events: sent in rounds, counted while waiting, tracked until
 * taken so that a process stopping first reports the connections whose event never arrived.
 */
export class AtLeastOnce {
  readonly #event: string;
  readonly #options: Omit<AtLeastOnceOptions, 'stopped'>;
  readonly #undelivered = new Set<string>();
  #destroyed = false;

  constructor(event: string, options: Omit<AtLeastOnceOptions, 'stopped'>) {
    this.#event = event;
    this.#options = options;
  }

  async send(connection: string, send: () => Promise<WebhookResult>, signal?: AbortSignal): Promise<boolean> {
    this.#undelivered.add(connection);
    try {
      return await sendAtLeastOnce(this.#event, connection, send, { ...this.#options, stopped: () => this.#destroyed, signal });
    } finally {
      this.#undelivered.delete(connection);
    }
  }

  /** No further rounds; the connections still waiting are logged as given up. */
  destroy(): void {
    this.#destroyed = true;
    if (this.#undelivered.size > 0) {
      this.#options.log.error({ connections: [...this.#undelivered], event: this.#event }, `${this.#event} webhooks given up at shutdown: the app never took them`);
    }
  }
}

/** Disconnect events of a dialect: at least once, for `webhooks.retry.atLeastOnceMs`. */
export function disconnectsOf(config: Readonly<Config>['webhooks'], clock: Clock, metrics: Metrics, host: { readonly log: Logger }): AtLeastOnce {
  return new AtLeastOnce('disconnect', {
    forMs: config.retry.atLeastOnceMs,
    backoff: config.retry,
    clock,
    log: host.log,
    waiting: metrics.webhooksWaiting.labels('disconnect'),
  });
}
