// Sends webhooks over one keep-alive undici Pool: timeout per attempt, classified
// retries with backoff, Standard Webhooks signing, metrics. Shared by every dialect.
import type { IncomingHttpHeaders } from 'node:http';
import { Pool, type Dispatcher } from 'undici';
import type { Logger } from 'pino';
import type { Clock } from '../../proxy/clock.js';
import { sleep } from '../../proxy/clock.js';
import type { Metrics } from '../../proxy/metrics.js';
import { userAgent } from '../../proxy/version.js';
import { classifyError, delayBefore, isRetryableStatus, mayRetry, parseRetryAfter, type Attempt } from './retry.js';
import { decodeSecret, signatureHeaders } from './signing.js';

export interface SenderOptions {
  readonly url: string;
  readonly timeoutMs: number;
  readonly connections: number;
  readonly retry: { readonly maxAttempts: number; readonly baseMs: number; readonly capMs: number };
  readonly secret: string | readonly string[] | null;
  /** Larger answers are not read; the attempt counts as failed. */
  readonly maxResponseBytes: number;
}

export interface WebhookRequest {
  /** Metric label and `X-Switchboard-Event`. */
  readonly event: string;
  readonly path: string;
  readonly headers: Record<string, string>;
  readonly body: Buffer | string;
  /** Stable across retries (`webhook-id`). */
  readonly id: string;
  /** '' for events of no one connection (presence): no `X-Switchboard-Connection` then. */
  readonly connection: string;
  /** May an attempt that possibly reached the app be retried? */
  readonly idempotent: boolean;
  /** Attempts at most (defaults to the configured retry.maxAttempts). */
  readonly maxAttempts?: number;
}

export type WebhookResult =
  | { readonly answered: true; readonly status: number; readonly headers: Record<string, string | string[] | undefined>; readonly body: Buffer }
  | { readonly answered: false; readonly last: Attempt; readonly attempts: number };

export class WebhookSender {
  readonly #options: SenderOptions;
  readonly #pool: Pool;
  readonly #keys: Buffer[];
  readonly #basePath: string;
  readonly #metrics: Metrics;
  readonly #log: Logger;
  readonly #clock: Clock;
  readonly #inFlight = new Set<Promise<unknown>>();
  /** Set by destroy(): nothing is retried after it (in-flight requests die with the pool). */
  #destroyed = false;
  /** Histogram children by event and status, made once each. */
  readonly #durations = new Map<string, { observe(value: number): void }>();
  #closed = false;

  constructor(options: SenderOptions, deps: { metrics: Metrics; log: Logger; clock: Clock }) {
    this.#options = options;
    const url = new URL(options.url);
    this.#basePath = url.pathname.replace(/\/$/, '');
    this.#pool = new Pool(url.origin, { connections: options.connections, keepAliveTimeout: 30_000, pipelining: 1 });
    const secrets = options.secret === null ? [] : typeof options.secret === 'string' ? [options.secret] : options.secret;
    this.#keys = secrets.map(decodeSecret);
    this.#metrics = deps.metrics;
    this.#log = deps.log;
    this.#clock = deps.clock;
  }

  /** The path of a webhook under `app.url`. */
  path(path: string): string {
    return this.#basePath + path;
  }

