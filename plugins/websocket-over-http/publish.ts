// The GRIP publish endpoint, `POST /publish/`: body parsing with Pushpin's validation and
// error texts, and reply negotiation. Its auth is in publish-auth.ts.
// Facts and sources: docs/websocket-over-http-notes.md.
import { parseJson } from '../../proxy/json.js';
import { fail, type Result } from '../../proxy/result.js';
import { MAX_JSON_DEPTH } from '../../proxy/limits.js';

// ---------------------------------------------------------------------------------------
// Body.

export type WsPublish =
  | { readonly kind: 'text'; readonly text: string }
  | { readonly kind: 'binary'; readonly data: Buffer }
  | { readonly kind: 'ping'; readonly data: Buffer }
  | { readonly kind: 'pong'; readonly data: Buffer }
  /** code absent: Pushpin closes without a status code. Check it with isSendableCloseCode. */
  | { readonly kind: 'close'; readonly code?: number; readonly reason?: string };

export interface PublishItem {
  readonly channel: string;
  readonly id?: string;
  readonly prevId?: string;
  /**
   * null when the item has no ws-message format, or its action is hint or refresh:
   * Pushpin accepts those and delivers nothing to WebSockets.
   */
  readonly ws: WsPublish | null;
}

export type PublishParse =
  | { readonly ok: true; readonly items: readonly PublishItem[] }
  | { readonly ok: false; readonly status: 400; readonly body: string };

type Obj = Record<string, unknown>;
type Check<T> = Result<T>;

/** Parses a publish body; a failure carries Pushpin's 400 text (send as text/plain). */
export function parsePublishBody(body: Buffer | string): PublishParse {
  const parsed = parseJson(typeof body === 'string' ? body : body.toString('utf8'));
  if (!parsed.ok) return bad(parsed.error.code === 'too_deep' ? `Body is nested deeper than ${MAX_JSON_DEPTH} levels.\n` : 'Body is not valid JSON.\n');
  const doc = parsed.value;
  if (!isObj(doc)) return bad('Invalid format.\n');
  if (!('items' in doc)) return bad("Invalid format: object does not contain 'items'\n");
  if (!Array.isArray(doc.items)) return bad("Invalid format: object contains 'items' with wrong type\n");

  const items: PublishItem[] = [];
  for (const raw of doc.items) {
    const item = parseItem(raw);
    if (!item.ok) return bad(`Invalid format: ${item.error}\n`);
    items.push(item.value);
  }
  return { ok: true, items };
}

function bad(body: string): PublishParse {
  return { ok: false, status: 400, body };
}

const FORMAT_NAMES = ['http-response', 'http-stream', 'ws-message'] as const;

function parseItem(raw: unknown): Check<PublishItem> {
  const pn = 'publish item object';
  if (!isObj(raw)) return err(`${pn} is not an object`);

  const channel = str(raw, pn, 'channel', true);
  if (!channel.ok) return channel;
  const id = str(raw, pn, 'id', false);
  if (!id.ok) return id;
  const prevId = str(raw, pn, 'prev-id', false);
  if (!prevId.ok) return prevId;

  let formats: Obj;
  if (present(raw.formats)) {
    if (!isObj(raw.formats)) return err(`${pn} contains 'formats' with wrong type`);
    formats = raw.formats;
  } else {
    // Older publishers put the formats directly on the item.
    formats = {};
    for (const name of FORMAT_NAMES) if (name in raw) formats[name] = raw[name];
  }
  if (Object.keys(formats).length === 0) return err('no formats specified');

  if ('http-response' in formats) {
    const r = checkHttpResponse(formats['http-response']);
    if (!r.ok) return r;
  }
  if ('http-stream' in formats) {
    const r = checkHttpStream(formats['http-stream']);
    if (!r.ok) return r;
  }
  let ws: WsPublish | null = null;
  if ('ws-message' in formats) {
    const r = parseWsMessage(formats['ws-message']);
    if (!r.ok) return r;
    ws = r.value;
  }

  if (present(raw.meta)) {
    if (!isObj(raw.meta)) return err(`${pn} contains 'meta' with wrong type`);
    for (const [k, v] of Object.entries(raw.meta)) if (typeof v !== 'string') return err(`'meta' contains '${k}' with wrong type`);
  }
  if (present(raw.size)) {
    if (!Number.isInteger(raw.size)) return err(`${pn} contains 'size' with wrong type`);
    if ((raw.size as number) < 0) return err(`${pn} contains 'size' with invalid value`);
  }
  if (present(raw['no-seq']) && typeof raw['no-seq'] !== 'boolean') return err(`${pn} contains 'no-seq' with wrong type`);

  const item: { channel: string; id?: string; prevId?: string; ws: WsPublish | null } = { channel: channel.value!, ws };
  if (id.value !== undefined) item.id = id.value;
  if (prevId.value !== undefined) item.prevId = prevId.value;
  return { ok: true, value: item };
}

