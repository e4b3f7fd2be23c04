// Messages from the app to one client: written at once while its link has room, held in
// the outbox otherwise and written in order as room comes back. Reliable mode numbers them,
// keeps them until acked, and writes a gap frame before a jump over lost ones.
import type { ClientLink, PartHost } from './link.js';
import { Outbox, type DropReason, type Entry } from './outbox.js';
import type { Push } from './push.js';
import { fromWireMessage, toWireMessage, type HeldMessage } from './snapshot.js';

export type SendResult = 'delivered' | 'queued' | 'dropped';

export class Outbound {
  readonly #host: PartHost;
  /** Created on first need: a raw client whose pushes all go out at once never has one. */
  #outbox: Outbox | null = null;
  /** Highest seq written to the current link: a larger jump means a gap frame first. */
  #lastWritten = 0;
  #waitingDrain = false;
  #messagesOut = 0;

  constructor(host: PartHost) {
    this.#host = host;
  }

  #box(): Outbox {
    const host = this.#host;
    return (this.#outbox ??= new Outbox(host.config.session.outbox, (reason: DropReason, entry: Entry) => {
      host.metrics.droppedMessagesTotal.inc({ reason });
      host.log.debug({ reason, seq: entry.seq }, 'message dropped');
    }));
  }

  get messages(): number {
    return this.#outbox?.messages ?? 0;
  }

  get bytes(): number {
    return this.#outbox?.bytes ?? 0;
  }

  /** The highest seq written to the current (or last) link. */
  get lastWritten(): number {
    return this.#lastWritten;
  }

  get messagesOut(): number {
    return this.#messagesOut;
  }

  /** Sends a push now when the link has room, else holds it; 'overflow': the outbox is full. */
  send(push: Push): SendResult | 'overflow' {
    const host = this.#host;
    const link = host.link();
    const reliable = host.mode === 'reliable';
    if (link && (this.#outbox?.unsent ?? 0) === 0 && link.bufferedAmount <= host.config.session.outbox.highWaterBytes) {
      if (push.expiresAt <= host.clock.now()) {
        host.metrics.droppedMessagesTotal.inc({ reason: 'ttl' });
        if (reliable) this.#box().sentDirectly(push, false);
        return 'dropped';
      }
      if (reliable) this.#write(link, this.#box().sentDirectly(push, true));
      else this.#writeRaw(link, push);
      return 'delivered';
    }
    const outbox = this.#box();
    const queued = outbox.enqueue(push);
    switch (queued.result) {
      case 'overflow':
        host.metrics.droppedMessagesTotal.inc({ reason: 'overflow' });
        return 'overflow';
      case 'dropped':
        return 'dropped';
      default:
        host.metrics.outboxMessages.observe(outbox.messages);
        if (link) this.#waitForDrain(link);
        return 'queued';
    }
  }

  /** What it holds, for a move to another process. */
  held(now: number): { nextSeq: number; sent: number; messages: HeldMessage[]; messagesOut: number } {
    const outbox = this.#outbox;
    if (!outbox) return { nextSeq: 1, sent: 0, messages: [], messagesOut: this.#messagesOut };
    const { entries, sent } = outbox.held();
    return { nextSeq: outbox.nextSeq, sent, messages: entries.map((e) => ({ seq: e.seq, ...toWireMessage(e.push, now) })), messagesOut: this.#messagesOut };
  }

  /** Takes over what the session's outbound held in another process. */
  restore(held: { nextSeq: number; sent: number; messages: readonly HeldMessage[]; messagesOut: number }, now: number): void {
    this.#box().restore(held.messages.map((m) => ({ seq: m.seq, push: fromWireMessage(m, now) })), held.sent, held.nextSeq);
    this.#messagesOut = held.messagesOut;
  }

  /** A resume from `lastSeq`: what is held after it is written again, what is gone is counted. */
  rewind(lastSeq: number): { lastSeq: number; replayed: number; lost: number } {
    const outbox = this.#box();
    const assigned = outbox.nextSeq - 1;
    const from = Math.min(Math.max(0, lastSeq), assigned);
    outbox.rewind(from);
    this.#lastWritten = from;
    const replayed = outbox.messages;
    return { lastSeq: from, replayed, lost: assigned - from - replayed };
  }

  ack(seq: number): void {
    this.#outbox?.ack(seq);
  }

  /** The link went: no drain to wait for. */
  unlinked(): void {
    this.#waitingDrain = false;
  }

  /** Forgets everything held; returns how many messages were never delivered. */
  clear(): number {
    return this.#outbox?.clear() ?? 0;
  }

  /** Writes queued messages while the link stays under the high-water mark. */
  flush(): void {
    const host = this.#host;
    const link = host.link();
    const outbox = this.#outbox;
    if (!link || !outbox) return;
    const highWater = host.config.session.outbox.highWaterBytes;
    const retain = host.mode === 'reliable';
    const now = host.clock.now();
    // Corked: what goes out in one flush leaves in one write, not one syscall per frame.
    link.cork();
    try {
      while (link.bufferedAmount <= highWater) {
        if (!outbox.peek(now)) return;
        const entry = outbox.markSent(retain);
        if (retain) this.#write(link, entry);
        else this.#writeRaw(link, entry.push);
      }
    } finally {
      link.uncork();
    }
    this.#waitForDrain(link);
  }

  #writeRaw(link: ClientLink, push: Push): void {
    link.send(push.raw, push.isBinary);
    this.#countOut(push);
  }

  #write(link: ClientLink, entry: Entry): void {
    if (entry.seq > this.#lastWritten + 1) {
      link.send(link.wire.frame({ type: 'gap', from: this.#lastWritten + 1, to: entry.seq - 1 }));
    }
    this.#lastWritten = entry.seq;
    link.send(link.wire.message(entry.seq, entry.push));
    this.#countOut(entry.push);
  }

  #countOut(push: Push): void {
    this.#messagesOut++;
    const m = this.#host.metrics;
    m.frames.out[this.#host.mode].inc();
    m.bytes.out.inc(push.bytes);
  }

  #waitForDrain(link: ClientLink): void {
    if (this.#waitingDrain) return;
    this.#waitingDrain = true;
    link.whenDrained(() => {
      this.#waitingDrain = false;
      this.flush();
    });
  }
}
