// Presence with `workers`: one node's members are counted where every worker's sessions are seen,
// in the primary. Each worker forwards its registry's member changes (a connection of a user
// entering or leaving a channel) over IPC, a tick's worth per message; the primary keeps them per
// worker, runs the one `Membership` and `PresenceDelivery` of the node, and has a worker's upstream
// send each batch (the primary has none). So a user with tabs on two workers is one member, an SSE
// reconnection landing on another worker within the grace is no leave and join, and a crashed
// worker's members leave. A drain ends every worker's sessions first, then the last leaves go out
// through the workers' upstreams, which wait for them before they close (docs/presence.md).
import type { Logger } from 'pino';
import type { Clock } from './clock.js';
import type { Config } from './config.js';
import type { PresenceMetrics } from './metrics.js';
import { NO_WORKER_RETRY_MS } from './limits.js';
import { withDeadline, type Part } from './plugin.js';
import { createPresence, PresenceIds, type MemberChange, type PresenceEvent, type PresenceParts } from './presence.js';

export type { MemberChange } from './presence.js';


/** Worker → primary: the member changes of a tick, in order. */
export interface MembersMessage { readonly sb: 'members'; readonly changes: readonly MemberChange[] }
/** Worker → primary: its sessions have ended (a drain); it waits for `presenceDone` before its upstream closes. */
export interface MembersEndedMessage { readonly sb: 'membersEnded' }
/** Primary → worker: the node's last presence events are out (or their budget is spent). */
export interface PresenceDoneMessage { readonly sb: 'presenceDone' }

// ── worker ─────────────────────────────────────────────────────────────────────

/**
 * A worker's side: its registry's member changes go to the primary instead of a `Membership` of
 * its own. `done()` is called when the primary says the last events are out.
 */
export function forwardMembers(send: (message: MembersMessage | MembersEndedMessage) => void): PresenceParts & { done(): void; flush(): void } {
  let batch: MemberChange[] = [];
  let scheduled = false;
  const flush = () => {
    scheduled = false;
    if (batch.length === 0) return;
    const changes = batch;
    batch = [];
    send({ sb: 'members', changes });
  };
  let finished: (() => void) | null = null;
  const finishedNow = new Promise<void>((resolve) => { finished = resolve; });
  const part: Part = {
    name: 'presence (members to the primary)',
    start: async () => {},
    // After the sessions have ended: their leaves go first, then the upstream waits for the primary.
    close: () => {
      flush();
      send({ sb: 'membersEnded' });
      return finishedNow;
    },
    destroy: () => {
      batch = [];
      finished?.();
    },
    notReady: () => null,
  };
  return {
    watcher: {
      first: () => {},
      last: () => {},
      member: (channel, user, delta, why) => {
        if (user === null) return;
        batch.push([channel, user, delta, why]);
        if (!scheduled) {
          scheduled = true;
          setImmediate(flush);
        }
      },
    },
    part,
    done: () => finished?.(),
    // Now, not at the next tick: before a message to another worker that must come after these.
    flush,
  };
}

// ── primary ────────────────────────────────────────────────────────────────────

/** A call to a worker that failed because the worker is gone (exited, restarting): try another. */
export class WorkerGoneError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'WorkerGoneError';
  }
}

/** What the primary's presence needs of its workers. */
export interface PresenceWorkers {
  /** The indexes of the workers running now, lowest first. */
  running(): number[];
  /** Has worker `index` send these events with its upstream; rejects with WorkerGoneError when it is gone. */
  deliver(index: number, events: readonly PresenceEvent[]): Promise<boolean>;
  /** Tells worker `index` the last events are out. */
  done(index: number): void;
}


export class PrimaryPresence {
  readonly #presence: PresenceParts;
  readonly #workers: PresenceWorkers;
  readonly #clock: Clock;
  readonly #log: Logger;
  /** Per worker (by index): `channel\0user` → its connections there. */
  readonly #held = new Map<number, Map<string, number>>();
  /** Workers whose sessions have ended in a drain. */
  readonly #ended = new Set<number>();
  #draining: { expect: Set<number>; resolve: () => void } | null = null;
  #destroyed = false;

