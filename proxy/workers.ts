// `workers: N`: N processes run the client pipeline on the shared public port (node:cluster);
// the primary owns the control port and reaches the workers' sessions over IPC, so the
// push API answers exactly as with one process. A crashed worker is restarted and counted.
import cluster, { type Worker } from 'node:cluster';
import { createServer, type Server } from 'node:http';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { AggregatorRegistry, Counter, Registry as MetricsRegistry } from 'prom-client';
import type { Logger } from 'pino';
import { cpus } from 'node:os';
import { PortInUseError, listen, parseAddress } from './address.js';
import type { Config } from './config.js';
import { systemClock } from './clock.js';
import { createControlApi, createMetricsApi } from './control-api.js';
import { addCounts, zeroCounts, type Directory, type ListQuery, type Page, type RouteResult, type SessionInfo } from './directory.js';
import { createLogger } from './log.js';
import { createMetrics, presenceCollectors } from './metrics.js';
import type { HandedRequest, Switchboard } from './switchboard.js';
import { Socket } from 'node:net';
import { Push, PushIds } from './push.js';
import { parseConnectionId } from './target.js';
import type { Target } from './target.js';
import { Parts, pluginRoutes, pushSources, type Plugin } from './plugin.js';
import { ExitCode, SwitchboardError } from './errors.js';
import { onStopSignals } from './signals.js';
import { decodeCursors, type ProcessStatus, type Views } from './views.js';
import { mergeMembers, mergeUser, type MembersAnswer, type UserPresence } from './presence-query.js';
import { holdsOf, type PresenceEvent } from './presence.js';
import { presenceFrames } from './presence-frames.js';
import { workerForward, workerMover, type MoveOp } from './worker-moves.js';
import { forwardMembers, PrimaryPresence, WorkerGoneError, type MembersEndedMessage, type MembersMessage } from './worker-presence.js';

/** The environment variable that carries the primary's validated config to its workers. */
export const WORKER_CONFIG = 'SWITCHBOARD_WORKER_CONFIG';

/**
 * Members are tracked for the presence webhook or for presence frames, and counted in the primary;
 * in a cluster each worker sends its own to the cluster's owner (proxy/presence-owner.ts) instead.
 */
const presenceTracked = (config: Readonly<Config>): boolean =>
  (config.webhooks.paths.presence !== null || config.presence.frames.length > 0) && config.cluster.amqp.url === null;

export function workerCount(config: Config): number {
  return config.workers === 'auto' ? Math.max(1, cpus().length) : config.workers;
}

/**
 * V8's young generation for workers: 4 MiB semi-spaces instead of V8's default (up to 16 MiB),
 * unless the operator chose a size (NODE_OPTIONS or node flags). Workers exist to hold many
 * connections; this saves ~12 MiB per worker for a few percent of CPU (docs/BENCHMARKS.md).
 */
export const WORKER_SEMI_SPACE_FLAG = '--max-semi-space-size=4';

function workerExecArgv(): string[] {
  const chosen = [...process.execArgv, process.env.NODE_OPTIONS ?? ''].some((a) => a.includes('semi-space-size'));
  return chosen ? process.execArgv : [...process.execArgv, WORKER_SEMI_SPACE_FLAG];
}

/** How the process ends: cli.ts owns it (the only module that exits the process). */
export type Exit = (code: number) => never;

/** Runs as primary or worker when `workers` is more than 1; false when one process will do. */
export async function runWorkers(config: Readonly<Config>, plugins: readonly Plugin[], exit: Exit): Promise<boolean> {
  if (cluster.isWorker) {
    await runWorker(config, plugins, exit);
    return true;
  }
  const n = workerCount(config);
  if (n <= 1) return false;
  await runPrimary(config, n, plugins, exit);
  return true;
}

// ── IPC messages ───────────────────────────────────────────────────────────────

type Op =
  | { op: 'route'; target: Target; push: WirePush; relay: boolean }
  | { op: 'close'; target: Target; code: number; reason: string; relay: boolean }
  | { op: 'info'; connection: string }
  | { op: 'list'; query: ListQuery }
  | { op: 'channelSize'; channel: string }
  | { op: 'members'; channel: string; after: string | undefined; limit: number }
  | { op: 'userPresence'; user: string }
  | { op: 'setChannel'; connection: string; channel: string; subscribed: boolean }
  | { op: 'sessions' }
  | { op: 'presence'; events: readonly PresenceEvent[] }
  | MoveOp
  | { op: 'ready' }
  | { op: 'status' }
  | { op: 'view'; name: ViewName; args: unknown[] };

