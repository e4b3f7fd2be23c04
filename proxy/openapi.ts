// The control port as an OpenAPI 3.1 document, served at `GET /openapi.json`. Its schemas are
// JSON Schema 2020-12 and closed (no property they do not name): the tests send what the
// document calls valid and invalid to a live sidecar and check every answer against it, so a
// parser, a route or an answer field that drifts from this document fails a test.
import { ErrorStatus, type ErrorCode } from './errors.js';
import { MAX_BATCH_MESSAGES, MAX_COALESCE_KEY, MAX_JSON_DEPTH } from './limits.js';
import { version } from './version.js';

type Schema = Record<string, unknown>;

const ref = (name: string): Schema => ({ $ref: `#/components/schemas/${name}` });
const count = (description: string): Schema => ({ type: 'integer', minimum: 0, description });
const text = (description: string, extra: Schema = {}): Schema => ({ type: 'string', description, ...extra });
const nullable = (schema: Schema): Schema => ({ ...schema, type: [schema.type as string, 'null'] });
const time = (description: string): Schema => text(description, { format: 'date-time' });
const list = (items: Schema, description: string, extra: Schema = {}): Schema => ({ type: 'array', items, description, ...extra });

/** A closed object: every property named here, those in `optional` may be absent. */
function object(description: string, properties: Record<string, Schema>, optional: readonly string[] = []): Schema {
  return { type: 'object', description, properties, required: Object.keys(properties).filter((k) => !optional.includes(k)), additionalProperties: false };
}

const scope = (): Schema => ({ ...ref('Scope'), description: 'In a cluster: which nodes answered (absent outside one).' });

const connectionProperties: Record<string, Schema> = {
  connection: text('The connection id (`<node>-<worker>-<unique>`); a reliable session keeps it across resumes.'),
  user: nullable(text('The user the connect webhook named, or null.')),
  channels: list({ type: 'string' }, 'The channels it is subscribed to.'),
  meta: { type: 'object', additionalProperties: { type: 'string' }, description: 'The meta the connect webhook stored (echoed as `X-Switchboard-Meta-<key>`).' },
  connectedAt: time('When the session began.'),
  mode: { enum: ['raw', 'reliable'], description: '`raw` (no subprotocol) or `reliable` (`switchboard.v1`).' },
  state: { enum: ['open', 'detached', 'moving', 'closing', 'closed'], description: '`detached`: the socket is gone and the session waits for a resume; `moving`: on its way to another node.' },
  transport: { enum: ['websocket', 'sse', 'long-poll', null], description: 'What carries it now: `websocket`, `sse` (Server-Sent Events) or `long-poll`; null while it has no link (detached, moving).' },
  outbox: object('What waits to be written to the client.', { messages: count('Messages in the outbox.'), bytes: count('Their payload bytes.') }),
  remoteAddress: text('The client address (after `proxy.trustedProxies`).'),
  userAgent: nullable(text("The client's User-Agent, or null.")),
  lastActiveAt: time('The last frame from the client (or the connect time).'),
};

const countsProperties: Record<string, Schema> = {
  published: { const: true, description: 'In a cluster: the push was also published to the other nodes (their counts are not included).' },
  delivered: count('Written to a socket here.'),
  queued: count('Held in an outbox here (the socket was slow, or the session detached).'),
  dropped: count('Refused here by a full outbox (`session.outbox.onOverflow: drop-oldest` drops the oldest instead).'),
};

const nodeState: Schema = { enum: ['ready', 'not_ready', 'starting', 'draining'], description: 'The first of draining, starting, not_ready that one of its processes is in; else ready.' };
const nodeView = object('One node: its processes taken together.', {
  node: text('The node id (`nodeId`, or random per start).'),
  state: nodeState,
  sessions: count('Sessions it holds, attached or detached.'),
  processes: { type: 'integer', minimum: 1, description: 'Its processes (workers) that answered.' },
});

const byCount = (description: string): Schema => ({ type: 'object', additionalProperties: { type: 'number', minimum: 0 }, description });
const ms = (description: string): Schema => ({ type: ['number', 'null'], minimum: 0, description });

