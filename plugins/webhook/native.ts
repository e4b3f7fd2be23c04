// The native webhook dialect: one POST per event to `app.url` + the event's path.
import { randomUUID } from 'node:crypto';
import type { Config } from '../../proxy/config.js';
import type { ConnectOutcome, DeliveryOutcome, DisconnectInfo, Effects, InboundMessage, ResumeInfo, SessionView, Upstream, UpstreamHost } from '../../proxy/upstream.js';
import { bodyKind, bodyOf, contentTypeOf, payloadOf, payloadOfValue, type Payload } from '../../proxy/payload.js';
import type { WebhookResult, WebhookSender } from './sender.js';
import { AtLeastOnce, disconnectsOf } from './at-least-once.js';
import type { PresenceEvent } from '../../proxy/presence.js';
import { parseJson } from '../../proxy/json.js';
import { fail, ok, type Result } from '../../proxy/result.js';
import { nack } from '../../proxy/errors.js';
import { isRetryableStatus } from './retry.js';
import { headerValue } from './header-value.js';
import type { Clock } from '../../proxy/clock.js';
import type { Metrics } from '../../proxy/metrics.js';

/** A webhook the app answered. */
type Answered = Extract<WebhookResult, { answered: true }>;

type WebhookConfig = Config['webhooks'];

export class NativeWebhooks implements Upstream {
  readonly name = 'webhook';
  /** 1: one POST per client message; more with `webhooks.batchMessages` (a JSON batch body). */
  readonly maxBatch: number;
  readonly #config: WebhookConfig;
  readonly #sender: WebhookSender;
  readonly #host: UpstreamHost;
  readonly #cache = new WeakMap<SessionView, { user: string | null; meta: object; headers: Record<string, string> }>();

  /** The disconnect, sent at least once. */
  readonly #disconnects: AtLeastOnce;
  /** Presence batches, sent at least once, the same way. */
  readonly #presence: AtLeastOnce;

  constructor(config: WebhookConfig, sender: WebhookSender, host: UpstreamHost, deps: { clock: Clock; metrics: Metrics }) {
    this.#config = config;
    this.#sender = sender;
    this.#host = host;
    this.#disconnects = disconnectsOf(config, deps.clock, deps.metrics, host);
    this.#presence = new AtLeastOnce('presence', { forMs: config.retry.atLeastOnceMs, backoff: config.retry, clock: deps.clock, log: host.log, waiting: deps.metrics.webhooksWaiting.labels('presence') });
    this.maxBatch = config.batchMessages;
  }

  async start(): Promise<void> {}

  close(): Promise<void> {
    return this.#sender.close();
  }

  destroy(): void {
    this.#disconnects.destroy();
    this.#presence.destroy();
    this.#sender.destroy();
  }

  ready(): boolean {
    return true;
  }

