// SwitchboardClient: the client side of reliable mode (`switchboard.v1`, docs/usage.md), for
// browsers and Node. No runtime dependencies: the WebSocket (the platform's, or `ws` passed in)
// and the clock are injected.

import { backoffDelay, hintDelay, resolveBackoff, type BackoffOptions } from './backoff.js';
import { Emitter } from './emitter.js';
import { SwitchboardClientError, closedError } from './errors.js';
import {
  PROTOCOL, RECONNECTING_CLOSE, parseFrame, parseRetryAfter, reconnectsAfter, refusalIsFinal, resumeProtocols, resumeUrl,
  type PresenceEvent,
} from './protocol.js';
import { SseSocket, type Fetch } from './transport-sse.js';
import { UNREACHABLE } from './transport-post.js';
import { PollSocket } from './transport-poll.js';

// ---------------------------------------------------------------------------
// Host interfaces. Declared here because the project compiles without the DOM lib,
// and kept minimal so both the browser WebSocket and the `ws` package fit.

// Method syntax makes the parameter check bivariant, so `ws` handlers (whose event
// types carry more fields) and the platform's clearTimeout (whose handle type differs
// between Node and browsers) are assignable.
type Callback<A> = { bivarianceHack(arg: A): void }['bivarianceHack'];

export interface WebSocketLike {
  readonly readyState: number;
  binaryType: string;
  onopen?: Callback<unknown> | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onmessage: Callback<{ readonly data: unknown }> | null;
  onclose: Callback<{ readonly code: number; readonly reason: string }> | null;
  onerror: Callback<unknown> | null;
  /**
   * `ws` only (the browser's WebSocket has no `on`): the answer to a refused handshake, which is
   * how the client learns its HTTP status and Retry-After.
   */
  on?(event: 'unexpected-response', listener: (request: unknown, response: HandshakeResponse) => void): unknown;
}

/** What the client reads of a refused handshake's answer (a subset of Node's IncomingMessage). */
export interface HandshakeResponse {
  readonly statusCode?: number;
  readonly headers: { readonly [name: string]: string | string[] | undefined };
}

/** The third argument is `ws`'s options; the client passes it only with `options.headers`. */
export type WebSocketConstructor = new (
  url: string,
  protocols: string | string[],
  options?: { headers: { [name: string]: string } },
) => WebSocketLike;

export type SetTimer = (fn: () => void, ms: number) => unknown;
export type ClearTimer = Callback<unknown>;

const OPEN = 1; // WebSocket.OPEN, the same in every implementation
const TAKEN_OVER = 4009; // the server's close of a connection whose session another one resumed

/**
 * How the client reaches the server: a WebSocket, Server-Sent Events with POSTs (docs/usage.md,
 * "HTTP fallback (SSE)"), or long-polling with the same POSTs ("HTTP fallback (long-polling)").
 */
export type TransportName = 'websocket' | 'sse' | 'long-poll';

const TRANSPORTS: readonly TransportName[] = ['websocket', 'sse', 'long-poll'];

