// The roster: which sessions a process holds, kept in RabbitMQ so that when the process dies
// without a drain (SIGKILL, OOM), another one sends their disconnect webhooks.
//
//   <exchange>.roster.<node>-<worker>   durable, one per process name
//
// The process appends what changes (sessions added, their user or meta set, sessions gone),
// gathered for ROSTER_FLUSH_MS, as persistent messages, and consumes its own queue to trim it: now and then
// it writes its whole roster (`begin`, chunks, `end`), and once the `end` comes back it acks
// everything before the `begin`. So the queue holds one full roster and the changes since.
//
// Reading a roster (fold): from the last complete `begin … end`, then every change after it.
// Who reads one: a survivor that counted the process gone (no heartbeat for three intervals),
// claiming the queue with an exclusive consumer (one survivor wins; a live process holds its
// own queue exclusively, so a stopped-but-alive one is left alone), or the process's own
// successor (same name) on its first connection. Every message names the process instance
// (`boot`), so a successor tells its predecessor's roster from its own.
import { randomBytes } from 'node:crypto';
import type { Channel, ChannelModel, ConfirmChannel, Message } from 'amqplib';
import type { Logger } from 'pino';
import { parseJson } from '../../proxy/json.js';
import type { RosterEntry } from '../../proxy/snapshot.js';
import { CLAIM_READ_MS, LOST_AT_ONCE, ROSTER_CHUNK, ROSTER_FLUSH_MS, ROSTER_SLACK } from '../../proxy/limits.js';


type Change =
  | { readonly t: 'add'; readonly e: RosterEntry }
  | { readonly t: 'set'; readonly e: RosterEntry }
  | { readonly t: 'del'; readonly id: string };

/** A roster message: a batch of changes, or a part of a full roster. */
export interface Wire {
  readonly boot: string;
  readonly kind: 'changes' | 'begin' | 'chunk' | 'end';
  readonly gen?: number;
  readonly changes?: Change[];
  readonly entries?: RosterEntry[];
}

export interface RosterDeps {
  readonly log: Logger;
  /** The sessions held here now, for a full roster. */
  held(): Iterable<RosterEntry>;
  /** A session of a process that died: its disconnect webhook, resolved once sent. */
  lost(entry: RosterEntry): Promise<void>;
  /**
   * Of these sessions of a dead process, the ones alive elsewhere: it was killed after they moved
   * on or were parked, before its roster said so. Their ends are not the app's to hear of now.
   */
  alive(ids: readonly string[], whose: string): Promise<Set<string>>;
  /** `changes` roster changes are in the broker (confirmed), or were not taken. */
  written(changes: number, confirmed: boolean): void;
}

export class Roster {
  readonly #exchange: string;
  readonly #self: string;
  readonly #deps: RosterDeps;
  readonly #boot = randomBytes(6).toString('base64url');
  #channel: ConfirmChannel | null = null;
  #model: ChannelModel | null = null;
  #pending: Change[] = [];
  #flushing = false;
  #written = 0;
  #live = 0;
  #gen = 0;
  /** Delivery tag of the last message before each `begin` seen by the trimming consumer. */
  #beforeBegin = new Map<number, number>();
  #lastTag = 0;
  #predecessorRead = false;

  constructor(exchange: string, self: string, deps: RosterDeps) {
    this.#exchange = exchange;
    this.#self = self;
    this.#deps = deps;
  }

  queueOf(process: string): string {
    return `${this.#exchange}.roster.${process}`;
  }

