// Credentials from an Authorization header, and the one way secrets are compared.
import { createHash, timingSafeEqual } from 'node:crypto';

/** `<scheme> <value>`, the scheme lower-cased (it is case-insensitive, RFC 9110 §11.1); null otherwise. */
export function splitAuthorization(header: string | undefined): { scheme: string; value: string } | null {
  if (header === undefined) return null;
  const m = /^\s*(\S+)\s+(\S+)\s*$/.exec(header);
  return m === null ? null : { scheme: m[1]!.toLowerCase(), value: m[2]! };
}

/** Compares digests, in constant time: neither the content nor the length shows in the timing. */
export function safeEqual(a: string, b: string): boolean {
  return timingSafeEqual(createHash('sha256').update(a).digest(), createHash('sha256').update(b).digest());
}

/** Whether the header carries `Bearer <token>`. */
export function hasBearer(header: string | undefined, token: string): boolean {
  const credentials = splitAuthorization(header);
  // Compared even when the scheme is wrong, so the answer takes the same time.
  const matches = safeEqual(credentials?.value ?? '', token);
  return credentials?.scheme === 'bearer' && matches;
}
