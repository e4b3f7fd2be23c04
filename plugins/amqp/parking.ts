// Parked sessions: what a draining node does with the reliable sessions whose clients have not
// come back within its drain. Each is parked in a durable queue of its own, which any node can
// claim within the session's grace, and which keeps what is pushed to the session meanwhile.
//
//   <exchange>.parked.<session id>   durable; `x-expires` = the grace left + a minute;
//                                    dead-letters to the expired queue
//     1. the snapshot, persistent, `expiration` = the grace left
//     2. the pushes held while it was being parked (`parked-tail`)
//     3. pushes and closes routed to it: bound to `connection.<id>`, `user.<u>`, `channel.<c>`
//   <exchange>.expired               durable; every node consumes it
//
// Claiming consumes the parked queue exclusively (one claimer wins), takes the snapshot, and —
// once the claimer's own bindings are in place — unbinds the parked queue, reads what is left,
// and deletes it. A snapshot nobody claimed expires into the expired queue, where one node
// sends its disconnect webhook and acks it.
import type { Channel, ChannelModel, ConfirmChannel, ConsumeMessage, Message, Options } from 'amqplib';
import type { Logger } from 'pino';
import type { Transfer } from '../../proxy/moves.js';
import { decodeSnapshot, decodeTail, encodeJson, toWireMessage, type MoveTail, type SessionSnapshot, type WireMessage } from '../../proxy/snapshot.js';
import { parseConnectionId } from '../../proxy/target.js';
import type { Clock } from '../../proxy/clock.js';
import type { Result } from '../../proxy/result.js';
import type { ClusterMessage } from './cluster-wire.js';
import { CLAIM_READ_MS, CLAIM_RETRY_MS, PARKED_CHECKS_AT_ONCE, PARK_CHANNELS, PARK_MARGIN_MS } from '../../proxy/limits.js';
import { sleep } from '../../proxy/clock.js';


export interface ParkingDeps {
  readonly log: Logger;
  readonly clock: Clock;
  /** A parked session's grace ran out unclaimed: its disconnect webhook, resolved once sent. */
  expired(snapshot: SessionSnapshot): Promise<void>;
  /** A cluster message (a push or close routed to a parked queue). */
  decode(msg: Message): Result<ClusterMessage>;
  /** Resolves once this process's queue is bound to the keys of the session (registered here). */
  bound(snapshot: SessionSnapshot): Promise<void>;
  /** The keys a session's pushes are routed by. */
  keys(snapshot: SessionSnapshot): string[];
  /** How long a claim waits for a session still being parked (a move's round trip, `cluster.transferTimeoutMs`). */
  readonly completeMs: number;
}

export class Parking {
  readonly #exchange: string;
  readonly #deps: ParkingDeps;
  readonly #expiredQueue: string;
  #model: ChannelModel | null = null;
  /** The channels parks go over, in turn (a broker runs one declaration at a time per channel). */
  #channels: Array<ConfirmChannel | null> = [];
  #turn = 0;

  constructor(exchange: string, deps: ParkingDeps) {
    this.#exchange = exchange;
    this.#deps = deps;
    this.#expiredQueue = `${exchange}.expired`;
  }

  queueOf(id: string): string {
    return `${this.#exchange}.parked.${id}`;
  }

