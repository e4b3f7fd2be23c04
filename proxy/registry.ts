// Finds sessions: by connection id, by user, by channel. Tells a watcher when a user or
// channel gains its first local session or loses its last, and when a session whose id names
// another process (it moved here) comes or goes: cluster bindings follow it.
import type { Session } from './session.js';
import { unreachable, type Target } from './target.js';

/** The indexes a session joins by name; `connection`: the guests, sessions whose id names another process. */
export type IndexKind = 'user' | 'channel' | 'connection';

/**
 * Why a connection left a channel: an unsubscribe or a change of user (`left`), its session ended
 * (`ended`), or the session lives on in another process: taken over there (`moved`) or parked in
 * the broker for one to claim (`parked`).
 */
export type Leave = 'left' | 'ended' | 'moved' | 'parked';

export interface RegistryWatcher {
  first(kind: IndexKind, key: string): void;
  last(kind: IndexKind, key: string): void;
  /** Every session, as it is registered, changes user or meta, and leaves (the cluster roster follows them). */
  added?(session: Session): void;
  changed?(session: Session): void;
  removed?(session: Session): void;
  /** A session's connection entered (+1) or left (-1) a channel under a user (presence counts them), and why it left. */
  member?(channel: string, user: string | null, delta: 1 | -1, why: Leave): void;
}

/** Several watchers as one, each told in turn. */
export function watchers(...list: ReadonlyArray<RegistryWatcher | null | undefined>): RegistryWatcher | null {
  const all = list.filter((w): w is RegistryWatcher => w != null);
  if (all.length <= 1) return all[0] ?? null;
  return {
    first: (kind, key) => { for (const w of all) w.first(kind, key); },
    last: (kind, key) => { for (const w of all) w.last(kind, key); },
    added: (s) => { for (const w of all) w.added?.(s); },
    changed: (s) => { for (const w of all) w.changed?.(s); },
    removed: (s) => { for (const w of all) w.removed?.(s); },
    member: (channel, user, delta, why) => { for (const w of all) w.member?.(channel, user, delta, why); },
  };
}

export interface ListQuery {
  readonly user?: string;
  readonly channel?: string;
  readonly limit: number;
  readonly cursor?: string;
}

export class Registry {
  readonly #byId = new Map<string, Session>();
  readonly #byUser = new Map<string, Set<Session>>();
  readonly #byChannel = new Map<string, Set<Session>>();
  readonly #order = new Map<Session, number>();
  #counter = 0;
  readonly #watcher: RegistryWatcher | null;
  /** The id prefix of sessions born here (`<node>-<worker>-`); null: every session counts as born here. */
  readonly #home: string | null;
  readonly #guests = new Set<string>();

  constructor(watcher: RegistryWatcher | null = null, home: string | null = null) {
    this.#watcher = watcher;
    this.#home = home;
  }

  get size(): number {
    return this.#byId.size;
  }

  get(id: string): Session | undefined {
    return this.#byId.get(id);
  }

  /** The sessions of this process a target names (none for an unknown connection). */
  select(target: Target): Iterable<Session> {
    switch (target.kind) {
      case 'connection': {
        const s = this.#byId.get(target.id);
        return s ? [s] : [];
      }
      case 'user': return this.#byUser.get(target.name) ?? [];
      case 'channel': return this.#byChannel.get(target.name) ?? [];
      case 'all': return this.#byId.values();
      default: return unreachable(target);
    }
  }

  add(session: Session): void {
    this.#byId.set(session.id, session);
    this.#order.set(session, ++this.#counter);
    if (this.#home !== null && !session.id.startsWith(this.#home)) {
      this.#guests.add(session.id);
      this.#watcher?.first('connection', session.id);
    }
    if (session.user !== null) this.#join(this.#byUser, 'user', session.user, session);
    for (const channel of session.channels ?? []) this.#joinChannel(channel, session);
    this.#watcher?.added?.(session);
  }

