// Client messages on their way to the app: numbered, delivered one batch at a time and in
// order. While `limits.maxPendingMessages` wait, reading from the client pauses, so they
// wait in the kernel (TCP backpressure), not in memory.
import type { Logger } from 'pino';
import { nack } from './errors.js';
import type { Payload } from './payload.js';
import type { DeliveryOutcome, InboundMessage, SessionView, Upstream } from './upstream.js';

export interface InboundHost {
  readonly session: SessionView;
  readonly upstream: Upstream;
  readonly maxPending: number;
  readonly log: Logger;
  pause(): void;
  resume(): void;
  /** A batch is through: acks, nacks, the app's answer. */
  settle(batch: readonly InboundMessage[], outcome: DeliveryOutcome): void;
}

export class Inbound {
  readonly #host: InboundHost;
  readonly #queue: InboundMessage[] = [];
  #seq = 0;
  #pumping: Promise<void> | null = null;
  #paused = false;

  /** `taken`: messages the session took before (in another process, before it moved here). */
  constructor(host: InboundHost, taken = 0) {
    this.#host = host;
    this.#seq = taken;
  }

  /** Client messages taken so far (the last one's seq). */
  get taken(): number {
    return this.#seq;
  }

  take(payload: Payload, id: string | undefined): void {
    const host = this.#host;
    this.#queue.push({ seq: ++this.#seq, payload, id });
    if (!this.#paused && this.#queue.length >= host.maxPending) {
      this.#paused = true;
      host.pause();
    }
    this.#pumping ??= this.#pump();
  }

  /** Resolves once every message taken so far has reached the app (or failed to). */
  settled(): Promise<void> {
    return this.#pumping ?? Promise.resolve();
  }

  async #pump(): Promise<void> {
    const host = this.#host;
    const upstream = host.upstream;
    const resumeBelow = Math.max(1, host.maxPending >> 1);
    try {
      // When messages can travel together, let the rest of this read's frames arrive first.
      if (upstream.maxBatch > 1) await undefined;
      while (this.#queue.length > 0) {
        const batch = this.#queue.splice(0, upstream.maxBatch);
        let outcome: DeliveryOutcome;
        try {
          outcome = await upstream.message(host.session, batch);
        } catch (err) {
          host.log.error({ err }, 'upstream failed unexpectedly');
          outcome = nack('internal', true);
        }
        host.settle(batch, outcome);
        if (this.#paused && this.#queue.length < resumeBelow) {
          this.#paused = false;
          host.resume();
        }
      }
    } finally {
      this.#pumping = null;
    }
  }
}
