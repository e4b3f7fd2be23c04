// What the control port asks of the sessions, wherever they live: in this process
// (`LocalDirectory`, which also routes to other nodes through a relay) or in worker
// processes (`proxy/workers.ts`). The push API is written against this, so it behaves the
// same for any number of workers.
import type { Push, PushIds } from './push.js';
import { CLIENT_USER_AGENT } from './webhook-headers.js';
import type { Registry } from './registry.js';
import type { Target } from './target.js';
import type { Session } from './session.js';
import { membersHere, userHere, type MembersAnswer, type UserPresence } from './presence-query.js';

export interface SessionInfo {
  readonly connection: string;
  readonly user: string | null;
  readonly channels: string[];
  readonly meta: Record<string, string>;
  readonly connectedAt: string;
  readonly mode: string;
  readonly state: string;
  /** What carries it now (`websocket`, `sse`, `long-poll`); null while it has no link (detached, moving). */
  readonly transport: string | null;
  readonly outbox: { readonly messages: number; readonly bytes: number };
  readonly remoteAddress: string;
  readonly userAgent: string | null;
  /** The last frame from the client (or the connect time). */
  readonly lastActiveAt: string;
}

export interface Counts {
  delivered: number;
  queued: number;
  dropped: number;
}

/** Carries pushes to sessions held by other processes (cluster nodes). */
export interface Relay {
  /** Whether a connection id belongs to this process. */
  isLocal(connection: string): boolean;
  publish(target: Target, push: Push): Promise<void>;
  /** Closes the sessions a target names in the other processes. */
  close(target: Target, code: number, reason: string): Promise<void>;
}

export function zeroCounts(): Counts {
  return { delivered: 0, queued: 0, dropped: 0 };
}

export interface RouteResult {
  readonly counts: Counts;
  readonly published: boolean;
  readonly found: boolean;
}

export interface ListQuery {
  readonly user?: string;
  readonly channel?: string;
  readonly limit: number;
  readonly cursor?: string;
}

export interface Page {
  readonly connections: SessionInfo[];
  readonly next: string | null;
}

export interface Directory {
  route(target: Target, push: Push): Promise<RouteResult>;
  /** How many sessions were closed (a connection elsewhere in a cluster counts as one). */
  close(target: Target, code: number, reason: string): Promise<number>;
  info(connection: string): Promise<SessionInfo | null>;
  list(query: ListQuery): Promise<Page>;
  channelSize(channel: string): Promise<number>;
  /** A channel's members after a user, the first `limit` (docs/presence.md). */
  members(channel: string, after: string | undefined, limit: number): Promise<MembersAnswer>;
  userPresence(user: string): Promise<UserPresence>;
  /** Subscribes or unsubscribes a connection; false when it is unknown. */
  setChannel(connection: string, channel: string, subscribed: boolean): Promise<boolean>;
  sessions(): Promise<number>;
}

export function sessionInfo(s: Session): SessionInfo {
  return {
    connection: s.id,
    user: s.user,
    channels: [...(s.channels ?? [])],
    meta: s.meta,
    connectedAt: new Date(s.connectedAt).toISOString(),
    mode: s.mode,
    state: s.state,
    transport: s.transport,
    outbox: { messages: s.outboxMessages, bytes: s.outboxBytes },
    remoteAddress: s.remoteAddress,
    userAgent: s.headers[CLIENT_USER_AGENT] ?? null,
    lastActiveAt: new Date(Math.max(s.lastSeen, s.connectedAt)).toISOString(),
  };
}

export function addCounts(into: Counts, more: Counts): Counts {
  into.delivered += more.delivered;
  into.queued += more.queued;
  into.dropped += more.dropped;
  return into;
}

export interface RelayRoutes {
  readonly relay: Relay;
  /** Gives pushes the ids that tell them apart when a moving session receives one twice. */
  readonly ids: PushIds;
  /** Whether a session that was here moved to another process. */
  movedAway(connection: string): boolean;
}

