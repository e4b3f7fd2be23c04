// Thousands of sessions share one coarse timer instead of owning one each: items are
// bucketed by due tick, and a single timeout runs only while anything is scheduled.
import { MAX_DURATION_MS } from './limits.js';
import type { Clock } from './clock.js';

export class TimerWheel<T> {
  readonly #tickMs: number;
  readonly #onDue: (item: T, now: number) => void;
  readonly #onError: (err: unknown, item: T) => void;
  readonly #clock: Clock;
  readonly #slots = new Map<number, Set<T>>();
  readonly #slotOf = new Map<T, number>();
  #timer: unknown = null;
  #nextSlot = Infinity;

  /** `onError` hears of a callback that threw; by default the error is rethrown apart, to the process's own handler. */
  constructor(tickMs: number, onDue: (item: T, now: number) => void, clock: Clock, onError: (err: unknown, item: T) => void = rethrowApart) {
    this.#tickMs = Math.max(1, Math.floor(tickMs));
    this.#onDue = onDue;
    this.#clock = clock;
    this.#onError = onError;
  }

  get size(): number {
    return this.#slotOf.size;
  }

  schedule(item: T, at: number): void {
    this.cancel(item);
    const slot = Math.ceil(at / this.#tickMs);
    let set = this.#slots.get(slot);
    if (!set) this.#slots.set(slot, (set = new Set()));
    set.add(item);
    this.#slotOf.set(item, slot);
    if (slot < this.#nextSlot) this.#arm(slot);
  }

  cancel(item: T): void {
    const slot = this.#slotOf.get(item);
    if (slot === undefined) return;
    this.#slotOf.delete(item);
    const set = this.#slots.get(slot);
    if (set) {
      set.delete(item);
      if (set.size === 0) this.#slots.delete(slot);
    }
    if (this.#slotOf.size === 0) this.stop();
  }

  has(item: T): boolean {
    return this.#slotOf.has(item);
  }

  /** Stops the timer; scheduled items stay until cancelled. */
  stop(): void {
    if (this.#timer !== null) this.#clock.clearTimeout(this.#timer);
    this.#timer = null;
    this.#nextSlot = Infinity;
  }

  #arm(slot: number): void {
    if (this.#timer !== null) this.#clock.clearTimeout(this.#timer);
    this.#nextSlot = slot;
    // At most what a timer can wait (Node runs a longer one at once): a slot further off is armed for again.
    const delay = Math.min(MAX_DURATION_MS, Math.max(0, slot * this.#tickMs - this.#clock.now()));
    this.#timer = this.#clock.setTimeout(() => this.#run(), delay);
  }

  #run(): void {
    this.#timer = null;
    this.#nextSlot = Infinity;
    const now = this.#clock.now();
    const current = Math.floor(now / this.#tickMs);
    const due = [...this.#slots.keys()].filter((s) => s <= current).sort((a, b) => a - b);
    for (const slot of due) {
      const set = this.#slots.get(slot);
      if (!set) continue;
      for (const item of [...set]) {
        if (!set.has(item)) continue; // cancelled or moved by an earlier callback
        set.delete(item);
        this.#slotOf.delete(item);
        try {
          this.#onDue(item, now);
        } catch (err) {
          // One item's fault must not stop every other item's timer.
          this.#onError(err, item);
        }
      }
      if (set.size === 0 && this.#slots.get(slot) === set) this.#slots.delete(slot);
    }
    let next = Infinity;
    for (const slot of this.#slots.keys()) if (slot < next) next = slot;
    if (next !== Infinity) this.#arm(next);
  }
}

function rethrowApart(err: unknown): void {
  queueMicrotask(() => { throw err; });
}
