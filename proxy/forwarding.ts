// What the public port forwards to the app: never the headers only Switchboard may set,
// and never a request for the app's webhook paths (unless the operator opts in).

import { isSidecarHeader as isReservedHeader } from './webhook-headers.js';

/** Removes reserved headers from a request before it is proxied (`rawHeaders` too: http-proxy does not read it, the app may). */
export function stripReserved(req: { headers: Record<string, unknown>; rawHeaders: string[] }): void {
  let found = false;
  for (const name of Object.keys(req.headers)) {
    if (isReservedHeader(name)) {
      delete req.headers[name];
      found = true;
    }
  }
  if (!found) return;
  const kept: string[] = [];
  for (let i = 0; i < req.rawHeaders.length; i += 2) {
    if (!isReservedHeader(req.rawHeaders[i].toLowerCase())) kept.push(req.rawHeaders[i], req.rawHeaders[i + 1]);
  }
  req.rawHeaders.splice(0, req.rawHeaders.length, ...kept);
}

/**
 * A request path as an app's router would likely see it: percent-decoded, slashes collapsed,
 * dot segments resolved. Null when it cannot be decoded (the caller refuses it).
 */
export function canonicalPath(target: string): string | null {
  const q = target.indexOf('?');
  const raw = q < 0 ? target : target.slice(0, q);
  let decoded: string;
  try {
    decoded = decodeURIComponent(raw);
  } catch {
    return null;
  }
  const collapsed = `/${decoded.replace(/\\/g, '/').split('/').filter((s) => s !== '').join('/')}`;
  const segments: string[] = [];
  for (const s of collapsed.split('/').slice(1)) {
    if (s === '.' || s === '') continue;
    if (s === '..') segments.pop();
    else segments.push(s);
  }
  const trailing = /[/\\]$/.test(decoded) && segments.length > 0 ? '/' : '';
  return `/${segments.join('/')}${trailing}`;
}

/** Whether a public request's target is one of the webhook paths (compared canonically). */
export function webhookPathMatcher(paths: ReadonlyArray<string | null>): (target: string) => boolean {
  const blocked = new Set(paths.filter((p): p is string => p !== null).map((p) => canonicalPath(p)!.replace(/\/$/, '')));
  return (target) => {
    const path = canonicalPath(target);
    // An undecodable path cannot be told apart from a webhook path: refused as well.
    return path === null || blocked.has(path.replace(/\/$/, ''));
  };
}
