// The control port: the push API, health, metrics, the status page and the OpenAPI document.
// Plugins add routes of their own (GRIP publish, @connections) through `ControlRoute`.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { hasBearer } from './auth.js';
import type { Config } from './config.js';
import type { Clock } from './clock.js';
import { CloseCode, SwitchboardError } from './errors.js';
import type { Metrics } from './metrics.js';
import { JsonError } from './json.js';
import { jsonBody, parseBatch, pushFromHttp } from './push-request.js';
import { addCounts, zeroCounts, type Directory } from './directory.js';
import { nameOf, toAll, toChannel, toConnection, toUser, type Target } from './target.js';
import { bodyKind, payloadOf } from './payload.js';
import type { Logger } from 'pino';
import { CONNECTIONS_DEFAULT_LIMIT, CONNECTIONS_MAX_LIMIT, MAX_BATCH_MESSAGES, MAX_CHANNEL, MAX_CLOSE_REASON_BYTES, MAX_USER_NAME, MEMBERS_DEFAULT_LIMIT, MEMBERS_MAX_LIMIT } from './limits.js';
import { decodeMembersCursor, mergeMembers } from './presence-query.js';
import type { NodeView, Scope, Views } from './views.js';
import { openApiDocument } from './openapi.js';
import { readStatus } from './status.js';
import { STATUS_PAGE, STATUS_PAGE_POLICY } from './status-page.js';

export interface ControlRequest {
  readonly req: IncomingMessage;
  readonly res: ServerResponse;
  readonly url: URL;
  readonly match: RegExpExecArray;
  readonly directory: Directory;
  /** Reads the body, at most `limit` bytes (413 beyond). */
  body(limit?: number): Promise<Buffer>;
}

export interface ControlRoute {
  /** `*` takes every method (the route answers 405 itself). */
  readonly method: string;
  readonly pattern: RegExp;
  /** Routes that answer in their own format (GRIP, API Gateway) skip the bearer token check when false. */
  readonly authenticated?: boolean;
  handle(request: ControlRequest): Promise<void> | void;
}

export interface ControlDeps {
  readonly config: Readonly<Config>;
  readonly clock: Clock;
  readonly log: Logger;
  readonly metrics: Metrics;
  readonly directory: Directory;
  /** In a cluster: views over every node (scatter-gather); null answers for this node alone. */
  readonly views: Views | null;
  /** This node, for /v1/nodes outside a cluster. */
  readonly node: () => Promise<NodeView>;
  readonly ready: () => Promise<{ ready: boolean; reason?: string }>;
  /** Metrics text; with workers, all of them aggregated. */
  readonly metricsText: () => Promise<{ contentType: string; body: string }>;
  readonly routes: readonly ControlRoute[];
}


export function sendJson(res: ServerResponse, status: number, value: unknown, headers: Record<string, string> = {}): void {
  const body = JSON.stringify(value);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), ...headers });
  res.end(body);
}

export function sendError(res: ServerResponse, err: SwitchboardError): void {
  sendJson(res, err.status, err.toJSON());
}

export function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const declared = Number(req.headers['content-length']);
    if (declared > limit) {
      req.resume();
      reject(new SwitchboardError('too_large', `body of ${declared} bytes is more than ${limit}`));
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        req.removeAllListeners('data');
        req.resume();
        reject(new SwitchboardError('too_large', `body is more than ${limit} bytes`));
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

/** A path segment, percent-decoded; a malformed one is a 400. */
export function decodeSegment(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    throw new SwitchboardError('bad_request', 'malformed percent-encoding in the path');
  }
}

/** Health and metrics by path: on the control port, and on `metrics.listen` when that is set. */
function healthHandlers(deps: Pick<ControlDeps, 'ready' | 'metricsText'>): Record<string, (res: ServerResponse) => Promise<void>> {
  return {
    '/healthz': async (res) => sendJson(res, 200, { status: 'ok' }),
    '/readyz': async (res) => {
      const state = await deps.ready();
      sendJson(res, state.ready ? 200 : 503, state.ready ? { status: 'ready' } : { status: 'not ready', reason: state.reason });
    },
    '/metrics': async (res) => {
      let text: { contentType: string; body: string };
      try {
        text = await deps.metricsText();
      } catch (err) {
        // Counters of a worker left out would read as resets to Prometheus: the scrape fails instead.
        const e = err instanceof SwitchboardError ? err : new SwitchboardError('metrics_unavailable');
        return sendJson(res, e.status, e.toJSON(), { 'retry-after': '1' });
      }
      res.writeHead(200, { 'content-type': text.contentType });
      res.end(text.body);
    },
  };
}

