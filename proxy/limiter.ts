// Admission limits for new handshakes: a token bucket on the rate, and counts per address.
import type { Clock } from './clock.js';

export class TokenBucket {
  readonly #ratePerSec: number;
  readonly #burst: number;
  readonly #clock: Clock;
  #tokens: number;
  #at: number;

  constructor(ratePerSec: number, burst: number, clock: Clock) {
    this.#ratePerSec = ratePerSec;
    this.#burst = Math.max(1, burst || ratePerSec);
    this.#clock = clock;
    this.#tokens = this.#burst;
    this.#at = clock.now();
  }

  /** Takes a token; otherwise the ms until one is available. */
  take(): { ok: true } | { ok: false; retryAfterMs: number } {
    const now = this.#clock.now();
    this.#tokens = Math.min(this.#burst, this.#tokens + ((now - this.#at) * this.#ratePerSec) / 1000);
    this.#at = now;
    if (this.#tokens >= 1) {
      this.#tokens -= 1;
      return { ok: true };
    }
    return { ok: false, retryAfterMs: Math.ceil(((1 - this.#tokens) * 1000) / this.#ratePerSec) };
  }
}

export class AddressCounts {
  readonly #counts = new Map<string, number>();

  get(address: string): number {
    return this.#counts.get(address) ?? 0;
  }

  add(address: string): void {
    this.#counts.set(address, this.get(address) + 1);
  }

  remove(address: string): void {
    const n = this.get(address) - 1;
    if (n > 0) this.#counts.set(address, n);
    else this.#counts.delete(address);
  }
}