  constructor(options: {
    readonly config: Readonly<Config>['presence'];
    readonly holdMs: { readonly moved: number; readonly parked: number };
    readonly nodeId: string;
    readonly start: string;
    readonly clock: Clock;
    readonly log: Logger;
    readonly metrics: PresenceMetrics;
    readonly workers: PresenceWorkers;
    /** The webhook (or the amqp upstream) is on: batches go to a worker's upstream. */
    readonly deliver: boolean;
    /** The frames to subscribers (proxy/presence-frames.ts), routed to every worker; null when off. */
    readonly frames: ((event: PresenceEvent) => void) | null;
  }) {
    this.#workers = options.workers;
    this.#clock = options.clock;
    this.#log = options.log.child({ part: 'presence' });
    this.#presence = createPresence({
      config: options.config,
      holdMs: options.holdMs,
      clock: options.clock,
      log: options.log,
      metrics: options.metrics,
      ids: new PresenceIds(`${options.nodeId}-primary`, options.start),
      // Null without the webhook: frames only.
      deliver: options.deliver ? (events) => this.#deliver(events) : null,
      frames: options.frames,
    });
  }

  /** A worker's member changes, in the order it made them. */
  changes(index: number, changes: readonly MemberChange[]): void {
    let held = this.#held.get(index);
    if (!held) this.#held.set(index, (held = new Map()));
    for (const [channel, user, delta, why] of changes) {
      const key = `${channel}\0${user}`;
      const n = (held.get(key) ?? 0) + delta;
      if (n < 0) continue; // a leave of nothing held: the worker's registry never sends one
      if (n === 0) held.delete(key);
      else held.set(key, n);
      this.#presence.watcher.member!(channel, user, delta, why);
    }
  }

  /** A worker exited: its sessions are gone, so are its members' connections. */
  lost(index: number): void {
    const held = this.#held.get(index);
    this.#held.delete(index);
    if (held && held.size > 0) {
      this.#log.warn({ worker: index, members: held.size }, 'worker exited: its members leave');
      for (const [key, n] of held) {
        const at = key.indexOf('\0');
        for (let i = 0; i < n; i++) this.#presence.watcher.member!(key.slice(0, at), key.slice(at + 1), -1, 'ended');
      }
    }
    // In a drain, an exit is an end; before one, the worker comes back and will end in the drain.
    if (this.#draining !== null) this.#endedBy(index);
  }

  /** A worker's sessions ended in a drain. */
  membersEnded(index: number): void {
    this.#endedBy(index);
  }

  #endedBy(index: number): void {
    this.#ended.add(index);
    const d = this.#draining;
    if (d && [...d.expect].every((i) => this.#ended.has(i))) d.resolve();
  }

  /**
   * A drain, once the workers were told: waits for their sessions to end, then sends the held
   * leaves and everything queued, and lets the workers close. Within `budgetMs`.
   */
  async drain(workers: readonly number[], budgetMs: number): Promise<void> {
    const until = this.#clock.now() + budgetMs;
    const expect = new Set(workers);
    const ended = new Promise<void>((resolve) => {
      this.#draining = { expect, resolve };
      if ([...expect].every((i) => this.#ended.has(i))) resolve();
    });
    const left = () => Math.max(0, until - this.#clock.now());
    try {
      await withDeadline(ended, left(), 'the workers\' sessions ending');
      await withDeadline(this.#presence.part.close(), left(), 'the last presence events');
    } catch {
      this.#log.error('drain budget exhausted before the last presence events were sent');
    }
    for (const i of workers) this.#workers.done(i);
  }

  destroy(): void {
    this.#destroyed = true;
    this.#presence.part.destroy();
  }

  /** One batch, by the first running worker; again by another when that one goes away. */
  async #deliver(events: readonly PresenceEvent[]): Promise<boolean> {
    for (;;) {
      if (this.#destroyed) return false;
      const index = this.#workers.running()[0];
      if (index === undefined) {
        await new Promise<void>((wake) => this.#clock.setTimeout(wake, NO_WORKER_RETRY_MS));
        continue;
      }
      try {
        return await this.#workers.deliver(index, events);
      } catch (err) {
        if (!(err instanceof WorkerGoneError)) throw err;
        this.#log.warn({ worker: index, events: events.length }, 'the worker sending presence events went away: another sends them');
      }
    }
  }
}