function healthRoutes(deps: Pick<ControlDeps, 'ready' | 'metricsText'>): ControlRoute[] {
  return Object.entries(healthHandlers(deps)).map(([path, handle]) => ({
    // Probes answer without the token; the metrics need it on the control port.
    method: 'GET', pattern: new RegExp(`^${path}$`), authenticated: path === '/metrics', handle: ({ res }) => handle(res),
  }));
}

/**
 * The `metrics.listen` port: /metrics, /healthz and /readyz only, without the control token, so
 * Prometheus and probes reach them while the push API stays on loopback.
 */
export function createMetricsApi(deps: Pick<ControlDeps, 'ready' | 'metricsText' | 'log'>): (req: IncomingMessage, res: ServerResponse) => void {
  const handlers = healthHandlers(deps);
  return (req, res) => {
    req.resume();
    const handle = handlers[new URL(req.url ?? '/', 'http://metrics').pathname];
    if (!handle) return sendError(res, new SwitchboardError('not_found'));
    if (req.method !== 'GET' && req.method !== 'HEAD') return sendError(res, new SwitchboardError('method_not_allowed'));
    handle(res).catch((err: unknown) => {
      deps.log.error({ err }, 'metrics request failed');
      if (!res.headersSent) sendError(res, new SwitchboardError('internal'));
    });
  };
}

/** The control port's request listener, with the routes it answers (the OpenAPI test reads them). */
export type ControlApi = ((req: IncomingMessage, res: ServerResponse) => void) & { readonly routes: readonly ControlRoute[] };

