// Presence across a cluster: one process at a time, the owner, counts every process's
// connections per (channel, user) and sends the events, so a user with tabs on two nodes is one
// member and a dead node's members leave, their events sent by a survivor. Every process sends
// its member changes to the owner (the relay carries them, in order per process: a `full` count
// of what it holds, then `changes`); the owner keeps them per process, runs the one `Membership`
// of the cluster and delivers through its own upstream. Which process owns, and the handover
// when it goes, is the relay's (plugins/amqp/presence-queue.ts).
//
// A new owner starts from what the app was told (the members and held leaves its predecessor
// kept beside the queue), takes in every live process's `full` count, then settles: a member
// told and held by nobody leaves, one held and never told joins, one told and held is no event.
// So the events an owner had not delivered when it went are derived again, not lost; one it had
// delivered after it last kept what it told may be sent again (a new id, the same change).
import type { Logger } from 'pino';
import { sleep } from './clock.js';
import { TOLD_WRITE_MS } from './limits.js';
import type { PresenceDelivery } from './presence-delivery.js';
import { deliveryOf, Membership, type HeldCounts, type MemberChange, type MemberState, type PresenceEvent, type PresenceEventType, type PresenceOptions } from './presence.js';
import type { Leave } from './registry.js';

/** What an owner keeps beside the queue: the members the app was told of, the leaves held, and the last batch the app took. */
export interface ToldState {
  readonly members: ReadonlyArray<readonly [channel: string, users: readonly string[]]>;
  readonly held: ReadonlyArray<readonly [channel: string, user: string, due: number]>;
  /** The number of the last batch whose events are in `members` (batches are numbered across owners). */
  readonly batch: number;
}

/**
 * Kept before each batch goes: its number and the members it names (and those a predecessor's last
 * batch named, until settled). The app may or may not have them: a successor tells them again,
 * unless the told state says this batch was taken.
 */
export interface SendingState {
  readonly batch: number;
  readonly uncertain: ReadonlyArray<readonly [channel: string, user: string]>;
}

interface Holder {
  readonly boot: string;
  /** When its count came in. */
  readonly since: number;
  /** `channel\0user` → connections there. */
  readonly counts: Map<string, number>;
}

export class PresenceOwner {
  readonly #options: PresenceOptions;
  readonly #log: Logger;
  readonly #delivery: PresenceDelivery | null;
  /** What the app has taken: members by channel. */
  readonly #told = new Map<string, Set<string>>();
  readonly #holders = new Map<string, Holder>();
  #membership: Membership | null = null;
  /** Counts up with each ownership: a batch of an earlier one tells nothing to this one. */
  #term = 0;
  /** Aborted when this process stops owning: its batch in flight makes no further attempt. */
  #stop = new AbortController();
  /**
   * The batches sent since the last told state the broker has: their members are uncertain to a
   * successor until a told state that covers them is kept (`kept`).
   */
  #unkept: Array<{ readonly seq: number; readonly pairs: ReadonlyArray<readonly [string, string]> }> = [];
  /** The number of the last batch numbered, and of the last one the app took. */
  #batchSeq = 0;
  #toldBatch = 0;
  /** The members a predecessor's batch named: told again once the counts are in. */
  #uncertain: ReadonlyArray<readonly [string, string]> = [];
  /** What the app was told changed, or a leave began to be held: the relay keeps it. */
  onTold: (() => void) | null = null;
  /** Before each batch goes: the relay keeps `sending()`; the batch waits for it, and for a write refused, tries again. */
  beforeSend: (() => Promise<boolean>) | null = null;

