// Every error Switchboard reports has a code, a message, and what it maps to:
// an HTTP status on the control or public port, or a WebSocket close code.
import { MAX_JSON_DEPTH } from './limits.js';

/**
 * How the process ends (cli.ts). The errors behind them: ConfigError (config.ts, one line per
 * problem, each naming its path), PortInUseError (address.ts), PluginError (plugin.ts).
 */
export const ExitCode = {
  ok: 0,
  /** A port in use, a drain that failed, a second signal, a worker lost. */
  failed: 1,
  /** The command line or the configuration is wrong. */
  config: 2,
  /** A fault of Switchboard's own while starting (EX_SOFTWARE). */
  internal: 70,
} as const;

export const CloseCode = {
  normal: 1000,
  goingAway: 1001,
  protocolError: 1002,
  invalidPayload: 1007,
  policy: 1008,
  tooBig: 1009,
  internal: 1011,
  serviceRestart: 1012,
  tryAgainLater: 1013,
  appDefault: 4000,
  slowConsumer: 4008,
  takenOver: 4009,
} as const;

interface ErrorSpec {
  readonly status: number;
  readonly message: string;
}

const specs = {
  bad_request: { status: 400, message: 'bad request' },
  bad_json: { status: 400, message: 'body is not valid JSON' },
  too_deep: { status: 400, message: `body is nested deeper than ${MAX_JSON_DEPTH} levels` },
  bad_body: { status: 400, message: 'body does not have the expected shape' },
  bad_header: { status: 400, message: 'a header has an invalid value' },
  bad_query: { status: 400, message: 'a query parameter has an invalid value' },
  bad_close_code: { status: 400, message: 'close code must be an integer from 4000 to 4099' },
  unauthorized: { status: 401, message: 'missing or wrong bearer token' },
  not_found: { status: 404, message: 'no such route' },
  request_timeout: { status: 408, message: 'the request did not arrive whole in time (limits.handshakeTimeoutMs)' },
  headers_too_large: { status: 431, message: 'request headers are too large' },
  unknown_connection: { status: 404, message: 'no such connection' },
  method_not_allowed: { status: 405, message: 'method not allowed on this route' },
  bad_token: { status: 403, message: 'X-Switchboard-Token is missing, malformed, forged or expired: use the token of the welcome event' },
  not_streaming: { status: 409, message: 'the session has no open stream in this process: its client opens it again (GET with Last-Event-ID), then sends' },
  not_acceptable: { status: 406, message: 'a session stream is a GET with Accept: text/event-stream' },
  too_large: { status: 413, message: 'body is larger than limits.maxMessageBytes' },
  unsupported_type: { status: 415, message: 'content type must be application/json, text/* or application/octet-stream' },
  too_many_per_ip: { status: 429, message: 'too many connections from this address' },
  not_ready: { status: 503, message: 'not accepting connections' },
  too_many_connections: { status: 503, message: 'connection limit reached' },
  rate_limited: { status: 503, message: 'too many new connections, retry later' },
  app_unavailable: { status: 503, message: 'the app did not answer the connect webhook' },
  broker_unavailable: { status: 503, message: 'the event broker is unavailable' },
  cluster_unavailable: { status: 503, message: 'the cluster broker is not connected: other nodes were not reached' },
  metrics_unavailable: { status: 503, message: 'a worker did not answer for its metrics (one restarting, say): no partial numbers are served' },
  bad_gateway: { status: 502, message: 'the app could not be reached' },
  gateway_timeout: { status: 504, message: 'the app did not answer in time (proxy.timeoutMs)' },
  internal: { status: 500, message: 'internal error' },
} as const satisfies Record<string, ErrorSpec>;

export type ErrorCode = keyof typeof specs;

/** Every error code with the HTTP status it maps to (the OpenAPI document lists them by status). */
export const ErrorStatus: Readonly<Record<ErrorCode, number>> = Object.fromEntries(Object.entries(specs).map(([code, spec]) => [code, spec.status])) as Record<ErrorCode, number>;

export class SwitchboardError extends Error {
  readonly code: ErrorCode;
  readonly status: number;

  constructor(code: ErrorCode, message?: string, options?: { cause?: unknown }) {
    super(message ?? specs[code].message, options);
    this.name = 'SwitchboardError';
    this.code = code;
    this.status = specs[code].status;
  }

  toJSON(): { error: string; message: string } {
    return { error: this.code, message: this.message };
  }
}

/** Client-frame errors in reliable mode: answered with an `error` frame, the socket stays open. */
export const FrameError = {
  bad_json: 'frame is not a JSON object',
  too_deep: `frame is nested deeper than ${MAX_JSON_DEPTH} levels`,
  bad_type: 'unknown frame type',
  bad_field: 'a field has the wrong type',
  binary_frame: 'reliable mode takes text frames only',
  subscribe_denied: 'the app did not allow this subscription',
  subscribe_failed: 'the subscribe webhook failed',
} as const;

export type FrameErrorCode = keyof typeof FrameError;

/**
 * Why a reliable client's message or subscription was not taken: the `error` of its `nack`
 * frame (docs/usage.md lists them). `retryable` says whether sending it again may work.
 */
export const NackCode = {
  webhook_failed: 'the app did not take the message',
  rejected: 'the app refused the message (a 4xx answer other than 408 and 429)',
  answer_too_large: 'the app answered more than limits.maxMessageBytes',
  buffer_full: 'the event broker is unavailable and the event buffer is full',
  broker_nack: 'the broker refused the message',
  unroutable: 'no queue is bound to the exchange for message events',
  too_large: 'the message headers (handshake headers, meta) are too large for AMQP',
  shutting_down: 'Switchboard stopped before the broker confirmed',
  closed: 'the connection is closed',
  subscribe_denied: FrameError.subscribe_denied,
  subscribe_failed: FrameError.subscribe_failed,
  internal: 'internal error',
} as const;

export type NackCodeName = keyof typeof NackCode;

/** A failed delivery: the nack a reliable client gets (with its code's message unless given). */
export function nack(error: NackCodeName, retryable: boolean, message: string = NackCode[error]): { ok: false; error: NackCodeName; message: string; retryable: boolean } {
  return { ok: false, error, message, retryable };
}

const kStatusCode = 'status-code';

/**
 * The close code ws sends when its receiver rejects a frame: ws attaches it to the error
 * under a symbol of its own. Undefined for errors that are not the receiver's.
 */
export function wsCloseCode(err: Error): number | undefined {
  for (const key of Object.getOwnPropertySymbols(err)) {
    if (key.description !== kStatusCode) continue;
    const code = (err as unknown as Record<symbol, unknown>)[key];
    return typeof code === 'number' ? code : undefined;
  }
  return undefined;
}
