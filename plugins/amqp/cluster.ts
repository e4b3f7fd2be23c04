// Several Switchboard nodes sharing one RabbitMQ (`cluster.amqp.url`): a push on any
// node's API reaches the right sockets on every node.
//
// Each node declares an exclusive, auto-delete queue bound to the topic exchange
// `cluster.amqp.exchange` with exactly the keys it has recipients for:
//   all                     every node (broadcasts, closes of everyone)
//   node.<nodeId>           connections held by this node: connection ids start with
//                           `<nodeId>-`, so a push to one connection goes to its node only
//   user.<escaped name>     bound while a session of that user is held here
//   channel.<escaped name>  bound while a session here is subscribed to it
// Names are escaped (base64url, so dots, `*` and `#` cannot act as topic syntax; a hash
// for long names, as routing keys hold at most 255 bytes). Bindings follow the registry:
// bound on the first local session, unbound on the last, all re-declared on reconnect.
//
// A node delivers locally before publishing, so it ignores its own publications; a
// connection push is published only when the connection is another node's.
import { createHash, randomBytes } from 'node:crypto';
import type { Channel, ChannelModel, ConfirmChannel, ConsumeMessage, Options } from 'amqplib';
import type { Logger } from 'pino';
import type { Clock } from '../../proxy/clock.js';
import { SwitchboardError } from '../../proxy/errors.js';
import { Push, type MessageClass } from '../../proxy/push.js';
import type { IndexKind, RegistryWatcher } from '../../proxy/registry.js';
import type { Relay } from '../../proxy/directory.js';
import type { SessionHost } from '../../proxy/plugin.js';
import { fail, ok, type Result } from '../../proxy/result.js';
import { nameOf, targetOf, unreachable, type Target } from '../../proxy/target.js';
import type { Payload } from '../../proxy/payload.js';
import { BrokerConnection } from './connection.js';
import type { Backoff } from '../../proxy/backoff.js';
import { payloadContent } from './upstream.js';
import { MAX_ROUTING_NAME } from '../../proxy/limits.js';

export interface ClusterOptions {
  readonly url: string;
  readonly exchange: string;
  readonly nodeId: string;
  readonly reconnect: Backoff;
}

export type ClusterDeps = Pick<SessionHost, 'log' | 'clock' | 'names' | 'deliverLocal' | 'closeLocal'>;

// ── routing keys ──────────────────────────────────────────────────────────────

// Longer escaped names (MAX_ROUTING_NAME) are replaced by their hash (`~` is not in the base64url alphabet).

export function escapeName(name: string): string {
  const b64 = Buffer.from(name, 'utf8').toString('base64url');
  return b64.length <= MAX_ROUTING_NAME ? b64 : `~${createHash('sha256').update(name, 'utf8').digest('base64url')}`;
}

/** The node a connection id names; null when the id has no node part. */
export function nodeOf(connection: string): string | null {
  const m = /^([a-z0-9]+)-/.exec(connection);
  return m ? m[1] : null;
}

export function bindingKey(kind: IndexKind, name: string): string {
  return `${kind}.${escapeName(name)}`;
}

export function routingKey(target: Target): string {
  switch (target.kind) {
    case 'connection': return `node.${nodeOf(target.id) ?? escapeName(target.id)}`;
    case 'user':
    case 'channel': return bindingKey(target.kind, target.name);
    case 'all': return 'all';
    default: return unreachable(target);
  }
}

// ── wire format ───────────────────────────────────────────────────────────────
// A push travels as its payload bytes; everything else is in headers. The TTL travels as
// the time left (clocks of nodes may differ) and as the AMQP expiration, so the broker
// drops a push that expired in a queue.

export type ClusterMessage =
  | { readonly type: 'push'; readonly origin: string; readonly target: Target; readonly push: Push }
  | { readonly type: 'close'; readonly origin: string; readonly target: Target; readonly code: number; readonly reason: string };

function targetHeaders(target: Target): Record<string, string> {
  const name = nameOf(target);
  return name === null ? { 'x-switchboard-to': target.kind } : { 'x-switchboard-to': target.kind, 'x-switchboard-name': name };
}

export function encodePush(origin: string, target: Target, push: Push, now: number): { content: Buffer; options: Options.Publish } {
  const headers: Record<string, string> = {
    'x-switchboard-origin': origin,
    ...targetHeaders(target),
    'x-switchboard-kind': push.payload.kind,
    'x-switchboard-class': push.class,
  };
  if (push.coalesceKey !== null) headers['x-switchboard-coalesce-key'] = push.coalesceKey;
  const options: Options.Publish = { type: 'push', headers, persistent: false };
  if (Number.isFinite(push.expiresAt)) {
    const left = Math.max(1, Math.ceil(push.expiresAt - now));
    headers['x-switchboard-ttl-ms'] = String(left);
    options.expiration = String(left);
  }
  return { content: payloadContent(push.payload), options };
}

export function encodeClose(origin: string, target: Target, code: number, reason: string): { content: Buffer; options: Options.Publish } {
  return {
    content: Buffer.alloc(0),
    options: {
      type: 'close', persistent: false,
      headers: { 'x-switchboard-origin': origin, ...targetHeaders(target), 'x-switchboard-code': String(code), 'x-switchboard-reason': reason },
    },
  };
}

function text(value: unknown): string | undefined {
  if (typeof value === 'string') return value;
  if (Buffer.isBuffer(value)) return value.toString('utf8');
  return undefined;
}

