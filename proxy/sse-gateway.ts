// Sessions over Server-Sent Events on the WebSocket paths (docs/usage.md, "HTTP
// fallback (SSE)"). A GET with `Accept: text/event-stream` passes the same admission, resume and
// connect webhook as a WebSocket handshake (proxy/gateway.ts), then its response is the
// session's link (proxy/sse-link.ts). A browser's EventSource comes back by itself with the same
// URL, `Last-Event-ID` and its cookies: each SSE session sets a cookie holding its resume token,
// and the reconnection finds its session among them (`pickResumable`).
// Long-polling on the same paths (`?transport=long-poll`) goes to proxy/poll-gateway.ts, which opens
// its sessions with this gateway's steps (`admitted`, `decide`, `begin`); both links take the POSTs here.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { readBody, sendError, sendJson } from './control-api.js';
import { bodyKind } from './payload.js';
import { parseSendBody, type SentFrame } from './sse-send.js';
import { CloseCode, SwitchboardError } from './errors.js';
import type { Gateway } from './gateway.js';
import { MAX_SSE_COOKIES } from './limits.js';
import type { Registry } from './registry.js';
import { RELIABLE_PROTOCOL, type Session, type SessionContext } from './session.js';
import { SseLink } from './sse-link.js';
import type { Effects } from './upstream.js';
import type { ClientLink } from './link.js';
import { isPoll, PollGateway } from './poll-gateway.js';
import { TOKEN_HEADER, type PostTarget } from './posted-frames.js';

export { TOKEN_HEADER } from './posted-frames.js';

/** Cookies of SSE sessions: this prefix and the session id. */
export const SSE_COOKIE_PREFIX = 'sb_sse_';

export interface SseGatewayHost {
  readonly ctx: SessionContext;
  readonly registry: Registry;
  readonly gateway: Gateway;
  /** This process (`<node>-<worker>`), as tokens name their holder. */
  readonly self: string;
  /** False while starting or draining. */
  accepting(): boolean;
  /** Where a session that moved away from this process went; null when it did not. */
  movedTo(id: string): string | null;
  /**
   * A POST for a session another process of this node holds goes there (workers: through the
   * primary), answered as that process answers it; null when none holds it. Absent: 404 here.
   */
  forward?(holder: string, session: string, post: Post): Promise<Posted | null>;
}

/** What a POST asks of the process holding its session. */
export interface Post {
  readonly path: string;
  readonly frames: readonly SentFrame[];
  readonly single: boolean;
}

/** A POST's answer: its status and JSON body. */
export interface Posted {
  readonly status: number;
  readonly body: unknown;
}

/** True when an Accept header takes `text/event-stream` (with any parameters or weight above 0). */
export function acceptsEventStream(accept: string | undefined): boolean {
  if (accept === undefined) return false;
  for (const range of accept.split(',')) {
    const [type, ...params] = range.split(';').map((p) => p.trim().toLowerCase());
    if (type !== 'text/event-stream') continue;
    const q = params.find((p) => p.startsWith('q='));
    if (q === undefined || Number(q.slice(2)) > 0) return true;
  }
  return false;
}

/** The SSE session cookies of a Cookie header (name without the prefix → token), at most MAX_SSE_COOKIES. */
export function sseCookies(header: string | undefined): Map<string, string> {
  const found = new Map<string, string>();
  if (header === undefined) return found;
  for (const pair of header.split(';')) {
    const eq = pair.indexOf('=');
    if (eq < 0) continue;
    const name = pair.slice(0, eq).trim();
    if (!name.startsWith(SSE_COOKIE_PREFIX)) continue;
    found.set(name.slice(SSE_COOKIE_PREFIX.length), pair.slice(eq + 1).trim());
    if (found.size >= MAX_SSE_COOKIES) break;
  }
  return found;
}

