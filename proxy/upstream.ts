// The contract between sessions and whatever carries client events to the app.
// Every upstream transport (webhook, amqp) and every webhook dialect (native,
// websocket-over-http) implements `Upstream`, and passes test/upstream-conformance.test.ts.
import type { Logger } from 'pino';
import type { Mode, Payload } from './payload.js';
import type { NackCodeName } from './errors.js';
import type { PresenceEvent } from './presence.js';

/** What an upstream may read of a session. */
export interface SessionView {
  readonly id: string;
  readonly mode: Mode;
  readonly path: string;
  /** The request target as the client sent it (path and query). */
  readonly url: string;
  readonly query: Readonly<Record<string, string>>;
  readonly remoteAddress: string;
  readonly subprotocol: string | null;
  /** Handshake headers captured at connect (only `webhooks.forwardHeaders`). */
  readonly headers: Readonly<Record<string, string>>;
  readonly user: string | null;
  readonly meta: Readonly<Record<string, string>>;
  readonly connectedAt: number;
}

export interface InboundMessage {
  /** Per-connection counter of client messages, from 1. */
  readonly seq: number;
  readonly payload: Payload;
  /** Reliable-mode client id: the message is acked or nacked. */
  readonly id?: string;
}

/** What the app asked for in its answer; sessions apply it. */
export interface Effects {
  user?: string;
  channels?: string[];
  unsubscribe?: string[];
  meta?: Record<string, string>;
  send?: Payload[];
  close?: { code: number; reason?: string };
  /** Drop the client's socket without a close frame (WebSocket-over-HTTP DISCONNECT). */
  drop?: boolean;
}

export type ConnectOutcome =
  | { ok: true; effects: Effects; /** Extra headers for the 101 response. */ headers?: Record<string, string> }
  | { ok: false; status: number; headers?: Record<string, string>; body?: Buffer | string };

export type DeliveryOutcome =
  | { ok: true; effects?: Effects }
  | { ok: false; error: NackCodeName; message: string; retryable: boolean };

export interface DisconnectInfo {
  readonly code: number;
  readonly reason: string;
  readonly durationMs: number;
  readonly messagesIn: number;
  readonly messagesOut: number;
  readonly undelivered: number;
  /** True when the client sent a close frame itself. */
  readonly clientClosed: boolean;
}

export interface ResumeInfo {
  readonly gapMs: number;
  readonly replayed: number;
  readonly lost: number;
}

/** What the sidecar offers an upstream. */
export interface UpstreamHost {
  readonly log: Logger;
  /** Apply effects to a live session later (keep-alive answers, async replies). */
  apply(connection: string, effects: Effects): void;
}

export interface Upstream {
  readonly name: string;
  /** How many queued client messages one `message` call may carry (1 = one at a time). */
  readonly maxBatch: number;
  start(): Promise<void>;
  /** Resolves once every event in flight has been delivered or has failed for good. */
  close(): Promise<void>;
  /** Aborts what is in flight. */
  destroy(): void;
  /** True while the upstream can take events (a broker connection is up). */
  ready(): boolean;
  /** The handshake headers to keep for this session; by default those in `webhooks.forwardHeaders`. */
  headersOf?(raw: import('node:http').IncomingHttpHeaders): Record<string, string>;
  connect(session: SessionView): Promise<ConnectOutcome>;
  /** Delivers client messages of one session, in order; never called twice at once per session. */
  message(session: SessionView, batch: readonly InboundMessage[]): Promise<DeliveryOutcome>;
  /** Whether the app lets the session join the channel. */
  subscribe(session: SessionView, channel: string): Promise<DeliveryOutcome>;
  resume(session: SessionView, info: ResumeInfo): Promise<void>;
  /** At least once per session: retried until it succeeds or retries are exhausted. */
  disconnect(session: SessionView, info: DisconnectInfo): Promise<void>;
  /**
   * A batch of presence events, at least once (the same batch on every attempt): true once the app
   * took it, false when it was given up. Absent: this upstream cannot carry them (startup refuses).
   * `signal`: abort once another process sends the events (no further attempt is made; false).
   */
  presence?(events: readonly PresenceEvent[], signal?: AbortSignal): Promise<boolean>;
}
