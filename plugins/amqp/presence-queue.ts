// The cluster's presence queue: every process sends its member changes to one owner
// (proxy/presence-owner.ts), which counts them and sends the events.
//
//   <exchange>.presence        durable, single active consumer: every process consumes it and
//                              the broker delivers to one, the owner, handing over to the next
//                              consumer when that one's connection goes
//   <exchange>.presence.told   durable, length 1: what the owner told the app (the newest kept),
//                              at most once a second
//   <exchange>.presence.sending  durable, length 1: the batch the owner is sending, written before
//                              it goes (its number and the members it names)
//
// A process sends its whole count (`full`) on every connection and when an owner asks
// (`presence-resync` on the cluster exchange), its `changes` in between, `bye` when it drains,
// and `gone` when it counts another process gone; all on one channel, so the owner reads each
// process's messages in the order they were sent (plugins/amqp/presence-wire.ts).
//
// A consumer learns it owns from its first delivery. It then takes over what the app was told,
// asks every live process for its count, and settles once each has answered (or has been asked
// for three heartbeats). A `gone` wakes the next owner when the last one died with nothing queued;
// a draining owner sends everything queued, keeps what it told, and then sends its `bye` again
// once its consumer is cancelled, so the next one takes over at once.
import { randomBytes } from 'node:crypto';
import type { Channel, ChannelModel, ConfirmChannel, ConsumeMessage } from 'amqplib';
import type { Logger } from 'pino';
import { sleep, type Clock } from '../../proxy/clock.js';
import { MISSED_HEARTBEATS, PRESENCE_CHANGES_PER_MESSAGE, PRESENCE_PREFETCH, TOLD_WRITE_MS } from '../../proxy/limits.js';
import { withDeadline } from '../../proxy/plugin.js';
import type { HeldCounts, MemberChange } from '../../proxy/presence.js';
import type { PresenceOwner, SendingState, ToldState } from '../../proxy/presence-owner.js';
import type { Result } from '../../proxy/result.js';
import type { Leave } from '../../proxy/registry.js';
import { decodePresence, decodeSending, decodeTold, encodePresence, encodeSending, encodeTold, type PresenceMessage } from './presence-wire.js';

export interface PresenceQueueDeps {
  readonly log: Logger;
  readonly clock: Clock;
  readonly exchange: string;
  /** This process: `<node>-<worker>`. */
  readonly self: string;
  readonly heartbeatMs: number;
  readonly owner: PresenceOwner;
  /** This process's connections per (channel, user). */
  counts(): HeldCounts;
  /** The other live processes. */
  peers(): string[];
  /** When this process will have heard every live one (a heartbeat after it connected). */
  acquainted(): number;
  /** Asks a process (null: every one) to send its whole count again. */
  resync(to: string | null): void;
  /** How long a process that said bye on the cluster exchange may take to send its last presence messages. */
  readonly leaveMs: number;
}

export class PresenceQueue {
  readonly #deps: PresenceQueueDeps;
  readonly #log: Logger;
  readonly #queue: string;
  readonly #toldQueue: string;
  readonly #sendingQueue: string;
  /** This process's start: a count of an earlier one of the same name is replaced, not added to. */
  readonly #boot = randomBytes(6).toString('base64url');
  #pub: ConfirmChannel | null = null;
  #consumer: Channel | null = null;
  #consumerTag: string | null = null;
  #pending: MemberChange[] = [];
  #scheduled = false;
  /** Deliveries are handled one after another, in the queue's order. */
  #chain: Promise<void> = Promise.resolve();
  /** Counts up with each ownership (a settle of an earlier one stops). */
  #term = 0;
  #settled = false;
  #wake: (() => void) | null = null;
  #toldTimer: unknown = null;
  /** Set while a draining owner waits for its own `bye` to come back. */
  #byeBack: (() => void) | null = null;
  #closing = false;
  /** A message the broker refused: the whole count goes again (once a heartbeat at most). */
  #recount: unknown = null;
  /** Processes that said bye on the cluster exchange, with when: their presence `bye` is on its way, behind their last changes. */
  readonly #leaving = new Map<string, number>();
  /** Writes waiting for the broker's confirm; settled (as not kept) when the connection goes. */
  readonly #keeping = new Set<() => void>();

  constructor(deps: PresenceQueueDeps) {
    this.#deps = deps;
    this.#log = deps.log.child({ part: 'presence queue' });
    this.#queue = `${deps.exchange}.presence`;
    this.#toldQueue = `${deps.exchange}.presence.told`;
    this.#sendingQueue = `${deps.exchange}.presence.sending`;
    deps.owner.onTold = () => this.#toldChanged();
    deps.owner.beforeSend = () => this.#keepSending();
  }

