// Resume tokens: `<session>.<expiry seconds>.<HMAC-SHA256>`, base64url. The session is
// part of what is signed, so a token cannot be forged or used for another session.
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

export class TokenCodec {
  readonly #key: Buffer;
  readonly #ttlMs: number;

  constructor(secret: string | null, ttlMs: number) {
    this.#key = secret === null ? randomBytes(32) : Buffer.from(secret, 'utf8');
    this.#ttlMs = ttlMs;
  }

  issue(session: string, now: number): string {
    // Rounded up: a token is valid at least tokenTtlMs, never less.
    const body = `${session}.${Math.ceil((now + this.#ttlMs) / 1000)}`;
    return `${Buffer.from(body).toString('base64url')}.${this.#mac(body)}`;
  }

  /** The session a token names, or null when it is malformed, forged or expired. */
  verify(token: string, now: number): string | null {
    const dot = token.indexOf('.');
    if (dot <= 0 || token.length > 512) return null;
    const bodyBytes = Buffer.from(token.slice(0, dot), 'base64url');
    const given = Buffer.from(token.slice(dot + 1), 'base64url');
    // Only the one spelling issue() gives: base64url decoding skips stray characters and spare bits.
    if (bodyBytes.toString('base64url') !== token.slice(0, dot) || given.toString('base64url') !== token.slice(dot + 1)) return null;
    const body = bodyBytes.toString('utf8');
    const expected = Buffer.from(this.#mac(body), 'base64url');
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) return null;
    const sep = body.lastIndexOf('.');
    const expiry = Number(body.slice(sep + 1));
    if (sep <= 0 || !Number.isInteger(expiry) || expiry * 1000 <= now) return null;
    return body.slice(0, sep);
  }

  #mac(body: string): string {
    return createHmac('sha256', this.#key).update(body).digest('base64url');
  }
}
