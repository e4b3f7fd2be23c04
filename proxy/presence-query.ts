// Presence as the control API reads it: a channel's members (its users, each with a count of
// connections) and a user's presence. Each process answers from its own registry; answers of
// several processes (workers, nodes) merge by user, so a user with tabs on two nodes is one member.
// A channel's members come in pages ordered by user, the cursor naming the last user of a page:
// every process answers with its first `limit` users after the cursor, and the first `limit` of
// their union are complete (a process that had a user among them but did not send it would have
// sent `limit` users before it).
import type { Registry } from './registry.js';
import { toUser } from './target.js';

export interface Member {
  readonly user: string;
  readonly connections: number;
}

/** One process's page of a channel's members. */
export interface MembersAnswer {
  /** Ordered by user; at most `limit`. */
  readonly members: Member[];
  /** Every connection of the channel here, with or without a user. */
  readonly connections: number;
  /** This process has members after the last one sent. */
  readonly more: boolean;
}

export interface MembersPage {
  readonly members: Member[];
  readonly connections: number;
  readonly next: string | null;
}

export interface UserPresence {
  readonly online: boolean;
  readonly connections: number;
  readonly channels: string[];
}


const byUser = (a: Member, b: Member): number => (a.user < b.user ? -1 : a.user > b.user ? 1 : 0);

/** This process's members of a channel after `after` (a user name), the first `limit`. */
export function membersHere(registry: Registry, channel: string, after: string | undefined, limit: number): MembersAnswer {
  const sessions = registry.channel(channel);
  if (!sessions) return { members: [], connections: 0, more: false };
  const counts = new Map<string, number>();
  for (const s of sessions) {
    if (s.user !== null && (after === undefined || s.user > after)) counts.set(s.user, (counts.get(s.user) ?? 0) + 1);
  }
  const members = [...counts].map(([user, connections]) => ({ user, connections })).sort(byUser);
  return { members: members.slice(0, limit), connections: sessions.size, more: members.length > limit };
}

/** This process's part of a user's presence. */
export function userHere(registry: Registry, user: string): UserPresence {
  let connections = 0;
  const channels = new Set<string>();
  for (const s of registry.select(toUser(user))) {
    connections++;
    for (const c of s.channels ?? []) channels.add(c);
  }
  return { online: connections > 0, connections, channels: [...channels].sort() };
}

/** The answers of several processes as one page. */
export function mergeMembers(answers: readonly MembersAnswer[], limit: number): MembersPage {
  const counts = new Map<string, number>();
  for (const a of answers) for (const m of a.members) counts.set(m.user, (counts.get(m.user) ?? 0) + m.connections);
  const all = [...counts].map(([user, connections]) => ({ user, connections })).sort(byUser);
  const members = all.slice(0, limit);
  const more = all.length > limit || answers.some((a) => a.more);
  return {
    members,
    connections: answers.reduce((sum, a) => sum + a.connections, 0),
    next: more && members.length > 0 ? encodeMembersCursor(members[members.length - 1].user) : null,
  };
}

export function mergeUser(answers: readonly UserPresence[]): UserPresence {
  const connections = answers.reduce((sum, a) => sum + a.connections, 0);
  const channels = [...new Set(answers.flatMap((a) => a.channels))].sort();
  return { online: connections > 0, connections, channels };
}

export function encodeMembersCursor(user: string): string {
  return Buffer.from(user, 'utf8').toString('base64url');
}

/** The user a cursor names; null when it is not one this API returned. */
export function decodeMembersCursor(cursor: string): string | null {
  if (!/^[0-9A-Za-z_-]{1,1400}$/.test(cursor)) return null;
  const user = Buffer.from(cursor, 'base64url').toString('utf8');
  // Round trip: a cursor with stray bits or invalid UTF-8 is not one of ours.
  return user.length > 0 && encodeMembersCursor(user) === cursor ? user : null;
}

// ── checked shapes, for answers that come from other processes ────────────────

const isObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);
const isCount = (v: unknown): v is number => Number.isSafeInteger(v) && (v as number) >= 0;
const isName = (v: unknown): v is string => typeof v === 'string' && v.length > 0;

export function isMembersAnswer(v: unknown): v is MembersAnswer {
  return isObject(v) && isCount(v.connections) && typeof v.more === 'boolean' && Array.isArray(v.members)
    && v.members.every((m) => isObject(m) && isName(m.user) && isCount(m.connections) && m.connections > 0);
}

export function isUserPresence(v: unknown): v is UserPresence {
  return isObject(v) && typeof v.online === 'boolean' && isCount(v.connections) && Array.isArray(v.channels) && v.channels.every(isName);
}
