// A session's bounded queue. In reliable mode it is also the replay buffer: messages
// stay after they are written until the client acks them, so a resume can replay them.
// Entries are in seq order; `#sent` counts the written-but-unacked ones at the front.
import type { Push } from './push.js';

export type DropReason = 'lossy' | 'overflow' | 'ttl' | 'unacked_evicted';

export interface OutboxLimits {
  readonly maxMessages: number;
  readonly maxBytes: number;
  readonly onOverflow: 'close' | 'drop-oldest';
}

export interface Entry {
  readonly seq: number;
  push: Push;
}

export type Enqueued =
  | { readonly result: 'queued'; readonly entry: Entry }
  | { readonly result: 'coalesced'; readonly entry: Entry }
  /** The push itself was dropped (a lossy push into a full outbox, or larger than the outbox). */
  | { readonly result: 'dropped' }
  /** Policy `close`: the outbox is full of durable messages; the session must close 4008. */
  | { readonly result: 'overflow' };

export class Outbox {
  readonly #limits: OutboxLimits;
  readonly #onDrop: (reason: DropReason, entry: Entry) => void;
  readonly #entries: Entry[] = [];
  #sent = 0;
  #bytes = 0;
  #nextSeq = 1;
  #byKey: Map<string, Entry> | null = null;

  constructor(limits: OutboxLimits, onDrop: (reason: DropReason, entry: Entry) => void) {
    this.#limits = limits;
    this.#onDrop = onDrop;
  }

  get messages(): number {
    return this.#entries.length;
  }

  get bytes(): number {
    return this.#bytes;
  }

  /** Messages not yet written to a socket. */
  get unsent(): number {
    return this.#entries.length - this.#sent;
  }

  /** The seq the next new message gets; everything below was assigned. */
  get nextSeq(): number {
    return this.#nextSeq;
  }

