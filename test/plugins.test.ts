// Plugins join through one record of capabilities: refused at construction when two give the
// upstream, share a name or add a route twice; a push source, a relay and routes of a plugin of
// one's own run in the sidecar's start, readiness and drain order.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startApp } from './helpers/app.js';
import { testConfig } from './helpers/sidecar.js';
import { connect } from './helpers/client.js';
import { Switchboard } from '../proxy/switchboard.js';
import { builtinPlugins } from '../plugins/index.js';
import { PluginError, type Part, type Plugin, type PushRoute } from '../proxy/plugin.js';
import { Push } from '../proxy/push.js';
import { toAll } from '../proxy/target.js';
import { createLogger } from '../proxy/log.js';

const config = testConfig('http://127.0.0.1:9');
const build = (plugins: readonly Plugin[]) => new Switchboard(config, { plugins, log: createLogger('silent') });

test('a plugin set is refused when two give the upstream, two share a name, none gives the upstream, or a route is added twice', () => {
  const webhook = builtinPlugins.find((p) => p.name === 'webhook')!;
  assert.throws(() => build([...builtinPlugins, { ...webhook, name: 'another' }]), (err: Error) => err instanceof PluginError && /both "webhook" and "another" give the upstream/.test(err.message));
  assert.throws(() => build([...builtinPlugins, { name: 'webhook' }]), (err: Error) => err instanceof PluginError && /registered twice/.test(err.message));
  assert.throws(() => build(builtinPlugins.filter((p) => p !== webhook)), (err: Error) => err instanceof PluginError && /no plugin gives the upstream/.test(err.message));
  const healthz: Plugin = { name: 'shadow', routes: () => [{ method: 'GET', pattern: /^\/healthz$/, handle: () => {} }] };
  const sb = build([...builtinPlugins, healthz]);
  // The control API is built at start; the duplicate is refused there, before anything listens.
  return assert.rejects(sb.start(), /GET \^\\\/healthz\$ is registered twice/).finally(() => sb.destroy());
});

test('a plugin of one\'s own: its push source starts with the sidecar, counts in readiness, routes pushes, drains first', async (t) => {
  const events: string[] = [];
  let ready = false;
  let sb: Switchboard;
  let directory: PushRoute | null = null;
  const source: Plugin = {
    name: 'test-source',
    pushSource: (host) => {
      directory = host.directory;
      const part: Part = {
        name: 'test source',
        start: async () => { events.push('start'); },
        drain: async () => { events.push(`drain with ${sb.registry.size} session(s)`); },
        close: async () => { events.push(`close with ${sb.registry.size} session(s)`); },
        destroy: () => { events.push('destroy'); },
        notReady: () => (ready ? null : 'test source is not connected'),
      };
      return part;
    },
    routes: () => [{ method: 'GET', pattern: /^\/test-source$/, handle: ({ res }) => void res.writeHead(204).end() }],
  };
  const app = await startApp();
  sb = new Switchboard(testConfig(app.url), { plugins: [...builtinPlugins, source], log: createLogger('silent') });
  await sb.start();
  t.after(async () => { sb.destroy(); await app.close(); });
  const controlUrl = `http://127.0.0.1:${sb.controlAddress!.port}`;
  assert.deepEqual(events, ['start']);
  assert.equal((await fetch(`${controlUrl}/test-source`)).status, 204, 'its route is served');
  const notReady = await fetch(`${controlUrl}/readyz`);
  assert.equal(notReady.status, 503);
  assert.equal(((await notReady.json()) as { reason: string }).reason, 'test source is not connected');
  ready = true;
  assert.equal((await fetch(`${controlUrl}/readyz`)).status, 200);

  const client = await connect(`ws://127.0.0.1:${sb.publicAddress.port}/ws`);
  assert.deepEqual(await directory!.route(toAll, new Push({ kind: 'text', text: 'from the source' })), { counts: { delivered: 1, queued: 0, dropped: 0 }, published: false, found: true });
  assert.equal((await client.next()).text, 'from the source');
  await sb.close();
  assert.deepEqual(events.slice(0, 3), ['start', 'drain with 1 session(s)', 'close with 0 session(s)'], 'drained before the sessions closed, closed after');
  assert.equal((await client.closed).code, 1012);
});
