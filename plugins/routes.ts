// Control-port routes that dialects add (GRIP publish, API Gateway @connections). Apart
// from the upstreams: a workers' primary serves these and loads no client pipeline.
import type { Config } from '../proxy/config.js';
import type { ControlRoute } from '../proxy/control-api.js';
import { apiGatewayRoutes } from './apigateway/connections.js';
import { gripPublishRoutes } from './websocket-over-http/publish-route.js';

/** Control-port routes that dialects add (GRIP publish, API Gateway @connections). */
export function controlRoutes(config: Readonly<Config>): readonly ControlRoute[] {
  return [...gripPublishRoutes(config), ...apiGatewayRoutes()];
}
