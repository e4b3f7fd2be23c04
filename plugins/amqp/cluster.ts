// Several Switchboard nodes sharing one RabbitMQ (`cluster.amqp.url`): a push on any
// node's API reaches the right sockets on every node.
//
// Each process declares an exclusive, auto-delete queue bound to the topic exchange
// `cluster.amqp.exchange` with exactly the keys it has recipients for:
//   all                     every node (broadcasts, closes of everyone)
//   node.<nodeId>           connections held by this node: connection ids start with
//                           `<nodeId>-`, so a push to one connection goes to its node only
//   proc.<nodeId>-<worker>  this process alone: session moves (plugins/amqp/transfer.ts)
//   user.<escaped name>     bound while a session of that user is held here
//   channel.<escaped name>  bound while a session here is subscribed to it
//   connection.<escaped id> bound while a session that moved here from another node is held
//                           here: a push to one connection goes to `node.<its node>` and, in
//                           the CC header, to `connection.<id>`, so it finds a moved session too
// Names are escaped (base64url, so dots, `*` and `#` cannot act as topic syntax; a hash
// for long names, as routing keys hold at most 255 bytes). Bindings follow the registry:
// bound on the first local session, unbound on the last, all re-declared on reconnect.
//
// A node delivers locally before publishing, so it ignores its own publications; a
// connection push is published only when the connection is another node's.
import { randomBytes } from 'node:crypto';
import type { Channel, ChannelModel, ConfirmChannel, ConsumeMessage, Options } from 'amqplib';
import type { Logger } from 'pino';
import type { Backoff } from '../../proxy/backoff.js';
import { every, sleep } from '../../proxy/clock.js';
import type { Relay } from '../../proxy/directory.js';
import { SwitchboardError } from '../../proxy/errors.js';
import { parseJson } from '../../proxy/json.js';
import { MAX_HELD_QUESTION, MAX_TAKE_HOPS, MISSED_HEARTBEATS } from '../../proxy/limits.js';
import type { Mover, Transfer } from '../../proxy/moves.js';
import type { SessionHost } from '../../proxy/plugin.js';
import type { IndexKind, Leave, RegistryWatcher } from '../../proxy/registry.js';
import type { Session } from '../../proxy/session.js';
import { decodeSnapshot, decodeTail, encodeJson, type MoveTail } from '../../proxy/snapshot.js';
import type { Target } from '../../proxy/target.js';
import { decodeQuestion, encodeQuestion, isHeldAnswer, type Answer, type Question, type Scatter } from '../../proxy/views.js';
import { Bindings } from './bindings.js';
import { bindingKey, decodeMessage, encodeClose, encodePush, headerText, nodeOf, routingKey, sessionKeys } from './cluster-wire.js';
import { BrokerConnection } from './connection.js';
import { Parking } from './parking.js';
import { PresenceQueue } from './presence-queue.js';
import { Roster } from './roster.js';
import { decodePost, decodePosted, isTransferReply, isTransferRequest, processKey, processOf, replyOptions, requestOptions, type TransferReply, type TransferRequest } from './transfer.js';
import type { Post, Posted } from '../../proxy/sse-gateway.js';

export interface ClusterOptions {
  readonly url: string;
  readonly exchange: string;
  readonly nodeId: string;
  /** This process: `<nodeId>-<worker>`. */
  readonly self: string;
  readonly reconnect: Backoff;
  /** Each round trip of a session move. */
  readonly transferTimeoutMs: number;
  /** How often this process says it is alive; a process silent for three of these is gone. */
  readonly heartbeatMs: number;
  /** How long a cluster-wide view waits for the processes that have not answered. */
  readonly queryTimeoutMs: number;
  /** How long a POST passed to the process holding its session waits for that process's answer. */
  readonly postTimeoutMs: number;
}

export type ClusterDeps = Pick<SessionHost, 'log' | 'clock' | 'metrics' | 'names' | 'deliverLocal' | 'closeLocal' | 'departures' | 'answer' | 'roster' | 'post' | 'presence'>;


