// An outbound message, serialized once for all its recipients: the raw frame and the
// reliable-mode frame tail are built on first use and shared.
import type { Payload } from './payload.js';

export type MessageClass = 'durable' | 'lossy';

/** The reliable frame a push is: an app's `message`, or a `presence` event (its payload the event's JSON object). */
export type PushType = 'message' | 'presence';

export interface PushOptions {
  readonly class?: MessageClass;
  readonly coalesceKey?: string | null;
  /** Absolute expiry (ms since epoch); Infinity when the push has no TTL. */
  readonly expiresAt?: number;
  readonly id?: string | null;
  readonly type?: PushType;
}

export class Push {
  readonly payload: Payload;
  readonly class: MessageClass;
  readonly coalesceKey: string | null;
  readonly expiresAt: number;
  readonly bytes: number;
  readonly type: PushType;
  /**
   * Unique in the cluster, given where the push entered (`PushIds`); null in a single process.
   * A session moving between nodes can receive one push twice, by both: the id tells them apart.
   */
  id: string | null;
  #reliableTail: string | null = null;
  #raw: Buffer | null = null;

  constructor(payload: Payload, options: PushOptions = {}) {
    this.payload = payload;
    this.class = options.class ?? 'durable';
    this.coalesceKey = options.coalesceKey ?? null;
    this.expiresAt = options.expiresAt ?? Infinity;
    this.bytes = payloadBytes(payload);
    this.id = options.id ?? null;
    this.type = options.type ?? 'message';
    if (this.type === 'presence' && (payload.kind !== 'json' || !payload.json.startsWith('{'))) throw new TypeError('a presence push carries a JSON object');
  }

  /** What a raw-mode client receives (a text frame unless `isBinary`), encoded once for all. */
  get raw(): Buffer {
    const p = this.payload;
    return (this.#raw ??= p.kind === 'binary' ? p.data
      : Buffer.from(p.kind === 'text' ? p.text : this.type === 'presence' ? `{"type":"presence",${p.json.slice(1)}` : p.json));
  }

  get isBinary(): boolean {
    return this.payload.kind === 'binary';
  }

  /** The reliable-mode frame for one recipient; only the seq differs between them. */
  reliableFrame(seq: number): string {
    if (this.type === 'presence') {
      // The event's fields after the seq: `{"type":"presence","seq":n,"event":…}`.
      this.#reliableTail ??= `,${(this.payload as { json: string }).json.slice(1)}`;
      return `{"type":"presence","seq":${seq}${this.#reliableTail}`;
    }
    if (this.#reliableTail === null) {
      const p = this.payload;
      this.#reliableTail =
        p.kind === 'binary' ? `,"binary":"${p.data.toString('base64')}"}`
        : p.kind === 'text' ? `,"data":${JSON.stringify(p.text)}}`
        : `,"data":${p.json}}`;
    }
    return `{"type":"message","seq":${seq}${this.#reliableTail}`;
  }
}

export function payloadBytes(p: Payload): number {
  return p.kind === 'binary' ? p.data.length : Buffer.byteLength(p.kind === 'text' ? p.text : p.json);
}

/** Gives pushes their cluster-wide ids: the node, a random part per process, a counter. */
export class PushIds {
  readonly #prefix: string;
  #counter = 0;

  constructor(nodeId: string, random: string) {
    this.#prefix = `${nodeId}.${random}.`;
  }

  stamp(push: Push): Push {
    push.id ??= this.#prefix + (++this.#counter).toString(36);
    return push;
  }
}
