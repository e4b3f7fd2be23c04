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
import { parseConnectionId } from './target.js';
import { forwardedName, isSidecarHeader } from './webhook-headers.js';
import type { Effects } from './upstream.js';
import { MAX_MESSAGE_FRAGMENTS } from './limits.js';
import type { Mode } from './payload.js';
import { WebSocketLink } from './ws-link.js';

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
  /**
   * Passes a resume for a session another worker of this process group holds to that worker
   * (false when there is no such worker: the client then gets a new session).
   */
  handoff?(worker: number, req: IncomingMessage, socket: Socket, head: Buffer): boolean;
  /** Sets the forwarding headers (X-Forwarded-*, Forwarded) as the app will see them on the connect webhook. */
  setForwarding(req: IncomingMessage): void;
  /** This process's node and worker, as connection ids name them, and both as one (`<node>-<worker>`). */
  readonly nodeId: string;
  readonly worker: number;
  readonly self: string;
  /**
   * Takes over a session another process holds (`<node>-<worker>`; this one: wherever it went
   * from here), registered here; null when there is none. Absent without a relay that carries sessions.
   */
  arrive?(holder: string, id: string): Promise<Session | null>;
}

/** Query parameters of a resume; they are not passed on to the connect webhook. */
const RESUME_PARAMS = ['resume', 'lastSeq'];
/**
 * A resume may travel as subprotocols instead (`switchboard.resume.<token>`,
 * `switchboard.last-seq.<n>`), so that access logs, which record URLs, never see the token.
 */
const RESUME_PROTOCOL = 'switchboard.resume.';
const LAST_SEQ_PROTOCOL = 'switchboard.last-seq.';

/** The subprotocols a client offered. */
function offeredProtocols(req: IncomingMessage): string[] {
  return (req.headers['sec-websocket-protocol'] ?? '').split(',').map((p) => p.trim()).filter(Boolean);
}

/** What a handshake asks to resume: from its subprotocols, else its query; null when nothing. */
function resumeRequest(req: IncomingMessage, url: URL): { token: string; lastSeq: string } | null {
  const offered = offeredProtocols(req);
  const token = offered.find((p) => p.startsWith(RESUME_PROTOCOL));
  if (token !== undefined) {
    return { token: token.slice(RESUME_PROTOCOL.length), lastSeq: offered.find((p) => p.startsWith(LAST_SEQ_PROTOCOL))?.slice(LAST_SEQ_PROTOCOL.length) ?? '0' };
  }
  const query = url.searchParams.get('resume');
  return query === null ? null : { token: query, lastSeq: url.searchParams.get('lastSeq') ?? '0' };
}

/** The handshake's headers without the resume subprotocols (they are for Switchboard, not the app). */
function withoutResume(headers: IncomingMessage['headers']): IncomingMessage['headers'] {
  const protocol = headers['sec-websocket-protocol'];
  if (protocol === undefined || !protocol.includes('switchboard.')) return headers;
  const kept = protocol.split(',').map((p) => p.trim()).filter((p) => p && !p.startsWith(RESUME_PROTOCOL) && !p.startsWith(LAST_SEQ_PROTOCOL));
  const copy = { ...headers };
  if (kept.length > 0) copy['sec-websocket-protocol'] = kept.join(', ');
  else delete copy['sec-websocket-protocol'];
  return copy;
}

/** A handshake between ws's checks and the upgrade: what `verifyClient` needs to decide. */
interface Pending {
  readonly socket: Socket;
  readonly url: URL;
  readonly address: string;
  /** The session the upgrade binds, once decided; resumes carry the client's last seq. */
  session?: Session;
  lastSeq?: number;
  effects?: Effects;
  fresh?: boolean;
  taken?: boolean;
}