  /** `fail`: drops the connection (everything is set up again on the next). */
  async setup(model: ChannelModel, watch: (c: Channel) => void, fail: (err: Error) => void): Promise<void> {
    const pub = await model.createConfirmChannel();
    const consumer = await model.createChannel();
    watch(pub);
    watch(consumer);
    await pub.assertQueue(this.#queue, { durable: true, arguments: { 'x-single-active-consumer': true } });
    await pub.assertQueue(this.#toldQueue, { durable: true, arguments: { 'x-max-length': 1 } });
    await pub.assertQueue(this.#sendingQueue, { durable: true, arguments: { 'x-max-length': 1 } });
    await consumer.prefetch(PRESENCE_PREFETCH);
    this.#pub = pub;
    this.#consumer = consumer;
    // The whole count first: changes gathered while disconnected are in it.
    this.full();
    if (this.#closing) return;
    const { consumerTag } = await consumer.consume(this.#queue, (msg) => {
      // Cancelled by the broker (the queue deleted, its node down): consumed again on a new connection.
      if (msg === null) return void fail(new Error('presence consumer cancelled by the broker'));
      this.#chain = this.#chain.then(() => this.#receive(consumer, msg)).catch((err: unknown) =>
        this.#log.error({ err }, 'handling a presence message failed'));
    }, { noAck: false });
    this.#consumerTag = consumerTag;
  }

  /** The connection went: another process owns now (this one's deliveries go back to the queue). */
  lost(): void {
    this.#pub = null;
    this.#consumer = null;
    this.#consumerTag = null;
    this.#pending = [];
    for (const settle of [...this.#keeping]) settle();
    this.#endTerm();
  }

  // ── what this process sends ──────────────────────────────────────────────────

  /** A connection of `user` entered or left `channel` here. */
  change(channel: string, user: string | null, delta: 1 | -1, why: Leave): void {
    if (user === null || this.#pub === null) return; // the next connection sends the whole count
    this.#pending.push([channel, user, delta, why]);
    if (this.#scheduled) return;
    this.#scheduled = true;
    setImmediate(() => this.#flush());
  }

  /** The whole count of this process, after the changes gathered so far (not once it leaves: its `bye` is its last). */
  full(): void {
    if (this.#closing) return;
    this.#flush();
    this.#send({ type: 'full', from: this.#deps.self, boot: this.#boot, counts: this.#deps.counts() });
  }

  /** This process counted `process` gone: the owner (perhaps a new one, if it was the owner) hears of it. */
  gone(process: string): void {
    this.#send({ type: 'gone', from: this.#deps.self, process });
  }

  #flush(): void {
    this.#scheduled = false;
    const changes = this.#pending;
    this.#pending = [];
    for (let i = 0; i < changes.length; i += PRESENCE_CHANGES_PER_MESSAGE) {
      this.#send({ type: 'changes', from: this.#deps.self, boot: this.#boot, changes: changes.slice(i, i + PRESENCE_CHANGES_PER_MESSAGE) });
    }
  }

  #send(message: PresenceMessage): void {
    const pub = this.#pub;
    if (!pub) return;
    const { content, type } = encodePresence(message);
    try {
      // Persistent: an owner that dies leaves them to the next one, across a broker restart too.
      pub.sendToQueue(this.#queue, content, { type, persistent: true, contentType: 'application/json' }, (err) => {
        // Refused by a channel that has closed since: the next connection sends the whole count (none when leaving).
        if (!err || this.#pub !== pub || this.#closing) return;
        this.#log.warn({ err: String(err), type }, 'presence message not taken by the broker: the whole count goes again');
        // The owner's count of this process would drift: it is replaced (a lost connection does the same).
        if ((type === 'changes' || type === 'full') && this.#recount === null) {
          this.#recount = this.#deps.clock.setTimeout(() => { this.#recount = null; this.full(); }, this.#deps.heartbeatMs);
        }
      });
    } catch (err) {
      this.#log.warn({ err: (err as Error).message, type }, 'presence message not sent');
    }
  }

  // ── the owner's side ─────────────────────────────────────────────────────────

  async #receive(ch: Channel, msg: ConsumeMessage): Promise<void> {
    // Taken on a channel that has gone: the broker delivers it again, to whoever owns then.
    if (ch !== this.#consumer) return;
    const owner = this.#deps.owner;
    if (!owner.owning) {
      if (!this.#closing) await this.#begin(ch);
      if (ch !== this.#consumer) return;
      if (!owner.owning) {
        // Handed over in a drain: back to the queue, for the next owner.
        try { ch.nack(msg, false, true); } catch { /* the channel went: delivered again anyway */ }
        return;
      }
    }
    const decoded = decodePresence(msg.properties.type, msg.content);
    if (!decoded.ok) this.#log.warn({ err: decoded.error }, 'malformed presence message ignored');
    else this.#apply(decoded.value);
    try {
      ch.ack(msg);
    } catch {
      // The channel went meanwhile: it is delivered again, and counting it again is harmless.
    }
  }

  #apply(m: PresenceMessage): void {
    const { owner, self } = this.#deps;
    switch (m.type) {
      case 'full':
        owner.full(m.from, m.boot, m.counts);
        this.#wake?.();
        return;
      case 'changes':
        return owner.changes(m.from, m.boot, m.changes);
      case 'gone':
        // Heard gone by another process, but alive here: this one's own heartbeats decide.
        if (m.process !== self && !this.#deps.peers().includes(m.process)) owner.lost(m.process);
        return;
      case 'bye':
        if (m.from === self && m.boot === this.#boot) return void this.#byeBack?.();
        this.#leaving.delete(m.from);
        owner.lost(m.from, m.boot);
        return;
    }
  }

  /** The first delivery: this process owns. */
  async #begin(ch: Channel): Promise<void> {
    const term = ++this.#term;
    const { told, sending } = await this.#readKept(ch);
    // A drain began meanwhile: it does not own (what it took goes back to the queue).
    if (ch !== this.#consumer || term !== this.#term || this.#closing) return;
    this.#deps.owner.begin(told, sending);
    this.#settled = false;
    this.#deps.resync(null);
    this.full();
    void this.#settleOnceCounted(term);
  }

  /** Settles once every live process's count is in; one that does not send it is asked again each heartbeat, three times. */
  async #settleOnceCounted(term: number): Promise<void> {
    const { clock, heartbeatMs, owner, self } = this.#deps;
    const wait = this.#deps.acquainted() - clock.now();
    if (wait > 0) await sleep(wait, clock);
    for (let attempt = 0; ; attempt++) {
      if (term !== this.#term) return;
      const missing = [self, ...this.#deps.peers()].filter((p) => !owner.counted(p));
      if (missing.length === 0) break;
      if (attempt > MISSED_HEARTBEATS) {
        this.#log.warn({ missing }, 'presence owner: settling without the counts of processes that did not send them');
        break;
      }
      if (attempt > 0) for (const p of missing) if (p !== self) this.#deps.resync(p);
      await new Promise<void>((resolve) => {
        const timer = clock.setTimeout(() => { this.#wake = null; resolve(); }, heartbeatMs);
        this.#wake = () => { this.#wake = null; clock.clearTimeout(timer); resolve(); };
      });
    }
    if (term !== this.#term) return;
    owner.settle();
    this.#settled = true;
    this.#log.info('presence owner: every live process counted');
    this.#toldChanged();
  }

  /**
   * Each heartbeat: a process counted for three heartbeats and not heard within them is gone,
   * whether or not a `gone` said so (one that came before this owner knew it, say).
   */
  sweep(): void {
    if (!this.#settled || !this.#deps.owner.owning) return;
    const { clock, heartbeatMs, owner, self } = this.#deps;
    const now = clock.now();
    for (const [p, at] of this.#leaving) if (at + this.#deps.leaveMs < now) this.#leaving.delete(p);
    // A leaving process's last changes (its parked sessions') may still be queued: they, and its bye, decide.
    const live = new Set([self, ...this.#deps.peers(), ...this.#leaving.keys()]);
    for (const p of owner.stale(live, now - MISSED_HEARTBEATS * heartbeatMs)) {
      this.#log.warn({ process: p }, 'presence owner: a counted process is not heard any more: its members leave');
      owner.lost(p);
    }
  }

  /** A process said bye on the cluster exchange (it drains): its members are left to its presence `bye`. */
  leaving(process: string): void {
    this.#leaving.set(process, this.#deps.clock.now());
  }

  /** A process joined (or came back after it was counted gone): its count is asked for if it is not in. */
  heard(process: string): void {
    if (this.#settled && this.#deps.owner.owning && !this.#deps.owner.counted(process)) this.#deps.resync(process);
  }

  #endTerm(): void {
    this.#term++;
    this.#settled = false;
    this.#wake?.();
    if (this.#toldTimer !== null) {
      this.#deps.clock.clearTimeout(this.#toldTimer);
      this.#toldTimer = null;
    }
    if (this.#deps.owner.owning) this.#deps.owner.end();
  }

  // ── what the app was told ────────────────────────────────────────────────────

  #toldChanged(): void {
    if (this.#toldTimer !== null || !this.#deps.owner.owning) return;
    this.#toldTimer = this.#deps.clock.setTimeout(() => {
      this.#toldTimer = null;
      void this.#keepTold();
    }, TOLD_WRITE_MS);
  }

  /** Writes the told state; resolves once the broker has it (the batches it covers are then certain), or it was not kept (logged). */
  async #keepTold(): Promise<void> {
    const { owner } = this.#deps;
    if (!owner.owning) return;
    const told = owner.told();
    if (await this.#keep(this.#toldQueue, encodeTold(told), 'what the app was told')) owner.kept(told.batch);
  }

  /** Writes the batch about to go; false when the broker did not take it (the batch waits). */
  #keepSending(): Promise<boolean> {
    return this.#deps.owner.owning ? this.#keep(this.#sendingQueue, encodeSending(this.#deps.owner.sending()), 'the batch being sent') : Promise.resolve(false);
  }

  /** Resolves true once the broker has confirmed the message, false when it refused it or the connection went. */
  #keep(queue: string, content: Buffer, what: string): Promise<boolean> {
    const pub = this.#pub;
    if (!pub) return Promise.resolve(false);
    return new Promise<boolean>((resolve) => {
      const settle = (ok: boolean) => { this.#keeping.delete(lost); resolve(ok); };
      const lost = () => settle(false);
      this.#keeping.add(lost);
      try {
        pub.sendToQueue(queue, content, { persistent: true, contentType: 'application/json' }, (err) => {
          if (err && this.#pub === pub) this.#log.warn({ err: String(err) }, `${what} not kept by the broker`);
          settle(!err);
        });
      } catch (err) {
        this.#log.warn({ err: (err as Error).message }, `${what} not written`);
        settle(false);
      }
    });
  }

  /** What the last owner kept: its told state and the batch it was sending; null each when there is none (or it is malformed). */
  async #readKept(ch: Channel): Promise<{ told: ToldState | null; sending: SendingState | null }> {
    return {
      told: await this.#read(ch, this.#toldQueue, decodeTold, 'what the app was told'),
      sending: await this.#read(ch, this.#sendingQueue, decodeSending, 'the batch being sent'),
    };
  }

  async #read<T>(ch: Channel, queue: string, decode: (content: Buffer) => Result<T>, what: string): Promise<T | null> {
    try {
      const m = await ch.get(queue, { noAck: false });
      if (m === false) return null;
      // Left in the queue: read, not taken (an owner that dies before writing its own leaves it for the next).
      ch.nack(m, false, true);
      const value = decode(m.content);
      if (value.ok) return value.value;
      this.#log.warn({ err: value.error }, `${what} is malformed: starting without it`);
      return null;
    } catch (err) {
      this.#log.warn({ err: (err as Error).message }, `${what} could not be read: starting without it`);
      return null;
    }
  }

  // ── a drain ──────────────────────────────────────────────────────────────────

  /**
   * The sessions have ended (or were parked): their changes and a `bye` go out. An owner first
   * counts its own changes (its `bye` comes back behind them), sends everything queued within
   * `budgetMs`, keeps what it told, and hands over.
   */
  async close(budgetMs: number): Promise<void> {
    this.#closing = true;
    const { clock, owner } = this.#deps;
    const until = clock.now() + budgetMs;
    const left = () => Math.max(0, until - clock.now());
    const bye: PresenceMessage = { type: 'bye', from: this.#deps.self, boot: this.#boot };
    this.#flush();
    if (this.#recount !== null) clock.clearTimeout(this.#recount);
    this.#recount = null;
    // Not the owner: it must not become one now (what it would take goes back for the next).
    if (!owner.owning) await this.#cancel();
    if (owner.owning) {
      const back = new Promise<void>((resolve) => { this.#byeBack = resolve; });
      this.#send(bye);
      try {
        await withDeadline(back, left(), 'the presence queue reaching this process\'s bye');
        await withDeadline(owner.close(), left(), 'the last presence events');
      } catch (err) {
        this.#log.error({ err: (err as Error).message }, 'drain budget exhausted before the last presence events were sent: the next owner derives them');
      }
      if (this.#toldTimer !== null) clock.clearTimeout(this.#toldTimer);
      this.#toldTimer = null;
      // Kept before the consumer goes: the next owner reads it after its first delivery.
      await withDeadline(this.#keepTold(), left(), 'keeping what the app was told').catch(() => {});
      await this.#cancel();
      this.#endTerm();
    }
    // The next owner's first delivery (or, from a process that is not the owner, the owner's news).
    this.#send(bye);
    await this.#pub?.waitForConfirms().catch(() => {});
  }

  async #cancel(): Promise<void> {
    const consumer = this.#consumer;
    const tag = this.#consumerTag;
    this.#consumerTag = null;
    if (consumer && tag) await consumer.cancel(tag).catch(() => {});
  }

  destroy(): void {
    this.#closing = true;
    if (this.#recount !== null) this.#deps.clock.clearTimeout(this.#recount);
    this.#recount = null;
    this.#endTerm();
  }
}
