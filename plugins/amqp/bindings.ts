// The bindings of one process's cluster queue, changed as its registry changes (a first session
// of a user binds `user.<u>`, the last one unbinds it). The broker runs binding changes one at a
// time per channel, each a metadata-store write, and a resume storm is thousands of them: so they
// are spread over a few channels of their own, each key always on the same one (a key's bind and
// unbind stay in order), and a move waits only for its own keys, not for every change before it.
import type { Channel, ChannelModel } from 'amqplib';
import { BINDING_CHANNELS } from '../../proxy/limits.js';

export class Bindings {
  readonly #queue: string;
  readonly #exchange: string;
  #channels: Channel[] = [];
  /** The last change asked for each key whose answer has not come yet. */
  readonly #pending = new Map<string, Promise<void>>();

  constructor(queue: string, exchange: string) {
    this.#queue = queue;
    this.#exchange = exchange;
  }

  /** Opens the channels on a new connection; `watch` sees each (errors, closes). */
  async open(model: ChannelModel, watch: (ch: Channel) => void): Promise<void> {
    const channels: Channel[] = [];
    for (let i = 0; i < BINDING_CHANNELS; i++) {
      const ch = await model.createChannel();
      watch(ch);
      channels.push(ch);
    }
    this.#channels = channels;
  }

  /** The connection went: changes asked from now on wait for the next one, which binds the registry as it is then. */
  lost(): void {
    this.#channels = [];
    this.#pending.clear();
  }

  get up(): boolean {
    return this.#channels.length > 0;
  }

  /** Binds or unbinds `key`; resolves once the broker did it, rejects when it could not. */
  set(key: string, bound: boolean): Promise<void> {
    const channels = this.#channels;
    if (channels.length === 0) return Promise.reject(new Error('the cluster broker connection is down'));
    const ch = channels[shard(key, channels.length)]!;
    const op = bound ? ch.bindQueue(this.#queue, this.#exchange, key) : ch.unbindQueue(this.#queue, this.#exchange, key);
    const done = op.then(() => undefined);
    this.#pending.set(key, done);
    const settle = () => { if (this.#pending.get(key) === done) this.#pending.delete(key); };
    done.then(settle, settle);
    return done;
  }

  /**
   * Resolves once every change asked so far for these keys is done: a session registered here is
   * then reachable through each of them. Rejects when one failed (the connection went).
   */
  async settled(keys: readonly string[]): Promise<void> {
    if (this.#channels.length === 0) throw new Error('the cluster broker connection was lost during the move');
    const waits: Promise<void>[] = [];
    for (const key of keys) {
      const p = this.#pending.get(key);
      if (p) waits.push(p);
    }
    await Promise.all(waits);
  }
}

/** FNV-1a over the key's UTF-16 code units: a key always lands on the same channel. */
function shard(key: string, n: number): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) h = Math.imul(h ^ key.charCodeAt(i), 0x01000193);
  return (h >>> 0) % n;
}