type ViewName = 'info' | 'list' | 'channelSize' | 'members' | 'user' | 'close' | 'setChannel' | 'nodes';

interface Call { sbCall: number; body: Op }
/** A resume handshake on its way to the worker that holds the session (the socket travels with it). */
interface Handoff { sb: 'handoff'; to: number; request: HandedRequest; head: string }
interface Reply { sbReply: number; result?: unknown; error?: string }
/** Worker → primary → worker `to`: a session move between two workers (proxy/worker-moves.ts). */
interface Ask { sbAsk: number; to: number; body: MoveOp }
interface AskAnswer { sbAnswer: number; result?: unknown; error?: string }

/** A push as it crosses a process boundary (advanced serialization keeps Buffers). */
export interface WirePush {
  payload: Push['payload'];
  class: Push['class'];
  coalesceKey: string | null;
  expiresAt: number;
  id: string | null;
  type: Push['type'];
}

export const toWire = (p: Push): WirePush => ({ payload: p.payload, class: p.class, coalesceKey: p.coalesceKey, expiresAt: p.expiresAt, id: p.id, type: p.type });
export const fromWire = (w: WirePush): Push => new Push(w.payload, { class: w.class, coalesceKey: w.coalesceKey, expiresAt: w.expiresAt, id: w.id, type: w.type });

// ── worker ─────────────────────────────────────────────────────────────────────

async function runWorker(config: Readonly<Config>, plugins: readonly Plugin[], exit: Exit): Promise<void> {
  const index = Number(process.env.SWITCHBOARD_WORKER_INDEX ?? 0);
  // Loaded here, not at the top: the primary never runs a client pipeline.
  const { Switchboard } = await import('./switchboard.js');
  // The node's members are counted in the primary: this worker's changes go there.
  const members = presenceTracked(config) ? forwardMembers((m) => process.send!(m)) : null;
  // Without a cluster broker, a session another worker holds comes here through the primary.
  const asks = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void; timer: NodeJS.Timeout }>();
  let nextAsk = 0;
  // A forwarded POST waits for the app's answers to what it carries: every attempt of a webhook, and a move's time.
  const postWaitMs = config.webhooks.timeoutMs * config.webhooks.retry.maxAttempts + config.cluster.transferTimeoutMs;
  const ask = (to: number, body: MoveOp): Promise<unknown> => new Promise((resolve, reject) => {
    const id = ++nextAsk;
    const waitMs = body.op === 'post' ? postWaitMs : config.cluster.transferTimeoutMs;
    const timer = setTimeout(() => {
      asks.delete(id);
      reject(new Error(`worker ${to} did not answer in ${waitMs} ms`));
    }, waitMs);
    asks.set(id, { resolve, reject, timer });
    process.send!({ sbAsk: id, to, body } satisfies Ask);
  });
  const self = `${config.nodeId}-${index}`;
  const asking = config.cluster.amqp.url !== null || config.nodeId === null ? null : { nodeId: config.nodeId, self, ask };
  const mover = asking === null ? undefined : workerMover({ ...asking, before: () => members?.flush() });
  const sb = new Switchboard(config, {
    plugins,
    worker: index,
    control: false,
    // In a cluster a worker may be the presence owner: its event metrics are its own, summed by the primary.
    metrics: createMetrics({ presence: config.cluster.amqp.url !== null }),
    presence: members ?? undefined,
    mover,
    forward: asking === null ? undefined : workerForward(asking),
    // A resume for a session of another worker: the socket goes there through the primary.
    handoff: (to, req, socket, head) => {
      const message: Handoff = { sb: 'handoff', to, request: { method: req.method ?? 'GET', url: req.url ?? '/', headers: req.headers }, head: head.toString('base64') };
      process.send!(message, socket);
      return true;
    },
  });
  AggregatorRegistry.setRegistries([sb.metrics.registry]);
  // Constructing one installs prom-client's answer to the primary's metric requests.
  new AggregatorRegistry();
  // The primary coordinates shutdown; a signal to the process group must not stop workers early.
  process.on('SIGTERM', () => {});
  process.on('SIGINT', () => {});
  process.on('disconnect', () => {
    sb.destroy();
    exit(ExitCode.failed);
  });
  process.on('message', (message: unknown, handle: unknown) => {
    const m = message as Partial<Call> & Partial<AskAnswer> & { sb?: string };
    if (typeof m.sbAnswer === 'number') {
      const pending = asks.get(m.sbAnswer);
      if (!pending) return; // timed out
      asks.delete(m.sbAnswer);
      clearTimeout(pending.timer);
      if (m.error !== undefined) pending.reject(new Error(m.error));
      else pending.resolve(m.result ?? null);
      return;
    }
    if (m.sb === 'handoff') {
      const h = message as Handoff;
      if (handle instanceof Socket) sb.adopt(h.request, handle, Buffer.from(h.head, 'base64'));
      return;
    }
    if (m.sb === 'presenceDone') {
      members?.done();
      return;
    }
    if (m.sb === 'drain') {
      void sb.close().then(() => exit(ExitCode.ok));
      return;
    }
    const id = m.sbCall;
    if (typeof id !== 'number' || !m.body) return;
    answer(sb, m.body).then(
      (result) => process.send!({ sbReply: id, result } satisfies Reply),
      (err: unknown) => process.send!({ sbReply: id, error: (err as Error).message } satisfies Reply),
    );
  });
  try {
    await sb.start();
  } catch (err) {
    sb.destroy();
    process.stderr.write(`${err instanceof PortInUseError ? err.message : (err as Error).stack}\n`);
    exit(err instanceof PortInUseError ? ExitCode.failed : ExitCode.internal);
  }
  process.send!({ sb: 'ready', port: sb.publicAddress.port });
}

