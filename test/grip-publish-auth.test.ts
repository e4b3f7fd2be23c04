// Auth on the GRIP publish endpoint (Basic, Bearer, HS256 JWT) and the Grip-Sig sent to the app.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { SignJWT } from 'jose';
import { createGripSig, signJwtHs256, verifyJwtHs256, verifyPublishAuth, type PublishAuth, GripSigner } from '../plugins/websocket-over-http/publish-auth.js';

const NOW = Date.UTC(2025, 0, 1);
const nowSec = NOW / 1000;
const b64url = (v: object | string): string => Buffer.from(typeof v === 'string' ? v : JSON.stringify(v)).toString('base64url');
const basic = (user: string, pass: string): string => `Basic ${Buffer.from(`${user}:${pass}`).toString('base64')}`;
const jwt = async (claims: Record<string, unknown>, key: Buffer | string = 'secret'): Promise<string> => `Bearer ${await signJwtHs256(claims, key)}`;
const forge = (header: object, claims: object, sig = ''): string => `Bearer ${b64url(header)}.${b64url(claims)}.${sig}`;
/** A token signed with the given HMAC, whatever its header says. */
const hmacToken = (header: object | string, claims: object | string, key = 'secret', hash = 'sha256'): string => {
  const input = `${b64url(header)}.${b64url(claims)}`;
  return `${input}.${createHmac(hash, key).update(input).digest('base64url')}`;
};

const authCases: [string, string | undefined | Promise<string>, PublishAuth | PublishAuth[], boolean][] = [
  ['none accepts anything', undefined, { scheme: 'none' }, true],
  ['empty list accepts anything', undefined, [], true],
  ['basic: right', basic('pub', 'p:w'), { scheme: 'basic', user: 'pub', pass: 'p:w' }, true],
  ['basic: scheme is case-insensitive', basic('pub', 'pw').replace('Basic', 'basic'), { scheme: 'basic', user: 'pub', pass: 'pw' }, true],
  ['basic: wrong password', basic('pub', 'nope'), { scheme: 'basic', user: 'pub', pass: 'pw' }, false],
  ['basic: wrong user', basic('other', 'pw'), { scheme: 'basic', user: 'pub', pass: 'pw' }, false],
  ['basic: no colon', `Basic ${Buffer.from('pubpw').toString('base64')}`, { scheme: 'basic', user: 'pub', pass: 'pw' }, false],
  ['basic: missing header', undefined, { scheme: 'basic', user: 'pub', pass: 'pw' }, false],
  ['bearer: right', 'Bearer tok123', { scheme: 'bearer', token: 'tok123' }, true],
  ['bearer: wrong', 'Bearer tok124', { scheme: 'bearer', token: 'tok123' }, false],
  ['bearer: basic is not bearer', basic('tok123', ''), { scheme: 'bearer', token: 'tok123' }, false],
  ['jwt: valid, as js-grip signs it', jwt({ iss: 'realm', iat: nowSec, exp: nowSec + 600 }), { scheme: 'jwt', key: 'secret', iss: 'realm' }, true],
  ['jwt: iss not required when not configured', jwt({ exp: nowSec + 600 }), { scheme: 'jwt', key: 'secret' }, true],
  ['jwt: wrong iss', jwt({ iss: 'other', exp: nowSec + 600 }), { scheme: 'jwt', key: 'secret', iss: 'realm' }, false],
  ['jwt: wrong key', jwt({ iss: 'realm', exp: nowSec + 600 }, 'wrong'), { scheme: 'jwt', key: 'secret', iss: 'realm' }, false],
  ['jwt: expired', jwt({ iss: 'realm', exp: nowSec - 1 }), { scheme: 'jwt', key: 'secret', iss: 'realm' }, false],
  ['jwt: expires this second', jwt({ iss: 'realm', exp: nowSec }), { scheme: 'jwt', key: 'secret', iss: 'realm' }, false],
  ['jwt: no exp', jwt({ iss: 'realm' }), { scheme: 'jwt', key: 'secret', iss: 'realm' }, false],
  ['jwt: not yet valid', jwt({ exp: nowSec + 600, nbf: nowSec + 60 }), { scheme: 'jwt', key: 'secret' }, false],
  ['jwt: alg none', forge({ alg: 'none' }, { exp: nowSec + 600 }), { scheme: 'jwt', key: 'secret' }, false],
  ['jwt: HS512 with the right key', `Bearer ${hmacToken({ alg: 'HS512' }, { exp: nowSec + 600 }, 'secret', 'sha512')}`, { scheme: 'jwt', key: 'secret' }, false],
  ['jwt: garbage', 'Bearer a.b', { scheme: 'jwt', key: 'secret' }, false],
  [
    'jwt: base64 key as in a GRIP_URL',
    jwt({ iss: 'realm', exp: nowSec + 600 }, Buffer.from([1, 2, 250, 251])),
    { scheme: 'jwt', key: `base64:${Buffer.from([1, 2, 250, 251]).toString('base64')}`, iss: 'realm' },
    true,
  ],
  ['list: bearer key or jwt, bearer given', 'Bearer k', [{ scheme: 'bearer', token: 'k' }, { scheme: 'jwt', key: 'k' }], true],
  ['list: bearer key or jwt, jwt given', jwt({ exp: nowSec + 5 }, 'k'), [{ scheme: 'bearer', token: 'k' }, { scheme: 'jwt', key: 'k' }], true],
];

