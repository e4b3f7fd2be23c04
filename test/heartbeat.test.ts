// The heartbeat against fake connections and a fake clock: pings after silence,
// terminates after a missed pong, and never cuts off a client that shows life.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FakeClock } from './helpers/fake-clock.js';
import { Heartbeat, type Beating } from '../proxy/heartbeat.js';


/** A connection as the session presents it: frames and pongs set lastSeen. */
class FakeConnection implements Beating {
  lastSeen = 0;
  awaitingPong = false;
  readonly pings: number[] = [];
  readonly terminations: number[] = [];
  /** ms after a ping at which the pong arrives; null = never. */
  pongAfterMs: number | null;
  readonly #clock: FakeClock;

  constructor(clock: FakeClock, pongAfterMs: number | null) {
    this.#clock = clock;
    this.pongAfterMs = pongAfterMs;
  }

  ping(): void {
    this.pings.push(this.#clock.now());
    const after = this.pongAfterMs;
    if (after !== null) this.#clock.setTimeout(() => this.frame(), after);
  }

  terminate(): void {
    this.terminations.push(this.#clock.now());
  }

  /** Any frame, or a pong, from the client. */
  frame(): void {
    this.lastSeen = this.#clock.now();
  }
}

test('a silent connection is pinged once intervalMs has passed, not before', () => {
  const clock = new FakeClock();
  const hb = new Heartbeat({ intervalMs: 1000, timeoutMs: 400 }, clock);
  const c = new FakeConnection(clock, null);
  const t0 = clock.now();
  hb.track(c);
  assert.equal(c.lastSeen, t0, 'track() starts the silence now');
  assert.equal(hb.tracked, 1);

  clock.advanceTo(t0 + 999);
  assert.equal(c.pings.length, 0);
  clock.runUntil(() => c.pings.length > 0, 1000);
  assert.equal(c.pings.length, 1);
  assert.ok(c.pings[0] >= t0 + 1000);
  assert.equal(c.awaitingPong, true);
  hb.stop();
});

test('no pong within timeoutMs of the ping: terminated, once', () => {
  const clock = new FakeClock();
  const hb = new Heartbeat({ intervalMs: 1000, timeoutMs: 400 }, clock);
  const c = new FakeConnection(clock, null);
  hb.track(c);
  clock.runUntil(() => c.pings.length > 0, 3000);
  assert.equal(c.pings.length, 1);
  const pingedAt = c.pings[0];
  clock.advanceTo(pingedAt + 399);
  assert.equal(c.terminations.length, 0, 'not before timeoutMs has passed since the ping');
  clock.advanceTo(pingedAt + 400 + 400);
  assert.equal(c.terminations.length, 1);
  assert.ok(c.terminations[0] >= pingedAt + 400);
  assert.equal(hb.tracked, 0, 'a terminated connection is no longer tracked');
  clock.advance(10_000);
  assert.equal(c.terminations.length, 1, 'terminated only once');
  assert.equal(c.pings.length, 1);
});

test('a connection that answers pongs is never terminated and keeps being pinged', () => {
  const clock = new FakeClock();
  const hb = new Heartbeat({ intervalMs: 100, timeoutMs: 50 }, clock);
  const c = new FakeConnection(clock, 20);
  const t0 = clock.now();
  hb.track(c);
  for (let i = 0; i < 100; i++) clock.advance(10);
  assert.equal(c.terminations.length, 0);
  assert.ok(c.pings.length >= 5, `pinged ${c.pings.length} times in 10 intervals`);
  assert.ok(c.lastSeen > t0, 'pongs update lastSeen');
  for (let i = 1; i < c.pings.length; i++) {
    assert.ok(c.pings[i] - c.pings[i - 1] >= 100, 'a pong counts as life: the next ping waits a full interval');
  }
  assert.equal(hb.tracked, 1);
  hb.stop();
});

test('a connection that keeps sending frames is never pinged nor terminated, even without pongs', () => {
  const clock = new FakeClock();
  const hb = new Heartbeat({ intervalMs: 100, timeoutMs: 50 }, clock);
  const c = new FakeConnection(clock, null);
  hb.track(c);
  for (let i = 0; i < 200; i++) {
    clock.advance(30);
    c.frame();
  }
  assert.equal(c.terminations.length, 0);
  assert.equal(c.pings.length, 0, 'frames every 30 ms leave no 100 ms of silence');
  hb.stop();
});

test('a client that falls silent after being busy is pinged, then terminated', () => {
  const clock = new FakeClock();
  const hb = new Heartbeat({ intervalMs: 100, timeoutMs: 50 }, clock);
  const c = new FakeConnection(clock, null);
  hb.track(c);
  for (let i = 0; i < 20; i++) {
    clock.advance(30);
    c.frame();
  }
  const quietFrom = c.lastSeen;
  clock.advance(99);
  assert.equal(c.pings.length, 0);
  clock.advance(400);
  assert.equal(c.pings.length, 1);
  assert.ok(c.pings[0] >= quietFrom + 100);
  assert.equal(c.terminations.length, 1);
  assert.ok(c.terminations[0] >= c.pings[0] + 50);
});

test('a frame that arrives instead of the pong also counts as life', () => {
  const clock = new FakeClock();
  const hb = new Heartbeat({ intervalMs: 100, timeoutMs: 50 }, clock);
  const c = new FakeConnection(clock, null);
  hb.track(c);
  clock.advance(120);
  assert.equal(c.pings.length, 1);
  clock.advance(10);
  c.frame();
  clock.advance(60);
  assert.equal(c.terminations.length, 0, 'the frame after the ping saved it');
  hb.stop();
});

test('untrack stops pings and termination; the wheel timer goes with the last connection', () => {
  const clock = new FakeClock();
  const hb = new Heartbeat({ intervalMs: 100, timeoutMs: 50 }, clock);
  const a = new FakeConnection(clock, null);
  const b = new FakeConnection(clock, 5);
  hb.track(a);
  hb.track(b);
  assert.equal(hb.tracked, 2);
  hb.untrack(a);
  assert.equal(hb.tracked, 1);
  clock.advance(1000);
  assert.equal(a.pings.length, 0);
  assert.equal(a.terminations.length, 0);
  assert.ok(b.pings.length > 0);
  hb.untrack(b);
  assert.equal(hb.tracked, 0);
  clock.advance(1000);
  assert.equal(clock.pending, 0, 'no timer runs for an empty heartbeat');
});

test('tracking again (a resumed socket) restarts the silence and clears a pending pong', () => {
  const clock = new FakeClock();
  const hb = new Heartbeat({ intervalMs: 100, timeoutMs: 50 }, clock);
  const c = new FakeConnection(clock, null);
  hb.track(c);
  clock.advance(120);
  assert.equal(c.awaitingPong, true);
  hb.track(c);
  assert.equal(c.awaitingPong, false);
  assert.equal(hb.tracked, 1, 'tracked once, not twice');
  const t1 = clock.now();
  clock.advance(99);
  assert.equal(c.terminations.length, 0);
  assert.equal(c.pings.length, 1);
  clock.advance(200);
  assert.equal(c.pings.length, 2);
  assert.ok(c.pings[1] >= t1 + 100);
  hb.stop();
});

// Fails today: after a ping, the next look is at ping + timeoutMs; with timeoutMs > intervalMs
// a client that ponged promptly and then fell silent is not pinged again for timeoutMs.
test('with timeoutMs longer than intervalMs, the next ping still comes intervalMs after the pong', () => {
  const clock = new FakeClock();
  const hb = new Heartbeat({ intervalMs: 100, timeoutMs: 1000 }, clock);
  const c = new FakeConnection(clock, 10);
  hb.track(c);
  clock.advance(150);
  assert.equal(c.pings.length, 1);
  const pongAt = c.pings[0] + 10;
  c.pongAfterMs = null;
  clock.advanceTo(pongAt + 100 + 100);
  assert.equal(c.pings.length, 2, 'a client silent for intervalMs after its pong is pinged again');
  hb.stop();
});

// Fails today: #due() terminates when `lastSeen < now - timeoutMs`, i.e. it measures the
// pong against the time the check happens to run, not against the ping. The wheel runs a
// check up to a tick late (rounding up to its slot), so a pong that came back faster than
// that lateness looks stale and a healthy, fast client is cut off.
test('a fast pong is never mistaken for a missing one (check fires between ticks)', () => {
  for (const pongAfterMs of [0, 1, 5, 20, 45]) {
    const clock = new FakeClock();
    const hb = new Heartbeat({ intervalMs: 100, timeoutMs: 50 }, clock);
    const c = new FakeConnection(clock, pongAfterMs);
    hb.track(c);
    for (let i = 0; i < 200; i++) clock.advance(10);
    assert.equal(c.terminations.length, 0, `a client answering each ping after ${pongAfterMs} ms was terminated after ${c.pings.length} pings`);
    assert.ok(c.pings.length >= 5);
    hb.stop();
  }
});

// Fails today, same cause, with the shipped defaults: timers that fire a few ms late (any
// real event loop) make every ping's check land almost a whole 1 s tick late, so a client
// whose pong takes less than about a second is terminated at its first ping.
test('defaults (25 s / 10 s), timers 3 ms late: a client answering pings in 50 ms stays for 5 minutes', () => {
  const clock = new FakeClock(1_000_000, 3);
  const hb = new Heartbeat({ intervalMs: 25_000, timeoutMs: 10_000 }, clock);
  const c = new FakeConnection(clock, 50);
  hb.track(c);
  for (let i = 0; i < 300; i++) clock.advance(1000);
  assert.equal(c.terminations.length, 0, `terminated after ${c.pings.length} ping(s)`);
  assert.ok(c.pings.length >= 10, `${c.pings.length} pings in 5 minutes`);
  hb.stop();
});
