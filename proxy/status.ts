// What the status page shows, as JSON (`GET /v1/status`): read from the metrics text the
// control port serves at /metrics (one process's registry, or with workers all of them
// aggregated), so the page and Prometheus never disagree and nothing is counted twice.
import type { Config } from './config.js';
import type { NodeView, Views } from './views.js';
import { version } from './version.js';

/** One line of the Prometheus text format: a name, its labels and its value. */
export interface Sample {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

const escapes: Record<string, string> = { n: '\n', '\\': '\\', '"': '"' };

/** The samples of a Prometheus text exposition; comments and lines that do not parse are skipped. */
export function parseMetricsText(text: string): Sample[] {
  const samples: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})?\s+(\S+)(?:\s+-?\d+)?\s*$/.exec(line);
    if (!m) continue;
    const labels = m[2] === undefined ? {} : parseLabels(m[2]);
    const value = Number(m[3] === '+Inf' ? Infinity : m[3] === '-Inf' ? -Infinity : m[3]);
    if (labels === null || (Number.isNaN(value) && m[3] !== 'NaN')) continue;
    samples.push({ name: m[1], labels, value });
  }
  return samples;
}

/** `{a="1",b="x\"y"}` to its labels; null when it is not well formed. */
function parseLabels(text: string): Record<string, string> | null {
  const labels: Record<string, string> = {};
  const inner = text.slice(1, -1);
  const pair = /\s*([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*(?:,|$)/y;
  while (pair.lastIndex < inner.length) {
    const at = pair.lastIndex;
    const m = pair.exec(inner);
    if (!m) return inner.slice(at).trim() === '' ? labels : null;
    labels[m[1]] = m[2].replace(/\\(.)/g, (_, c: string) => escapes[c] ?? `\\${c}`);
  }
  return labels;
}

/** The samples of one metric, read by name. */
class Readings {
  readonly #byName = new Map<string, Sample[]>();

  constructor(samples: readonly Sample[]) {
    for (const s of samples) {
      const same = this.#byName.get(s.name);
      if (same) same.push(s);
      else this.#byName.set(s.name, [s]);
    }
  }

  /** Every sample of a metric. */
  all(name: string): readonly Sample[] {
    return this.#byName.get(name) ?? [];
  }

  /** The sum over every label set (0 when the metric has no samples). */
  sum(name: string, where: (labels: Readonly<Record<string, string>>) => boolean = () => true): number {
    return (this.#byName.get(name) ?? []).filter((s) => where(s.labels)).reduce((total, s) => total + s.value, 0);
  }

  /** The sums by one label's value. */
  by(name: string, label: string): Record<string, number> {
    const out: Record<string, number> = {};
    for (const s of this.#byName.get(name) ?? []) {
      const key = s.labels[label] ?? '';
      out[key] = (out[key] ?? 0) + s.value;
    }
    return out;
  }

  /**
   * A quantile of a histogram over every label set, interpolated within its bucket as
   * Prometheus's histogram_quantile does; null when nothing was observed.
   */
  quantile(name: string, q: number): number | null {
    const counts = new Map<number, number>();
    for (const s of this.#byName.get(`${name}_bucket`) ?? []) {
      const le = Number(s.labels.le === '+Inf' ? Infinity : s.labels.le);
      counts.set(le, (counts.get(le) ?? 0) + s.value);
    }
    const buckets = [...counts].sort((a, b) => a[0] - b[0]);
    const total = buckets.at(-1)?.[1] ?? 0;
    if (total === 0) return null;
    const rank = q * total;
    let lower = 0;
    let below = 0;
    for (const [le, count] of buckets) {
      if (count >= rank) {
        // Beyond the last finite bucket, all that is known is that it is more than that.
        if (le === Infinity) return lower;
        return count === below ? le : lower + (le - lower) * ((rank - below) / (count - below));
      }
      lower = le;
      below = count;
    }
    return lower;
  }
}

export interface Status {
  readonly version: string;
  readonly node: string;
  readonly appUrl: string;
  readonly upstream: string;
  readonly at: string;
  readonly state: NodeView['state'];
  readonly ready: boolean;
  readonly reason: string | null;
  readonly processes: number;
  readonly connections: {
    readonly open: number;
    readonly sessions: number;
    readonly byMode: Array<{ mode: string; transport: string; connections: number }>;
  };
  readonly messages: { readonly in: number; readonly out: number };
  readonly outbox: { readonly maxMessages: number; readonly waits: number; readonly p50: number | null; readonly p99: number | null };
  readonly dropped: { readonly total: number; readonly byReason: Record<string, number> };
  readonly webhooks: { readonly attempts: number; readonly p50Ms: number | null; readonly p99Ms: number | null; readonly failures: number; readonly waiting: number };
  readonly broker: { readonly buffered: number; readonly publishes: Record<string, number>; readonly p99Ms: number | null } | null;
  readonly cluster: { readonly nodes: NodeView[]; readonly missing: string[] } | null;
}

export interface StatusSources {
  readonly config: Readonly<Config>;
  readonly node: () => Promise<NodeView>;
  readonly ready: () => Promise<{ ready: boolean; reason?: string }>;
  readonly views: Views | null;
  readonly metricsText: () => Promise<{ contentType: string; body: string }>;
  readonly now: () => number;
}

/** An app URL without its user and password (they would be shown to whoever reads the page). */
export function shownUrl(url: string): string {
  const u = new URL(url);
  u.username = '';
  u.password = '';
  return u.href;
}

const ms = (seconds: number | null): number | null => (seconds === null ? null : Math.round(seconds * 1e6) / 1e3);

export async function readStatus(sources: StatusSources): Promise<Status> {
  const { config } = sources;
  const [node, readiness, metrics, cluster] = await Promise.all([
    sources.node(), sources.ready(), sources.metricsText(), sources.views?.nodes() ?? Promise.resolve(null),
  ]);
  const r = new Readings(parseMetricsText(metrics.body));
  const p = 'switchboard_';
  const byMode = r.all(`${p}open_connections`)
    .map((s) => ({ mode: s.labels.mode ?? '', transport: s.labels.transport ?? '', connections: s.value }))
    .filter((c) => c.connections > 0)
    .sort((a, b) => a.mode.localeCompare(b.mode) || a.transport.localeCompare(b.transport));
  const broker = config.upstream === 'amqp' || config.amqp.url !== null;
  return {
    version,
    node: node.node,
    appUrl: shownUrl(config.app.url),
    upstream: config.upstream,
    at: new Date(sources.now()).toISOString(),
    state: node.state,
    ready: readiness.ready,
    reason: readiness.ready ? null : readiness.reason ?? null,
    processes: node.processes,
    connections: { open: r.sum(`${p}connections`), sessions: r.sum(`${p}sessions`), byMode },
    messages: {
      in: r.sum(`${p}messages_total`, (l) => l.direction === 'in'),
      out: r.sum(`${p}messages_total`, (l) => l.direction === 'out'),
    },
    outbox: {
      maxMessages: config.session.outbox.maxMessages,
      waits: r.sum(`${p}outbox_messages_count`),
      p50: r.quantile(`${p}outbox_messages`, 0.5),
      p99: r.quantile(`${p}outbox_messages`, 0.99),
    },
    dropped: { total: r.sum(`${p}dropped_messages_total`), byReason: r.by(`${p}dropped_messages_total`, 'reason') },
    webhooks: {
      attempts: r.sum(`${p}webhook_duration_seconds_count`),
      p50Ms: ms(r.quantile(`${p}webhook_duration_seconds`, 0.5)),
      p99Ms: ms(r.quantile(`${p}webhook_duration_seconds`, 0.99)),
      failures: r.sum(`${p}webhook_failures_total`),
      waiting: r.sum(`${p}webhooks_waiting`),
    },
    broker: broker ? {
      buffered: r.sum(`${p}amqp_buffer_messages`),
      publishes: r.by(`${p}amqp_publish_total`, 'result'),
      p99Ms: ms(r.quantile(`${p}amqp_publish_duration_seconds`, 0.99)),
    } : null,
    cluster,
  };
}