  /** Headers every webhook of a session carries after connect. */
  #sessionHeaders(s: SessionView, replayHandshake: boolean): Record<string, string> {
    const headers: Record<string, string> = replayHandshake && this.#config.replayHandshakeHeaders ? { ...s.headers } : {};
    if (s.user !== null) headers['x-switchboard-user'] = headerValue(s.user);
    for (const [key, value] of Object.entries(s.meta)) headers[`x-switchboard-meta-${key}`] = headerValue(value);
    return headers;
  }

  /**
   * The message webhook's session headers, built once per session and again only when its
   * user or meta change (sessions replace `meta` rather than mutate it).
   */
  #messageHeaders(s: SessionView): Record<string, string> {
    const cached = this.#cache.get(s);
    if (cached && cached.user === s.user && cached.meta === s.meta) return cached.headers;
    const headers = this.#sessionHeaders(s, true);
    this.#cache.set(s, { user: s.user, meta: s.meta, headers });
    return headers;
  }

  #json(event: string, s: SessionView, body: unknown, extra: Record<string, string> = {}, id = `${event}_${randomUUID()}`, maxAttempts?: number) {
    const path = this.#config.paths[event as keyof WebhookConfig['paths']]!;
    return this.#sender.send({
      event, path, id, connection: s.id, idempotent: true, maxAttempts,
      headers: { 'content-type': 'application/json', ...this.#sessionHeaders(s, false), ...extra },
      body: JSON.stringify(body),
    });
  }

  async connect(s: SessionView): Promise<ConnectOutcome> {
    if (this.#config.paths.connect === null) return { ok: true, effects: {} };
    const result = await this.#json(
      'connect', s,
      { connection: s.id, path: s.path, query: s.query, remoteAddress: s.remoteAddress, subprotocol: s.subprotocol },
      // A client waits on the handshake: tried once (webhooks.retry.connectAttempts), within webhooks.timeoutMs.
      s.headers, undefined, this.#config.retry.connectAttempts,
    );
    if (!result.answered || result.status >= 500) {
      if (this.#config.onConnectError === 'accept') return { ok: true, effects: {} };
      // The app's own Retry-After (a 503 for maintenance) tells the client when to come back.
      return { ok: false, status: 503, headers: result.answered ? pickRefusalHeaders(result.headers, false) : {} };
    }
    if (result.status >= 300) {
      return { ok: false, status: result.status >= 400 ? result.status : 403, body: result.body, headers: pickRefusalHeaders(result.headers, true) };
    }
    const parsed = parseConnectAnswer(result.body, result.headers['content-type'] as string | undefined);
    if (!parsed.ok) {
      this.#host.log.warn({ connection: s.id, err: parsed.error }, 'connect webhook answer ignored');
      return { ok: true, effects: {} };
    }
    return { ok: true, effects: parsed.value };
  }

  async message(s: SessionView, batch: readonly InboundMessage[]): Promise<DeliveryOutcome> {
    const path = this.#config.paths.message;
    if (path === null) return { ok: true };
    const keyOf = (m: InboundMessage) => (m.id !== undefined ? `${s.id}:${m.id}` : `${s.id}:${m.seq}`);
    let request: { key: string; contentType: string; body: Buffer | string; extra?: Record<string, string> };
    if (this.maxBatch === 1) {
      const m = batch[0];
      request = { key: keyOf(m), contentType: contentTypeOf(m.payload), body: bodyOf(m.payload) };
    } else {
      // Batched: one JSON body for everything queued; each item keeps its own idempotency key.
      const items = batch.map((m) => `{"seq":${m.seq},"key":${JSON.stringify(keyOf(m))},${itemOf(m)}}`);
      const key = batch.length === 1 ? keyOf(batch[0]) : `${keyOf(batch[0])}..${keyOf(batch[batch.length - 1])}`;
      request = { key, contentType: 'application/json', body: `{"messages":[${items.join(',')}]}`, extra: { 'x-switchboard-batch': String(batch.length) } };
    }
    const result = await this.#sender.send({
      event: 'message', path, id: request.key, connection: s.id, idempotent: true,
      headers: { 'content-type': request.contentType, 'idempotency-key': request.key, ...request.extra, ...this.#messageHeaders(s) },
      body: request.body,
    });
    if (!result.answered) {
      // The app took the message and answered more than limits.maxMessageBytes: not the input's fault, not retried.
      if (result.last.kind === 'too-large') return nack('answer_too_large', false);
      return nack('webhook_failed', true, `the app could not be reached (${result.last.kind})`);
    }
    if (result.status >= 200 && result.status < 300) {
      if (result.status === 204 || result.body.length === 0) return { ok: true };
      const send = this.maxBatch === 1 ? this.#reply(s, result) : this.#batchReply(s, result);
      return send ? { ok: true, effects: { send } } : { ok: true };
    }
    const retryable = isRetryableStatus(result.status);
    return nack(retryable ? 'webhook_failed' : 'rejected', retryable, `the app answered ${result.status}`);
  }

  /** One message's answer: the body as one frame, its content type deciding text, JSON or binary. */
  #reply(s: SessionView, result: Answered): Payload[] | null {
    const kind = bodyKind(result.headers['content-type'] as string | undefined) ?? 'binary';
    const payload = payloadOf(kind, result.body);
    if (!payload.ok) {
      this.#host.log.warn({ connection: s.id, err: payload.error.message }, 'message webhook answer not sent: not usable JSON');
      return null;
    }
    return [payload.value];
  }

  /** A batch's answer: `{"send":[…]}`, as in a connect answer. */
  #batchReply(s: SessionView, result: Answered): Payload[] | null {
    const effects = parseConnectAnswer(result.body, result.headers['content-type'] as string | undefined);
    if (!effects.ok) {
      this.#host.log.warn({ connection: s.id, err: effects.error }, 'batched message answer not sent');
      return null;
    }
    return effects.value.send ?? null;
  }

  async subscribe(s: SessionView, channel: string): Promise<DeliveryOutcome> {
    if (this.#config.paths.subscribe === null) {
      return nack('subscribe_denied', false, 'subscriptions are not enabled (webhooks.paths.subscribe)');
    }
    const result = await this.#json('subscribe', s, { connection: s.id, user: s.user, channel });
    if (!result.answered || isRetryableStatus(result.status)) return nack('subscribe_failed', true, 'the subscribe webhook failed');
    if (result.status >= 300) return nack('subscribe_denied', false, `the app answered ${result.status}`);
    return { ok: true };
  }

  async resume(s: SessionView, info: ResumeInfo): Promise<void> {
    if (this.#config.paths.resume === null) return;
    await this.#json('resume', s, { connection: s.id, user: s.user, ...info });
  }

  async disconnect(s: SessionView, info: DisconnectInfo): Promise<void> {
    if (this.#config.paths.disconnect === null) return;
    const { code, reason, durationMs, messagesIn, messagesOut, undelivered } = info;
    const body = { connection: s.id, user: s.user, code, reason, durationMs, messagesIn, messagesOut, undelivered };
    await this.#disconnects.send(s.id, () => this.#json('disconnect', s, body, {}, `disconnect_${s.id}`));
  }

  /** `{"events":[…]}`; webhook-id and Idempotency-Key name the batch by its first event (a batch never changes). */
  async presence(events: readonly PresenceEvent[], signal?: AbortSignal): Promise<boolean> {
    const path = this.#config.paths.presence;
    if (path === null || events.length === 0) return true;
    const id = `presence_${events[0].id}`;
    const body = JSON.stringify({ events });
    return this.#presence.send(id, () => this.#sender.send({
      event: 'presence', path, id, connection: '', idempotent: true,
      headers: { 'content-type': 'application/json', 'idempotency-key': id }, body,
    }), signal);
  }
}

