// One schema for the whole configuration: validated once at startup, every problem
// reported with its path, unknown keys rejected, the result frozen.
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { isLoopback, parseAddress } from './address.js';
import { parseJson, tooDeep } from './json.js';
import { isAddressOrCidr } from './forwarding.js';
import { channelPatternProblem } from './channel-pattern.js';
import { MAX_CHANNEL_PATTERNS, MAX_CONFIG_DEPTH, MAX_DURATION_MS, MIN_CONTROL_TOKEN, MIN_SECRET_BYTES } from './limits.js';

const positiveInt = z.number({ error: 'expected a positive integer' }).int({ error: 'expected a positive integer' }).positive({ error: 'expected a positive integer' });
const nonNegativeInt = z.number({ error: 'expected an integer >= 0' }).int({ error: 'expected an integer >= 0' }).min(0, { error: 'expected an integer >= 0' });
const duration = positiveInt.max(MAX_DURATION_MS, { error: `expected a positive integer up to ${MAX_DURATION_MS} (ms)` });
const nonNegativeDuration = nonNegativeInt.max(MAX_DURATION_MS, { error: `expected an integer from 0 to ${MAX_DURATION_MS} (ms)` });
const bool = z.boolean({ error: 'expected true or false' });
const text = z.string({ error: 'expected a string' }).min(1, { error: 'expected a non-empty string' });

const address = z.string({ error: 'expected "host:port"' }).refine((v) => parseAddress(v) !== null, { error: 'expected "host:port" with a port from 0 to 65535' });

const httpUrl = z.string({ error: 'expected an http(s) URL' }).refine((v) => {
  try {
    const u = new URL(v);
    return u.protocol === 'http:' || u.protocol === 'https:';
  } catch {
    return false;
  }
}, { error: 'expected an http(s) URL' });

const amqpUrl = z.string({ error: 'expected an amqp(s) URL' }).refine((v) => {
  try {
    const u = new URL(v);
    return (u.protocol === 'amqp:' || u.protocol === 'amqps:') && u.hostname !== '';
  } catch {
    return false;
  }
}, { error: 'expected an amqp:// or amqps:// URL with a host' });

const webhookPath = z.union([z.string().startsWith('/', { error: 'expected a path starting with "/"' }), z.null()], {
  error: 'expected a path starting with "/" or null',
});

const secret = z.string().regex(/^whsec_[A-Za-z0-9+/]+={0,2}$/, { error: 'expected "whsec_" followed by a base64 key' })
  .refine((v) => Buffer.from(v.slice('whsec_'.length), 'base64').length >= MIN_SECRET_BYTES, { error: `the key after "whsec_" must decode to at least ${MIN_SECRET_BYTES} bytes` });