export interface ClientOptions {
  /** Default globalThis.WebSocket. Node 20 has none: pass the `ws` package's WebSocket. */
  readonly WebSocket?: WebSocketConstructor;
  /**
   * Headers for every handshake (Cookie, Authorization, …), given to the WebSocket constructor
   * as `ws` takes them (`{ headers }`). Needs `options.WebSocket` from `ws`: the browser's
   * WebSocket (and Node's global one) cannot set headers, so with them the constructor throws.
   */
  readonly headers?: { readonly [name: string]: string };
  /** Reconnect delays. Defaults: baseMs 500, capMs 30000, maxAttempts Infinity. */
  readonly backoff?: Partial<BackoffOptions>;
  /** Longest an arrived message waits to be acked. Default 200. */
  readonly ackIntervalMs?: number;
  /** Ack at once when this many messages are un-acked. Default 32. */
  readonly ackEvery?: number;
  /** Messages waiting to be (re)sent while disconnected. Default 1000. */
  readonly offlineQueueLimit?: number;
  /**
   * Where a resume's token travels: `'query'` (`?resume=…&lastSeq=…`, the default) or
   * `'protocol'` (as subprotocols, so that access logs, which record URLs, never see it).
   */
  readonly resumeIn?: 'query' | 'protocol';
  /**
   * The transports to try, in order. Default `['websocket', 'sse', 'long-poll']`: a connection that
   * never opens (not within connectTimeoutMs, an HTTP transport counting as open at its welcome; or
   * closed before it opened without an HTTP status) moves the client to the next one for the same
   * session: a blocked WebSocket to SSE, a stream a proxy buffers to long-polling. A WebSocket is
   * tried again every upgradeRetryMs.
   */
  readonly transports?: readonly TransportName[];
  /** Longest a connection may take to open (an HTTP transport: to get its welcome) before it counts as blocked. Default 10000. */
  readonly connectTimeoutMs?: number;
  /** While on a later transport, how often a WebSocket is tried again. Default 300000 (5 minutes). */
  readonly upgradeRetryMs?: number;
  /** The fetch the HTTP transports (SSE, long-poll) use. Default globalThis.fetch. */
  readonly fetch?: Fetch;
  readonly random?: () => number;
  readonly setTimeout?: SetTimer;
  readonly clearTimeout?: ClearTimer;
}

// ---------------------------------------------------------------------------
// Events

export interface ClientEvents {
  /**
   * The transport now carrying the session: before the first `open`, after a fallback (before its
   * `open`), and when the client climbs back to a WebSocket (no `close` or `open` then: the session
   * never dropped).
   */
  transport: (info: { name: TransportName }) => void;
  /** A welcome arrived: a new session, or the old one resumed. */
  open: (info: { session: string; resumed: boolean }) => void;
  /** `data` is the pushed JSON value, or a Uint8Array for a binary push. */
  message: (data: unknown, meta: { seq: number }) => void;
  /**
   * A presence event of a channel this session is in, for the channels the server pushes them for
   * (`presence.frames`): numbered with the messages, so in order with them, once each.
   */
  presence: (event: PresenceEvent, meta: { seq: number }) => void;
  /** Messages from..to are lost for good. */
  gap: (gap: { from: number; to: number }) => void;
  /** The server started a new session instead of resuming: resync your state. */
  reset: (info: { session: string; previousSession: string }) => void;
  close: (info: { code: number; reason: string; willReconnect: boolean }) => void;
  error: (error: SwitchboardClientError) => void;
  /**
   * The server answered the handshake with an HTTP status instead of a WebSocket (only seen with
   * `ws`: a browser hides the status). Emitted just before the `close` of that attempt.
   */
  refused: (refusal: Refusal) => void;
}

/** A refused handshake: see the `refused` event. */
export interface Refusal {
  /** The HTTP status: 401, 403, 429, 503, … */
  readonly status: number;
  /** The answer's Retry-After in ms (null without one); it is the wait before the next attempt. */
  readonly retryAfterMs: number | null;
  /** A 4xx other than 408 and 429: the client stops (state `closed`) instead of trying again. */
  readonly final: boolean;
}

/** setTimeout's largest delay; a longer Retry-After would fire at once. */
const MAX_DELAY_MS = 2 ** 31 - 1;

// ---------------------------------------------------------------------------
// The client

export type ClientState =
  | { readonly status: 'connecting'; readonly attempt: number }
  | { readonly status: 'open'; readonly session: string }
  | { readonly status: 'waiting'; readonly attempt: number; readonly delayMs: number }
  | { readonly status: 'closed'; readonly code: number; readonly reason: string };

interface OutMessage {
  readonly frame: string;
  readonly resolve: () => void;
  readonly reject: (err: SwitchboardClientError) => void;
}

export class SwitchboardClient extends Emitter<ClientEvents> {
  readonly url: string;
  readonly #WebSocket: WebSocketConstructor;
  readonly #headers: { [name: string]: string } | undefined;
  readonly #backoff: BackoffOptions;
  readonly #ackIntervalMs: number;
  readonly #ackEvery: number;
  readonly #offlineQueueLimit: number;
  readonly #random: () => number;
  readonly #setTimer: SetTimer;
  readonly #clearTimer: ClearTimer;
  readonly #transports: readonly TransportName[];
  readonly #connectTimeoutMs: number;
  readonly #upgradeRetryMs: number;
  readonly #fetch: Fetch | undefined;