export function createControlApi(deps: ControlDeps): ControlApi {
  const { config, directory, clock, views } = deps;
  const maxBytes = config.limits.maxMessageBytes;
  const token = config.control.token;
  const authorized = (req: IncomingMessage): boolean => token === null || hasBearer(req.headers.authorization, token);

  /** A push from this request's body and headers. */
  const pushOf = async (r: ControlRequest) => {
    const kind = bodyKind(r.req.headers['content-type']);
    if (kind === null) throw new SwitchboardError('unsupported_type');
    const parsed = payloadOf(kind, await r.body(maxBytes));
    if (!parsed.ok) throw new SwitchboardError(parsed.error.code, parsed.error.message, { cause: parsed.error });
    const payload = parsed.value;
    const h = r.req.headers;
    return pushFromHttp(payload, {
      class: h['x-switchboard-class'] as string | undefined,
      coalesceKey: h['x-switchboard-coalesce-key'] as string | undefined,
      ttlMs: h['x-switchboard-ttl-ms'] as string | undefined,
    }, clock.now());
  };

  const sendTo = (target: Target) => async (r: ControlRequest) => {
    const push = await pushOf(r);
    const { counts, published, found } = await directory.route(target, push);
    if (!found) throw new SwitchboardError('unknown_connection', `no connection ${JSON.stringify(nameOf(target))}`);
    sendJson(r.res, 202, published ? { published: true, ...counts } : counts);
  };

  /** In a cluster, a connection not found may be on a node that did not answer: the message says which. */
  const unknown = (id: string, nodes?: Scope) => new SwitchboardError('unknown_connection', nodes && nodes.missing.length > 0
    ? `no connection ${JSON.stringify(id)} on the nodes that answered (not answering: ${nodes.missing.join(', ')})`
    : `no connection ${JSON.stringify(id)}`);

  const builtin: ControlRoute[] = [
    ...healthRoutes(deps),
    // The page and the document hold no data: they answer without the token (docs/decisions.md).
    {
      method: 'GET', pattern: /^\/$/, authenticated: false,
      handle: ({ res }) => {
        res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'content-security-policy': STATUS_PAGE_POLICY, 'cache-control': 'no-cache' });
        res.end(STATUS_PAGE);
      },
    },
    { method: 'GET', pattern: /^\/openapi\.json$/, authenticated: false, handle: ({ res }) => sendJson(res, 200, openApiDocument()) },
    { method: 'GET', pattern: /^\/v1\/status$/, handle: async ({ res }) => sendJson(res, 200, await readStatus({ ...deps, now: () => clock.now() }), { 'cache-control': 'no-store' }) },
    { method: 'POST', pattern: /^\/v1\/connections\/([^/]+)\/messages$/, handle: (r) => sendTo(toConnection(decodeSegment(r.match[1])))(r) },
    { method: 'POST', pattern: /^\/v1\/users\/([^/]+)\/messages$/, handle: (r) => sendTo(toUser(decodeSegment(r.match[1])))(r) },
    { method: 'POST', pattern: /^\/v1\/channels\/([^/]+)\/messages$/, handle: (r) => sendTo(toChannel(decodeSegment(r.match[1])))(r) },
    { method: 'POST', pattern: /^\/v1\/broadcast$/, handle: (r) => sendTo(toAll)(r) },
    {
      method: 'POST', pattern: /^\/v1\/batch$/,
      handle: async (r) => {
        if (bodyKind(r.req.headers['content-type']) !== 'json') throw new SwitchboardError('unsupported_type', 'a batch is application/json');
        const items = parseBatch(jsonBody((await r.body(maxBytes * 4)).toString('utf8')), clock.now(), MAX_BATCH_MESSAGES, maxBytes);
        const total = zeroCounts();
        let missing = 0;
        let published = false;
        for (const item of items) {
          const result = await directory.route(item.target, item.push);
          if (!result.found) missing++;
          published ||= result.published;
          addCounts(total, result.counts);
        }
        sendJson(r.res, 202, { ...(published ? { published: true } : {}), ...total, missing });
      },
    },
    {
      method: 'DELETE', pattern: /^\/v1\/connections\/([^/]+)$/,
      handle: async (r) => {
        const { code, reason } = closeParams(r.url);
        const id = decodeSegment(r.match[1]);
        if (views) {
          const { closed, nodes } = await views.close(toConnection(id), code, reason);
          // Published too: a session parked in the broker (between a drain and its claim) takes it along.
          await directory.close(toConnection(id), code, reason);
          if (closed === 0) throw unknown(id, nodes);
          return sendJson(r.res, 200, { closed, nodes });
        }
        const closed = await directory.close(toConnection(id), code, reason);
        if (closed === 0) throw unknown(id);
        sendJson(r.res, 200, { closed });
      },
    },
    {
      method: 'DELETE', pattern: /^\/v1\/users\/([^/]+)$/,
      handle: async (r) => {
        const { code, reason } = closeParams(r.url);
        const target = toUser(decodeSegment(r.match[1]));
        if (!views) return sendJson(r.res, 200, { closed: await directory.close(target, code, reason) });
        const answer = await views.close(target, code, reason);
        // Published too: parked sessions of the user take the close along.
        await directory.close(target, code, reason);
        sendJson(r.res, 200, answer);
      },
    },
    {
      method: 'PUT', pattern: /^\/v1\/connections\/([^/]+)\/channels\/([^/]+)$/,
      handle: (r) => setChannel(r, true),
    },
    {
      method: 'DELETE', pattern: /^\/v1\/connections\/([^/]+)\/channels\/([^/]+)$/,
      handle: (r) => setChannel(r, false),
    },
    {
      method: 'GET', pattern: /^\/v1\/connections\/([^/]+)$/,
      handle: async (r) => {
        const id = decodeSegment(r.match[1]);
        if (views) {
          const { info, nodes } = await views.info(id);
          if (!info) throw unknown(id, nodes);
          return sendJson(r.res, 200, { ...info, nodes });
        }
        const info = await directory.info(id);
        if (!info) throw unknown(id);
        sendJson(r.res, 200, info);
      },
    },
    {
      method: 'GET', pattern: /^\/v1\/connections$/,
      handle: async (r) => {
        const q = r.url.searchParams;
        const limit = limitParam(q.get('limit'), CONNECTIONS_DEFAULT_LIMIT, CONNECTIONS_MAX_LIMIT);
        const cursor = q.get('cursor') ?? undefined;
        if (cursor !== undefined && !/^[0-9a-zA-Z_-]{1,200}$/.test(cursor)) throw new SwitchboardError('bad_query', 'cursor: not a cursor this API returned');
        const query = { user: q.get('user') ?? undefined, channel: q.get('channel') ?? undefined, limit, cursor };
        sendJson(r.res, 200, views ? await views.list(query) : await directory.list(query));
      },
    },
    {
      method: 'GET', pattern: /^\/v1\/channels\/([^/]+)$/,
      handle: async (r) => {
        const channel = decodeSegment(r.match[1]);
        if (views) return sendJson(r.res, 200, { channel, ...(await views.channelSize(channel)) });
        // One node (all its workers) is all there is.
        sendJson(r.res, 200, { channel, connections: await directory.channelSize(channel) });
      },
    },
    {
      method: 'GET', pattern: /^\/v1\/channels\/([^/]+)\/presence$/,
      handle: async (r) => {
        const channel = nameParam(r.match[1], 'channel', MAX_CHANNEL);
        const q = r.url.searchParams;
        const limit = limitParam(q.get('limit'), MEMBERS_DEFAULT_LIMIT, MEMBERS_MAX_LIMIT);
        const cursor = q.get('cursor');
        const after = cursor === null ? undefined : decodeMembersCursor(cursor);
        if (after === null) throw new SwitchboardError('bad_query', 'cursor: not a cursor this API returned');
        if (views) return sendJson(r.res, 200, { channel, ...(await views.members(channel, after, limit)) });
        // One node (all its workers, merged by the directory) is all there is.
        sendJson(r.res, 200, { channel, ...mergeMembers([await directory.members(channel, after, limit)], limit) });
      },
    },
    {
      method: 'GET', pattern: /^\/v1\/users\/([^/]+)$/,
      handle: async (r) => {
        const user = nameParam(r.match[1], 'user', MAX_USER_NAME);
        sendJson(r.res, 200, { user, ...(views ? await views.user(user) : await directory.userPresence(user)) });
      },
    },
    {
      method: 'GET', pattern: /^\/v1\/nodes$/,
      handle: async (r) => sendJson(r.res, 200, views ? await views.nodes() : { nodes: [await deps.node()], missing: [] }),
    },
  ];
  const setChannel = async (r: ControlRequest, subscribed: boolean) => {
    const id = decodeSegment(r.match[1]);
    const channel = decodeSegment(r.match[2]);
    if (views) {
      // Wherever the connection is held in the cluster (a session that moved is on another node than its id names).
      const { changed, nodes } = await views.setChannel(id, channel, subscribed);
      if (!changed) throw unknown(id, nodes);
      return sendJson(r.res, 200, { connection: id, channel, subscribed, nodes });
    }
    if (!(await directory.setChannel(id, channel, subscribed))) throw unknown(id);
    sendJson(r.res, 200, { connection: id, channel, subscribed });
  };
  const routes = [...deps.routes, ...builtin];
  // Refused at registration, as fastify does: a second route for one method and path would never be reached.
  const keys = new Set<string>();
  for (const route of routes) {
    const key = `${route.method} ${route.pattern.source}`;
    if (keys.has(key)) throw new Error(`control route ${key} is registered twice`);
    keys.add(key);
  }

  const listener = (req: IncomingMessage, res: ServerResponse): void => {
    const url = new URL(req.url ?? '/', 'http://control');
    const path = url.pathname;
    let pathMatched = false;
    for (const route of routes) {
      const match = route.pattern.exec(path);
      if (!match) continue;
      pathMatched = true;
      if (route.method !== '*' && route.method !== req.method) continue;
      if (route.authenticated !== false && !authorized(req)) {
        sendError(res, new SwitchboardError('unauthorized'));
        return;
      }
      const request: ControlRequest = { req, res, url, match, directory, body: (limit = maxBytes) => readBody(req, limit) };
      Promise.resolve()
        .then(() => route.handle(request))
        .catch((err: unknown) => {
          if (res.headersSent) return void res.destroy();
          if (err instanceof SwitchboardError) return sendError(res, err);
          deps.log.error({ err, path }, 'control request failed');
          sendError(res, new SwitchboardError('internal'));
        });
      return;
    }
    req.resume();
    sendError(res, new SwitchboardError(pathMatched ? 'method_not_allowed' : 'not_found', pathMatched ? `${req.method} is not allowed on ${path}` : `no route ${path}`));
  };
  return Object.assign(listener, { routes });
}