/** A Cookie header without the SSE session cookies (they are Switchboard's, not the app's); undefined when nothing is left. */
export function withoutSseCookies(header: string): string | undefined {
  const kept = header.split(';').map((p) => p.trim()).filter((p) => p !== '' && !p.startsWith(SSE_COOKIE_PREFIX));
  return kept.length > 0 ? kept.join('; ') : undefined;
}

/** What the choice among a browser's sessions reads of each. */
export interface Resumable {
  readonly attached: boolean;
  /** The highest seq written to its last link. */
  readonly lastWritten: number;
}

/**
 * The session a browser's reconnection (with `Last-Event-ID: lastEventId`) comes back for, among
 * those its cookies name; null when none or when it cannot tell. Tabs of one page share their
 * cookies: a session whose stream is still open belongs to another tab unless none is detached, so
 * detached ones come first, and among several the one whose last written seq is the event id.
 * Never a guess: two that fit equally give null (a new session, not another tab's messages).
 */
export function pickResumable<T extends Resumable>(candidates: readonly T[], lastEventId: number): T | null {
  const detached = candidates.filter((c) => !c.attached);
  const pool = detached.length > 0 ? detached : candidates;
  if (pool.length === 1) return pool[0];
  const exact = pool.filter((c) => c.lastWritten === lastEventId);
  return exact.length === 1 ? exact[0] : null;
}

/** `Last-Event-ID` as a seq; null when absent or not one. */
function lastEventIdOf(req: IncomingMessage): number | null {
  const value = req.headers['last-event-id'];
  return typeof value === 'string' && /^\d{1,15}$/.test(value.trim()) ? Number(value.trim()) : null;
}

function cookie(path: string, id: string, token: string, maxAgeS: number, secure: boolean): string {
  return `${SSE_COOKIE_PREFIX}${id}=${token}; Path=${path}; Max-Age=${maxAgeS}; HttpOnly; SameSite=Lax${secure ? '; Secure' : ''}`;
}

/** What opening a session over HTTP decided: the session, and how it starts (new, or resumed from a seq). */
export interface Decided {
  readonly session: Session;
  readonly resumed: { readonly lastSeq: number } | null;
  /** The connect webhook's effects and extra headers, for a new session. */
  readonly effects?: Effects;
  readonly headers?: Record<string, string>;
}

export class SseGateway {
  readonly #host: SseGatewayHost;
  /** The stream each session was last given here. */
  readonly #links = new WeakMap<Session, PostTarget>();
  /** Long-polling, opened the same way (proxy/poll-gateway.ts). */
  readonly #poll: PollGateway;

