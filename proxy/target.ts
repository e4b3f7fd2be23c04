// Who a push (or a close) is for. A tagged union: every site that dispatches on it is an
// exhaustive `switch`, so a new kind is a compile error wherever it is not yet handled,
// never a silent broadcast.

export type Target =
  | { readonly kind: 'connection'; readonly id: string }
  | { readonly kind: 'user'; readonly name: string }
  | { readonly kind: 'channel'; readonly name: string }
  | { readonly kind: 'all' };

export type TargetKind = Target['kind'];

/** Connection ids are `<node>-<worker>-<unique>`: a push by id finds its node and process. */
export function parseConnectionId(id: string): { node: string; worker: number } | null {
  const m = /^([a-z0-9]+)-(\d+)-[\w-]+$/.exec(id);
  return m ? { node: m[1], worker: Number(m[2]) } : null;
}

export const toConnection = (id: string): Target => ({ kind: 'connection', id });
export const toUser = (name: string): Target => ({ kind: 'user', name });
export const toChannel = (name: string): Target => ({ kind: 'channel', name });
export const toAll: Target = Object.freeze({ kind: 'all' });

/** For the `default` of an exhaustive switch: the compiler proves it is never reached. */
export function unreachable(value: never): never {
  throw new TypeError(`unhandled case ${JSON.stringify(value)}`);
}

/** A target from its kind and name, as the wire formats carry it; null when they name none. */
export function targetOf(kind: string | undefined, name: string | undefined): Target | null {
  switch (kind) {
    case 'all': return toAll;
    case 'connection': return name ? toConnection(name) : null;
    case 'user': return name ? toUser(name) : null;
    case 'channel': return name ? toChannel(name) : null;
    default: return null;
  }
}

/** The name a target carries (a connection's id); null for everyone. */
export function nameOf(target: Target): string | null {
  switch (target.kind) {
    case 'connection': return target.id;
    case 'user':
    case 'channel': return target.name;
    case 'all': return null;
    default: return unreachable(target);
  }
}
