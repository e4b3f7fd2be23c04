// Pushes from a RabbitMQ queue (`amqp.pushQueue`): each message's body is a
// `POST /v1/batch` body, routed exactly like the push API does, then acked.
//
// A malformed message is never dropped: it is republished to the dead-letter exchange
// (`amqp.deadLetterExchange`, fanout, with the durable queue `<exchange>.queue` bound) with
// an `x-switchboard-error` header saying why, and the original is acked once the broker
// has confirmed the copy. RabbitMQ's own dead-lettering (a reject without requeue) cannot
// add a reason, so it is only the fallback when the copy cannot be published.
import type { Channel, ChannelModel, ConfirmChannel, ConsumeMessage } from 'amqplib';
import type { Logger } from 'pino';
import type { Clock } from '../../proxy/clock.js';
import { MAX_BATCH_MESSAGES } from '../../proxy/limits.js';
import { SwitchboardError } from '../../proxy/errors.js';
import type { Push } from '../../proxy/push.js';
import { jsonBody, parseBatch } from '../../proxy/push-request.js';
import type { PushRoute } from '../../proxy/plugin.js';
import { bodyKind } from '../../proxy/payload.js';
import { BrokerConnection } from './connection.js';
import { backoffMs, type Backoff } from '../../proxy/backoff.js';

export interface PushQueueOptions {
  readonly url: string;
  readonly queue: string;
  readonly deadLetterExchange: string;
  readonly prefetch: number;
  readonly reconnect: Backoff;
  /** Per item, as `limits.maxMessageBytes`; a message may hold a batch of 4 × that. */
  readonly maxItemBytes: number;
}

export class PushQueueConsumer {
  readonly #options: PushQueueOptions;
  readonly #routes: PushRoute;
  readonly #log: Logger;
  readonly #clock: Clock;
  readonly #broker: BrokerConnection;
  #channel: Channel | null = null;
  #consumerTag: string | null = null;
  /** Messages are routed one after another, so pushes keep the queue's order. */
  #chain: Promise<void> = Promise.resolve();
  #failures = 0;