export function decodeMessage(content: Buffer, type: unknown, headers: Record<string, unknown>, now: number): Result<ClusterMessage> {
  const origin = text(headers['x-switchboard-origin']);
  const to = text(headers['x-switchboard-to']);
  const name = text(headers['x-switchboard-name']);
  if (origin === undefined) return fail('no origin');
  const target = targetOf(to, name);
  if (target === null) return fail(`bad target ${JSON.stringify(to)}`);
  if (type === 'close') {
    const code = Number(text(headers['x-switchboard-code']));
    if (!Number.isInteger(code)) return fail('bad close code');
    return ok({ type: 'close', origin, target, code, reason: text(headers['x-switchboard-reason']) ?? '' });
  }
  if (type !== 'push') return fail(`unknown type ${JSON.stringify(type)}`);
  const kind = text(headers['x-switchboard-kind']);
  let payload: Payload;
  if (kind === 'binary') payload = { kind: 'binary', data: content };
  else if (kind === 'text') payload = { kind: 'text', text: content.toString('utf8') };
  else if (kind === 'json') payload = { kind: 'json', json: content.toString('utf8') };
  else return fail(`bad payload kind ${JSON.stringify(kind)}`);
  const cls = text(headers['x-switchboard-class']);
  const ttl = text(headers['x-switchboard-ttl-ms']);
  const push = new Push(payload, {
    class: cls === 'lossy' ? 'lossy' : 'durable' satisfies MessageClass,
    coalesceKey: text(headers['x-switchboard-coalesce-key']) ?? null,
    expiresAt: ttl !== undefined && /^\d+$/.test(ttl) ? now + Number(ttl) : Infinity,
  });
  return ok({ type: 'push', origin, target, push });
}

// ── the cluster link ──────────────────────────────────────────────────────────

export class Cluster implements RegistryWatcher {
  readonly relay: Relay;
  readonly #options: ClusterOptions;
  readonly #deps: ClusterDeps;
  readonly #log: Logger;
  readonly #broker: BrokerConnection;
  readonly #queue: string;
  /** Bindings and consumption. */
  #channel: Channel | null = null;
  /** Publications, confirmed. */
  #publisher: ConfirmChannel | null = null;

  constructor(options: ClusterOptions, deps: ClusterDeps) {
    this.#options = options;
    this.#deps = deps;
    this.#log = deps.log.child({ cluster: options.exchange });
    // Named for `rabbitmqctl list_queues`; the suffix keeps two processes of one node apart.
    this.#queue = `${options.exchange}.${options.nodeId}.${randomBytes(4).toString('hex')}`;
    this.#broker = new BrokerConnection({
      url: options.url,
      name: `switchboard cluster ${options.nodeId}`,
      reconnect: options.reconnect,
      log: this.#log,
      clock: deps.clock,
      setup: (model) => this.#setup(model),
      lost: () => {
        this.#channel = null;
        this.#publisher = null;
      },
    });
    const prefix = `${options.nodeId}-`;
    this.relay = {
      // An id without a node part is looked up here (and is not found).
      isLocal: (connection) => connection.startsWith(prefix) || nodeOf(connection) === null,
      publish: (target, push) => this.#publish(target, encodePush(options.nodeId, target, push, deps.clock.now())),
      close: (target, code, reason) => this.#publish(target, encodeClose(options.nodeId, target, code, reason)),
    };
  }

  get queue(): string {
    return this.#queue;
  }

  async #setup(model: ChannelModel): Promise<void> {
    const { exchange, nodeId } = this.#options;
    const ch = await model.createChannel();
    const pub = await model.createConfirmChannel();
    for (const c of [ch, pub]) {
      c.on('error', (err: Error) => this.#log.warn({ err: err.message }, 'cluster channel error'));
      c.on('close', () => this.#broker.fail(model, new Error('cluster channel closed')));
    }
    await ch.assertExchange(exchange, 'topic', { durable: true });
    await ch.assertQueue(this.#queue, { exclusive: true, autoDelete: true, durable: false });
    await ch.consume(this.#queue, (msg) => {
      if (msg === null) this.#broker.fail(model, new Error('cluster consumer cancelled by the broker'));
      else this.#receive(msg);
    }, { noAck: true, exclusive: true });
    // From here on, registry changes bind and unbind on this channel, queued after these
    // bindings of the current state: the channel runs its operations in order.
    this.#channel = ch;
    this.#publisher = pub;
    const keys = ['all', `node.${nodeId}`];
    for (const kind of ['user', 'channel'] as const) {
      for (const name of this.#deps.names(kind)) keys.push(bindingKey(kind, name));
    }
    await Promise.all(keys.map((key) => ch.bindQueue(this.#queue, exchange, key)));
    this.#log.info({ queue: this.#queue, bindings: keys.length }, 'cluster queue bound');
  }

  start(): Promise<void> {
    return this.#broker.start();
  }

  ready(): boolean {
    return this.#broker.up;
  }

  /** Closing the connection deletes the exclusive queue and its bindings. */
  close(): Promise<void> {
    return this.#broker.close();
  }

  destroy(): void {
    this.#broker.destroy();
  }

  // ── registry watcher ────────────────────────────────────────────────────────

  first(kind: IndexKind, name: string): void {
    this.#bind(kind, name, true);
  }

  last(kind: IndexKind, name: string): void {
    this.#bind(kind, name, false);
  }

  #bind(kind: IndexKind, name: string, bound: boolean): void {
    const ch = this.#channel;
    // While disconnected, nothing to do: the next connection binds the registry as it is then.
    if (!ch) return;
    const key = bindingKey(kind, name);
    const op = bound ? ch.bindQueue(this.#queue, this.#options.exchange, key) : ch.unbindQueue(this.#queue, this.#options.exchange, key);
    op.catch((err: unknown) => this.#log.debug({ err: (err as Error).message, key, bound }, 'cluster binding change failed (reconnect re-declares)'));
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
}
