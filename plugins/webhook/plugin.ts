// Webhooks to the app, as a plugin: the native dialect's upstream (`upstream: webhook`,
// `webhooks.dialect: native`), and the sender every webhook dialect posts with.
import type { Config } from '../../proxy/config.js';
import type { Plugin, SessionHost } from '../../proxy/plugin.js';
import { NativeWebhooks } from './native.js';
import { WebhookSender } from './sender.js';

export function createWebhookSender(config: Readonly<Config>, host: Pick<SessionHost, 'log' | 'metrics' | 'clock'>): WebhookSender {
  const w = config.webhooks;
  return new WebhookSender({
    url: config.app.url,
    timeoutMs: w.timeoutMs,
    connections: w.connections,
    retry: w.retry,
    secret: w.secret,
    // An answer is one message (or a batch's, or websocket-over-http events): limits.maxMessageBytes bounds it.
    maxResponseBytes: config.limits.maxMessageBytes,
  }, host);
}

export const webhookPlugin: Plugin = {
  name: 'webhook',
  upstream: (host) => (host.config.upstream === 'webhook' && host.config.webhooks.dialect === 'native'
    ? new NativeWebhooks(host.config.webhooks, createWebhookSender(host.config, host), host, host)
    : null),
};
