// Routes a push to the sessions it targets: here, and through a relay to the other
// workers or nodes that hold some of them.
import type { Push } from './push.js';
import type { Registry } from './registry.js';
import type { Session } from './session.js';
import type { Target } from './target.js';

/** Connection ids are `<node>-<worker>-<unique>`. */
export function parseConnectionId(id: string): { node: string; worker: number } | null {
  const m = /^([a-z0-9]+)-(\d+)-[\w-]+$/.exec(id);
  return m ? { node: m[1], worker: Number(m[2]) } : null;
}

export interface Counts {
  delivered: number;
  queued: number;
  dropped: number;
}

/** Carries pushes to sessions held by other processes (workers, cluster nodes). */
export interface Relay {
  /** Whether a connection id belongs to this process. */
  isLocal(connection: string): boolean;
  publish(target: Target, push: Push): Promise<void>;
  /** Closes the sessions a target names in the other processes. */
  close(target: Target, code: number, reason: string): Promise<void>;
}

export function zeroCounts(): Counts {
  return { delivered: 0, queued: 0, dropped: 0 };
}

export class Router {
  readonly #registry: Registry;
  readonly relay: Relay | null;

  constructor(registry: Registry, relay: Relay | null = null) {
    this.#registry = registry;
    this.relay = relay;
  }

  /** Delivers to the sessions held here; null when a connection target is not here. */
  local(target: Target, push: Push, counts: Counts = zeroCounts()): Counts | null {
    let found = false;
    for (const s of this.#registry.select(target)) {
      found = true;
      tally(counts, s, push);
    }
    return found || target.kind !== 'connection' ? counts : null;
  }

  /**
   * Local delivery plus, with a relay, publication to the others. A connection that
   * names another process is only published. `found` is false for an unknown local
   * connection.
   */
  async route(target: Target, push: Push): Promise<{ counts: Counts; published: boolean; found: boolean }> {
    const relay = this.relay;
    if (target.kind === 'connection' && relay && !relay.isLocal(target.id)) {
      await relay.publish(target, push);
      return { counts: zeroCounts(), published: true, found: true };
    }
    const counts = this.local(target, push);
    if (counts === null) return { counts: zeroCounts(), published: false, found: false };
    if (relay && target.kind !== 'connection') {
      await relay.publish(target, push);
      return { counts, published: true, found: true };
    }
    return { counts, published: false, found: true };
  }
}

function tally(counts: Counts, s: Session, push: Push): void {
  counts[s.send(push)]++;
}
