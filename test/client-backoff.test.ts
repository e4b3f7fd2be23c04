import { test } from 'node:test';
import assert from 'node:assert/strict';
import { backoffDelay, defaultBackoff, hintDelay, resolveBackoff } from '../client/backoff.js';

const fixed = (value: number) => () => value;

test('backoffDelay: full jitter under an exponential ceiling, capped', () => {
  const options = resolveBackoff({ baseMs: 100, capMs: 1000 });
  const table: Array<[attempt: number, random: number, expected: number]> = [
    [0, 0, 0],
    [0, 0.5, 50],
    [0, 0.999, 99],
    [1, 0.5, 100],
    [2, 0.5, 200],
    [3, 0.5, 400],
    [4, 0.5, 500], // ceiling 1600 capped to 1000
    [4, 0.999, 999],
    [60, 0.5, 500], // 2^60 · base is far past the cap
    [5000, 0.5, 500], // 2 ** 5000 is Infinity; still the cap
  ];
  for (const [attempt, random, expected] of table) {
    assert.equal(backoffDelay(attempt, options, fixed(random)), expected, `attempt ${attempt}, random ${random}`);
  }
});

test('backoffDelay: undefined once maxAttempts attempts were made', () => {
  const options = resolveBackoff({ baseMs: 10, capMs: 10, maxAttempts: 3 });
  const table: Array<[attempt: number, expected: number | undefined]> = [
    [0, 5],
    [2, 5],
    [3, undefined],
    [4, undefined],
  ];
  for (const [attempt, expected] of table) {
    assert.equal(backoffDelay(attempt, options, fixed(0.5)), expected, `attempt ${attempt}`);
  }
  assert.equal(backoffDelay(0, resolveBackoff({ maxAttempts: 0 }), fixed(0.5)), undefined);
});

test('defaults: base 500, cap 30000, unlimited attempts', () => {
  assert.deepEqual(resolveBackoff(), { baseMs: 500, capMs: 30_000, maxAttempts: Infinity });
  assert.deepEqual(defaultBackoff, resolveBackoff({}));
  assert.equal(backoffDelay(10_000, defaultBackoff, fixed(0.5)), 15_000);
});

test('resolveBackoff rejects nonsense, naming the option', () => {
  const table: Array<[options: Record<string, number>, message: RegExp]> = [
    [{ baseMs: -1 }, /^backoff\.baseMs/],
    [{ baseMs: Number.NaN }, /^backoff\.baseMs/],
    [{ capMs: Infinity }, /^backoff\.capMs/],
    [{ baseMs: 100, capMs: 50 }, /^backoff\.capMs: expected >= backoff\.baseMs/],
    [{ maxAttempts: 1.5 }, /^backoff\.maxAttempts/],
    [{ maxAttempts: -1 }, /^backoff\.maxAttempts/],
  ];
  for (const [options, message] of table) {
    assert.throws(() => resolveBackoff(options), { name: 'RangeError', message }, JSON.stringify(options));
  }
});

test('hintDelay: the server\'s afterMs plus up to baseMs of jitter', () => {
  const options = resolveBackoff({ baseMs: 100, capMs: 1000 });
  const table: Array<[afterMs: number, random: number, expected: number]> = [
    [0, 0, 0],
    [1234, 0, 1234],
    [1234, 0.5, 1284],
    [1234, 0.999, 1333],
    [-5, 0, 0], // a negative hint is treated as "now"
  ];
  for (const [afterMs, random, expected] of table) {
    assert.equal(hintDelay(afterMs, options, fixed(random)), expected, `afterMs ${afterMs}, random ${random}`);
  }
});
