// RabbitMQ, as a plugin: the amqp upstream (`upstream: amqp`), the cluster relay
// (`cluster.amqp.url`) and the push-queue consumer (`amqp.url` with `amqp.pushQueue`).
import type { Part, Plugin, PushSourceHost, RelayPart, SessionHost } from '../../proxy/plugin.js';
import { NativeWebhooks } from '../webhook/native.js';
import { createWebhookSender } from '../webhook/plugin.js';
import { Cluster } from './cluster.js';
import { PushQueueConsumer } from './push-queue.js';
import { AmqpUpstream } from './upstream.js';

function cluster(host: SessionHost): RelayPart | null {
  const { config } = host;
  if (config.cluster.amqp.url === null) return null;
  const c = new Cluster({
    url: config.cluster.amqp.url,
    exchange: config.cluster.amqp.exchange,
    nodeId: host.nodeId,
    self: host.self,
    reconnect: config.amqp.reconnect,
    transferTimeoutMs: config.cluster.transferTimeoutMs,
    heartbeatMs: config.cluster.heartbeatMs,
    queryTimeoutMs: config.cluster.queryTimeoutMs,
    // A forwarded POST waits for the app's answers to what it carries: every attempt of a webhook, and a move's time.
    postTimeoutMs: config.webhooks.timeoutMs * config.webhooks.retry.maxAttempts + config.cluster.transferTimeoutMs,
  }, host);
  return {
    name: 'cluster relay',
    relay: c.relay,
    watcher: c,
    mover: c.mover,
    scatter: c.scatter,
    forward: (holder, id, post) => c.forward(holder, id, post),
    start: () => c.start(),
    drain: async () => c.leaving(),
    close: () => c.close(),
    destroy: () => c.destroy(),
    notReady: () => (c.ready() ? null : 'cluster broker is not connected'),
  };
}

function pushQueue(host: PushSourceHost): Part | null {
  const { config } = host;
  const { url, pushQueue: queue } = config.amqp;
  if (url === null || queue === null) return null;
  const consumer = new PushQueueConsumer({
    url,
    queue,
    deadLetterExchange: config.amqp.deadLetterExchange,
    prefetch: config.amqp.prefetch,
    reconnect: config.amqp.reconnect,
    maxItemBytes: config.limits.maxMessageBytes,
  }, { log: host.log, clock: host.clock, routes: host.directory });
  return {
    name: 'push queue',
    start: () => consumer.start(),
    // Pushes taken during a drain would reach sessions about to close: stop taking them first.
    drain: () => consumer.close(),
    close: () => consumer.close(),
    destroy: () => consumer.destroy(),
    notReady: () => (consumer.ready() ? null : 'push queue broker is not connected'),
  };
}

export const amqpPlugin: Plugin = {
  name: 'amqp',
  // Events go to RabbitMQ; the handshake and subscriptions are still decided by the native
  // connect/subscribe webhooks when their paths are set.
  upstream: (host) => (host.config.upstream === 'amqp'
    ? new AmqpUpstream(host.config, new NativeWebhooks(host.config.webhooks, createWebhookSender(host.config, host), host, host), host)
    : null),
  relay: cluster,
  pushSource: pushQueue,
};