const statusSchema = object('The status page\'s numbers, read from the metrics (with workers, all of them aggregated). Counters are totals since start: the page shows rates from two readings.', {
  version: text('Switchboard\'s version.'),
  node: text('The node id.'),
  appUrl: text('`app.url`, without a user or password.'),
  upstream: { enum: ['webhook', 'amqp'], description: 'Where client events go.' },
  at: time('When these numbers were read.'),
  state: nodeState,
  ready: { type: 'boolean', description: 'What `/readyz` answers.' },
  reason: nullable(text('Why it is not ready; null when it is.')),
  processes: { type: 'integer', minimum: 1, description: 'Processes of this node (workers).' },
  connections: object('Client connections.', {
    open: count('Open connections (`switchboard_connections`).'),
    sessions: count('Sessions held, attached or detached (`switchboard_sessions`).'),
    byMode: list(object('Open connections of one mode and transport.', {
      mode: { enum: ['raw', 'reliable'], description: 'The mode.' },
      transport: text('What carries them (`websocket`, `sse`, `long-poll`).'),
      connections: count('How many (`switchboard_open_connections`).'),
    }), 'Open connections by mode and transport; kinds with none are left out.'),
  }),
  messages: object('Messages since start, all modes (`switchboard_messages_total`).', {
    in: count('From clients.'),
    out: count('To clients.'),
  }),
  outbox: object('How full outboxes were when a push had to wait (`switchboard_outbox_messages`).', {
    maxMessages: count('`session.outbox.maxMessages`, the bound.'),
    waits: count('Pushes that waited in an outbox since start.'),
    p50: ms('Median outbox depth those pushes saw; null before the first.'),
    p99: ms('99th percentile of that depth; null before the first.'),
  }),
  dropped: object('Messages dropped since start (`switchboard_dropped_messages_total`).', {
    total: count('All reasons.'),
    byReason: byCount('By reason (`overflow`, `ttl`, `lossy`, ...).'),
  }),
  webhooks: object('Webhook attempts since start (`switchboard_webhook_duration_seconds`).', {
    attempts: count('Attempts, retries included.'),
    p50Ms: ms('Median attempt duration in milliseconds; null before the first.'),
    p99Ms: ms('99th percentile in milliseconds; null before the first.'),
    failures: count('Webhooks that failed for good (`switchboard_webhook_failures_total`).'),
    waiting: count('At-least-once webhooks waiting to be tried again (`switchboard_webhooks_waiting`).'),
  }),
  broker: {
    ...object('The event broker (RabbitMQ); null when none is configured.', {
      buffered: count('Events waiting for the broker (`switchboard_amqp_buffer_messages`).'),
      publishes: byCount('Publishes by result (`switchboard_amqp_publish_total`).'),
      p99Ms: ms('99th percentile of publish to confirm, in milliseconds; null before the first.'),
    }),
    type: ['object', 'null'],
  },
  cluster: {
    ...object('The nodes, as `GET /v1/nodes` shows them; null outside a cluster.', {
      nodes: list(nodeView, 'The live nodes.'),
      missing: list({ type: 'string' }, 'Nodes that did not answer in time.'),
    }),
    type: ['object', 'null'],
  },
});

// Base64 as Node writes it: a decoder that skips stray characters must not make two texts one payload.
const canonicalBase64 = '^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/][AQgw]==|[A-Za-z0-9+/]{2}[AEIMQUYcgkosw048]=)?$';
const positiveMs = 'A positive integer of milliseconds (at most 2^53 - 1).';

const targetSchema: Schema = {
  description: 'Who the message is for: exactly one key.',
  oneOf: [
    ...(['connection', 'user', 'channel'] as const).map((key) => object(`To a ${key}.`, { [key]: text(`The ${key}.`, { minLength: 1 }) })),
    object('To every connection.', { all: { const: true, description: 'true.' } }),
  ],
};

