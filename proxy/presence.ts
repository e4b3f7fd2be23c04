// Presence events from this process's registry: a channel's members are its users. A user's
// first connection in a channel makes it a member (`member_added`, after `channel_occupied` when it
// is the channel's first), its last one leaving ends that (`member_removed`, then `channel_vacated`
// when it was the last). A detached reliable session stays in the registry until its grace ends,
// so a resume here causes no event. `presence.leaveDelayMs` holds the leave of a session that
// ended: the same user joining the channel again within it cancels both (a raw client's reconnect).
import type { Logger } from 'pino';
import type { Clock } from './clock.js';
import type { Config } from './config.js';
import type { PresenceMetrics } from './metrics.js';
import type { Part } from './plugin.js';
import type { Leave, RegistryWatcher } from './registry.js';
import { PresenceDelivery } from './presence-delivery.js';
import { TimerWheel } from './timer-wheel.js';

export type PresenceEventType = 'member_added' | 'member_removed' | 'channel_occupied' | 'channel_vacated';

export interface PresenceEvent {
  readonly type: PresenceEventType;
  readonly channel: string;
  /** The member; for `channel_occupied` / `channel_vacated`, the one whose join or leave it was. */
  readonly user: string;
  /** Unique, and the same on every delivery of the event. */
  readonly id: string;
  /** ISO time of the change. */
  readonly at: string;
}

/** A connection of `user` entered (+1) or left (-1) `channel`, and why it left. */
export type MemberChange = readonly [channel: string, user: string, delta: 1 | -1, why: Leave];

/** A process's connections per (channel, user), as a new counter takes them in. */
export type HeldCounts = ReadonlyArray<readonly [channel: string, user: string, connections: number]>;

/** Event ids: `<node>-<worker>-<start>-<counter>`, the start making them unique across restarts. */
export class PresenceIds {
  readonly #prefix: string;
  #counter = 0;

  constructor(self: string, start: string) {
    this.#prefix = `${self}-${start}-`;
  }

  next(): string {
    return this.#prefix + (++this.#counter).toString(36);
  }
}

export interface MembershipOptions {
  readonly clock: Clock;
  /** How long the leave of a session that ended is held (`presence.leaveDelayMs`). */
  readonly leaveDelayMs: number;
  /**
   * How long the leave of a session that lives on elsewhere is held (at least `leaveDelayMs`):
   * a move's time (its new holder's join may be counted after the old one's leave), a parked
   * session's grace (it is a member until claimed or expired). 0 each when sessions do not move.
   */
  readonly holdMs?: { readonly moved: number; readonly parked: number };
  readonly emit: (type: PresenceEventType, channel: string, user: string) => void;
  /** A leave began to be held: no event, but a successor must know of it. */
  readonly held?: () => void;
}

/** The members of every channel and the leaves held, as a new counter takes them over. */
export interface MemberState {
  readonly members: ReadonlyMap<string, ReadonlySet<string>>;
  /** `[channel, user, due]`: leaves held until `due` (ms since epoch). */
  readonly held: ReadonlyArray<readonly [string, string, number]>;
}

/**
 * Counts connections per (channel, user) and members per channel; tells `emit` each change of
 * membership, in the order they happen. Connections without a user are no members.
 */
export class Membership {
  readonly #options: MembershipOptions;
  /** channel → user → connections here. */
  readonly #counts = new Map<string, Map<string, number>>();
  /** channel → its members: users with connections, whose leave is held, or taken over (seed) and not settled. */
  readonly #members = new Map<string, Set<string>>();
  /** `channel\0user` of the held leaves, with when each falls due; their timers share one wheel. */
  readonly #held = new Map<string, number>();
  readonly #wheel: TimerWheel<string>;

