// One HTTP request on a connection of its own (no keep-alive pool), so a cluster module or a load
// balancer may hand each to a different process; the answer's status and JSON body.
import { request } from 'node:http';

export function httpOnce(base: string, method: string, path: string, headers: Record<string, string>, body?: unknown): Promise<{ status: number; json: any }> {
  return new Promise((resolve, reject) => {
    const req = request(`${base}${path}`, { method, agent: false, headers }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => { text += c; });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, json: text === '' ? null : JSON.parse(text) }));
    });
    req.on('error', reject);
    req.end(body === undefined ? undefined : JSON.stringify(body));
  });
}

/** What an HTTP-transport client sends: frames POSTed with its session's token. */
export const postFrames = (base: string, token: string, body: unknown) =>
  httpOnce(base, 'POST', '/ws', { 'content-type': 'application/json', 'x-switchboard-token': token }, body);
