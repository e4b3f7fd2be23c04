// Cluster-wide views: the control API's questions (a connection, a list, a channel's size,
// closing sessions, the nodes) asked of every live process of the cluster at once, each
// answering for its own sessions, merged here. Scatter-gather with a deadline; every answer
// says which nodes answered and which did not. The relay carries the questions (`Scatter`).
import { parseJson } from './json.js';
import { fail, ok, type Result } from './result.js';
import { sessionInfo, type ListQuery, type LocalDirectory, type SessionInfo } from './directory.js';
import { targetOf, nameOf, type Target } from './target.js';
import type { Registry } from './registry.js';
import { MAX_CLOSE_REASON_BYTES, MAX_HELD_QUESTION, MEMBERS_MAX_LIMIT } from './limits.js';
import { isMembersAnswer, isUserPresence, membersHere, mergeMembers, mergeUser, userHere, type MembersPage, type UserPresence } from './presence-query.js';

export type Question =
  | { readonly op: 'info'; readonly connection: string }
  | { readonly op: 'list'; readonly user?: string; readonly channel?: string; readonly limit: number; readonly cursors: Record<string, string> }
  | { readonly op: 'channelSize'; readonly channel: string }
  | { readonly op: 'members'; readonly channel: string; readonly after?: string; readonly limit: number }
  | { readonly op: 'user'; readonly user: string }
  | { readonly op: 'close'; readonly target: Target; readonly code: number; readonly reason: string }
  | { readonly op: 'node' }
  /** A connection's subscription to a channel, changed where the connection is held. */
  | { readonly op: 'setChannel'; readonly connection: string; readonly channel: string; readonly subscribed: boolean }
  /** Which of these sessions this process holds (a dead process's roster may list sessions that moved on). */
  | { readonly op: 'held'; readonly connections: readonly string[] };

/** A process's state, as /v1/nodes shows it. */
export type ProcessState = 'starting' | 'ready' | 'not_ready' | 'draining';

export interface ProcessStatus {
  readonly state: ProcessState;
  readonly sessions: number;
}

/** Which nodes answered a cluster-wide question. */
export interface Scope {
  readonly answered: number;
  readonly missing: string[];
}

export interface Answer {
  /** `<node>-<worker>` */
  readonly process: string;
  readonly value: unknown;
}

/** Carries a question to every other live process (a relay's part). */
export interface Scatter {
  /** The answers that came before the deadline, and the live processes that sent none. */
  ask(question: Question): Promise<{ answers: Answer[]; silent: string[] }>;
}

const nodeOf = (process: string): string => process.slice(0, process.lastIndexOf('-'));

// ── answering, in each process ────────────────────────────────────────────────

export interface ListAnswer {
  readonly entries: Array<{ info: SessionInfo; cursor: string }>;
  readonly more: boolean;
}

/** This process's answer to a question, from its own sessions only. */
export function answerLocally(directory: LocalDirectory, registry: Registry, question: Question, self: string, status: () => ProcessStatus): unknown {
  switch (question.op) {
    case 'info': {
      const s = registry.get(question.connection);
      return s ? sessionInfo(s) : null;
    }
    case 'list': return directory.listEntries({ user: question.user, channel: question.channel, limit: question.limit, cursor: question.cursors[self] });
    case 'channelSize': return registry.channel(question.channel)?.size ?? 0;
    case 'members': return membersHere(registry, question.channel, question.after, question.limit);
    case 'user': return userHere(registry, question.user);
    case 'close': return directory.closeLocal(question.target, question.code, question.reason);
    case 'node': return status();
    case 'held': return question.connections.filter((id) => registry.get(id) !== undefined);
    case 'setChannel': return directory.setChannelLocal(question.connection, question.channel, question.subscribed);
    default: return null;
  }
}

// ── the wire: questions and answers come from other processes, through a broker ──

const isObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);
const isText = (v: unknown): v is string => typeof v === 'string' && v.length > 0 && v.length <= 1024;
const isCount = (v: unknown): v is number => Number.isSafeInteger(v) && (v as number) >= 0;

export function encodeQuestion(q: Question): Buffer {
  if (q.op !== 'close') return Buffer.from(JSON.stringify(q));
  return Buffer.from(JSON.stringify({ ...q, target: { kind: q.target.kind, name: nameOf(q.target) } }));
}