  #transportAt = 0; // index in #transports of the current (or next) connection's transport
  #announced: TransportName | null = null; // the last `transport` event's name
  #workedAt: number | null = null; // index in #transports of the last one a session was welcomed on
  #openTimer: unknown = undefined;
  #probe: WebSocketLike | null = null; // a WebSocket trying to take the session over from SSE
  #probeTimer: unknown = undefined;
  #resumeSeq = 0; // the lastSeq the current connection resumed from

  #state: ClientState = { status: 'connecting', attempt: 0 };
  #socket: WebSocketLike | null = null;
  #socketGone: Promise<void> = Promise.resolve();
  #welcomed = false;
  #attempt = 0; // reconnect attempts since the last welcome
  #retryTimer: unknown = undefined;

  #session: string | null = null;
  #token: string | null = null;
  #lastSeq = 0; // highest contiguous seq delivered (or skipped by a gap)
  #ackedSeq = 0; // highest seq the server knows we have
  #ackTimer: unknown = undefined;

  readonly #idPrefix: string;
  readonly #resumeIn: 'query' | 'protocol';
  #nextId = 0;
  readonly #pending = new Map<string, OutMessage>(); // insertion order = send order
  #pings: Array<{ resolve: () => void; reject: (err: SwitchboardClientError) => void }> = [];
  readonly #channels = new Set<string>();
  #channelFrames: string[] = []; // subscribe/unsubscribe made while disconnected

