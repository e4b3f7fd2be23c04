// The bench side of the load processes: forks them, spreads connections over them and
// over source addresses, and sends them commands with deadlines.
import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { MAX_SOCKETS_PER_PROCESS, type CommandName, type Commands, type FollowMember, type Reply, type Request } from './load-protocol.js';
import { cpuMs, stop, track } from './procs.js';

/** Connections per source address in one connect; 253 addresses × 28k ephemeral ports leave ample room. */
const PER_ADDRESS = 500;

const loadProcessPath = fileURLToPath(new URL('./load-process.js', import.meta.url));

let nextAddress = 0;
/**
 * Source addresses 127.0.0.2…127.0.0.254, handed out in rotation so that sockets left in
 * TIME_WAIT by one run do not starve the next (and 127.0.0.1, which the rest of the
 * machine uses, is left alone).
 */
export function sourceAddresses(connections: number): string[] {
  const n = Math.max(1, Math.min(253, Math.ceil(connections / PER_ADDRESS)));
  const out: string[] = [];
  for (let i = 0; i < n; i++) {
    out.push(`127.0.0.${2 + nextAddress}`);
    nextAddress = (nextAddress + 1) % 253;
  }
  return out;
}

export class LoadProcess {
  readonly #child: ChildProcess;
  readonly #pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  #nextId = 0;
  #exited: Error | null = null;
  sockets = 0;

  private constructor(child: ChildProcess) {
    this.#child = child;
    child.on('message', (reply: Reply) => {
      const p = this.#pending.get(reply.id);
      if (!p) return;
      this.#pending.delete(reply.id);
      if (reply.ok) p.resolve(reply.result);
      else p.reject(new Error(`load process: ${reply.error}`));
    });
    child.on('exit', (code, signal) => {
      this.#exited = new Error(`load process exited (${signal ?? code})`);
      for (const p of this.#pending.values()) p.reject(this.#exited);
      this.#pending.clear();
    });
  }

  static start(): LoadProcess {
    const child = track(fork(loadProcessPath, [], {
      serialization: 'advanced',
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      execArgv: ['--max-old-space-size=2048'],
    }));
    return new LoadProcess(child);
  }

  get pid(): number {
    return this.#child.pid ?? 0;
  }

  call<C extends CommandName>(cmd: C, args: Commands[C][0], timeoutMs = 120_000): Promise<Commands[C][1]> {
    if (this.#exited) return Promise.reject(this.#exited);
    const id = ++this.#nextId;
    return new Promise<Commands[C][1]>((resolve, reject) => {
      const t = setTimeout(() => {
        this.#pending.delete(id);
        reject(new Error(`load process: ${cmd} gave no answer in ${timeoutMs} ms`));
      }, timeoutMs);
      this.#pending.set(id, {
        resolve: (v) => { clearTimeout(t); resolve(v as Commands[C][1]); },
        reject: (e) => { clearTimeout(t); reject(e); },
      });
      this.#child.send({ id, cmd, args } satisfies Request<C>);
    });
  }

  async close(): Promise<void> {
    if (!this.#exited) await this.call('closeAll', {}, 10_000).catch(() => {});
    await stop(this.#child, 2000);
  }
}

/** Several load processes acting as one client population. */
export class LoadGroup {
  readonly processes: LoadProcess[];

  constructor(processes: number) {
    this.processes = Array.from({ length: processes }, () => LoadProcess.start());
  }

  /** A group just large enough for `connections` sockets (at least `min` processes). */
  static sized(connections: number, min = 1): LoadGroup {
    return new LoadGroup(Math.max(min, Math.ceil(connections / MAX_SOCKETS_PER_PROCESS)));
  }

  get sockets(): number {
    return this.processes.reduce((n, p) => n + p.sockets, 0);
  }

  /** CPU time (user + system) of the load processes so far, ms. */
  cpuMs(): number {
    return this.processes.reduce((n, p) => n + cpuMs(p.pid), 0);
  }

  /** Opens `count` more connections, split evenly; throws when some fail. */
  async connect(url: string, count: number, options: { protocol?: string; transport?: 'websocket' | 'sse' | 'long-poll'; concurrency?: number; timeoutMs?: number } = {}): Promise<{ elapsedMs: number }> {
    const n = this.processes.length;
    const start = performance.now();
    const results = await Promise.all(this.processes.map((p, i) => {
      const share = Math.floor(count / n) + (i < count % n ? 1 : 0);
      if (p.sockets + share > MAX_SOCKETS_PER_PROCESS) throw new Error(`a load process would hold ${p.sockets + share} sockets`);
      const timeoutMs = options.timeoutMs ?? 120_000;
      return p.call('connect', {
        url, count: share, protocol: options.protocol, transport: options.transport, addresses: sourceAddresses(share),
        concurrency: options.concurrency ?? 100, timeoutMs,
      }, timeoutMs + 5000).then((r) => {
        p.sockets += r.opened;
        return r;
      });
    }));
    throwIfFailed(results, `of ${count} connections failed`);
    return { elapsedMs: performance.now() - start };
  }

  /**
   * Opens reliable clients that follow their sessions from node to node (followConnect),
   * in consecutive shares of `members`; throws when some fail.
   */
  async follow(members: readonly FollowMember[], options: { pace: 'wait' | 'now'; concurrency?: number; timeoutMs?: number }): Promise<{ elapsedMs: number }> {
    const n = this.processes.length;
    const start = performance.now();
    let from = 0;
    const results = await Promise.all(this.processes.map((p, i) => {
      const size = Math.floor(members.length / n) + (i < members.length % n ? 1 : 0);
      const share = members.slice(from, from + size);
      from += size;
      if (p.sockets + share.length > MAX_SOCKETS_PER_PROCESS) throw new Error(`a load process would hold ${p.sockets + share.length} sockets`);
      const timeoutMs = options.timeoutMs ?? 120_000;
      return p.call('followConnect', {
        members: share, pace: options.pace, addresses: sourceAddresses(share.length),
        concurrency: options.concurrency ?? 100, timeoutMs,
      }, timeoutMs + 5000).then((r) => {
        p.sockets += r.opened;
        return r;
      });
    }));
    throwIfFailed(results, `of ${members.length} clients failed to connect`);
    return { elapsedMs: performance.now() - start };
  }

  all<C extends CommandName>(cmd: C, args: Commands[C][0], timeoutMs?: number): Promise<Array<Commands[C][1]>> {
    return Promise.all(this.processes.map((p) => p.call(cmd, args, timeoutMs)));
  }

  async close(): Promise<void> {
    await Promise.all(this.processes.map((p) => p.close()));
  }
}

/** Throws when any load process reports failed connects, with their errors summed. */
function throwIfFailed(results: ReadonlyArray<{ failed: number; errors: Record<string, number> }>, what: string): void {
  const failed = results.reduce((s, r) => s + r.failed, 0);
  if (failed === 0) return;
  const errors: Record<string, number> = {};
  for (const r of results) for (const [k, v] of Object.entries(r.errors)) errors[k] = (errors[k] ?? 0) + v;
  throw new Error(`${failed} ${what}: ${JSON.stringify(errors)}`);
}
