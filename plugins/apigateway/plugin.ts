// API Gateway's WebSocket management API, as a plugin: its @connections routes.
import type { Plugin } from '../../proxy/plugin.js';
import { apiGatewayRoutes } from './connections.js';

export const apiGatewayPlugin: Plugin = {
  name: 'apigateway',
  routes: () => apiGatewayRoutes(),
};