  constructor(options: MembershipOptions) {
    this.#options = options;
    // Within a tenth of the shortest hold (10 ms to a second): a storm of leaves holds one timer, not one each.
    const holds = [options.leaveDelayMs, options.holdMs?.moved ?? 0, options.holdMs?.parked ?? 0].filter((ms) => ms > 0);
    const tick = Math.min(1000, Math.max(10, Math.min(...holds, 10_000) / 10));
    this.#wheel = new TimerWheel<string>(tick, (key) => this.#release(key), options.clock);
  }

  /** How long a leave for this reason is held. */
  #holdOf(why: Leave): number {
    const { leaveDelayMs, holdMs } = this.#options;
    if (why === 'left') return 0;
    if (why === 'ended' || !holdMs) return leaveDelayMs;
    return Math.max(leaveDelayMs, holdMs[why]);
  }

  /** `delta` connections of `user` entered (> 0) or left (< 0) `channel`; `why` they left. */
  change(channel: string, user: string | null, delta: number, why: Leave): void {
    if (user === null || delta === 0) return;
    let users = this.#counts.get(channel);
    if (delta > 0) {
      if (!users) this.#counts.set(channel, (users = new Map()));
      const was = users.get(user) ?? 0;
      users.set(user, was + delta);
      if (was === 0) this.#joined(channel, user);
      return;
    }
    const n = (users?.get(user) ?? 0) + delta;
    if (!users || n < 0) return;
    if (n > 0) return void users.set(user, n);
    users.delete(user);
    if (users.size === 0) this.#counts.delete(channel);
    const hold = this.#holdOf(why);
    if (hold === 0) return this.#left(channel, user);
    this.#hold(`${channel}\0${user}`, this.#options.clock.now() + hold);
  }

  #hold(key: string, due: number): void {
    // A longer hold of the same member wins (a move's, say, over a leave delay's).
    const was = this.#held.get(key);
    if (was !== undefined && was >= due) return;
    if (was !== undefined) this.#wheel.cancel(key);
    this.#held.set(key, due);
    this.#wheel.schedule(key, due);
    this.#options.held?.();
  }

  /** Whether `user` is a member of `channel` now. */
  has(channel: string, user: string): boolean {
    return this.#members.get(channel)?.has(user) ?? false;
  }

  /**
   * Takes over what another counter told: these members are members here, with no connection
   * counted yet, and these leaves are held here. Changes that follow count as usual; `settle`
   * then ends every member nobody holds. Emits nothing.
   */
  seed(state: MemberState): void {
    for (const [channel, users] of state.members) {
      if (users.size === 0) continue;
      let members = this.#members.get(channel);
      if (!members) this.#members.set(channel, (members = new Set()));
      for (const u of users) members.add(u);
    }
    for (const [channel, user, due] of state.held) {
      if (!this.#members.get(channel)?.has(user) || this.#counts.get(channel)?.has(user)) continue;
      this.#hold(`${channel}\0${user}`, due);
    }
  }

  /** Every member without a connection or a held leave leaves now (the counts are all in). */
  settle(): void {
    for (const [channel, members] of [...this.#members]) {
      const counted = this.#counts.get(channel);
      for (const user of [...members]) {
        if (!counted?.has(user) && !this.#held.has(`${channel}\0${user}`)) this.#left(channel, user);
      }
    }
  }

  /** Held leaves happen now (the process stops). */
  flush(): void {
    for (const key of [...this.#held.keys()]) {
      this.#wheel.cancel(key);
      this.#release(key);
    }
  }

  /** No held leave falls due any more (the process is destroyed). */
  stop(): void {
    this.#wheel.stop();
  }

  #release(key: string): void {
    if (!this.#held.delete(key)) return;
    const at = key.indexOf('\0');
    this.#left(key.slice(0, at), key.slice(at + 1));
  }

  /** The members here, by channel (for tests and for rebuilding). */
  members(): Map<string, Set<string>> {
    return new Map([...this.#members].map(([c, users]) => [c, new Set(users)]));
  }

  /** The leaves held now: `[channel, user, due]`. */
  held(): Array<[string, string, number]> {
    return [...this.#held].map(([key, due]) => {
      const at = key.indexOf('\0');
      return [key.slice(0, at), key.slice(at + 1), due];
    });
  }

  #joined(channel: string, user: string): void {
    const key = `${channel}\0${user}`;
    if (this.#held.delete(key)) {
      // Back within the hold: neither the leave nor this join is an event.
      this.#wheel.cancel(key);
      return;
    }
    let members = this.#members.get(channel);
    if (!members) {
      this.#members.set(channel, (members = new Set()));
      this.#options.emit('channel_occupied', channel, user);
    }
    // A member taken over (seed) is no new one.
    if (members.has(user)) return;
    members.add(user);
    this.#options.emit('member_added', channel, user);
  }

  #left(channel: string, user: string): void {
    const members = this.#members.get(channel);
    if (!members?.delete(user)) return;
    this.#options.emit('member_removed', channel, user);
    if (members.size === 0) {
      this.#members.delete(channel);
      this.#options.emit('channel_vacated', channel, user);
    }
  }
}

/** What a process that holds sessions runs for presence: a registry watcher and a part to close. */
export interface PresenceParts {
  readonly watcher: RegistryWatcher;
  readonly part: Part;
}

/** How long the leave of a session that lives on elsewhere is held: a move's time, a parked session's grace. */
export function holdsOf(config: Readonly<Config>): { moved: number; parked: number } {
  return { moved: config.cluster.transferTimeoutMs, parked: config.session.graceMs };
}

/** What counts members and sends their events, wherever that runs (a process, a primary, a cluster's owner). */
export interface PresenceOptions {
  readonly config: Readonly<Config>['presence'];
  readonly holdMs: { readonly moved: number; readonly parked: number };
  readonly clock: Clock;
  readonly log: Logger;
  readonly metrics: PresenceMetrics;
  readonly ids: PresenceIds;
  /** The webhook's (or the amqp upstream's) delivery; null when only frames are on. `signal`: stop trying. */
  readonly deliver: ((events: readonly PresenceEvent[], signal?: AbortSignal) => Promise<boolean>) | null;
  /** The frames to subscribers (presence-frames.ts); null when off. */
  readonly frames: ((event: PresenceEvent) => void) | null;
}

/** The events' way to the app, with the configured batches and bound, counted in the metrics. */
export function deliveryOf(options: PresenceOptions, log: Logger, deliver: (events: readonly PresenceEvent[]) => Promise<boolean | 'handed_over'>): PresenceDelivery {
  const { config, clock, metrics } = options;
  return new PresenceDelivery({
    batchMs: config.batchMs,
    batchMax: config.batchMax,
    maxPending: config.maxPending,
    clock,
    log,
    deliver,
    counted: (result, n) => metrics.presenceEventsTotal.labels(result).inc(n),
    pending: metrics.presenceEventsPending,
  });
}

export function createPresence(options: PresenceOptions): PresenceParts {
  const { config, clock, frames } = options;
  const log = options.log.child({ part: 'presence' });
  const delivery = options.deliver === null ? null : deliveryOf(options, log, options.deliver);
  const membership = new Membership({
    clock,
    leaveDelayMs: config.leaveDelayMs,
    holdMs: options.holdMs,
    // One event for both consumers: the webhook and the frames carry the same id.
    emit: (type, channel, user) => {
      const event: PresenceEvent = { type, channel, user, id: options.ids.next(), at: new Date(clock.now()).toISOString() };
      delivery?.push(event);
      frames?.(event);
    },
  });
  return {
    watcher: { first: () => {}, last: () => {}, member: (channel, user, delta, why) => membership.change(channel, user, delta, why) },
    part: {
      name: 'presence',
      start: async () => {},
      // After the sessions have ended: held leaves happen now, and everything queued goes out.
      close: () => {
        membership.flush();
        return delivery?.close() ?? Promise.resolve();
      },
      destroy: () => {
        membership.stop();
        delivery?.destroy();
      },
      notReady: () => null,
    },
  };
}