const batchItem: Schema = {
  ...object('One message of a batch: `data` or `binary`, not both.', {
    to: ref('Target'),
    data: { description: `Any JSON value, nested at most ${MAX_JSON_DEPTH} levels: a string is sent as a text frame verbatim, anything else as its JSON text.` },
    binary: text('A binary frame, in canonical base64.', { pattern: canonicalBase64 }),
    class: { enum: ['durable', 'lossy', null], description: 'durable (default) or lossy (dropped first under pressure).' },
    coalesceKey: nullable(text(`A queued message with the same key is replaced by this one (1 to ${MAX_COALESCE_KEY} characters).`, { minLength: 1, maxLength: MAX_COALESCE_KEY })),
    ttlMs: {
      description: `${positiveMs} A string of digits is taken too.`,
      oneOf: [{ type: 'integer', minimum: 1, maximum: Number.MAX_SAFE_INTEGER }, { type: 'string', pattern: '^0*[1-9][0-9]{0,15}$' }, { type: 'null' }],
    },
  }, ['data', 'binary', 'class', 'coalesceKey', 'ttlMs']),
  oneOf: [{ required: ['data'] }, { required: ['binary'] }],
};

// ── responses ────────────────────────────────────────────────────────────────

const json = (schema: Schema, description: string) => ({ description, content: { 'application/json': { schema } } });

/** The error answers for these codes, one response per status, each naming its codes. */
function errors(...codes: ErrorCode[]): Record<string, unknown> {
  const byStatus = new Map<number, ErrorCode[]>();
  for (const code of codes) byStatus.set(ErrorStatus[code], [...(byStatus.get(ErrorStatus[code]) ?? []), code]);
  return Object.fromEntries([...byStatus].map(([status, group]) => [String(status), json(
    { allOf: [ref('Error'), { type: 'object', properties: { error: { enum: group } } }] },
    group.map((c) => `\`${c}\``).join(', '),
  )]));
}

const pathErrors: ErrorCode[] = ['bad_request', 'internal'];
const pushErrors: ErrorCode[] = [...pathErrors, 'unauthorized', 'bad_json', 'too_deep', 'bad_header', 'too_large', 'unsupported_type', 'cluster_unavailable'];
const viewErrors: ErrorCode[] = [...pathErrors, 'unauthorized'];

const controlToken = [{ controlToken: [] }];
const open: never[] = [];

const pathParameter = (name: string, description: string) => ({ name, in: 'path', required: true, description: `${description} Percent-encoded; a malformed encoding is 400 \`bad_request\`.`, schema: { type: 'string', minLength: 1 } });
const id = pathParameter('id', 'The connection id.');
const user = pathParameter('user', 'The user.');
const channel = pathParameter('channel', 'The channel.');
const closeQuery = [
  { name: 'code', in: 'query', description: 'The close code (default 4000); anything else is 400 `bad_close_code`.', schema: { type: 'string', pattern: '^0*40[0-9]{2}$' } },
  { name: 'reason', in: 'query', description: 'The close reason, at most 123 bytes of UTF-8 (else 400 `bad_query`; maxLength counts characters, the same for ASCII).', schema: { type: 'string', maxLength: 123 } },
];
const pushHeaders = [
  { name: 'X-Switchboard-Class', in: 'header', description: 'durable (default) or lossy (dropped first under pressure).', schema: { enum: ['durable', 'lossy'] } },
  { name: 'X-Switchboard-Coalesce-Key', in: 'header', description: 'A queued message with the same key is replaced by this one.', schema: { type: 'string', minLength: 1, maxLength: MAX_COALESCE_KEY } },
  { name: 'X-Switchboard-TTL-Ms', in: 'header', description: `${positiveMs} Expired messages are dropped, not sent.`, schema: { type: 'string', pattern: '^0*[1-9][0-9]{0,15}$' } },
];
const pushBody = {
  required: true,
  description: 'The content type decides the frame: JSON, text or binary.',
  content: {
    'application/json': { schema: { description: `Any JSON value, nested at most ${MAX_JSON_DEPTH} levels; sent as its JSON text.` } },
    'text/*': { schema: { type: 'string', description: 'Sent as a text frame.' } },
    'application/octet-stream': { schema: { description: 'Sent as a binary frame.' } },
  },
};

function push(summary: string, ...more: ErrorCode[]) {
  return {
    summary, security: controlToken, parameters: pushHeaders, requestBody: pushBody,
    responses: { 202: json(ref('PushResult'), 'Routed: the counts on this node.'), ...errors(...pushErrors, ...more) },
  };
}

