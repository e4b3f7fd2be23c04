// Unit tests of the resume token codec: what a token holds, that only the tokens it issued
// verify (not tampered, truncated or foreign ones), expiry on the clock, and that any text
// verifies to a session or null.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { TokenCodec } from '../proxy/token.js';
import { FakeClock } from './helpers/fake-clock.js';

const SECRET = 'a-secret-of-sixteen-or-more';
const SESSION = 'n1-0-abc123';
const TTL = 60_000;
/** A whole second, so the expiry (kept in whole seconds) is exactly issue time + TTL. */
const START = 1_700_000_000_000;

const codec = (secret: string | null = SECRET, ttlMs = TTL) => new TokenCodec(secret, ttlMs);
const b64 = (s: string) => Buffer.from(s).toString('base64url');

test('a token is base64url(<session>.<expiry in seconds>), a dot, and a 43-character HMAC-SHA256', () => {
  const token = codec().issue(SESSION, START);
  const m = /^([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]{43})$/.exec(token);
  assert.ok(m, token);
  assert.equal(Buffer.from(m[1], 'base64url').toString(), `${SESSION}.${(START + TTL) / 1000}`);
});

test('round trip: a token verifies to the session it was issued for, also by another codec with the same secret', () => {
  const tokens = codec();
  for (const session of [SESSION, 'n1-1-x', 'a.b.c', 'séssion ☃', 'x'.repeat(300)]) {
    assert.equal(tokens.verify(tokens.issue(session, START), START), session, session);
  }
  // Workers share the secret: a token issued by one verifies in all.
  assert.equal(codec().verify(tokens.issue(SESSION, START), START + 1000), SESSION);
  // Without a secret the key is random, but stable for the codec's life.
  const own = codec(null);
  assert.equal(own.verify(own.issue(SESSION, START), START), SESSION);
});

test('a token from another secret, or from another codec without one, is refused', () => {
  const token = codec().issue(SESSION, START);
  assert.equal(codec('another-secret-of-sixteen').verify(token, START), null);
  assert.equal(codec(`${SECRET}x`).verify(token, START), null);
  assert.equal(codec(null).verify(token, START), null);
  assert.equal(codec(null).verify(codec(null).issue(SESSION, START), START), null, 'random keys differ');
});

test('a tampered token is refused: a changed character, another session or a later expiry under the same MAC', () => {
  const tokens = codec();
  const token = tokens.issue(SESSION, START);
  const [body, mac] = token.split('.');
  for (let i = 0; i < token.length; i++) {
    if (token[i] === '.') continue;
    const c = token[i] === 'A' ? 'B' : 'A';
    assert.equal(tokens.verify(token.slice(0, i) + c + token.slice(i + 1), START), null, `character ${i} changed`);
  }
  const expiry = (START + TTL) / 1000;
  assert.equal(tokens.verify(`${b64(`n1-0-other.${expiry}`)}.${mac}`, START), null, 'another session');
  assert.equal(tokens.verify(`${b64(`${SESSION}.${expiry + 3600}`)}.${mac}`, START + TTL), null, 'a later expiry');
  // Another session's valid MAC does not fit this body.
  const otherMac = tokens.issue('n1-0-other', START).split('.')[1];
  assert.equal(tokens.verify(`${body}.${otherMac}`, START), null);
  assert.equal(tokens.verify(`${body}.${mac}.${mac}`, START), null, 'a MAC twice');
  assert.equal(tokens.verify(`${token}x`, START), null, 'a character more');
});

test('only the spelling issue() gives verifies: no padding, no stray characters, no spare bits set', () => {
  const tokens = codec();
  const token = tokens.issue(SESSION, START);
  const [body, mac] = token.split('.');
  // 43 characters carry 258 bits for the MAC's 256: the last one's low two bits are spare.
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
  const last = alphabet.indexOf(mac[42]);
  const spare = `${mac.slice(0, 42)}${alphabet[last ^ 1]}`;
  assert.deepEqual(Buffer.from(spare, 'base64url'), Buffer.from(mac, 'base64url'), 'decodes to the same bytes');
  assert.equal(tokens.verify(`${body}.${spare}`, START), null, 'spare bits set');
  assert.equal(tokens.verify(`${body}.${mac}=`, START), null, 'padded MAC');
  assert.equal(tokens.verify(`${body}=.${mac}`, START), null, 'padded body');
  assert.equal(tokens.verify(`${body}.${mac.slice(0, 20)}*${mac.slice(20)}`, START), null, 'a stray character');
});

test('a truncated token is refused, at every length', () => {
  const tokens = codec();
  const token = tokens.issue(SESSION, START);
  for (let n = 0; n < token.length; n++) assert.equal(tokens.verify(token.slice(0, n), START), null, `first ${n} characters`);
  for (let n = 1; n < token.length; n++) assert.equal(tokens.verify(token.slice(n), START), null, `without the first ${n}`);
});

