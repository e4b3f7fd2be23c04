// Reliable sessions moving between processes: a client resumes on node B with the token of a
// session node A holds, and the whole session comes over (proxy/snapshot.ts), through the
// relay (plugins/amqp/cluster.ts carries it over RabbitMQ). Both sides live here:
//
//   B (arriving)                               A (departing)
//   relay.take(A, id) ───── take ────────────▶ session.depart(): socket closed 4009,
//                     ◀──── snapshot ────────  pushes held aside from here on
//   Session.restore, registered here
//   (bindings for its user, channels, id);
//   pushes held aside here too
//   transfer.finish() ───── release ─────────▶ session.tail(), forget(): no disconnect
//                     ◀──── tail ────────────  (remembered as moved, for redirects)
//   session.arrive(tail): A's pushes first,
//   then B's, each push once (by push id)
//
// The release travels in A's queue behind every push routed there before B's bindings
// existed, and every push routed after them reaches B too: so none is lost, and one that
// reached both is delivered once, in order.
import type { Logger } from 'pino';
import type { Clock } from './clock.js';
import { CloseCode } from './errors.js';
import { MAX_REMEMBERED_MOVES } from './limits.js';
import type { Metrics } from './metrics.js';
import type { Registry } from './registry.js';
import { Session, type SessionContext } from './session.js';
import type { MoveTail, RosterEntry, SessionSnapshot } from './snapshot.js';
import type { SessionView } from './upstream.js';

/** A session being taken over from another process. */
export interface Transfer {
  readonly snapshot: SessionSnapshot;
  /**
   * Once the session is registered here: releases it there and returns what reached it there
   * meanwhile; null when it ended there first. Rejects when the old holder did not answer.
   */
  finish(): Promise<MoveTail | null>;
}

/** What carries a move between processes (a relay's part). */
export interface Mover {
  /**
   * Takes session `id` from the process `holder` (`<node>-<worker>`), or, when that process
   * does not hold it (or `holder` is null), from where it is parked; null when it is in neither.
   */
  take(holder: string | null, id: string): Promise<Transfer | null>;
  /**
   * Parks a departed session durably for `graceLeftMs`, where any process can take it; once
   * its pushes reach the parked copy, `settle` forgets it here and returns what was held
   * meanwhile. Rejects when it could not be parked.
   */
  park(snapshot: SessionSnapshot, graceLeftMs: number, settle: () => MoveTail | null): Promise<void>;
}

/** What the relay asks of the process that holds a session. */
export interface Departures {
  /** Starts handing session `id` to the process `to`; null when it is not here (or cannot move). */
  depart(id: string, to: string): SessionSnapshot | null;
  /** Ends the move: the session is gone from here; null when it ended here first. */
  release(id: string): MoveTail | null;
  /** Where a session that moved away from here went; null when it did not. */
  movedTo(id: string): string | null;
  /** Whether the session is being parked right now (a claim of it waits for its parked copy). */
  parking(id: string): boolean;
  /** A parked session nobody claimed within its grace: its disconnect webhook, resolved once sent. */
  expired(snapshot: SessionSnapshot): Promise<void>;
  /** A session of a process that died: its disconnect webhook, resolved once sent. */
  lost(entry: RosterEntry): Promise<void>;
}

export interface MovesHost {
  readonly ctx: SessionContext;
  readonly registry: Registry;
  readonly metrics: Metrics;
  readonly clock: Clock;
  readonly log: Logger;
  /** How long a move may take: a departing session whose release has not come by then stays. */
  readonly timeoutMs: number;
  /** How long a moved session is remembered for redirects (its grace: after that it ended, or resumed there). */
  readonly rememberMs: number;
}


export class Moves implements Departures {
  readonly #host: MovesHost;
  readonly #mover: Mover;
  readonly #departing = new Map<string, { session: Session; to: string; timer: unknown }>();
  /** Sessions that moved away: where to, and until when that is worth saying. */
  readonly #moved = new Map<string, { to: string; until: number }>();
  /** Sessions being parked now. */
  readonly #parking = new Set<string>();

  constructor(host: MovesHost, mover: Mover) {
    this.#host = host;
    this.#mover = mover;
  }

  // ── departing ────────────────────────────────────────────────────────────────

