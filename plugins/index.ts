// The plugins a sidecar runs with. Each is one record (proxy/plugin.ts) of the
// capabilities it offers; the composition root asks each for what its process needs.
// A new upstream or push source is a new folder here and one line below.
import type { Plugin } from '../proxy/plugin.js';
import { amqpPlugin } from './amqp/plugin.js';
import { apiGatewayPlugin } from './apigateway/plugin.js';
import { webhookPlugin } from './webhook/plugin.js';
import { websocketOverHttpPlugin } from './websocket-over-http/plugin.js';

export const builtinPlugins: readonly Plugin[] = [webhookPlugin, websocketOverHttpPlugin, amqpPlugin, apiGatewayPlugin];
