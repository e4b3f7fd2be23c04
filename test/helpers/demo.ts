// The demo as the tests run it: its app (config-examples/demo/app.ts) on port 0 and a sidecar in
// front of it with the demo's own switchboard.yaml, but on port 0 with a fresh signing secret.
import { once } from 'node:events';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { parse as parseYaml } from 'yaml';
import { createDemoApp } from '../../config-examples/demo/app.js';
import { startSidecar, type Sidecar } from './sidecar.js';

export const newSecret = (): string => `whsec_${randomBytes(32).toString('base64')}`;

/** The demo's config, without what the tests choose (ports, the app's address, the log level). */
function demoConfig(): Record<string, unknown> {
  const path = new URL('../../../config-examples/demo/switchboard.yaml', import.meta.url).pathname;
  const { listen: _listen, app: _app, control: _control, log: _log, ...rest } = parseYaml(readFileSync(path, 'utf8')) as Record<string, unknown>;
  return rest;
}

export interface Demo {
  readonly appUrl: string;
  readonly sc: Sidecar;
  readonly webhookSecret: string;
  close(): Promise<void>;
}

export async function startDemo(overrides: Record<string, unknown> = {}): Promise<Demo> {
  const webhookSecret = newSecret();
  const options = { controlUrl: '', webhookSecret };
  const app = createDemoApp(options);
  app.listen(0, '127.0.0.1');
  await once(app, 'listening');
  const appUrl = `http://127.0.0.1:${(app.address() as AddressInfo).port}`;
  const sc = await startSidecar(appUrl, { ...demoConfig(), webhooks: { secret: webhookSecret }, ...overrides });
  options.controlUrl = sc.controlUrl;
  return {
    appUrl,
    sc,
    webhookSecret,
    async close() {
      await sc.close();
      app.closeAllConnections();
      app.close();
    },
  };
}