test('expiry: valid until issue time + tokenTtlMs on the clock, refused from then on', () => {
  const clock = new FakeClock(START);
  const tokens = codec();
  const token = tokens.issue(SESSION, clock.now());
  assert.equal(tokens.verify(token, clock.now()), SESSION);
  clock.advance(TTL - 1);
  assert.equal(tokens.verify(token, clock.now()), SESSION, 'a millisecond before');
  clock.advance(1);
  assert.equal(tokens.verify(token, clock.now()), null, 'at the expiry');
  clock.advance(86_400_000);
  assert.equal(tokens.verify(token, clock.now()), null, 'long after');
  // A token is not valid forever because it was checked early.
  assert.equal(tokens.verify(tokens.issue(SESSION, START), START - 86_400_000), SESSION);
});

test('expiry is kept in whole seconds, rounded up: a token is valid for at least its TTL, and less than a second more', () => {
  const clock = new FakeClock(START + 400);
  const tokens = codec();
  const token = tokens.issue(SESSION, clock.now());
  clock.advanceTo(START + 400 + TTL - 1);
  assert.equal(tokens.verify(token, clock.now()), SESSION, 'valid up to issue time + TTL');
  clock.advanceTo(START + TTL + 999);
  assert.equal(tokens.verify(token, clock.now()), SESSION, 'until the whole second after it');
  clock.advanceTo(START + TTL + 1000);
  assert.equal(tokens.verify(token, clock.now()), null);
  // A TTL under a second still gives a token that is valid when issued.
  const short = codec(SECRET, 400);
  assert.equal(short.verify(short.issue(SESSION, START + 700), START + 700), SESSION);
});

test('garbage is refused with null, never an exception', () => {
  const tokens = codec();
  const valid = tokens.issue(SESSION, START);
  const garbage = [
    '', '.', '..', 'abc', '.abc', 'abc.', 'a.b.c', ' ', '\0', 'null', '☃.☃', '\ud800.\udfff',
    `${b64('')}.${valid.split('.')[1]}`,
    `${b64(SESSION)}.${valid.split('.')[1]}`,
    `.${valid}`,
    `${valid}.`,
    `${valid} `,
    'x'.repeat(513),
    `${'A'.repeat(400)}.${'A'.repeat(200)}`,
  ];
  for (const g of garbage) assert.equal(tokens.verify(g, START), null, JSON.stringify(g.slice(0, 40)));
});

test('a token longer than 512 characters is refused unread, even one the codec signed', () => {
  const tokens = codec();
  const long = tokens.issue('x'.repeat(400), START);
  assert.ok(long.length > 512);
  assert.equal(tokens.verify(long, START), null);
  const longest = tokens.issue('x'.repeat(340), START);
  assert.equal(longest.length, 512);
  assert.equal(tokens.verify(longest, START), 'x'.repeat(340));
});

test('property: any text verifies to a session or null without throwing, and nothing but an issued token verifies', () => {
  const tokens = codec();
  const token = tokens.issue(SESSION, START);
  const base64url = fc.string({ unit: fc.constantFrom(...'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'), maxLength: 80 });
  const text = fc.oneof(
    fc.string({ unit: 'binary', maxLength: 600 }),
    fc.tuple(base64url, base64url).map(([a, b]) => `${a}.${b}`),
    // A real token with a piece cut out or put in.
    fc.tuple(fc.nat({ max: token.length }), fc.nat({ max: 5 }), fc.string({ maxLength: 3 })).map(([at, cut, put]) => token.slice(0, at) + put + token.slice(at + cut)),
  );
  fc.assert(fc.property(text, fc.integer({ min: 0, max: START * 2 }), (s, now) => {
    const v = tokens.verify(s, now);
    if (s === token) assert.equal(v, now < START + TTL ? SESSION : null);
    else assert.equal(v, null, JSON.stringify(s));
  }), { numRuns: 5000 });
});

test('property: any session round-trips, valid from issue to the TTL and never a second after it', () => {
  const session = fc.string({ unit: 'binary', minLength: 1, maxLength: 60 })
    // Sessions are UTF-8 text: strings with lone surrogates do not survive the encoding.
    .filter((s) => Buffer.from(s).toString() === s);
  const ttl = fc.integer({ min: 1000, max: 2_147_483_647 });
  const issuedAt = fc.integer({ min: 0, max: 4_102_444_800_000 });
  fc.assert(fc.property(session, ttl, issuedAt, fc.double({ min: 0, max: 1, noNaN: true }), (s, ttlMs, at, where) => {
    const tokens = codec(SECRET, ttlMs);
    const token = tokens.issue(s, at);
    assert.equal(tokens.verify(token, at), s);
    assert.equal(tokens.verify(token, at + Math.floor(where * (ttlMs - 1))), s);
    assert.equal(tokens.verify(token, at + ttlMs + 1000), null);
    assert.equal(tokens.verify(token, at + ttlMs + 1000 + Math.floor(where * 1e9)), null);
  }), { numRuns: 2000 });
});
