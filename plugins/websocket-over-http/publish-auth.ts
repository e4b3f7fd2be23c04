// Auth on the GRIP publish endpoint, and the Grip-Sig sent to the app. js-grip sends
// `Authorization: Bearer <JWT>` (HS256, claims {iss, exp: now+600}) when its GRIP_URL has
// iss and key, `Bearer <key>` when it has only a key, and `Basic base64(user:pass)` when
// told to. Facts and sources: docs/websocket-over-http-notes.md.
import { SignJWT, decodeProtectedHeader, errors, jwtVerify } from 'jose';
import { safeEqual, splitAuthorization } from '../../proxy/auth.js';

export type PublishAuth =
  | { readonly scheme: 'none' }
  | { readonly scheme: 'basic'; readonly user: string; readonly pass: string }
  | { readonly scheme: 'bearer'; readonly token: string }
  /** key: bytes, a UTF-8 string, or `base64:<key>` as in a GRIP_URL. iss, when set, must match. */
  | { readonly scheme: 'jwt'; readonly key: Buffer | string; readonly iss?: string };

export type AuthResult =
  | { readonly ok: true }
  | { readonly ok: false; readonly status: 401; readonly headers: Readonly<Record<string, string>>; readonly body: string };

/** Accepts the request when any of the configured schemes accepts its Authorization header. */
export async function verifyPublishAuth(
  header: string | undefined,
  config: PublishAuth | readonly PublishAuth[],
  nowMs: number,
): Promise<AuthResult> {
  const schemes: readonly PublishAuth[] = Array.isArray(config) ? config : [config as PublishAuth];
  if (schemes.length === 0 || schemes.some((s) => s.scheme === 'none')) return { ok: true };
  const credentials = splitAuthorization(header);
  if (credentials !== null) {
    for (const s of schemes) {
      if (s.scheme === 'basic' && credentials.scheme === 'basic' && basicMatches(credentials.value, s.user, s.pass)) return { ok: true };
      if (s.scheme === 'bearer' && credentials.scheme === 'bearer' && safeEqual(credentials.value, s.token)) return { ok: true };
      if (s.scheme === 'jwt' && credentials.scheme === 'bearer') {
        const v = await verifyJwtHs256(credentials.value, s.key, nowMs);
        if (v.ok && (s.iss === undefined || v.claims.iss === s.iss)) return { ok: true };
      }
    }
  }
  const challenge = schemes.every((s) => s.scheme === 'basic') ? 'Basic realm="publish"' : 'Bearer';
  return { ok: false, status: 401, headers: { 'Content-Type': 'text/plain', 'WWW-Authenticate': challenge }, body: 'Unauthorized\n' };
}

function basicMatches(value: string, user: string, pass: string): boolean {
  const decoded = Buffer.from(value, 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon === -1) return false;
  // Both halves are always compared, so timing does not tell which one was wrong.
  const userOk = safeEqual(decoded.slice(0, colon), user);
  const passOk = safeEqual(decoded.slice(colon + 1), pass);
  return userOk && passOk;
}

// ---------------------------------------------------------------------------------------
// JWT (HS256 only).

/** A GRIP key as bytes: `base64:<key>` is decoded, any other string is UTF-8. */
export function gripKeyBytes(key: Buffer | string): Buffer {
  if (Buffer.isBuffer(key)) return key;
  return key.startsWith('base64:') ? Buffer.from(key.slice(7).replace(/ /g, '+'), 'base64') : Buffer.from(key, 'utf8');
}

// WebCrypto refuses an empty HMAC key. HMAC pads every short key with zeros (RFC 2104),
// so one zero byte signs exactly as the empty key does.
function hmacKey(key: Buffer | string): Uint8Array {
  const bytes = gripKeyBytes(key);
  return bytes.length === 0 ? new Uint8Array(1) : bytes;
}

export function signJwtHs256(claims: Readonly<Record<string, unknown>>, key: Buffer | string): Promise<string> {
  return new SignJWT(claims).setProtectedHeader({ alg: 'HS256', typ: 'JWT' }).sign(hmacKey(key));
}

export type JwtFailure = 'malformed' | 'algorithm' | 'signature' | 'no_exp' | 'expired' | 'not_yet_valid';

export type JwtCheck =
  | { readonly ok: true; readonly claims: Readonly<Record<string, unknown>> }
  | { readonly ok: false; readonly reason: JwtFailure };

// Three base64url segments. jose's decoding lets padding through, which a compact JWS never has.
const COMPACT_JWS = /^[\w-]*\.[\w-]*\.[\w-]*$/;

/**
 * Verifies an HS256 JWT. `exp` is required, as Pushpin requires it of a Grip-Sig: a token
 * without one would be good forever. Expired when now >= exp (jsonwebtoken's rule).
 */
export async function verifyJwtHs256(token: string, key: Buffer | string, nowMs: number): Promise<JwtCheck> {
  if (!COMPACT_JWS.test(token)) return { ok: false, reason: 'malformed' };
  try {
    // Only HS256: accepting the token's own choice would let `none` through.
    const { payload } = await jwtVerify(token, hmacKey(key), { algorithms: ['HS256'], requiredClaims: ['exp'], currentDate: new Date(nowMs) });
    return { ok: true, claims: payload };
  } catch (err) {
    return { ok: false, reason: failureOf(err, token) };
  }
}

/** jose's error as a JwtFailure; anything but a jose error is a fault, and is thrown. */
function failureOf(err: unknown, token: string): JwtFailure {
  if (err instanceof errors.JOSEAlgNotAllowed) return 'algorithm';
  if (err instanceof errors.JWSSignatureVerificationFailed) return 'signature';
  if (err instanceof errors.JWTExpired) return 'expired';
  if (err instanceof errors.JWTClaimValidationFailed) {
    // exp missing or not a number; nbf in the future or not a number.
    if (err.claim === 'exp') return 'no_exp';
    if (err.claim === 'nbf') return 'not_yet_valid';
    return 'malformed';
  }
  if (err instanceof errors.JWSInvalid && lacksAlgorithm(token)) return 'algorithm';
  if (err instanceof errors.JOSEError) return 'malformed';
  throw err;
}

// jose calls a header without a usable alg invalid; for the publisher it is the wrong algorithm.
function lacksAlgorithm(token: string): boolean {
  try {
    const { alg } = decodeProtectedHeader(token);
    return typeof alg !== 'string' || alg === '';
  } catch {
    return false;
  }
}

/**
 * The Grip-Sig header Pushpin puts on requests to the app: HS256 over {iss, exp: now+ttl}.
 * serve-grip treats a request as proxied only when this verifies with its publish JWT key.
 */
export function createGripSig(iss: string, key: Buffer | string, nowMs: number, ttlSec = 3600): Promise<string> {
  return signJwtHs256({ iss, exp: Math.floor(nowMs / 1000) + ttlSec }, key);
}

/**
 * Grip-Sig for every request of a dialect. The claims change once a second (exp is in whole
 * seconds) and HS256 is deterministic, so one signature serves every request of that second.
 */
export class GripSigner {
  readonly #iss: string;
  readonly #key: Buffer | string;
  #current: { second: number; token: Promise<string> } | null = null;

  constructor(iss: string, key: Buffer | string) {
    this.#iss = iss;
    this.#key = key;
  }

  sign(nowMs: number): Promise<string> {
    const second = Math.floor(nowMs / 1000);
    if (this.#current?.second !== second) this.#current = { second, token: createGripSig(this.#iss, this.#key, nowMs) };
    return this.#current.token;
  }
}
