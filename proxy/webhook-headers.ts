// Which client headers may travel to the app (on webhooks and through the public port), and under which name.

/** Headers only the sidecar sets: a client's are never forwarded, on webhooks or proxied requests. */
export function isSidecarHeader(name: string): boolean {
  return name.startsWith('x-switchboard-') || name === 'webhook-id' || name === 'webhook-timestamp' || name === 'webhook-signature';
}

/** The webhook's User-Agent is the sidecar's; the client's travels under a name of its own. */
export function forwardedName(name: string): string {
  return name === 'user-agent' ? CLIENT_USER_AGENT : name;
}

export const CLIENT_USER_AGENT = 'x-switchboard-client-user-agent';