// ── the cluster link ──────────────────────────────────────────────────────────

type Reply = ConsumeMessage | 'unroutable' | 'timeout';

export class Cluster implements RegistryWatcher {
  readonly relay: Relay;
  readonly mover: Mover;
  readonly scatter: Scatter;
  readonly #options: ClusterOptions;
  readonly #deps: ClusterDeps;
  readonly #log: Logger;
  readonly #broker: BrokerConnection;
  readonly #queue: string;
  /**
   * Binding changes, on channels of their own: the broker runs each one to its end before the
   * next on its channel, and deliveries to a consumer on the same channel would wait behind them
   * (a transfer request or reply behind thousands of bindings in a resume storm).
   */
  readonly #bindings: Bindings;
  /**
   * Set once this process drains: its queue and every binding go with it when it exits, so the
   * keys its sessions leave behind are not unbound one by one (the broker's binding changes are
   * what a resume storm waits on). Pushes still routed here meanwhile find no session and are dropped.
   */
  #leaving = false;
  /** When the current broker connection was set up (a roster read waits a heartbeat after it). */
  #upSince = 0;
  /** Publications, confirmed. */
  #publisher: ConfirmChannel | null = null;
  /** Transfer requests waiting for their reply, by correlation id. */
  readonly #calls = new Map<string, { settle: (answer: Reply) => void; timer: unknown }>();
  #callCounter = 0;
  /** Cluster-wide questions waiting for answers, by correlation id. */
  readonly #gathers = new Map<string, { answers: Answer[]; waiting: Set<string>; done: () => void }>();
  /** Other processes of the cluster, by `<node>-<worker>`, with when each was last heard. */
  readonly #peers = new Map<string, number>();
  #stopBeating: (() => void) | null = null;
  readonly #parking: Parking;
  readonly #roster: Roster;
  /** Processes counted gone whose rosters are not read yet, and those being read. */
  readonly #gone = new Set<string>();
  readonly #claiming = new Set<string>();
  /** Processes last heard draining (so they may have parked sessions): until their rosters are read. */
  readonly #drained = new Set<string>();
  /** Member changes to the cluster's presence owner, when members are tracked. */
  readonly #presence: PresenceQueue | null;
  readonly #presenceCloseMs: number;

