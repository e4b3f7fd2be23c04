// Resume tokens: `<body>.<HMAC-SHA256>`, base64url, where the body is
// `<session>.<expiry seconds>`, or `<session>.<expiry seconds>~<holder>` for a session held by
// another process than the one its id names (it moved: proxy/moves.ts). The session and its
// holder are part of what is signed, so a token cannot be forged, used for another session, or
// point a resume at another process.
import { MAX_TOKEN_BYTES } from './limits.js';
import { parseConnectionId } from './target.js';
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

export class TokenCodec {
  readonly #key: Buffer;
  readonly #ttlMs: number;
  readonly #holder: string | null;

  /** `holder`: the process issuing (`<node>-<worker>`), written into tokens of sessions whose id names another. */
  constructor(secret: string | null, ttlMs: number, holder: string | null = null) {
    this.#key = secret === null ? randomBytes(32) : Buffer.from(secret, 'utf8');
    this.#ttlMs = ttlMs;
    this.#holder = holder;
  }

  issue(session: string, now: number): string {
    // Rounded up: a token is valid at least tokenTtlMs, never less.
    const expiry = Math.ceil((now + this.#ttlMs) / 1000);
    const holder = this.#holder;
    const body = holder === null || holder === homeOf(session) ? `${session}.${expiry}` : `${session}.${expiry}~${holder}`;
    return `${Buffer.from(body).toString('base64url')}.${this.#mac(body)}`;
  }

  /** The session a token names, or null when it is malformed, forged or expired. */
  verify(token: string, now: number): string | null {
    return this.read(token, now)?.session ?? null;
  }

  /** The session and the process that holds it (`<node>-<worker>`; null when the id names none). */
  read(token: string, now: number): { session: string; holder: string | null } | null {
    const dot = token.indexOf('.');
    if (dot <= 0 || token.length > MAX_TOKEN_BYTES) return null;
    const bodyBytes = Buffer.from(token.slice(0, dot), 'base64url');
    const given = Buffer.from(token.slice(dot + 1), 'base64url');
    // Only the one spelling issue() gives: base64url decoding skips stray characters and spare bits.
    if (bodyBytes.toString('base64url') !== token.slice(0, dot) || given.toString('base64url') !== token.slice(dot + 1)) return null;
    const body = bodyBytes.toString('utf8');
    const expected = Buffer.from(this.#mac(body), 'base64url');
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) return null;
    const sep = body.lastIndexOf('.');
    const tail = HOLDER.exec(body.slice(sep + 1));
    const expiry = Number(tail?.[1]);
    if (sep <= 0 || !tail || !Number.isSafeInteger(expiry) || expiry * 1000 <= now) return null;
    const session = body.slice(0, sep);
    return { session, holder: tail[2] ?? homeOf(session) };
  }

  #mac(body: string): string {
    return createHmac('sha256', this.#key).update(body).digest('base64url');
  }
}

/** The last part of a body: the expiry, then the holder when there is one. */
const HOLDER = /^(\d+)(?:~([a-z0-9]+-\d+))?$/;

/** The process a session id names (`<node>-<worker>`), or null. */
export function homeOf(session: string): string | null {
  const owner = parseConnectionId(session);
  return owner ? `${owner.node}-${owner.worker}` : null;
}