const gripPublish = {
  summary: 'GRIP publish (Pushpin\'s format): each item\'s ws-message goes to its channel.',
  description: 'Answers as Pushpin does, in text/plain (or JSON with `Accept: application/json`). Authenticated by `grip.publishAuth` (basic, bearer or a JWT), else by the control token when one is set.',
  security: [{ gripBasic: [] }, { gripBearer: [] }, {}],
  requestBody: {
    required: true,
    content: {
      'application/json': {
        schema: {
          type: 'object', required: ['items'],
          properties: { items: list({ type: 'object', required: ['channel'], properties: { channel: { type: 'string' } } }, 'Items with a channel and formats (`ws-message`: content, content-bin or an action).') },
        },
      },
    },
  },
  responses: {
    200: {
      description: 'Published.',
      content: { 'text/plain': { schema: { const: 'Published\n' } }, 'application/json': { schema: object('Published.', { message: { const: 'Published', description: 'Published.' } }) } },
    },
    ...Object.fromEntries(([[400, 'The body is not a publish body (Pushpin\'s message).'], [401, 'Missing or wrong credentials.'], [405, 'Only POST.'], [406, 'Accept names neither text/plain nor application/json.'], [413, 'More than 10 MB.']] as const)
      .map(([status, description]) => [String(status), { description, content: { 'text/plain': { schema: { type: 'string' } } } }])),
  },
};

const gone = { description: 'No such connection (API Gateway\'s GoneException).', content: { 'application/json': { schema: ref('Gone') } } };