// `prefault({})` lets a missing section take every default of its keys.
const schema = z.strictObject({
  listen: address.default('0.0.0.0:8080'),
  workers: z.union([positiveInt, z.literal('auto')], { error: 'expected a positive integer or "auto"' }).default(1),
  nodeId: z.string().regex(/^[a-z0-9]{1,16}$/, { error: 'expected 1-16 lowercase letters or digits' }).nullable().default(null),
  app: z.strictObject({ url: httpUrl.default('http://127.0.0.1:3000') }).prefault({}),
  proxy: z.strictObject({
    /** Let the public port reach the app's webhook paths (off: 404 there). */
    exposeWebhookPaths: bool.default(false),
    /** Proxied requests wait this long for the app's answer; then 504. */
    timeoutMs: duration.default(30_000),
    /** Peers whose X-Forwarded-* / Forwarded headers are kept (and appended to): addresses or CIDRs. */
    trustedProxies: z.array(z.string().refine(isAddressOrCidr, { error: 'expected an IP address or CIDR (e.g. "10.0.0.0/8")' }), { error: 'expected a list of addresses' }).default([]),
  }).prefault({}),
  ws: z.strictObject({
    paths: z.array(z.string().startsWith('/', { error: 'expected a path starting with "/"' }), { error: 'expected a list of paths' })
      .min(1, { error: 'expected at least one path' }).default(['/ws']),
  }).prefault({}),
  control: z.strictObject({
    listen: address.default('127.0.0.1:8081'),
    token: text.nullable().default(null),
  }).prefault({}),
  metrics: z.strictObject({
    /** /metrics, /healthz and /readyz on a port of their own, without the control token; null = only on the control port. */
    listen: address.nullable().default(null),
  }).prefault({}),
  heartbeat: z.strictObject({
    intervalMs: duration.default(25_000),
    timeoutMs: duration.default(10_000),
  }).prefault({}),
  longPoll: z.strictObject({
    /** How long a poll is held when nothing is there for it; then it is answered with an empty array. */
    waitMs: duration.default(25_000),
  }).prefault({}),
  session: z.strictObject({
    graceMs: nonNegativeDuration.default(120_000),
    /** HMAC key for resume tokens; random per process when unset. */
    tokenSecret: z.string().min(16, { error: 'expected at least 16 characters' }).nullable().default(null),
    /** How long a resume token stays valid after it was issued (at each welcome). */
    tokenTtlMs: duration.default(86_400_000),
    outbox: z.strictObject({
      maxMessages: positiveInt.default(1024),
      maxBytes: positiveInt.default(1_048_576),
      highWaterBytes: nonNegativeInt.default(262_144),
      onOverflow: z.enum(['close', 'drop-oldest'], { error: 'expected "close" or "drop-oldest"' }).default('close'),
    }).prefault({}),
  }).prefault({}),
  limits: z.strictObject({
    maxMessageBytes: positiveInt.default(1_048_576),
    maxConnections: positiveInt.default(100_000),
    maxConnectionsPerIp: nonNegativeInt.default(0),
    connectRatePerSec: nonNegativeInt.default(0),
    connectBurst: nonNegativeInt.default(0),
    /** Malformed reliable-mode frames tolerated per connection before close 1008. */
    maxFrameErrors: positiveInt.default(10),
    /** Client messages waiting for their webhook, per connection, before reading pauses. */
    maxPendingMessages: positiveInt.default(64),
    /** A request (a WebSocket handshake's headers included) must arrive whole within this; else 408 and close. */
    handshakeTimeoutMs: duration.default(10_000),
    /** Accept queue of the public port (the kernel caps it at net.core.somaxconn). */
    listenBacklog: positiveInt.max(65535, { error: 'expected a positive integer up to 65535' }).default(4096),
  }).prefault({}),
  upstream: z.enum(['webhook', 'amqp'], { error: 'expected "webhook" or "amqp"' }).default('webhook'),
  webhooks: z.strictObject({
    dialect: z.enum(['native', 'websocket-over-http'], { error: 'expected "native" or "websocket-over-http"' }).default('native'),
    timeoutMs: duration.default(5000),
    connections: positiveInt.default(128),
    retry: z.strictObject({
      maxAttempts: positiveInt.default(5),
      baseMs: duration.default(100),
      capMs: duration.default(10_000),
      /** Attempts of the connect webhook (a client waits on each): 1 = never retried. */
      connectAttempts: positiveInt.max(10, { error: 'expected a positive integer up to 10' }).default(1),
      /** Events sent at least once (disconnect) keep being tried, with backoff, for this long. */
      atLeastOnceMs: duration.default(600_000),
    }).prefault({}),
    secret: z.union([secret, z.array(secret).min(1), z.null()], { error: 'expected "whsec_…", a list of them, or null' }).default(null),
    paths: z.strictObject({
      connect: webhookPath.default('/ws/connect'),
      message: webhookPath.default('/ws/message'),
      subscribe: webhookPath.default(null),
      resume: webhookPath.default(null),
      disconnect: webhookPath.default('/ws/disconnect'),
      presence: webhookPath.default(null),
    }).prefault({}),
    forwardHeaders: z.array(z.string().min(1).transform((h) => h.toLowerCase())).default([
      'cookie', 'authorization', 'origin', 'user-agent', 'accept-language', 'x-forwarded-for', 'x-request-id',
    ]),
    replayHandshakeHeaders: bool.default(true),
    /** Client messages of one connection per message webhook; above 1, a JSON batch body. */
    batchMessages: positiveInt.max(1000, { error: 'expected a positive integer up to 1000' }).default(1),
    onConnectError: z.enum(['reject', 'accept'], { error: 'expected "reject" or "accept"' }).default('reject'),
    /** websocket-over-http: seconds between keep-alive requests when the app asks for none. */
    keepAliveIntervalSec: nonNegativeInt.default(0),
  }).prefault({}),
  amqp: z.strictObject({
    url: amqpUrl.nullable().default(null),
    exchange: text.default('switchboard.events'),
    routingKeyPrefix: z.string().default(''),
    pushQueue: text.nullable().default('switchboard.push'),
    deadLetterExchange: text.default('switchboard.dead'),
    /** Events held while the broker is away, before client reads pause. */
    bufferMessages: positiveInt.default(10_000),
    /** Push-queue messages taken from the broker before one is acked. */
    prefetch: positiveInt.default(100),
    /** Reconnect waits: exponential from baseMs, capped at capMs, full jitter (also for cluster.amqp). */
    reconnect: z.strictObject({
      baseMs: duration.default(100),
      capMs: duration.default(10_000),
    }).prefault({}),
  }).prefault({}),
  cluster: z.strictObject({
    amqp: z.strictObject({
      url: amqpUrl.nullable().default(null),
      exchange: text.default('switchboard.cluster'),
    }).prefault({}),
    /** How long a session's move between nodes may take (each of its two round trips) before the resume starts a new session. */
    transferTimeoutMs: duration.default(5000),
    /** How often each process says it is alive; one silent for three of these is counted gone. */
    heartbeatMs: duration.default(2000),
    /** How long a cluster-wide view waits for processes that have not answered. */
    queryTimeoutMs: duration.default(1000),
  }).prefault({}),
  grip: z.strictObject({
    /** Auth for `POST /publish/`; none when unset (the control port is loopback by default). */
    publishAuth: z.union([
      z.strictObject({ basic: z.strictObject({ user: text, password: text }) }),
      z.strictObject({ bearer: text }),
      z.strictObject({ jwt: z.strictObject({ key: text, iss: text.optional() }) }),
      z.null(),
    ], { error: 'expected {basic:{user,password}}, {bearer:"…"}, {jwt:{key}} or null' }).default(null),
  }).prefault({}),
  /** Presence events (webhooks.paths.presence): batching, the bound of what waits, the leave delay; and the frames pushed to subscribers. */
  presence: z.strictObject({
    batchMs: nonNegativeDuration.default(100),
    batchMax: positiveInt.max(10_000, { error: 'expected a positive integer up to 10000' }).default(500),
    maxPending: positiveInt.default(100_000),
    leaveDelayMs: nonNegativeDuration.default(0),
    /** Channels (names, `*` for any run of characters) whose subscribers get the events as frames. */
    frames: z.array(z.string({ error: 'expected a channel name or pattern (a string)' }).superRefine((p, ctx) => {
      const problem = channelPatternProblem(p);
      if (problem !== null) ctx.addIssue({ code: 'custom', message: problem });
    }), { error: 'expected a list of channel names or patterns' }).max(MAX_CHANNEL_PATTERNS, { error: `expected at most ${MAX_CHANNEL_PATTERNS} patterns` }).default([]),
    /** How a raw-mode subscriber gets them: a JSON text frame, or not at all. */
    rawFrames: z.enum(['json', 'none'], { error: 'expected "json" or "none"' }).default('json'),
  }).prefault({}),
  drain: z.strictObject({ timeoutMs: duration.default(30_000) }).prefault({}),
  log: z.strictObject({
    level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'], { error: 'expected a pino level' }).default('info'),
  }).prefault({}),
}).superRefine((c, ctx) => {
  const control = parseAddress(c.control.listen, '127.0.0.1');
  if (control && !isLoopback(control.host) && c.control.token === null) {
    ctx.addIssue({ code: 'custom', params: { crossField: true }, path: ['control', 'token'], message: `required when control.listen (${c.control.listen}) is not a loopback address` });
  } else if (control && !isLoopback(control.host) && c.control.token !== null && c.control.token.length < MIN_CONTROL_TOKEN) {
    ctx.addIssue({ code: 'custom', params: { crossField: true }, path: ['control', 'token'], message: `must be at least ${MIN_CONTROL_TOKEN} characters when control.listen (${c.control.listen}) is not a loopback address` });
  }
  if (c.upstream === 'amqp' && c.amqp.url === null) {
    ctx.addIssue({ code: 'custom', params: { crossField: true }, path: ['amqp', 'url'], message: 'required when upstream is "amqp"' });
  }
  if (c.cluster.amqp.url !== null && c.session.tokenSecret === null) {
    ctx.addIssue({ code: 'custom', params: { crossField: true }, path: ['session', 'tokenSecret'], message: 'required when cluster.amqp.url is set: resume tokens must verify on every node (set the same secret on all of them)' });
  }
  if (c.webhooks.paths.presence !== null && c.webhooks.dialect !== 'native') {
    ctx.addIssue({ code: 'custom', params: { crossField: true }, path: ['webhooks', 'paths', 'presence'], message: 'presence events have no form in the websocket-over-http dialect: use webhooks.dialect "native"' });
  }
  if (c.session.outbox.highWaterBytes > c.session.outbox.maxBytes) {
    ctx.addIssue({ code: 'custom', params: { crossField: true }, path: ['session', 'outbox', 'highWaterBytes'], message: 'must not exceed session.outbox.maxBytes' });
  }
});