export function decodeQuestion(content: Buffer): Result<Question> {
  const parsed = parseJson(content.toString('utf8'));
  if (!parsed.ok) return fail(parsed.error.message);
  const q = parsed.value;
  if (!isObject(q)) return fail('not a JSON object');
  switch (q.op) {
    case 'info': return isText(q.connection) ? ok({ op: 'info', connection: q.connection }) : fail('bad connection');
    case 'channelSize': return isText(q.channel) ? ok({ op: 'channelSize', channel: q.channel }) : fail('bad channel');
    case 'node': return ok({ op: 'node' });
    case 'user': return isText(q.user) ? ok({ op: 'user', user: q.user }) : fail('bad user');
    case 'members': {
      if (!isText(q.channel)) return fail('bad channel');
      if (!isCount(q.limit) || q.limit < 1 || q.limit > MEMBERS_MAX_LIMIT) return fail('bad limit');
      if (q.after !== undefined && !isText(q.after)) return fail('bad after');
      return ok({ op: 'members', channel: q.channel, limit: q.limit, ...(q.after === undefined ? {} : { after: q.after as string }) });
    }
    case 'setChannel':
      if (!isText(q.connection) || !isText(q.channel) || typeof q.subscribed !== 'boolean') return fail('bad connection, channel or subscribed');
      return ok({ op: 'setChannel', connection: q.connection, channel: q.channel, subscribed: q.subscribed });
    case 'held': {
      const ids = q.connections;
      if (!Array.isArray(ids) || ids.length < 1 || ids.length > MAX_HELD_QUESTION || !ids.every(isText)) return fail('bad connections');
      return ok({ op: 'held', connections: ids as string[] });
    }
    case 'list': {
      if (!isCount(q.limit) || q.limit < 1 || q.limit > 1000) return fail('bad limit');
      if ((q.user !== undefined && !isText(q.user)) || (q.channel !== undefined && !isText(q.channel))) return fail('bad user or channel');
      if (!isObject(q.cursors) || !Object.values(q.cursors).every(isText)) return fail('bad cursors');
      return ok({
        op: 'list', limit: q.limit, cursors: q.cursors as Record<string, string>,
        ...(q.user === undefined ? {} : { user: q.user as string }), ...(q.channel === undefined ? {} : { channel: q.channel as string }),
      });
    }
    case 'close': {
      const t = isObject(q.target) ? q.target : {};
      const target = targetOf(typeof t.kind === 'string' ? t.kind : undefined, typeof t.name === 'string' ? t.name : undefined);
      if (target === null) return fail('bad target');
      if (!Number.isInteger(q.code) || (q.code as number) < 1000 || (q.code as number) > 4999) return fail('bad close code');
      if (typeof q.reason !== 'string' || Buffer.byteLength(q.reason) > MAX_CLOSE_REASON_BYTES) return fail('bad reason');
      return ok({ op: 'close', target, code: q.code as number, reason: q.reason });
    }
    default: return fail(`unknown question ${JSON.stringify(q.op)}`);
  }
}

function isInfo(v: unknown): v is SessionInfo {
  return isObject(v) && isText(v.connection) && typeof v.connectedAt === 'string' && Array.isArray(v.channels);
}

function isListAnswer(v: unknown): v is ListAnswer {
  return isObject(v) && typeof v.more === 'boolean' && Array.isArray(v.entries)
    && v.entries.every((e) => isObject(e) && isInfo(e.info) && isText(e.cursor));
}

export function isHeldAnswer(v: unknown): v is string[] {
  return Array.isArray(v) && v.every(isText);
}

function isStatus(v: unknown): v is ProcessStatus {
  return isObject(v) && isCount(v.sessions) && ['starting', 'ready', 'not_ready', 'draining'].includes(v.state as string);
}

// ── asking, in the process that serves the control API ────────────────────────

export interface NodeView {
  readonly node: string;
  readonly state: ProcessState;
  readonly sessions: number;
  readonly processes: number;
}

/** The control API's view of the whole cluster. */
export interface Views {
  info(connection: string): Promise<{ info: SessionInfo | null; nodes: Scope }>;
  list(query: ListQuery): Promise<{ connections: SessionInfo[]; next: string | null; nodes: Scope }>;
  channelSize(channel: string): Promise<{ connections: number; nodes: Scope }>;
  members(channel: string, after: string | undefined, limit: number): Promise<MembersPage & { nodes: Scope }>;
  user(user: string): Promise<UserPresence & { nodes: Scope }>;
  close(target: Target, code: number, reason: string): Promise<{ closed: number; nodes: Scope }>;
  /** Subscribes or unsubscribes a connection wherever it is held; `changed` false when no process holds it. */
  setChannel(connection: string, channel: string, subscribed: boolean): Promise<{ changed: boolean; nodes: Scope }>;
  nodes(): Promise<{ nodes: NodeView[]; missing: string[] }>;
}

/** The first state of a node that is not fully ready, across its processes. */
function nodeState(states: ProcessState[]): ProcessState {
  for (const s of ['draining', 'starting', 'not_ready'] as const) if (states.includes(s)) return s;
  return 'ready';
}

/**
 * Views over this process (answered here, at once) and every other live process (through
 * `scatter`). An answer that does not have the expected shape counts as none.
 */
export class ClusterViews implements Views {
  readonly #scatter: Scatter;
  readonly #self: string;
  readonly #local: (q: Question) => unknown;

  constructor(scatter: Scatter, self: string, local: (q: Question) => unknown) {
    this.#scatter = scatter;
    this.#self = self;
    this.#local = local;
  }