  constructor(options: ClusterOptions, deps: ClusterDeps) {
    this.#options = options;
    this.#deps = deps;
    this.#log = deps.log.child({ cluster: options.exchange });
    // Named for `rabbitmqctl list_queues`; the suffix keeps two processes of one node apart.
    this.#queue = `${options.exchange}.${options.nodeId}.${randomBytes(4).toString('hex')}`;
    this.#bindings = new Bindings(this.#queue, options.exchange);
    this.#broker = new BrokerConnection({
      url: options.url,
      name: `switchboard cluster ${options.nodeId}`,
      reconnect: options.reconnect,
      log: this.#log,
      clock: deps.clock,
      setup: (model) => this.#setup(model),
      lost: () => {
        this.#bindings.lost();
        this.#publisher = null;
        this.#parking.lost();
        this.#roster.lost();
        this.#presence?.lost();
        // Replies to this connection's queue will not come: the asks end now.
        for (const [id, call] of this.#calls) {
          this.#calls.delete(id);
          deps.clock.clearTimeout(call.timer);
          call.settle('timeout');
        }
      },
    });
    const prefix = `${options.nodeId}-`;
    this.relay = {
      // An id without a node part is looked up here (and is not found).
      isLocal: (connection) => connection.startsWith(prefix) || nodeOf(connection) === null,
      publish: (target, push) => this.#publish(target, encodePush(options.nodeId, target, push, deps.clock.now())),
      close: (target, code, reason) => this.#publish(target, encodeClose(options.nodeId, target, code, reason)),
    };
    this.#parking = new Parking(options.exchange, {
      log: this.#log,
      clock: deps.clock,
      expired: (snapshot) => deps.departures.expired(snapshot),
      decode: (msg) => decodeMessage(msg.content, msg.properties.type, msg.properties.headers ?? {}, deps.clock.now()),
      bound: (snapshot) => this.#bindings.settled(sessionKeys(snapshot)),
      completeMs: options.transferTimeoutMs,
      keys: sessionKeys,
    });
    this.#roster = new Roster(options.exchange, options.self, {
      log: this.#log,
      held: () => deps.roster(),
      lost: (entry) => deps.departures.lost(entry),
      alive: (ids, whose) => this.#alive(ids, whose),
      written: (changes, confirmed) => { if (changes > 0) deps.metrics.rosterChangesTotal.inc({ result: confirmed ? 'confirmed' : 'failed' }, changes); },
    });
    this.mover = {
      take: async (holder, id) => (holder === null ? null : await this.#take(holder, id)) ?? this.#parking.claim(id),
      park: (snapshot, graceLeftMs, settle) => this.#parking.park(snapshot, graceLeftMs, settle),
    };
    this.scatter = { ask: (question) => this.#gather(question) };
    const presence = deps.presence;
    this.#presenceCloseMs = presence?.closeBudgetMs ?? 0;
    this.#presence = presence === null ? null : new PresenceQueue({
      log: this.#log,
      clock: deps.clock,
      exchange: options.exchange,
      self: options.self,
      heartbeatMs: options.heartbeatMs,
      owner: presence.owner,
      counts: () => presence.counts(),
      peers: () => this.peers(),
      acquainted: () => this.#upSince + options.heartbeatMs + options.queryTimeoutMs,
      resync: (to) => this.#resync(to),
      // A process that said bye sends its last member changes within its drain's presence budget.
      leaveMs: (presence?.closeBudgetMs ?? 0) + MISSED_HEARTBEATS * options.heartbeatMs,
    });
  }

  /** Asks a process (null: every one) to send its whole presence count again. */
  #resync(to: string | null): void {
    try {
      this.#publisher?.publish(this.#options.exchange, to === null ? 'all' : processKey(to), Buffer.alloc(0), {
        type: 'presence-resync', persistent: false, headers: { 'x-switchboard-origin': this.#options.nodeId, 'x-switchboard-from': this.#options.self },
      });
    } catch (err) {
      this.#log.debug({ err: (err as Error).message }, 'presence resync not sent');
    }
  }

  /**
   * Of these sessions of a dead process, those alive elsewhere: held by a live process (asked of
   * every one, this one too) or parked. Every live process must answer: one that does not is asked
   * again a heartbeat later, until it answers or is counted gone. A process just connected first
   * waits a heartbeat, to have heard every live one. `whose`: the dead process (this one's own
   * name for a predecessor's roster); its sessions may be parked only if it was draining.
   */
  async #alive(ids: readonly string[], whose: string): Promise<Set<string>> {
    const { clock } = this.#deps;
    const { heartbeatMs } = this.#options;
    const acquainted = this.#upSince + heartbeatMs + this.#options.queryTimeoutMs;
    if (clock.now() < acquainted) await sleep(acquainted - clock.now(), clock);
    const alive = new Set<string>();
    for (let i = 0; i < ids.length; i += MAX_HELD_QUESTION) {
      const question: Question = { op: 'held', connections: ids.slice(i, i + MAX_HELD_QUESTION) };
      for (let attempt = 0; ; attempt++) {
        const { answers, silent } = await this.#gather(question);
        for (const a of [{ process: this.#options.self, value: this.#deps.answer(question) }, ...answers]) {
          if (isHeldAnswer(a.value)) for (const id of a.value) alive.add(id);
          else this.#log.warn({ process: a.process }, 'malformed answer to which sessions it holds: counted as none');
        }
        if (silent.length === 0 || attempt > MISSED_HEARTBEATS) break;
        await sleep(heartbeatMs, clock);
      }
    }
    // Only a draining process parks: the others' sessions need no lookup (each one that is not
    // parked costs the broker a channel).
    if (whose === this.#options.self || this.#drained.has(whose)) {
      for (const id of await this.#parking.parkedOf(ids.filter((id) => !alive.has(id)))) alive.add(id);
    }
    return alive;
  }

  /** The other processes heard from within the last MISSED_HEARTBEATS heartbeats. */
  peers(): string[] {
    const since = this.#deps.clock.now() - MISSED_HEARTBEATS * this.#options.heartbeatMs;
    return [...this.#peers].filter(([, seen]) => seen >= since).map(([p]) => p);
  }

  get queue(): string {
    return this.#queue;
  }

  async #setup(model: ChannelModel): Promise<void> {
    const { exchange, nodeId } = this.#options;
    this.#upSince = this.#deps.clock.now();
    const watch = (c: Channel) => {
      c.on('error', (err: Error) => this.#log.warn({ err: err.message }, 'cluster channel error'));
      c.on('close', () => this.#broker.fail(model, new Error('cluster channel closed')));
    };
    const ch = await model.createChannel();
    const pub = await model.createConfirmChannel();
    watch(ch);
    watch(pub);
    // A mandatory transfer request that no queue took: the process it names is gone.
    pub.on('return', (msg: ConsumeMessage) => this.#answer(msg.properties.correlationId, 'unroutable'));
    await ch.assertExchange(exchange, 'topic', { durable: true });
    await ch.assertQueue(this.#queue, { exclusive: true, autoDelete: true, durable: false });
    await ch.consume(this.#queue, (msg) => {
      if (msg === null) this.#broker.fail(model, new Error('cluster consumer cancelled by the broker'));
      else this.#receive(msg);
    }, { noAck: true, exclusive: true });
    // From here on, registry changes bind and unbind, each key on its channel after these
    // bindings of the current state: a channel runs its operations in order.
    await this.#bindings.open(model, watch);
    this.#publisher = pub;
    const keys = ['all', `node.${nodeId}`, processKey(this.#options.self)];
    for (const kind of ['user', 'channel', 'connection'] as const) {
      for (const name of this.#deps.names(kind)) keys.push(bindingKey(kind, name));
    }
    await Promise.all(keys.map((key) => this.#bindings.set(key, true)));
    await this.#parking.setup(model);
    await this.#roster.setup(model);
    await this.#presence?.setup(model, watch, (err) => this.#broker.fail(model, err));
    this.#log.info({ queue: this.#queue, bindings: keys.length }, 'cluster queue bound');
    this.#beat('hello');
  }

  async start(): Promise<void> {
    await this.#broker.start();
    const { clock } = this.#deps;
    let lastTick = clock.now();
    this.#stopBeating = every(clock, this.#options.heartbeatMs, () => {
      const now = clock.now();
      // A tick that ran late (this process stalled): the others' hellos are still unread.
      const late = now - lastTick > 2 * this.#options.heartbeatMs;
      lastTick = now;
      this.#beat('hello');
      this.#sweep(late);
    });
  }

  /** Tells every process this one is alive (`hello`) or leaving (`bye`). */
  #beat(type: 'hello' | 'bye'): void {
    // Not `up` yet during setup: the first hello goes out as soon as the channels are open.
    const pub = this.#publisher;
    if (!pub) return;
    try {
      const headers = { 'x-switchboard-origin': this.#options.nodeId, 'x-switchboard-from': this.#options.self, ...(this.#leaving ? { 'x-switchboard-draining': 'true' } : {}) };
      pub.publish(this.#options.exchange, 'all', Buffer.alloc(0), { type, persistent: false, headers });
    } catch (err) {
      this.#log.debug({ err: (err as Error).message }, 'cluster heartbeat not sent');
    }
  }

  /** `late`: this tick ran late, so silence now may be this process's own: presence counts no one gone on it. */
  #sweep(late = false): void {
    const since = this.#deps.clock.now() - MISSED_HEARTBEATS * this.#options.heartbeatMs;
    for (const [process, seen] of this.#peers) {
      if (seen >= since) continue;
      this.#peers.delete(process);
      this.#log.warn({ process, silentMs: this.#deps.clock.now() - seen }, 'cluster process went silent: counted gone');
      this.#gone.add(process);
      this.#presence?.gone(process);
    }
    if (!late) this.#presence?.sweep();
    this.#claimGone();
  }

  /** The rosters of gone processes: their sessions died with them (unless one still holds its own: alive, only slow). */
  #claimGone(): void {
    for (const process of this.#gone) {
      if (this.#claiming.has(process)) continue;
      this.#claiming.add(process);
      void this.#roster.claim(process).then((result) => {
        this.#claiming.delete(process);
        // Failed (the broker went): tried again with the next heartbeat.
        if (result !== 'failed') {
          this.#gone.delete(process);
          this.#drained.delete(process);
        }
      });
    }
  }

  ready(): boolean {
    return this.#broker.up;
  }

  /** Closing the connection deletes the exclusive queue and its bindings. */
  async close(): Promise<void> {
    // The roster says which sessions ended (or were parked) here, or a successor would tell the app of them again.
    await this.#roster.close();
    this.#stopBeating?.();
    // The others stop counting this process at once, not three heartbeats later.
    this.#beat('bye');
    // Then the sessions' last member changes, and an owner's last events (within its budget).
    await this.#presence?.close(this.#presenceCloseMs);
    return this.#broker.close();
  }

  /**
   * The process is draining: it will not unbind what its sessions leave (its queue goes when it
   * exits), and the others hear at once that it is (and so may park sessions).
   */
  leaving(): void {
    this.#leaving = true;
    this.#beat('hello');
  }

  destroy(): void {
    this.#presence?.destroy();
    this.#stopBeating?.();
    this.#broker.destroy();
  }

  // ── registry watcher ────────────────────────────────────────────────────────

  first(kind: IndexKind, name: string): void {
    this.#bind(kind, name, true);
  }

  last(kind: IndexKind, name: string): void {
    this.#bind(kind, name, false);
  }

  added(session: Session): void {
    this.#roster.added(session.rosterEntry());
  }

  changed(session: Session): void {
    this.#roster.changed(session.rosterEntry());
  }

  removed(session: Session): void {
    this.#roster.removed(session.id);
  }

  member(channel: string, user: string | null, delta: 1 | -1, why: Leave): void {
    this.#presence?.change(channel, user, delta, why);
  }

  #bind(kind: IndexKind, name: string, bound: boolean): void {
    // While disconnected, nothing to do: the next connection binds the registry as it is then.
    if (!this.#bindings.up || (this.#leaving && !bound)) return;
    const key = bindingKey(kind, name);
    this.#bindings.set(key, bound).catch((err: unknown) =>
      this.#log.debug({ err: (err as Error).message, key, bound }, 'cluster binding change failed (reconnect re-declares)'));
  }

  // ── publishing and receiving ────────────────────────────────────────────────

  #publish(target: Target, message: { content: Buffer; options: Options.Publish }): Promise<void> {
    const pub = this.#publisher;
    if (!pub || !this.#broker.up) {
      return Promise.reject(new SwitchboardError('cluster_unavailable'));
    }
    return new Promise<void>((resolve, reject) => {
      const done = (err: unknown) => {
        if (!err) return resolve();
        reject(new SwitchboardError('cluster_unavailable', 'the cluster broker did not take the message: other nodes were not reached', { cause: err }));
      };
      try {
        pub.publish(this.#options.exchange, routingKey(target), message.content, message.options, done);
      } catch (err) {
        done(err);
      }
    });
  }

  #receive(msg: ConsumeMessage): void {
    const type: unknown = msg.properties.type;
    if (isTransferReply(type)) return this.#answer(msg.properties.correlationId, msg);
    if (isTransferRequest(type)) return this.#serve(type, msg);
    if (type === 'hello' || type === 'bye' || type === 'query' || type === 'answer') return this.#view(type, msg);
    if (type === 'presence-resync') {
      if (processOf(msg.properties.headers?.['x-switchboard-from']) !== this.#options.self) this.#presence?.full();
      return;
    }
    const decoded = decodeMessage(msg.content, msg.properties.type, msg.properties.headers ?? {}, this.#deps.clock.now());
    if (!decoded.ok) {
      this.#log.warn({ err: decoded.error, routingKey: msg.fields.routingKey }, 'malformed cluster message ignored');
      return;
    }
    const message = decoded.value;
    // Our own publications were delivered here before they were published.
    if (message.origin === this.#options.nodeId && message.target.kind !== 'connection') return;
    if (message.type === 'push') this.#deps.deliverLocal(message.target, message.push);
    else this.#deps.closeLocal(message.target, message.code, message.reason);
  }

  // ── session moves ───────────────────────────────────────────────────────────

  #answer(correlationId: unknown, answer: Reply): void {
    const call = typeof correlationId === 'string' ? this.#calls.get(correlationId) : undefined;
    // A late reply (its ask timed out) is dropped: the asker started anew, the holder takes the session back.
    if (!call) return;
    this.#calls.delete(correlationId as string);
    this.#deps.clock.clearTimeout(call.timer);
    call.settle(answer);
  }

  /** One transfer request to one process, and its reply. */
  #ask(type: TransferRequest, holder: string, id: string, content = Buffer.alloc(0), timeoutMs = this.#options.transferTimeoutMs): Promise<Reply> {
    const pub = this.#publisher;
    if (!pub || !this.#broker.up) return Promise.resolve('timeout');
    const correlationId = `${this.#options.self}.${(++this.#callCounter).toString(36)}`;
    const { exchange, nodeId, self } = this.#options;
    return new Promise<Reply>((settle) => {
      const timer = this.#deps.clock.setTimeout(() => this.#answer(correlationId, 'timeout'), timeoutMs);
      this.#calls.set(correlationId, { settle, timer });
      try {
        pub.publish(exchange, processKey(holder), content, requestOptions(type, id, self, nodeId, this.#queue, correlationId));
      } catch {
        this.#answer(correlationId, 'timeout');
      }
    });
  }

  async #take(holder: string, id: string): Promise<Transfer | null> {
    for (let hop = 0; hop < MAX_TAKE_HOPS; hop++) {
      const answer = await this.#ask('take', holder, id);
      if (answer === 'timeout' || answer === 'unroutable') return null;
      const type: unknown = answer.properties.type;
      if (type === 'moved') {
        const next = movedOn(answer, holder);
        if (next === null) return null;
        holder = next;
        continue;
      }
      // Its parked copy is being written: claimed from there once it is (within a move's time).
      if (type === 'parking') return this.#parking.claim(id, this.#options.transferTimeoutMs);
      if (type !== 'snapshot') return null;
      const snapshot = decodeSnapshot(answer.content);
      if (!snapshot.ok) {
        this.#log.warn({ err: snapshot.error, holder }, 'malformed session snapshot ignored');
        return null;
      }
      const from = holder;
      const keys = sessionKeys(snapshot.value);
      return { snapshot: snapshot.value, finish: () => this.#release(from, id, keys) };
    }
    return null;
  }

  /**
   * A POST that landed here for a session of `holder`: answered there (following where the session
   * moved); null when no process holds it. Rejects when the holder does not answer in time.
   */
  async forward(holder: string, id: string, post: Post): Promise<Posted | null> {
    const content = Buffer.from(JSON.stringify(post));
    for (let hop = 0; hop < MAX_TAKE_HOPS; hop++) {
      if (holder === this.#options.self) return null;
      const answer = await this.#ask('post', holder, id, content, this.#options.postTimeoutMs);
      if (answer === 'unroutable') return null;
      if (answer === 'timeout') throw new Error(`the holder ${holder} did not answer the POST`);
      const type: unknown = answer.properties.type;
      if (type === 'moved') {
        const next = movedOn(answer, holder);
        if (next === null) return null;
        holder = next;
        continue;
      }
      if (type !== 'posted') return null;
      const posted = decodePosted(answer.content);
      if (!posted.ok) throw new Error(`malformed answer to a POST: ${posted.error}`);
      return posted.value;
    }
    return null;
  }

  /** After the session is registered here: once its bindings are in place, asks the old holder to let go. */
  async #release(holder: string, id: string, keys: readonly string[]): Promise<MoveTail | null> {
    await this.#bindings.settled(keys);
    const answer = await this.#ask('release', holder, id);
    if (answer === 'timeout' || answer === 'unroutable') throw new Error(`the old holder ${holder} did not answer the release`);
    if (answer.properties.type === 'none') return null;
    if (answer.properties.type !== 'tail') throw new Error(`unexpected answer ${String(answer.properties.type)} to a release`);
    const tail = decodeTail(answer.content);
    if (!tail.ok) throw new Error(`malformed move tail: ${tail.error}`);
    return tail.value;
  }

  // ── cluster-wide views (proxy/views.ts) ────────────────────────────────────

  #view(type: 'hello' | 'bye' | 'query' | 'answer', msg: ConsumeMessage): void {
    const from = processOf(msg.properties.headers?.['x-switchboard-from']);
    if (from === null || from === this.#options.self) return;
    if (type === 'hello') {
      if (!this.#peers.has(from)) this.#log.info({ process: from }, 'cluster process joined');
      // Counted gone by someone while alive (a stall): the owner asks for its count again.
      this.#presence?.heard(from);
      this.#gone.delete(from);
      this.#peers.set(from, this.#deps.clock.now());
      if (msg.properties.headers?.['x-switchboard-draining'] === 'true') this.#drained.add(from);
      else this.#drained.delete(from);
    } else if (type === 'bye') {
      this.#peers.delete(from);
      this.#presence?.leaving(from);
      this.#log.info({ process: from }, 'cluster process left');
    } else if (type === 'query') {
      this.#peers.set(from, Math.max(this.#peers.get(from) ?? 0, this.#deps.clock.now()));
      this.#reply(msg, from);
    } else {
      // An answer is as good as a heartbeat.
      this.#peers.set(from, this.#deps.clock.now());
      this.#collect(msg, from);
    }
  }

  #reply(msg: ConsumeMessage, from: string): void {
    const { replyTo, correlationId } = msg.properties;
    const question = decodeQuestion(msg.content);
    const pub = this.#publisher;
    if (typeof replyTo !== 'string' || typeof correlationId !== 'string' || !question.ok || !pub) {
      this.#log.warn({ from, err: question.ok ? 'no reply address' : question.error }, 'malformed cluster question ignored');
      return;
    }
    let value: unknown;
    try {
      value = this.#deps.answer(question.value);
    } catch (err) {
      this.#log.error({ err }, 'answering a cluster question failed');
      return;
    }
    try {
      pub.publish('', replyTo, Buffer.from(JSON.stringify(value ?? null)), {
        type: 'answer', correlationId, persistent: false, contentType: 'application/json', headers: { 'x-switchboard-from': this.#options.self },
      });
    } catch (err) {
      this.#log.warn({ err: (err as Error).message }, 'cluster answer not sent');
    }
  }

  #collect(msg: ConsumeMessage, from: string): void {
    const id = msg.properties.correlationId;
    const gather = typeof id === 'string' ? this.#gathers.get(id) : undefined;
    if (!gather) return;
    const value = parseJson(msg.content.toString('utf8'));
    gather.answers.push({ process: from, value: value.ok ? value.value : undefined });
    gather.waiting.delete(from);
    if (gather.waiting.size === 0) gather.done();
  }

  /** Asks every other live process; settles when all answered or the deadline passed. */
  #gather(question: Question): Promise<{ answers: Answer[]; silent: string[] }> {
    const pub = this.#publisher;
    const peers = this.peers();
    if (!pub || !this.#broker.up) return Promise.resolve({ answers: [], silent: peers });
    if (peers.length === 0) return Promise.resolve({ answers: [], silent: [] });
    const correlationId = `${this.#options.self}.q${(++this.#callCounter).toString(36)}`;
    return new Promise((resolve) => {
      const gather = {
        answers: [] as Answer[],
        waiting: new Set(peers),
        done: () => {
          this.#deps.clock.clearTimeout(timer);
          this.#gathers.delete(correlationId);
          resolve({ answers: gather.answers, silent: [...gather.waiting] });
        },
      };
      const timer = this.#deps.clock.setTimeout(() => gather.done(), this.#options.queryTimeoutMs);
      this.#gathers.set(correlationId, gather);
      try {
        pub.publish(this.#options.exchange, 'all', encodeQuestion(question), {
          type: 'query', replyTo: this.#queue, correlationId, persistent: false, contentType: 'application/json',
          headers: { 'x-switchboard-origin': this.#options.nodeId, 'x-switchboard-from': this.#options.self },
        });
      } catch {
        gather.done();
      }
    });
  }

  /** A request from a process taking one of our sessions over. */
  #serve(type: TransferRequest, msg: ConsumeMessage): void {
    const { replyTo, correlationId, headers } = msg.properties;
    const id = headerText(headers?.['x-switchboard-connection']);
    const from = processOf(headers?.['x-switchboard-from']);
    const pub = this.#publisher;
    // A process does not take its own sessions: such a request is forged or broken.
    if (typeof replyTo !== 'string' || typeof correlationId !== 'string' || id === undefined || from === null || from === this.#options.self || !pub) {
      this.#log.warn({ type }, 'malformed session transfer request ignored');
      return;
    }
    if (type === 'post') return void this.#servePost(id, msg, replyTo, correlationId);
    const departures = this.#deps.departures;
    let reply: { type: TransferReply; content?: Buffer; holder?: string };
    if (type === 'take') {
      const snapshot = departures.depart(id, from);
      const movedTo = snapshot === null ? departures.movedTo(id) : null;
      reply = snapshot !== null ? { type: 'snapshot', content: encodeJson(snapshot) }
        : movedTo !== null ? { type: 'moved', holder: movedTo }
          : departures.parking(id) ? { type: 'parking' } : { type: 'none' };
    } else {
      const tail = departures.release(id);
      reply = tail === null ? { type: 'none' } : { type: 'tail', content: encodeJson(tail) };
    }
    try {
      // To the asker's own queue, by name, through the default exchange.
      pub.publish('', replyTo, reply.content ?? Buffer.alloc(0), replyOptions(reply.type, correlationId, reply.holder));
    } catch (err) {
      // The asker times out; a departing session comes back here when its move does not complete.
      this.#log.warn({ err: (err as Error).message, connection: id }, 'session transfer reply not sent');
    }
  }

  /** A POST another process took for one of our sessions: its frames go in here, its answer back. */
  async #servePost(id: string, msg: ConsumeMessage, replyTo: string, correlationId: string): Promise<void> {
    const post = decodePost(msg.content);
    let reply: { type: TransferReply; content?: Buffer; holder?: string };
    if (!post.ok) {
      this.#log.warn({ err: post.error }, 'malformed forwarded POST ignored');
      reply = { type: 'none' };
    } else {
      let answer: Posted | { movedTo: string } | null;
      try {
        answer = await this.#deps.post(id, post.value);
      } catch (err) {
        this.#log.warn({ err: (err as Error).message, connection: id }, 'a forwarded POST failed here');
        answer = null;
      }
      reply = answer === null ? { type: 'none' }
        : 'movedTo' in answer ? { type: 'moved', holder: answer.movedTo }
          : { type: 'posted', content: Buffer.from(JSON.stringify(answer)) };
    }
    try {
      this.#publisher?.publish('', replyTo, reply.content ?? Buffer.alloc(0), replyOptions(reply.type, correlationId, reply.holder));
    } catch (err) {
      // The asker times out and answers its client 409: the client sends again after its next welcome.
      this.#log.warn({ err: (err as Error).message, connection: id }, 'forwarded POST answer not sent');
    }
  }
}

/** The process a `moved` reply names, when it is another one than the one asked; else null. */
function movedOn(answer: ConsumeMessage, asked: string): string | null {
  const next = processOf(answer.properties.headers?.['x-switchboard-holder']);
  return next === null || next === asked ? null : next;
}
