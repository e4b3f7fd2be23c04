// One client session, whatever link carries it (proxy/link.ts): its state, user, meta and
// channels, and the parts it creates on first need: Outbound (to the client), Inbound (to the
// app) and, in reliable mode, its protocol (proxy/reliable.ts). Named states, changed only
// through `#enter`, which checks them:
//
//   open ──socket lost (reliable)──▶ detached ──resume──▶ open
//     │                                 │ grace over
//     └──close (app, overflow, drain)──▶ closing ──▶ closed ◀┘
//
// A reliable session may move to another process (proxy/moves.ts): `depart` takes it from
// open or detached to `moving`, where pushes are held aside; `forget` then ends it here without
// a disconnect (it lives on there), or `stay` takes it back to detached when the move failed.
// The new holder builds it with `Session.restore` and lets it `arrive`.
import type { Logger } from 'pino';
import type { Config } from './config.js';
import type { Clock } from './clock.js';
import type { Metrics } from './metrics.js';
import type { Heartbeat, Beating } from './heartbeat.js';
import type { TimerWheel } from './timer-wheel.js';
import type { TokenCodec } from './token.js';
import { CloseCode } from './errors.js';
import type { ClientLink, LinkListener, PartHost } from './link.js';
import { ReliableProtocol } from './reliable.js';
import { Push } from './push.js';
import { fromWireMessage, toWireMessage, SNAPSHOT_VERSION, type MoveTail, type RosterEntry, type SessionSnapshot } from './snapshot.js';
import { Outbound, type SendResult } from './outbound.js';
import { Inbound } from './inbound.js';
import type { DeliveryOutcome, Effects, InboundMessage, SessionView, Upstream } from './upstream.js';
import type { Mode, Payload } from './payload.js';

export type SessionState = 'open' | 'detached' | 'moving' | 'closing' | 'closed';
export type { SendResult };

export const RELIABLE_PROTOCOL = 'switchboard.v1';

/** What every session shares with the sidecar around it. */
export interface SessionContext {
  readonly config: Readonly<Config>;
  readonly clock: Clock;
  readonly log: Logger;
  readonly metrics: Metrics;
  readonly upstream: Upstream;
  readonly heartbeat: Heartbeat;
  readonly grace: TimerWheel<Session>;
  readonly tokens: TokenCodec;
  /** The session's user changed from `previous`: index it. */
  userChanged(session: Session, previous: string | null): void;
  /** The app set meta on the session (the cluster roster keeps it). */
  metaChanged(session: Session): void;
  /** The session joined or left a channel: index it. */
  channelChanged(session: Session, channel: string, joined: boolean): void;
  /** The session ended for good, or lives on in another process (`moved`, `parked`): forget it. */
  ended(session: Session, why?: 'ended' | 'moved' | 'parked'): void;
  /** Work the drain must wait for (disconnect webhooks). */
  track(work: Promise<unknown>): void;
}

export interface Handshake {
  readonly id: string;
  readonly mode: Mode;
  readonly path: string;
  readonly url: string;
  readonly query: Record<string, string>;
  readonly remoteAddress: string;
  readonly subprotocol: string | null;
  readonly headers: Record<string, string>;
}

const NO_META: Readonly<Record<string, string>> = Object.freeze({});
const NORMAL_CLOSE = Object.freeze({ code: CloseCode.normal, reason: '', clientClosed: false });

/** The transitions a session may make; anything else is a bug, refused loudly. */
const LEGAL: Readonly<Record<SessionState, readonly SessionState[]>> = {
  // open → open: a resume takes over an attached session.
  open: ['open', 'detached', 'moving', 'closing', 'closed'],
  detached: ['open', 'moving', 'closed'],
  moving: ['detached', 'closed'],
  closing: ['closed'],
  closed: [],
};

export class Session implements SessionView, Beating, LinkListener {
  readonly id: string;
  readonly mode: Mode;
  readonly path: string;
  readonly url: string;
  readonly query: Record<string, string>;
  readonly remoteAddress: string;
  readonly subprotocol: string | null;
  readonly headers: Record<string, string>;
  readonly connectedAt: number;
  lastSeen = 0;
  awaitingPong = false;

