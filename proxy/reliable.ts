// The reliable-mode protocol of one session, client side in: each text frame becomes an
// action (a message to the app, an ack, a ping, a subscription), and every answer (pong, ack,
// nack, error) counts against the client's bound like messages do, so a client that does not
// read is closed (4008) before what waits for it passes `session.outbox.maxBytes`.
import { CloseCode, FrameError, type FrameErrorCode } from './errors.js';
import { parseClientFrame, type ServerFrame } from './frame.js';
import type { PartHost } from './link.js';
import type { Payload } from './payload.js';
import type { DeliveryOutcome, InboundMessage } from './upstream.js';

/** What the protocol does to its session. */
export interface ReliableActions {
  /** A client message, on its way to the app. */
  receive(payload: Payload, id: string | undefined, bytes: number): void;
  ack(seq: number): void;
  /** Asks the upstream whether the session may join (the subscribe webhook). */
  mayJoin(channel: string): Promise<DeliveryOutcome>;
  join(channel: string): void;
  leave(channel: string): boolean;
  close(code: number, reason: string): void;
}

export class ReliableProtocol {
  readonly #host: PartHost;
  readonly #act: ReliableActions;
  #frameErrors = 0;

  constructor(host: PartHost, actions: ReliableActions) {
    this.#host = host;
    this.#act = actions;
  }

  frame(data: Buffer, isBinary: boolean): void {
    if (isBinary) return this.#frameError('binary_frame');
    const f = parseClientFrame(data.toString('utf8'));
    switch (f.type) {
      case 'fault':
        return this.#frameError(f.error, f.message);
      case 'message':
        return this.#act.receive({ kind: 'json', json: f.json }, f.id, data.length);
      case 'ack':
        return this.#act.ack(f.seq);
      case 'ping':
        return this.reply({ type: 'pong' });
      case 'unsubscribe':
        this.#act.leave(f.channel);
        if (f.id !== undefined) this.reply({ type: 'ack', id: f.id });
        return;
      case 'subscribe':
        void this.#subscribe(f.channel, f.id);
    }
  }

  /** Writes an answer that is not a message, within the client's bound. */
  reply(f: ServerFrame): void {
    const host = this.#host;
    const link = host.link();
    if (!link) return;
    const frame = link.wire.frame(f);
    if (link.bufferedAmount + frame.length > host.config.session.outbox.maxBytes) {
      host.metrics.droppedMessagesTotal.inc({ reason: 'overflow' });
      host.log.warn({ buffered: link.bufferedAmount }, 'client does not read its answers: closing slow consumer');
      this.#act.close(CloseCode.slowConsumer, 'slow consumer');
      return;
    }
    link.send(frame);
  }

  /** Acks or nacks every message of a delivered batch that carried an id. */
  settled(batch: readonly InboundMessage[], outcome: DeliveryOutcome): void {
    for (const m of batch) {
      if (m.id === undefined) continue;
      this.reply(outcome.ok ? { type: 'ack', id: m.id } : { type: 'nack', id: m.id, error: outcome.error, retryable: outcome.retryable });
    }
  }

  async #subscribe(channel: string, id: string | undefined): Promise<void> {
    const outcome = await this.#act.mayJoin(channel);
    if (outcome.ok) {
      this.#act.join(channel);
      if (id !== undefined) this.reply({ type: 'ack', id });
      return;
    }
    if (id !== undefined) this.reply({ type: 'nack', id, error: outcome.error, retryable: outcome.retryable });
    else this.reply({ type: 'error', error: outcome.error, message: outcome.message });
  }

  #frameError(code: FrameErrorCode, detail?: string): void {
    const host = this.#host;
    host.metrics.frameErrorsTotal.inc({ error: code });
    this.reply({ type: 'error', error: code, message: detail ?? FrameError[code] });
    if (++this.#frameErrors >= host.config.limits.maxFrameErrors) {
      host.log.warn({ errors: this.#frameErrors }, 'too many malformed frames: closing');
      this.#act.close(CloseCode.policy, 'too many malformed frames');
    }
  }
}
