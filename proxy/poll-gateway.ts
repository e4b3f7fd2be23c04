// Sessions over long-polling on the WebSocket paths (docs/usage.md, "HTTP fallback
// (long-polling)"). A GET with `?transport=long-poll` and no token opens a session through the same
// admission, resume and connect webhook as an SSE stream (proxy/sse-gateway.ts), answered at once
// with the welcome; each following poll names its session with `X-Switchboard-Token` and its
// position with `lastSeq`, and is held by the session's link (proxy/poll-link.ts) until frames come
// or the wait passes. A poll whose session has no live link here (it detached, it lives on another
// node) or that comes from below what the link already handed out (an answer was lost) resumes the
// session from that position, on a new link. Sending is the SSE POST.
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import { sendError } from './control-api.js';
import { SwitchboardError } from './errors.js';
import type { Gateway } from './gateway.js';
import { MAX_TOKEN_BYTES } from './limits.js';
import { PollLink } from './poll-link.js';
import { TOKEN_HEADER, type PostTarget } from './posted-frames.js';
import type { Registry } from './registry.js';
import { fail, ok, type Result } from './result.js';
import type { Session, SessionContext } from './session.js';
import type { Decided } from './sse-gateway.js';

/** The query parameter that marks a GET as a poll, and its value. */
export const TRANSPORT_PARAM = 'transport';
export const LONG_POLL = 'long-poll';

/** What a poll's GET asks for: a new session (or a resume by `?resume=`), or the next answer of one. */
export type PollRequest =
  | { readonly kind: 'open'; readonly resume: { readonly token: string; readonly lastSeq: number } | null }
  | { readonly kind: 'poll'; readonly token: string; readonly lastSeq: number };

export type PollRequestError = { readonly code: 'bad_query' | 'bad_header' | 'not_acceptable'; readonly message: string };

/** True when a URL asks for long-polling: how the public port tells a poll from the app's own GET. */
export function isPoll(url: URL): boolean {
  return url.searchParams.get(TRANSPORT_PARAM) === LONG_POLL;
}

/** True when an Accept header is absent or takes `application/json` (by name, `application/*` or `*\/*`, weight above 0). */
export function acceptsJson(accept: string | undefined): boolean {
  if (accept === undefined || accept.trim() === '') return true;
  for (const range of accept.split(',')) {
    const [type, ...params] = range.split(';').map((p) => p.trim().toLowerCase());
    if (type !== 'application/json' && type !== 'application/*' && type !== '*/*') continue;
    const q = params.find((p) => p.startsWith('q='));
    if (q === undefined || Number(q.slice(2)) > 0) return true;
  }
  return false;
}

/** One value of a query parameter: null when absent, an error when given twice. */
function single(query: URLSearchParams, name: string): Result<string | null, PollRequestError> {
  const all = query.getAll(name);
  if (all.length > 1) return fail({ code: 'bad_query', message: `${name} is given ${all.length} times` });
  return ok(all.length === 0 ? null : all[0]);
}

function seqOf(value: string): Result<number, PollRequestError> {
  return /^\d{1,15}$/.test(value) ? ok(Number(value)) : fail({ code: 'bad_query', message: 'lastSeq is a seq: digits, at most 15' });
}

/** A poll's query and headers, checked once, without throwing. */
export function parsePollRequest(query: URLSearchParams, headers: IncomingHttpHeaders): Result<PollRequest, PollRequestError> {
  const transport = single(query, TRANSPORT_PARAM);
  if (!transport.ok) return transport;
  if (transport.value !== LONG_POLL) return fail({ code: 'bad_query', message: `a poll carries ${TRANSPORT_PARAM}=${LONG_POLL}` });
  if (!acceptsJson(headers.accept)) return fail({ code: 'not_acceptable', message: 'a poll is answered with application/json: its Accept must take it' });
  const lastSeq = single(query, 'lastSeq');
  if (!lastSeq.ok) return lastSeq;
  const seq = lastSeq.value === null ? ok(0) : seqOf(lastSeq.value);
  if (!seq.ok) return seq;
  const resume = single(query, 'resume');
  if (!resume.ok) return resume;
  const header = headers[TOKEN_HEADER];
  if (header === undefined) {
    if (resume.value === null) return ok({ kind: 'open', resume: null });
    if (resume.value === '' || Buffer.byteLength(resume.value) > MAX_TOKEN_BYTES) return fail({ code: 'bad_query', message: `resume is a token of 1 to ${MAX_TOKEN_BYTES} bytes` });
    return ok({ kind: 'open', resume: { token: resume.value, lastSeq: seq.value } });
  }
  if (typeof header !== 'string' || header === '' || Buffer.byteLength(header) > MAX_TOKEN_BYTES) {
    return fail({ code: 'bad_header', message: `X-Switchboard-Token is one token of 1 to ${MAX_TOKEN_BYTES} bytes` });
  }
  if (resume.value !== null) return fail({ code: 'bad_query', message: 'a poll names its session by X-Switchboard-Token, not also by resume' });
  if (lastSeq.value === null) return fail({ code: 'bad_query', message: 'a poll names its position: lastSeq=<the highest seq it has>' });
  return ok({ kind: 'poll', token: header, lastSeq: seq.value });
}

