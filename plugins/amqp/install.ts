// Wires the RabbitMQ parts that are not the upstream into a sidecar: the cluster link
// (`cluster.amqp.url`) and the push-queue consumer (`amqp.url` with `amqp.pushQueue`).
// Both join the sidecar's fixed start and close order and its readiness.
import type { Logger } from 'pino';
import type { Clock } from '../../proxy/clock.js';
import type { Config } from '../../proxy/config.js';
import type { Registry } from '../../proxy/registry.js';
import type { Router } from '../../proxy/router.js';
import type { Target } from '../../proxy/target.js';
import { Cluster } from './cluster.js';
import { PushQueueConsumer, type PushRoute } from './push-queue.js';

/** What the wiring needs of a sidecar (structural, so this module does not import it). */
export interface AmqpHost {
  readonly config: Readonly<Config>;
  readonly log: Logger;
  readonly clock: Clock;
  readonly nodeId: string;
  readonly registry: Registry;
  readonly router: Router;
  readonly directory: PushRoute & { closeLocal(target: Target, code: number, reason: string): number };
  onStart(hook: () => Promise<void>): void;
  /** Runs first in a drain, before sessions close: stop taking new work. */
  onDrain(hook: () => Promise<void>): void;
  onClose(hook: () => Promise<void>): void;
  addReadiness(check: () => string | null): void;
}

export interface InstallOptions {
  /**
   * Consume the push queue in this process. With several workers, the primary consumes it
   * through its directory of every worker, so workers pass false.
   */
  readonly pushQueue: boolean;
}

export interface Installed {
  readonly cluster: Cluster | null;
  readonly pushQueue: PushQueueConsumer | null;
  /** Aborts both (for a sidecar's destroy). */
  destroy(): void;
}

export function installAmqp(host: AmqpHost, options: InstallOptions): Installed {
  const { config } = host;
  let cluster: Cluster | null = null;
  let consumer: PushQueueConsumer | null = null;

  if (config.cluster.amqp.url !== null) {
    const c = new Cluster({
      url: config.cluster.amqp.url,
      exchange: config.cluster.amqp.exchange,
      nodeId: host.nodeId,
      reconnect: config.amqp.reconnect,
    }, {
      log: host.log,
      clock: host.clock,
      registry: host.registry,
      router: host.router,
      closeLocal: (target, code, reason) => host.directory.closeLocal(target, code, reason),
    });
    host.router.relay = c.relay;
    host.registry.watcher = c;
    host.onStart(() => c.start());
    host.onClose(() => c.close());
    host.addReadiness(() => (c.ready() ? null : 'cluster broker is not connected'));
    cluster = c;
  }

  if (options.pushQueue) consumer = installPushQueue(host.config, host);

  return {
    cluster,
    pushQueue: consumer,
    destroy: () => {
      cluster?.destroy();
      consumer?.destroy();
    },
  };
}

/** The push-queue consumer on its own, for a process that routes through another directory. */
export function installPushQueue(
  config: Readonly<Config>,
  host: Pick<AmqpHost, 'log' | 'clock' | 'onStart' | 'onDrain' | 'addReadiness'> & { readonly directory: PushRoute },
): PushQueueConsumer | null {
  const { url, pushQueue } = config.amqp;
  if (url === null || pushQueue === null) return null;
  const consumer = new PushQueueConsumer({
    url,
    queue: pushQueue,
    deadLetterExchange: config.amqp.deadLetterExchange,
    prefetch: config.amqp.prefetch,
    reconnect: config.amqp.reconnect,
    maxItemBytes: config.limits.maxMessageBytes,
  }, { log: host.log, clock: host.clock, routes: host.directory });
  host.onStart(() => consumer.start());
  // Pushes taken during a drain would reach sessions about to close: stop taking them first.
  host.onDrain(() => consumer.close());
  host.addReadiness(() => (consumer.ready() ? null : 'push queue broker is not connected'));
  return consumer;
}
