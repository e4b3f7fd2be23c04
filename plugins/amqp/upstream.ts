// `upstream: amqp`: client events go to a durable topic exchange instead of webhooks.
// Routing keys are `<prefix>connect`, `<prefix>message`, `<prefix>resume`,
// `<prefix>disconnect` and (with `webhooks.paths.presence` set) `<prefix>presence`; messages are persistent, carry the webhook headers as AMQP
// headers, and `messageId` is the idempotency key. A client message is accepted only
// once the broker confirms it.
//
// Deciding needs an answer, which a queue cannot give: the handshake and channel
// subscriptions are still decided by the native `connect` and `subscribe` webhooks
// when their paths are set (accept all / deny all when null).
import type { ChannelModel, Options } from 'amqplib';
import type { Logger } from 'pino';
import type { Clock } from '../../proxy/clock.js';
import type { Config } from '../../proxy/config.js';
import { SwitchboardError, nack } from '../../proxy/errors.js';
import type { Metrics } from '../../proxy/metrics.js';
import { userAgent } from '../../proxy/version.js';
import type { ConnectOutcome, DeliveryOutcome, DisconnectInfo, InboundMessage, ResumeInfo, SessionView, Upstream } from '../../proxy/upstream.js';
import { contentTypeOf, type Payload } from '../../proxy/payload.js';
import type { PresenceEvent } from '../../proxy/presence.js';
import type { NativeWebhooks } from '../webhook/native.js';
import { BrokerConnection } from './connection.js';
import { Publisher, type Publication, type PublishResult } from './publisher.js';
import { MAX_AMQP_BATCH } from '../../proxy/limits.js';

export type AmqpConfig = Config['amqp'];


export function payloadContent(p: Payload): Buffer {
  return p.kind === 'binary' ? p.data : Buffer.from(p.kind === 'text' ? p.text : p.json, 'utf8');
}

export class AmqpUpstream implements Upstream {
  readonly name = 'amqp';
  readonly maxBatch: number;
  readonly #config: AmqpConfig;
  readonly #replayHandshakeHeaders: boolean;
  readonly #webhooks: NativeWebhooks;
  readonly #publisher: Publisher;
  readonly #broker: BrokerConnection;
  readonly #log: Logger;
  readonly #clock: Clock;

