// Pushpin's WebSocket-over-HTTP, as an upstream: every client event becomes an event in a
// POST to the app (`app.url` + the client's path and query), one request in flight per
// connection, and the events in each answer are carried out on the client. Apps built
// on @fanoutio/serve-grip run unchanged. Facts and sources: docs/websocket-over-http-notes.md.
import type { IncomingHttpHeaders } from 'node:http';
import type { Config } from '../../proxy/config.js';
import type { ConnectOutcome, DeliveryOutcome, DisconnectInfo, Effects, InboundMessage, SessionView, Upstream, UpstreamHost } from '../../proxy/upstream.js';
import type { Payload } from '../../proxy/payload.js';
import type { WebhookResult, WebhookSender } from '../webhook/sender.js';
import { WOH_LIMITS, closeEvent, decodeEvents, encodeEvents, isEventsResponse, parseClose, WohDecodeError, type WohEvent } from './codec.js';
import {
  DEFAULT_KEEP_ALIVE_TIMEOUT, applySetMeta, isStrippedClientHeader, parseGripExtension, parseKeepAliveInterval, routeAppMessage,
  wohRequestHeaders, type GripControl, type GripExtension,
} from './grip.js';
import { GripSigner } from './publish-auth.js';
import { forwardedName, isSidecarHeader } from '../../proxy/webhook-headers.js';
import { CloseCode } from '../../proxy/errors.js';
import { MAX_EVENTS_PER_REQUEST } from '../../proxy/limits.js';
import { disconnectsOf, type AtLeastOnce } from '../webhook/at-least-once.js';
import { every, type Clock } from '../../proxy/clock.js';
import type { Metrics } from '../../proxy/metrics.js';

/** Client handshake headers that describe the socket itself, not the client. */
const SOCKET_HEADERS = new Set(['host', 'sec-websocket-key', 'sec-websocket-version']);


/** Counts this process's requests, so that ids of one connection differ within a millisecond. */
let webhookSeq = 0;

interface Connection {
  grip: GripExtension | null;
  /** The Meta-* headers: set by the app's Set-Meta-* answers. */
  meta: Record<string, string>;
  /** Requests of one connection go one at a time, in order. */
  chain: Promise<unknown>;
  /** Stops the keep-alive requests (Keep-Alive-Interval). */
  keepAlive: (() => void) | null;
  keepAliveSec: number | null;
  /** Stops the GRIP keep-alive: a message to the client after idleness, or at an interval. */
  clientKeepAlive: (() => void) | null;
  /** GRIP detach: client messages are no longer relayed. */
  detached: boolean;
  closed: boolean;
}

export class WebSocketOverHttp implements Upstream {
  readonly name = 'websocket-over-http';
  readonly maxBatch = MAX_EVENTS_PER_REQUEST;
  readonly #config: Readonly<Config>;
  readonly #sender: WebhookSender;
  readonly #host: UpstreamHost;
  readonly #connections = new Map<string, Connection>();
  readonly #sig: GripSigner | null;
  /** CLOSE and DISCONNECT: the disconnect of this dialect, sent at least once. */
  readonly #disconnects: AtLeastOnce;
  readonly #clock: Clock;

  constructor(config: Readonly<Config>, sender: WebhookSender, host: UpstreamHost, deps: { clock: Clock; metrics: Metrics }) {
    this.#config = config;
    this.#sender = sender;
    this.#host = host;
    this.#disconnects = disconnectsOf(config.webhooks, deps.clock, deps.metrics, host);
    this.#clock = deps.clock;
    const auth = config.grip.publishAuth;
    // The app verifies Grip-Sig with the key it publishes with, when that is a JWT key.
    this.#sig = auth !== null && 'jwt' in auth ? new GripSigner(auth.jwt.iss ?? 'switchboard', auth.jwt.key) : null;
  }

  async start(): Promise<void> {}

