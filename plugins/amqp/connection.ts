// A RabbitMQ connection that comes back. It reconnects with exponential backoff and full
// jitter, and runs its owner's `setup` (declare the topology, open channels, start
// consumers) on every new connection, so a restarted broker gets everything re-declared.
//
//   idle ──start──▶ connecting ──setup done──▶ up ──lost──▶ waiting ──backoff──▶ connecting
//                       └──failed──▶ waiting                   any ──close/destroy──▶ closed
import type { ChannelModel } from 'amqplib';
import type { Logger } from 'pino';
import type { Clock } from '../../proxy/clock.js';
import { userAgent } from '../../proxy/version.js';
import { backoffMs, type Backoff } from '../../proxy/backoff.js';

export type BrokerState = 'idle' | 'connecting' | 'up' | 'waiting' | 'closed';

export interface BrokerOptions {
  readonly url: string;
  /** Shown in the broker's connection list (`connection_name`). */
  readonly name: string;
  readonly reconnect: Backoff;
  readonly log: Logger;
  readonly clock: Clock;
  /** Declares topology and opens channels on a fresh connection. Throwing drops it and retries. */
  readonly setup: (model: ChannelModel) => Promise<void>;
  /** The connection that `setup` ran on is gone; a reconnect is scheduled. */
  readonly lost?: (err: Error) => void;
}

/** Heartbeats find a broker that vanished without closing the socket; 15 s unless the URL says. */
const DEFAULT_HEARTBEAT_SEC = 15;
const CONNECT_TIMEOUT_MS = 10_000;

/** The URL with a heartbeat when it sets none. */
export function brokerUrl(url: string): string {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    // amqplib reports it on every attempt, and the log says which link it is.
    return url;
  }
  if (!u.searchParams.has('heartbeat')) u.searchParams.set('heartbeat', String(DEFAULT_HEARTBEAT_SEC));
  return u.toString();
}

/** The URL without its password, for logs. */
export function redact(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return '(unparsable url)';
  }
}

export class BrokerConnection {
  readonly #options: BrokerOptions;
  readonly #url: string;
  readonly #log: Logger;
  #state: BrokerState = 'idle';
  #model: ChannelModel | null = null;
  #attempt = 0;
  #timer: unknown = null;
  #blocked = false;
  #firstAttempt: Promise<void> | null = null;
  #settleFirst: (() => void) | null = null;

  constructor(options: BrokerOptions) {
    this.#options = options;
    this.#url = brokerUrl(options.url);
    this.#log = options.log.child({ broker: redact(options.url), link: options.name });
  }

  get state(): BrokerState {
    return this.#state;
  }

  /** Up and not blocked by a broker resource alarm. */
  get up(): boolean {
    return this.#state === 'up' && !this.#blocked;
  }

  /** Starts connecting; resolves after the first attempt, whether it succeeded or not. */
  start(): Promise<void> {
    if (this.#firstAttempt) return this.#firstAttempt;
    this.#firstAttempt = new Promise<void>((resolve) => { this.#settleFirst = resolve; });
    void this.#connect();
    return this.#firstAttempt;
  }

  #settled(): void {
    this.#settleFirst?.();
    this.#settleFirst = null;
  }

  async #connect(): Promise<void> {
    if (this.#state === 'closed') return;
    this.#state = 'connecting';
    this.#timer = null;
    let model: ChannelModel;
    try {
      // Loaded on first use: a sidecar without RabbitMQ never pays for amqplib.
      const { connect } = await import('amqplib');
      model = await connect(this.#url, {
        timeout: CONNECT_TIMEOUT_MS,
        clientProperties: { connection_name: `${this.#options.name} (${userAgent})` },
      });
    } catch (err) {
      this.#retry(err as Error);
      return;
    }
    // Closed while the connection was being made.
    if (this.state === 'closed') {
      model.close().catch(() => {});
      return;
    }
    this.#model = model;
    this.#blocked = false;
    model.on('error', (err: Error) => this.#log.warn({ err: err.message }, 'broker connection error'));
    model.on('close', (err?: Error) => this.#lost(model, err ?? new Error('connection closed by the broker')));
    model.on('blocked', (reason: string) => {
      this.#blocked = true;
      this.#log.warn({ reason }, 'broker blocked publishing (resource alarm)');
    });
    model.on('unblocked', () => {
      this.#blocked = false;
      this.#log.info('broker unblocked publishing');
    });
    try {
      await this.#options.setup(model);
    } catch (err) {
      this.#log.error({ err: (err as Error).message }, 'declaring the broker topology failed');
      // The close event reschedules.
      this.fail(model, err as Error);
      return;
    }
    if (this.#model !== model || this.state !== 'connecting') return;
    this.#state = 'up';
    this.#log.info({ attempts: this.#attempt + 1 }, 'broker connected');
    this.#attempt = 0;
    this.#settled();
  }

  #retry(err: Error): void {
    if (this.#state === 'closed') return;
    this.#state = 'waiting';
    const wait = backoffMs(++this.#attempt, this.#options.reconnect);
    // The first failure is worth a warning; repeats only at debug, with the count.
    const level = this.#attempt === 1 ? 'warn' : 'debug';
    this.#log[level]({ err: err.message, attempt: this.#attempt, waitMs: wait }, 'broker unreachable: retrying');
    this.#settled();
    this.#timer = this.#options.clock.setTimeout(() => void this.#connect(), wait);
  }

  #lost(model: ChannelModel, err: Error): void {
    if (this.#model !== model) return;
    this.#model = null;
    const wasUp = this.#state === 'up';
    if (this.#state === 'closed') return;
    if (wasUp) this.#log.warn({ err: err.message }, 'broker connection lost');
    this.#options.lost?.(err);
    this.#retry(err);
  }

  /**
   * A channel of this connection failed: drop the whole connection so that everything is
   * declared again on the next one. Deferred, because channels close while their
   * connection is closing too.
   */
  fail(model: ChannelModel, err: Error): void {
    setImmediate(() => {
      if (this.#model !== model || this.#state === 'closed') return;
      // A failed setup was logged already.
      if (this.#state === 'up') this.#log.warn({ err: err.message }, 'broker channel failed: reconnecting');
      model.close().catch(() => this.#lost(model, err));
    });
  }

  /** Closes the connection; no reconnect follows. Idempotent. */
  async close(): Promise<void> {
    if (this.#state === 'closed') return;
    this.#state = 'closed';
    this.#settled();
    if (this.#timer !== null) this.#options.clock.clearTimeout(this.#timer);
    const model = this.#model;
    this.#model = null;
    if (model) await model.close().catch(() => {});
  }

  /** Like close, without waiting for the broker's goodbye: the socket is cut. */
  destroy(): void {
    const model = this.#model;
    void this.close();
    // amqplib has no public abort; its connection keeps the socket as `stream`.
    (model as unknown as { connection?: { stream?: { destroy?: () => void } } } | null)?.connection?.stream?.destroy?.();
  }
}
