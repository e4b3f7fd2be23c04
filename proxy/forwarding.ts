// What the public port forwards to the app: never the headers only Switchboard may set, never
// a request for the app's webhook paths (unless the operator opts in), never hop-by-hop headers,
// and forwarding headers set as a reverse proxy sets them.

import { BlockList, isIP, isIPv6 } from 'node:net';
import { isSidecarHeader } from './webhook-headers.js';
import { MAX_DECODE_ROUNDS } from './limits.js';

/** Removes reserved headers from a request before it is proxied (`rawHeaders` too: http-proxy does not read it, the app may). */
export function stripReserved(req: { headers: Record<string, unknown>; rawHeaders: string[] }): void {
  let found = false;
  for (const name of Object.keys(req.headers)) {
    if (isSidecarHeader(name)) {
      delete req.headers[name];
      found = true;
    }
  }
  if (!found) return;
  const kept: string[] = [];
  for (let i = 0; i < req.rawHeaders.length; i += 2) {
    if (!isSidecarHeader(req.rawHeaders[i].toLowerCase())) kept.push(req.rawHeaders[i], req.rawHeaders[i + 1]);
  }
  req.rawHeaders.splice(0, req.rawHeaders.length, ...kept);
}

/**
 * A request path as an app's router would likely see it: percent-decoded, slashes collapsed,
 * dot segments resolved. Null when it cannot be decoded (the caller refuses it).
 */
export function canonicalPath(target: string): string | null {
  const q = target.indexOf('?');
  let decoded = q < 0 ? target : target.slice(0, q);
  // Decoded until nothing changes (an app or framework behind may decode a second time, so
  // "%256D" must count as "m"); a later round that fails keeps what the one before gave, and
  // a path still changing after MAX_DECODE_ROUNDS is refused.
  for (let round = 0; ; round++) {
    let next: string;
    try {
      next = decodeURIComponent(decoded);
    } catch {
      if (round === 0) return null;
      break;
    }
    if (next === decoded) break;
    if (round === MAX_DECODE_ROUNDS) return null;
    decoded = next;
  }
  const segments = resolveSegments(decoded.replace(/\\/g, '/').split('/'));
  const trailing = /[/\\]$/.test(decoded) && segments.length > 0 ? '/' : '';
  return `/${segments.join('/')}${trailing}`;
}

/** Empty and "." segments dropped, ".." taking one back (never above the root). */
function resolveSegments(parts: string[]): string[] {
  const segments: string[] = [];
  for (const s of parts) {
    if (s === '.' || s === '') continue;
    if (s === '..') segments.pop();
    else segments.push(s);
  }
  return segments;
}

/**
 * The form two canonical paths are compared in, for what apps behind may treat alike: without
 * case (many frameworks route case-insensitively), without the `;parameters` of each segment
 * (servlet containers drop them, so "..;" is "..") and without a trailing slash.
 */
function routeKey(path: string): string {
  return `/${resolveSegments(path.toLowerCase().split('/').map((s) => s.replace(/;.*$/, ''))).join('/')}`;
}

/** Whether a public request's target is one of the webhook paths (compared canonically). */
export function webhookPathMatcher(paths: ReadonlyArray<string | null>): (target: string) => boolean {
  const blocked = new Set(paths.filter((p): p is string => p !== null).map((p) => routeKey(canonicalPath(p)!)));
  return (target) => {
    const path = canonicalPath(target);
    // An undecodable path cannot be told apart from a webhook path: refused as well.
    return path === null || blocked.has(routeKey(path));
  };
}

/** Parses `proxy.trustedProxies` (addresses and CIDRs); null when the list is empty. */
export function trustedProxies(list: readonly string[]): BlockList | null {
  if (list.length === 0) return null;
  const blocks = new BlockList();
  for (const entry of list) {
    const [address, bits] = entry.split('/');
    const family = isIPv6(address) ? 'ipv6' : 'ipv4';
    if (bits === undefined) blocks.addAddress(address, family);
    else blocks.addSubnet(address, Number(bits), family);
  }
  return blocks;
}

/** Whether `proxy.trustedProxies` can take an entry: an IP address, or one with a prefix length. */
export function isAddressOrCidr(entry: string): boolean {
  const [address, bits, extra] = entry.split('/');
  if (extra !== undefined || isIP(address) === 0) return false;
  if (bits === undefined) return true;
  const max = isIPv6(address) ? 128 : 32;
  return /^\d{1,3}$/.test(bits) && Number(bits) <= max;
}

const FORWARDING = ['x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host', 'x-forwarded-port', 'forwarded', 'x-real-ip'];

/**
 * Sets the forwarding headers as a reverse proxy does: the peer's address appended to
 * `X-Forwarded-For` and `Forwarded`, `X-Forwarded-Proto` and `-Host` set. What the client sent
 * is kept (and appended to) only when the peer is a trusted proxy; otherwise it is dropped.
 */
export function setForwarding(req: { headers: Record<string, string | string[] | undefined>; socket: { remoteAddress?: string; encrypted?: boolean } }, trusted: BlockList | null): void {
  const h = req.headers;
  const peer = (req.socket.remoteAddress ?? '').replace(/^::ffff:(?=\d+\.)/, '');
  const fromProxy = trusted !== null && peer !== '' && trusted.check(peer, isIPv6(peer) ? 'ipv6' : 'ipv4');
  const previous = fromProxy ? { for: one(h['x-forwarded-for']), proto: one(h['x-forwarded-proto']), host: one(h['x-forwarded-host']), forwarded: one(h.forwarded) } : null;
  for (const name of FORWARDING) delete h[name];
  const proto = previous?.proto ?? (req.socket.encrypted ? 'https' : 'http');
  const host = previous?.host ?? one(h.host);
  h['x-forwarded-for'] = previous?.for ? `${previous.for}, ${peer}` : peer;
  h['x-forwarded-proto'] = proto;
  if (host !== undefined) h['x-forwarded-host'] = host;
  const element = `for=${isIPv6(peer) ? `"[${peer}]"` : peer};proto=${proto}${host !== undefined ? `;host="${host.replace(/["\\]/g, '')}"` : ''}`;
  h.forwarded = previous?.forwarded ? `${previous.forwarded}, ${element}` : element;
}

function one(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v.join(', ') : v;
}

const HOP_BY_HOP = ['connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'proxy-authenticate', 'proxy-authorization'];

/**
 * Removes hop-by-hop headers (RFC 9110 §7.6.1), those named in `Connection` included. A request's
 * `Transfer-Encoding` stays (`keepFraming`): Node frames the body it pipes to the app by it, and a
 * chunked body sent on unframed would run into the next request on the same connection.
 */
export function stripHopByHop(headers: Record<string, unknown>, keepFraming = false): void {
  const framing = keepFraming ? headers['transfer-encoding'] : undefined;
  const named = headers.connection;
  const list = typeof named === 'string' ? named : Array.isArray(named) ? named.join(',') : '';
  for (const name of list.split(',')) {
    const n = name.trim().toLowerCase();
    if (n !== '') delete headers[n];
  }
  for (const name of HOP_BY_HOP) delete headers[name];
  if (framing !== undefined) headers['transfer-encoding'] = framing;
}