  /** What it holds, in seq order, and how many of those (from the first) were written: for a move. */
  held(): { readonly entries: readonly Entry[]; readonly sent: number } {
    return { entries: this.#entries, sent: this.#sent };
  }

  /**
   * Takes over what another process's outbox held for a session that moved here: entries in
   * seq order, all below `nextSeq`. They were within the sender's bounds; they are kept as they
   * are, and new messages make room under this outbox's bounds.
   */
  restore(entries: readonly Entry[], sent: number, nextSeq: number): void {
    this.clear();
    for (const entry of entries) {
      const copy: Entry = { seq: entry.seq, push: entry.push };
      this.#entries.push(copy);
      this.#bytes += copy.push.bytes;
    }
    this.#sent = sent;
    this.#nextSeq = nextSeq;
    // Only messages not yet written are replaced by a newer one with their key.
    for (const entry of this.#entries.slice(sent)) {
      const key = entry.push.coalesceKey;
      if (key !== null) (this.#byKey ??= new Map()).set(key, entry);
    }
  }

  /** Assigns a seq to a message written straight to the socket, keeping it for replay when `retain`. */
  sentDirectly(push: Push, retain: boolean): Entry {
    const entry: Entry = { seq: this.#nextSeq++, push };
    if (retain) {
      this.#makeRoomWritten(push);
      this.#entries.splice(this.#sent, 0, entry);
      this.#sent++;
      this.#bytes += push.bytes;
    }
    return entry;
  }

  enqueue(push: Push): Enqueued {
    const key = push.coalesceKey;
    const prior = key === null ? undefined : this.#byKey?.get(key);
    if (push.bytes > this.#limits.maxBytes) return this.#refuse(push);
    if (prior) {
      // In place, keeping its seq; the bound still holds for the new size.
      if (!this.#makeRoom(0, push.bytes - prior.push.bytes, push, prior)) return this.#refuse(push);
      this.#bytes += push.bytes - prior.push.bytes;
      prior.push = push;
      return { result: 'coalesced', entry: prior };
    }
    if (!this.#makeRoom(1, push.bytes, push, null)) return this.#refuse(push);
    const entry: Entry = { seq: this.#nextSeq++, push };
    this.#entries.push(entry);
    this.#bytes += push.bytes;
    if (key !== null) (this.#byKey ??= new Map()).set(key, entry);
    return { result: 'queued', entry };
  }

  /** The next message to write, skipping (and dropping) expired ones. */
  peek(now: number): Entry | undefined {
    while (this.#sent < this.#entries.length) {
      const entry = this.#entries[this.#sent];
      if (entry.push.expiresAt > now) return entry;
      this.#remove(this.#sent, 'ttl');
    }
    return undefined;
  }

  /** Marks the message returned by `peek` as written; without `retain` it leaves the outbox. */
  markSent(retain: boolean): Entry {
    const entry = this.#entries[this.#sent];
    this.#forgetKey(entry);
    if (retain) this.#sent++;
    else this.#removeAt(this.#sent);
    return entry;
  }

  /** Cumulative ack: everything up to `seq` arrived and leaves the outbox. */
  ack(seq: number): number {
    let n = 0;
    while (n < this.#sent && this.#entries[n].seq <= seq) n++;
    if (n === 0) return 0;
    for (let i = 0; i < n; i++) this.#bytes -= this.#entries[i].push.bytes;
    this.#entries.splice(0, n);
    this.#sent -= n;
    return n;
  }

  /** After a resume from `lastSeq`: drop what the client has, and write the rest again. */
  rewind(lastSeq: number): void {
    this.ack(lastSeq);
    this.#sent = 0;
  }

  /** Everything held, for an orderly end (counted as undelivered). */
  clear(): number {
    const n = this.#entries.length;
    this.#entries.length = 0;
    this.#sent = 0;
    this.#bytes = 0;
    this.#byKey = null;
    return n;
  }

  #refuse(push: Push): Enqueued {
    if (this.#limits.onOverflow === 'close' && push.class === 'durable') return { result: 'overflow' };
    this.#onDrop(push.class === 'lossy' ? 'lossy' : 'overflow', { seq: this.#nextSeq++, push });
    return { result: 'dropped' };
  }

  /**
   * Frees room for `count` more messages and `bytes` more bytes: first written-but-unacked
   * messages, then queued lossy ones, then (policy `drop-oldest`, durable pushes) the oldest
   * queued. Evicts nothing when even all of that would not make room. `keep` is never evicted.
   */
  #makeRoom(count: number, bytes: number, push: Push, keep: Entry | null): boolean {
    const { maxMessages, maxBytes, onOverflow } = this.#limits;
    const fits = () => this.#entries.length + count <= maxMessages && this.#bytes + bytes <= maxBytes;
    if (fits()) return true;
    const oldest = push.class === 'durable' && onOverflow === 'drop-oldest';
    let freeCount = 0;
    let freeBytes = 0;
    this.#entries.forEach((e, i) => {
      if (e !== keep && (i < this.#sent || e.push.class === 'lossy' || oldest)) {
        freeCount++;
        freeBytes += e.push.bytes;
      }
    });
    if (this.#entries.length - freeCount + count > maxMessages || this.#bytes - freeBytes + bytes > maxBytes) return false;
    while (!fits()) {
      if (this.#sent > 0 && this.#entries[0] !== keep) {
        this.#remove(0, 'unacked_evicted');
        continue;
      }
      const lossy = this.#entries.findIndex((e, i) => i >= this.#sent && e !== keep && e.push.class === 'lossy');
      if (lossy >= 0) {
        this.#remove(lossy, 'lossy');
        continue;
      }
      this.#remove(this.#entries.findIndex((e, i) => i >= this.#sent && e !== keep), 'overflow');
    }
    return true;
  }

  /** Room for a message already written to the socket: only unacked ones make way for it. */
  #makeRoomWritten(push: Push): void {
    const { maxMessages, maxBytes } = this.#limits;
    while (this.#sent > 0 && (this.#entries.length + 1 > maxMessages || this.#bytes + push.bytes > maxBytes)) {
      this.#remove(0, 'unacked_evicted');
    }
  }

  #remove(index: number, reason: DropReason): void {
    const entry = this.#entries[index];
    this.#forgetKey(entry);
    this.#removeAt(index);
    this.#onDrop(reason, entry);
  }

  #removeAt(index: number): void {
    const [entry] = this.#entries.splice(index, 1);
    this.#bytes -= entry.push.bytes;
    if (index < this.#sent) this.#sent--;
  }

  #forgetKey(entry: Entry): void {
    const key = entry.push.coalesceKey;
    if (key !== null && this.#byKey?.get(key) === entry) this.#byKey.delete(key);
  }
}
