// GRIP over WebSocket-over-HTTP: the `grip` extension the app accepts, `c:` control
// messages, the message prefix, and the Meta-* / Set-Meta-* / Keep-Alive-Interval headers.
// Pushpin is the reference; facts and sources: docs/websocket-over-http-notes.md.
import { WOH_CONTENT_TYPE, WOH_LIMITS } from './codec.js';
import { parseJson } from '../../proxy/json.js';
import { fail, ok, type Result } from '../../proxy/result.js';

export const DEFAULT_MESSAGE_PREFIX = 'm:';
/** Seconds, when a keep-alive control message gives no positive timeout (Pushpin: 55). */
export const DEFAULT_KEEP_ALIVE_TIMEOUT = 55;

/** A parse of the app's GRIP input: the value, or Pushpin's text for what is wrong. */
export type ParseResult<T> = Result<T>;

// ---------------------------------------------------------------------------------------
// The grip extension: the app turns GRIP on by answering `Sec-WebSocket-Extensions: grip`,
// optionally `grip; message-prefix="..."`.

export interface GripExtension {
  readonly messagePrefix: string;
}

/** The grip extension in the app's Sec-WebSocket-Extensions, or null when GRIP is off. */
export function parseGripExtension(header: string | readonly string[] | undefined): GripExtension | null {
  if (header === undefined) return null;
  const values = typeof header === 'string' ? [header] : header;
  for (const value of values) {
    for (const ext of splitOutsideQuotes(value, ',')) {
      const semi = ext.indexOf(';');
      const name = (semi === -1 ? ext : ext.slice(0, semi)).trim();
      if (name !== 'grip') continue;
      if (semi === -1) return { messagePrefix: DEFAULT_MESSAGE_PREFIX };
      const params = parseExtensionParams(ext.slice(semi + 1));
      // Pushpin drops an extension whose parameters do not parse, so GRIP stays off.
      if (params === null) return null;
      return { messagePrefix: params.get('message-prefix') ?? DEFAULT_MESSAGE_PREFIX };
    }
  }
  return null;
}

function splitOutsideQuotes(value: string, sep: string): string[] {
  const parts: string[] = [];
  let start = 0;
  let quoted = false;
  for (let i = 0; i < value.length; i++) {
    const c = value[i];
    if (quoted && c === '\\') i++;
    else if (c === '"') quoted = !quoted;
    else if (!quoted && c === sep) {
      parts.push(value.slice(start, i));
      start = i + 1;
    }
  }
  parts.push(value.slice(start));
  return parts.map((p) => p.trim()).filter((p) => p !== '');
}