/** What the poll gateway needs of the SSE one: the opening of a session over HTTP, shared. */
export interface PollGatewayHost {
  readonly ctx: SessionContext;
  readonly registry: Registry;
  readonly gateway: Gateway;
  /** The link each HTTP session was last given here (POSTs find it there too). */
  readonly links: WeakMap<Session, PostTarget>;
  admitted(req: IncomingMessage, res: ServerResponse): boolean;
  decide(req: IncomingMessage, res: ServerResponse, url: URL, resumed: { session: Session; lastSeq: number } | null, given: IncomingMessage['headers']): Promise<Decided | null>;
  begin(decided: Decided, link: PollLink): boolean;
}

export class PollGateway {
  readonly #host: PollGatewayHost;

  constructor(host: PollGatewayHost) {
    this.#host = host;
  }

  /** A GET that `isPoll`. */
  serve(req: IncomingMessage, res: ServerResponse, url: URL): void {
    req.resume();
    const parsed = parsePollRequest(url.searchParams, req.headers);
    if (!parsed.ok) return sendError(res, new SwitchboardError(parsed.error.code, parsed.error.message));
    const asked = parsed.value;
    const done = asked.kind === 'open' ? this.#open(req, res, url, asked.resume) : this.#poll(req, res, url, asked.token, asked.lastSeq);
    done.catch((err: unknown) => {
      this.#host.ctx.log.error({ err }, 'long-poll failed');
      if (!res.headersSent) sendError(res, new SwitchboardError('internal'));
      else res.destroy();
    });
  }

  async #open(req: IncomingMessage, res: ServerResponse, url: URL, resume: { token: string; lastSeq: number } | null): Promise<void> {
    const { ctx, gateway } = this.#host;
    if (!this.#host.admitted(req, res)) return;
    const resumed = resume === null ? null : here(await gateway.resumeFrom({ token: resume.token, lastSeq: String(resume.lastSeq) }, ctx.clock.now()), url);
    // The marker is Switchboard's: the connect webhook sees the page's own query.
    const appUrl = new URL(url);
    appUrl.searchParams.delete(TRANSPORT_PARAM);
    const decided = await this.#host.decide(req, res, appUrl, resumed, req.headers);
    if (decided === null || req.socket.destroyed) return;
    this.#start(res, decided, decided.headers);
  }

  async #poll(req: IncomingMessage, res: ServerResponse, url: URL, token: string, lastSeq: number): Promise<void> {
    const { ctx, gateway, registry, links } = this.#host;
    const now = ctx.clock.now();
    const read = ctx.tokens.read(token, now);
    if (read === null) return sendError(res, new SwitchboardError('bad_token'));
    const session = registry.get(read.session);
    const link = session === undefined ? undefined : links.get(session);
    if (session !== undefined && session.path === url.pathname && link instanceof PollLink && !link.gone && lastSeq >= link.taken) {
      // The socket carries a session from here, as the one that opened it did.
      gateway.accepted(req.socket);
      return link.poll(res, lastSeq);
    }
    // No live link here, or an answer it handed out never arrived: a resume from `lastSeq`.
    if (!this.#host.admitted(req, res)) return;
    const resumed = here(await gateway.resumeFrom({ token, lastSeq: String(lastSeq) }, now), url);
    if (resumed === null) return sendError(res, new SwitchboardError('unknown_connection', 'no such session: it ended (open a new one)'));
    const decided = await this.#host.decide(req, res, url, resumed, req.headers);
    if (decided === null || req.socket.destroyed) return;
    this.#start(res, decided);
  }

  /** The session on a new link, whose first answer (the welcome, what a resume replays) is this GET's. */
  #start(res: ServerResponse, decided: Decided, extra?: Record<string, string>): void {
    const { ctx } = this.#host;
    const link = new PollLink(ctx.clock, ctx.config.longPoll.waitMs);
    if (!this.#host.begin(decided, link)) return sendError(res, new SwitchboardError('unknown_connection', 'the session ended'));
    for (const [name, value] of Object.entries(extra ?? {})) res.setHeader(name, value);
    link.poll(res, decided.resumed?.lastSeq ?? 0);
  }
}

function here(resumed: { session: Session; lastSeq: number } | null, url: URL): { session: Session; lastSeq: number } | null {
  return resumed !== null && resumed.session.path === url.pathname ? resumed : null;
}
