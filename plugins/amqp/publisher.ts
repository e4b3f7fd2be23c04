// Publishes events through a confirm channel, in order, and holds every event until the
// broker confirms it. While the broker is away, events wait here (bounded); after a
// reconnect, everything unconfirmed is published again in the order it was taken, so an
// event whose confirm was lost with the connection may reach the exchange twice (same
// messageId: consumers de-duplicate).
import type { ConfirmChannel, Message, Options } from 'amqplib';
import type { Logger } from 'pino';
import type { Metrics } from '../../proxy/metrics.js';

/** How a publication ended. */
export type PublishResult =
  /** The broker took it and routed it. */
  | 'confirmed'
  /** The broker refused it (`basic.nack`: an internal error, a queue limit with reject-publish). */
  | 'nacked'
  /** Mandatory, and no queue is bound for its routing key. */
  | 'returned'
  /** The publisher was destroyed before a confirm. */
  | 'aborted'
  /** It cannot be encoded (amqplib refuses header tables over 64 KiB). */
  | 'invalid';

export interface Publication {
  readonly exchange: string;
  readonly routingKey: string;
  readonly content: Buffer;
  readonly options: Options.Publish;
  /** Published again after a broker nack instead of reporting it (at-least-once events). */
  readonly untilConfirmed?: boolean;
}

interface Entry {
  readonly pub: Publication;
  readonly settle: (result: PublishResult) => void;
  sent: boolean;
  returned: boolean;
  startedAt: number;
}

export class Publisher {
  readonly #limit: number;
  readonly #metrics: Metrics;
  readonly #log: Logger;
  /** Every unconfirmed entry, in the order it was taken (Set iteration order). */
  readonly #entries = new Set<Entry>();
  /** Entries waiting to be written to the current channel, in order. */
  #unsent: Entry[] = [];
  #channel: ConfirmChannel | null = null;
  #waitingDrain = false;
  #scheduled = false;
  #idle: Array<() => void> = [];

  constructor(limit: number, deps: { metrics: Metrics; log: Logger }) {
    this.#limit = limit;
    this.#metrics = deps.metrics;
    this.#log = deps.log;
  }

  /** Unconfirmed events, sent or not. */
  get size(): number {
    return this.#entries.size;
  }

  /** Whether `n` more events fit in the buffer. */
  hasRoom(n = 1): boolean {
    return this.#entries.size + n <= this.#limit;
  }

  /**
   * Takes events, all or none: null when they do not fit (unless `force`: events that must
   * not be lost, such as disconnects, are taken beyond the bound). Each promise settles
   * when its event is confirmed, refused, or aborted.
   */
  publish(pubs: readonly Publication[], force = false): Promise<PublishResult>[] | null {
    if (!force && !this.hasRoom(pubs.length)) {
      this.#metrics.amqpPublishTotal.inc({ result: 'buffer_full' }, pubs.length);
      return null;
    }
    const results = pubs.map((pub) => new Promise<PublishResult>((resolve) => {
      const entry: Entry = { pub, settle: resolve, sent: false, returned: false, startedAt: 0 };
      this.#entries.add(entry);
      this.#unsent.push(entry);
    }));
    this.#metrics.amqpBufferMessages.set(this.#entries.size);
    this.#schedule();
    return results;
  }

