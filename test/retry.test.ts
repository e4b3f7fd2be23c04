// Unit tests of the webhook retry policy: how failures are classified, which may be
// retried, how Retry-After is read, and the backoff between attempts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { classifyError, delayBefore, isRetryableStatus, mayRetry, parseRetryAfter, type Attempt } from '../plugins/webhook/retry.js';
import { backoffMs } from '../proxy/backoff.js';
import { MAX_DURATION_MS } from '../proxy/limits.js';

const fixed = (value: number) => () => value;

test('classifyError: a request that never left is not-reached, one that may have arrived is maybe-reached', () => {
  for (const code of ['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'UND_ERR_CONNECT_TIMEOUT', 'EADDRNOTAVAIL']) {
    assert.deepEqual(classifyError(Object.assign(new Error(code), { code })), { kind: 'not-reached', code });
  }
  for (const code of ['ECONNRESET', 'EPIPE', 'UND_ERR_SOCKET', 'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT']) {
    assert.deepEqual(classifyError(Object.assign(new Error(code), { code })), { kind: 'maybe-reached', code });
  }
});

test('classifyError: the code is the error\'s own, else its cause\'s, else its name; a too-large answer is its own kind', () => {
  // fetch wraps the socket error: `TypeError: fetch failed` with the code on its cause.
  assert.deepEqual(classifyError(new TypeError('fetch failed', { cause: Object.assign(new Error('refused'), { code: 'ECONNREFUSED' }) })), { kind: 'not-reached', code: 'ECONNREFUSED' });
  assert.deepEqual(classifyError(Object.assign(new Error('reset'), { code: 'ECONNRESET', cause: { code: 'ECONNREFUSED' } })), { kind: 'maybe-reached', code: 'ECONNRESET' });
  const timeout = new Error('timed out');
  timeout.name = 'TimeoutError';
  assert.deepEqual(classifyError(timeout), { kind: 'maybe-reached', code: 'TimeoutError' });
  assert.deepEqual(classifyError(Object.assign(new Error('answer larger than 10 bytes'), { code: 'ANSWER_TOO_LARGE' })), { kind: 'too-large', code: 'ANSWER_TOO_LARGE' });
  assert.deepEqual(classifyError({ cause: { code: 'ANSWER_TOO_LARGE' } }), { kind: 'too-large', code: 'ANSWER_TOO_LARGE' });
});

test('classifyError: anything thrown, even not an error, is classified as maybe-reached', () => {
  for (const thrown of [null, undefined, 'boom', 42, {}, { cause: null }]) {
    assert.deepEqual(classifyError(thrown), { kind: 'maybe-reached', code: 'unknown' }, String(thrown));
  }
});

test('isRetryableStatus: 408, 429 and every 5xx are retried; other answers are the app\'s verdict', () => {
  for (const status of [408, 429, 500, 502, 503, 504, 599]) assert.equal(isRetryableStatus(status), true, String(status));
  for (const status of [100, 200, 201, 204, 301, 304, 400, 401, 403, 404, 405, 409, 410, 413, 422, 428, 431, 499]) {
    assert.equal(isRetryableStatus(status), false, String(status));
  }
});

test('mayRetry: answers by status; not-reached always; maybe-reached only when idempotent; too-large never', () => {
  const answered = (status: number): Attempt => ({ kind: 'answered', status, retryAfterMs: null });
  const table: Array<[attempt: Attempt, idempotent: boolean, expected: boolean]> = [
    [answered(503), false, true],
    [answered(429), false, true],
    [answered(408), true, true],
    [answered(422), true, false],
    [answered(204), true, false],
    [{ kind: 'not-reached', code: 'ECONNREFUSED' }, false, true],
    [{ kind: 'not-reached', code: 'ECONNREFUSED' }, true, true],
    [{ kind: 'maybe-reached', code: 'ECONNRESET' }, false, false],
    [{ kind: 'maybe-reached', code: 'ECONNRESET' }, true, true],
    [{ kind: 'too-large', code: 'ANSWER_TOO_LARGE' }, false, false],
    [{ kind: 'too-large', code: 'ANSWER_TOO_LARGE' }, true, false],
  ];
  for (const [attempt, idempotent, expected] of table) {
    assert.equal(mayRetry(attempt, { idempotent }), expected, `${JSON.stringify(attempt)}, idempotent ${idempotent}`);
  }
});

test('parseRetryAfter: delta-seconds or an HTTP date, in ms; null when absent or unreadable', () => {
  const now = Date.parse('Wed, 21 Oct 2015 07:28:00 GMT');
  const table: Array<[value: string | string[] | undefined, expected: number | null]> = [
    ['3', 3000],
    ['0', 0],
    [' 7 ', 7000],
    ['120', 120_000],
    [['2', '9'], 2000],
    ['Wed, 21 Oct 2015 07:28:30 GMT', 30_000],
    ['Wed, 21 Oct 2015 07:27:00 GMT', 0], // already past: at once
    [undefined, null],
    ['', null],
    [[], null],
    ['soon', null],
    ['5s', null],
    ['1e3', null],
    // Not delta-seconds and not a date: Date.parse would read these as days in 2001.
    ['1.5', null],
    ['-5', null],
    ['+3', null],
    ['0.5', null],
  ];
  for (const [value, expected] of table) assert.equal(parseRetryAfter(value, now), expected, JSON.stringify(value));
});

test('backoffMs: full jitter under a ceiling that doubles from baseMs per attempt, capped at capMs', () => {
  const options = { baseMs: 100, capMs: 1000 };
  const table: Array<[attempt: number, random: number, expected: number]> = [
    [1, 0, 0],
    [1, 0.5, 50],
    [1, 0.999, 99],
    [2, 0.5, 100],
    [3, 0.5, 200],
    [4, 0.5, 400],
    [5, 0.5, 500], // ceiling 1600, capped to 1000
    [5, 0.999, 999],
    [1000, 0.5, 500],
  ];
  for (const [attempt, random, expected] of table) {
    assert.equal(backoffMs(attempt, options, fixed(random)), expected, `attempt ${attempt}, random ${random}`);
  }
});

test('backoffMs: the doubling stops after 30 steps, so a huge cap is not reached by overflow', () => {
  const options = { baseMs: 1, capMs: MAX_DURATION_MS };
  assert.equal(backoffMs(31, options, fixed(0.5)), 2 ** 29);
  assert.equal(backoffMs(40, options, fixed(0.5)), 2 ** 29, 'the ceiling stays at baseMs · 2^30');
  assert.equal(backoffMs(Number.MAX_SAFE_INTEGER, options, fixed(0.5)), 2 ** 29);
});

test('property: backoffMs is a whole number of ms in [0, capMs] for any attempt, config and random draw', () => {
  const duration = fc.integer({ min: 1, max: MAX_DURATION_MS });
  const random = fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true });
  fc.assert(fc.property(fc.integer(), duration, duration, random, (attempt, baseMs, capMs, r) => {
    const ms = backoffMs(attempt, { baseMs, capMs }, () => r);
    assert.ok(Number.isInteger(ms) && ms >= 0 && ms <= capMs, `${ms} for attempt ${attempt}, base ${baseMs}, cap ${capMs}, random ${r}`);
  }), { numRuns: 5000 });
  // And with the real Math.random.
  fc.assert(fc.property(fc.integer({ min: 1, max: 100 }), duration, duration, (attempt, baseMs, capMs) => {
    const ms = backoffMs(attempt, { baseMs, capMs });
    assert.ok(Number.isInteger(ms) && ms >= 0 && ms <= capMs, `${ms} for attempt ${attempt}, base ${baseMs}, cap ${capMs}`);
  }), { numRuns: 2000 });
});