  async #ask<T>(q: Question, valid: (v: unknown) => v is T): Promise<{ values: Array<{ process: string; value: T }>; nodes: Scope }> {
    const mine = { process: this.#self, value: this.#local(q) as T };
    const { answers, silent } = await this.#scatter.ask(q);
    const values = [mine, ...answers.filter((a) => valid(a.value)).map((a) => ({ process: a.process, value: a.value as T }))];
    const answeredProcesses = new Set(values.map((v) => v.process));
    // A process whose answer was malformed is as silent as one that sent none.
    const silentProcesses = [...silent, ...answers.filter((a) => !answeredProcesses.has(a.process)).map((a) => a.process)];
    const missing = [...new Set(silentProcesses.map(nodeOf))].sort();
    const answered = new Set([...answeredProcesses].map(nodeOf).filter((n) => !missing.includes(n)));
    return { values, nodes: { answered: answered.size, missing } };
  }

  async info(connection: string): Promise<{ info: SessionInfo | null; nodes: Scope }> {
    const { values, nodes } = await this.#ask({ op: 'info', connection }, (v): v is SessionInfo | null => v === null || isInfo(v));
    return { info: values.find((v) => v.value !== null)?.value ?? null, nodes };
  }

  async list(query: ListQuery): Promise<{ connections: SessionInfo[]; next: string | null; nodes: Scope }> {
    const cursors = decodeCursors(query.cursor);
    const { values, nodes } = await this.#ask({ op: 'list', user: query.user, channel: query.channel, limit: query.limit, cursors }, isListAnswer);
    const all = values.flatMap((v) => v.value.entries.map((e) => ({ ...e, process: v.process })));
    all.sort((a, b) => a.info.connectedAt.localeCompare(b.info.connectedAt) || a.info.connection.localeCompare(b.info.connection));
    const taken = all.slice(0, query.limit);
    for (const e of taken) cursors[e.process] = e.cursor;
    const more = all.length > taken.length || values.some((v) => v.value.more);
    return { connections: taken.map((e) => e.info), next: more ? Buffer.from(JSON.stringify(cursors)).toString('base64url') : null, nodes };
  }

  async channelSize(channel: string): Promise<{ connections: number; nodes: Scope }> {
    const { values, nodes } = await this.#ask({ op: 'channelSize', channel }, isCount);
    return { connections: values.reduce((sum, v) => sum + v.value, 0), nodes };
  }

  async members(channel: string, after: string | undefined, limit: number): Promise<MembersPage & { nodes: Scope }> {
    const { values, nodes } = await this.#ask({ op: 'members', channel, limit, ...(after === undefined ? {} : { after }) }, isMembersAnswer);
    return { ...mergeMembers(values.map((v) => v.value), limit), nodes };
  }

  async user(user: string): Promise<UserPresence & { nodes: Scope }> {
    const { values, nodes } = await this.#ask({ op: 'user', user }, isUserPresence);
    return { ...mergeUser(values.map((v) => v.value)), nodes };
  }

  async close(target: Target, code: number, reason: string): Promise<{ closed: number; nodes: Scope }> {
    const { values, nodes } = await this.#ask({ op: 'close', target, code, reason }, isCount);
    return { closed: values.reduce((sum, v) => sum + v.value, 0), nodes };
  }

  async setChannel(connection: string, channel: string, subscribed: boolean): Promise<{ changed: boolean; nodes: Scope }> {
    const { values, nodes } = await this.#ask({ op: 'setChannel', connection, channel, subscribed }, (v): v is boolean => typeof v === 'boolean');
    return { changed: values.some((v) => v.value), nodes };
  }

  async nodes(): Promise<{ nodes: NodeView[]; missing: string[] }> {
    const { values, nodes } = await this.#ask({ op: 'node' }, isStatus);
    const byNode = new Map<string, ProcessStatus[]>();
    for (const v of values) {
      const node = nodeOf(v.process);
      byNode.set(node, [...(byNode.get(node) ?? []), v.value]);
    }
    const list = [...byNode].map(([node, statuses]) => ({
      node,
      state: nodeState(statuses.map((s) => s.state)),
      sessions: statuses.reduce((sum, s) => sum + s.sessions, 0),
      processes: statuses.length,
    })).sort((a, b) => a.node.localeCompare(b.node));
    return { nodes: list, missing: nodes.missing };
  }
}

/** A list cursor is one cursor per process, as this API returned it; anything else starts from the top. */
export function decodeCursors(cursor: string | undefined): Record<string, string> {
  const cursors: Record<string, string> = {};
  if (!cursor) return cursors;
  const parsed = parseJson(Buffer.from(cursor, 'base64url').toString('utf8'));
  if (parsed.ok && isObject(parsed.value)) {
    for (const [k, v] of Object.entries(parsed.value)) if (isText(v)) cursors[k] = v;
  }
  return cursors;
}