  constructor(options: PushQueueOptions, deps: { log: Logger; clock: Clock; routes: PushRoute }) {
    this.#options = options;
    this.#routes = deps.routes;
    this.#log = deps.log.child({ pushQueue: options.queue });
    this.#clock = deps.clock;
    this.#broker = new BrokerConnection({
      url: options.url,
      name: 'switchboard push queue',
      reconnect: options.reconnect,
      log: this.#log,
      clock: deps.clock,
      setup: (model) => this.#setup(model),
      lost: () => { this.#channel = null; },
    });
  }

  async #setup(model: ChannelModel): Promise<void> {
    const { queue, deadLetterExchange: dlx, prefetch } = this.#options;
    const ch = await model.createChannel();
    const copies = await model.createConfirmChannel();
    for (const c of [ch, copies]) {
      c.on('error', (err: Error) => this.#log.warn({ err: err.message }, 'push queue channel error'));
      c.on('close', () => {
        if (this.#channel === ch) this.#channel = null;
        this.#broker.fail(model, new Error('push queue channel closed'));
      });
    }
    await ch.assertExchange(dlx, 'fanout', { durable: true });
    await ch.assertQueue(`${dlx}.queue`, { durable: true });
    await ch.bindQueue(`${dlx}.queue`, dlx, '');
    await ch.assertQueue(queue, { durable: true, deadLetterExchange: dlx });
    await ch.prefetch(prefetch);
    this.#channel = ch;
    const { consumerTag } = await ch.consume(queue, (msg) => {
      if (msg === null) {
        // The broker cancelled the consumer (the queue was deleted): declare it all again.
        this.#broker.fail(model, new Error('push queue consumer cancelled by the broker'));
        return;
      }
      this.#chain = this.#chain.then(() => this.#handle(ch, copies, msg)).catch((err: unknown) => {
        // Never left unacked (it would hold a prefetch slot for ever): the queue's own
        // dead-lettering takes it, without a reason header.
        this.#log.error({ err, messageId: msg.properties.messageId }, 'handling a queued push failed: rejected to the dead-letter exchange');
        settle(() => ch.nack(msg, false, false));
      });
    }, { noAck: false });
    this.#consumerTag = consumerTag;
  }

  start(): Promise<void> {
    return this.#broker.start();
  }

  ready(): boolean {
    return this.#broker.up;
  }

  /** Stops taking messages, finishes the ones taken, closes. Unacked messages go back to the queue. */
  async close(): Promise<void> {
    const ch = this.#channel;
    if (ch && this.#consumerTag) await ch.cancel(this.#consumerTag).catch(() => {});
    await this.#chain;
    await this.#broker.close();
  }

  destroy(): void {
    this.#broker.destroy();
  }

  async #handle(ch: Channel, copies: ConfirmChannel, msg: ConsumeMessage): Promise<void> {
    // Taken on a channel that has since closed: the broker delivers it again.
    if (this.#channel !== ch) return;
    const parsed = this.#parse(msg);
    if (parsed instanceof SwitchboardError) {
      await this.#deadLetter(ch, copies, msg, `${parsed.code}: ${parsed.message}`);
      return;
    }
    let missing = 0;
    try {
      for (const item of parsed) {
        const result = await this.#routes.route(item.target, item.push);
        if (!result.found) missing++;
      }
    } catch (err) {
      // Routing failed (the cluster broker is away): try again later. Items routed before the
      // failure are routed again, so a recipient here may get them twice.
      const wait = backoffMs(++this.#failures, this.#options.reconnect);
      this.#log.warn({ err: (err as Error).message, waitMs: wait }, 'routing a queued push failed: requeueing it');
      await new Promise((resolve) => this.#clock.setTimeout(() => resolve(undefined), wait));
      settle(() => ch.nack(msg, false, true));
      return;
    }
    this.#failures = 0;
    if (missing > 0) this.#log.debug({ missing, messageId: msg.properties.messageId }, 'queued push named unknown connections');
    settle(() => ch.ack(msg));
  }

  #parse(msg: ConsumeMessage): ReturnType<typeof parseBatch> | SwitchboardError {
    const type = msg.properties.contentType as string | undefined;
    // No content type is taken as JSON: many publishers do not set one.
    if (type !== undefined && bodyKind(type) !== 'json') return new SwitchboardError('unsupported_type', `a push is application/json, got ${JSON.stringify(type)}`);
    const max = this.#options.maxItemBytes * 4;
    if (msg.content.length > max) return new SwitchboardError('too_large', `body of ${msg.content.length} bytes is more than ${max}`);
    try {
      return parseBatch(jsonBody(msg.content.toString('utf8')), this.#clock.now(), MAX_BATCH_MESSAGES, this.#options.maxItemBytes);
    } catch (err) {
      if (err instanceof SwitchboardError) return err;
      // Not a verdict on the message, but it must not stall the queue: dead-lettered with the reason.
      this.#log.error({ err }, 'parsing a queued push failed unexpectedly');
      return new SwitchboardError('internal', `could not be parsed: ${(err as Error).message}`, { cause: err });
    }
  }

  /** Republishes with the reason, then acks; without a confirm, RabbitMQ dead-letters it bare. */
  async #deadLetter(ch: Channel, copies: ConfirmChannel, msg: ConsumeMessage, reason: string): Promise<void> {
    this.#log.warn({ reason, messageId: msg.properties.messageId }, 'malformed push dead-lettered');
    const p = msg.properties;
    const confirmed = await new Promise<boolean>((resolve) => {
      try {
        copies.publish(this.#options.deadLetterExchange, msg.fields.routingKey, msg.content, {
          persistent: true,
          contentType: p.contentType,
          contentEncoding: p.contentEncoding,
          messageId: p.messageId,
          correlationId: p.correlationId,
          timestamp: p.timestamp,
          type: p.type,
          appId: p.appId,
          headers: { ...(p.headers ?? {}), 'x-switchboard-error': reason, 'x-switchboard-queue': this.#options.queue },
        }, (err: unknown) => resolve(!err));
      } catch {
        resolve(false);
      }
    });
    settle(() => (confirmed ? ch.ack(msg) : ch.nack(msg, false, false)));
  }
}

/** Acks on a channel that closed meanwhile throw; the broker redelivers those messages anyway. */
function settle(fn: () => void): void {
  try {
    fn();
  } catch {
    // Nothing to do: see above.
  }
}