  /** `frames`, when on, are routed to the channel cluster-wide. */
  constructor(options: PresenceOptions) {
    this.#options = options;
    this.#log = options.log.child({ part: 'presence owner' });
    const { deliver } = options;
    this.#delivery = deliver === null ? null : deliveryOf(options, this.#log, async (events) => {
      const term = this.#term;
      const stop = this.#stop.signal;
      const seq = ++this.#batchSeq;
      const pairs = events.filter((e) => e.type === 'member_added' || e.type === 'member_removed').map((e) => [e.channel, e.user] as const);
      this.#unkept.push({ seq, pairs });
      // Kept first: an owner killed while the app takes this batch leaves its members to be told again.
      while (this.beforeSend && !(await this.beforeSend())) {
        if (stop.aborted) break;
        await sleep(TOLD_WRITE_MS, options.clock);
      }
      if (stop.aborted) return 'handed_over';
      const taken = await deliver(events, stop);
      if (stop.aborted && !taken) return 'handed_over';
      if (taken && term === this.#term) {
        this.#toldBatch = seq;
        this.#tell(events);
      }
      return taken;
    });
  }

  /** Whether this process owns now. */
  get owning(): boolean {
    return this.#membership !== null;
  }

  /**
   * This process becomes the owner: it starts from what its predecessor told (null: nothing kept)
   * and the batch it was sending (told again unless the told state has it).
   */
  begin(told: ToldState | null, sending: SendingState | null = null): void {
    this.#membership?.stop();
    this.#term++;
    this.#stop = new AbortController();
    this.#holders.clear();
    this.#told.clear();
    const members = new Map<string, Set<string>>();
    for (const [channel, users] of told?.members ?? []) {
      if (users.length === 0) continue;
      members.set(channel, new Set(users));
      this.#told.set(channel, new Set(users));
    }
    // A member the app may have been told of: one nobody holds leaves at the settle, as a told one
    // (and is kept as told until then: over-stating what the app has only costs a repeated event).
    this.#toldBatch = told?.batch ?? 0;
    this.#batchSeq = Math.max(this.#toldBatch, sending?.batch ?? 0);
    this.#unkept = [];
    this.#uncertain = sending !== null && sending.batch > this.#toldBatch ? sending.uncertain : [];
    for (const [channel, user] of this.#uncertain) {
      for (const map of [members, this.#told]) {
        let users = map.get(channel);
        if (!users) map.set(channel, (users = new Set()));
        users.add(user);
      }
    }
    const { config, clock, holdMs } = this.#options;
    const membership = new Membership({
      clock,
      leaveDelayMs: config.leaveDelayMs,
      holdMs,
      emit: (type, channel, user) => this.#emit(type, channel, user),
      held: () => this.onTold?.(),
    });
    membership.seed({ members, held: told?.held ?? [] } satisfies MemberState);
    this.#membership = membership;
    this.#log.info({ channels: members.size, held: told?.held.length ?? 0 }, 'presence owner: taking over what the app was told');
  }

  /**
   * Every live process's count is in: the members nobody holds leave, and those a predecessor's
   * last batch named that are held are told again (the app may have taken their leave).
   */
  settle(): void {
    const m = this.#membership;
    if (!m) return;
    m.settle();
    for (const [channel, user] of this.#uncertain) if (m.has(channel, user)) this.#emit('member_added', channel, user);
    this.#uncertain = [];
  }

  /** A process's whole count, which replaces what was counted for it (a new `boot`: it restarted). */
  full(holder: string, boot: string, counts: HeldCounts): void {
    const m = this.#membership;
    if (!m) return;
    const was = this.#holders.get(holder);
    const now = new Map<string, number>();
    for (const [channel, user, n] of counts) {
      if (n > 0) now.set(`${channel}\0${user}`, (now.get(`${channel}\0${user}`) ?? 0) + n);
    }
    this.#holders.set(holder, { boot, since: this.#options.clock.now(), counts: now });
    // Joins before leaves: a member whose connections only moved within the process stays one.
    for (const [key, n] of now) this.#apply(key, n - (was?.counts.get(key) ?? 0), 'ended');
    for (const [key, n] of was?.counts ?? []) if (!now.has(key)) this.#apply(key, -n, 'ended');
  }

  /** A process's changes since its last `full` (dropped when its count is not in yet: the `full` that comes covers them). */
  changes(holder: string, boot: string, changes: readonly MemberChange[]): void {
    const m = this.#membership;
    const h = this.#holders.get(holder);
    if (!m || h?.boot !== boot) return;
    for (const [channel, user, delta, why] of changes) {
      const key = `${channel}\0${user}`;
      const n = (h.counts.get(key) ?? 0) + delta;
      if (n < 0) continue; // a leave of nothing counted: not the process's registry's doing
      if (n === 0) h.counts.delete(key);
      else h.counts.set(key, n);
      m.change(channel, user, delta, why);
    }
  }

  /** Whether a process's count is in (this term). */
  counted(holder: string): boolean {
    return this.#holders.has(holder);
  }

  /** The processes counted since before `before` that are not `live`: gone without a word that reached here. */
  stale(live: ReadonlySet<string>, before: number): string[] {
    return [...this.#holders].filter(([p, h]) => !live.has(p) && h.since < before).map(([p]) => p);
  }

  /** A process is gone (dead, or it left; `boot`: that start of it only): its connections are. */
  lost(holder: string, boot?: string): void {
    const h = this.#holders.get(holder);
    if (!h || (boot !== undefined && h.boot !== boot)) return;
    this.#holders.delete(holder);
    if (h.counts.size > 0) this.#log.warn({ process: holder, members: h.counts.size }, 'cluster process gone: its members leave');
    for (const [key, n] of h.counts) this.#apply(key, -n, 'ended');
  }

  /** Another process owns from here on: what is queued here is left to it (it derives it again). */
  end(): void {
    this.#membership?.stop();
    this.#membership = null;
    this.#term++;
    this.#stop.abort();
    this.#holders.clear();
    const left = this.#delivery?.handOver() ?? 0;
    this.#log.info({ events: left }, 'presence owner: another process owns now');
  }

  /** What the app was told, and the leaves held of those members, to keep beside the queue. */
  told(): ToldState {
    const held = (this.#membership?.held() ?? []).filter(([c, u]) => this.#told.get(c)?.has(u));
    return { members: [...this.#told].map(([c, users]) => [c, [...users]] as const), held, batch: this.#toldBatch };
  }

  /** The batch about to go, to keep first: its number, and every member a batch since the last kept told state named. */
  sending(): SendingState {
    const uncertain = new Map<string, readonly [string, string]>();
    // Still uncertain until settled: the predecessor's; and this process's batches since its last kept told state.
    for (const [c, u] of this.#uncertain) uncertain.set(`${c}\0${u}`, [c, u]);
    for (const { pairs } of this.#unkept) for (const [c, u] of pairs) uncertain.set(`${c}\0${u}`, [c, u]);
    return { batch: this.#batchSeq, uncertain: [...uncertain.values()] };
  }

  /** The broker has a told state that covers the batches up to `batch`: their members are no longer uncertain. */
  kept(batch: number): void {
    this.#unkept = this.#unkept.filter((b) => b.seq > batch);
  }

  /** A drain: everything queued goes now (the held leaves stay held: the next owner holds them on). */
  async close(): Promise<void> {
    await this.#delivery?.close();
  }

  destroy(): void {
    this.#membership?.stop();
    this.#membership = null;
    this.#stop.abort();
    this.#delivery?.destroy();
  }

  #apply(key: string, delta: number, why: Leave): void {
    const at = key.indexOf('\0');
    this.#membership!.change(key.slice(0, at), key.slice(at + 1), delta, why);
  }

  #emit(type: PresenceEventType, channel: string, user: string): void {
    const { ids, clock, frames } = this.#options;
    const event: PresenceEvent = { type, channel, user, id: ids.next(), at: new Date(clock.now()).toISOString() };
    // Without the webhook, what the frames say is what was told.
    if (this.#delivery) this.#delivery.push(event);
    else this.#tell([event]);
    frames?.(event);
  }

  #tell(events: readonly PresenceEvent[]): void {
    for (const e of events) {
      if (e.type === 'member_added') {
        let users = this.#told.get(e.channel);
        if (!users) this.#told.set(e.channel, (users = new Set()));
        users.add(e.user);
      } else if (e.type === 'member_removed') {
        const users = this.#told.get(e.channel);
        users?.delete(e.user);
        if (users?.size === 0) this.#told.delete(e.channel);
      }
    }
    this.onTold?.();
  }
}