  close(): Promise<void> {
    for (const c of this.#connections.values()) this.#stopTimers(c);
    return this.#sender.close();
  }

  destroy(): void {
    for (const c of this.#connections.values()) this.#stopTimers(c);
    this.#disconnects.destroy();
    this.#sender.destroy();
  }

  ready(): boolean {
    return true;
  }

  /** Pushpin forwards the client's headers, less those that describe the WebSocket itself. */
  headersOf(raw: IncomingHttpHeaders): Record<string, string> {
    const out: Record<string, string> = {};
    for (const [name, value] of Object.entries(raw)) {
      if (value === undefined || SOCKET_HEADERS.has(name) || isStrippedClientHeader(name) || isSidecarHeader(name)) continue;
      out[forwardedName(name)] = Array.isArray(value) ? value.join(', ') : value;
    }
    return out;
  }

  /** `id` (webhook-id) is new per request, unless given: an at-least-once event keeps one across rounds. */
  async #post(s: SessionView, c: Connection, events: readonly WohEvent[], retry: boolean, id = `${s.id}:${this.#clock.now()}:${++webhookSeq}`): Promise<WebhookResult> {
    const body = encodeEvents(events);
    const headers = {
      ...s.headers,
      ...wohRequestHeaders({
        connectionId: s.id,
        meta: c.meta,
        contentLength: body.length,
        gripSig: this.#sig ? await this.#sig.sign(this.#clock.now()) : undefined,
      }),
    };
    // Retried only when the app was not reached (idempotent: false), as Pushpin does; never for OPEN.
    return this.#sender.send({
      event: events[0]?.type.toLowerCase() ?? 'keep-alive', path: s.url, id, connection: s.id,
      idempotent: false, maxAttempts: retry ? undefined : 1, headers, body,
    });
  }

  /** Runs `work` after the connection's earlier requests. */
  #serial<T>(c: Connection, work: () => Promise<T>): Promise<T> {
    const next = c.chain.then(work, work);
    c.chain = next.catch(() => {});
    return next;
  }

  async connect(s: SessionView): Promise<ConnectOutcome> {
    const c: Connection = { grip: null, meta: {}, chain: Promise.resolve(), keepAlive: null, keepAliveSec: null, clientKeepAlive: null, detached: false, closed: false };
    const result = await this.#post(s, c, [{ type: 'OPEN' }], false);
    if (!result.answered) {
      if (result.last.kind === 'too-large') this.#host.log.warn({ connection: s.id, max: this.#config.limits.maxMessageBytes }, 'the app answered OPEN with more than limits.maxMessageBytes');
      return { ok: false, status: result.last.kind === 'too-large' ? 502 : 503 };
    }
    const contentType = header(result.headers['content-type']);
    if (!isEventsResponse(result.status, contentType)) {
      // Refused: the client gets the app's status, headers and (some of its) body.
      const status = result.status >= 400 ? result.status : 502;
      const headers: Record<string, string> = {};
      if (contentType) headers['content-type'] = contentType;
      return { ok: false, status, headers, body: result.body.subarray(0, WOH_LIMITS.rejectBodyMax) };
    }
    let events: WohEvent[];
    try {
      events = decodeEvents(result.body, (type) => this.#host.log.debug({ connection: s.id, type }, 'unknown event type from the app skipped'));
    } catch (err) {
      this.#host.log.warn({ connection: s.id, err: (err as Error).message }, 'malformed OPEN answer from the app');
      return { ok: false, status: 502 };
    }
    if (events[0]?.type !== 'OPEN' && parseKeepAliveInterval(header(result.headers['keep-alive-interval'])) === undefined) {
      this.#host.log.warn({ connection: s.id }, 'the app answered OPEN without accepting it');
      return { ok: false, status: 502 };
    }
    c.grip = parseGripExtension(result.headers['sec-websocket-extensions']);
    this.#connections.set(s.id, c);
    // webhooks.keepAliveIntervalSec: keep-alive requests for apps that ask for none themselves.
    const byDefault = this.#config.webhooks.keepAliveIntervalSec;
    if (byDefault > 0 && result.headers['keep-alive-interval'] === undefined) this.#keepAlive(s, c, Math.max(byDefault, WOH_LIMITS.keepAliveMinSeconds));
    const effects = this.#answer(s, c, result, events[0]?.type === 'OPEN' ? events.slice(1) : events);
    return { ok: true, effects };
  }

  async message(s: SessionView, batch: readonly InboundMessage[]): Promise<DeliveryOutcome> {
    const c = this.#connections.get(s.id);
    if (!c || c.closed) return { ok: false, error: 'closed', message: 'the connection is closed', retryable: false };
    if (c.detached) return { ok: true };
    const events = batch.map((m) => toEvent(m.payload));
    return this.#serial(c, async () => {
      const result = await this.#post(s, c, events, true);
      const effects = this.#settle(s, c, result);
      return effects === null
        ? { ok: false, error: 'webhook_failed', message: 'the app did not take the message', retryable: !result.answered }
        : { ok: true, effects };
    });
  }

  async subscribe(): Promise<DeliveryOutcome> {
    return { ok: false, error: 'subscribe_denied', message: 'with websocket-over-http the app subscribes connections (GRIP)', retryable: false };
  }

  async resume(): Promise<void> {}

  async disconnect(s: SessionView, info: DisconnectInfo): Promise<void> {
    const c = this.#connections.get(s.id);
    if (!c) return;
    this.#stopTimers(c);
    if (c.closed) {
      this.#connections.delete(s.id);
      return;
    }
    c.closed = true;
    // A client that sent a close frame gets CLOSE (with its code); a lost one DISCONNECT.
    const event = info.clientClosed ? closeEvent(info.code === 1005 ? undefined : info.code, info.reason) : { type: 'DISCONNECT' as const };
    // At least once: the app may be down for a while (the request is one the app has not seen,
    // or a 408/429/5xx answer to it); rounds of retries for webhooks.retry.atLeastOnceMs.
    const id = `${s.id}:${event.type.toLowerCase()}`;
    await this.#serial(c, () => this.#disconnects.send(s.id, () => this.#post(s, c, [event], true, id)));
    this.#connections.delete(s.id);
  }

  /** An answer to a request after OPEN: effects, or null when the connection must fail (1011). */
  #settle(s: SessionView, c: Connection, result: WebhookResult): Effects | null {
    if (!result.answered) {
      if (result.last.kind !== 'too-large') return null;
      // As Pushpin: a response body over the bound (Pushpin's is 1 000 000 bytes) fails the connection.
      this.#host.log.warn({ connection: s.id, max: this.#config.limits.maxMessageBytes }, 'the app answered with more than limits.maxMessageBytes: closing 1011');
      c.closed = true;
      this.#stopTimers(c);
      return { close: { code: CloseCode.internal, reason: 'upstream error' } };
    }
    if (!isEventsResponse(result.status, header(result.headers['content-type']))) {
      this.#host.log.warn({ connection: s.id, status: result.status }, 'the app did not answer with events: closing 1011');
      return { close: { code: CloseCode.internal, reason: 'upstream error' } };
    }
    let events: WohEvent[];
    try {
      events = decodeEvents(result.body);
    } catch (err) {
      const detail = err instanceof WohDecodeError ? err.message : String(err);
      this.#host.log.warn({ connection: s.id, err: detail }, 'malformed events from the app: closing 1011');
      return { close: { code: CloseCode.internal, reason: 'upstream error' } };
    }
    return this.#answer(s, c, result, events);
  }

  /** The effects of an app's answer: its headers (meta, keep-alive) and its events. */
  #answer(s: SessionView, c: Connection, result: Extract<WebhookResult, { answered: true }>, events: readonly WohEvent[]): Effects {
    c.meta = applySetMeta(c.meta, result.headers);
    const interval = parseKeepAliveInterval(header(result.headers['keep-alive-interval']));
    if (interval !== undefined) this.#keepAlive(s, c, interval);
    const effects: Effects = {};
    const send: Payload[] = [];
    for (const e of events) {
      if (e.type === 'TEXT' || e.type === 'BINARY') {
        const routed = routeAppMessage(e.type, e.content ?? Buffer.alloc(0), c.grip);
        if (routed.kind === 'message') {
          send.push(routed.type === 'TEXT' ? { kind: 'text', text: routed.data.toString('utf8') } : { kind: 'binary', data: routed.data });
        } else if (routed.kind === 'control') {
          if (routed.control.ok) this.#control(s, c, routed.control.value, effects);
          else this.#host.log.debug({ connection: s.id, err: routed.control.error }, 'malformed GRIP control message skipped');
        } else {
          this.#host.log.debug({ connection: s.id }, 'unprefixed message dropped (GRIP is on)');
        }
      } else if (e.type === 'CLOSE') {
        const { code, reason } = parseClose(e.content);
        effects.close = { code, reason };
        c.closed = true;
        break;
      } else if (e.type === 'DISCONNECT') {
        effects.drop = true;
        c.closed = true;
        break;
      }
      // PING and PONG from the app: heartbeats stay at the edge, so there is nothing to do.
    }
    if (send.length > 0) effects.send = send;
    if (c.closed) this.#stopTimers(c);
    return effects;
  }

  #control(s: SessionView, c: Connection, control: GripControl, effects: Effects): void {
    switch (control.type) {
      case 'subscribe':
        (effects.channels ??= []).push(control.channel);
        return;
      case 'unsubscribe':
        (effects.unsubscribe ??= []).push(control.channel);
        return;
      case 'detach':
        c.detached = true;
        return;
      case 'set-meta':
        // Meta for publish filters, which Switchboard does not have: nothing to apply.
        return;
      case 'keep-alive':
        this.#clientKeepAlive(s, c, control);
        return;
      case 'unsupported':
        this.#host.log.debug({ connection: s.id, control: control.name }, 'GRIP control message not supported: skipped');
    }
  }

  /** Keep-Alive-Interval: an empty request every n seconds lets the app answer with events. */
  #keepAlive(s: SessionView, c: Connection, seconds: number | null): void {
    c.keepAlive?.();
    c.keepAlive = null;
    c.keepAliveSec = seconds;
    if (seconds === null) return;
    c.keepAlive = every(this.#clock, seconds * 1000, () => {
      if (c.closed) return;
      void this.#serial(c, async () => {
        const effects = this.#settle(s, c, await this.#post(s, c, [], true));
        if (effects) this.#host.apply(s.id, effects);
      });
    });
  }

  /** GRIP keep-alive: a message to the client every `timeout` seconds. */
  #clientKeepAlive(s: SessionView, c: Connection, control: Extract<GripControl, { type: 'keep-alive' }>): void {
    c.clientKeepAlive?.();
    c.clientKeepAlive = null;
    const message = control.message;
    if (message === null) return;
    // Pings and pongs are the edge heartbeat's job; text and binary keep-alives are sent as asked.
    if (message.type === 'ping' || message.type === 'pong') return;
    const payload: Payload = message.type === 'text' ? { kind: 'text', text: message.content.toString('utf8') } : { kind: 'binary', data: message.content };
    c.clientKeepAlive = every(this.#clock, (control.timeout || DEFAULT_KEEP_ALIVE_TIMEOUT) * 1000, () => this.#host.apply(s.id, { send: [payload] }));
  }

  #stopTimers(c: Connection): void {
    c.keepAlive?.();
    c.clientKeepAlive?.();
    c.keepAlive = null;
    c.clientKeepAlive = null;
  }
}

function toEvent(p: Payload): WohEvent {
  if (p.kind === 'binary') return { type: 'BINARY', content: p.data };
  return { type: 'TEXT', content: Buffer.from(p.kind === 'text' ? p.text : p.json, 'utf8') };
}

function header(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}