  #state: SessionState = 'open';
  #user: string | null = null;
  /** Replaced, never mutated (upstreams cache by identity); shared empty until the app sets some. */
  #meta: Readonly<Record<string, string>> = NO_META;
  #channels: Set<string> | null = null;
  readonly #ctx: SessionContext;
  #link: ClientLink | null = null;
  /** To the client and from it; each created on first need, so an idle session holds neither. */
  #out: Outbound | null = null;
  #in: Inbound | null = null;
  /** The reliable protocol's state (frame errors): created on the first frame or answer. */
  #protocol: ReliableProtocol | null = null;
  #host: PartHost | null = null;
  #detachedAt = 0;
  /** How the last socket closed; unset until one did (idle sessions carry no object for it). */
  #lastClose: { code: number; reason: string; clientClosed: boolean } = NORMAL_CLOSE;
  #log: Logger | null = null;
  /** While moving (out or in): pushes held aside, in arrival order; null otherwise. */
  #holding: Push[] | null = null;
  /** Client messages taken before the session moved here. */
  #takenBefore = 0;

  constructor(ctx: SessionContext, hs: Handshake, now: number) {
    this.#ctx = ctx;
    this.id = hs.id;
    this.mode = hs.mode;
    this.path = hs.path;
    this.url = hs.url;
    this.query = hs.query;
    this.remoteAddress = hs.remoteAddress;
    this.subprotocol = hs.subprotocol;
    this.headers = hs.headers;
    this.connectedAt = now;
  }

