// Presence events on their way to the app: queued in the order they happen, sent in batches (up
// to `presence.batchMax` events, once the oldest has waited `presence.batchMs` or a batch is full),
// one batch at a time, so the app sees them in order per channel and user. A batch is fixed once
// formed: its retries carry the same events and ids. While the app is away the batch at the head
// keeps being retried (the upstream's at-least-once rounds) and new events wait behind it, at most
// `presence.maxPending`; beyond that an event is dropped, counted and logged (docs/presence.md).
import type { Logger } from 'pino';
import type { Clock } from './clock.js';
import type { PresenceEvent } from './presence.js';

export interface PresenceDeliveryOptions {
  readonly batchMs: number;
  readonly batchMax: number;
  readonly maxPending: number;
  readonly clock: Clock;
  readonly log: Logger;
  /** Resolves true once the app took the batch, false when it was given up; `handed_over`: another process sends it (not counted). */
  readonly deliver: (events: readonly PresenceEvent[]) => Promise<boolean | 'handed_over'>;
  /** `switchboard_presence_events_total{result}` and the gauge of events not yet taken. */
  readonly counted: (result: 'delivered' | 'given_up' | 'dropped', n: number) => void;
  readonly pending: { inc(n: number): void; dec(n: number): void };
}

export class PresenceDelivery {
  readonly #options: PresenceDeliveryOptions;
  readonly #queue: PresenceEvent[] = [];
  /** The batch being delivered. */
  #sending: readonly PresenceEvent[] | null = null;
  #timer: unknown = null;
  /** The oldest queued event has waited `batchMs`. */
  #due = false;
  #closing = false;
  #destroyed = false;
  /** Dropped since the buffer was last below half full (logged once per overflow). */
  #dropped = 0;
  readonly #idle: Array<() => void> = [];

  constructor(options: PresenceDeliveryOptions) {
    this.#options = options;
  }

  /** Events queued or being delivered. */
  get size(): number {
    return this.#queue.length + (this.#sending?.length ?? 0);
  }

  push(event: PresenceEvent): void {
    if (this.#destroyed) return;
    const o = this.#options;
    if (this.#queue.length >= o.maxPending) {
      o.counted('dropped', 1);
      if (this.#dropped++ === 0) {
        o.log.error({ maxPending: o.maxPending, channel: event.channel, type: event.type }, 'presence events dropped: the app has not taken them and presence.maxPending are waiting');
      }
      return;
    }
    this.#queue.push(event);
    o.pending.inc(1);
    this.#pump();
  }

  /** Sends everything queued, without waiting for `batchMs`; resolves once nothing is left. */
  close(): Promise<void> {
    this.#closing = true;
    this.#pump();
    if (this.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.#idle.push(resolve));
  }

  /**
   * Another process sends the events from here on, deriving them again from what the app was
   * told: what is queued here is let go (not given up: it is not lost). The batch being sent
   * finishes. Returns how many were let go.
   */
  handOver(): number {
    const left = this.#queue.length;
    if (this.#timer !== null) {
      this.#options.clock.clearTimeout(this.#timer);
      this.#timer = null;
    }
    this.#due = false;
    if (left > 0) {
      this.#options.pending.dec(left);
      this.#queue.length = 0;
    }
    if (this.#sending === null) for (const resolve of this.#idle.splice(0)) resolve();
    return left;
  }

  destroy(): void {
    if (this.#destroyed) return;
    this.#destroyed = true;
    if (this.#timer !== null) this.#options.clock.clearTimeout(this.#timer);
    const left = this.#queue.length;
    if (left > 0) {
      this.#options.log.error({ events: left }, 'presence events not sent at shutdown');
      this.#options.counted('given_up', left);
      this.#options.pending.dec(left);
      this.#queue.length = 0;
    }
    for (const resolve of this.#idle.splice(0)) resolve();
  }

  #pump(): void {
    const o = this.#options;
    if (this.#sending !== null || this.#destroyed) return;
    if (this.#queue.length === 0) {
      for (const resolve of this.#idle.splice(0)) resolve();
      return;
    }
    if (!this.#due && !this.#closing && this.#queue.length < o.batchMax) {
      this.#timer ??= o.clock.setTimeout(() => {
        this.#timer = null;
        this.#due = true;
        this.#pump();
      }, o.batchMs);
      return;
    }
    const batch = this.#queue.splice(0, o.batchMax);
    // What is left waits for a full batch or its own `batchMs`.
    this.#due = false;
    if (this.#timer !== null) {
      o.clock.clearTimeout(this.#timer);
      this.#timer = null;
    }
    if (this.#queue.length < o.maxPending / 2) this.#dropped = 0;
    this.#sending = batch;
    o.deliver(batch).then(
      (taken) => { if (taken !== 'handed_over') o.counted(taken ? 'delivered' : 'given_up', batch.length); },
      (err: unknown) => {
        o.log.error({ err, events: batch.length }, 'presence events given up: delivering them failed');
        o.counted('given_up', batch.length);
      },
    ).finally(() => {
      o.pending.dec(batch.length);
      this.#sending = null;
      this.#pump();
    });
  }
}
