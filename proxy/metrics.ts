// The metrics named in the contract, on a registry of their own so that several
// sidecars can live in one process (tests) without sharing counters.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export type Metrics = ReturnType<typeof createMetrics>;

export interface MetricsOptions {
  /** Node's default process metrics (default true). */
  readonly defaults?: boolean;
  /** The presence event metrics (default true); a worker leaves them to its primary. */
  readonly presence?: boolean;
}

export function createMetrics(options: MetricsOptions = {}) {
  const m = createCollectors(options);
  // Label children for the per-frame counters, bound once: the hot path pays no label lookup.
  return {
    ...m,
    frames: {
      in: { raw: m.messagesTotal.labels('in', 'raw'), reliable: m.messagesTotal.labels('in', 'reliable') },
      out: { raw: m.messagesTotal.labels('out', 'raw'), reliable: m.messagesTotal.labels('out', 'reliable') },
    },
    bytes: { in: m.bytesTotal.labels('in'), out: m.bytesTotal.labels('out') },
  };
}

function createCollectors(options: MetricsOptions) {
  const registry = new Registry();
  if (options.defaults !== false) collectDefaultMetrics({ register: registry, prefix: 'switchboard_' });
  const registers = [registry];
  const p = 'switchboard_';
  return {
    registry,
    connections: new Gauge({ name: `${p}connections`, help: 'Open client connections', registers }),
    sessions: new Gauge({ name: `${p}sessions`, help: 'Sessions held, attached or detached', registers }),
    connectionsTotal: new Counter({ name: `${p}connections_total`, help: 'Handshakes by result', labelNames: ['result'] as const, registers }),
    disconnectionsTotal: new Counter({ name: `${p}disconnections_total`, help: 'Closed connections by close code', labelNames: ['code'] as const, registers }),
    messagesTotal: new Counter({ name: `${p}messages_total`, help: 'Messages by direction and mode', labelNames: ['direction', 'mode'] as const, registers }),
    bytesTotal: new Counter({ name: `${p}bytes_total`, help: 'Payload bytes by direction', labelNames: ['direction'] as const, registers }),
    outboxMessages: new Histogram({
      name: `${p}outbox_messages`,
      help: 'Outbox depth seen each time a push had to wait in it',
      buckets: [1, 4, 16, 64, 256, 1024, 4096],
      registers,
    }),
    droppedMessagesTotal: new Counter({ name: `${p}dropped_messages_total`, help: 'Messages dropped by reason', labelNames: ['reason'] as const, registers }),
    webhookDuration: new Histogram({
      name: `${p}webhook_duration_seconds`,
      help: 'Webhook attempts by event and status',
      labelNames: ['event', 'status'] as const,
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    }),
    webhookFailuresTotal: new Counter({ name: `${p}webhook_failures_total`, help: 'Webhooks that failed for good', labelNames: ['event'] as const, registers }),
    webhookAnswersTooLargeTotal: new Counter({ name: `${p}webhook_answers_too_large_total`, help: '2xx webhook answers larger than limits.maxMessageBytes (not retried)', labelNames: ['event'] as const, registers }),
    webhooksWaiting: new Gauge({ name: `${p}webhooks_waiting`, help: 'At-least-once webhooks (disconnect) waiting to be tried again', labelNames: ['event'] as const, registers }),
    // With workers the primary keeps the members and sends the events: its registry has these instead.
    ...presenceCollectors(options.presence === false ? [] : registers),
    resumesTotal: new Counter({ name: `${p}resumes_total`, help: 'Resume attempts by result', labelNames: ['result'] as const, registers }),
    sessionMovesTotal: new Counter({ name: `${p}session_moves_total`, help: 'Reliable sessions moved between processes, by direction (in, out) and result', labelNames: ['direction', 'result'] as const, registers }),
    rosterChangesTotal: new Counter({ name: `${p}roster_changes_total`, help: 'Cluster roster changes (sessions added, changed, gone) by result: confirmed by the broker, or not', labelNames: ['result'] as const, registers }),
    frameErrorsTotal: new Counter({ name: `${p}frame_errors_total`, help: 'Malformed client frames by error', labelNames: ['error'] as const, registers }),
    amqpPublishDuration: new Histogram({
      name: `${p}amqp_publish_duration_seconds`,
      help: 'Publish to publisher confirm',
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5],
      registers,
    }),
    amqpPublishTotal: new Counter({ name: `${p}amqp_publish_total`, help: 'AMQP publishes by result', labelNames: ['result'] as const, registers }),
    amqpBufferMessages: new Gauge({ name: `${p}amqp_buffer_messages`, help: 'Events waiting for the broker', registers }),
  };
}

/**
 * `switchboard_open_connections{mode,transport}`: switchboard_connections split by mode and
 * transport, counted from the sessions when scraped, so the hot path keeps nothing in step.
 */
export function countOpenConnections(metrics: Metrics, sessions: () => Iterable<{ readonly mode: string; readonly transport: string | null }>): void {
  new Gauge({
    name: 'switchboard_open_connections',
    help: 'Open client connections by mode and transport, counted when scraped',
    labelNames: ['mode', 'transport'] as const,
    registers: [metrics.registry],
    collect() {
      this.reset();
      for (const s of sessions()) if (s.transport !== null) this.inc({ mode: s.mode, transport: s.transport });
    },
  });
}

export type PresenceMetrics = ReturnType<typeof presenceCollectors>;

/** The presence event metrics, on the registry of the process that sends the events. */
export function presenceCollectors(registers: Registry[]) {
  const p = 'switchboard_';
  return {
    presenceEventsTotal: new Counter({ name: `${p}presence_events_total`, help: 'Presence events by result: delivered (the app took them), given_up (retries exhausted or shutdown), dropped (presence.maxPending full)', labelNames: ['result'] as const, registers }),
    presenceEventsPending: new Gauge({ name: `${p}presence_events_pending`, help: 'Presence events queued or being delivered', registers }),
  };
}