  constructor(host: SseGatewayHost) {
    this.#host = host;
    this.#poll = new PollGateway({
      ctx: host.ctx,
      registry: host.registry,
      gateway: host.gateway,
      links: this.#links,
      admitted: (req, res) => this.admitted(req, res),
      decide: (req, res, url, resumed, given) => this.decide(req, res, url, resumed, given),
      begin: (decided, link) => this.begin(decided, link),
    });
  }

  /**
   * Whether a request on a WebSocket path that is not an upgrade is Switchboard's: a GET that
   * takes `text/event-stream` or asks for long-polling (`?transport=long-poll`), or anything
   * naming a session (`X-Switchboard-Token`). The rest stays the app's, as before SSE.
   */
  takes(req: IncomingMessage, url: URL): boolean {
    return (req.method === 'GET' && (acceptsEventStream(req.headers.accept) || isPoll(url))) || req.headers[TOKEN_HEADER] !== undefined;
  }

  /** A request `takes` said is Switchboard's: a stream or a poll (GET), or what the client sends (POST). */
  serve(req: IncomingMessage, res: ServerResponse, url: URL): void {
    if (req.method === 'GET' && isPoll(url)) return this.#poll.serve(req, res, url);
    if (req.method === 'GET') return this.open(req, res, url);
    if (req.method === 'POST') {
      return void this.#send(req, res, url).catch((err: unknown) => {
        this.#host.ctx.log.error({ err }, 'SSE send failed');
        if (!res.headersSent) sendError(res, new SwitchboardError('internal'));
        else res.destroy();
      });
    }
    req.resume();
    res.setHeader('allow', 'GET, POST');
    sendError(res, new SwitchboardError('method_not_allowed', 'a session takes GET (its stream, with Accept: text/event-stream) and POST (what the client sends)'));
  }

  /** A GET on a WebSocket path that is not an upgrade. */
  open(req: IncomingMessage, res: ServerResponse, url: URL): void {
    // The stream's end is the connection's: a keep-alive socket would outlive the session's count.
    res.shouldKeepAlive = false;
    req.resume();
    if (!acceptsEventStream(req.headers.accept)) {
      return sendError(res, new SwitchboardError('not_acceptable'));
    }
    if (!this.admitted(req, res)) return;
    this.#open(req, res, url, req.socket).catch((err: unknown) => this.#failed(err, res, 'SSE handshake failed'));
  }

  /**
   * A new client's admission (draining, `limits.*`), its socket counted from here as a
   * WebSocket's is; false when it was refused (and answered).
   */
  admitted(req: IncomingMessage, res: ServerResponse): boolean {
    const { gateway, ctx } = this.#host;
    const socket = req.socket;
    gateway.accepted(socket);
    const refusal = gateway.admit(socket.remoteAddress ?? '');
    if (!refusal) return true;
    ctx.metrics.connectionsTotal.inc({ result: refusal.error.code });
    res.writeHead(refusal.error.status, { 'content-type': 'application/json', ...refusal.headers });
    res.end(JSON.stringify(refusal.error.toJSON()));
    return false;
  }

  #failed(err: unknown, res: ServerResponse, what: string): void {
    this.#host.ctx.log.error({ err }, what);
    if (!res.headersSent) sendError(res, new SwitchboardError('internal'));
    else res.destroy();
  }

  async #open(req: IncomingMessage, res: ServerResponse, url: URL, socket: Socket): Promise<void> {
    const { ctx, registry } = this.#host;
    const cookies = sseCookies(req.headers.cookie);
    const given = { ...req.headers };
    delete given['last-event-id'];
    if (given.cookie !== undefined) {
      const rest = withoutSseCookies(given.cookie);
      if (rest === undefined) delete given.cookie;
      else given.cookie = rest;
    }
    const decided = await this.decide(req, res, url, await this.#resume(req, url, cookies), given);
    if (decided === null || socket.destroyed) return;
    const { session } = decided;
    const now = ctx.clock.now();
    const path = url.pathname;
    const secure = (socket as Socket & { encrypted?: boolean }).encrypted === true || req.headers['x-forwarded-proto'] === 'https';
    const maxAgeS = Math.floor(ctx.config.session.tokenTtlMs / 1000);
    const setCookies = [cookie(path, session.id, ctx.tokens.issue(session.id, now), maxAgeS, secure)];
    // Cookies of sessions that ended here go, so that a browser does not gather them.
    for (const [id, token] of cookies) {
      if (id === session.id) continue;
      const read = ctx.tokens.read(token, now);
      if (read === null || (read.holder === this.#host.self && registry.get(read.session) === undefined)) setCookies.push(cookie(path, id, '', 0, secure));
    }
    const headers: Record<string, string | string[]> = { ...decided.headers };
    const appCookies = headers['set-cookie'];
    headers['set-cookie'] = appCookies === undefined ? setCookies : [...[appCookies].flat(), ...setCookies];
    res.writeHead(200, {
      ...headers,
      'content-type': 'text/event-stream',
      'cache-control': 'no-cache',
      'x-accel-buffering': 'no',
    });
    res.flushHeaders();
    if (!this.begin(decided, new SseLink(res, socket))) res.end();
  }

  /**
   * What opening a session over HTTP decides, after admission: the session `resumed` names, or a
   * new one the connect webhook accepted (its headers from `given`). Null when the request was
   * answered here: the app refused it, the client left meanwhile, or the sidecar began draining.
   */
  async decide(req: IncomingMessage, res: ServerResponse, url: URL, resumed: { session: Session; lastSeq: number } | null, given: IncomingMessage['headers']): Promise<Decided | null> {
    const { gateway, ctx } = this.#host;
    const socket = req.socket;
    if (resumed) return { session: resumed.session, resumed: { lastSeq: resumed.lastSeq } };
    const session = gateway.newSession(req, url, socket.remoteAddress ?? '', 'reliable', RELIABLE_PROTOCOL, given);
    const outcome = await ctx.upstream.connect(session);
    if (!outcome.ok) {
      ctx.metrics.connectionsTotal.inc({ result: `rejected_${outcome.status}` });
      session.log.info({ status: outcome.status }, 'HTTP session rejected by the app');
      res.writeHead(outcome.status, outcome.headers ?? {});
      res.end(outcome.body ?? '');
      return null;
    }
    const effects = outcome.effects;
    // The client left during the connect webhook, or the sidecar began draining: the app hears of its end once.
    const gone = socket.destroyed || res.writableEnded;
    if (gone || !this.#host.accepting()) {
      if (effects.user !== undefined) session.setUser(effects.user);
      ctx.metrics.sessions.inc();
      session.close(gone ? 1006 : CloseCode.tryAgainLater, 'client left during the handshake');
      if (!gone) sendError(res, new SwitchboardError('not_ready'));
      return null;
    }
    return { session, resumed: null, effects, headers: outcome.headers };
  }

  /**
   * A decided session, registered (new) or counted (resumed), on its link; false when it ended
   * meanwhile (the caller ends its answer).
   */
  begin(decided: Decided, link: ClientLink & PostTarget): boolean {
    const { ctx, registry } = this.#host;
    const { session, resumed } = decided;
    if (resumed) {
      ctx.metrics.resumesTotal.inc({ result: 'resumed' });
      ctx.metrics.connectionsTotal.inc({ result: 'resumed' });
    } else {
      registry.add(session);
      ctx.metrics.sessions.inc();
      ctx.metrics.connectionsTotal.inc({ result: 'accepted' });
    }
    if (session.state === 'closed') return false;
    this.#links.set(session, link);
    session.attach(link, resumed ?? undefined);
    if (decided.effects) session.apply(decided.effects);
    return true;
  }

  /**
   * What the client sends: reliable-mode frames for the session its token names, answered with
   * the ack, nack, pong or error of each (docs/usage.md, "HTTP fallback (SSE)").
   */
  async #send(req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    const { ctx, registry } = this.#host;
    const token = req.headers[TOKEN_HEADER];
    const read = typeof token === 'string' ? ctx.tokens.read(token, ctx.clock.now()) : null;
    if (read === null) {
      req.resume();
      return sendError(res, new SwitchboardError('bad_token'));
    }
    const session = registry.get(read.session);
    const here = session !== undefined && session.path === url.pathname && session.state !== 'closing' && session.state !== 'closed';
    // Not here: held by another process (a POST can land on any worker), or moved away from here.
    const holder = session === undefined ? this.#host.movedTo(read.session) ?? (read.holder !== this.#host.self ? read.holder : null) : null;
    if (!here && (holder === null || !this.#host.forward)) {
      req.resume();
      return sendError(res, new SwitchboardError('unknown_connection', 'no such session: it ended (open a new stream)'));
    }
    if (bodyKind(req.headers['content-type']) !== 'json') {
      req.resume();
      return sendError(res, new SwitchboardError('unsupported_type', 'what a session sends is application/json'));
    }
    let body: Buffer;
    try {
      body = await readBody(req, ctx.config.limits.maxMessageBytes);
    } catch (err) {
      if (err instanceof SwitchboardError) return sendError(res, err);
      throw err;
    }
    const parsed = parseSendBody(body.toString('utf8'));
    if (!parsed.ok) return sendError(res, new SwitchboardError(parsed.error.code, parsed.error.message));
    const post: Post = { path: url.pathname, frames: parsed.value.frames, single: parsed.value.single };
    let posted: Posted | null;
    if (here) posted = await this.#post(session, post);
    else {
      try {
        posted = await this.#host.forward!(holder!, read.session, post);
      } catch (err) {
        // The holder did not answer: as if the link had dropped, the client sends again after its next welcome.
        ctx.log.warn({ err: (err as Error).message, connection: read.session, holder }, 'a POST for a session of another process got no answer');
        posted = errorPosted(new SwitchboardError('not_streaming', 'the process holding the session did not answer: send again after the next welcome'));
      }
    }
    if (res.destroyed) return;
    if (posted === null) return sendError(res, new SwitchboardError('unknown_connection', 'no such session: it ended (open a new stream)'));
    sendJson(res, posted.status, posted.body);
  }

  /**
   * A POST another process took for a session it believed was here: answered from here, or where
   * the session went (`movedTo`), or null when it is not here (it ended).
   */
  async postHere(id: string, post: Post): Promise<Posted | { movedTo: string } | null> {
    const session = this.#host.registry.get(id);
    if (session === undefined || session.path !== post.path || session.state === 'closing' || session.state === 'closed') {
      const to = session === undefined ? this.#host.movedTo(id) : null;
      return to === null ? null : { movedTo: to };
    }
    return this.#post(session, post);
  }

  async #post(session: Session, post: Post): Promise<Posted> {
    const link = this.#links.get(session);
    if (link === undefined || link.ended || session.state !== 'open') return errorPosted(new SwitchboardError('not_streaming'));
    const answers = await link.deliver(post.frames);
    if (post.single) {
      const [answer] = answers;
      return { status: answer.type === 'error' ? 400 : 200, body: answer };
    }
    return { status: 200, body: answers };
  }

  /**
   * The session this request comes back for: `?resume=<token>` (library clients), else, on a
   * reconnection (`Last-Event-ID`), the one its cookies name. The position is `Last-Event-ID`,
   * else `?lastSeq=`.
   */
  async #resume(req: IncomingMessage, url: URL, cookies: Map<string, string>): Promise<{ session: Session; lastSeq: number } | null> {
    const { gateway, ctx, registry } = this.#host;
    const eventId = lastEventIdOf(req);
    const lastSeq = String(eventId ?? url.searchParams.get('lastSeq') ?? '0');
    const token = url.searchParams.get('resume');
    if (token !== null) return this.#resumed(await gateway.resumeFrom({ token, lastSeq }, ctx.clock.now()), url);
    if (eventId === null || cookies.size === 0) return null;
    const now = ctx.clock.now();
    const here: Session[] = [];
    const elsewhere: string[] = [];
    for (const token of cookies.values()) {
      const read = ctx.tokens.read(token, now);
      if (read === null) continue;
      const session = registry.get(read.session);
      // Not here: held by another process, or held here once and moved away (an older cookie
      // names this process); else it ended.
      if (session === undefined) {
        if (read.holder !== this.#host.self || this.#host.movedTo(read.session) !== null) elsewhere.push(token);
      }
      else if (session.path === url.pathname && session.mode === 'reliable' && (session.state === 'open' || session.state === 'detached')) here.push(session);
    }
    const chosen = pickResumable(here, eventId);
    if (chosen) return { session: chosen, lastSeq: eventId };
    // None here: a session another process holds comes here when it is the only one named.
    if (here.length === 0 && elsewhere.length === 1) return this.#resumed(await gateway.resumeFrom({ token: elsewhere[0], lastSeq }, now), url);
    ctx.metrics.resumesTotal.inc({ result: here.length > 0 ? 'ambiguous' : 'expired' });
    return null;
  }

  #resumed(resumed: { session: Session; lastSeq: number } | null, url: URL): { session: Session; lastSeq: number } | null {
    return resumed !== null && resumed.session.path === url.pathname ? resumed : null;
  }
}

const errorPosted = (err: SwitchboardError): Posted => ({ status: err.status, body: err.toJSON() });