  /** A fresh confirm channel: everything unconfirmed goes out again, in order. */
  attach(channel: ConfirmChannel): void {
    this.#channel = channel;
    this.#waitingDrain = false;
    channel.on('return', (msg: Message) => this.#returned(msg));
    channel.on('drain', () => {
      if (this.#channel !== channel) return;
      this.#waitingDrain = false;
      this.#pump();
    });
    this.#unsent = [...this.#entries];
    for (const e of this.#unsent) e.sent = false;
    if (this.#unsent.length > 0) this.#log.info({ events: this.#unsent.length }, 'publishing events held while the broker was away');
    this.#schedule();
  }

  /** The channel is gone: what it did not confirm waits for the next one. */
  detach(): void {
    this.#channel = null;
  }

  // Written on the next turn: events taken in one turn go out together, and an event taken
  // during a handshake is written after the session is registered.
  #schedule(): void {
    if (this.#scheduled) return;
    this.#scheduled = true;
    setImmediate(() => {
      this.#scheduled = false;
      this.#pump();
    });
  }

  #pump(): void {
    const ch = this.#channel;
    if (!ch || this.#waitingDrain) return;
    let i = 0;
    for (; i < this.#unsent.length; i++) {
      const entry = this.#unsent[i];
      if (!this.#entries.has(entry)) continue;
      entry.sent = true;
      entry.returned = false;
      entry.startedAt = performance.now();
      const { exchange, routingKey, content, options } = entry.pub;
      let writable: boolean;
      try {
        writable = ch.publish(exchange, routingKey, content, options, (err: unknown) => this.#confirmed(ch, entry, err));
      } catch (err) {
        // amqplib's IllegalOperationError, by name: amqplib itself loads only once a link connects.
        if ((err as Error | undefined)?.name === 'IllegalOperationError') {
          // The channel closed under us; the entry stays for the next one.
          this.#log.debug({ err: (err as Error).message }, 'publish on a closed channel');
          break;
        }
        // This event cannot be encoded (a header table over 64 KiB): refuse it, go on with the rest.
        this.#log.warn({ err: (err as Error).message, routingKey, messageId: options.messageId }, 'event cannot be published');
        this.#settle(entry, 'invalid');
        continue;
      }
      if (!writable) {
        i++;
        this.#waitingDrain = true;
        break;
      }
    }
    this.#unsent = this.#unsent.slice(i);
  }

  #confirmed(ch: ConfirmChannel, entry: Entry, err: unknown): void {
    if (!this.#entries.has(entry)) return;
    if (err) {
      // amqplib reports a broker nack as "message nacked"; anything else is the channel closing.
      const nacked = (err as Error).message === 'message nacked' && this.#channel === ch;
      if (!nacked) return;
      if (entry.pub.untilConfirmed) {
        this.#metrics.amqpPublishTotal.inc({ result: 'nacked_retried' });
        this.#log.warn({ routingKey: entry.pub.routingKey, messageId: entry.pub.options.messageId }, 'broker nacked an event: publishing it again');
        this.#unsent.push(entry);
        this.#schedule();
        return;
      }
      this.#settle(entry, 'nacked');
      return;
    }
    this.#settle(entry, entry.returned ? 'returned' : 'confirmed');
  }

  #settle(entry: Entry, result: PublishResult): void {
    this.#entries.delete(entry);
    this.#metrics.amqpBufferMessages.set(this.#entries.size);
    this.#metrics.amqpPublishTotal.inc({ result });
    if (result !== 'aborted' && result !== 'invalid') this.#metrics.amqpPublishDuration.observe((performance.now() - entry.startedAt) / 1000);
    entry.settle(result);
    if (this.#entries.size === 0) for (const done of this.#idle.splice(0)) done();
  }

  /** The broker returns an unroutable mandatory message before confirming it. */
  #returned(msg: Message): void {
    const id = msg.properties.messageId as string | undefined;
    for (const e of this.#entries) {
      if (e.sent && !e.returned && e.pub.options.messageId === id && e.pub.routingKey === msg.fields.routingKey) {
        e.returned = true;
        return;
      }
    }
  }

  /** Resolves when nothing is left unconfirmed. */
  idle(): Promise<void> {
    if (this.#entries.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.#idle.push(resolve));
  }

  /** Gives up on everything held: each waiting event settles as `aborted`. */
  abort(): void {
    this.#unsent = [];
    for (const e of [...this.#entries]) this.#settle(e, 'aborted');
  }
}