  depart(id: string, to: string): SessionSnapshot | null {
    const host = this.#host;
    if (this.#departing.has(id)) return null;
    const session = host.registry.get(id);
    const snapshot = session?.depart() ?? null;
    if (!session || !snapshot) return null;
    const timer = host.clock.setTimeout(() => {
      if (this.#departing.get(id)?.session !== session) return;
      this.#departing.delete(id);
      host.metrics.sessionMovesTotal.inc({ direction: 'out', result: 'timeout' });
      host.log.warn({ connection: id, to }, 'session move not completed in time: the session stays here');
      session.stay();
    }, 2 * host.timeoutMs);
    this.#departing.set(id, { session, to, timer });
    return snapshot;
  }

  release(id: string): MoveTail | null {
    const entry = this.#departing.get(id);
    if (!entry) return null;
    this.#departing.delete(id);
    this.#host.clock.clearTimeout(entry.timer);
    const tail = entry.session.tail();
    if (tail === null) return null;
    entry.session.forget();
    this.#remember(id, entry.to);
    this.#host.metrics.sessionMovesTotal.inc({ direction: 'out', result: 'moved' });
    return tail;
  }

  /** Sessions handed to another process whose move has not completed yet. */
  get departing(): number {
    return this.#departing.size;
  }

  parking(id: string): boolean {
    return this.#parking.has(id);
  }

  movedTo(id: string): string | null {
    const moved = this.#moved.get(id);
    if (!moved) return null;
    if (moved.until > this.#host.clock.now()) return moved.to;
    this.#moved.delete(id);
    return null;
  }

  #remember(id: string, to: string): void {
    const now = this.#host.clock.now();
    this.#moved.delete(id);
    this.#moved.set(id, { to, until: now + this.#host.rememberMs });
    // Insertion order is expiry order: the stale ones are at the front.
    for (const [k, v] of this.#moved) {
      if (v.until > now && this.#moved.size <= MAX_REMEMBERED_MOVES) break;
      this.#moved.delete(k);
    }
  }

  // ── arriving ─────────────────────────────────────────────────────────────────

  /**
   * Brings session `id` here from `holder`, registered and with everything it held; null when
   * there is none to bring (the client then starts a new session).
   */
  async arrive(holder: string | null, id: string): Promise<Session | null> {
    const host = this.#host;
    let transfer: Transfer | null;
    try {
      transfer = await this.#mover.take(holder, id);
    } catch (err) {
      host.log.warn({ err: (err as Error).message, connection: id, holder }, 'taking a session from another process failed');
      transfer = null;
    }
    if (transfer === null || transfer.snapshot.id !== id || host.registry.get(id)) {
      host.metrics.sessionMovesTotal.inc({ direction: 'in', result: 'none' });
      return null;
    }
    const session = Session.restore(host.ctx, transfer.snapshot, host.clock.now());
    host.registry.add(session);
    host.metrics.sessions.inc();
    let tail: MoveTail | null;
    try {
      tail = await transfer.finish();
    } catch (err) {
      // Whether the old holder let go is unknown: this copy ends with its disconnect (at least
      // once: the other copy, if it stayed, sends one too when its grace ends), and the client
      // starts anew. Never two live copies.
      host.log.warn({ err: (err as Error).message, connection: id, holder }, 'session move not completed: ending this copy');
      host.metrics.sessionMovesTotal.inc({ direction: 'in', result: 'failed' });
      session.close(CloseCode.internal, 'session move failed');
      return null;
    }
    if (tail === null) {
      // It ended there while it moved (closed by the app, say): the app heard of it from there.
      session.forget('ended');
      host.metrics.sessionMovesTotal.inc({ direction: 'in', result: 'none' });
      return null;
    }
    session.arrive(tail);
    host.metrics.sessionMovesTotal.inc({ direction: 'in', result: 'moved' });
    return session;
  }

  // ── parking (a drain's sessions whose clients did not come back) ─────────────

  /** Parks every reliable session left here (their sockets close 1012); what could not be parked stays. */
  async parkAll(sessions: Iterable<Session>): Promise<number> {
    const host = this.#host;
    const started = host.clock.now();
    let parked = 0;
    const all = [...sessions].filter((s) => s.mode === 'reliable');
    // A hundred at a time: each is a few broker round trips.
    for (let i = 0; i < all.length; i += 100) {
      const done = await Promise.all(all.slice(i, i + 100).map((s) => this.#park(s)));
      parked += done.filter(Boolean).length;
    }
    if (all.length > 0) host.log.info({ parked, of: all.length, ms: host.clock.now() - started }, 'sessions parked for another process to take over');
    return parked;
  }

  async #park(session: Session): Promise<boolean> {
    const host = this.#host;
    const graceLeft = session.graceEndsAt - host.clock.now();
    if (graceLeft <= 0) return false;
    const snapshot = session.depart(CloseCode.serviceRestart, 'service restart');
    if (!snapshot) return false;
    this.#parking.add(session.id);
    try {
      await this.#mover.park(snapshot, graceLeft, () => {
        const tail = session.tail();
        if (tail) session.forget('parked');
        return tail;
      });
      host.metrics.sessionMovesTotal.inc({ direction: 'out', result: 'parked' });
      return true;
    } catch (err) {
      host.log.warn({ err: (err as Error).message, connection: session.id }, 'parking a session failed: it ends here');
      session.stay();
      return false;
    } finally {
      this.#parking.delete(session.id);
    }
  }

  /** A parked session's grace ran out: the app hears of its end, as from any session's. */
  expired(snapshot: SessionSnapshot): Promise<void> {
    const host = this.#host;
    const session = Session.restore(host.ctx, snapshot, host.clock.now());
    host.metrics.sessions.inc();
    host.metrics.sessionMovesTotal.inc({ direction: 'in', result: 'expired' });
    return session.expireParked();
  }

  /** A session of a process that died: the app hears of its end from here (code 1006: its node was lost). */
  lost(entry: RosterEntry): Promise<void> {
    const { ctx, clock } = this.#host;
    const view: SessionView = {
      id: entry.id, mode: 'reliable', path: entry.path, url: entry.path, query: {}, remoteAddress: '',
      subprotocol: null, headers: {}, user: entry.user, meta: entry.meta, connectedAt: entry.connectedAt,
    };
    this.#host.metrics.sessionMovesTotal.inc({ direction: 'in', result: 'lost' });
    const told = ctx.upstream.disconnect(view, {
      code: 1006, reason: 'node lost', durationMs: Math.max(0, clock.now() - entry.connectedAt),
      messagesIn: 0, messagesOut: 0, undelivered: 0, clientClosed: false,
    });
    ctx.track(told);
    return told;
  }

  /** Moves not yet released give up (the sessions stay here, detached). */
  close(): void {
    for (const [id, entry] of this.#departing) {
      this.#host.clock.clearTimeout(entry.timer);
      this.#departing.delete(id);
      entry.session.stay();
    }
  }
}
