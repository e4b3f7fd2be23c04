// Server pings on a shared wheel. Any frame from the client counts as life, so a busy
// client is never cut off; a silent one is terminated `timeoutMs` after its ping.
import type { Clock } from './clock.js';
import { TimerWheel } from './timer-wheel.js';

/** What the heartbeat needs of a connection. */
export interface Beating {
  /** Time of the last frame seen from the client (set by the session, read here). */
  lastSeen: number;
  awaitingPong: boolean;
  ping(): void;
  terminate(): void;
}

export class Heartbeat {
  readonly #intervalMs: number;
  readonly #timeoutMs: number;
  readonly #clock: Clock;
  readonly #wheel: TimerWheel<Beating>;
  readonly #pingedAt = new WeakMap<Beating, number>();

  constructor(options: { intervalMs: number; timeoutMs: number }, clock: Clock) {
    this.#intervalMs = options.intervalMs;
    this.#timeoutMs = options.timeoutMs;
    this.#clock = clock;
    const tick = Math.min(1000, Math.max(5, Math.min(options.intervalMs, options.timeoutMs) / 4));
    this.#wheel = new TimerWheel(tick, (item, now) => this.#due(item, now), clock);
  }

  get tracked(): number {
    return this.#wheel.size;
  }

  track(item: Beating): void {
    item.awaitingPong = false;
    item.lastSeen = this.#clock.now();
    this.#wheel.schedule(item, item.lastSeen + this.#intervalMs);
  }

  untrack(item: Beating): void {
    this.#wheel.cancel(item);
  }

  stop(): void {
    this.#wheel.stop();
  }

  #due(item: Beating, now: number): void {
    if (item.awaitingPong) {
      const pingedAt = this.#pingedAt.get(item) ?? 0;
      if (item.lastSeen < pingedAt) {
        if (now - pingedAt >= this.#timeoutMs) item.terminate();
        else this.#wheel.schedule(item, pingedAt + this.#timeoutMs);
        return;
      }
    }
    const idleSince = item.lastSeen;
    if (now - idleSince >= this.#intervalMs) {
      item.awaitingPong = true;
      this.#pingedAt.set(item, now);
      item.ping();
      this.#wheel.schedule(item, now + Math.min(this.#timeoutMs, this.#intervalMs));
    } else {
      item.awaitingPong = false;
      this.#wheel.schedule(item, idleSince + this.#intervalMs);
    }
  }
}