async function answer(sb: Switchboard, body: Op): Promise<unknown> {
  const d = sb.directory;
  switch (body.op) {
    case 'route': return body.relay ? d.route(body.target, fromWire(body.push)) : d.routeLocal(body.target, fromWire(body.push));
    case 'close': return body.relay ? d.close(body.target, body.code, body.reason) : d.closeLocal(body.target, body.code, body.reason);
    case 'info': return d.info(body.connection);
    case 'list': return d.listEntries(body.query);
    case 'channelSize': return d.channelSize(body.channel);
    case 'members': return d.members(body.channel, body.after, body.limit);
    case 'userPresence': return d.userPresence(body.user);
    case 'setChannel': return d.setChannel(body.connection, body.channel, body.subscribed);
    case 'sessions': return d.sessions();
    case 'presence': {
      if (!sb.upstream.presence) throw new Error(`the ${sb.upstream.name} upstream cannot send presence events`);
      return sb.upstream.presence(body.events);
    }
    case 'depart': {
      const snapshot = sb.departures.depart(body.id, body.from);
      if (snapshot !== null) return { snapshot };
      const movedTo = sb.departures.movedTo(body.id);
      return movedTo === null ? null : { movedTo };
    }
    case 'release': return sb.departures.release(body.id);
    case 'post': return sb.postHere(body.id, body.post);
    case 'ready': return sb.readiness();
    case 'status': return sb.status();
    case 'view': {
      if (!sb.views) throw new Error('not in a cluster');
      return (sb.views[body.name] as (...args: unknown[]) => Promise<unknown>).apply(sb.views, body.args);
    }
  }
}

// ── primary ────────────────────────────────────────────────────────────────────

class WorkerPool {
  readonly workers = new Map<number, Worker>();
  /** Workers that said they are ready: a call to one still starting could come before it listens. */
  readonly started = new WeakSet<Worker>();
  readonly #pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void; worker: Worker }>();
  #next = 0;

  call<T>(index: number, body: Op): Promise<T> {
    const worker = this.workers.get(index);
    if (!worker || !worker.isConnected()) return Promise.reject(new WorkerGoneError(`worker ${index} is not running`));
    const id = ++this.#next;
    return new Promise<T>((resolve, reject) => {
      this.#pending.set(id, { resolve: resolve as (v: unknown) => void, reject, worker });
      worker.send({ sbCall: id, body } satisfies Call);
    });
  }

