// Starts a real Switchboard on port 0 with a config built from overrides.
import { validateConfig, type Config } from '../../proxy/config.js';
import { Switchboard } from '../../proxy/switchboard.js';
import { createLogger } from '../../proxy/log.js';
import { builtinPlugins } from '../../plugins/index.js';

export type DeepPartial<T> = { [K in keyof T]?: T[K] extends readonly unknown[] ? T[K] : T[K] extends object | null ? DeepPartial<NonNullable<T[K]>> | null : T[K] };

export function merge(base: Record<string, unknown>, over: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...base };
  for (const [k, v] of Object.entries(over)) {
    const b = out[k];
    out[k] = v && typeof v === 'object' && !Array.isArray(v) && b && typeof b === 'object' && !Array.isArray(b)
      ? merge(b as Record<string, unknown>, v as Record<string, unknown>) : v;
  }
  return out;
}

export interface Sidecar {
  readonly sb: Switchboard;
  readonly config: Readonly<Config>;
  readonly wsUrl: (path?: string) => string;
  readonly httpUrl: string;
  readonly controlUrl: string;
  /** A control-port request. */
  control(method: string, path: string, body?: unknown, headers?: Record<string, string>): Promise<{ status: number; headers: Headers; text: string; json: any }>;
  close(): Promise<void>;
}

export function testConfig(appUrl: string, overrides: Record<string, unknown> = {}): Readonly<Config> {
  return validateConfig(merge({
    listen: '127.0.0.1:0',
    control: { listen: '127.0.0.1:0' },
    app: { url: appUrl },
    log: { level: process.env.TEST_LOG_LEVEL ?? 'silent' },
    webhooks: { retry: { baseMs: 5, capMs: 50 } },
    drain: { timeoutMs: 3000 },
  }, overrides));
}

export async function startSidecar(appUrl: string, overrides: Record<string, unknown> = {}): Promise<Sidecar> {
  const config = testConfig(appUrl, overrides);
  const sb = new Switchboard(config, { plugins: builtinPlugins, log: createLogger(config.log.level), metrics: undefined });
  await sb.start();
  const port = sb.publicAddress.port;
  const controlUrl = `http://127.0.0.1:${sb.controlAddress!.port}`;
  return {
    sb,
    config,
    wsUrl: (path = '/ws') => `ws://127.0.0.1:${port}${path}`,
    httpUrl: `http://127.0.0.1:${port}`,
    controlUrl,
    async control(method, path, body, headers = {}) {
      const init: RequestInit = { method, headers: { ...headers } };
      if (body !== undefined) {
        if (typeof body === 'string' || Buffer.isBuffer(body)) init.body = body as string;
        else {
          init.body = JSON.stringify(body);
          (init.headers as Record<string, string>)['content-type'] ??= 'application/json';
        }
      }
      const res = await fetch(controlUrl + path, init);
      const text = await res.text();
      let json: unknown;
      try { json = JSON.parse(text); } catch { json = undefined; }
      return { status: res.status, headers: res.headers, text, json };
    },
    close: () => sb.close(),
  };
}
