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
import type { RegistryWatcher } from './registry.js';
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
  readonly leaveDelayMs: number;
  readonly emit: (type: PresenceEventType, channel: string, user: string) => void;
}

/**
 * Counts connections per (channel, user) and members per channel; tells `emit` each change of
 * membership, in the order they happen. Connections without a user are no members.
 */
export class Membership {
  readonly #options: MembershipOptions;
  /** channel → user → connections here. */
  readonly #counts = new Map<string, Map<string, number>>();
  /** channel → its members: users with connections, or whose leave is held (leaveDelayMs). */
  readonly #members = new Map<string, Set<string>>();
  /** `channel\0user` of the held leaves, oldest first; their timers share one wheel. */
  readonly #held = new Set<string>();
  readonly #wheel: TimerWheel<string>;

  constructor(options: MembershipOptions) {
    this.#options = options;
    // Within a tenth of the delay (at most a second): a storm of leaves holds one timer, not one each.
    const tick = Math.min(1000, Math.max(10, options.leaveDelayMs / 10));
    this.#wheel = new TimerWheel<string>(tick, (key) => this.#release(key), options.clock);
  }

  /** A connection of `user` entered (+1) or left (-1) `channel`; `ended`: its session ended. */
  change(channel: string, user: string | null, delta: 1 | -1, ended: boolean): void {
    if (user === null) return;
    let users = this.#counts.get(channel);
    if (delta === 1) {
      if (!users) this.#counts.set(channel, (users = new Map()));
      const n = (users.get(user) ?? 0) + 1;
      users.set(user, n);
      if (n === 1) this.#joined(channel, user);
      return;
    }
    const n = (users?.get(user) ?? 0) - 1;
    if (!users || n < 0) return;
    if (n > 0) return void users.set(user, n);
    users.delete(user);
    if (users.size === 0) this.#counts.delete(channel);
    const delay = this.#options.leaveDelayMs;
    if (!ended || delay === 0) return this.#left(channel, user);
    const key = `${channel}\0${user}`;
    this.#held.add(key);
    this.#wheel.schedule(key, this.#options.clock.now() + delay);
  }

  /** Held leaves happen now (the process stops). */
  flush(): void {
    for (const key of [...this.#held]) {
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

  #joined(channel: string, user: string): void {
    const key = `${channel}\0${user}`;
    if (this.#held.delete(key)) {
      // Back within the delay: neither the leave nor this join is an event.
      this.#wheel.cancel(key);
      return;
    }
    let members = this.#members.get(channel);
    if (!members) {
      this.#members.set(channel, (members = new Set()));
      this.#options.emit('channel_occupied', channel, user);
    }
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

export function createPresence(options: {
  readonly config: Readonly<Config>['presence'];
  readonly clock: Clock;
  readonly log: Logger;
  readonly metrics: PresenceMetrics;
  readonly ids: PresenceIds;
  /** The webhook's (or the amqp upstream's) delivery; null when only frames are on. */
  readonly deliver: ((events: readonly PresenceEvent[]) => Promise<boolean>) | null;
  /** The frames to subscribers (presence-frames.ts); null when off. */
  readonly frames: ((event: PresenceEvent) => void) | null;
}): PresenceParts {
  const { config, clock, metrics, frames } = options;
  const log = options.log.child({ part: 'presence' });
  const deliver = options.deliver;
  const delivery = deliver === null ? null : new PresenceDelivery({
    batchMs: config.batchMs,
    batchMax: config.batchMax,
    maxPending: config.maxPending,
    clock,
    log,
    deliver,
    counted: (result, n) => metrics.presenceEventsTotal.labels(result).inc(n),
    pending: metrics.presenceEventsPending,
  });
  const membership = new Membership({
    clock,
    leaveDelayMs: config.leaveDelayMs,
    // One event for both consumers: the webhook and the frames carry the same id.
    emit: (type, channel, user) => {
      const event: PresenceEvent = { type, channel, user, id: options.ids.next(), at: new Date(clock.now()).toISOString() };
      delivery?.push(event);
      frames?.(event);
    },
  });
  return {
    watcher: { first: () => {}, last: () => {}, member: (channel, user, delta, ended) => membership.change(channel, user, delta, ended) },
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