  callAll<T>(body: Op): Promise<T[]> {
    return Promise.all([...this.workers.keys()].map((i) => this.call<T>(i, body)));
  }

  onReply(reply: Reply): void {
    const pending = this.#pending.get(reply.sbReply);
    if (!pending) return;
    this.#pending.delete(reply.sbReply);
    if (reply.error !== undefined) pending.reject(new Error(reply.error));
    else pending.resolve(reply.result);
  }

  /** Calls in flight to a worker that died fail instead of hanging. */
  lost(worker: Worker): void {
    for (const [id, p] of this.#pending) {
      if (p.worker !== worker) continue;
      this.#pending.delete(id);
      p.reject(new WorkerGoneError('worker exited during the call'));
    }
  }
}

/** The push API's view of the sessions of every worker. */
export class WorkersDirectory implements Directory {
  readonly #pool: WorkerPool;
  readonly #nodeId: string;
  /** Pushes get their ids here, before they fan out: a session moving between workers (or nodes) delivers each once. */
  readonly #ids: PushIds;
  /** Without a cluster a session can move to another worker of this node, where its id does not point. */
  readonly #movesHere: boolean;

  constructor(pool: WorkerPool, nodeId: string, ids: PushIds, cluster: boolean) {
    this.#pool = pool;
    this.#nodeId = nodeId;
    this.#ids = ids;
    this.#movesHere = !cluster;
  }

  /**
   * Asks the worker a connection id names; when that one does not have it, each of the other
   * workers in turn (it moved to one of them), until one answers `found`.
   */
  async #atHolder<T>(owner: number, body: Op, found: (result: T) => boolean): Promise<T> {
    const first = await this.#pool.call<T>(owner, body);
    if (found(first) || !this.#movesHere) return first;
    for (const i of this.#pool.workers.keys()) {
      if (i === owner) continue;
      const result = await this.#pool.call<T>(i, body).catch(() => null);
      if (result !== null && found(result)) return result;
    }
    return first;
  }

  /** The worker that holds a connection of this node; -1 for another node's (relayed by worker 0). */
  #owner(connection: string): number | null {
    const parsed = parseConnectionId(connection);
    if (!parsed) return null;
    if (parsed.node !== this.#nodeId) return -1;
    return this.#pool.workers.has(parsed.worker) ? parsed.worker : null;
  }

  #first(): number {
    return Math.min(...this.#pool.workers.keys());
  }