  /** Created on first use: idle sessions that never log pay nothing for a child logger. */
  get log(): Logger {
    return (this.#log ??= this.#ctx.log.child({ connection: this.id }));
  }

  get state(): SessionState {
    return this.#state;
  }

  get user(): string | null {
    return this.#user;
  }

  get meta(): Readonly<Record<string, string>> {
    return this.#meta;
  }

  get channels(): ReadonlySet<string> | null {
    return this.#channels;
  }

  get attached(): boolean {
    return this.#link !== null;
  }

  setUser(user: string): void {
    if (this.#user === user || this.#state === 'closed') return;
    const previous = this.#user;
    this.#user = user;
    this.#ctx.userChanged(this, previous);
  }

  join(channel: string): void {
    if (this.#state === 'closed') return;
    const channels = (this.#channels ??= new Set());
    if (channels.has(channel)) return;
    channels.add(channel);
    this.#ctx.channelChanged(this, channel, true);
  }

  /** False when the session was not in the channel. */
  leave(channel: string): boolean {
    if (!this.#channels?.delete(channel)) return false;
    if (this.#channels.size === 0) this.#channels = null;
    this.#ctx.channelChanged(this, channel, false);
    return true;
  }

  /** The transport of the link it is open on; null while it has none. */
  get transport(): string | null {
    return this.#link?.transport ?? null;
  }

  /** The highest seq written to its current (or last) link. */
  get lastWritten(): number {
    return this.#out?.lastWritten ?? 0;
  }

  get outboxMessages(): number {
    return this.#out?.messages ?? 0;
  }

  get outboxBytes(): number {
    return this.#out?.bytes ?? 0;
  }

  /** What its parts read of the session: one object, made when the first part is. */
  #partHost(): PartHost {
    if (this.#host) return this.#host;
    const ctx = this.#ctx;
    const session = this;
    return (this.#host = {
      config: ctx.config,
      clock: ctx.clock,
      metrics: ctx.metrics,
      mode: this.mode,
      get log() { return session.log; },
      link: () => (this.#state === 'open' ? this.#link : null),
    });
  }

  #outbound(): Outbound {
    return (this.#out ??= new Outbound(this.#partHost()));
  }

  #reliable(): ReliableProtocol {
    const ctx = this.#ctx;
    return (this.#protocol ??= new ReliableProtocol(this.#partHost(), {
      receive: (payload, id, bytes) => this.#receive(payload, id, bytes),
      ack: (seq) => this.#out?.ack(seq),
      mayJoin: (channel) => ctx.upstream.subscribe(this, channel),
      join: (channel) => this.join(channel),
      leave: (channel) => this.leave(channel),
      close: (code, reason) => this.close(code, reason),
    }));
  }

  #inbound(): Inbound {
    if (this.#in) return this.#in;
    const ctx = this.#ctx;
    const session = this;
    return (this.#in = new Inbound({
      session: this,
      upstream: ctx.upstream,
      maxPending: ctx.config.limits.maxPendingMessages,
      get log() { return session.log; },
      pause: () => this.#link?.pause(),
      resume: () => this.#link?.resume(),
      settle: (batch, outcome) => this.#settle(batch, outcome),
    }, this.#takenBefore));
  }

  // ── socket lifecycle ──────────────────────────────────────────────────────────

  /** Binds a link: a new session, or a resume (`lastSeq` given) of a detached or open one. */
  attach(link: ClientLink, resume?: { lastSeq: number }): void {
    const ctx = this.#ctx;
    const previous = this.#link;
    if (previous) {
      // Takeover: the old link no longer speaks for this session.
      previous.listen(null);
      previous.close(CloseCode.takenOver, 'session resumed elsewhere');
      ctx.metrics.connections.dec();
    }
    ctx.grace.cancel(this);
    this.#link = link;
    this.#enter('open');
    ctx.metrics.connections.inc();
    link.listen(this);
    ctx.heartbeat.track(this);

    if (this.mode === 'reliable') {
      const now = ctx.clock.now();
      link.send(link.wire.frame({
        type: 'welcome',
        session: this.id,
        token: ctx.tokens.issue(this.id, now),
        resumed: resume !== undefined,
        heartbeatMs: ctx.config.heartbeat.intervalMs,
        graceMs: ctx.config.session.graceMs,
      }));
      if (resume) {
        const { lastSeq, replayed, lost } = this.#outbound().rewind(resume.lastSeq);
        const gapMs = this.#detachedAt ? now - this.#detachedAt : 0;
        this.#detachedAt = 0;
        this.log.info({ lastSeq, replayed, lost, gapMs }, 'session resumed');
        ctx.track(ctx.upstream.resume(this, { gapMs, replayed, lost }));
      }
    }
    this.#out?.flush();
  }

  // ── link listener ─────────────────────────────────────────────────────────────

  onFrame(data: Buffer, isBinary: boolean): void {
    try {
      this.#onFrame(data, isBinary);
    } catch (err) {
      // A fault of ours on one frame ends that connection, never the process.
      this.log.error({ err }, 'frame handling failed: closing 1011');
      this.close(CloseCode.internal, 'internal error');
    }
  }

  onPong(): void {
    this.lastSeen = this.#ctx.clock.now();
  }

  onRefused(link: ClientLink, code: number, reason: string): void {
    // The transport closes the link itself; keep the code it sent, not the 1006 it reports next.
    if (link !== this.#link || this.#state !== 'open') return;
    this.#lastClose = { code, reason, clientClosed: false };
    this.#enter('closing');
    this.log.debug({ code, reason }, 'client frame refused');
  }

  onClosed(link: ClientLink, code: number, reason: string): void {
    if (link !== this.#link) return;
    const ctx = this.#ctx;
    this.#link = null;
    this.#out?.unlinked();
    ctx.metrics.connections.dec();
    ctx.metrics.disconnectionsTotal.inc({ code: String(this.state === 'closing' ? this.#lastClose.code : code) });
    ctx.heartbeat.untrack(this);
    // 1006: the socket died without a close frame (network loss, terminate()).
    const byClient = this.state === 'open' && code !== 1006;
    if (this.state !== 'closing') this.#lastClose = { code, reason, clientClosed: byClient };
    // A reliable session survives a lost socket; a deliberate close by either side ends it.
    if (this.state === 'open' && this.mode === 'reliable' && !(byClient && code === CloseCode.normal)) {
      this.#detachedAt = ctx.clock.now();
      this.#enter('detached');
      ctx.grace.schedule(this, this.#detachedAt + ctx.config.session.graceMs);
      this.log.debug({ code }, 'session detached');
      return;
    }
    void this.#end();
  }

  /** The grace window ran out without a resume. */
  expire(): void {
    if (this.state === 'detached') void this.#end();
  }

  /** Closes the session for good (app request, overflow, drain). */
  close(code: number, reason = ''): void {
    if (this.state === 'closing' || this.state === 'closed') return;
    this.#lastClose = { code, reason, clientClosed: false };
    const link = this.#link;
    if (link) {
      this.#enter('closing');
      link.close(code, reason);
      // A peer that never answers the close frame is cut off with the heartbeat timeout.
      this.#ctx.clock.setTimeout(() => link.terminate(), this.#ctx.config.heartbeat.timeoutMs);
    } else {
      void this.#end();
    }
  }

  /** Asks a reliable client to come back later (drain). */
  askReconnect(afterMs: number): void {
    this.#link?.askReconnect(afterMs);
  }

  #enter(state: SessionState): void {
    const from = this.#state;
    if (from === 'closed') return;
    if (!LEGAL[from].includes(state)) throw new Error(`session ${this.id}: no transition from ${from} to ${state}`);
    if (state === 'closed') this.#ctx.metrics.sessions.dec();
    this.#state = state;
  }

  #end(): Promise<void> {
    if (this.state === 'closed') return Promise.resolve();
    const ctx = this.#ctx;
    this.#enter('closed');
    ctx.grace.cancel(this);
    ctx.heartbeat.untrack(this);
    ctx.ended(this);
    this.#channels = null;
    const undelivered = this.#out?.clear() ?? 0;
    const { code, reason, clientClosed } = this.#lastClose;
    const info = {
      code, reason, clientClosed, undelivered,
      durationMs: ctx.clock.now() - this.connectedAt,
      messagesIn: this.#in?.taken ?? this.#takenBefore,
      messagesOut: this.#out?.messagesOut ?? 0,
    };
    this.log.info({ code, reason, undelivered }, 'session ended');
    // Messages already taken from the client reach the app before it hears of the end.
    const told = this.settled().then(() => ctx.upstream.disconnect(this, info));
    ctx.track(told);
    return told;
  }

  // ── moving between processes ──────────────────────────────────────────────────

  /**
   * Hands the session to another process: its socket, if any, is closed 4009, and pushes are
   * held aside from here on. Null when it cannot move (raw, or ending).
   */
  depart(code: number = CloseCode.takenOver, reason = 'session resumed elsewhere'): SessionSnapshot | null {
    if (this.mode !== 'reliable' || (this.#state !== 'open' && this.#state !== 'detached')) return null;
    const ctx = this.#ctx;
    const now = ctx.clock.now();
    const link = this.#link;
    if (link) {
      link.listen(null);
      link.close(code, reason);
      this.#link = null;
      this.#out?.unlinked();
      ctx.metrics.connections.dec();
      ctx.heartbeat.untrack(this);
      this.#detachedAt = now;
    }
    ctx.grace.cancel(this);
    this.#enter('moving');
    this.#holding = [];
    const held = this.#out?.held(now) ?? { nextSeq: 1, sent: 0, messages: [], messagesOut: 0 };
    return {
      v: SNAPSHOT_VERSION,
      id: this.id, path: this.path, url: this.url, query: this.query, remoteAddress: this.remoteAddress,
      subprotocol: this.subprotocol, headers: this.headers, connectedAt: this.connectedAt,
      user: this.#user, meta: { ...this.#meta }, channels: [...(this.#channels ?? [])],
      nextSeq: held.nextSeq, sent: held.sent, messages: held.messages,
      messagesIn: this.#in?.taken ?? this.#takenBefore, messagesOut: held.messagesOut,
      detachedForMs: now - this.#detachedAt,
    };
  }

  /** The session as the cluster roster keeps it. */
  rosterEntry(): RosterEntry {
    return { id: this.id, user: this.#user, meta: this.#meta, connectedAt: this.connectedAt, path: this.path };
  }

  /** When its grace ends, had it stayed here (ms since epoch). */
  get graceEndsAt(): number {
    return (this.#link ? this.#ctx.clock.now() : this.#detachedAt) + this.#ctx.config.session.graceMs;
  }

  /** What reached the session while it moved, and its final user, meta and channels; null when it ended meanwhile. */
  tail(): MoveTail | null {
    if (this.#state !== 'moving') return null;
    const now = this.#ctx.clock.now();
    return { user: this.#user, meta: { ...this.#meta }, channels: [...(this.#channels ?? [])], pushes: (this.#holding ?? []).map((p) => toWireMessage(p, now)) };
  }

  /** Ends the session in this process without telling the app: it lives on in another (or was told of there). */
  forget(why: 'ended' | 'moved' | 'parked' = 'moved'): void {
    if (this.#state === 'closed') return;
    const ctx = this.#ctx;
    this.#holding = null;
    this.#enter('closed');
    ctx.grace.cancel(this);
    ctx.heartbeat.untrack(this);
    ctx.ended(this, why);
    this.#out?.clear();
    this.log.info('session moved to another process');
  }

  /** The move failed: the session stays here, detached, and what was held aside joins its outbox. */
  stay(): void {
    if (this.#state !== 'moving') return;
    const ctx = this.#ctx;
    this.#enter('detached');
    const held = this.#holding ?? [];
    this.#holding = null;
    for (const push of held) this.send(push);
    ctx.grace.schedule(this, Math.max(ctx.clock.now(), this.#detachedAt + ctx.config.session.graceMs));
  }

  /** A session another process held, built here detached, holding pushes aside until it `arrive`s. */
  static restore(ctx: SessionContext, snap: SessionSnapshot, now: number): Session {
    const s = new Session(ctx, {
      id: snap.id, mode: 'reliable', path: snap.path, url: snap.url, query: snap.query,
      remoteAddress: snap.remoteAddress, subprotocol: snap.subprotocol, headers: snap.headers,
    }, snap.connectedAt);
    if (snap.user !== null) s.#user = snap.user;
    if (Object.keys(snap.meta).length > 0) s.#meta = snap.meta;
    if (snap.channels.length > 0) s.#channels = new Set(snap.channels);
    s.#takenBefore = snap.messagesIn;
    s.#detachedAt = now - snap.detachedForMs;
    s.#outbound().restore(snap, now);
    s.#state = 'detached';
    s.#holding = [];
    ctx.grace.schedule(s, now + ctx.config.session.graceMs);
    return s;
  }

  /**
   * The move is complete: what the old holder received meanwhile comes first, then what reached
   * the session here, without the pushes both received (the same push id).
   */
  arrive(tail: MoveTail): void {
    const here = this.#holding ?? [];
    this.#holding = null;
    if (this.#state === 'closed') return;
    if (tail.user !== null) this.setUser(tail.user);
    this.#meta = Object.keys(tail.meta).length > 0 ? tail.meta : NO_META;
    const channels = new Set(tail.channels);
    for (const c of [...(this.#channels ?? [])]) if (!channels.has(c)) this.leave(c);
    for (const c of channels) this.join(c);
    const now = this.#ctx.clock.now();
    const seen = new Set<string>();
    for (const m of tail.pushes) {
      if (m.pushId !== null) seen.add(m.pushId);
      this.send(fromWireMessage(m, now));
    }
    for (const push of here) if (push.id === null || !seen.has(push.id)) this.send(push);
    if (tail.close) this.close(tail.close.code, tail.close.reason);
  }

  /** Ends a session rebuilt from a parked snapshot whose grace ran out; resolves once the app was told. */
  expireParked(): Promise<void> {
    this.#holding = null;
    this.#lastClose = { code: CloseCode.serviceRestart, reason: 'parked session expired', clientClosed: false };
    return this.#end();
  }

  // ── outbound ──────────────────────────────────────────────────────────────────

  /** Sends a push now when the link has room, else holds it in the outbox. */
  send(push: Push): SendResult {
    if (this.#state === 'closing' || this.#state === 'closed') return 'dropped';
    // `presence.rawFrames: none`: a raw client gets no presence frames (it would take them for the app's).
    if (push.type === 'presence' && this.mode === 'raw' && this.#ctx.config.presence.rawFrames === 'none') return 'dropped';
    if (this.#holding) {
      // A move takes milliseconds; the outbox bound still holds for what waits meanwhile.
      if (this.#holding.length >= this.#ctx.config.session.outbox.maxMessages) {
        this.#ctx.metrics.droppedMessagesTotal.inc({ reason: 'overflow' });
        return 'dropped';
      }
      this.#holding.push(push);
      return 'queued';
    }
    const out = this.#outbound();
    const result = out.send(push);
    if (result !== 'overflow') return result;
    this.log.warn({ messages: out.messages, bytes: out.bytes }, 'outbox full: closing slow consumer');
    this.close(CloseCode.slowConsumer, 'slow consumer');
    return 'dropped';
  }

  // ── inbound ───────────────────────────────────────────────────────────────────

  #onFrame(data: Buffer, isBinary: boolean): void {
    this.lastSeen = this.#ctx.clock.now();
    if (this.#state !== 'open') return;
    if (this.mode === 'reliable') return this.#reliable().frame(data, isBinary);
    const payload: Payload = isBinary ? { kind: 'binary', data } : { kind: 'text', text: data.toString('utf8') };
    this.#receive(payload, undefined, data.length);
  }

  #receive(payload: Payload, id: string | undefined, bytes: number): void {
    const metrics = this.#ctx.metrics;
    metrics.frames.in[this.mode].inc();
    metrics.bytes.in.inc(bytes);
    this.#inbound().take(payload, id);
  }

  #settle(batch: readonly InboundMessage[], outcome: DeliveryOutcome): void {
    // Acks and answers of one delivery leave in one write.
    const link = this.#link;
    link?.cork();
    try {
      this.#settleCorked(batch, outcome);
    } finally {
      link?.uncork();
    }
  }

  #settleCorked(batch: readonly InboundMessage[], outcome: DeliveryOutcome): void {
    if (this.#link && this.mode === 'reliable') this.#reliable().settled(batch, outcome);
    if (outcome.ok) {
      if (outcome.effects) this.apply(outcome.effects);
    } else if (this.mode === 'raw') {
      this.log.warn({ error: outcome.error, seq: batch[0]?.seq }, 'client message not accepted by the app');
    }
  }

  /** Carries out what the app asked for in an answer. */
  apply(effects: Effects): void {
    if (this.state === 'closed') return;
    const ctx = this.#ctx;
    if (effects.user !== undefined) this.setUser(effects.user);
    // A new object, not a mutation: upstreams cache what they derive from it by identity.
    if (effects.meta) {
      this.#meta = { ...this.#meta, ...effects.meta };
      ctx.metaChanged(this);
    }
    for (const channel of effects.channels ?? []) this.join(channel);
    for (const channel of effects.unsubscribe ?? []) this.leave(channel);
    for (const payload of effects.send ?? []) this.send(new Push(payload));
    if (effects.close) this.close(effects.close.code, effects.close.reason);
    else if (effects.drop) this.#link?.terminate();
  }

  /** Waits for client messages already taken to reach the app. */
  settled(): Promise<void> {
    return this.#in?.settled() ?? Promise.resolve();
  }

  // ── heartbeat host ────────────────────────────────────────────────────────────

  ping(): void {
    this.#link?.ping();
  }

  terminate(): void {
    this.log.info('no pong in time: terminating');
    this.#link?.terminate();
  }
}
