// The session is transport-neutral: over a link of the test's own (frames in memory, no
// socket), it welcomes, delivers pushes in order with seqs, answers pings, takes acks,
// detaches when the link goes and resumes on a new one, and ends with its disconnect
// webhook. An SSE or long-poll link plugs into the same interface.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startApp } from './helpers/app.js';
import { startSidecar } from './helpers/sidecar.js';
import { Session } from '../proxy/session.js';
import { jsonWire, type ClientLink, type LinkListener } from '../proxy/link.js';
import { toConnection } from '../proxy/target.js';
import { Push } from '../proxy/push.js';

class MemoryLink implements ClientLink {
  readonly transport = 'memory';
  readonly wire = jsonWire;
  readonly sent: unknown[] = [];
  listener: LinkListener | null = null;
  closedWith: { code: number; reason: string } | null = null;
  bufferedAmount = 0;
  send(frame: string | Buffer): void { this.sent.push(JSON.parse(frame.toString())); }
  cork(): void {}
  uncork(): void {}
  whenDrained(fn: () => void): void { queueMicrotask(fn); }
  pause(): void {}
  resume(): void {}
  ping(): void {}
  askReconnect(afterMs: number): void { this.sent.push({ type: 'reconnect', afterMs }); }
  close(code: number, reason: string): void {
    this.closedWith = { code, reason };
    this.listener?.onClosed(this, code, reason);
  }
  terminate(): void { this.listener?.onClosed(this, 1006, ''); }
  listen(listener: LinkListener | null): void { this.listener = listener; }
  /** The client sends a frame. */
  frame(value: unknown): void { this.listener?.onFrame(Buffer.from(JSON.stringify(value)), false); }
}

test('a reliable session over a link that is not a WebSocket', async (t) => {
  const app = await startApp();
  const sc = await startSidecar(app.url);
  t.after(async () => { await sc.close(); await app.close(); });
  const { sb } = sc;
  const id = sb.newConnectionId();
  const session = new Session(sb.ctx, { id, mode: 'reliable', path: '/ws', url: '/ws', query: {}, remoteAddress: '127.0.0.1', subprotocol: 'switchboard.v1', headers: {} }, Date.now());
  sb.registry.add(session);
  sb.metrics.sessions.inc();
  const link = new MemoryLink();
  session.attach(link);
  const welcome = link.sent[0] as { type: string; session: string; resumed: boolean };
  assert.deepEqual([welcome.type, welcome.session, welcome.resumed], ['welcome', id, false]);

  for (const text of ['one', 'two']) await sb.directory.route(toConnection(id), new Push({ kind: 'text', text }));
  assert.deepEqual(link.sent.slice(1), [{ type: 'message', seq: 1, data: 'one' }, { type: 'message', seq: 2, data: 'two' }]);
  link.frame({ type: 'ping' });
  assert.deepEqual(link.sent.at(-1), { type: 'pong' });
  link.frame({ type: 'ack', seq: 1 });
  assert.equal(session.outboxMessages, 1, 'the ack released one');

  // The link goes: the session waits for a resume, and holds what is pushed meanwhile.
  link.terminate();
  assert.equal(session.state, 'detached');
  await sb.directory.route(toConnection(id), new Push({ kind: 'text', text: 'three' }));
  const next = new MemoryLink();
  session.attach(next, { lastSeq: 1 });
  assert.deepEqual(next.sent.slice(1), [{ type: 'message', seq: 2, data: 'two' }, { type: 'message', seq: 3, data: 'three' }]);
  assert.equal((next.sent[0] as { resumed: boolean }).resumed, true);

  session.close(4001, 'done');
  assert.deepEqual(next.closedWith, { code: 4001, reason: 'done' });
  assert.equal(session.state, 'closed');
  const disconnect = await app.waitFor((r) => r.url === '/ws/disconnect', 'the disconnect webhook');
  assert.equal(disconnect.json().connection, id);
  assert.equal(disconnect.json().code, 4001);
});