  constructor(config: Readonly<Config>, webhooks: NativeWebhooks, deps: { log: Logger; metrics: Metrics; clock: Clock }) {
    this.#config = config.amqp;
    this.#clock = deps.clock;
    // A batch is taken whole or refused: it must fit in an empty buffer.
    this.maxBatch = Math.min(MAX_AMQP_BATCH, config.amqp.bufferMessages);
    this.#replayHandshakeHeaders = config.webhooks.replayHandshakeHeaders;
    this.#webhooks = webhooks;
    this.#log = deps.log.child({ upstream: 'amqp' });
    this.#publisher = new Publisher(config.amqp.bufferMessages, { metrics: deps.metrics, log: this.#log });
    this.#broker = new BrokerConnection({
      url: config.amqp.url!,
      name: 'switchboard events',
      reconnect: config.amqp.reconnect,
      log: this.#log,
      clock: deps.clock,
      setup: (model) => this.#setup(model),
      lost: () => this.#publisher.detach(),
    });
  }

  async #setup(model: ChannelModel): Promise<void> {
    const ch = await model.createConfirmChannel();
    ch.on('error', (err: Error) => this.#log.warn({ err: err.message }, 'event channel error'));
    ch.on('close', () => {
      this.#publisher.detach();
      this.#broker.fail(model, new Error('event channel closed'));
    });
    await ch.assertExchange(this.#config.exchange, 'topic', { durable: true });
    this.#publisher.attach(ch);
  }

  async start(): Promise<void> {
    await this.#webhooks.start();
    await this.#broker.start();
  }

  /** Waits until every event taken has been confirmed, then closes the connection. */
  async close(): Promise<void> {
    await this.#publisher.idle();
    await Promise.all([this.#broker.close(), this.#webhooks.close()]);
  }

  destroy(): void {
    this.#publisher.abort();
    this.#broker.destroy();
    this.#webhooks.destroy();
  }

  ready(): boolean {
    return this.#broker.up;
  }

  // ── events ──────────────────────────────────────────────────────────────────

  /** The headers a webhook of this session would carry, as AMQP headers. */
  #headers(event: string, s: SessionView, replayHandshake: boolean): Record<string, string> {
    const headers: Record<string, string> = replayHandshake ? { ...s.headers } : {};
    headers['x-switchboard-event'] = event;
    headers['x-switchboard-connection'] = s.id;
    if (s.user !== null) headers['x-switchboard-user'] = s.user;
    for (const [key, value] of Object.entries(s.meta)) headers[`x-switchboard-meta-${key}`] = value;
    return headers;
  }

  #publication(event: string, content: Buffer, contentType: string, messageId: string, headers: Record<string, string>, mandatory = false): Publication {
    const options: Options.Publish = {
      persistent: true,
      mandatory,
      contentType,
      messageId,
      headers,
      type: event,
      appId: userAgent,
      timestamp: Math.floor(this.#clock.now() / 1000),
    };
    return { exchange: this.#config.exchange, routingKey: this.#config.routingKeyPrefix + event, content, options, untilConfirmed: event === 'disconnect' || event === 'presence' };
  }

  #json(event: string, s: SessionView, body: unknown, messageId: string, headers = this.#headers(event, s, false)): Publication {
    return this.#publication(event, Buffer.from(JSON.stringify(body)), 'application/json', messageId, headers);
  }

  async connect(s: SessionView): Promise<ConnectOutcome> {
    // A full buffer answers 503 before the app is asked, so an accepted client always gets its event.
    if (!this.#publisher.hasRoom()) {
      this.#log.warn({ connection: s.id }, 'event buffer full: handshake refused');
      return { ok: false, status: 503, headers: { 'content-type': 'application/json' }, body: JSON.stringify(new SwitchboardError('broker_unavailable').toJSON()) };
    }
    const outcome = await this.#webhooks.connect(s);
    if (!outcome.ok) return outcome;
    const user = outcome.effects.user ?? s.user;
    const headers = this.#headers('connect', s, true);
    if (user !== null) headers['x-switchboard-user'] = user;
    for (const [key, value] of Object.entries(outcome.effects.meta ?? {})) headers[`x-switchboard-meta-${key}`] = value;
    const body = { connection: s.id, path: s.path, query: s.query, remoteAddress: s.remoteAddress, subprotocol: s.subprotocol, user };
    // Forced: the room was checked above, and a connect must not go missing between the two.
    const [result] = this.#publisher.publish([this.#json('connect', s, body, `connect_${s.id}`, headers)], true)!;
    void result.then((r) => this.#report('connect', s.id, r));
    return outcome;
  }

  async message(s: SessionView, batch: readonly InboundMessage[]): Promise<DeliveryOutcome> {
    const pubs = batch.map((m) => {
      const key = m.id !== undefined ? `${s.id}:${m.id}` : `${s.id}:${m.seq}`;
      const headers = this.#headers('message', s, this.#replayHandshakeHeaders);
      headers['idempotency-key'] = key;
      return this.#publication('message', payloadContent(m.payload), contentTypeOf(m.payload), key, headers, true);
    });
    const results = this.#publisher.publish(pubs);
    if (results === null) {
      return nack('buffer_full', true);
    }
    return outcomeOf(await Promise.all(results));
  }

  subscribe(s: SessionView, channel: string): Promise<DeliveryOutcome> {
    return this.#webhooks.subscribe(s, channel);
  }

  async resume(s: SessionView, info: ResumeInfo): Promise<void> {
    const pub = this.#json('resume', s, { connection: s.id, user: s.user, ...info }, `resume_${s.id}_${this.#clock.now()}`);
    const results = this.#publisher.publish([pub]);
    if (results === null) {
      this.#log.warn({ connection: s.id }, 'event buffer full: resume event not published');
      return;
    }
    this.#report('resume', s.id, await results[0]);
  }

  /** At least once: held and published again until the broker confirms it. */
  async disconnect(s: SessionView, info: DisconnectInfo): Promise<void> {
    const { code, reason, durationMs, messagesIn, messagesOut, undelivered } = info;
    const pub = this.#json('disconnect', s, { connection: s.id, user: s.user, code, reason, durationMs, messagesIn, messagesOut, undelivered }, `disconnect_${s.id}`);
    const [result] = this.#publisher.publish([pub], true)!;
    this.#report('disconnect', s.id, await result);
  }

  /** A batch `{"events":[…]}`, at least once: held and published again until the broker confirms it. */
  async presence(events: readonly PresenceEvent[]): Promise<boolean> {
    if (events.length === 0) return true;
    const id = `presence_${events[0].id}`;
    const headers = { 'x-switchboard-event': 'presence', 'idempotency-key': id };
    const [result] = this.#publisher.publish([this.#publication('presence', Buffer.from(JSON.stringify({ events })), 'application/json', id, headers)], true)!;
    const outcome = await result;
    this.#report('presence', id, outcome);
    // Returned: nothing is bound for presence; like every event here, it is the broker's to route.
    return outcome === 'confirmed' || outcome === 'returned';
  }

  #report(event: string, connection: string, result: PublishResult): void {
    if (result === 'confirmed' || result === 'returned') return;
    this.#log.warn({ connection, event, result }, 'event not published');
  }
}

/** One outcome for a batch: every message must be confirmed for the batch to be accepted. */
export function outcomeOf(results: readonly PublishResult[]): DeliveryOutcome {
  if (results.every((r) => r === 'confirmed')) return { ok: true };
  if (results.includes('aborted')) return nack('shutting_down', true);
  if (results.includes('nacked')) return nack('broker_nack', true);
  if (results.includes('invalid')) return nack('too_large', false);
  return nack('unroutable', false);
}
