// The cluster's wire (plugins/amqp/cluster.ts sends and reads it): the routing keys a push or
// a close is published with and bound for, and the messages themselves. A push travels as its
// payload bytes, everything else in headers; names are escaped (base64url, so dots, `*` and `#`
// cannot act as topic syntax; a hash for long names, as routing keys hold at most 255 bytes).
import { createHash } from 'node:crypto';
import type { Options } from 'amqplib';
import { MAX_ROUTING_NAME } from '../../proxy/limits.js';
import type { Payload } from '../../proxy/payload.js';
import { Push, type MessageClass } from '../../proxy/push.js';
import type { IndexKind } from '../../proxy/registry.js';
import { fail, ok, type Result } from '../../proxy/result.js';
import type { SessionSnapshot } from '../../proxy/snapshot.js';
import { nameOf, targetOf, unreachable, type Target } from '../../proxy/target.js';
import { payloadContent } from './upstream.js';

// ── routing keys ──────────────────────────────────────────────────────────────

// Longer escaped names (MAX_ROUTING_NAME) are replaced by their hash (`~` is not in the base64url alphabet).

export function escapeName(name: string): string {
  const b64 = Buffer.from(name, 'utf8').toString('base64url');
  return b64.length <= MAX_ROUTING_NAME ? b64 : `~${createHash('sha256').update(name, 'utf8').digest('base64url')}`;
}

/** The node a connection id names; null when the id has no node part. */
export function nodeOf(connection: string): string | null {
  const m = /^([a-z0-9]+)-/.exec(connection);
  return m ? m[1] : null;
}

export function bindingKey(kind: IndexKind, name: string): string {
  return `${kind}.${escapeName(name)}`;
}

/** Extra routing keys (the CC header): a connection may have moved away from the node its id names. */
export function ccKeys(target: Target): string[] | undefined {
  return target.kind === 'connection' ? [bindingKey('connection', target.id)] : undefined;
}

/** The keys a session's pushes are routed by: its id (it may have moved from the node the id names), its user, its channels. */
export function sessionKeys(snapshot: SessionSnapshot): string[] {
  const keys = [bindingKey('connection', snapshot.id)];
  if (snapshot.user !== null) keys.push(bindingKey('user', snapshot.user));
  for (const c of snapshot.channels) keys.push(bindingKey('channel', c));
  return keys;
}

export function routingKey(target: Target): string {
  switch (target.kind) {
    case 'connection': return `node.${nodeOf(target.id) ?? escapeName(target.id)}`;
    case 'user':
    case 'channel': return bindingKey(target.kind, target.name);
    case 'all': return 'all';
    default: return unreachable(target);
  }
}

// ── wire format ───────────────────────────────────────────────────────────────
// A push travels as its payload bytes; everything else is in headers. The TTL travels as
// the time left (clocks of nodes may differ) and as the AMQP expiration, so the broker
// drops a push that expired in a queue.

export type ClusterMessage =
  | { readonly type: 'push'; readonly origin: string; readonly target: Target; readonly push: Push }
  | { readonly type: 'close'; readonly origin: string; readonly target: Target; readonly code: number; readonly reason: string };

function targetHeaders(target: Target): Record<string, string> {
  const name = nameOf(target);
  return name === null ? { 'x-switchboard-to': target.kind } : { 'x-switchboard-to': target.kind, 'x-switchboard-name': name };
}

export function encodePush(origin: string, target: Target, push: Push, now: number): { content: Buffer; options: Options.Publish } {
  const headers: Record<string, string> = {
    'x-switchboard-origin': origin,
    ...targetHeaders(target),
    'x-switchboard-kind': push.payload.kind,
    'x-switchboard-class': push.class,
  };
  if (push.coalesceKey !== null) headers['x-switchboard-coalesce-key'] = push.coalesceKey;
  if (push.id !== null) headers['x-switchboard-push-id'] = push.id;
  // A presence event's frame (proxy/presence-frames.ts); an app's message says nothing.
  if (push.type !== 'message') headers['x-switchboard-type'] = push.type;
  // Persistent: kept only by durable queues (a parked session's survives a broker restart with
  // what was pushed to it); the nodes' own queues are transient, so no disk is touched for them.
  const options: Options.Publish = { type: 'push', headers, persistent: true, CC: ccKeys(target) };
  if (Number.isFinite(push.expiresAt)) {
    const left = Math.max(1, Math.ceil(push.expiresAt - now));
    headers['x-switchboard-ttl-ms'] = String(left);
    options.expiration = String(left);
  }
  return { content: payloadContent(push.payload), options };
}

export function encodeClose(origin: string, target: Target, code: number, reason: string): { content: Buffer; options: Options.Publish } {
  return {
    content: Buffer.alloc(0),
    options: {
      type: 'close', persistent: true, CC: ccKeys(target),
      headers: { 'x-switchboard-origin': origin, ...targetHeaders(target), 'x-switchboard-code': String(code), 'x-switchboard-reason': reason },
    },
  };
}

/** A header's value as text (AMQP may carry strings as bytes). */
export function headerText(value: unknown): string | undefined {
  if (typeof value === 'string') return value;
  if (Buffer.isBuffer(value)) return value.toString('utf8');
  return undefined;
}

export function decodeMessage(content: Buffer, type: unknown, headers: Record<string, unknown>, now: number): Result<ClusterMessage> {
  const origin = headerText(headers['x-switchboard-origin']);
  const to = headerText(headers['x-switchboard-to']);
  const name = headerText(headers['x-switchboard-name']);
  if (origin === undefined) return fail('no origin');
  const target = targetOf(to, name);
  if (target === null) return fail(`bad target ${JSON.stringify(to)}`);
  if (type === 'close') {
    const code = Number(headerText(headers['x-switchboard-code']));
    if (!Number.isInteger(code)) return fail('bad close code');
    return ok({ type: 'close', origin, target, code, reason: headerText(headers['x-switchboard-reason']) ?? '' });
  }
  if (type !== 'push') return fail(`unknown type ${JSON.stringify(type)}`);
  const kind = headerText(headers['x-switchboard-kind']);
  let payload: Payload;
  if (kind === 'binary') payload = { kind: 'binary', data: content };
  else if (kind === 'text') payload = { kind: 'text', text: content.toString('utf8') };
  else if (kind === 'json') payload = { kind: 'json', json: content.toString('utf8') };
  else return fail(`bad payload kind ${JSON.stringify(kind)}`);
  const cls = headerText(headers['x-switchboard-class']);
  const ttl = headerText(headers['x-switchboard-ttl-ms']);
  const pushType = headerText(headers['x-switchboard-type']);
  if (pushType !== undefined && pushType !== 'presence' && pushType !== 'message') return fail(`bad push type ${JSON.stringify(pushType)}`);
  if (pushType === 'presence' && (payload.kind !== 'json' || !payload.json.startsWith('{'))) return fail('a presence push carries a JSON object');
  const push = new Push(payload, {
    type: pushType ?? 'message',
    class: cls === 'lossy' ? 'lossy' : 'durable' satisfies MessageClass,
    coalesceKey: headerText(headers['x-switchboard-coalesce-key']) ?? null,
    expiresAt: ttl !== undefined && /^\d+$/.test(ttl) ? now + Number(ttl) : Infinity,
    id: headerText(headers['x-switchboard-push-id']) ?? null,
  });
  return ok({ type: 'push', origin, target, push });
}