type Action = 'send' | 'hint' | 'close' | 'refresh';

function action(f: Obj, pn: string): Check<Action> {
  const a = str(f, pn, 'action', false);
  if (!a.ok) return a;
  const v = a.value ?? 'send';
  if (v === 'send' || v === 'hint' || v === 'close' || v === 'refresh') return { ok: true, value: v };
  // Pushpin fails here with an empty message; a reason is kinder to the publisher.
  return err(`${pn} contains 'action' with unknown value`);
}

function parseWsMessage(raw: unknown): Check<WsPublish | null> {
  const pn = "'ws-message'";
  if (!isObj(raw)) return err(`${pn} is not an object`);
  const act = action(raw, pn);
  if (!act.ok) return act;

  if (act.value === 'close') {
    let code: number | undefined;
    if (present(raw.code)) {
      if (!Number.isInteger(raw.code)) return err(`${pn} contains 'code' with wrong type`);
      code = raw.code as number;
      if (code < 0 || code > 0xffff) return err(`${pn} contains 'code' with invalid value`);
    }
    const reason = str(raw, pn, 'reason', false);
    if (!reason.ok) return reason;
    const out: { kind: 'close'; code?: number; reason?: string } = { kind: 'close' };
    if (code !== undefined) out.code = code;
    if (reason.value) out.reason = reason.value;
    return { ok: true, value: out };
  }
  if (act.value !== 'send') return { ok: true, value: null };

  const typeStr = str(raw, pn, 'type', false);
  if (!typeStr.ok) return typeStr;
  let type = typeStr.value;
  if (type !== undefined && type !== 'text' && type !== 'binary' && type !== 'ping' && type !== 'pong') {
    return err(`${pn} contains 'type' with unknown value`);
  }
  const filters = checkContentFilters(raw, pn);
  if (!filters.ok) return filters;

  let data: Buffer | undefined;
  if ('content-bin' in raw) {
    if (typeof raw['content-bin'] !== 'string') return err(`${pn} contains 'content-bin' with wrong type`);
    data = Buffer.from(raw['content-bin'], 'base64');
    type ??= 'binary';
  } else if ('content' in raw) {
    if (typeof raw.content !== 'string') return err(`${pn} contains 'content' with wrong type`);
    data = Buffer.from(raw.content, 'utf8');
    type ??= 'text';
  } else if (type === undefined || type === 'text' || type === 'binary') {
    return err(`${pn} does not contain 'content' or 'content-bin'`);
  }
  const bytes = data ?? Buffer.alloc(0);
  switch (type) {
    case 'text':
      return { ok: true, value: { kind: 'text', text: bytes.toString('utf8') } };
    case 'binary':
      return { ok: true, value: { kind: 'binary', data: bytes } };
    case 'ping':
      return { ok: true, value: { kind: 'ping', data: bytes } };
    default:
      return { ok: true, value: { kind: 'pong', data: bytes } };
  }
}

// The HTTP formats are not delivered to WebSockets, but Pushpin rejects a malformed one,
// so the publish is refused here too.
function checkHttpResponse(raw: unknown): Check<true> {
  const pn = "'http-response'";
  if (!isObj(raw)) return err(`${pn} is not an object`);
  const act = action(raw, pn);
  if (!act.ok) return act;
  if (act.value !== 'send') return { ok: true, value: true };
  if (present(raw.code)) {
    if (!Number.isInteger(raw.code)) return err(`${pn} contains 'code' with wrong type`);
    if ((raw.code as number) < 0 || (raw.code as number) > 999) return err(`${pn} contains 'code' with invalid value`);
  }
  const reason = str(raw, pn, 'reason', false);
  if (!reason.ok) return reason;
  if (present(raw.headers)) {
    const h = raw.headers;
    if (Array.isArray(h)) {
      for (const pair of h) {
        if (!Array.isArray(pair)) return err('headers contains element with wrong type');
        if (pair.length !== 2) return err('headers contains list with wrong number of elements');
        if (typeof pair[0] !== 'string') return err('header contains name element with wrong type');
        if (typeof pair[1] !== 'string') return err('header contains value element with wrong type');
      }
    } else if (isObj(h)) {
      for (const [k, v] of Object.entries(h)) if (typeof v !== 'string') return err(`headers contains '${k}' with wrong type`);
    } else {
      return err(`${pn} contains 'headers' with wrong type`);
    }
  }
  const filters = checkContentFilters(raw, pn);
  if (!filters.ok) return filters;
  if ('body-bin' in raw) {
    if (typeof raw['body-bin'] !== 'string') return err(`${pn} contains 'body-bin' with wrong type`);
  } else if ('body' in raw) {
    if (typeof raw.body !== 'string') return err(`${pn} contains 'body' with wrong type`);
  } else if ('body-patch' in raw) {
    if (!Array.isArray(raw['body-patch'])) return err(`${pn} contains 'body-patch' with wrong type`);
  } else {
    return err(`${pn} does not contain 'body', 'body-bin', or 'body-patch'`);
  }
  return { ok: true, value: true };
}

