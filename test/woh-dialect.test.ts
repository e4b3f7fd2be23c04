// The websocket-over-http dialect's requests, seen by a sender that records them: ids that
// differ within one millisecond, and a Grip-Sig the app can verify with its publish key.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import pino from 'pino';
import { testConfig } from './helpers/sidecar.js';
import { FakeClock } from './helpers/fake-clock.js';
import { createMetrics } from '../proxy/metrics.js';
import type { SessionView } from '../proxy/upstream.js';
import type { WebhookRequest, WebhookResult, WebhookSender } from '../plugins/webhook/sender.js';
import { WOH_CONTENT_TYPE, encodeEvents } from '../plugins/websocket-over-http/codec.js';
import { WebSocketOverHttp } from '../plugins/websocket-over-http/dialect.js';
import { verifyJwtHs256 } from '../plugins/websocket-over-http/publish-auth.js';

const NOW = Date.UTC(2025, 0, 1);

/** Answers every request with events (OPEN to OPEN, nothing to the rest) and keeps it. */
function recordingSender(): { sender: WebhookSender; requests: WebhookRequest[] } {
  const requests: WebhookRequest[] = [];
  const fake = {
    send: async (request: WebhookRequest): Promise<WebhookResult> => {
      requests.push(request);
      const open = request.event === 'open';
      return { answered: true, status: 200, headers: { 'content-type': WOH_CONTENT_TYPE }, body: encodeEvents(open ? [{ type: 'OPEN' }] : []) };
    },
    close: async () => {},
    destroy: () => {},
  };
  return { sender: fake as unknown as WebhookSender, requests };
}

function session(id: string): SessionView {
  return {
    id, mode: 'raw', path: '/ws', url: '/ws', query: {}, remoteAddress: '127.0.0.1', subprotocol: null,
    headers: {}, user: null, meta: {}, connectedAt: NOW,
  };
}

function dialect(overrides: Record<string, unknown>) {
  const { sender, requests } = recordingSender();
  const host = { log: pino({ level: 'silent' }), apply: () => {} };
  const woh = new WebSocketOverHttp(testConfig('http://127.0.0.1:9', overrides), sender, host, { clock: new FakeClock(), metrics: createMetrics() });
  return { woh, requests };
}

test('webhook ids of one connection differ even when the clock does not move', async (t) => {
  // Every request falls in the same millisecond.
  t.mock.method(Date, 'now', () => NOW);
  const { woh, requests } = dialect({});
  const s = session('c1');
  assert.equal((await woh.connect(s)).ok, true);
  for (const [i, text] of ['one', 'two'].entries()) {
    assert.deepEqual(await woh.message(s, [{ seq: i + 1, payload: { kind: 'text', text } }]), { ok: true, effects: {} });
  }
  await woh.disconnect(s, { clientClosed: false, code: 1006, reason: '', durationMs: 0, messagesIn: 2, messagesOut: 0, undelivered: 0 });
  const ids = requests.map((r) => r.id);
  assert.deepEqual(requests.map((r) => r.event), ['open', 'text', 'text', 'disconnect']);
  assert.equal(new Set(ids).size, ids.length, `ids repeat: ${ids.join(' ')}`);
  assert.ok(ids.every((id) => id.startsWith('c1:')), 'ids name their connection');
});

test('with a JWT publish key, every request carries a Grip-Sig that verifies with that key', async () => {
  const key = 'a-shared-publish-key-of-some-length';
  const { woh, requests } = dialect({ grip: { publishAuth: { jwt: { key, iss: 'edge' } } } });
  const s = session('c2');
  assert.equal((await woh.connect(s)).ok, true);
  await woh.message(s, [{ seq: 1, payload: { kind: 'text', text: 'hi' } }]);
  assert.equal(requests.length, 2);
  for (const r of requests) {
    const check = await verifyJwtHs256(r.headers['Grip-Sig'] ?? '', key, Date.now());
    assert.equal(check.ok, true, `${r.event}: ${JSON.stringify(check)}`);
    if (check.ok) assert.equal(check.claims.iss, 'edge');
  }
});
