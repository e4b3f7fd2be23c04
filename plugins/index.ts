// Builds the upstream a config names. Each transport and dialect gets only its slice.
import type { Logger } from 'pino';
import type { Clock } from '../proxy/clock.js';
import type { Config } from '../proxy/config.js';
import type { Metrics } from '../proxy/metrics.js';
import type { Effects, Upstream } from '../proxy/upstream.js';
import { AmqpUpstream } from './amqp/upstream.js';
import { NativeWebhooks } from './webhook/native.js';
import { WebSocketOverHttp } from './websocket-over-http/dialect.js';
import { WebhookSender } from './webhook/sender.js';

export { controlRoutes } from './routes.js';

export interface PluginDeps {
  readonly log: Logger;
  readonly metrics: Metrics;
  readonly clock: Clock;
  apply(connection: string, effects: Effects): void;
}

export function createWebhookSender(config: Readonly<Config>, deps: PluginDeps): WebhookSender {
  const w = config.webhooks;
  return new WebhookSender({
    url: config.app.url,
    timeoutMs: w.timeoutMs,
    connections: w.connections,
    retry: w.retry,
    secret: w.secret,
    maxResponseBytes: config.limits.maxMessageBytes,
  }, deps);
}

export function createUpstream(config: Readonly<Config>, deps: PluginDeps): Upstream {
  const host = { log: deps.log, apply: deps.apply };
  switch (config.upstream) {
    case 'webhook':
      return config.webhooks.dialect === 'websocket-over-http'
        ? new WebSocketOverHttp(config, createWebhookSender(config, deps), host, deps)
        : new NativeWebhooks(config.webhooks, createWebhookSender(config, deps), host, deps);
    case 'amqp':
      // Events go to RabbitMQ; the handshake and subscriptions are still decided by the
      // native connect/subscribe webhooks when their paths are set.
      return new AmqpUpstream(config, new NativeWebhooks(config.webhooks, createWebhookSender(config, deps), host, deps), deps);
  }
}