test('property: for one random draw, a later attempt never waits less', () => {
  const duration = fc.integer({ min: 1, max: MAX_DURATION_MS });
  const random = fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true });
  fc.assert(fc.property(fc.integer({ min: 1, max: 60 }), duration, duration, random, (attempt, baseMs, capMs, r) => {
    const options = { baseMs, capMs };
    assert.ok(backoffMs(attempt + 1, options, () => r) >= backoffMs(attempt, options, () => r));
  }), { numRuns: 3000 });
});

test('delayBefore: the app\'s Retry-After, capped at capMs, wins over the backoff', () => {
  const options = { baseMs: 100, capMs: 1000 };
  const answered = (retryAfterMs: number | null): Attempt => ({ kind: 'answered', status: 503, retryAfterMs });
  assert.equal(delayBefore(3, answered(250), options, fixed(0.5)), 250);
  assert.equal(delayBefore(3, answered(0), options, fixed(0.5)), 0, 'Retry-After: 0 means at once');
  assert.equal(delayBefore(3, answered(60_000), options, fixed(0.5)), 1000);
  // Without one, the backoff of that attempt (ceiling 400 at attempt 3).
  assert.equal(delayBefore(3, answered(null), options, fixed(0.5)), 200);
  assert.equal(delayBefore(3, { kind: 'not-reached', code: 'ECONNREFUSED' }, options, fixed(0.5)), 200);
  assert.equal(delayBefore(1, { kind: 'maybe-reached', code: 'ECONNRESET' }, options, fixed(0.5)), 50);
});