const document = {
  openapi: '3.1.0',
  info: {
    title: 'Switchboard control port',
    version,
    description: 'The push API, the views, health and metrics, the status page, GRIP publish and API Gateway\'s @connections. '
      + 'Every error is `{"error","message"}` (schema Error); a path no route takes is 404 `not_found`, a method a path does not take is 405 `method_not_allowed`. '
      + 'With `control.token` set, routes marked with controlToken need `Authorization: Bearer <token>` (401 `unauthorized` otherwise).',
  },
  jsonSchemaDialect: 'https://json-schema.org/draft/2020-12/schema',
  paths: {
    '/': { get: { summary: 'The status page (HTML; it reads /v1/status).', security: open, responses: { 200: { description: 'The page.', content: { 'text/html': { schema: { type: 'string' } } } } } } },
    '/openapi.json': { get: { summary: 'This document.', security: open, responses: { 200: { description: 'OpenAPI 3.1.', content: { 'application/json': { schema: { type: 'object' } } } } } } },
    '/healthz': { get: { summary: 'Live.', security: open, responses: { 200: json(object('Live.', { status: { const: 'ok', description: 'ok' } }), 'The process answers.') } } },
    '/readyz': {
      get: {
        summary: 'Ready: 503 while starting or draining, or while a configured broker is down.', security: open,
        responses: {
          200: json(object('Ready.', { status: { const: 'ready', description: 'ready' } }), 'Ready.'),
          503: json(object('Not ready.', { status: { const: 'not ready', description: 'not ready' }, reason: text('Why (starting, draining, the broker).') }), 'Not ready.'),
        },
      },
    },
    '/metrics': { get: { summary: 'Prometheus metrics (with workers, all of them aggregated).', security: controlToken, responses: { 200: { description: 'The text format.', content: { 'text/plain': { schema: { type: 'string' } } } }, ...errors('unauthorized', 'metrics_unavailable') } } },
    '/v1/status': { get: { summary: 'The status page\'s numbers.', security: controlToken, responses: { 200: json(ref('Status'), 'The numbers.'), ...errors('unauthorized', 'metrics_unavailable', 'internal') } } },
    '/v1/connections/{id}/messages': { parameters: [id], post: push('Send to one connection.', 'unknown_connection') },
    '/v1/users/{user}/messages': { parameters: [user], post: push('Send to every connection of a user.') },
    '/v1/channels/{channel}/messages': { parameters: [channel], post: push('Send to every subscriber of a channel.') },
    '/v1/broadcast': { post: push('Send to every connection.') },
    '/v1/batch': {
      post: {
        summary: 'Several messages, each to its target.', security: controlToken,
        requestBody: { required: true, content: { 'application/json': { schema: ref('Batch') } } },
        responses: { 202: json(ref('BatchResult'), 'Routed: the counts on this node, summed.'), ...errors(...pushErrors, 'bad_body') },
      },
    },
    '/v1/connections': {
      get: {
        summary: 'List connections, oldest first, a page at a time.', security: controlToken,
        parameters: [
          { name: 'user', in: 'query', description: 'Only this user\'s.', schema: { type: 'string' } },
          { name: 'channel', in: 'query', description: 'Only this channel\'s subscribers.', schema: { type: 'string' } },
          { name: 'limit', in: 'query', description: 'Page size, 1 to 1000 (default 100); else 400 `bad_query`.', schema: { type: 'string', pattern: '^0*(?:[1-9][0-9]{0,2}|1000)$' } },
          { name: 'cursor', in: 'query', description: 'The `next` of the previous page.', schema: { type: 'string', pattern: '^[0-9a-zA-Z_-]{1,200}$' } },
        ],
        responses: { 200: json(ref('ConnectionPage'), 'A page.'), ...errors(...viewErrors, 'bad_query') },
      },
    },
    '/v1/connections/{id}': {
      parameters: [id],
      get: { summary: 'One connection.', security: controlToken, responses: { 200: json(ref('ConnectionAnswer'), 'The connection.'), ...errors(...viewErrors, 'unknown_connection') } },
      delete: { summary: 'Close one connection (its session ends).', security: controlToken, parameters: closeQuery, responses: { 200: json(ref('Closed'), 'Closed.'), ...errors(...viewErrors, 'unknown_connection', 'bad_close_code', 'bad_query') } },
    },
    '/v1/users/{user}': {
      parameters: [user],
      get: { summary: 'A user\'s presence: connections and channels (every node in a cluster).', security: controlToken, responses: { 200: json(ref('UserPresence'), 'The presence.'), ...errors(...viewErrors, 'bad_query') } },
      delete: { summary: 'Close every connection of a user (revocation); 0 closed is not an error.', security: controlToken, parameters: closeQuery, responses: { 200: json(ref('Closed'), 'Closed.'), ...errors(...viewErrors, 'bad_close_code', 'bad_query') } },
    },
    '/v1/connections/{id}/channels/{channel}': {
      parameters: [id, channel],
      put: { summary: 'Subscribe a connection to a channel.', security: controlToken, responses: { 200: json(ref('Membership'), 'Subscribed.'), ...errors(...viewErrors, 'unknown_connection') } },
      delete: { summary: 'Unsubscribe a connection from a channel.', security: controlToken, responses: { 200: json(ref('Membership'), 'Unsubscribed.'), ...errors(...viewErrors, 'unknown_connection') } },
    },
    '/v1/channels/{channel}': {
      parameters: [channel],
      get: { summary: 'How many connections a channel has.', security: controlToken, responses: { 200: json(ref('Channel'), 'The count.'), ...errors(...viewErrors) } },
    },
    '/v1/channels/{channel}/presence': {
      parameters: [channel],
      get: {
        summary: 'A channel\'s members (its users, each with its connections), ordered by user, a page at a time.', security: controlToken,
        parameters: [
          { name: 'limit', in: 'query', description: 'Members per page, 1 to 1000 (default 100); else 400 `bad_query`.', schema: { type: 'string', pattern: '^0*(?:[1-9][0-9]{0,2}|1000)$' } },
          { name: 'cursor', in: 'query', description: 'The `next` of the previous page; else 400 `bad_query`.', schema: { type: 'string', pattern: '^[0-9a-zA-Z_-]{1,1400}$' } },
        ],
        responses: { 200: json(ref('Presence'), 'A page of members.'), ...errors(...viewErrors, 'bad_query') },
      },
    },
    '/v1/nodes': { get: { summary: 'The live nodes (this one alone outside a cluster).', security: controlToken, responses: { 200: json(ref('Nodes'), 'The nodes.'), ...errors(...viewErrors) } } },
    '/publish/': { post: gripPublish },
    '/publish': { post: gripPublish },
    '/@connections/{id}': {
      parameters: [id],
      post: {
        summary: 'API Gateway PostToConnection: the body as it is (binary only as application/octet-stream).', security: controlToken,
        requestBody: { required: true, content: { '*/*': { schema: { description: 'Any body.' } } } },
        responses: { 200: { description: 'Sent (an empty body).' }, 410: gone, ...errors(...viewErrors, 'too_large') },
      },
      get: { summary: 'API Gateway GetConnection.', security: controlToken, responses: { 200: json(ref('ApiGatewayConnection'), 'The connection.'), 410: gone, ...errors(...viewErrors) } },
      delete: { summary: 'API Gateway DeleteConnection: closed with 1000.', security: controlToken, responses: { 204: { description: 'Closed.' }, 410: gone, ...errors(...viewErrors) } },
    },
  },
  components: {
    securitySchemes: {
      controlToken: { type: 'http', scheme: 'bearer', description: '`control.token`; needed only when it is set.' },
      gripBasic: { type: 'http', scheme: 'basic', description: '`grip.publishAuth.basic`.' },
      gripBearer: { type: 'http', scheme: 'bearer', description: '`grip.publishAuth.bearer` or `jwt`, else the control token.' },
    },
    schemas: {
      Error: object('An error.', {
        error: { enum: Object.keys(ErrorStatus), description: 'The code; each operation names the codes of each of its error statuses.' },
        message: text('What went wrong, for a person.'),
      }),
      PushResult: object('Where the push went, on this node.', countsProperties, ['published']),
      BatchResult: object('Where the batch went, on this node, summed.', { ...countsProperties, missing: count('Messages to a connection that was not found.') }, ['published']),
      Scope: object('Which nodes answered a cluster-wide question.', { answered: count('Nodes that answered in time.'), missing: list({ type: 'string' }, 'Nodes that did not.') }),
      Connection: object('A connection.', connectionProperties),
      ConnectionAnswer: object('A connection, and in a cluster which nodes answered.', { ...connectionProperties, nodes: scope() }, ['nodes']),
      ConnectionPage: object('A page of connections.', {
        connections: list(ref('Connection'), 'Oldest first.'),
        next: nullable(text('The cursor of the next page; null on the last.')),
        nodes: scope(),
      }, ['nodes']),
      Channel: object('A channel\'s size.', { channel: text('The channel.'), connections: count('Its subscribed connections (every node in a cluster).'), nodes: scope() }, ['nodes']),
      Presence: object('A page of a channel\'s members.', {
        channel: text('The channel.'),
        members: list(object('A member.', { user: text('The user.'), connections: { type: 'integer', minimum: 1, description: 'Its connections subscribed to the channel (a detached reliable session within its grace counts).' } }), 'Ordered by user, at most `limit`.'),
        connections: count('Every connection subscribed to the channel, with a user or without (every node in a cluster).'),
        next: nullable(text('The cursor of the next page, or null on the last.')),
        nodes: scope(),
      }, ['nodes']),
      UserPresence: object('A user\'s presence.', {
        user: text('The user.'),
        online: { type: 'boolean', description: 'True while the user has a connection (a detached reliable session within its grace counts).' },
        connections: count('Its connections (every node in a cluster).'),
        channels: list({ type: 'string' }, 'The channels any of its connections is subscribed to, sorted.'),
        nodes: scope(),
      }, ['nodes']),
      Closed: object('What a close closed.', { closed: count('Sessions closed (a connection on another node counts as one).'), nodes: scope() }, ['nodes']),
      Membership: object('A subscription changed.', { connection: text('The connection.'), channel: text('The channel.'), subscribed: { type: 'boolean', description: 'true after PUT, false after DELETE.' }, nodes: scope() }, ['nodes']),
      Nodes: object('The live nodes.', { nodes: list(nodeView, 'By node id.'), missing: list({ type: 'string' }, 'Nodes that did not answer in time.') }),
      Status: statusSchema,
      Target: targetSchema,
      Batch: object('A batch.', { messages: list(batchItem, 'The messages, routed in order.', { maxItems: MAX_BATCH_MESSAGES }) }),
      ApiGatewayConnection: object('As API Gateway answers GetConnection.', {
        ConnectedAt: time('When the session began.'),
        Identity: object('The client.', { SourceIp: text('Its address.'), UserAgent: nullable(text('Its User-Agent.')) }),
        LastActiveAt: time('Its last frame (or the connect time).'),
      }),
      Gone: object('As API Gateway answers for a connection that is gone.', { message: { type: 'null', description: 'null.' } }),
    },
  },
} as const;

/** The document (the same object every time: treat it as read-only). */
export function openApiDocument(): typeof document {
  return document;
}
