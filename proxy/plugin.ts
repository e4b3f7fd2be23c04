// How plugins join a sidecar: each is one record naming the capabilities it offers, and
// the composition root (switchboard.ts, workers.ts) asks each for what its process needs.
// Nothing is patched into the core after construction; the core never imports plugins/.
import type { Logger } from 'pino';
import type { Clock } from './clock.js';
import type { Config } from './config.js';
import type { ControlRoute } from './control-api.js';
import type { Metrics } from './metrics.js';
import type { Push } from './push.js';
import type { IndexKind, RegistryWatcher } from './registry.js';
import type { Relay } from './directory.js';
import type { HeldCounts } from './presence.js';
import type { PresenceOwner } from './presence-owner.js';
import type { Target } from './target.js';
import type { Effects, Upstream } from './upstream.js';
import type { Departures, Mover } from './moves.js';
import type { Question, Scatter } from './views.js';
import type { RosterEntry } from './snapshot.js';
import type { Post, Posted } from './sse-gateway.js';

/** A running piece with a lifecycle: started in order, drained and closed in reverse. */
export interface Part {
  readonly name: string;
  start(): Promise<void>;
  /** First in a drain, before sessions close: stop taking new work. */
  drain?(): Promise<void>;
  /** After the sessions have ended: finish and release. */
  close(): Promise<void>;
  /** Aborts at once. */
  destroy(): void;
  /** Null when ready; otherwise what is missing (for /readyz). */
  notReady(): string | null;
}

/** What a plugin may use of the process that holds sessions. */
export interface SessionHost {
  readonly config: Readonly<Config>;
  readonly log: Logger;
  readonly clock: Clock;
  readonly metrics: Metrics;
  readonly nodeId: string;
  /** This process, as resume tokens and connection ids name it: `<node>-<worker>`. */
  readonly self: string;
  /** Sessions of this process that another one takes over (a relay with a mover answers for them). */
  readonly departures: Departures;
  /** This process's answer to a cluster-wide question, from its own sessions. */
  answer(question: Question): unknown;
  /** The sessions held here, as the cluster roster keeps them. */
  roster(): Iterable<RosterEntry>;
  /** Applies an upstream's effects to a session of this process. */
  apply(connection: string, effects: Effects): void;
  /** The users or channels that have sessions here. */
  names(kind: IndexKind): Iterable<string>;
  /** A POST another process took for a session it believed was here (proxy/sse-gateway.ts#postHere). */
  post(id: string, post: Post): Promise<Posted | { movedTo: string } | null>;
  /** Delivery and closing in this process only: what a relay does with what reaches it. */
  deliverLocal(target: Target, push: Push): void;
  closeLocal(target: Target, code: number, reason: string): number;
  /** Presence across processes, when members are tracked: a relay carries the counts to one owner. */
  readonly presence: PresenceHost | null;
}

/** What a relay needs for presence across processes (proxy/presence-owner.ts). */
export interface PresenceHost {
  /** The owner's role, run here while this process has it. */
  readonly owner: PresenceOwner;
  /** This process's connections per (channel, user). */
  counts(): HeldCounts;
  /** How long a draining owner may take to send its last events. */
  readonly closeBudgetMs: number;
}

/** Where pushes go: the push API's directory (this process, or every worker). */
export interface PushRoute {
  route(target: Target, push: Push): Promise<{ found: boolean }>;
}

/** What a push source needs: it routes what it takes through the process's directory. */
export interface PushSourceHost {
  readonly config: Readonly<Config>;
  readonly log: Logger;
  readonly clock: Clock;
  readonly directory: PushRoute;
}

/** Carries pushes to the sessions of other processes and learns which names live here. */
export interface RelayPart extends Part {
  readonly relay: Relay;
  readonly watcher: RegistryWatcher;
  /** Carries sessions between processes, so a client resumes on any node; null when it cannot. */
  readonly mover: Mover | null;
  /** Asks every process of the cluster (cluster-wide views); null when it cannot. */
  readonly scatter: Scatter | null;
  /** Takes a POST to the process holding its session and brings its answer back; null when it cannot. */
  readonly forward: ((holder: string, id: string, post: Post) => Promise<Posted | null>) | null;
}