  async setup(model: ChannelModel): Promise<void> {
    const queue = this.queueOf(this.#self);
    const ch = await model.createConfirmChannel();
    ch.on('error', (err: Error) => this.#deps.log.warn({ err: err.message }, 'roster channel error'));
    await ch.assertQueue(queue, { durable: true });
    if (!this.#predecessorRead) {
      // What a predecessor of this name left: its sessions died with it.
      this.#predecessorRead = true;
      const reader = await model.createChannel();
      reader.on('error', () => {});
      // Read now; the disconnects go out in the background (the reader acks once they are sent).
      const { sending } = await this.#recover(reader, queue, (w) => w.boot !== this.#boot, this.#self);
      void sending.finally(() => reader.close().catch(() => {}));
    }
    const trimmer = await model.createChannel();
    trimmer.on('error', (err: Error) => this.#deps.log.warn({ err: err.message }, 'roster trimming channel error'));
    this.#beforeBegin = new Map();
    this.#lastTag = 0;
    await trimmer.consume(queue, (m) => { if (m) this.#trim(trimmer, m); }, { exclusive: true, noAck: false });
    this.#channel = ch;
    this.#model = model;
    // A fresh full roster on every connection: what was written before is trimmed once it is back.
    this.#pending = [];
    this.#writeFull();
  }

  lost(): void {
    this.#channel = null;
    this.#model = null;
  }

  /** Before the connection closes: what is still gathered is written now, and confirmed. */
  async close(): Promise<void> {
    this.#flush();
    await this.#channel?.waitForConfirms().catch(() => {});
  }

  added(entry: RosterEntry): void {
    this.#live++;
    this.#change({ t: 'add', e: entry });
  }

  changed(entry: RosterEntry): void {
    this.#change({ t: 'set', e: entry });
  }

  removed(id: string): void {
    this.#live--;
    this.#change({ t: 'del', id });
  }

  #change(change: Change): void {
    if (!this.#channel) return; // the next connection writes the whole roster
    this.#pending.push(change);
    if (this.#flushing) return;
    this.#flushing = true;
    // Handshakes complete one per event-loop turn: a short wait gathers a storm's into few messages.
    setTimeout(() => this.#flush(), ROSTER_FLUSH_MS).unref();
  }

  #flush(): void {
    this.#flushing = false;
    const changes = this.#pending;
    this.#pending = [];
    if (changes.length === 0) return;
    this.#write({ boot: this.#boot, kind: 'changes', changes }, changes.length);
    this.#written += changes.length;
    if (this.#written > ROSTER_SLACK + this.#live) this.#writeFull();
  }

  #writeFull(): void {
    const gen = ++this.#gen;
    this.#write({ boot: this.#boot, kind: 'begin', gen });
    let chunk: RosterEntry[] = [];
    let live = 0;
    for (const entry of this.#deps.held()) {
      live++;
      chunk.push(entry);
      if (chunk.length === ROSTER_CHUNK) {
        this.#write({ boot: this.#boot, kind: 'chunk', gen, entries: chunk });
        chunk = [];
      }
    }
    if (chunk.length > 0) this.#write({ boot: this.#boot, kind: 'chunk', gen, entries: chunk });
    this.#write({ boot: this.#boot, kind: 'end', gen });
    this.#live = live;
    this.#written = 0;
  }

  #write(wire: Wire, changes = 0): void {
    const ch = this.#channel;
    if (!ch) return void this.#deps.written(changes, false);
    try {
      ch.sendToQueue(this.queueOf(this.#self), Buffer.from(JSON.stringify(wire)), { persistent: true }, (err) => {
        if (err) this.#deps.log.warn({ err: String(err) }, 'roster change not taken by the broker');
        this.#deps.written(changes, !err);
      });
    } catch (err) {
      this.#deps.log.warn({ err: (err as Error).message }, 'roster change not written');
      this.#deps.written(changes, false);
    }
  }

  /** Our own messages come back: once a full roster's `end` is back, everything before its `begin` goes. */
  #trim(ch: Channel, m: Message): void {
    const wire = decode(m);
    const tag = m.fields.deliveryTag;
    if (wire?.boot === this.#boot && wire.kind === 'begin' && wire.gen !== undefined) this.#beforeBegin.set(wire.gen, this.#lastTag);
    if (wire?.boot === this.#boot && wire.kind === 'end' && wire.gen !== undefined) {
      const before = this.#beforeBegin.get(wire.gen);
      for (const g of this.#beforeBegin.keys()) if (g <= wire.gen) this.#beforeBegin.delete(g);
      try {
        if (before !== undefined && before > 0) ch.ack({ fields: { deliveryTag: before } } as Message, true);
      } catch {
        // The channel went with the connection; the next one writes a full roster again.
      }
    }
    this.#lastTag = tag;
  }

  /**
   * Reads a dead process's roster (claimed exclusively), sends its sessions' disconnects, deletes
   * it. `done`: read, or there was none; `busy`: its process holds it (alive after all);
   * `failed`: the broker did not let us (try again on the next connection).
   */
  async claim(process: string): Promise<'done' | 'busy' | 'failed'> {
    const model = this.#model;
    if (!model || process === this.#self) return 'failed';
    const queue = this.queueOf(process);
    let ch: Channel;
    try {
      ch = await model.createChannel();
    } catch {
      return 'failed';
    }
    ch.on('error', () => {});
    let closed = false;
    ch.on('close', () => { closed = true; });
    let step: 'check' | 'consume' | 'read' = 'check';
    try {
      const { messageCount } = await ch.checkQueue(queue);
      step = 'consume';
      const got: Message[] = [];
      let arrived = () => {};
      // The consumer stays until the end: while it does, nobody else reads this roster.
      await ch.consume(queue, (m) => { if (m) { got.push(m); arrived(); } }, { exclusive: true, noAck: false });
      step = 'read';
      // Nothing is written to a dead process's roster: what it holds now is all there is.
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('the roster was not read in time')), CLAIM_READ_MS);
        arrived = () => { if (got.length >= messageCount) { clearTimeout(timer); resolve(); } };
        arrived();
      });
      const sending = this.#send(got.map(decode).filter((w): w is Wire => w !== null), process, () => ch.ackAll());
      await sending;
      await ch.deleteQueue(queue);
      return 'done';
    } catch {
      // No such roster (read by someone already: done), or its process holds it (busy).
      return step === 'check' ? 'done' : step === 'consume' ? 'busy' : 'failed';
    } finally {
      if (!closed) await ch.close().catch(() => {});
    }
  }

  /** Reads every message of `queue` now, and sends the disconnects of what the ones `mine` picks hold. */
  async #recover(ch: Channel, queue: string, mine: (w: Wire) => boolean, whose: string): Promise<{ sending: Promise<number> }> {
    const read: Wire[] = [];
    let any = false;
    for (;;) {
      const m = await ch.get(queue, { noAck: false });
      if (m === false) break;
      any = true;
      const wire = decode(m);
      if (wire && mine(wire)) read.push(wire);
    }
    return { sending: this.#send(read, whose, () => { if (any) ch.ackAll(); }) };
  }

  /** The disconnects of the sessions a roster holds, a few at a time; then `ack`. */
  async #send(messages: readonly Wire[], whose: string, ack: () => void): Promise<number> {
    const listed = fold(messages);
    const alive = listed.length > 0 ? await this.#deps.alive(listed.map((e) => e.id), whose) : new Set<string>();
    const entries = listed.filter((e) => !alive.has(e.id));
    if (alive.size > 0) this.#deps.log.info({ process: whose, sessions: alive.size }, 'sessions of a process that died are alive elsewhere (moved or parked): no disconnect');
    if (entries.length > 0) this.#deps.log.warn({ process: whose, sessions: entries.length }, 'sessions of a process that died: sending their disconnects');
    for (let i = 0; i < entries.length; i += LOST_AT_ONCE) {
      await Promise.all(entries.slice(i, i + LOST_AT_ONCE).map((entry) => this.#deps.lost(entry).catch((err: unknown) =>
        this.#deps.log.warn({ err: (err as Error).message, connection: entry.id }, 'disconnect of a lost session failed'))));
    }
    try {
      ack();
    } catch {
      // The channel went: the roster is read again by whoever claims it next (at least once).
    }
    return entries.length;
  }
}

function decode(m: Message): Wire | null {
  const parsed = parseJson(m.content.toString('utf8'));
  if (!parsed.ok || parsed.value === null || typeof parsed.value !== 'object') return null;
  const w = parsed.value as Partial<Wire>;
  if (typeof w.boot !== 'string' || !['changes', 'begin', 'chunk', 'end'].includes(w.kind as string)) return null;
  return w as Wire;
}

const isEntry = (e: unknown): e is RosterEntry => {
  const x = e as Partial<RosterEntry> | null;
  return x !== null && typeof x === 'object' && typeof x.id === 'string' && (x.user === null || typeof x.user === 'string')
    && typeof x.connectedAt === 'number' && x.meta !== null && typeof x.meta === 'object';
};

/**
 * The sessions a roster says are held: for each instance, from its last complete full roster
 * (every message before it is stale), then every change after it; with none, from the start.
 */
export function fold(messages: readonly Wire[]): RosterEntry[] {
  const held = new Map<string, RosterEntry>();
  const start = new Map<string, number>();
  const begins = new Map<string, { gen: number; at: number }>();
  messages.forEach((w, i) => {
    if (w.kind === 'begin' && w.gen !== undefined) begins.set(w.boot, { gen: w.gen, at: i });
    if (w.kind === 'end' && begins.get(w.boot)?.gen === w.gen) start.set(w.boot, begins.get(w.boot)!.at);
  });
  messages.forEach((w, i) => {
    if (i < (start.get(w.boot) ?? 0)) return;
    if (w.kind === 'chunk') {
      for (const e of Array.isArray(w.entries) ? w.entries : []) if (isEntry(e)) held.set(e.id, e);
      return;
    }
    if (w.kind !== 'changes') return;
    for (const c of Array.isArray(w.changes) ? w.changes : []) {
      if (c === null || typeof c !== 'object') continue;
      if (c.t === 'add' && isEntry(c.e)) held.set(c.e.id, c.e);
      else if (c.t === 'set' && isEntry(c.e) && held.has(c.e.id)) held.set(c.e.id, c.e);
      else if (c.t === 'del' && typeof c.id === 'string') held.delete(c.id);
    }
  });
  return [...held.values()];
}