export type Config = z.output<typeof schema>;
type Input = Record<string, unknown>;

export class ConfigError extends Error {
  readonly problems: readonly string[];
  constructor(problems: string[]) {
    super(problems.join('\n'));
    this.name = 'ConfigError';
    this.problems = problems;
  }
}

/** A key path as the operator would write it; an empty or dotted key is quoted. */
function pathText(path: readonly PropertyKey[]): string {
  return path.map((k) => (typeof k === 'string' && (k === '' || /[.\s]/.test(k)) ? JSON.stringify(k) : String(k))).join('.');
}

function describe(value: unknown): string {
  if (value === undefined) return 'nothing';
  const s = JSON.stringify(value);
  return s === undefined ? String(value) : s.length > 60 ? `${s.slice(0, 57)}...` : s;
}

/** Keys whose values are secrets: refused values are described, never shown. */
const SECRET_KEYS = new Set(['webhooks.secret', 'session.tokenSecret', 'control.token', 'grip.publishAuth.bearer', 'grip.publishAuth.jwt.key', 'grip.publishAuth.basic.password']);

let defaults: Readonly<Config> | null = null;

/** ` (did you mean "x"?)` when a known key at the same place is one or two edits away. */
function suggestion(path: readonly PropertyKey[], key: string): string {
  defaults ??= schema.parse({});
  let node: unknown = defaults;
  for (const k of path) node = node && typeof node === 'object' ? (node as Record<PropertyKey, unknown>)[k] : undefined;
  if (!node || typeof node !== 'object' || Array.isArray(node)) return '';
  let best: { key: string; distance: number } | null = null;
  for (const known of Object.keys(node)) {
    const distance = editDistance(key.toLowerCase(), known.toLowerCase());
    if (distance <= Math.min(2, Math.floor(known.length / 3)) && (best === null || distance < best.distance)) best = { key: known, distance };
  }
  return best ? ` (did you mean "${best.key}"?)` : '';
}