  async setup(model: ChannelModel): Promise<void> {
    this.#channels = Array.from({ length: PARK_CHANNELS }, () => null);
    const ch = await this.#open(model, 0);
    await ch.assertQueue(this.#expiredQueue, { durable: true });
    const consumer = await model.createChannel();
    consumer.on('error', (err: Error) => this.#deps.log.warn({ err: err.message }, 'expired-sessions channel error'));
    await consumer.prefetch(16);
    await consumer.consume(this.#expiredQueue, (msg) => { if (msg) this.#expire(consumer, msg); }, { noAck: false });
    this.#model = model;
  }

  lost(): void {
    this.#model = null;
    this.#channels = [];
  }

  /** A channel parking uses; one the broker closed (a refused declaration) is opened again when next needed. */
  async #open(model: ChannelModel, slot: number): Promise<ConfirmChannel> {
    const ch = await model.createConfirmChannel();
    ch.on('error', (err: Error) => this.#deps.log.warn({ err: err.message }, 'parking channel error'));
    ch.on('close', () => { if (this.#channels[slot] === ch) this.#channels[slot] = null; });
    this.#channels[slot] = ch;
    return ch;
  }

  #channel(model: ChannelModel, slot: number): Promise<ConfirmChannel> {
    const ch = this.#channels[slot];
    return ch ? Promise.resolve(ch) : this.#open(model, slot);
  }

  /**
   * Which of these sessions have a parked queue: a parked copy, whose end (a claim, or its
   * expiry's disconnect) is the parking's to tell. Rejects when the broker connection is down.
   */
  async parkedOf(ids: readonly string[]): Promise<Set<string>> {
    const found = new Set<string>();
    const queue = ids.filter((id) => parseConnectionId(id) !== null);
    const worker = async () => {
      let ch: Channel | null = null;
      for (let id = queue.pop(); id !== undefined; id = queue.pop()) {
        const model = this.#model;
        if (!model) throw new Error('the cluster broker is not connected');
        if (!ch) {
          ch = await model.createChannel();
          ch.on('error', () => {});
        }
        try {
          await ch.checkQueue(this.queueOf(id));
          found.add(id);
        } catch (err) {
          // No such queue: the broker closes the channel. Without a connection nothing is known.
          if (!this.#model) throw err;
          ch = null;
        }
      }
      await ch?.close().catch(() => {});
    };
    await Promise.all(Array.from({ length: PARKED_CHECKS_AT_ONCE }, worker));
    return found;
  }

  /**
   * Parks a session that has departed: once the parked queue receives its pushes, `settle`
   * forgets it here and returns what was held meanwhile. Rejects when the broker did not take it.
   */
  async park(snapshot: SessionSnapshot, graceLeftMs: number, settle: () => MoveTail | null): Promise<void> {
    const model = this.#model;
    if (!model || parseConnectionId(snapshot.id) === null) throw new Error('the cluster broker is not connected');
    const slot = this.#turn++ % PARK_CHANNELS;
    const ch = await this.#channel(model, slot);
    const queue = this.queueOf(snapshot.id);
    const ttl = Math.max(1, Math.floor(graceLeftMs));
    // One left by an earlier park of this session that was never claimed to the end is stale: the session is here.
    await ch.deleteQueue(queue);
    await ch.assertQueue(queue, {
      durable: true,
      arguments: { 'x-expires': ttl + PARK_MARGIN_MS, 'x-dead-letter-exchange': '', 'x-dead-letter-routing-key': this.#expiredQueue },
    });
    // The snapshot first: it is the queue's head, and it alone expires with the grace.
    let tail: MoveTail | null | undefined;
    try {
      // When it was parked (wall clock): a claim adds the time it spent parked to its detached time.
      const parkedAt = String(this.#deps.clock.now());
      await confirmed(ch, queue, encodeJson(snapshot), { type: 'parked', persistent: true, expiration: String(ttl), headers: { 'x-switchboard-parked-at': parkedAt } });
      await Promise.all(this.#deps.keys(snapshot).map((key) => ch.bindQueue(queue, this.#exchange, key)));
      // From here the parked queue gets every push for the session; what reached it here until now follows the snapshot.
      tail = settle();
      if (tail === null) throw new Error('the session ended while it was parked');
    } catch (err) {
      // Still here, or ended here (and told of here): no parked copy may outlive it.
      if (this.#model === model) await this.#channel(model, slot).then((c) => c.deleteQueue(queue)).catch(() => {});
      throw err;
    }
    // Forgotten here now: if the tail is not taken, the parked snapshot still ends with its
    // disconnect when it expires (a claim waits for the tail in vain and starts a new session).
    await confirmed(ch, queue, encodeJson(tail), { type: 'parked-tail', persistent: true });
  }

  /**
   * Claims a parked session: null when none is parked, it expired, or another node claims it.
   * One being parked right now (its holder said so) is waited for, up to `waitMs`.
   */
  async claim(id: string, waitMs = 0): Promise<Transfer | null> {
    const deadline = this.#deps.clock.now() + waitMs;
    for (;;) {
      const claimed = await this.#claimOnce(id);
      if (claimed !== 'absent') return claimed;
      if (this.#deps.clock.now() + CLAIM_RETRY_MS > deadline) return null;
      await sleep(CLAIM_RETRY_MS, this.#deps.clock);
    }
  }

  /** `absent`: no parked queue, or none with a snapshot yet. */
  async #claimOnce(id: string): Promise<Transfer | null | 'absent'> {
    const model = this.#model;
    if (!model || parseConnectionId(id) === null) return null;
    const queue = this.queueOf(id);
    // Its own channel: a missing queue (404) or another claimer (403) closes it.
    const ch = await model.createChannel();
    ch.on('error', () => {});
    let closed = false;
    ch.on('close', () => { closed = true; });
    const release = () => { if (!closed) ch.close().catch(() => {}); };
    try {
      let messageCount: number;
      try {
        ({ messageCount } = await ch.checkQueue(queue));
      } catch {
        return release(), 'absent';
      }
      if (messageCount === 0) return release(), 'absent';
      const got: Message[] = [];
      let arrived = () => {};
      const head = new Promise<Message>((resolve) => { arrived = () => resolve(got[0]); });
      // The consumer stays until the queue is deleted: while it does, nobody else claims it.
      await ch.consume(queue, (m) => {
        if (!m) return;
        got.push(m);
        arrived();
      }, { exclusive: true, noAck: false });
      const msg = await head;
      const decoded = msg.properties.type === 'parked' ? decodeSnapshot(msg.content) : null;
      if (!decoded?.ok || decoded.value.id !== id) {
        // Its snapshot expired (its disconnect is on its way) or is not one: the messages go back.
        release();
        return null;
      }
      const snapshot = withParkedTime(decoded.value, msg.properties.headers?.['x-switchboard-parked-at'], this.#deps.clock.now());
      return { snapshot, finish: () => this.#finish(ch, queue, snapshot, got, (wait) => { arrived = wait; wait(); }).finally(release) };
    } catch {
      release();
      return null;
    }
  }

  async #finish(ch: Channel, queue: string, snapshot: SessionSnapshot, got: Message[], onArrival: (check: () => void) => void): Promise<MoveTail> {
    await this.#deps.bound(snapshot);
    const arrived = (what: string, done: () => boolean, ms = CLAIM_READ_MS) => new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`the parked session was not ${what} in time`)), ms);
      onArrival(() => { if (done()) { clearTimeout(timer); resolve(); } });
    });
    // Its tail is written once the parking node's bindings are in place: a session still being
    // parked is complete from then on.
    await arrived('complete', () => got.some((m) => m.properties.type === 'parked-tail'), this.#deps.completeMs);
    // Unbound: nothing more is routed to it. Everything routed before is in it: delivered to
    // this consumer already, or among the ready ones counted now, which follow.
    await Promise.all(this.#deps.keys(snapshot).map((key) => ch.unbindQueue(queue, this.#exchange, key)));
    const { messageCount } = await ch.checkQueue(queue);
    const all = got.length + messageCount;
    await arrived('read', () => got.length >= all);
    let final: MoveTail = { user: snapshot.user, meta: snapshot.meta, channels: snapshot.channels, pushes: [] };
    const held: WireMessage[] = [];
    const routed: WireMessage[] = [];
    const now = this.#deps.clock.now();
    for (const m of got.slice(1)) {
      if (m.properties.type === 'parked-tail') {
        const tail = decodeTail(m.content);
        if (tail.ok) {
          final = { ...tail.value, pushes: [] };
          held.push(...tail.value.pushes);
        }
        continue;
      }
      const decoded = this.#deps.decode(m);
      if (!decoded.ok) continue;
      if (decoded.value.type === 'close') final = { ...final, close: { code: decoded.value.code, reason: decoded.value.reason } };
      else routed.push(toWireMessage(decoded.value.push, now));
    }
    // What was held while it was parked came first; a push both held and routed here is one push.
    const seen = new Set(held.map((p) => p.pushId).filter((p) => p !== null));
    const pushes = [...held, ...routed.filter((p) => p.pushId === null || !seen.has(p.pushId))];
    ch.ackAll();
    await ch.deleteQueue(queue);
    return { ...final, pushes };
  }

  /** A dead-lettered message: a snapshot whose grace ran out gets its disconnect; anything else is dropped. */
  #expire(ch: Channel, msg: ConsumeMessage): void {
    const snapshot = msg.properties.type === 'parked' ? decodeSnapshot(msg.content) : null;
    // Acks on a channel that closed meanwhile are moot: the broker gives the message to another node.
    const settle = (ack: boolean) => { try { if (ack) ch.ack(msg); else ch.nack(msg, false, true); } catch { /* channel gone */ } };
    if (!snapshot?.ok) return settle(true);
    this.#deps.expired(snapshot.value).then(
      () => settle(true),
      (err: unknown) => {
        this.#deps.log.warn({ err: (err as Error).message, connection: snapshot.value.id }, 'disconnect of an expired parked session failed: tried again');
        settle(false);
      },
    );
  }
}

function confirmed(ch: ConfirmChannel, queue: string, content: Buffer, options: Options.Publish): Promise<void> {
  return new Promise((resolve, reject) => {
    ch.sendToQueue(queue, content, options, (err) => (err ? reject(err instanceof Error ? err : new Error(String(err))) : resolve()));
  });
}

/**
 * The snapshot as it is when claimed: detached for as long as it was before it was parked and
 * while it was (nodes' clocks differ a little: never less than before).
 */
function withParkedTime(snapshot: SessionSnapshot, parkedAt: unknown, now: number): SessionSnapshot {
  const at = Number(typeof parkedAt === 'string' || Buffer.isBuffer(parkedAt) ? parkedAt.toString() : NaN);
  if (!Number.isSafeInteger(at)) return snapshot;
  return { ...snapshot, detachedForMs: snapshot.detachedForMs + Math.max(0, now - at) };
}