// `a=b; c="quoted \" value"; d`, read as Pushpin's parseParams does; null on a dangling
// `=` or an unterminated quote.
function parseExtensionParams(input: string): Map<string, string> | null {
  const out = new Map<string, string>();
  let pos = 0;
  while (pos < input.length) {
    const eq = input.indexOf('=', pos);
    const semi = input.indexOf(';', pos);
    if (eq === -1 && semi === -1) {
      const name = input.slice(pos).trim();
      out.set(name, '');
      break;
    }
    if (semi !== -1 && (eq === -1 || semi < eq)) {
      out.set(input.slice(pos, semi).trim(), '');
      pos = semi + 1;
      continue;
    }
    const name = input.slice(pos, eq).trim();
    let at = eq + 1;
    if (at >= input.length) return null;
    if (input[at] === '"') {
      let value = '';
      let closed = false;
      for (at++; at < input.length; at++) {
        const c = input[at];
        if (c === '\\') {
          if (at + 1 >= input.length) return null;
          value += input[++at];
        } else if (c === '"') {
          closed = true;
          at++;
          break;
        } else {
          value += c;
        }
      }
      if (!closed) return null;
      out.set(name, value);
      const next = input.indexOf(';', at);
      pos = next === -1 ? input.length : next + 1;
    } else {
      const next = input.indexOf(';', at);
      out.set(name, (next === -1 ? input.slice(at) : input.slice(at, next)).trim());
      pos = next === -1 ? input.length : next + 1;
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------
// Control messages: a TEXT message `c:<json object>`.

export type KeepAliveMessageType = 'text' | 'binary' | 'ping' | 'pong';

export type GripControl =
  | { readonly type: 'subscribe'; readonly channel: string; readonly filters: readonly string[] }
  | { readonly type: 'unsubscribe'; readonly channel: string }
  | { readonly type: 'detach' }
  /** value null removes the key. This is the meta publish filters see, not the Meta-* headers. */
  | { readonly type: 'set-meta'; readonly name: string; readonly value: string | null }
  /**
   * message null turns keep-alives off. Otherwise send `message` to the client after
   * `timeout` seconds without outgoing traffic (mode idle) or every `timeout` seconds (interval).
   */
  | {
      readonly type: 'keep-alive';
      readonly message: { readonly type: KeepAliveMessageType; readonly content: Buffer } | null;
      readonly timeout: number;
      readonly mode: 'idle' | 'interval';
    }
  /** Valid in Pushpin, not implemented by Switchboard: the caller logs and skips it. */
  | { readonly type: 'unsupported'; readonly name: 'session' | 'send-delayed' | 'flush-delayed' | 'auto-respond' };

const UNSUPPORTED = new Set(['session', 'send-delayed', 'flush-delayed', 'auto-respond']);
const MESSAGE_TYPES = new Set<string>(['text', 'binary', 'ping', 'pong']);
const PN = 'grip control object';

/**
 * Parses the JSON after `c:`. Pushpin logs a failure at debug level and skips the
 * message; the connection stays open. Error texts follow Pushpin's.
 */
export function parseControlMessage(json: Buffer | string): ParseResult<GripControl> {
  const parsed = parseJson(typeof json === 'string' ? json : json.toString('utf8'));
  if (!parsed.ok) return fail('grip control message is not valid json');
  const doc = parsed.value;
  if (typeof doc !== 'object' || doc === null) return fail('grip control message is not valid json');
  if (Array.isArray(doc)) return fail('grip control packet is not an object');
  const o = doc as Record<string, unknown>;

  const type = requiredString(o, 'type');
  if (!type.ok) return type;
  switch (type.value) {
    case 'subscribe':
    case 'unsubscribe': {
      const channel = requiredString(o, 'channel');
      if (!channel.ok) return channel;
      if (channel.value === '') return fail(`${PN} contains 'channel' with invalid value`);
      if (type.value === 'unsubscribe') return ok({ type: 'unsubscribe', channel: channel.value });
      const filters = o.filters ?? [];
      if (!Array.isArray(filters)) return fail(`${PN} contains 'filters' with wrong type`);
      if (!filters.every((f) => typeof f === 'string')) return fail('filters contains value with wrong type');
      return ok({ type: 'subscribe', channel: channel.value, filters: filters as string[] });
    }
    case 'detach':
      return ok({ type: 'detach' });
    case 'set-meta': {
      const name = requiredString(o, 'name');
      if (!name.ok) return name;
      if (name.value === '') return fail(`${PN} contains 'name' with invalid value`);
      const value = optionalString(o, 'value');
      if (!value.ok) return value;
      return ok({ type: 'set-meta', name: name.value, value: value.value });
    }
    case 'keep-alive':
      return parseKeepAlive(o);
    default:
      if (UNSUPPORTED.has(type.value)) {
        return ok({ type: 'unsupported', name: type.value as 'session' | 'send-delayed' | 'flush-delayed' | 'auto-respond' });
      }
      return fail(`'type' contains unknown value: ${type.value}`);
  }
}

function parseKeepAlive(o: Record<string, unknown>): ParseResult<GripControl> {
  const typeStr = optionalString(o, 'message-type');
  if (!typeStr.ok) return typeStr;
  if (typeStr.value !== null && !MESSAGE_TYPES.has(typeStr.value)) return fail(`${PN} contains 'message-type' with unknown value`);
  // Pushpin defaults to text even for content-bin; only an explicit message-type changes it.
  const messageType = (typeStr.value ?? 'text') as KeepAliveMessageType;

  let content: Buffer | null = null;
  if (o['content-bin'] !== undefined && o['content-bin'] !== null) {
    if (typeof o['content-bin'] !== 'string') return fail(`${PN} contains 'content-bin' with wrong type`);
    content = Buffer.from(o['content-bin'], 'base64');
  } else if (o.content !== undefined && o.content !== null) {
    if (typeof o.content !== 'string') return fail(`${PN} contains 'content' with wrong type`);
    content = Buffer.from(o.content, 'utf8');
  }

  let timeout = 0;
  if (content !== null && o.timeout !== undefined && o.timeout !== null) {
    const t = o.timeout;
    const n = typeof t === 'number' ? t : typeof t === 'string' && /^\s*[+-]?\d+\s*$/.test(t) ? Number(t) : NaN;
    if (!Number.isFinite(n)) return fail(`${PN} contains 'timeout' with wrong type`);
    timeout = Math.trunc(n);
    if (timeout < 0) return fail(`${PN} contains 'timeout' with invalid value`);
  }

  const mode = optionalString(o, 'mode');
  if (!mode.ok) return mode;

  return ok({
    type: 'keep-alive',
    message: content === null ? null : { type: messageType, content },
    timeout: timeout > 0 ? timeout : DEFAULT_KEEP_ALIVE_TIMEOUT,
    mode: mode.value === 'interval' ? 'interval' : 'idle',
  });
}

function requiredString(o: Record<string, unknown>, key: string): ParseResult<string> {
  if (!(key in o)) return fail(`${PN} does not contain '${key}'`);
  const v = o[key];
  return typeof v === 'string' ? ok(v) : fail(`${PN} contains '${key}' with wrong type`);
}

function optionalString(o: Record<string, unknown>, key: string): ParseResult<string | null> {
  const v = o[key];
  if (v === undefined || v === null) return ok(null);
  return typeof v === 'string' ? ok(v) : fail(`${PN} contains '${key}' with wrong type`);
}

// ---------------------------------------------------------------------------------------
// Messages from the app once GRIP is on.

export type AppMessage =
  | { readonly kind: 'control'; readonly control: ParseResult<GripControl> }
  | { readonly kind: 'message'; readonly type: 'TEXT' | 'BINARY'; readonly data: Buffer }
  /** GRIP is on and the message lacks the prefix: Pushpin drops it (debug log only). */
  | { readonly kind: 'dropped' };

/**
 * What to do with a TEXT or BINARY event from the app. Without GRIP every message goes to
 * the client as-is and `c:` means nothing. With GRIP a TEXT starting with `c:` is a control
 * message (checked first, so even an empty prefix cannot shadow it); any other TEXT or
 * BINARY must start with the prefix, which is stripped; the rest is dropped.
 */
export function routeAppMessage(type: 'TEXT' | 'BINARY', content: Buffer, grip: GripExtension | null): AppMessage {
  if (grip === null) return { kind: 'message', type, data: content };
  if (type === 'TEXT' && startsWith(content, 'c:')) {
    return { kind: 'control', control: parseControlMessage(content.subarray(2)) };
  }
  if (startsWith(content, grip.messagePrefix)) {
    return { kind: 'message', type, data: content.subarray(Buffer.byteLength(grip.messagePrefix)) };
  }
  return { kind: 'dropped' };
}

function startsWith(content: Buffer, prefix: string): boolean {
  const p = Buffer.from(prefix, 'utf8');
  return content.length >= p.length && content.subarray(0, p.length).equals(p);
}

// ---------------------------------------------------------------------------------------
// Headers.

export type HeaderBag = Readonly<Record<string, string | readonly string[] | undefined>>;

/**
 * Applies an app response's Set-Meta-<name> headers to the connection's meta, in order:
 * a value replaces, an empty value removes. Names are kept lower-case (Node's headers are).
 */
export function applySetMeta(meta: Readonly<Record<string, string>>, headers: HeaderBag): Record<string, string> {
  const out = { ...meta };
  for (const [rawName, rawValue] of Object.entries(headers)) {
    const lower = rawName.toLowerCase();
    if (!lower.startsWith('set-meta-') || lower.length < 10 || rawValue === undefined) continue;
    const name = lower.slice(9);
    for (const value of typeof rawValue === 'string' ? [rawValue] : rawValue) {
      delete out[name];
      if (value !== '') out[name] = value;
    }
  }
  return out;
}

/** Meta-<name> request headers carrying the connection's meta to the app. */
export function metaHeaders(meta: Readonly<Record<string, string>>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(meta)) out[`Meta-${name}`] = value;
  return out;
}

/** Meta from a request's Meta-* headers: what an app (js-grip) reads. */
export function readMetaHeaders(headers: HeaderBag): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [rawName, value] of Object.entries(headers)) {
    const lower = rawName.toLowerCase();
    if (lower.startsWith('meta-') && lower.length > 5 && typeof value === 'string') out[lower.slice(5)] = value;
  }
  return out;
}

