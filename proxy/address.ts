// Listen addresses, apart from the config schema: the running proxy needs these, not the
// validator (cluster workers take their config already validated and never load it).
import { isIP } from 'node:net';
import type { Server } from 'node:http';

export interface Address {
  readonly host: string;
  readonly port: number;
}

/** `host:port`, `:port`, `port` or `[v6]:port`. */
export function parseAddress(value: string, defaultHost = '0.0.0.0'): Address | null {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/.exec(value) ?? /^()()(\d{1,5})$/.exec(value);
  if (!m) return null;
  const port = Number(m[3]);
  if (port > 65535) return null;
  const host = m[1] || m[2] || defaultHost;
  return { host, port };
}

export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || (isIP(host) === 4 && host.startsWith('127.'));
}

export class PortInUseError extends Error {
  readonly port: number;
  constructor(what: string, address: Address, options: { cause: unknown }) {
    super(`${what} port ${address.port} on ${address.host} is already in use`, options);
    this.name = 'PortInUseError';
    this.port = address.port;
  }
}

/** Listens, or fails with PortInUseError when the port is taken (the sidecar's ports and the primary's). */
export function listen(server: Server, address: Address, what: string, backlog?: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException) => {
      reject(err.code === 'EADDRINUSE' ? new PortInUseError(what, address, { cause: err }) : err);
    };
    server.once('error', onError);
    server.listen({ port: address.port, host: address.host, backlog }, () => {
      server.off('error', onError);
      resolve();
    });
  });
}
