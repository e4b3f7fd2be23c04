// A small typed event emitter: a throwing listener never leaves the client half-updated.

type Listener = (...args: never[]) => void;

export class Emitter<E extends { [K in keyof E]: Listener }> {
  readonly #listeners = new Map<keyof E, Set<Listener>>();

  /** Returns a function that removes the listener. */
  on<K extends keyof E>(event: K, fn: E[K]): () => void {
    let set = this.#listeners.get(event);
    if (set === undefined) this.#listeners.set(event, (set = new Set()));
    set.add(fn);
    return () => this.off(event, fn);
  }

  off<K extends keyof E>(event: K, fn: E[K]): void {
    this.#listeners.get(event)?.delete(fn);
  }

  protected emit<K extends keyof E>(event: K, ...args: Parameters<E[K]>): void {
    const set = this.#listeners.get(event);
    if (set === undefined) return;
    for (const fn of [...set]) {
      try {
        (fn as (...a: Parameters<E[K]>) => void)(...args);
      } catch (err) {
        // A throwing listener must not leave the protocol state half-updated; it
        // still surfaces as an uncaught error.
        queueMicrotask(() => {
          throw err;
        });
      }
    }
  }
}