/**
 * Keep-Alive-Interval from an app response: undefined when absent (keep the current
 * setting), null when not a positive integer (keep-alive requests off), else the seconds
 * between empty requests, at least 20.
 */
export function parseKeepAliveInterval(value: string | undefined): number | null | undefined {
  if (value === undefined) return undefined;
  const trimmed = value.trim();
  if (!/^\+?\d+$/.test(trimmed)) return null;
  const n = Number(trimmed);
  if (!Number.isSafeInteger(n) || n <= 0) return null;
  return Math.max(n, WOH_LIMITS.keepAliveMinSeconds);
}

/**
 * Client handshake headers Pushpin does not forward to the app. Sec-WebSocket-Extensions
 * is replaced by `grip`; Grip-* is dropped because an untrusted client could forge it.
 */
export function isStrippedClientHeader(name: string): boolean {
  const lower = name.toLowerCase();
  return STRIPPED.has(lower) || lower.startsWith('meta-') || lower.startsWith('grip-');
}

const STRIPPED = new Set([
  'upgrade',
  'accept',
  'connection-id',
  'content-length',
  'sec-websocket-extensions',
  'connection',
  'keep-alive',
  'accept-encoding',
  'content-encoding',
  'transfer-encoding',
  'expect',
]);

/** The headers every WebSocket-over-HTTP request to the app carries. */
export function wohRequestHeaders(opts: {
  readonly connectionId: string;
  readonly meta: Readonly<Record<string, string>>;
  readonly contentLength: number;
  /** A Grip-Sig token (see createGripSig in publish-auth.ts), when a signing key is configured. */
  readonly gripSig?: string;
}): Record<string, string> {
  const headers: Record<string, string> = {
    Accept: WOH_CONTENT_TYPE,
    'Connection-Id': opts.connectionId,
    'Content-Type': WOH_CONTENT_TYPE,
    'Content-Length': String(opts.contentLength),
    'Sec-WebSocket-Extensions': 'grip',
    ...metaHeaders(opts.meta),
  };
  if (opts.gripSig !== undefined) headers['Grip-Sig'] = opts.gripSig;
  return headers;
}