export interface Plugin {
  readonly name: string;
  /** The upstream, when `config.upstream` names this plugin's transport. Exactly one plugin gives it. */
  upstream?(host: SessionHost): Upstream | null;
  /** A relay to the other nodes; at most one plugin gives it. */
  relay?(host: SessionHost): RelayPart | null;
  /** Pushes taken from elsewhere (a queue); consumed once per node, by the process that serves the push API. */
  pushSource?(host: PushSourceHost): Part | null;
  /** Control-port routes. */
  routes?(config: Readonly<Config>): readonly ControlRoute[];
}

/** Refused plugin sets: two plugins with one name, or two giving the upstream or the relay. */
export class PluginError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PluginError';
  }
}

function checkNames(plugins: readonly Plugin[]): void {
  const seen = new Set<string>();
  for (const p of plugins) {
    if (seen.has(p.name)) throw new PluginError(`plugin ${JSON.stringify(p.name)} is registered twice`);
    seen.add(p.name);
  }
}

/** At most one plugin may give `what`; returns its result. */
function single<T>(plugins: readonly Plugin[], what: string, give: (p: Plugin) => T | null | undefined): T | null {
  let found: { plugin: string; value: T } | null = null;
  for (const p of plugins) {
    const value = give(p);
    if (value === null || value === undefined) continue;
    if (found) throw new PluginError(`both ${JSON.stringify(found.plugin)} and ${JSON.stringify(p.name)} give the ${what}`);
    found = { plugin: p.name, value };
  }
  return found?.value ?? null;
}

/** The parts a process that holds sessions runs: its upstream and the relay. */
export function sessionParts(plugins: readonly Plugin[], host: SessionHost): { upstream: Upstream; relay: RelayPart | null } {
  checkNames(plugins);
  const upstream = single(plugins, 'upstream', (p) => p.upstream?.(host));
  if (upstream === null) throw new PluginError(`no plugin gives the upstream ${JSON.stringify(host.config.upstream)}`);
  return { upstream, relay: single(plugins, 'cluster relay', (p) => p.relay?.(host)) };
}

/** The push sources of a process that serves the push API. */
export function pushSources(plugins: readonly Plugin[], host: PushSourceHost): Part[] {
  checkNames(plugins);
  return plugins.map((p) => p.pushSource?.(host) ?? null).filter((s): s is Part => s !== null);
}

/** Every plugin's control routes (the control API refuses one method and path twice). */
export function pluginRoutes(plugins: readonly Plugin[], config: Readonly<Config>): ControlRoute[] {
  checkNames(plugins);
  return plugins.flatMap((p) => p.routes?.(config) ?? []);
}

/**
 * Parts in a fixed order: started first to last; drained and closed last to first, so a
 * part never outlives what it depends on. Shared by the sidecar and the workers' primary.
 */
export class Parts {
  readonly #parts: Part[] = [];
  readonly #log: Logger;

  constructor(log: Logger) {
    this.#log = log;
  }

  add(part: Part): void {
    this.#parts.push(part);
  }

  async start(): Promise<void> {
    for (const part of this.#parts) await part.start();
  }

  /** Each part's drain, within `ms` each; a failure is logged, not thrown. */
  async drain(ms: number): Promise<void> {
    for (const part of [...this.#parts].reverse()) {
      if (!part.drain) continue;
      await withDeadline(part.drain(), ms, `${part.name} drain`).catch((err: unknown) =>
        this.#log.warn({ part: part.name, err: (err as Error).message }, 'drain step failed'));
    }
  }

  /** Closes each part, last first, all within `ms`; throws when the deadline passes. */
  async close(ms: number, now: () => number): Promise<void> {
    const deadline = now() + ms;
    for (const part of [...this.#parts].reverse()) await withDeadline(part.close(), deadline - now(), `${part.name} close`);
  }

  destroy(): void {
    for (const part of [...this.#parts].reverse()) part.destroy();
  }

  notReady(): string | null {
    for (const part of this.#parts) {
      const reason = part.notReady();
      if (reason !== null) return reason;
    }
    return null;
  }
}

export function withDeadline<T>(work: Promise<T>, ms: number, what = 'work'): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`${what}: drain deadline passed`)), Math.max(0, ms));
    t.unref();
    work.then((v) => { clearTimeout(t); resolve(v); }, (e: unknown) => { clearTimeout(t); reject(e as Error); });
  });
}