  async route(target: Target, push: Push): Promise<RouteResult> {
    const wire = toWire(this.#ids.stamp(push));
    if (target.kind === 'connection') {
      const owner = this.#owner(target.id);
      if (owner === null) return { counts: zeroCounts(), published: false, found: false };
      // The holder delivers, or publishes when the session moved away from it.
      return this.#atHolder<RouteResult>(owner === -1 ? this.#first() : owner, { op: 'route', target, push: wire, relay: true }, (r) => r.found);
    }
    // One worker also relays to other nodes; the rest deliver locally, so nothing is published twice.
    const first = this.#first();
    const results = await Promise.all([...this.#pool.workers.keys()].map((i) =>
      this.#pool.call<RouteResult>(i, { op: 'route', target, push: wire, relay: i === first })));
    const counts = zeroCounts();
    for (const r of results) addCounts(counts, r.counts);
    return { counts, published: results.some((r) => r.published), found: true };
  }

  async close(target: Target, code: number, reason: string): Promise<number> {
    if (target.kind === 'connection') {
      const owner = this.#owner(target.id);
      if (owner === null) return 0;
      return this.#atHolder<number>(owner === -1 ? this.#first() : owner, { op: 'close', target, code, reason, relay: true }, (n) => n > 0);
    }
    const first = this.#first();
    const counts = await Promise.all([...this.#pool.workers.keys()].map((i) =>
      this.#pool.call<number>(i, { op: 'close', target, code, reason, relay: i === first })));
    return counts.reduce((a, b) => a + b, 0);
  }

  async info(connection: string): Promise<SessionInfo | null> {
    const owner = this.#owner(connection);
    return owner === null || owner === -1 ? null : this.#atHolder<SessionInfo | null>(owner, { op: 'info', connection }, (info) => info !== null);
  }

  /** Merges the workers' pages; the cursor carries one cursor per worker. */
  async list(query: ListQuery): Promise<Page> {
    const cursors = decodeCursors(query.cursor);
    const indexes = [...this.#pool.workers.keys()];
    const pages = await Promise.all(indexes.map((i) => this.#pool.call<{ entries: Array<{ info: SessionInfo; cursor: string }>; more: boolean }>(
      i, { op: 'list', query: { user: query.user, channel: query.channel, limit: query.limit, cursor: cursors[i] } })));
    const all = pages.flatMap((p, k) => p.entries.map((e) => ({ ...e, worker: indexes[k] })));
    all.sort((a, b) => a.info.connectedAt.localeCompare(b.info.connectedAt) || a.info.connection.localeCompare(b.info.connection));
    const taken = all.slice(0, query.limit);
    for (const e of taken) cursors[e.worker] = e.cursor;
    const more = all.length > taken.length || pages.some((p) => p.more);
    return { connections: taken.map((e) => e.info), next: more ? Buffer.from(JSON.stringify(cursors)).toString('base64url') : null };
  }

  async channelSize(channel: string): Promise<number> {
    return (await this.#pool.callAll<number>({ op: 'channelSize', channel })).reduce((a, b) => a + b, 0);
  }

  /** Every worker's page, merged by user (proxy/presence-query.ts). */
  async members(channel: string, after: string | undefined, limit: number): Promise<MembersAnswer> {
    const page = mergeMembers(await this.#pool.callAll<MembersAnswer>({ op: 'members', channel, after, limit }), limit);
    return { members: page.members, connections: page.connections, more: page.next !== null };
  }

  async userPresence(user: string): Promise<UserPresence> {
    return mergeUser(await this.#pool.callAll<UserPresence>({ op: 'userPresence', user }));
  }

  async setChannel(connection: string, channel: string, subscribed: boolean): Promise<boolean> {
    const owner = this.#owner(connection);
    return owner === null || owner === -1 ? false : this.#atHolder<boolean>(owner, { op: 'setChannel', connection, channel, subscribed }, (done) => done);
  }

  async sessions(): Promise<number> {
    return (await this.#pool.callAll<number>({ op: 'sessions' })).reduce((a, b) => a + b, 0);
  }
}

/** In a cluster, the views are a worker's: it asks every process of the cluster, its siblings too. */
class WorkerViews implements Views {
  readonly #pool: WorkerPool;

  constructor(pool: WorkerPool) {
    this.#pool = pool;
  }

  #view<T>(name: ViewName, ...args: unknown[]): Promise<T> {
    return this.#pool.call<T>(Math.min(...this.#pool.workers.keys()), { op: 'view', name, args });
  }

  info(connection: string) { return this.#view<Awaited<ReturnType<Views['info']>>>('info', connection); }
  list(query: ListQuery) { return this.#view<Awaited<ReturnType<Views['list']>>>('list', query); }
  channelSize(channel: string) { return this.#view<Awaited<ReturnType<Views['channelSize']>>>('channelSize', channel); }
  members(channel: string, after: string | undefined, limit: number) { return this.#view<Awaited<ReturnType<Views['members']>>>('members', channel, after, limit); }
  user(user: string) { return this.#view<Awaited<ReturnType<Views['user']>>>('user', user); }
  close(target: Target, code: number, reason: string) { return this.#view<Awaited<ReturnType<Views['close']>>>('close', target, code, reason); }
  setChannel(connection: string, channel: string, subscribed: boolean) { return this.#view<Awaited<ReturnType<Views['setChannel']>>>('setChannel', connection, channel, subscribed); }
  nodes() { return this.#view<Awaited<ReturnType<Views['nodes']>>>('nodes'); }
}

async function runPrimary(config: Readonly<Config>, n: number, plugins: readonly Plugin[], exit: Exit): Promise<void> {
  const nodeId = config.nodeId ?? randomBytes(4).readUInt32BE().toString(36);
  const log: Logger = createLogger(config.log.level, { node: nodeId, role: 'primary' });
  const pool = new WorkerPool();
  const aggregator = new AggregatorRegistry();
  const own = new MetricsRegistry();
  const restarts = new Counter({ name: 'switchboard_worker_restarts_total', help: 'Client-pipeline workers restarted after a crash', registers: [own] });
  let state: 'starting' | 'running' | 'draining' = 'starting';
  // The presence event metrics are the primary's, as it sends the events (workers register none);
  // in a cluster the owner is a worker somewhere, and the workers register them.
  const presenceMetrics = presenceCollectors(config.cluster.amqp.url === null ? [own] : []);
  const directory = new WorkersDirectory(pool, nodeId, new PushIds(nodeId, randomBytes(4).toString('hex')), config.cluster.amqp.url !== null);
  const presence = !presenceTracked(config) ? null : new PrimaryPresence({
    config: config.presence,
    holdMs: holdsOf(config),
    nodeId,
    start: randomBytes(4).toString('hex'),
    clock: systemClock,
    log,
    metrics: presenceMetrics,
    deliver: config.webhooks.paths.presence !== null,
    frames: presenceFrames(config.presence.frames, (target, push) => directory.route(target, push), log),
    workers: {
      running: () => [...pool.workers].filter(([, w]) => w.isConnected() && pool.started.has(w)).map(([i]) => i).sort((a, b) => a - b),
      deliver: (index, events) => pool.call<boolean>(index, { op: 'presence', events }),
      done: (index) => {
        const w = pool.workers.get(index);
        if (w?.isConnected()) w.send({ sb: 'presenceDone' });
      },
    },
  });

  cluster.setupPrimary({ serialization: 'advanced', execArgv: workerExecArgv() });
  // One resume-token key for every worker, so a token issued by one verifies in all.
  const tokenSecret = config.session.tokenSecret ?? randomBytes(32).toString('base64url');
  const workerConfig = JSON.stringify({ ...config, nodeId, session: { ...config.session, tokenSecret } });
  const fork = (index: number): Worker => {
    // Workers take the config as validated here: they never load the schema (less memory each).
    const worker = cluster.fork({ SWITCHBOARD_WORKER_INDEX: String(index), [WORKER_CONFIG]: workerConfig });
    pool.workers.set(index, worker);
    worker.on('message', (m: unknown, handle: unknown) => {
      if (m && typeof m === 'object' && 'sbReply' in m) pool.onReply(m as Reply);
      else if ((m as { sb?: string } | null)?.sb === 'ready') pool.started.add(worker);
      else if (m && typeof m === 'object' && 'sbAsk' in m) {
        const a = m as Ask;
        if (a.body?.op !== 'depart' && a.body?.op !== 'release' && a.body?.op !== 'post') return;
        pool.call(a.to, a.body).then(
          (result) => { if (worker.isConnected()) worker.send({ sbAnswer: a.sbAsk, result } satisfies AskAnswer); },
          (err: unknown) => { if (worker.isConnected()) worker.send({ sbAnswer: a.sbAsk, error: (err as Error).message } satisfies AskAnswer); },
        );
      }
      else if ((m as Partial<MembersMessage> | null)?.sb === 'members') presence?.changes(index, (m as MembersMessage).changes);
      else if ((m as Partial<MembersEndedMessage> | null)?.sb === 'membersEnded') presence?.membersEnded(index);
      else if ((m as Partial<Handoff> | null)?.sb === 'handoff' && handle instanceof Socket) {
        const target = pool.workers.get((m as Handoff).to);
        // The holder is gone (restarting): the client reconnects and resumes again, or starts anew.
        if (target?.isConnected()) target.send(m as Handoff, handle);
        else handle.destroy();
      }
    });
    worker.on('exit', (code, signal) => {
      pool.lost(worker);
      presence?.lost(index);
      if (pool.workers.get(index) === worker) pool.workers.delete(index);
      if (state === 'running') {
        restarts.inc();
        log.error({ worker: index, code, signal }, 'worker exited: restarting it');
        fork(index);
      }
    });
    return worker;
  };

  const started = await Promise.allSettled(Array.from({ length: n }, (_, i) => {
    const worker = fork(i);
    return new Promise<void>((resolve, reject) => {
      const onMessage = (m: { sb?: string }) => {
        if (m?.sb === 'ready') { worker.off('exit', onExit); resolve(); }
      };
      const onExit = (code: number) => reject(Object.assign(new Error(`worker ${i} exited during startup`), { code }));
      worker.on('message', onMessage);
      worker.once('exit', onExit);
    });
  }));
  const failed = started.find((r) => r.status === 'rejected');
  if (failed) {
    for (const w of pool.workers.values()) w.kill();
    exit((failed.reason as { code?: number }).code === ExitCode.failed ? ExitCode.failed : ExitCode.internal);
  }

  // Push sources (the push queue) are consumed here, once per node, and routed to the workers like API pushes.
  const parts = new Parts(log);
  for (const source of pushSources(plugins, { config, log, clock: systemClock, directory })) parts.add(source);
  await parts.start();
  const health = {
    log,
    ready: async (): Promise<{ ready: boolean; reason?: string }> => {
      if (state !== 'running') return { ready: false, reason: state };
      if (pool.workers.size < n) return { ready: false, reason: `${n - pool.workers.size} worker(s) restarting` };
      const reason = parts.notReady();
      if (reason !== null) return { ready: false, reason };
      const states = await pool.callAll<{ ready: boolean; reason?: string }>({ op: 'ready' });
      return states.find((s) => !s.ready) ?? { ready: true };
    },
    metricsText: async () => {
      let workers: string;
      try {
        workers = await aggregator.clusterMetrics();
      } catch (err) {
        // A worker did not answer (one being replaced): no partial numbers, for /metrics and /v1/status alike.
        throw new SwitchboardError('metrics_unavailable', undefined, { cause: err });
      }
      return { contentType: aggregator.contentType, body: `${workers}\n${await own.metrics()}` };
    },
  };
  const control: Server = createServer(createControlApi({
    ...health,
    config,
    clock: systemClock,
    metrics: createMetrics({ defaults: false }),
    directory,
    views: config.cluster.amqp.url === null ? null : new WorkerViews(pool),
    node: async () => {
      const statuses = await pool.callAll<ProcessStatus>({ op: 'status' });
      const states = statuses.map((s) => s.state);
      return {
        node: nodeId,
        state: state === 'draining' ? 'draining' : states.find((s) => s !== 'ready') ?? 'ready',
        sessions: statuses.reduce((sum, s) => sum + s.sessions, 0),
        processes: statuses.length,
      };
    },
    routes: pluginRoutes(plugins, config),
  }));
  const metricsPort: Server | null = config.metrics.listen === null ? null : createServer(createMetricsApi(health));
  try {
    await listen(control, parseAddress(config.control.listen, '127.0.0.1')!, 'control');
    if (metricsPort) await listen(metricsPort, parseAddress(config.metrics.listen!, '127.0.0.1')!, 'metrics');
  } catch (err) {
    state = 'draining';
    for (const w of pool.workers.values()) w.kill();
    process.stderr.write(`${(err as Error).message}\n`);
    exit(err instanceof PortInUseError ? ExitCode.failed : ExitCode.internal);
  }
  state = 'running';
  log.info({ workers: n, control: control.address(), metrics: metricsPort?.address() ?? undefined }, 'switchboard primary ready');

  const drain = async (): Promise<number> => {
    state = 'draining';
    // The whole drain fits in drain.timeoutMs (and a second for the workers' own exits).
    const end = Date.now() + config.drain.timeoutMs + 1000;
    await parts.drain(config.drain.timeoutMs / 4);
    const exits = [...pool.workers.values()].map((w) => (w.isDead() ? Promise.resolve() : once(w, 'exit')));
    for (const w of pool.workers.values()) w.send({ sb: 'drain' });
    // The workers' upstreams wait for the node's last presence events before they close.
    const lastEvents = presence?.drain([...pool.workers.keys()], Math.max(0, end - 1000 - Date.now()));
    const kill = setTimeout(() => {
      log.warn('drain budget exhausted: killing workers');
      for (const w of pool.workers.values()) w.process.kill('SIGKILL');
    }, Math.max(0, end - Date.now()));
    await Promise.all(exits);
    clearTimeout(kill);
    await lastEvents;
    presence?.destroy();
    await parts.close(Math.max(0, end - Date.now()), () => Date.now()).catch((err: unknown) => log.warn({ err: (err as Error).message }, 'closing the push sources failed'));
    parts.destroy();
    control.closeAllConnections();
    control.close();
    metricsPort?.close();
    return ExitCode.ok;
  };
  onStopSignals(log, { drain, abort: () => { for (const w of pool.workers.values()) w.process.kill('SIGKILL'); } }, exit);
}