/** A batch item's payload field: `text`, `data` (JSON) or `binary` (base64). */
function itemOf(m: InboundMessage): string {
  const p = m.payload;
  return p.kind === 'text' ? `"text":${JSON.stringify(p.text)}` : p.kind === 'json' ? `"data":${p.json}` : `"binary":"${p.data.toString('base64')}"`;
}

/** What of the app's refusal reaches the client: the body's content type (with the body) and Retry-After. */
function pickRefusalHeaders(headers: Record<string, string | string[] | undefined>, withBody: boolean): Record<string, string> {
  const picked: Record<string, string> = {};
  const type = headers['content-type'];
  if (withBody && typeof type === 'string') picked['content-type'] = type;
  const retryAfter = headers['retry-after'];
  // Delta-seconds or an HTTP date: nothing that could split the status line's headers.
  if (typeof retryAfter === 'string' && /^[\w ,:+-]{1,64}$/.test(retryAfter)) picked['retry-after'] = retryAfter;
  return picked;
}

/** `{"user","channels","meta","send"}`, every field optional; an empty body is fine. */
export function parseConnectAnswer(body: Buffer, contentType: string | undefined): Result<Effects> {
  if (body.length === 0 || bodyKind(contentType) !== 'json') return ok({});
  const parsed = parseJson(body.toString('utf8'));
  if (!parsed.ok) return fail(parsed.error.code === 'too_deep' ? `connect answer: ${parsed.error.message}` : 'connect answer is not valid JSON');
  const value = parsed.value;
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return fail('connect answer is not a JSON object');
  const v = value as Record<string, unknown>;
  const effects: Effects = {};
  if (v.user !== undefined && v.user !== null) {
    if (typeof v.user !== 'string' || v.user === '') return fail('"user" must be a non-empty string');
    effects.user = v.user;
  }
  if (v.channels !== undefined) {
    if (!Array.isArray(v.channels) || !v.channels.every((c) => typeof c === 'string' && c !== '')) return fail('"channels" must be a list of strings');
    effects.channels = v.channels as string[];
  }
  if (v.meta !== undefined) {
    if (v.meta === null || typeof v.meta !== 'object' || Array.isArray(v.meta)) return fail('"meta" must be an object');
    const meta: Record<string, string> = {};
    for (const [key, val] of Object.entries(v.meta)) {
      if (!/^[A-Za-z0-9-]+$/.test(key)) return fail(`meta key ${JSON.stringify(key)} must be letters, digits and "-"`);
      meta[key.toLowerCase()] = typeof val === 'string' ? val : JSON.stringify(val);
    }
    effects.meta = meta;
  }
  if (v.send !== undefined) {
    if (!Array.isArray(v.send)) return fail('"send" must be a list');
    effects.send = v.send.map(payloadOfValue);
  }
  return ok(effects);
}