for (const [name, header, config, accepted] of authCases) {
  test(`publish auth: ${name}`, async () => {
    const result = await verifyPublishAuth(await header, config, NOW);
    assert.equal(result.ok, accepted);
    if (!result.ok) {
      assert.equal(result.status, 401);
      assert.ok(result.headers['WWW-Authenticate']);
    }
  });
}

test('a tampered JWT payload fails the signature', async () => {
  const token = await signJwtHs256({ iss: 'realm', exp: nowSec + 600 }, 'secret');
  const [h, , s] = token.split('.');
  const body = b64url({ iss: 'admin', exp: nowSec + 600 });
  assert.deepEqual(await verifyJwtHs256(`${h}.${body}.${s}`, 'secret', NOW), { ok: false, reason: 'signature' });
});

test('a tampered JWT signature fails the signature', async () => {
  const token = await signJwtHs256({ iss: 'realm', exp: nowSec + 600 }, 'secret');
  const [h, b, s] = token.split('.') as [string, string, string];
  // The first character carries six bits of the first byte: changing it changes the MAC.
  const tampered = `${h}.${b}.${s[0] === 'A' ? 'B' : 'A'}${s.slice(1)}`;
  assert.deepEqual(await verifyJwtHs256(tampered, 'secret', NOW), { ok: false, reason: 'signature' });
});

test('verifyJwtHs256 checks the well-known jwt.io HS256 example (signature good, no exp)', async () => {
  const token =
    'eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c';
  assert.deepEqual(await verifyJwtHs256(token, 'your-256-bit-secret', NOW), { ok: false, reason: 'no_exp' });
  assert.deepEqual(await verifyJwtHs256(token, 'another-secret', NOW), { ok: false, reason: 'signature' });
});

test('verifyJwtHs256: every reason a correctly signed token is refused for', async () => {
  const exp = nowSec + 600;
  const cases: [string, string, string][] = [
    ['alg none', `${b64url({ alg: 'none' })}.${b64url({ exp })}.`, 'algorithm'],
    ['HS512', hmacToken({ alg: 'HS512', typ: 'JWT' }, { exp }, 'secret', 'sha512'), 'algorithm'],
    ['HS384', hmacToken({ alg: 'HS384' }, { exp }, 'secret', 'sha384'), 'algorithm'],
    ['no alg', hmacToken({ typ: 'JWT' }, { exp }), 'algorithm'],
    ['alg not a string', hmacToken({ alg: 256 }, { exp }), 'algorithm'],
    ['no exp', hmacToken({ alg: 'HS256' }, { iss: 'realm' }), 'no_exp'],
    ['exp not a number', hmacToken({ alg: 'HS256' }, { exp: String(exp) }), 'no_exp'],
    ['exp null', hmacToken({ alg: 'HS256' }, { exp: null }), 'no_exp'],
    ['expired a second ago', hmacToken({ alg: 'HS256' }, { exp: nowSec - 1 }), 'expired'],
    ['expires this second', hmacToken({ alg: 'HS256' }, { exp: nowSec }), 'expired'],
    ['nbf in the future', hmacToken({ alg: 'HS256' }, { exp, nbf: nowSec + 1 }), 'not_yet_valid'],
    ['nbf not a number', hmacToken({ alg: 'HS256' }, { exp, nbf: 'now' }), 'not_yet_valid'],
  ];
  for (const [name, token, reason] of cases) {
    assert.deepEqual(await verifyJwtHs256(token, 'secret', NOW), { ok: false, reason }, name);
  }
});