/** The sessions of this process, plus whatever the relay reaches. */
export class LocalDirectory implements Directory {
  readonly #registry: Registry;
  readonly #relay: RelayRoutes | null;

  constructor(registry: Registry, relay: RelayRoutes | null) {
    this.#registry = registry;
    this.#relay = relay;
  }

  /** Whether a push or close for this connection is for this process only. */
  #here(relay: RelayRoutes, connection: string): boolean {
    return this.#registry.get(connection) !== undefined || (relay.relay.isLocal(connection) && !relay.movedAway(connection));
  }

  /**
   * Local delivery plus, with a relay, publication to the others. A connection held here is
   * delivered here only; one held elsewhere (its id names another process, or it moved away)
   * is only published; `found` is false for an unknown one of ours.
   */
  async route(target: Target, push: Push): Promise<RouteResult> {
    const relay = this.#relay;
    if (!relay) return this.routeLocal(target, push);
    relay.ids.stamp(push);
    if (target.kind === 'connection') {
      if (this.#here(relay, target.id)) return this.routeLocal(target, push);
      await relay.relay.publish(target, push);
      return { counts: zeroCounts(), published: true, found: true };
    }
    const local = this.routeLocal(target, push);
    await relay.relay.publish(target, push);
    return { counts: local.counts, published: true, found: true };
  }

  /** Delivery to this process only: what a worker does for its primary, a relay for its node. */
  routeLocal(target: Target, push: Push): RouteResult {
    const counts = zeroCounts();
    let found = false;
    for (const s of this.#registry.select(target)) {
      found = true;
      counts[s.send(push)]++;
    }
    return { counts, published: false, found: found || target.kind !== 'connection' };
  }

  async close(target: Target, code: number, reason: string): Promise<number> {
    const relay = this.#relay;
    const remote = relay !== null && !(target.kind === 'connection' && this.#here(relay, target.id));
    if (remote) await relay.relay.close(target, code, reason);
    const here = this.closeLocal(target, code, reason);
    // A connection held by another node was closed there: it counts as one.
    return remote && target.kind === 'connection' ? Math.max(1, here) : here;
  }

  closeLocal(target: Target, code: number, reason: string): number {
    // Copied first: a closed session leaves the registry's sets.
    const sessions = [...this.#registry.select(target)];
    for (const s of sessions) s.close(code, reason);
    return sessions.length;
  }

  async info(connection: string): Promise<SessionInfo | null> {
    const s = this.#registry.get(connection);
    return s ? sessionInfo(s) : null;
  }

  async list(query: ListQuery): Promise<Page> {
    const page = this.#registry.list(query);
    return { connections: page.sessions.map(sessionInfo), next: page.next };
  }

  /** A page with each entry's own cursor, for merging the pages of several workers. */
  listEntries(query: ListQuery): { entries: Array<{ info: SessionInfo; cursor: string }>; more: boolean } {
    const page = this.#registry.list(query);
    return { entries: page.sessions.map((s, i) => ({ info: sessionInfo(s), cursor: page.cursors[i] })), more: page.next !== null };
  }

  async channelSize(channel: string): Promise<number> {
    return this.#registry.channel(channel)?.size ?? 0;
  }

  async members(channel: string, after: string | undefined, limit: number): Promise<MembersAnswer> {
    return membersHere(this.#registry, channel, after, limit);
  }

  async userPresence(user: string): Promise<UserPresence> {
    return userHere(this.#registry, user);
  }

  async setChannel(connection: string, channel: string, subscribed: boolean): Promise<boolean> {
    return this.setChannelLocal(connection, channel, subscribed);
  }

  /** Subscribes or unsubscribes a session held here; false when it is not here. */
  setChannelLocal(connection: string, channel: string, subscribed: boolean): boolean {
    const s = this.#registry.get(connection);
    if (!s) return false;
    if (subscribed) s.join(channel);
    else s.leave(channel);
    return true;
  }

  async sessions(): Promise<number> {
    return this.#registry.size;
  }
}
