// GRIP publish on the control port, `POST /publish/` (and `/publish`), answering as
// Pushpin does, so @fanoutio/grip's Publisher works against Switchboard unchanged.
import type { Config } from '../../proxy/config.js';
import type { ControlRoute } from '../../proxy/control-api.js';
import { SwitchboardError } from '../../proxy/errors.js';
import { Push } from '../../proxy/push.js';
import { toChannel } from '../../proxy/target.js';
import { NOT_ACCEPTABLE_REPLY, methodNotAllowedReply, parsePublishBody, publishReplyType, publishedReply, type PublishReply } from './publish.js';
import { verifyPublishAuth, type PublishAuth } from './publish-auth.js';
import { isSendableCloseCode } from './codec.js';
import { MAX_PUBLISH_BYTES } from '../../proxy/limits.js';


function schemesOf(config: Readonly<Config>): PublishAuth[] {
  const auth = config.grip.publishAuth;
  if (auth !== null) {
    if ('basic' in auth) return [{ scheme: 'basic', user: auth.basic.user, pass: auth.basic.password }];
    if ('bearer' in auth) return [{ scheme: 'bearer', token: auth.bearer }];
    return [{ scheme: 'jwt', key: auth.jwt.key, iss: auth.jwt.iss }];
  }
  // Without GRIP auth, the control token (if any) guards publishing like every other route.
  return config.control.token === null ? [{ scheme: 'none' }] : [{ scheme: 'bearer', token: config.control.token }];
}

export function gripPublishRoutes(config: Readonly<Config>): ControlRoute[] {
  const schemes = schemesOf(config);
  return [{
    method: '*',
    pattern: /^\/publish\/?$/,
    authenticated: false,
    handle: async ({ req, res, directory, body }) => {
      const reply = (r: PublishReply) => {
        res.writeHead(r.status, r.headers);
        res.end(r.body);
      };
      if (req.method !== 'POST') {
        req.resume();
        return reply(methodNotAllowedReply(req.method ?? ''));
      }
      const auth = await verifyPublishAuth(req.headers.authorization, schemes, Date.now());
      if (!auth.ok) {
        req.resume();
        return reply(auth);
      }
      const type = publishReplyType(req.headers.accept);
      if (type === null) {
        req.resume();
        return reply(NOT_ACCEPTABLE_REPLY);
      }
      let raw: Buffer;
      try {
        raw = await body(MAX_PUBLISH_BYTES);
      } catch (err) {
        if (err instanceof SwitchboardError && err.code === 'too_large') return reply({ status: 413, headers: { 'Content-Type': 'text/plain' }, body: 'Request too large.\n' });
        throw err;
      }
      const parsed = parsePublishBody(raw);
      if (!parsed.ok) return reply({ status: parsed.status, headers: { 'Content-Type': 'text/plain' }, body: parsed.body });
      for (const item of parsed.items) {
        const ws = item.ws;
        if (ws === null) continue;
        const target = toChannel(item.channel);
        if (ws.kind === 'text') await directory.route(target, new Push({ kind: 'text', text: ws.text }));
        else if (ws.kind === 'binary') await directory.route(target, new Push({ kind: 'binary', data: ws.data }));
        else if (ws.kind === 'close') {
          const code = ws.code !== undefined && isSendableCloseCode(ws.code) ? ws.code : 1000;
          await directory.close(target, code, ws.reason ?? '');
        }
        // ping and pong: heartbeats belong to the edge, so publishing them is accepted and skipped.
      }
      reply(publishedReply(type));
    },
  }];
}
