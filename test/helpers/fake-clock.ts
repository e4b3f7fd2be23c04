// A clock whose timeouts fire only when the test advances time, in due order.
import type { Clock } from '../../proxy/clock.js';

export class FakeClock implements Clock {
  #now: number;
  #seq = 0;
  readonly #timers = new Map<number, { at: number; fn: () => void }>();
  /** Every timeout fires this much late, as real ones do under a little event-loop load. */
  readonly #lagMs: number;

  constructor(start = 1_000_000, lagMs = 0) {
    this.#now = start;
    this.#lagMs = lagMs;
  }

  now(): number {
    return this.#now;
  }

  setTimeout(fn: () => void, ms: number): unknown {
    const id = ++this.#seq;
    this.#timers.set(id, { at: this.#now + Math.max(0, ms) + this.#lagMs, fn });
    return id;
  }

  clearTimeout(handle: unknown): void {
    this.#timers.delete(handle as number);
  }

  get pending(): number {
    return this.#timers.size;
  }

  advance(ms: number): void {
    const end = this.#now + ms;
    for (let fired = 0; fired < 100_000; fired++) {
      let next: [number, { at: number; fn: () => void }] | null = null;
      for (const entry of this.#timers) {
        if (entry[1].at <= end && (next === null || entry[1].at < next[1].at)) next = entry;
      }
      if (next === null) break;
      this.#timers.delete(next[0]);
      this.#now = Math.max(this.#now, next[1].at);
      next[1].fn();
    }
    this.#now = end;
  }

  advanceTo(t: number): void {
    this.advance(Math.max(0, t - this.#now));
  }

  /** Advances 1 ms at a time until `done()` or `maxMs` have passed. */
  runUntil(done: () => boolean, maxMs: number): void {
    for (let i = 0; i < maxMs && !done(); i++) this.advance(1);
  }
}
