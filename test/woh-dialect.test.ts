// The websocket-over-http dialect's requests as a real app sees them: webhook ids that differ
// within one millisecond, and a Grip-Sig the app can verify with its publish key.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startApp, guard } from './helpers/app.js';
import { startSidecar } from './helpers/sidecar.js';
import { TestClient } from './helpers/client.js';
import { WOH_CONTENT_TYPE } from '../plugins/websocket-over-http/codec.js';
import { verifyJwtHs256 } from '../plugins/websocket-over-http/publish-auth.js';

const events = { 'content-type': WOH_CONTENT_TYPE };
const secret = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw';

test('webhook ids of one connection differ even when the clock does not move', async (t) => {
  const app = await startApp((r) => ({ headers: events, body: r.text.startsWith('OPEN') ? 'OPEN\r\n' : '' }));
  const sc = await startSidecar(app.url, { webhooks: { dialect: 'websocket-over-http', secret } });
  t.after(async () => { await sc.close(); await app.close(); });
  // Every request falls in the same millisecond.
  const now = Date.now();
  t.mock.method(Date, 'now', () => now);
  const client = new TestClient(sc.wsUrl());
  await guard(client.opened, 'open');
  client.send('one');
  await app.waitFor((r) => r.text.includes('one'), 'the first message');
  client.send('two');
  await app.waitFor((r) => r.text.includes('two'), 'the second message');
  await client.close(1000);
  await app.waitFor((r) => r.text.startsWith('CLOSE'), 'the close');
  const ids = app.requests.map((r) => r.headers['webhook-id'] as string);
  assert.equal(ids.length, 4);
  assert.equal(new Set(ids).size, ids.length, `ids repeat: ${ids.join(' ')}`);
});

test('with a JWT publish key, every request carries a Grip-Sig that verifies with that key', async (t) => {
  const key = 'a-shared-publish-key-of-some-length';
  const app = await startApp((r) => ({ headers: events, body: r.text.startsWith('OPEN') ? 'OPEN\r\n' : '' }));
  const sc = await startSidecar(app.url, { webhooks: { dialect: 'websocket-over-http' }, grip: { publishAuth: { jwt: { key, iss: 'edge' } } } });
  t.after(async () => { await sc.close(); await app.close(); });
  const client = new TestClient(sc.wsUrl());
  await guard(client.opened, 'open');
  client.send('hi');
  await app.waitFor((r) => r.text.includes('hi'), 'the message');
  assert.equal(app.requests.length, 2);
  for (const r of app.requests) {
    const check = await verifyJwtHs256(r.headers['grip-sig'] as string ?? '', key, Date.now());
    assert.equal(check.ok, true, JSON.stringify(check));
    if (check.ok) assert.equal(check.claims.iss, 'edge');
  }
  await client.close(1000);
});
