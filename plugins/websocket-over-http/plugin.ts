// Pushpin's protocols, as a plugin: the websocket-over-http dialect's upstream
// (`webhooks.dialect: websocket-over-http`) and GRIP publishing on the control port.
import type { Plugin } from '../../proxy/plugin.js';
import { createWebhookSender } from '../webhook/plugin.js';
import { WebSocketOverHttp } from './dialect.js';
import { gripPublishRoutes } from './publish-route.js';

export const websocketOverHttpPlugin: Plugin = {
  name: 'websocket-over-http',
  upstream: (host) => (host.config.upstream === 'webhook' && host.config.webhooks.dialect === 'websocket-over-http'
    ? new WebSocketOverHttp(host.config, createWebhookSender(host.config, host), host, host)
    : null),
  // Publishing works whatever the dialect: apps on @fanoutio/grip push through it.
  routes: (config) => gripPublishRoutes(config),
};