function checkHttpStream(raw: unknown): Check<true> {
  const pn = "'http-stream'";
  if (!isObj(raw)) return err(`${pn} is not an object`);
  const act = action(raw, pn);
  if (!act.ok) return act;
  if (act.value !== 'send') return { ok: true, value: true };
  const filters = checkContentFilters(raw, pn);
  if (!filters.ok) return filters;
  if ('content-bin' in raw) {
    if (typeof raw['content-bin'] !== 'string') return err(`${pn} contains 'content-bin' with wrong type`);
  } else if ('content' in raw) {
    if (typeof raw.content !== 'string') return err(`${pn} contains 'content' with wrong type`);
  } else {
    return err(`${pn} does not contain 'content' or 'content-bin'`);
  }
  return { ok: true, value: true };
}

function checkContentFilters(f: Obj, pn: string): Check<true> {
  if (!('content-filters' in f)) return { ok: true, value: true };
  const v = f['content-filters'];
  if (!Array.isArray(v)) return err(`${pn} contains 'content-filters' with wrong type`);
  if (!v.every((x) => typeof x === 'string')) return err('content-filters contains element with wrong type');
  return { ok: true, value: true };
}

function isObj(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

// JSON null counts as absent, as it does for Pushpin's optional fields.
function present(v: unknown): boolean {
  return v !== undefined && v !== null;
}

function str(o: Obj, pn: string, key: string, required: boolean): Check<string | undefined> {
  const v = o[key];
  if (v === undefined || (v === null && !required)) {
    return required ? err(`${pn} does not contain '${key}'`) : { ok: true, value: undefined };
  }
  return typeof v === 'string' ? { ok: true, value: v } : err(`${pn} contains '${key}' with wrong type`);
}

const err = (error: string) => fail(error);

// ---------------------------------------------------------------------------------------
// Replies.

export interface PublishReply {
  readonly status: number;
  readonly headers: Readonly<Record<string, string>>;
  readonly body: string;
}

export type PublishReplyType = 'text/plain' | 'application/json';

/**
 * The reply type the publisher's Accept asks for, the last acceptable entry winning as in
 * Pushpin; null means answer NOT_ACCEPTABLE_REPLY before reading the body.
 */
export function publishReplyType(accept: string | undefined): PublishReplyType | null {
  if (accept === undefined || accept.trim() === '') return 'text/plain';
  let chosen: PublishReplyType | null = null;
  for (const entry of accept.split(',')) {
    const type = entry.split(';', 1)[0]!.trim().toLowerCase();
    if (type === 'text/plain' || type === 'text/*' || type === '*/*' || type === '*') chosen = 'text/plain';
    else if (type === 'application/json' || type === 'application/*') chosen = 'application/json';
  }
  return chosen;
}

export function publishedReply(type: PublishReplyType): PublishReply {
  return type === 'application/json'
    ? { status: 200, headers: { 'Content-Type': type }, body: '{"message":"Published"}\n' }
    : { status: 200, headers: { 'Content-Type': type }, body: 'Published\n' };
}

export const NOT_ACCEPTABLE_REPLY: PublishReply = {
  status: 406,
  headers: { 'Content-Type': 'text/plain' },
  body: 'Not Acceptable. Supported formats are text/plain and application/json.\n',
};

export function methodNotAllowedReply(method: string): PublishReply {
  return { status: 405, headers: { 'Content-Type': 'text/plain', Allow: 'POST' }, body: `Method not allowed: ${method}.\n` };
}