  /** The session leaves the registry: it ended, or lives on in another process (`moved`, `parked`). */
  remove(session: Session, why: Exclude<Leave, 'left'> = 'ended'): void {
    if (this.#byId.get(session.id) !== session) return;
    this.#byId.delete(session.id);
    this.#order.delete(session);
    if (this.#guests.delete(session.id)) this.#watcher?.last('connection', session.id);
    if (session.user !== null) this.#leave(this.#byUser, 'user', session.user, session);
    for (const channel of session.channels ?? []) this.#leaveChannel(channel, session, why);
    this.#watcher?.removed?.(session);
  }

  /** A registered session's user changed (the session owns it; this is the index). */
  userChanged(session: Session, previous: string | null): void {
    if (this.#byId.get(session.id) !== session) return;
    if (previous !== null) this.#leave(this.#byUser, 'user', previous, session);
    if (session.user !== null) this.#join(this.#byUser, 'user', session.user, session);
    for (const channel of session.channels ?? []) {
      this.#watcher?.member?.(channel, previous, -1, 'left');
      this.#watcher?.member?.(channel, session.user, 1, 'left');
    }
    this.changed(session);
  }

  /** A registered session's user or meta changed. */
  changed(session: Session): void {
    if (this.#byId.get(session.id) === session) this.#watcher?.changed?.(session);
  }

  /** A registered session joined or left a channel. */
  channelChanged(session: Session, channel: string, joined: boolean): void {
    if (this.#byId.get(session.id) !== session) return;
    if (joined) this.#joinChannel(channel, session);
    else this.#leaveChannel(channel, session, 'left');
  }

  channel(channel: string): ReadonlySet<Session> | undefined {
    return this.#byChannel.get(channel);
  }

  all(): IterableIterator<Session> {
    return this.#byId.values();
  }

  /** Connections per (channel, user), users' only: what presence counts here. */
  memberCounts(): Array<[channel: string, user: string, connections: number]> {
    const counts: Array<[string, string, number]> = [];
    for (const [channel, sessions] of this.#byChannel) {
      const users = new Map<string, number>();
      for (const s of sessions) if (s.user !== null) users.set(s.user, (users.get(s.user) ?? 0) + 1);
      for (const [user, n] of users) counts.push([channel, user, n]);
    }
    return counts;
  }

  /** The users or channels that have sessions here. */
  names(kind: IndexKind): IterableIterator<string> {
    switch (kind) {
      case 'user': return this.#byUser.keys();
      case 'channel': return this.#byChannel.keys();
      case 'connection': return this.#guests.keys();
      default: return unreachable(kind);
    }
  }

  /** A page of sessions in the order they were created; the cursor is opaque to callers. */
  list(query: ListQuery): { sessions: Session[]; cursors: string[]; next: string | null } {
    const after = query.cursor ? Number.parseInt(query.cursor, 36) : 0;
    let source: Iterable<Session> = this.#byId.values();
    if (query.user !== undefined) source = this.#byUser.get(query.user) ?? [];
    if (query.channel !== undefined) {
      const inChannel = this.#byChannel.get(query.channel);
      source = inChannel ? [...source].filter((s) => inChannel.has(s)) : [];
    }
    const page: Array<[number, Session]> = [];
    for (const s of source) {
      const n = this.#order.get(s)!;
      if (n > after) page.push([n, s]);
    }
    page.sort((a, b) => a[0] - b[0]);
    const more = page.length > query.limit;
    const taken = page.slice(0, query.limit);
    return {
      sessions: taken.map(([, s]) => s),
      cursors: taken.map(([n]) => n.toString(36)),
      next: more ? taken[taken.length - 1][0].toString(36) : null,
    };
  }

  #joinChannel(channel: string, session: Session): void {
    if (this.#join(this.#byChannel, 'channel', channel, session)) this.#watcher?.member?.(channel, session.user, 1, 'left');
  }

  #leaveChannel(channel: string, session: Session, why: Leave): void {
    if (this.#leave(this.#byChannel, 'channel', channel, session)) this.#watcher?.member?.(channel, session.user, -1, why);
  }

  /** True when the session was not in the index yet. */
  #join(index: Map<string, Set<Session>>, kind: IndexKind, key: string, session: Session): boolean {
    let set = index.get(key);
    if (!set) {
      index.set(key, (set = new Set()));
      this.#watcher?.first(kind, key);
    }
    if (set.has(session)) return false;
    set.add(session);
    return true;
  }

  /** True when the session was in the index. */
  #leave(index: Map<string, Set<Session>>, kind: IndexKind, key: string, session: Session): boolean {
    const set = index.get(key);
    if (!set?.delete(session)) return false;
    if (set.size === 0) {
      index.delete(key);
      this.#watcher?.last(kind, key);
    }
    return true;
  }
}