  constructor(url: string, options: ClientOptions = {}) {
    super();
    this.#transports = transportList(options.transports ?? TRANSPORTS);
    const platform = (globalThis as { WebSocket?: unknown }).WebSocket as WebSocketConstructor | undefined;
    const WebSocketImpl = options.WebSocket ?? platform;
    const needsWebSocket = this.#transports.includes('websocket');
    this.#fetch = options.fetch ?? (globalThis as { fetch?: Fetch }).fetch?.bind(globalThis);
    if ((this.#transports.includes('sse') || this.#transports.includes('long-poll')) && this.#fetch === undefined) {
      throw new TypeError('no global fetch: pass options.fetch, or leave \'sse\' and \'long-poll\' out of options.transports');
    }
    if (needsWebSocket && options.headers !== undefined && (WebSocketImpl === undefined || WebSocketImpl === platform)) {
      throw new TypeError(
        'options.headers needs options.WebSocket from the `ws` package: the platform\'s WebSocket cannot set headers ' +
        '(a browser sends its cookies for the host by itself)',
      );
    }
    if (needsWebSocket && WebSocketImpl === undefined) {
      throw new TypeError('no global WebSocket: pass options.WebSocket (on Node 20, the `ws` package\'s WebSocket)');
    }
    this.url = url;
    this.#WebSocket = WebSocketImpl ?? (undefined as never);
    this.#connectTimeoutMs = positive('connectTimeoutMs', options.connectTimeoutMs ?? 10_000);
    this.#upgradeRetryMs = positive('upgradeRetryMs', options.upgradeRetryMs ?? 300_000);
    this.#headers = options.headers === undefined ? undefined : { ...options.headers };
    this.#backoff = resolveBackoff(options.backoff);
    this.#ackIntervalMs = positive('ackIntervalMs', options.ackIntervalMs ?? 200);
    this.#ackEvery = positive('ackEvery', options.ackEvery ?? 32);
    this.#offlineQueueLimit = positive('offlineQueueLimit', options.offlineQueueLimit ?? 1000);
    this.#random = options.random ?? Math.random;
    this.#resumeIn = options.resumeIn ?? 'query';
    // Plain functions, called detached: browsers reject setTimeout called on another `this`.
    this.#setTimer = options.setTimeout ?? ((fn, ms) => globalThis.setTimeout(fn, ms));
    this.#clearTimer = options.clearTimeout ?? ((handle) => globalThis.clearTimeout(handle as never));
    // A random prefix keeps ids from different clients (or page loads) apart.
    this.#idPrefix = Math.floor(this.#random() * 2 ** 48).toString(36);
    this.#connect(true);
  }

  get state(): ClientState {
    return this.#state;
  }

  /** The current (or last) session id, null before the first welcome. */
  get session(): string | null {
    return this.#session;
  }

  /** Highest contiguous seq delivered; sent as lastSeq on resume. */
  get lastSeq(): number {
    return this.#lastSeq;
  }

  /**
   * Sends `data` (any JSON value) with a fresh id. Resolves when the app accepted it
   * (ack); rejects on nack with `code` and `retryable` — not retried here. While
   * disconnected it waits, in order, in the offline queue; messages not acked when a
   * connection drops are re-sent with the same id after the next welcome.
   */
  send(data: unknown): Promise<void> {
    if (this.#state.status === 'closed') return Promise.reject(closedError());
    if (!this.#welcomed && this.#pending.size >= this.#offlineQueueLimit) {
      return Promise.reject(
        new SwitchboardClientError(
          'offline_queue_full',
          `offline queue is full (${this.#offlineQueueLimit} messages waiting for a connection)`,
          true,
        ),
      );
    }
    const id = `${this.#idPrefix}-${++this.#nextId}`;
    let frame: string;
    try {
      frame = JSON.stringify({ type: 'message', data, id });
    } catch (err) {
      return Promise.reject(new SwitchboardClientError('bad_data', 'data cannot be encoded as JSON', false, { cause: err }));
    }
    return new Promise<void>((resolve, reject) => {
      this.#pending.set(id, { frame, resolve, reject });
      if (this.#welcomed) this.#transmit(frame);
    });
  }

  /** Resolves on the server's pong. Rejects when not connected or when the connection drops first. */
  ping(): Promise<void> {
    if (!this.#welcomed) {
      return Promise.reject(
        this.#state.status === 'closed' ? closedError() : new SwitchboardClientError('not_open', 'not connected'),
      );
    }
    return new Promise<void>((resolve, reject) => {
      this.#pings.push({ resolve, reject });
      this.#transmit('{"type":"ping"}');
    });
  }

  /**
   * Fire-and-forget; a denial comes back as an `error` event. Channels are remembered
   * and subscribed again when a reconnect lands on a new session.
   */
  subscribe(channel: string): void {
    this.#channels.add(channel);
    this.#channelFrame('subscribe', channel);
  }

  unsubscribe(channel: string): void {
    this.#channels.delete(channel);
    this.#channelFrame('unsubscribe', channel);
  }

  /**
   * Closes for good with 1000: no reconnect, pending sends and pings rejected.
   * Idempotent; resolves once the socket has closed.
   */
  close(): Promise<void> {
    if (this.#state.status === 'closed') return this.#socketGone;
    this.#flushAck();
    const socket = this.#socket;
    this.#socket = null;
    socket?.close(1000, 'client closed');
    this.#disconnected(1000, 'client closed', 'final');
    return this.#socketGone;
  }

  // --- connection lifecycle ---

  #setState(next: ClientState): void {
    this.#state = next;
  }

  #connect(first = false): void {
    this.#retryTimer = undefined;
    this.#setState({ status: 'connecting', attempt: this.#attempt });
    const transport = this.#transports[this.#transportAt];
    let socket: WebSocketLike;
    try {
      socket = this.#open(transport, this.#token, this.#lastSeq);
    } catch (err) {
      const error = new SwitchboardClientError('bad_url', `cannot open a WebSocket to ${this.url}`, false, { cause: err });
      if (first) throw error; // a bad URL is the caller's mistake: say so at construction
      this.emit('error', error);
      this.#disconnected(1006, 'cannot open the WebSocket', 'final');
      return;
    }
    this.#resumeSeq = this.#token === null ? 0 : this.#lastSeq;
    this.#adopt(socket, false);
    // A connection that neither opens nor fails within the bound is what a proxy that swallows
    // upgrades looks like: give it up as blocked. The last transport has nothing to move to, so
    // it waits as long as the platform lets it.
    if (this.#transportAt + 1 === this.#transports.length) return;
    this.#openTimer = this.#setTimer(() => {
      this.#openTimer = undefined;
      if (this.#socket !== socket) return;
      this.#socket = null;
      socket.close();
      this.#blocked(1006, 'connection timed out');
    }, this.#connectTimeoutMs);
  }

  /** A new connection over `transport`: a resume when there is a token. */
  #open(transport: TransportName, token: string | null, lastSeq: number): WebSocketLike {
    if (transport === 'sse' || transport === 'long-poll') {
      // HTTP has no subprotocols: a resume always travels in the query.
      const timers = { setTimeout: this.#setTimer, clearTimeout: this.#clearTimer };
      const url = token === null ? this.url : resumeUrl(this.url, token, lastSeq);
      return transport === 'sse' ? new SseSocket(url, this.#fetch!, this.#headers, timers) : new PollSocket(url, this.#fetch!, this.#headers, timers);
    }
    const resuming = token !== null;
    const url = resuming && this.#resumeIn === 'query' ? resumeUrl(this.url, token, lastSeq) : this.url;
    const protocols = resuming && this.#resumeIn === 'protocol' ? resumeProtocols(token, lastSeq) : PROTOCOL;
    // Two arguments unless there are headers: exactly what a browser's WebSocket takes.
    return this.#headers === undefined
      ? new this.#WebSocket(url, protocols)
      : new this.#WebSocket(url, protocols, { headers: this.#headers });
  }

  /** Makes `socket` the connection: its frames, its refusal, its close. `opened`: it is open already. */
  #adopt(socket: WebSocketLike, opened: boolean): void {
    socket.binaryType = 'arraybuffer';
    this.#socket = socket;
    this.#welcomed = false;
    let gone!: () => void;
    this.#socketGone = new Promise((resolve) => (gone = resolve));
    // Handlers stay attached for the socket's life and ignore it once replaced:
    // `ws` throws on an 'error' event with no listener.
    socket.onerror = () => {};
    socket.onopen = () => {
      opened = true;
      this.#cancelOpenTimer();
    };
    socket.onmessage = (event) => {
      if (this.#socket !== socket) return;
      // A frame proves it open too, for a WebSocketLike that has no onopen.
      if (!opened) socket.onopen?.({});
      this.#receive(event.data);
    };
    // With `ws`, a refused handshake's answer: read, then the handshake aborted (close, which
    // follows as a 1006). The platform's WebSocket shows the same refusal only as that 1006.
    let refusal: Refusal | undefined;
    if (!opened && typeof socket.on === 'function') {
      socket.on('unexpected-response', (_request, response) => {
        const status = response.statusCode ?? 0;
        refusal = { status, retryAfterMs: parseRetryAfter(response.headers['retry-after'], Date.now()), final: refusalIsFinal(status) };
        socket.close();
      });
    }
    socket.onclose = (event) => {
      gone();
      if (this.#socket !== socket) return;
      this.#socket = null;
      // Taken over by our own WebSocket, whose welcome may come a moment after: it adopts the session.
      if (event.code === TAKEN_OVER && this.#probe !== null) return;
      // An answered refusal keeps its meaning on every transport; only a connection that failed
      // without one (blocked, unreachable) is a reason to try the next transport.
      if (refusal !== undefined) {
        const plan = refusal.final ? 'final' : refusal.retryAfterMs === null ? 'backoff' : { retryAfterMs: refusal.retryAfterMs };
        return this.#disconnected(event.code, `handshake refused: HTTP ${refusal.status}`, plan, refusal);
      }
      if (!opened && event.reason === UNREACHABLE) {
        // An HTTP transport that got no answer at all: the network or the server is away, not a
        // proxy in the way. The transport that last worked is tried again after the backoff.
        this.#transportAt = this.#workedAt ?? 0;
        return this.#disconnected(event.code, event.reason, 'backoff');
      }
      if (!opened) return this.#blocked(event.code, event.reason);
      this.#disconnected(event.code, event.reason);
    };
  }

  /**
   * A connection failed before it opened, without an HTTP status: the next transport is tried at
   * once; after the last, the first one again after the backoff.
   */
  #blocked(code: number, reason: string): void {
    if (this.#transportAt + 1 < this.#transports.length) {
      this.#transportAt++;
      this.#disconnected(code, reason, 'next');
    } else {
      this.#transportAt = 0;
      this.#disconnected(code, reason, 'backoff');
    }
  }

  #cancelOpenTimer(): void {
    if (this.#openTimer !== undefined) this.#clearTimer(this.#openTimer);
    this.#openTimer = undefined;
  }

  // --- climbing back ---

  /** While on a later transport, a WebSocket is tried again every upgradeRetryMs. */
  #scheduleProbe(): void {
    if (this.#transportAt === 0 || this.#transports[0] !== 'websocket') return;
    if (this.#probe !== null || this.#probeTimer !== undefined) return;
    this.#probeTimer = this.#setTimer(() => {
      this.#probeTimer = undefined;
      this.#startProbe();
    }, this.#upgradeRetryMs);
  }

  /**
   * A WebSocket that resumes the session beside the open stream. Its welcome means the server
   * handed the session over (the stream then ends, 4009): it becomes the connection, replaying
   * from the seq it resumed at; what the stream delivered meanwhile is dropped by seq.
   */
  #startProbe(): void {
    if (!this.#welcomed || this.#token === null) return;
    const resumeSeq = this.#lastSeq;
    let probe: WebSocketLike;
    try {
      probe = this.#open('websocket', this.#token, resumeSeq);
    } catch {
      return this.#scheduleProbe();
    }
    this.#probe = probe;
    const giveUp = () => {
      if (this.#probe !== probe) return;
      this.#cancelProbe();
      // The stream already ended for it (4009): the session waits for a resume, over the stream.
      if (this.#socket === null) this.#disconnected(1006, 'the WebSocket that took the session over failed', 'backoff');
      else this.#scheduleProbe();
    };
    const timer = this.#setTimer(giveUp, this.#connectTimeoutMs);
    probe.onerror = () => {};
    if (typeof probe.on === 'function') probe.on('unexpected-response', () => probe.close());
    probe.onclose = giveUp;
    probe.onmessage = (event) => {
      if (this.#probe !== probe) return;
      const frame = typeof event.data === 'string' ? parseFrame(event.data) : undefined;
      if (frame?.type !== 'welcome') return giveUp();
      this.#clearTimer(timer);
      this.#probe = null;
      const stream = this.#socket;
      this.#transportAt = 0;
      this.#resumeSeq = resumeSeq;
      this.#adopt(probe, true);
      stream?.close(RECONNECTING_CLOSE, 'moved to a WebSocket');
      this.#onWelcome(frame, true);
    };
  }

  #cancelProbe(): void {
    if (this.#probeTimer !== undefined) this.#clearTimer(this.#probeTimer);
    this.#probeTimer = undefined;
    const probe = this.#probe;
    this.#probe = null;
    // 4100: the server keeps the session for the stream, should this socket have resumed it.
    probe?.close(RECONNECTING_CLOSE, 'upgrade abandoned');
  }

  /**
   * The socket is gone (or abandoned): report it, then reconnect or finish.
   * `plan`: decide by close code, back off regardless, the next transport at once, stop, follow a server hint, or wait a
   * refusal's Retry-After. A refusal is reported (`refused`) before the `close`.
   */
  #disconnected(
    code: number,
    reason: string,
    plan: 'byCode' | 'backoff' | 'next' | 'final' | { hintMs: number } | { retryAfterMs: number } = 'byCode',
    refusal?: Refusal,
  ): void {
    this.#welcomed = false;
    this.#cancelAckTimer();
    this.#cancelOpenTimer();
    this.#cancelProbe();
    const pings = this.#pings;
    this.#pings = [];
    for (const p of pings) p.reject(new SwitchboardClientError('disconnected', 'connection dropped before the pong'));

    let delayMs: number | undefined;
    if (typeof plan === 'object' && 'hintMs' in plan) {
      delayMs = plan.hintMs; // a hint is not a failure: the attempt count stays
    } else if (typeof plan === 'object') {
      // A refusal is a failed attempt; its Retry-After (plus jitter, as for a hint) replaces the backoff.
      if (this.#attempt < this.#backoff.maxAttempts) {
        delayMs = Math.min(MAX_DELAY_MS, hintDelay(plan.retryAfterMs, this.#backoff, this.#random));
        this.#attempt++;
      }
    } else if (plan === 'next') {
      // The next transport at once; still a failed attempt, which maxAttempts bounds.
      if (this.#attempt < this.#backoff.maxAttempts) {
        delayMs = 0;
        this.#attempt++;
      }
    } else if (plan === 'backoff' || (plan === 'byCode' && reconnectsAfter(code))) {
      delayMs = backoffDelay(this.#attempt, this.#backoff, this.#random);
      if (delayMs !== undefined) this.#attempt++;
    }
    const willReconnect = delayMs !== undefined;
    if (delayMs !== undefined) {
      this.#setState({ status: 'waiting', attempt: this.#attempt, delayMs });
      this.#retryTimer = this.#setTimer(() => this.#connect(), delayMs);
    } else {
      this.#finish(code, reason);
    }
    const state = this.#state;
    if (refusal !== undefined) {
      this.emit('refused', refusal);
      if (this.#state !== state) return; // a listener closed the client: that close was reported
    }
    this.emit('close', { code, reason, willReconnect });
  }

  #finish(code: number, reason: string): void {
    this.#setState({ status: 'closed', code, reason });
    if (this.#retryTimer !== undefined) this.#clearTimer(this.#retryTimer);
    this.#retryTimer = undefined;
    const pending = [...this.#pending.values()];
    this.#pending.clear();
    const err = closedError(code, reason);
    for (const m of pending) m.reject(err);
    this.#channelFrames = [];
  }

  /**
   * Drops the current socket ourselves, to reconnect. `code` is what the close event reports;
   * the wire gets RECONNECTING_CLOSE, so the server keeps the session for the resume.
   */
  #abandon(code: number, reason: string, plan: 'backoff' | { hintMs: number }): void {
    const socket = this.#socket;
    this.#socket = null;
    socket?.close(RECONNECTING_CLOSE, reason);
    this.#disconnected(code, reason, plan);
  }

  // --- inbound ---

  #receive(raw: unknown): void {
    const frame = typeof raw === 'string' ? parseFrame(raw) : undefined;
    if (frame === undefined) {
      this.emit('error', new SwitchboardClientError('bad_frame', 'the server sent a frame that is not reliable-mode JSON'));
      if (!this.#welcomed) this.#abandon(1002, 'protocol error', 'backoff');
      return;
    }
    if (!this.#welcomed) {
      if (frame.type === 'welcome') this.#onWelcome(frame);
      else {
        this.emit('error', new SwitchboardClientError('bad_frame', `expected welcome first, got ${frame.type}`));
        this.#abandon(1002, 'protocol error', 'backoff');
      }
      return;
    }
    switch (frame.type) {
      case 'message':
      case 'presence':
        if (frame.seq <= this.#lastSeq) return; // re-sent after a resume: already delivered
        // A hole without a gap frame is still loss; say so rather than hide it.
        if (frame.seq > this.#lastSeq + 1) this.emit('gap', { from: this.#lastSeq + 1, to: frame.seq - 1 });
        this.#lastSeq = frame.seq;
        this.#arrived();
        if (frame.type === 'message') this.emit('message', frame.data, { seq: frame.seq });
        else this.emit('presence', frame.presence, { seq: frame.seq });
        return;
      case 'gap': {
        if (frame.to <= this.#lastSeq) return;
        const from = this.#lastSeq + 1;
        this.#lastSeq = frame.to; // acks stay cumulative across the hole
        this.#arrived();
        this.emit('gap', { from, to: frame.to });
        return;
      }
      case 'ack':
      case 'nack': {
        const m = this.#pending.get(frame.id);
        if (m === undefined) return; // a duplicate answer to a re-sent message
        this.#pending.delete(frame.id);
        if (frame.type === 'ack') m.resolve();
        else m.reject(new SwitchboardClientError(frame.error, `message ${frame.id} was rejected: ${frame.error}`, frame.retryable));
        return;
      }
      case 'pong':
        this.#pings.shift()?.resolve();
        return;
      case 'reconnect':
        this.#abandon(1000, 'reconnect requested', { hintMs: hintDelay(frame.afterMs, this.#backoff, this.#random) });
        return;
      case 'error':
        this.emit('error', new SwitchboardClientError(frame.error, frame.message));
        return;
      case 'welcome': // a second welcome on one connection means nothing; ignore it
      case 'unknown':
        return;
    }
  }

  /** `climbed`: the session moved to a WebSocket without dropping (no `open` then, only `transport`). */
  #onWelcome(w: { session: string; token: string; resumed: boolean }, climbed = false): void {
    const socket = this.#socket;
    const previousSession = this.#session;
    const reset = previousSession !== null && (!w.resumed || w.session !== previousSession);
    if (!w.resumed || reset) this.#lastSeq = 0;
    // The lastSeq the connection resumed from acked everything up to it; what arrived after it
    // (on the stream, while a WebSocket took over) is acked below.
    this.#ackedSeq = Math.min(this.#lastSeq, w.resumed && !reset ? this.#resumeSeq : 0);
    this.#session = w.session;
    this.#token = w.token;
    this.#attempt = 0;
    this.#welcomed = true;
    this.#setState({ status: 'open', session: w.session });

    const channelFrames = this.#channelFrames;
    this.#channelFrames = [];
    if (w.resumed && !reset) for (const f of channelFrames) this.#transmit(f);
    else for (const c of this.#channels) this.#transmit(JSON.stringify({ type: 'subscribe', channel: c }));
    // Unacked and queued messages go out in send order, with their original ids.
    for (const m of this.#pending.values()) this.#transmit(m.frame);
    if (this.#lastSeq > this.#ackedSeq) this.#arrived();
    this.#scheduleProbe();

    const transport = this.#transports[this.#transportAt];
    this.#workedAt = this.#transportAt;
    if (transport !== this.#announced) {
      this.#announced = transport;
      this.emit('transport', { name: transport });
      if (this.#socket !== socket) return; // a listener closed the client
    }
    if (climbed && !reset) return;
    this.emit('open', { session: w.session, resumed: w.resumed && !reset });
    if (reset && this.#socket === socket) this.emit('reset', { session: w.session, previousSession });
  }

  // --- acks ---

  #arrived(): void {
    if (this.#lastSeq - this.#ackedSeq >= this.#ackEvery) this.#flushAck();
    else if (this.#ackTimer === undefined) {
      this.#ackTimer = this.#setTimer(() => {
        this.#ackTimer = undefined;
        this.#flushAck();
      }, this.#ackIntervalMs);
    }
  }

  #flushAck(): void {
    this.#cancelAckTimer();
    if (!this.#welcomed || this.#lastSeq <= this.#ackedSeq) return;
    this.#ackedSeq = this.#lastSeq;
    this.#transmit(`{"type":"ack","seq":${this.#lastSeq}}`);
  }

  #cancelAckTimer(): void {
    if (this.#ackTimer !== undefined) this.#clearTimer(this.#ackTimer);
    this.#ackTimer = undefined;
  }

  // --- outbound ---

  #channelFrame(type: 'subscribe' | 'unsubscribe', channel: string): void {
    const frame = JSON.stringify({ type, channel });
    if (this.#welcomed) this.#transmit(frame);
    else if (this.#state.status !== 'closed') this.#channelFrames.push(frame);
  }

  #transmit(text: string): void {
    const socket = this.#socket;
    // A socket that is closing drops the frame; anything that matters (messages)
    // stays pending and is re-sent after the next welcome.
    if (socket === null || socket.readyState !== OPEN) return;
    try {
      socket.send(text);
    } catch {
      // Same as above: the close event follows and drives the reconnect.
    }
  }
}


function positive(name: string, value: number): number {
  if (!Number.isFinite(value) || value <= 0) throw new RangeError(`${name}: expected a positive number, got ${String(value)}`);
  return value;
}

function transportList(list: readonly TransportName[]): readonly TransportName[] {
  if (!Array.isArray(list) || list.length === 0 || new Set(list).size !== list.length || list.some((t) => !TRANSPORTS.includes(t))) {
    throw new RangeError(`transports: expected a non-empty list of distinct 'websocket', 'sse' and 'long-poll', got ${JSON.stringify(list)}`);
  }
  return Object.freeze([...list]);
}
