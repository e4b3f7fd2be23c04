// The handshake: admission limits, resume, the app's say (connect webhook), then the
// upgrade. Upgrades on other paths are not ours: they go to the app untouched.
import { STATUS_CODES, type IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type WebSocket } from 'ws';
import { SwitchboardError } from './errors.js';
import { AddressCounts, TokenBucket } from './limiter.js';
import type { Registry } from './registry.js';
import { RELIABLE_PROTOCOL, Session, type SessionContext } from './session.js';

function destroyOnError(this: Socket): void {
  this.destroy();
}

/** Frozen: a write to it throws instead of leaking into every session. */
const NONE: Record<string, string> = Object.freeze({}) as Record<string, string>;

export interface GatewayHost {
  readonly ctx: SessionContext;
  readonly registry: Registry;
  /** False while starting or draining: handshakes get 503. */
  accepting(): boolean;
  newConnectionId(): string;
  proxyUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void;
}

/** Query parameters of a resume; they are not passed on to the connect webhook. */
const RESUME_PARAMS = ['resume', 'lastSeq'];

export class Gateway {
  readonly #host: GatewayHost;
  readonly #paths: ReadonlySet<string>;
  readonly #wss: WebSocketServer;
  readonly #perIp = new AddressCounts();
  readonly #bucket: TokenBucket | null;
  readonly #extraHeaders = new WeakMap<IncomingMessage, Record<string, string>>();
  /** Client sockets, from the first byte of the handshake to the close. */
  #sockets = 0;
  /**
   * One listener for every socket's close, not a closure per connection. The address is the
   * one counted at the upgrade: a socket keeps what `remoteAddress` first answered.
   */
  readonly #released = (() => {
    const gateway = this;
    return function released(this: Socket): void {
      gateway.#sockets--;
      if (gateway.#host.ctx.config.limits.maxConnectionsPerIp > 0) gateway.#perIp.remove(this.remoteAddress ?? '');
    };
  })();

  constructor(host: GatewayHost) {
    this.#host = host;
    const { config, clock } = host.ctx;
    this.#paths = new Set(config.ws.paths);
    const { connectRatePerSec, connectBurst } = config.limits;
    this.#bucket = connectRatePerSec > 0 ? new TokenBucket(connectRatePerSec, connectBurst, clock) : null;
    this.#wss = new WebSocketServer({
      noServer: true,
      clientTracking: false,
      maxPayload: config.limits.maxMessageBytes,
      perMessageDeflate: false,
      handleProtocols: (protocols) => (protocols.has(RELIABLE_PROTOCOL) ? RELIABLE_PROTOCOL : protocols.values().next().value ?? false),
    });
    this.#wss.on('headers', (headers, req) => {
      const extra = this.#extraHeaders.get(req);
      if (extra) for (const [k, v] of Object.entries(extra)) headers.push(`${k}: ${v}`);
    });
  }

  get sockets(): number {
    return this.#sockets;
  }

  upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const url = new URL(req.url ?? '/', 'ws://switchboard');
    if (!this.#paths.has(url.pathname)) {
      this.#host.proxyUpgrade(req, socket, head);
      return;
    }
    const ctx = this.#host.ctx;
    const limits = ctx.config.limits;
    const address = (socket as Socket).remoteAddress ?? '';
    socket.on('error', destroyOnError);
    const refusal = this.#admit(address);
    if (refusal) {
      ctx.metrics.connectionsTotal.inc({ result: refusal.error.code });
      reject(socket, refusal.error.status, JSON.stringify(refusal.error.toJSON()), refusal.headers);
      return;
    }
    this.#sockets++;
    if (limits.maxConnectionsPerIp > 0) this.#perIp.add(address);
    socket.on('close', this.#released);
    this.#handshake(req, socket as Socket, head, url, address).catch((err: unknown) => {
      ctx.log.error({ err }, 'handshake failed');
      reject(socket, 500, JSON.stringify(new SwitchboardError('internal').toJSON()));
    });
  }

  #admit(address: string): { error: SwitchboardError; headers?: Record<string, string> } | null {
    const limits = this.#host.ctx.config.limits;
    if (!this.#host.accepting()) return { error: new SwitchboardError('not_ready') };
    if (this.#sockets >= limits.maxConnections) return { error: new SwitchboardError('too_many_connections') };
    if (limits.maxConnectionsPerIp > 0 && this.#perIp.get(address) >= limits.maxConnectionsPerIp) {
      return { error: new SwitchboardError('too_many_per_ip') };
    }
    if (this.#bucket) {
      const taken = this.#bucket.take();
      if (!taken.ok) return { error: new SwitchboardError('rate_limited'), headers: { 'retry-after': String(Math.max(1, Math.ceil(taken.retryAfterMs / 1000))) } };
    }
    return null;
  }

  async #handshake(req: IncomingMessage, socket: Socket, head: Buffer, url: URL, address: string): Promise<void> {
    const host = this.#host;
    const { ctx, registry } = host;
    const offered = (req.headers['sec-websocket-protocol'] ?? '').split(',').map((p) => p.trim()).filter(Boolean);
    const reliable = offered.includes(RELIABLE_PROTOCOL);

    if (reliable && url.searchParams.has('resume')) {
      const resumed = this.#resume(url, ctx.clock.now());
      if (resumed) {
        this.#complete(req, socket, head, () => {
          ctx.metrics.resumesTotal.inc({ result: 'resumed' });
          ctx.metrics.connectionsTotal.inc({ result: 'resumed' });
          return resumed.session;
        }, resumed.lastSeq);
        return;
      }
    }

    // Sessions without a query or forwarded headers share one empty record.
    let query: Record<string, string> = NONE;
    for (const [k, v] of url.searchParams) {
      if (RESUME_PARAMS.includes(k)) continue;
      if (query === NONE) query = {};
      query[k] = v;
    }
    let headers: Record<string, string> = NONE;
    if (ctx.upstream.headersOf) headers = ctx.upstream.headersOf(req.headers);
    else {
      for (const name of ctx.config.webhooks.forwardHeaders) {
        const value = req.headers[name];
        if (value === undefined) continue;
        if (headers === NONE) headers = {};
        headers[name] = Array.isArray(value) ? value.join(', ') : value;
      }
    }
    const session = new Session(ctx, {
      id: host.newConnectionId(),
      mode: reliable ? 'reliable' : 'raw',
      // One string for both when the URL has no query (the common case).
      path: url.pathname === req.url ? req.url : url.pathname,
      url: req.url ?? url.pathname,
      query,
      remoteAddress: address,
      subprotocol: reliable ? RELIABLE_PROTOCOL : offered[0] ?? null,
      headers,
    }, ctx.clock.now());

    const outcome = await ctx.upstream.connect(session);
    if (!outcome.ok) {
      ctx.metrics.connectionsTotal.inc({ result: `rejected_${outcome.status}` });
      session.log.info({ status: outcome.status }, 'handshake rejected by the app');
      reject(socket, outcome.status, outcome.body, outcome.headers);
      return;
    }
    if (outcome.headers) this.#extraHeaders.set(req, outcome.headers);
    registry.add(session);
    ctx.metrics.sessions.inc();
    if (socket.destroyed || !host.accepting()) {
      // The app accepted a client that is already gone: it still hears of the end.
      session.close(socket.destroyed ? 1006 : 1013, 'client left during the handshake');
      if (!socket.destroyed) reject(socket, 503, JSON.stringify(new SwitchboardError('not_ready').toJSON()));
      return;
    }
    this.#complete(req, socket, head, () => {
      ctx.metrics.connectionsTotal.inc({ result: 'accepted' });
      return session;
    }, undefined, outcome.effects);
  }

  #resume(url: URL, now: number): { session: Session; lastSeq: number } | null {
    const { ctx, registry } = this.#host;
    const id = ctx.tokens.verify(url.searchParams.get('resume') ?? '', now);
    const session = id === null ? undefined : registry.get(id);
    if (!session || session.mode !== 'reliable' || session.state === 'closing' || session.state === 'closed') {
      ctx.metrics.resumesTotal.inc({ result: id === null ? 'invalid' : 'expired' });
      return null;
    }
    const lastSeqText = url.searchParams.get('lastSeq') ?? '0';
    const lastSeq = /^\d{1,15}$/.test(lastSeqText) ? Number(lastSeqText) : 0;
    return { session, lastSeq };
  }

  #complete(
    req: IncomingMessage, socket: Socket, head: Buffer, take: () => Session,
    lastSeq?: number, effects?: import('../plugins/upstream.js').Effects,
  ): void {
    this.#wss.handleUpgrade(req, socket, head, (ws: WebSocket) => {
      // From here ws handles the socket's errors.
      socket.off('error', destroyOnError);
      const session = take();
      if (session.state === 'closed') {
        ws.close(1013, 'session ended');
        return;
      }
      session.attach(ws, socket, lastSeq === undefined ? undefined : { lastSeq });
      if (effects) session.apply(effects);
    });
  }

  close(): void {
    this.#wss.close();
  }
}

/** Answers a handshake with a plain HTTP status and closes the socket. */
export function reject(socket: Duplex, status: number, body?: Buffer | string, headers: Record<string, string> = {}): void {
  if (socket.destroyed) return;
  const content = body ?? '';
  const lines = [`HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Error'}`, 'Connection: close'];
  const hasType = Object.keys(headers).some((k) => k.toLowerCase() === 'content-type');
  if (!hasType && content.length > 0) lines.push('Content-Type: application/json');
  for (const [k, v] of Object.entries(headers)) if (k.toLowerCase() !== 'content-length') lines.push(`${k}: ${v}`);
  lines.push(`Content-Length: ${Buffer.byteLength(content)}`);
  socket.end(Buffer.concat([Buffer.from(`${lines.join('\r\n')}\r\n\r\n`), Buffer.from(content)]));
}
