// The API Gateway WebSocket management API on the control port, so apps that call
// PostToConnection / GetConnection / DeleteConnection keep working:
//   POST /@connections/{id}   send the body to the connection      → 200
//   GET /@connections/{id}    ConnectedAt, Identity, LastActiveAt   → 200
//   DELETE /@connections/{id} close the connection                  → 204
// An unknown connection is 410 GoneException, as API Gateway answers.
import type { ServerResponse } from 'node:http';
import { decodeSegment, type ControlRoute } from '../../proxy/control-api.js';
import { CloseCode, SwitchboardError } from '../../proxy/errors.js';
import { Push } from '../../proxy/push.js';
import { toConnection } from '../../proxy/target.js';
import { bodyKind, type Payload } from '../../proxy/payload.js';

const pattern = /^\/@connections\/([^/]+)$/;

function gone(res: ServerResponse): void {
  const body = JSON.stringify({ message: null });
  res.writeHead(410, { 'content-type': 'application/json', 'x-amzn-errortype': 'GoneException', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

/** API Gateway sends the data as it is: binary only when the caller says so. */
function payloadOf(contentType: string | undefined, body: Buffer): Payload {
  return bodyKind(contentType) === 'binary' ? { kind: 'binary', data: body } : { kind: 'text', text: body.toString('utf8') };
}

export function apiGatewayRoutes(): ControlRoute[] {
  return [
    {
      method: 'POST', pattern,
      handle: async ({ req, res, match, directory, body }) => {
        const push = new Push(payloadOf(req.headers['content-type'], await body()));
        const { found } = await directory.route(toConnection(decodeSegment(match[1])), push);
        if (!found) return gone(res);
        res.writeHead(200, { 'content-length': 0 });
        res.end();
      },
    },
    {
      method: 'GET', pattern,
      handle: async ({ res, match, directory }) => {
        const info = await directory.info(decodeSegment(match[1]));
        if (!info) return gone(res);
        const body = JSON.stringify({
          ConnectedAt: info.connectedAt,
          Identity: { SourceIp: info.remoteAddress, UserAgent: info.userAgent },
          LastActiveAt: info.lastActiveAt,
        });
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
        res.end(body);
      },
    },
    {
      method: 'DELETE', pattern,
      handle: async ({ res, match, directory }) => {
        const closed = await directory.close(toConnection(decodeSegment(match[1])), CloseCode.normal, 'closed by the app');
        if (closed === 0) return gone(res);
        res.writeHead(204);
        res.end();
      },
    },
  ];
}