/** `?limit=`: an integer from 1 to `max`, `fallback` when absent. */
function limitParam(text: string | null, fallback: number, max: number): number {
  if (text === null) return fallback;
  const limit = Number(text);
  if (!/^\d+$/.test(text) || limit < 1 || limit > max) throw new SwitchboardError('bad_query', `limit: expected an integer from 1 to ${max}, got ${JSON.stringify(text)}`);
  return limit;
}

/** A channel or user name from the path: decoded, at most `max` characters. */
function nameParam(segment: string, what: string, max: number): string {
  const name = decodeSegment(segment);
  if (name.length > max) throw new SwitchboardError('bad_query', `${what}: at most ${max} characters`);
  return name;
}

function closeParams(url: URL): { code: number; reason: string } {
  const codeText = url.searchParams.get('code');
  const code = codeText === null ? CloseCode.appDefault : Number(codeText);
  if (!/^\d+$/.test(codeText ?? '4000') || code < 4000 || code > 4099) throw new SwitchboardError('bad_close_code', `close code must be an integer from 4000 to 4099, got ${JSON.stringify(codeText)}`);
  const reason = url.searchParams.get('reason') ?? '';
  if (Buffer.byteLength(reason) > MAX_CLOSE_REASON_BYTES) throw new SwitchboardError('bad_query', `reason: at most ${MAX_CLOSE_REASON_BYTES} bytes`);
  return { code, reason };
}