/** Levenshtein distance, for short keys. */
function editDistance(a: string, b: string): number {
  let row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const next = [i];
    for (let j = 1; j <= b.length; j++) next[j] = Math.min(row[j] + 1, next[j - 1] + 1, row[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    row = next;
  }
  return row[b.length];
}

/** Validates a parsed config object; throws ConfigError listing every problem. */
export function validateConfig(input: unknown): Readonly<Config> {
  const deep = tooDeep(input, MAX_CONFIG_DEPTH);
  if (deep) throw new ConfigError([`${pathText(deep.slice(0, 8))}${deep.length > 8 ? '...' : ''}: nested deeper than ${MAX_CONFIG_DEPTH} levels`]);
  const result = schema.safeParse(input ?? {}, { reportInput: true });
  if (!result.success) {
    const problems = result.error.issues.map((issue) => {
      const where = issue.path.length ? pathText(issue.path) : '(root)';
      if (issue.code === 'unrecognized_keys') {
        return issue.keys.map((k) => `${pathText(issue.path.concat(k))}: unknown key${suggestion(issue.path, k)}`).join('\n');
      }
      // A secret's value never reaches a log or a terminal: only its length.
      const shown = SECRET_KEYS.has(pathText(issue.path.filter((k) => typeof k === 'string'))) && typeof issue.input === 'string'
        ? `a string of ${issue.input.length} characters` : describe(issue.input);
      const got = 'input' in issue && !(issue.code === 'custom' && issue.params?.crossField) ? `, got ${shown}` : '';
      return `${where}: ${issue.message}${got}`;
    });
    throw new ConfigError(problems.flatMap((p) => p.split('\n')));
  }
  return deepFreeze(result.data);
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object') {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}

function parseFile(file: string): Input {
  let source: string;
  try {
    source = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError([`${file}: cannot read (${(err as NodeJS.ErrnoException).code ?? String(err)})`]);
  }
  try {
    let parsed: unknown;
    if (/\.json$/i.test(file)) {
      const json = parseJson(source, MAX_CONFIG_DEPTH);
      if (!json.ok) throw json.error;
      parsed = json.value;
    } else {
      parsed = parseYaml(source, { maxAliasCount: 100 });
    }
    if (parsed === null || parsed === undefined) return {};
    if (typeof parsed !== 'object' || Array.isArray(parsed)) throw new Error('expected a mapping at the top level');
    return parsed as Input;
  } catch (err) {
    // The YAML reader recurses: a hostile file can run it out of stack.
    if (err instanceof RangeError || /Maximum call stack/.test((err as Error).message)) throw new ConfigError([`${file}: nested deeper than the reader can follow (at most ${MAX_CONFIG_DEPTH} levels)`]);
    // Whole: the reader's message ends with the lines around the mistake.
    const [first, ...rest] = (err as Error).message.replace(/\n+$/, '').split('\n');
    throw new ConfigError([`${file}: ${first}`, ...rest.map((line) => `  ${line}`)]);
  }
}

function setPath(target: Input, path: string[], value: unknown): void {
  let node = target;
  for (const key of path.slice(0, -1)) {
    const next = node[key];
    node = next && typeof next === 'object' && !Array.isArray(next) ? (next as Input) : (node[key] = {});
  }
  node[path[path.length - 1]] = value;
}

/**
 * Environment variables that override config keys; numbers are parsed. Each may also be given
 * as `<NAME>_FILE`, the path of a file holding the value (a mounted Kubernetes Secret).
 */
const envKeys: Record<string, { path: string[]; number?: boolean }> = {
  SWITCHBOARD_APP_URL: { path: ['app', 'url'] },
  SWITCHBOARD_LISTEN: { path: ['listen'] },
  SWITCHBOARD_CONTROL_LISTEN: { path: ['control', 'listen'] },
  SWITCHBOARD_CONTROL_TOKEN: { path: ['control', 'token'] },
  SWITCHBOARD_WEBHOOK_SECRET: { path: ['webhooks', 'secret'] },
  SWITCHBOARD_TOKEN_SECRET: { path: ['session', 'tokenSecret'] },
  SWITCHBOARD_AMQP_URL: { path: ['amqp', 'url'] },
  SWITCHBOARD_CLUSTER_AMQP_URL: { path: ['cluster', 'amqp', 'url'] },
  SWITCHBOARD_LOG_LEVEL: { path: ['log', 'level'] },
  SWITCHBOARD_WORKERS: { path: ['workers'], number: true },
  SWITCHBOARD_NODE_ID: { path: ['nodeId'] },
};

/** The variables, and the key each sets (documented in docs/operations.md). */
export const environmentKeys: ReadonlyArray<readonly [variable: string, key: string]> = Object.entries(envKeys).map(([name, { path }]) => [name, path.join('.')]);

/** The value of `name`, or of the file `<name>_FILE` names (one trailing newline dropped). */
function envValue(env: NodeJS.ProcessEnv, name: string): string | undefined {
  const direct = env[name];
  const file = env[`${name}_FILE`];
  const given = direct !== undefined && direct !== '';
  if (file === undefined || file === '') return given ? direct : undefined;
  if (given) throw new ConfigError([`${name} and ${name}_FILE are both set: use one`]);
  try {
    return readFileSync(file, 'utf8').replace(/\r?\n$/, '');
  } catch (err) {
    throw new ConfigError([`${name}_FILE: cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? String(err)})`]);
  }
}

/** Reads the file (if any), applies environment overrides, validates. */
export function loadConfig(file: string | undefined, env: NodeJS.ProcessEnv = process.env): Readonly<Config> {
  const path = file ?? env.SWITCHBOARD_CONFIG;
  const raw: Input = path ? parseFile(path) : {};
  const fromEnv = new Map<string, string>();
  for (const [name, { path: keyPath, number }] of Object.entries(envKeys)) {
    const value = envValue(env, name);
    if (value === undefined) continue;
    setPath(raw, keyPath, number && /^\d+$/.test(value) ? Number(value) : value);
    fromEnv.set(pathText(keyPath), env[`${name}_FILE`] ? `${name}_FILE` : name);
  }
  try {
    return validateConfig(raw);
  } catch (err) {
    if (!(err instanceof ConfigError) || fromEnv.size === 0) throw err;
    // A problem with a value the environment set names the variable, not only the key.
    throw new ConfigError(err.problems.map((problem) => {
      const variable = [...fromEnv].find(([key]) => problem.startsWith(`${key}:`))?.[1];
      return variable ? `${problem} (set by ${variable})` : problem;
    }));
  }
}
