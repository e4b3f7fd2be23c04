import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startApp } from './helpers/app.js';
import { startSidecar } from './helpers/sidecar.js';
import { connect } from './helpers/client.js';

test('API Gateway @connections: post, get, delete, and 410 Gone for unknown connections', async (t) => {
  const app = await startApp();
  const sc = await startSidecar(app.url);
  t.after(async () => { await sc.close(); await app.close(); });
  const c = await connect(sc.wsUrl(), undefined, { headers: { 'user-agent': 'legacy-sdk/1.0' } });
  const id = app.byPath('/ws/connect')[0].json().connection;

  const posted = await fetch(`${sc.controlUrl}/@connections/${id}`, { method: 'POST', body: '{"hello":"world"}' });
  assert.equal(posted.status, 200);
  const frame = await c.next();
  assert.equal(frame.binary, false);
  assert.equal(frame.text, '{"hello":"world"}');
  const bin = await fetch(`${sc.controlUrl}/@connections/${id}`, { method: 'POST', headers: { 'content-type': 'application/octet-stream' }, body: Buffer.from([1, 2]) });
  assert.equal(bin.status, 200);
  assert.equal((await c.next()).binary, true);

  c.send('activity');
  await app.waitFor((r) => r.url === '/ws/message');
  const got = await fetch(`${sc.controlUrl}/@connections/${id}`);
  assert.equal(got.status, 200);
  const info = await got.json() as any;
  assert.equal(info.Identity.SourceIp, '127.0.0.1');
  assert.equal(info.Identity.UserAgent, 'legacy-sdk/1.0');
  assert.ok(Date.parse(info.ConnectedAt) <= Date.parse(info.LastActiveAt));

  for (const method of ['POST', 'GET', 'DELETE']) {
    const res = await fetch(`${sc.controlUrl}/@connections/unknown-0-x`, { method, body: method === 'POST' ? 'x' : undefined });
    assert.equal(res.status, 410, method);
    assert.equal(res.headers.get('x-amzn-errortype'), 'GoneException');
  }

  const deleted = await fetch(`${sc.controlUrl}/@connections/${id}`, { method: 'DELETE' });
  assert.equal(deleted.status, 204);
  assert.equal((await c.closed).code, 1000);
  assert.equal((await fetch(`${sc.controlUrl}/@connections/${id}`)).status, 410);
});

test('API Gateway routes need the control token when one is set', async (t) => {
  const app = await startApp();
  const sc = await startSidecar(app.url, { control: { token: 'sekret' } });
  t.after(async () => { await sc.close(); await app.close(); });
  assert.equal((await fetch(`${sc.controlUrl}/@connections/x-0-y`)).status, 401);
  assert.equal((await fetch(`${sc.controlUrl}/@connections/x-0-y`, { headers: { authorization: 'Bearer sekret' } })).status, 410);
});