test('verifyJwtHs256: malformed tokens', async () => {
  const good = await signJwtHs256({ exp: nowSec + 600 }, 'secret');
  const cases: [string, string][] = [
    ['empty', ''],
    ['two segments', 'a.b'],
    ['four segments', `${good}.x`],
    ['not base64url', 'a.b.c'],
    ['padded signature', `${good}=`],
    ['standard base64 characters', good.replace('.', '+.')],
    ['header not JSON', hmacToken('not json', { exp: nowSec + 600 })],
    ['header an array', hmacToken('["HS256"]', { exp: nowSec + 600 })],
    ['claims not JSON', hmacToken({ alg: 'HS256' }, 'not json')],
    ['claims an array', hmacToken({ alg: 'HS256' }, '[1]')],
  ];
  for (const [name, token] of cases) {
    assert.deepEqual(await verifyJwtHs256(token, 'secret', NOW), { ok: false, reason: 'malformed' }, name);
  }
});

test('verifyJwtHs256: nbf now is valid, and the claims come back as sent', async () => {
  const claims = { iss: 'realm', exp: nowSec + 1, nbf: nowSec, extra: { a: [1, 'b'] } };
  assert.deepEqual(await verifyJwtHs256(hmacToken({ alg: 'HS256' }, claims), 'secret', NOW), { ok: true, claims });
});

test('a token signed by jose itself verifies', async () => {
  const token = await new SignJWT({ iss: 'app' }).setProtectedHeader({ alg: 'HS256' }).setExpirationTime(nowSec + 60).sign(Buffer.from('secret'));
  assert.deepEqual(await verifyJwtHs256(token, 'secret', NOW), { ok: true, claims: { iss: 'app', exp: nowSec + 60 } });
});

test('signJwtHs256: header {alg: HS256, typ: JWT} and an HMAC-SHA256 any verifier can check', async () => {
  const token = await signJwtHs256({ iss: 'realm', exp: nowSec + 600 }, 'secret');
  assert.equal(token, hmacToken({ alg: 'HS256', typ: 'JWT' }, { iss: 'realm', exp: nowSec + 600 }));
});

test('an empty key (base64: with nothing after it) signs and verifies as HMAC with an empty key does', async () => {
  const token = await signJwtHs256({ exp: nowSec + 600 }, 'base64:');
  assert.equal(token, hmacToken({ alg: 'HS256', typ: 'JWT' }, { exp: nowSec + 600 }, ''));
  assert.equal((await verifyJwtHs256(token, Buffer.alloc(0), NOW)).ok, true);
  assert.deepEqual(await verifyJwtHs256(token, 'secret', NOW), { ok: false, reason: 'signature' });
});

test('createGripSig: iss and exp one hour ahead, verifiable with the key', async () => {
  const sig = await createGripSig('pushpin', 'changeme', NOW);
  const check = await verifyJwtHs256(sig, 'changeme', NOW);
  assert.deepEqual(check, { ok: true, claims: { iss: 'pushpin', exp: nowSec + 3600 } });
  assert.deepEqual(await verifyJwtHs256(sig, 'changeme', NOW + 3600_000), { ok: false, reason: 'expired' });
});

test('GripSigner signs once a second: requests of one second share the signature, the next second gets its own', async () => {
  const signer = new GripSigner('edge', 'a-shared-publish-key-of-some-length');
  const t0 = Date.UTC(2026, 0, 1, 12, 0, 0, 100);
  const first = signer.sign(t0);
  assert.equal(signer.sign(t0 + 800), first, 'the same second: the same signing');
  const next = await signer.sign(t0 + 1000);
  assert.notEqual(next, await first);
  for (const token of [await first, next]) assert.equal((await verifyJwtHs256(token, 'a-shared-publish-key-of-some-length', t0)).ok, true);
});