export class Gateway {
  readonly #host: GatewayHost;
  readonly #paths: ReadonlySet<string>;
  readonly #wss: WebSocketServer;
  readonly #perIp = new AddressCounts();
  readonly #bucket: TokenBucket | null;
  readonly #extraHeaders = new WeakMap<IncomingMessage, Record<string, string>>();
  readonly #pending = new WeakMap<IncomingMessage, Pending>();
  /** Client sockets of the public port, from the accept to the close (half-sent handshakes too). */
  #sockets = 0;
  readonly #counted = new WeakSet<Socket>();
  /**
   * One listener for every socket's close, not a closure per connection. The address is the
   * one counted at the accept: a socket keeps what `remoteAddress` first answered.
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
      maxFragments: MAX_MESSAGE_FRAGMENTS,
      perMessageDeflate: false,
      // Never a resume subprotocol: the token is not echoed back.
      handleProtocols: (protocols) => (protocols.has(RELIABLE_PROTOCOL) ? RELIABLE_PROTOCOL
        : [...protocols].find((p) => !p.startsWith(RESUME_PROTOCOL) && !p.startsWith(LAST_SEQ_PROTOCOL)) ?? false),
      // Runs only once ws has found the handshake well-formed (method, key, version,
      // subprotocols): a handshake ws would refuse never reaches the app.
      verifyClient: (info: { req: IncomingMessage }, done: (ok: boolean) => void) => this.#verify(info.req, done),
    });
    this.#wss.on('headers', (headers, req) => {
      const extra = this.#extraHeaders.get(req);
      if (extra) for (const [k, v] of Object.entries(extra)) headers.push(`${k}: ${v}`);
    });
  }

  get sockets(): number {
    return this.#sockets;
  }

  /**
   * Every socket the public port accepts counts against the limits from its first byte, so
   * half-sent handshakes do too; one whose request turns out to be plain HTTP stops counting
   * (`plainHttp`), and a WebSocket counts until it closes.
   */
  accepted(socket: Socket): void {
    if (this.#counted.has(socket)) return;
    this.#counted.add(socket);
    this.#sockets++;
    if (this.#host.ctx.config.limits.maxConnectionsPerIp > 0) this.#perIp.add(socket.remoteAddress ?? '');
    socket.on('close', this.#released);
  }

  /** A request that is not an upgrade: its socket is an HTTP connection, not a client of ours. */
  plainHttp(socket: Socket): void {
    if (!this.#counted.delete(socket)) return;
    socket.off('close', this.#released);
    this.#released.call(socket);
  }

  upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const url = new URL(req.url ?? '/', 'ws://switchboard');
    if (!this.#paths.has(url.pathname)) {
      this.#host.proxyUpgrade(req, socket, head);
      return;
    }
    const ctx = this.#host.ctx;
    const address = (socket as Socket).remoteAddress ?? '';
    socket.on('error', destroyOnError);
    // A keep-alive HTTP connection that asks for an upgrade counts again from here.
    this.accepted(socket as Socket);
    const refusal = this.admit(address);
    if (refusal) {
      ctx.metrics.connectionsTotal.inc({ result: refusal.error.code });
      rejectWith(socket, refusal.error, refusal.headers);
      return;
    }
    if (this.#handedOff(req, socket as Socket, head, url)) return;
    const pending: Pending = { socket: socket as Socket, url, address };
    this.#pending.set(req, pending);
    this.#wss.handleUpgrade(req, socket, head, (ws: WebSocket) => this.#bind(pending, ws));
  }

  /** A resume of a session that lives in another worker goes there, socket and all. */
  #handedOff(req: IncomingMessage, socket: Socket, head: Buffer, url: URL): boolean {
    const host = this.#host;
    const asked = host.handoff ? resumeRequest(req, url) : null;
    if (!host.handoff || asked === null) return false;
    const read = host.ctx.tokens.read(asked.token, host.ctx.clock.now());
    // The holder, not the id: a session that moved here from another node names that node.
    const owner = read?.holder ? parseConnectionId(`${read.holder}-x`) : null;
    if (!owner || owner.node !== host.nodeId || owner.worker === host.worker || host.registry.get(read!.session)) return false;
    if (!host.handoff(owner.worker, req, socket, head)) return false;
    socket.off('error', destroyOnError);
    return true;
  }

  /** A refusal for a new client from `address` (draining, limits), or null. */
  admit(address: string): { error: SwitchboardError; headers?: Record<string, string> } | null {
    const limits = this.#host.ctx.config.limits;
    if (!this.#host.accepting()) return { error: new SwitchboardError('not_ready') };
    // This socket is one of those counted.
    if (this.#sockets > limits.maxConnections) return { error: new SwitchboardError('too_many_connections') };
    if (limits.maxConnectionsPerIp > 0 && this.#perIp.get(address) > limits.maxConnectionsPerIp) {
      return { error: new SwitchboardError('too_many_per_ip') };
    }
    if (this.#bucket) {
      const taken = this.#bucket.take();
      if (!taken.ok) return { error: new SwitchboardError('rate_limited'), headers: { 'retry-after': String(Math.max(1, Math.ceil(taken.retryAfterMs / 1000))) } };
    }
    return null;
  }

  /** ws's verifyClient: resume, or the app's say. Refusals are answered here, not through ws. */
  #verify(req: IncomingMessage, done: (ok: boolean) => void): void {
    const pending = this.#pending.get(req);
    if (!pending) return done(false);
    this.#decide(req, pending).then((ok) => {
      if (!ok) return;
      done(true);
      // ws upgrades synchronously; when it did not, the client had already gone.
      if (!pending.taken) this.#abandon(pending);
    }).catch((err: unknown) => {
      this.#host.ctx.log.error({ err }, 'handshake failed');
      rejectWith(pending.socket, new SwitchboardError('internal'));
    });
  }

  async #decide(req: IncomingMessage, pending: Pending): Promise<boolean> {
    const host = this.#host;
    const { ctx } = host;
    const { url, socket, address } = pending;
    const offered = offeredProtocols(req).filter((p) => !p.startsWith(RESUME_PROTOCOL) && !p.startsWith(LAST_SEQ_PROTOCOL));
    const reliable = offered.includes(RELIABLE_PROTOCOL);
    const asked = resumeRequest(req, url);

    if (reliable && asked !== null) {
      const resumed = await this.resumeFrom(asked, ctx.clock.now());
      if (resumed) {
        pending.session = resumed.session;
        pending.lastSeq = resumed.lastSeq;
        return true;
      }
    }

    const session = this.newSession(req, url, address, reliable ? 'reliable' : 'raw', reliable ? RELIABLE_PROTOCOL : offered[0] ?? null, withoutResume(req.headers));
    const outcome = await ctx.upstream.connect(session);
    if (!outcome.ok) {
      ctx.metrics.connectionsTotal.inc({ result: `rejected_${outcome.status}` });
      session.log.info({ status: outcome.status }, 'handshake rejected by the app');
      reject(socket, outcome.status, outcome.body, outcome.headers);
      return false;
    }
    pending.session = session;
    pending.effects = outcome.effects;
    pending.fresh = true;
    if (!host.accepting()) {
      this.#abandon(pending);
      rejectWith(socket, new SwitchboardError('not_ready'));
      return false;
    }
    if (outcome.headers) this.#extraHeaders.set(req, outcome.headers);
    return true;
  }

  /**
   * A new session for a handshake the app has yet to decide on: its query without the resume
   * parameters, and the headers `webhooks.forwardHeaders` names (from `given`, cleaned of what is Switchboard's).
   */
  newSession(req: IncomingMessage, url: URL, address: string, mode: Mode, subprotocol: string | null, given: IncomingMessage['headers']): Session {
    const host = this.#host;
    const { ctx } = host;
    // Sessions without a query or forwarded headers share one empty record.
    let query: Record<string, string> = NONE;
    for (const [k, v] of url.searchParams) {
      if (RESUME_PARAMS.includes(k)) continue;
      if (query === NONE) query = {};
      query[k] = v;
    }
    host.setForwarding(req);
    let headers: Record<string, string> = NONE;
    if (ctx.upstream.headersOf) headers = ctx.upstream.headersOf(given);
    else {
      for (const name of ctx.config.webhooks.forwardHeaders) {
        const value = given[name];
        if (value === undefined || isSidecarHeader(name)) continue;
        if (headers === NONE) headers = {};
        headers[forwardedName(name)] = Array.isArray(value) ? value.join(', ') : value;
      }
    }
    return new Session(ctx, {
      id: host.newConnectionId(),
      mode,
      // One string for both when the URL has no query (the common case).
      path: url.pathname === req.url ? req.url : url.pathname,
      url: req.url ?? url.pathname,
      query,
      remoteAddress: address,
      subprotocol,
      headers,
    }, ctx.clock.now());
  }

  /** The socket exists: only now is a new session registered (and a resume taken over). */
  #bind(pending: Pending, ws: WebSocket): void {
    pending.taken = true;
    const { ctx, registry } = this.#host;
    // From here ws handles the socket's errors.
    pending.socket.off('error', destroyOnError);
    const session = pending.session!;
    if (pending.fresh) {
      registry.add(session);
      ctx.metrics.sessions.inc();
      ctx.metrics.connectionsTotal.inc({ result: 'accepted' });
    } else {
      ctx.metrics.resumesTotal.inc({ result: 'resumed' });
      ctx.metrics.connectionsTotal.inc({ result: 'resumed' });
    }
    if (session.state === 'closed') {
      ws.close(1013, 'session ended');
      return;
    }
    session.attach(new WebSocketLink(ws, pending.socket), pending.lastSeq === undefined ? undefined : { lastSeq: pending.lastSeq });
    if (pending.effects) session.apply(pending.effects);
  }

  /**
   * The app accepted a client that is gone (it left during the connect webhook, or the
   * sidecar began draining): the session was never registered, and the app hears of its end once.
   */
  #abandon(pending: Pending): void {
    const session = pending.session;
    if (!pending.fresh || !session) return;
    pending.fresh = false;
    // The app named the user: its disconnect says who left (not registered, so not indexed).
    if (pending.effects?.user !== undefined) session.setUser(pending.effects.user);
    this.#host.ctx.metrics.sessions.inc();
    session.close(pending.socket.destroyed ? 1006 : 1013, 'client left during the handshake');
  }

