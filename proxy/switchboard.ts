// The sidecar, composed: the public port (WebSocket gateway and reverse proxy), the
// control port, sessions and their shared timers, and the upstream plugin.
// `close()` drains in a fixed order; `destroy()` aborts.
import { createServer, Agent, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { randomBytes } from 'node:crypto';
import httpProxy from 'http-proxy';
import type { Logger } from 'pino';
import { isLoopback, listen, parseAddress } from './address.js';
import { setForwarding, stripHopByHop, stripReserved, trustedProxies, webhookPathMatcher } from './forwarding.js';
import type { Config } from './config.js';
import { sleep, systemClock, type Clock } from './clock.js';
import { createControlApi, createMetricsApi, sendError, type ControlRoute } from './control-api.js';
import { CloseCode, SwitchboardError } from './errors.js';
import { Gateway, rejectWith } from './gateway.js';
import { SseGateway, type Post, type Posted, type SseGatewayHost } from './sse-gateway.js';
import { serveBrowserClient } from './browser-client.js';
import { Heartbeat } from './heartbeat.js';
import { createLogger } from './log.js';
import { countOpenConnections, createMetrics, type Metrics } from './metrics.js';
import { Registry, watchers } from './registry.js';
import { createPresence, holdsOf, PresenceIds, type PresenceParts } from './presence.js';
import { PresenceOwner } from './presence-owner.js';
import { presenceFrames } from './presence-frames.js';
import { LocalDirectory } from './directory.js';
import { Session, type SessionContext } from './session.js';
import { TimerWheel } from './timer-wheel.js';
import { TokenCodec } from './token.js';
import { Moves, type Departures, type Mover } from './moves.js';
import { answerLocally, ClusterViews, type ProcessStatus, type Views } from './views.js';
import { PushIds } from './push.js';
import type { RosterEntry } from './snapshot.js';
import type { Upstream } from './upstream.js';
import { Parts, pluginRoutes, pushSources, sessionParts, withDeadline, type Plugin, type PresenceHost, type SessionHost } from './plugin.js';

export type SwitchboardState = 'starting' | 'running' | 'draining' | 'closed';

export interface SwitchboardOptions {
  readonly log?: Logger;
  readonly clock?: Clock;
  readonly metrics?: Metrics;
  /** Worker index in a multi-process deployment (part of every connection id). */
  readonly worker?: number;
  /** Listen on these instead of the config's (the primary process owns the control port). */
  readonly control?: boolean;
  /** Passes a resume to the worker that holds its session (workers only). */
  readonly handoff?: (worker: number, req: IncomingMessage, socket: Socket, head: Buffer) => boolean;
  /** Moves sessions from the other workers of this node, when there is no cluster relay (workers only). */
  readonly mover?: Mover;
  /** Takes a POST for a session another worker of this node holds there (workers only). */
  readonly forward?: SseGatewayHost['forward'];
  /** A worker's presence: its member changes go to the primary, which sends the events (workers only). */
  readonly presence?: PresenceParts;
  /** The plugins to run with (cli.ts passes the built-in ones). */
  readonly plugins: readonly Plugin[];
}

/** What of a handshake crosses to another worker with its socket. */
export interface HandedRequest {
  readonly method: string;
  readonly url: string;
  readonly headers: IncomingMessage['headers'];
}

export class Switchboard {
  readonly config: Readonly<Config>;
  readonly log: Logger;
  readonly metrics: Metrics;
  readonly clock: Clock;
  readonly registry: Registry;
  readonly directory: LocalDirectory;
  readonly nodeId: string;
  readonly worker: number;
  readonly upstream: Upstream;
  readonly ctx: SessionContext;
  /** Cluster-wide views for the control API; null outside a cluster. */
  readonly views: Views | null;
  state: SwitchboardState = 'starting';

  readonly #public: Server;
  readonly #control: Server | null;
  /** `metrics.listen`: metrics and health for scrapers, apart from the push API. */
  readonly #metricsPort: Server | null;
  readonly #gateway: Gateway;
  /** Sessions over Server-Sent Events on the same paths. */
  readonly #sse: SseGateway;
  readonly #wsPaths: ReadonlySet<string>;
  readonly #proxy: httpProxy;
  readonly #heartbeat: Heartbeat;
  readonly #grace: TimerWheel<Session>;
  readonly #work = new Set<Promise<unknown>>();
  readonly #controlRoutes: readonly ControlRoute[];
  /** The upstream, the relay and the push sources: started in order, closed in reverse. */
  readonly #parts: Parts;
  /** Proxied requests whose app did not answer within proxy.timeoutMs (504, not 502). */
  readonly #timedOut = new WeakSet<IncomingMessage>();
  /** Sessions moving to and from other processes; null without a relay that carries them. */
  readonly #moves: Moves | null;
  /** The moves can park sessions (a cluster broker): a drain parks them rather than ending them. */
  readonly #parks: boolean;
  /** This process's side of sessions moving away (what another process asks of it). */
  readonly departures: Departures;
  #counter = 0;
  #closing: Promise<void> | null = null;

  constructor(config: Readonly<Config>, options: SwitchboardOptions) {
    this.config = config;
    this.clock = options.clock ?? systemClock;
    this.worker = options.worker ?? 0;
    this.nodeId = config.nodeId ?? randomBytes(4).readUInt32BE().toString(36);
    this.log = options.log ?? createLogger(config.log.level, { node: this.nodeId, worker: this.worker });
    this.metrics = options.metrics ?? createMetrics();
    const { plugins } = options;
    const self = `${this.nodeId}-${this.worker}`;
    const presenceHost = this.#clusterPresence(config, self);
    this.departures = {
      depart: (id, to) => this.#moves?.depart(id, to) ?? null,
      release: (id) => this.#moves?.release(id) ?? null,
      movedTo: (id) => this.#moves?.movedTo(id) ?? null,
      parking: (id) => this.#moves?.parking(id) ?? false,
      expired: (snapshot) => this.#moves?.expired(snapshot) ?? Promise.resolve(),
      lost: (entry) => this.#moves?.lost(entry) ?? Promise.resolve(),
    };
    const host: SessionHost = {
      config,
      log: this.log,
      clock: this.clock,
      metrics: this.metrics,
      nodeId: this.nodeId,
      self,
      departures: this.departures,
      roster: () => rosterOf(this.registry),
      answer: (question) => answerLocally(this.directory, this.registry, question, self, () => this.status()),
      apply: (connection, effects) => this.registry.get(connection)?.apply(effects),
      names: (kind) => this.registry.names(kind),
      post: (id, post) => this.#sse.postHere(id, post),
      deliverLocal: (target, push) => void this.directory.routeLocal(target, push),
      closeLocal: (target, code, reason) => this.directory.closeLocal(target, code, reason),
      presence: presenceHost,
    };
    const { upstream, relay } = sessionParts(plugins, host);
    this.upstream = upstream;
    if (config.webhooks.paths.presence !== null && !upstream.presence) throw new Error(`webhooks.paths.presence: the ${upstream.name} upstream cannot send presence events`);
    // In a cluster the relay carries the member changes to the owner (its watcher sees them).
    const presence = presenceHost ? null : this.#presenceOf(config, upstream, self, options.presence);
    // With a relay, sessions that moved here from another process are indexed by id too.
    this.registry = new Registry(watchers(relay?.watcher, presence?.watcher), relay ? `${self}-` : null);
    countOpenConnections(this.metrics, () => this.registry.all());
    this.#parts = new Parts(this.log);
    this.#parts.add({
      name: `upstream ${upstream.name}`,
      start: () => upstream.start(),
      close: () => upstream.close(),
      destroy: () => upstream.destroy(),
      notReady: () => (upstream.ready() ? null : `upstream ${upstream.name} is not connected`),
    });
    if (relay) this.#parts.add(relay);
    // The relay hands the owner's role over when it closes; the owner is this process's to destroy.
    if (presenceHost) this.#parts.add({ name: 'presence owner', start: async () => {}, close: async () => {}, destroy: () => presenceHost.owner.destroy(), notReady: () => null });
    // Closed before the upstream (parts close in reverse): the last leaves go out first.
    if (presence) this.#parts.add(presence.part);
    // With workers, the primary serves the push API and consumes the push sources.
    this.#controlRoutes = options.control === false ? [] : pluginRoutes(plugins, config);
    this.directory = new LocalDirectory(this.registry, relay ? {
      relay: relay.relay,
      ids: new PushIds(this.nodeId, randomBytes(4).toString('hex')),
      movedAway: (id) => this.#moves?.movedTo(id) != null,
    } : null);
    this.#heartbeat = new Heartbeat(config.heartbeat, this.clock);
    const graceTick = Math.min(1000, Math.max(10, config.session.graceMs / 10));
    this.#grace = new TimerWheel<Session>(graceTick, (s) => s.expire(), this.clock, (err, s) => s.log.error({ err }, 'ending a session after its grace failed'));

    const registry = this.registry;
    this.ctx = {
      config,
      clock: this.clock,
      log: this.log,
      metrics: this.metrics,
      upstream: this.upstream,
      heartbeat: this.#heartbeat,
      grace: this.#grace,
      tokens: new TokenCodec(config.session.tokenSecret, config.session.tokenTtlMs, self),
      userChanged: (s, previous) => registry.userChanged(s, previous),
      channelChanged: (s, channel, joined) => registry.channelChanged(s, channel, joined),
      metaChanged: (s) => registry.changed(s),
      ended: (s, why) => registry.remove(s, why),
      track: (work) => this.track(work),
    };
    this.views = relay?.scatter ? new ClusterViews(relay.scatter, self, (q) => answerLocally(this.directory, registry, q, self, () => this.status())) : null;
    const mover = relay?.mover ?? options.mover ?? null;
    this.#parks = relay?.mover != null;
    this.#moves = mover ? new Moves({
      ctx: this.ctx,
      registry,
      metrics: this.metrics,
      clock: this.clock,
      log: this.log,
      timeoutMs: config.cluster.transferTimeoutMs,
      rememberMs: config.session.graceMs,
    }, mover) : null;

    // The app's webhook endpoints are not the public's to call (proxy.exposeWebhookPaths opts in).
    const isWebhookPath = config.proxy.exposeWebhookPaths ? () => false : webhookPathMatcher(Object.values(config.webhooks.paths));
    const trusted = trustedProxies(config.proxy.trustedProxies);
    this.#proxy = httpProxy.createProxyServer({
      target: config.app.url,
      // Forwarding headers are set by setForwarding (trusted proxies only keep theirs).
      xfwd: false,
      proxyTimeout: config.proxy.timeoutMs,
      ws: true,
      agent: new Agent({ keepAlive: true, maxSockets: 256 }),
    });
    this.#proxy.on('error', (err, req, res) => this.#proxyFailed(err, res as ServerResponse | Socket, this.#timedOut.has(req)));
    this.#proxy.on('proxyReq', (proxyReq, req) => proxyReq.once('timeout', () => this.#timedOut.add(req)));
    // Cleaned before http-proxy copies them to the client.
    this.#proxy.on('proxyRes', (proxyRes) => stripHopByHop(proxyRes.headers));
    this.#gateway = new Gateway({
      ctx: this.ctx,
      registry,
      accepting: () => this.state === 'running',
      newConnectionId: () => this.newConnectionId(),
      proxyUpgrade: (req, socket, head) => {
        if (isWebhookPath(req.url ?? '/')) return rejectWith(socket, new SwitchboardError('not_found'));
        stripReserved(req);
        setForwarding(req, trusted);
        this.#proxy.ws(req, socket, head);
      },
      setForwarding: (req) => setForwarding(req, trusted),
      nodeId: this.nodeId,
      worker: this.worker,
      self,
      handoff: options.handoff,
      // A session of this process that is not here moved away, or was parked (by this process's predecessor, after a restart).
      arrive: this.#moves ? (holder, id) => this.#moves!.arrive(holder === self ? this.#moves!.movedTo(id) : holder, id) : undefined,
    });
    this.#sse = new SseGateway({ ctx: this.ctx, registry, gateway: this.#gateway, self, accepting: () => this.state === 'running', movedTo: (id) => this.#moves?.movedTo(id) ?? null, forward: options.forward ?? relay?.forward ?? undefined });
    this.#wsPaths = new Set(config.ws.paths);
    // Half-sent requests (slowloris) are cut off once limits.handshakeTimeoutMs has passed,
    // checked often enough for that bound to hold.
    const handshakeMs = config.limits.handshakeTimeoutMs;
    this.#public = createServer({ headersTimeout: handshakeMs, requestTimeout: Math.max(300_000, handshakeMs), connectionsCheckingInterval: Math.min(1000, Math.max(50, handshakeMs / 4)) }, (req, res) => {
      this.#gateway.plainHttp(req.socket);
      // /switchboard/client.js and .min.js are answered here, whatever the app has there.
      if (serveBrowserClient(req, res)) return;
      const url = parseRequestUrl(req.url);
      if (url && this.#wsPaths.has(url.pathname) && this.#sse.takes(req, url)) return this.#sse.serve(req, res, url);
      if (isWebhookPath(req.url ?? '/')) {
        req.resume();
        return void sendError(res, new SwitchboardError('not_found'));
      }
      stripReserved(req);
      stripHopByHop(req.headers, true);
      setForwarding(req, trusted);
      this.#proxy.web(req, res);
    });
    this.#public.on('connection', (socket: Socket) => this.#gateway.accepted(socket));
    this.#public.on('upgrade', (req, socket, head) => this.#gateway.upgrade(req, socket, head));
    this.#public.on('clientError', (err: NodeJS.ErrnoException, socket) => answerClientError(err, socket));
    this.#control = options.control === false ? null : createServer();
    this.#metricsPort = options.control === false || config.metrics.listen === null ? null : createServer();
    if (this.#control) {
      for (const source of pushSources(plugins, { config, log: this.log, clock: this.clock, directory: this.directory })) this.#parts.add(source);
    }
  }

  /**
   * Presence events, when `webhooks.paths.presence` is set or `presence.frames` names channels: either
   * needs the members tracked (config.ts refuses what cannot carry them yet).
   */
  #presenceOf(config: Readonly<Config>, upstream: Upstream, self: string, forwarded: PresenceParts | undefined): PresenceParts | null {
    const webhook = config.webhooks.paths.presence !== null;
    const deliver = webhook ? upstream.presence!.bind(upstream) : null;
    // A worker's members are counted in the primary, which sends the events and routes the frames.
    if (forwarded) return forwarded;
    // The directory is built after the registry this feeds; events come only once sessions exist.
    const frames = presenceFrames(config.presence.frames, (target, push) => this.directory.route(target, push), this.log);
    if (!webhook && frames === null) return null;
    return createPresence({ config: config.presence, holdMs: holdsOf(config), clock: this.clock, log: this.log, metrics: this.metrics, ids: new PresenceIds(self, randomBytes(4).toString('hex')), deliver, frames });
  }

  /**
   * Presence across a cluster (`cluster.amqp.url` with members tracked): the owner's role, which
   * the relay gives this process while it has it, and this process's count for the owner.
   */
  #clusterPresence(config: Readonly<Config>, self: string): PresenceHost | null {
    if (config.cluster.amqp.url === null || (config.webhooks.paths.presence === null && config.presence.frames.length === 0)) return null;
    const owner = new PresenceOwner({
      config: config.presence,
      holdMs: holdsOf(config),
      clock: this.clock,
      log: this.log,
      metrics: this.metrics,
      ids: new PresenceIds(self, randomBytes(4).toString('hex')),
      // The upstream and the directory are built after this; events come only once sessions exist.
      deliver: config.webhooks.paths.presence === null ? null : (events, signal) => this.upstream.presence!(events, signal),
      frames: presenceFrames(config.presence.frames, (target, push) => this.directory.route(target, push), this.log),
    });
    // Half the drain's budget: the rest is the upstream's, to send the disconnects and these.
    return { owner, counts: () => this.registry.memberCounts(), closeBudgetMs: config.drain.timeoutMs / 2 };
  }

  /** Connection ids name their node and worker, so a push by id finds its process. */
  newConnectionId(): string {
    return `${this.nodeId}-${this.worker}-${(++this.#counter).toString(36)}${randomBytes(6).toString('base64url')}`;
  }

  /** Takes a resume handshake another worker passed here, with its socket. */
  adopt(request: HandedRequest, socket: Socket, head: Buffer): void {
    if (this.state !== 'running') return void rejectWith(socket, new SwitchboardError('not_ready'));
    this.#gateway.accepted(socket);
    const req = { method: request.method, url: request.url, headers: request.headers, socket } as unknown as IncomingMessage;
    this.#gateway.upgrade(req, socket, head);
  }

  track(work: Promise<unknown>): void {
    const tracked = work.catch((err: unknown) => this.log.error({ err }, 'background work failed'));
    this.#work.add(tracked);
    void tracked.finally(() => this.#work.delete(tracked));
  }

  /** This process as /v1/nodes shows it. */
  /** A POST another worker took for a session of this one (proxy/sse-gateway.ts#postHere). */
  postHere(id: string, post: Post): Promise<Posted | { movedTo: string } | null> {
    return this.#sse.postHere(id, post);
  }

  status(): ProcessStatus {
    const state = this.state === 'draining' || this.state === 'closed' ? 'draining' : this.state === 'starting' ? 'starting' : this.readiness().ready ? 'ready' : 'not_ready';
    return { state, sessions: this.registry.size };
  }

  readiness(): { ready: boolean; reason?: string } {
    if (this.state !== 'running') return { ready: false, reason: this.state };
    const reason = this.#parts.notReady();
    return reason === null ? { ready: true } : { ready: false, reason };
  }

  get publicAddress(): AddressInfo {
    return this.#public.address() as AddressInfo;
  }

  async #metricsText(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.metrics.registry.contentType, body: await this.metrics.registry.metrics() };
  }

  /** Where `metrics.listen` listens; null when it is not set. */
  get metricsAddress(): AddressInfo | null {
    return (this.#metricsPort?.address() as AddressInfo | null) ?? null;
  }

  get controlAddress(): AddressInfo | null {
    return (this.#control?.address() as AddressInfo | null) ?? null;
  }

  /** Client sockets of the public port that count against the limits. */
  get sockets(): number {
    return this.#gateway.sockets;
  }

  get server(): Server {
    return this.#public;
  }

  async start(): Promise<this> {
    await this.#parts.start();
    if (this.#control) {
      this.#control.on('request', createControlApi({
        config: this.config,
        clock: this.clock,
        log: this.log,
        metrics: this.metrics,
        directory: this.directory,
        views: this.views,
        node: async () => ({ node: this.nodeId, processes: 1, ...this.status() }),
        ready: async () => this.readiness(),
        metricsText: () => this.#metricsText(),
        routes: this.#controlRoutes,
      }));
      await listen(this.#control, parseAddress(this.config.control.listen, '127.0.0.1')!, 'control');
    }
    if (this.#metricsPort) {
      this.#metricsPort.on('request', createMetricsApi({ log: this.log, ready: async () => this.readiness(), metricsText: () => this.#metricsText() }));
      await listen(this.#metricsPort, parseAddress(this.config.metrics.listen!, '127.0.0.1')!, 'metrics');
    }
    await listen(this.#public, parseAddress(this.config.listen)!, 'public', this.config.limits.listenBacklog);
    this.state = 'running';
    if (this.config.webhooks.secret === null && this.config.upstream === 'webhook' && !isLoopback(new URL(this.config.app.url).hostname.replace(/^\[|\]$/g, ''))) {
      this.log.warn({ app: this.config.app.url }, 'webhooks go out unsigned to a non-loopback app: set webhooks.secret so the app can tell them from forgeries');
    }
    this.log.info({ listen: this.publicAddress, control: this.controlAddress, metrics: this.metricsAddress ?? undefined, upstream: this.upstream.name }, 'switchboard ready');
    return this;
  }

  #proxyFailed(err: Error, res: ServerResponse | Socket, timedOut: boolean): void {
    this.log.warn({ err: err.message, timedOut }, 'proxy to the app failed');
    if ('writeHead' in res) {
      if (res.headersSent) return void res.destroy();
      // The app's address stays inside: the client learns only that it is unreachable.
      sendError(res, new SwitchboardError(timedOut ? 'gateway_timeout' : 'bad_gateway'));
    } else {
      rejectWith(res, new SwitchboardError('bad_gateway'));
    }
  }

  /**
   * Drains: not ready, no new handshakes; reliable clients are asked to reconnect
   * elsewhere over the first half of the budget, raw clients are closed 1012 in
   * batches; then every session ends (disconnect webhooks) and in-flight work is
   * awaited. Past `drain.timeoutMs`, whatever is left is destroyed.
   */
  close(): Promise<void> {
    this.#closing ??= this.#drain();
    return this.#closing;
  }

  async #drain(): Promise<void> {
    if (this.state === 'starting') {
      this.destroy();
      return;
    }
    this.state = 'draining';
    const budget = this.config.drain.timeoutMs;
    const deadline = this.clock.now() + budget;
    this.log.info({ sessions: this.registry.size, budgetMs: budget }, 'draining');
    await this.#parts.drain(budget / 4);
    const spread = Math.floor(budget / 2);
    const raw: Session[] = [];
    for (const s of this.registry.all()) {
      if (s.mode === 'reliable') s.askReconnect(Math.floor(Math.random() * spread));
      else raw.push(s);
    }
    // Raw clients have no hint: closing them in batches keeps them from all reconnecting at once.
    const batches = Math.max(1, Math.ceil(raw.length / 1000));
    const pause = Math.min(100, Math.floor(spread / batches));
    for (let i = 0; i < raw.length; i += 1000) {
      for (const s of raw.slice(i, i + 1000)) s.close(CloseCode.serviceRestart, 'service restart');
      if (i + 1000 < raw.length) await sleep(pause);
    }
    // Reliable clients leave on their own after their hint; wait for them, then close the rest.
    // In a cluster they resume on another node, which takes their sessions over: wait for that.
    const gone = this.#parks
      ? () => [...this.registry.all()].every((s) => s.mode !== 'reliable')
      : () => [...this.registry.all()].every((s) => !s.attached);
    await until(gone, Math.min(spread + 200, deadline - this.clock.now()));
    // Moves under way complete: their clients are on other nodes already (up to half of what is left).
    const moves = this.#moves;
    if (moves && this.#parks) await until(() => moves.departing === 0, Math.max(0, deadline - this.clock.now()) / 2);
    this.#moves?.close();
    // The rest are parked in RabbitMQ, for whichever process their clients reach within their grace.
    // Most of what is left: a session not parked ends here, which only takes its disconnect webhook.
    if (this.#moves && this.#parks) await withDeadline(this.#moves.parkAll(this.registry.all()), Math.max(0, deadline - this.clock.now()) * 0.75, 'parking').catch((err: unknown) =>
      this.log.warn({ err: (err as Error).message }, 'parking did not finish: the rest end here'));
    for (const s of [...this.registry.all()]) s.close(CloseCode.serviceRestart, 'service restart');
    await until(() => this.registry.size === 0, Math.max(0, deadline - this.clock.now()) / 2);
    try {
      await withDeadline(Promise.allSettled([...this.#work]), deadline - this.clock.now(), 'background work');
      await this.#parts.close(deadline - this.clock.now(), () => this.clock.now());
    } catch (err) {
      this.log.warn({ err: (err as Error).message, left: this.#work.size }, 'drain budget exhausted: aborting the rest');
    }
    this.destroy();
  }

  /** Aborts everything at once. Idempotent. */
  destroy(): void {
    if (this.state === 'closed') return;
    this.state = 'closed';
    this.#heartbeat.stop();
    this.#grace.stop();
    for (const s of [...this.registry.all()]) s.close(CloseCode.goingAway, 'shutting down');
    this.#gateway.close();
    this.#parts.destroy();
    this.#proxy.close();
    this.#public.closeAllConnections();
    this.#public.close();
    this.#control?.closeAllConnections();
    this.#control?.close();
    this.#metricsPort?.closeAllConnections();
    this.#metricsPort?.close();
    this.log.info('closed');
  }
}

/** A malformed or too slow request gets a status, not a bare close (as Node's docs show). */
function answerClientError(err: NodeJS.ErrnoException, socket: Duplex): void {
  if (!socket.writable || (socket as Socket).bytesWritten > 0) return void socket.destroy();
  const status = err.code === 'HPE_HEADER_OVERFLOW' ? 431 : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : 400;
  rejectWith(socket, new SwitchboardError(status === 400 ? 'bad_request' : status === 431 ? 'headers_too_large' : 'request_timeout'));
}



/** A request's URL; null when it does not parse (an absolute form with a bad host). */
function parseRequestUrl(url: string | undefined): URL | null {
  try {
    return new URL(url ?? '/', 'http://switchboard');
  } catch {
    return null;
  }
}

async function until(condition: () => boolean, ms: number): Promise<void> {
  const end = Date.now() + Math.max(0, ms);
  while (!condition() && Date.now() < end) await sleep(Math.min(50, Math.max(1, end - Date.now())));
}

function* rosterOf(registry: Registry): Iterable<RosterEntry> {
  for (const s of registry.all()) yield s.rosterEntry();
}
