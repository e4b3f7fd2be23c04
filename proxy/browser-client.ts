// The browser build of the client library (one ES module with no imports, built by esbuild in
// `npm run build`), served on the public port before the reverse proxy, so a page without a
// bundler needs one `<script type="module">` (docs/usage.md, Serving the browser client).
import { readFile } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { sendJson } from './control-api.js';
import { SwitchboardError } from './errors.js';

/** Path on the public port → file in dist/client/browser/. */
export const BROWSER_CLIENT_PATHS: ReadonlyMap<string, string> = new Map([
  ['/switchboard/client.js', 'client.js'],
  ['/switchboard/client.min.js', 'client.min.js'],
]);

const PREFIX = '/switchboard/client.';
const dir = new URL('../client/browser/', import.meta.url);

interface Asset {
  readonly body: Buffer;
  readonly etag: string;
}

/** Read once per process: the files change only with a new build, which is a new process. */
const assets = new Map<string, Promise<Asset | null>>();

function load(file: string): Promise<Asset | null> {
  let asset = assets.get(file);
  if (asset === undefined) {
    asset = readFile(new URL(file, dir)).then(
      (body) => ({ body, etag: `"${createHash('sha256').update(body).digest('base64url').slice(0, 22)}"` }),
      () => null,
    );
    // A missing file (a build without the bundle step) is looked for again on the next request.
    void asset.then((a) => { if (a === null) assets.delete(file); });
    assets.set(file, asset);
  }
  return asset;
}

/**
 * Answers a request for the browser client and returns true; false (nothing sent) for any other
 * path. The query string is ignored, so `?v=…` can bust caches in front.
 */
export function serveBrowserClient(req: IncomingMessage, res: ServerResponse): boolean {
  const url = req.url ?? '/';
  if (!url.startsWith(PREFIX)) return false;
  const query = url.indexOf('?');
  const file = BROWSER_CLIENT_PATHS.get(query === -1 ? url : url.slice(0, query));
  if (file === undefined) return false;
  req.resume();
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    sendJson(res, 405, new SwitchboardError('method_not_allowed').toJSON(), { allow: 'GET, HEAD' });
    return true;
  }
  load(file).then((asset) => {
    if (asset === null) return sendJson(res, 404, new SwitchboardError('not_found', 'the browser client was not built (npm run build)').toJSON());
    const headers = {
      'content-type': 'text/javascript; charset=utf-8',
      etag: asset.etag,
      // Revalidated on every use (a 304 while unchanged): an upgraded sidecar serves its own client at once.
      'cache-control': 'public, no-cache',
      // A page on another origin may load it as a module script, which is fetched with CORS.
      'access-control-allow-origin': '*',
      'x-content-type-options': 'nosniff',
    };
    if (matches(req.headers['if-none-match'], asset.etag)) return void res.writeHead(304, headers).end();
    res.writeHead(200, { ...headers, 'content-length': asset.body.length });
    res.end(req.method === 'HEAD' ? undefined : asset.body);
  }).catch(() => res.destroy());
  return true;
}

/** If-None-Match: `*`, or a list of (possibly weak) tags. */
function matches(header: string | undefined, etag: string): boolean {
  if (header === undefined) return false;
  if (header.trim() === '*') return true;
  return header.split(',').some((tag) => tag.trim().replace(/^W\//, '') === etag);
}
