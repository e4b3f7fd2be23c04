// websocket-over-http options and bounds: webhooks.keepAliveIntervalSec sends keep-alive requests
// for an app that asks for none (on the injected clock), and an answer over limits.maxMessageBytes
// fails the connection with 1011 (a refused OPEN with 502), as Pushpin does with its own bound.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { guard, startApp } from './helpers/app.js';
import { startSidecar, testConfig } from './helpers/sidecar.js';
import { TestClient } from './helpers/client.js';
import { FakeClock } from './helpers/fake-clock.js';
import { eventually } from './helpers/eventually.js';
import { Switchboard } from '../proxy/switchboard.js';
import { builtinPlugins } from '../plugins/index.js';
import { createLogger } from '../proxy/log.js';
import { encodeEvents } from '../plugins/websocket-over-http/codec.js';

const events = { 'content-type': 'application/websocket-events' };

test('webhooks.keepAliveIntervalSec: empty keep-alive requests on the clock when the app sets no Keep-Alive-Interval, none when it does', async (t) => {
  const app = await startApp((r) => {
    const quiet = r.url.includes('quiet');
    if (r.text.startsWith('OPEN')) return { headers: quiet ? { ...events, 'keep-alive-interval': 'off' } : events, body: 'OPEN\r\n' };
    return { headers: events, body: r.text === '' ? encodeEvents([{ type: 'TEXT', content: Buffer.from('kept alive') }]) : '' };
  });
  const clock = new FakeClock(Date.now());
  const config = testConfig(app.url, { webhooks: { dialect: 'websocket-over-http', keepAliveIntervalSec: 30 } });
  const sb = new Switchboard(config, { plugins: builtinPlugins, clock, log: createLogger('silent') });
  await sb.start();
  t.after(async () => { sb.destroy(); await app.close(); });
  const url = (path: string) => `ws://127.0.0.1:${sb.publicAddress.port}${path}`;
  const client = new TestClient(url('/ws'));
  const quiet = new TestClient(url('/ws?quiet'));
  await guard(Promise.all([client.opened, quiet.opened]), 'both open');
  const keepAlives = () => app.requests.filter((r) => r.text === '');
  clock.advance(29_000);
  assert.equal(keepAlives().length, 0, 'not before the interval');
  clock.advance(1_000);
  await eventually(() => keepAlives().length >= 1, 'a keep-alive request');
  assert.equal((await client.next()).text, 'kept alive', 'its answer reaches the client');
  clock.advance(30_000);
  await eventually(() => keepAlives().length >= 2, 'the next keep-alive request');
  assert.ok(keepAlives().every((r) => !r.url.includes('quiet')), 'none for the app that turned them off');
  client.ws.terminate();
  quiet.ws.terminate();
});

test('an answer over limits.maxMessageBytes fails the connection with 1011; a too large OPEN answer refuses it with 502', async (t) => {
  const big = encodeEvents([{ type: 'TEXT', content: Buffer.alloc(5000, 0x61) }]);
  const app = await startApp((r) => {
    if (r.text.startsWith('OPEN')) return { headers: events, body: r.url.includes('big-open') ? Buffer.concat([Buffer.from('OPEN\r\n'), big]) : 'OPEN\r\n' };
    return { headers: events, body: r.text.includes('hello') ? big : '' };
  });
  const sc = await startSidecar(app.url, { webhooks: { dialect: 'websocket-over-http' }, limits: { maxMessageBytes: 1024 } });
  t.after(async () => { await sc.close(); await app.close(); });
  const client = new TestClient(sc.wsUrl());
  await guard(client.opened, 'open');
  client.send('hello');
  assert.equal((await guard(client.closed, 'the close')).code, 1011);
  const refused = new TestClient(sc.wsUrl('/ws?big-open'));
  await assert.rejects(guard(refused.opened, 'the refusal'), (err: { status?: number }) => err.status === 502);
});
