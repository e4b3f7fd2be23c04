// The cluster's presence queue (plugins/amqp/presence-queue.ts): what each process sends its
// owner, and what the owner keeps beside it. JSON bodies, the kind in the message's `type`:
//   full     {from, boot, counts: [[channel, user, n], …]}       a process's whole count
//   changes  {from, boot, changes: [[channel, user, ±1, why], …]} what changed since, in order
//   gone     {from, process}                                    `from` counted `process` gone
//   bye      {from, boot}                                       the process leaves (a drain)
// and what the owner keeps beside it: the told state {v: 1, members: [[channel, [users]]],
// held: [[channel, user, due]], batch} and the batch being sent {v: 1, batch, uncertain: [[channel, user]]}.
// Every field is checked: a malformed message is refused with the reason, never thrown on.
import { MAX_CHANNEL, MAX_PRESENCE_COUNT, MAX_PRESENCE_MESSAGE_BYTES, MAX_USER_NAME } from '../../proxy/limits.js';
import { parseJson } from '../../proxy/json.js';
import type { HeldCounts, MemberChange } from '../../proxy/presence.js';
import type { SendingState, ToldState } from '../../proxy/presence-owner.js';
import { fail, ok, type Result } from '../../proxy/result.js';
import { processOf } from './transfer.js';

export type PresenceMessage =
  | { readonly type: 'full'; readonly from: string; readonly boot: string; readonly counts: HeldCounts }
  | { readonly type: 'changes'; readonly from: string; readonly boot: string; readonly changes: readonly MemberChange[] }
  | { readonly type: 'gone'; readonly from: string; readonly process: string }
  | { readonly type: 'bye'; readonly from: string; readonly boot: string };

const WHY = new Set(['left', 'ended', 'moved', 'parked']);
const isName = (v: unknown, max: number): v is string => typeof v === 'string' && v.length > 0 && v.length <= max;
/** A process's start: a short random id. */
const isId = (v: unknown): v is string => typeof v === 'string' && /^[A-Za-z0-9_-]{1,128}$/.test(v);

export function encodePresence(message: PresenceMessage): { content: Buffer; type: string } {
  const { type, ...body } = message;
  return { content: Buffer.from(JSON.stringify(body)), type };
}

export function decodePresence(type: unknown, content: Buffer): Result<PresenceMessage> {
  if (content.length > MAX_PRESENCE_MESSAGE_BYTES) return fail(`a presence message of ${content.length} bytes is more than ${MAX_PRESENCE_MESSAGE_BYTES}`);
  const parsed = parseJson(content.toString('utf8'));
  if (!parsed.ok) return fail(`not JSON: ${parsed.error}`);
  const b = parsed.value as Record<string, unknown> | null;
  if (b === null || typeof b !== 'object' || Array.isArray(b)) return fail('not a JSON object');
  const from = processOf(b.from);
  if (from === null) return fail('no sender (from: <node>-<worker>)');
  switch (type) {
    case 'gone': {
      const process = processOf(b.process);
      return process !== null ? ok({ type, from, process }) : fail('gone: no process');
    }
    case 'bye':
      return isId(b.boot) ? ok({ type, from, boot: b.boot }) : fail('bye: no boot');
    case 'full': {
      if (!isId(b.boot) || !Array.isArray(b.counts)) return fail('full: no boot or counts');
      for (const c of b.counts) {
        if (!Array.isArray(c) || c.length !== 3 || !isName(c[0], MAX_CHANNEL) || !isName(c[1], MAX_USER_NAME) || !Number.isSafeInteger(c[2]) || (c[2] as number) < 1 || (c[2] as number) > MAX_PRESENCE_COUNT) {
          return fail(`full: a count is not [channel, user, connections ≥ 1]: ${JSON.stringify(c)?.slice(0, 100)}`);
        }
      }
      return ok({ type, from, boot: b.boot, counts: b.counts as HeldCounts });
    }
    case 'changes': {
      if (!isId(b.boot) || !Array.isArray(b.changes)) return fail('changes: no boot or changes');
      for (const c of b.changes) {
        if (!Array.isArray(c) || c.length !== 4 || !isName(c[0], MAX_CHANNEL) || !isName(c[1], MAX_USER_NAME) || (c[2] !== 1 && c[2] !== -1) || !WHY.has(c[3] as string)) {
          return fail(`changes: a change is not [channel, user, ±1, why]: ${JSON.stringify(c)?.slice(0, 100)}`);
        }
      }
      return ok({ type, from, boot: b.boot, changes: b.changes as MemberChange[] });
    }
    default:
      return fail(`unknown presence message type ${JSON.stringify(type)}`);
  }
}

export function encodeTold(told: ToldState): Buffer {
  return Buffer.from(JSON.stringify({ v: 1, members: told.members, held: told.held, batch: told.batch }));
}

export function decodeTold(content: Buffer): Result<ToldState> {
  if (content.length > MAX_PRESENCE_MESSAGE_BYTES) return fail(`told state of ${content.length} bytes is more than ${MAX_PRESENCE_MESSAGE_BYTES}`);
  const parsed = parseJson(content.toString('utf8'));
  if (!parsed.ok) return fail(`not JSON: ${parsed.error}`);
  const b = parsed.value as Record<string, unknown> | null;
  if (b === null || typeof b !== 'object' || b.v !== 1 || !Array.isArray(b.members) || !Array.isArray(b.held)) return fail('not a told state of version 1');
  for (const m of b.members) {
    if (!Array.isArray(m) || m.length !== 2 || !isName(m[0], MAX_CHANNEL) || !Array.isArray(m[1]) || !(m[1] as unknown[]).every((u) => isName(u, MAX_USER_NAME))) {
      return fail('told: a channel is not [channel, [users]]');
    }
  }
  for (const h of b.held) {
    if (!Array.isArray(h) || h.length !== 3 || !isName(h[0], MAX_CHANNEL) || !isName(h[1], MAX_USER_NAME) || !Number.isSafeInteger(h[2]) || (h[2] as number) < 0) return fail('told: a held leave is not [channel, user, due]');
  }
  // Absent in a told state written before batches were numbered: none taken.
  const batch = b.batch ?? 0;
  if (!isBatch(batch)) return fail('told: batch is not a batch number');
  return ok({ members: b.members as ToldState['members'], held: b.held as ToldState['held'], batch });
}

const isBatch = (v: unknown): v is number => Number.isSafeInteger(v) && (v as number) >= 0;

export function encodeSending(sending: SendingState): Buffer {
  return Buffer.from(JSON.stringify({ v: 1, batch: sending.batch, uncertain: sending.uncertain }));
}

export function decodeSending(content: Buffer): Result<SendingState> {
  if (content.length > MAX_PRESENCE_MESSAGE_BYTES) return fail(`a batch being sent of ${content.length} bytes is more than ${MAX_PRESENCE_MESSAGE_BYTES}`);
  const parsed = parseJson(content.toString('utf8'));
  if (!parsed.ok) return fail(`not JSON: ${parsed.error}`);
  const b = parsed.value as Record<string, unknown> | null;
  if (b === null || typeof b !== 'object' || b.v !== 1 || !isBatch(b.batch) || !Array.isArray(b.uncertain)) return fail('not a batch being sent of version 1');
  if (!b.uncertain.every((u) => Array.isArray(u) && u.length === 2 && isName(u[0], MAX_CHANNEL) && isName(u[1], MAX_USER_NAME))) {
    return fail('sending: uncertain is not a list of [channel, user]');
  }
  return ok({ batch: b.batch, uncertain: b.uncertain as SendingState['uncertain'] });
}