  /** The session a resume names: held here, or brought here from the process that holds it. */
  async resumeFrom(asked: { token: string; lastSeq: string }, now: number): Promise<{ session: Session; lastSeq: number } | null> {
    const host = this.#host;
    const { ctx, registry } = host;
    const read = ctx.tokens.read(asked.token, now);
    const id = read?.session ?? null;
    let session = id === null ? undefined : registry.get(id);
    // Held elsewhere: brought here from where the token says (or from where it went from here).
    if (read?.holder && !session && host.arrive) session = (await host.arrive(read.holder, read.session)) ?? undefined;
    if (!session || session.mode !== 'reliable' || session.state === 'closing' || session.state === 'closed' || session.state === 'moving') {
      ctx.metrics.resumesTotal.inc({ result: id === null ? 'invalid' : 'expired' });
      return null;
    }
    const lastSeq = /^\d{1,15}$/.test(asked.lastSeq) ? Number(asked.lastSeq) : 0;
    return { session, lastSeq };
  }

  close(): void {
    this.#wss.close();
  }
}

/** Answers a handshake with a SwitchboardError (its status, its JSON) and closes the socket. */
export function rejectWith(socket: Duplex, err: SwitchboardError, headers: Record<string, string> = {}): void {
  reject(socket, err.status, JSON.stringify(err.toJSON()), { 'Content-Type': 'application/json', ...headers });
}

/** Answers a handshake with a plain HTTP status (and the body and headers given) and closes the socket. */
export function reject(socket: Duplex, status: number, body?: Buffer | string, headers: Record<string, string> = {}): void {
  if (socket.destroyed) return;
  const content = body ?? '';
  const lines = [`HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Error'}`, 'Connection: close'];
  // A body is labelled only as its sender labelled it: an app's refusal without a type stays without one.
  for (const [k, v] of Object.entries(headers)) if (k.toLowerCase() !== 'content-length') lines.push(`${k}: ${v}`);
  lines.push(`Content-Length: ${Buffer.byteLength(content)}`);
  socket.end(Buffer.concat([Buffer.from(`${lines.join('\r\n')}\r\n\r\n`), Buffer.from(content)]));
}