  send(request: WebhookRequest): Promise<WebhookResult> {
    const work = this.#send(request);
    this.#inFlight.add(work);
    void work.finally(() => this.#inFlight.delete(work));
    return work;
  }

  async #send(request: WebhookRequest): Promise<WebhookResult> {
    const maxAttempts = request.maxAttempts ?? this.#options.retry.maxAttempts;
    let attempts = 0;
    for (;;) {
      attempts++;
      const result = await this.#attempt(request);
      const attempt: Attempt = result.answered
        ? { kind: 'answered', status: result.status, retryAfterMs: parseRetryAfter(result.headers['retry-after'], this.#clock.now()) }
        : result.last;
      const retry = attempts < maxAttempts && !this.#closedForRetry() && mayRetry(attempt, { idempotent: request.idempotent });
      if (!retry) {
        if (!result.answered || isRetryableStatus(result.status)) {
          this.#metrics.webhookFailuresTotal.inc({ event: request.event });
          if (attempt.kind === 'too-large') this.#metrics.webhookAnswersTooLargeTotal.inc({ event: request.event });
          this.#log.warn(
            { connection: request.connection, event: request.event, attempts, failure: result.answered ? result.status : attempt.kind === 'answered' ? attempt.status : attempt.code },
            'webhook failed for good',
          );
        }
        return result.answered ? result : { answered: false, last: attempt, attempts };
      }
      const wait = delayBefore(attempts, attempt, this.#options.retry);
      this.#log.debug({ connection: request.connection, event: request.event, attempts, wait }, 'webhook retry');
      await sleep(wait, this.#clock);
    }
  }

  /** After `destroy()`, nothing is retried. */
  #closedForRetry(): boolean {
    return this.#destroyed;
  }

  async #attempt(request: WebhookRequest): Promise<WebhookResult> {
    const started = performance.now();
    // The sidecar's own headers are set last: nothing a client forwarded can stand in for them.
    const headers: Record<string, string> = {
      ...request.headers,
      'user-agent': userAgent,
      'x-switchboard-event': request.event,
    };
    if (request.connection !== '') headers['x-switchboard-connection'] = request.connection;
    if (this.#keys.length > 0) Object.assign(headers, signatureHeaders(this.#keys, request.id, this.#clock.now(), request.body));
    // undici's own timeouts (no AbortSignal per request: they cost more than the request on this path).
    const timeout = this.#options.timeoutMs;
    try {
      const res = await exchange(this.#pool, {
        method: 'POST', path: this.path(request.path), headers, body: request.body, headersTimeout: timeout, bodyTimeout: timeout,
      }, this.#options.maxResponseBytes, timeout);
      this.#observe(request.event, String(res.status), started);
      return { answered: true, status: res.status, headers: res.headers, body: res.body };
    } catch (err) {
      const attempt = classifyError(err);
      this.#observe(request.event, attempt.kind === 'not-reached' ? 'unreachable' : 'error', started);
      return { answered: false, last: attempt, attempts: 1 };
    }
  }

  #observe(event: string, status: string, started: number): void {
    const key = `${event} ${status}`;
    let child = this.#durations.get(key);
    if (!child) this.#durations.set(key, (child = this.#metrics.webhookDuration.labels(event, status)));
    child.observe((performance.now() - started) / 1000);
  }

  /** Waits for every webhook in flight (retries included), then closes the pool. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    while (this.#inFlight.size > 0) await Promise.allSettled([...this.#inFlight]);
    await this.#pool.close();
  }

  /** Aborts what is in flight. */
  destroy(): void {
    this.#destroyed = true;
    void this.#pool.destroy().catch(() => {});
  }
}

interface Exchange {
  readonly status: number;
  readonly headers: IncomingHttpHeaders;
  readonly body: Buffer;
}

/**
 * One request and its whole answer, up to `max` bytes, straight from undici's dispatcher:
 * webhook answers are small and read at once, so no response stream is built for them.
 */
function exchange(pool: Dispatcher, options: Dispatcher.DispatchOptions, max: number, timeoutMs: number): Promise<Exchange> {
  return new Promise((resolve, reject) => {
    let status = 0;
    let headers: IncomingHttpHeaders = {};
    let chunks: Buffer[] = [];
    let size = 0;
    let settled = false;
    let controller: { abort(reason: Error): void } | null = null;
    // undici's own timers tick about once a second; this one holds the configured bound to the millisecond.
    const timedOut = Object.assign(new Error(`no answer within ${timeoutMs} ms`), { code: 'WEBHOOK_TIMEOUT' });
    const timer = setTimeout(() => {
      if (settled) return;
      settled = true;
      chunks = [];
      controller?.abort(timedOut);
      reject(timedOut);
    }, timeoutMs);
    pool.dispatch(options, {
      // Its presence tells undici this handler speaks the controller API.
      onRequestStart(c) {
        controller = c;
        if (settled) c.abort(timedOut);
      },
      onResponseStart(_controller, statusCode, responseHeaders) {
        // A 1xx is followed by the real answer.
        if (statusCode < 200) return;
        status = statusCode;
        headers = responseHeaders;
      },
      onResponseData(controller, chunk) {
        if (status === 0) return;
        size += chunk.length;
        if (size > max) {
          controller.abort(Object.assign(new Error(`answer larger than ${max} bytes`), { code: 'ANSWER_TOO_LARGE' }));
          return;
        }
        chunks.push(chunk);
      },
      onResponseEnd() {
        clearTimeout(timer);
        if (settled) return;
        settled = true;
        resolve({ status, headers, body: chunks.length === 1 ? chunks[0] : Buffer.concat(chunks) });
        chunks = [];
      },
      onResponseError(_controller, err) {
        clearTimeout(timer);
        if (settled) return;
        settled = true;
        reject(err);
      },
    });
  });
}
