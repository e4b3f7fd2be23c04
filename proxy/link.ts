// A session's connection to its client, whatever carries it. The session speaks only to
// this: the WebSocket adapter (proxy/ws-link.ts), the Server-Sent Events one (proxy/sse-link.ts)
// and the long-polling one (proxy/poll-link.ts) implement it, and the session does not know which.
import type { Logger } from 'pino';
import type { Clock } from './clock.js';
import type { Config } from './config.js';
import type { Metrics } from './metrics.js';
import type { Mode } from './payload.js';
import { encodeServerFrame, type ServerFrame } from './frame.js';
import type { Push } from './push.js';

/** How a reliable session's frames are spelled on a link: JSON frames on a WebSocket, events on SSE. */
export interface Wire {
  message(seq: number, push: Push): string;
  frame(f: ServerFrame): string;
}

/** Reliable mode's JSON text frames (docs/usage.md, "Reliable mode"). */
export const jsonWire: Wire = {
  message: (seq, push) => push.reliableFrame(seq),
  frame: encodeServerFrame,
};

/** What a link tells the session that listens to it. */
export interface LinkListener {
  /** A frame from the client. */
  onFrame(data: Buffer, isBinary: boolean): void;
  /** The client answered a ping. */
  onPong(): void;
  /** The client sent something the transport refuses; the link is closing with `code`. */
  onRefused(link: ClientLink, code: number, reason: string): void;
  /** The link is gone: the close code sent or received (1006 when none was). */
  onClosed(link: ClientLink, code: number, reason: string): void;
}

export interface ClientLink {
  /** What carries it, as metrics and the status page name it (`websocket`, `sse`, `long-poll`). */
  readonly transport: string;
  /** How reliable-mode frames are written on it. */
  readonly wire: Wire;
  /** Bytes written to the client and not yet gone out. */
  readonly bufferedAmount: number;
  send(frame: string | Buffer, binary?: boolean): void;
  /** What is sent between cork and uncork leaves in one write. */
  cork(): void;
  uncork(): void;
  /** Calls `fn` once what is buffered has gone out (or the link closed). */
  whenDrained(fn: () => void): void;
  /** Stops reading from the client (backpressure), and starts again. */
  pause(): void;
  resume(): void;
  ping(): void;
  /** Asks the client to come back after `afterMs` (drain); its resume token stays valid. */
  askReconnect(afterMs: number): void;
  /** A clean close with a code; `terminate` cuts the link at once. */
  close(code: number, reason: string): void;
  terminate(): void;
  /** Routes the link's events to `listener`; null silences it (a link taken over). */
  listen(listener: LinkListener | null): void;
}

/** What the parts of a session (its outbound side, its reliable protocol) read of it: one object per session. */
export interface PartHost {
  readonly config: Readonly<Config>;
  readonly clock: Clock;
  readonly metrics: Metrics;
  readonly mode: Mode;
  readonly log: Logger;
  /** The link to write to now: null unless the session is open. */
  link(): ClientLink | null;
}
