// The two servers under test, behind one handle: Switchboard (`node dist/proxy/cli.js
// --config <tmp>`) and a bare `ws` server (bare-server.js), each its own process tree,
// each preloaded with the memory probe; plus the tiny app behind Switchboard.
import type { ChildProcess } from 'node:child_process';
import { createWriteStream, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { merge } from '../test/helpers/sidecar.js';
import { cmdline, cpuMs, descendants, freePort, kill, pssBytes, rssBytes, sleep, spawnTracked, stop, tail } from './procs.js';

const here = (file: string) => fileURLToPath(new URL(file, import.meta.url));
const cliPath = here('../proxy/cli.js');
const bareServerPath = here('./bare-server.js');
const appPath = here('./app.js');
const probeUrl = new URL('./probe.js', import.meta.url).href;

export type ServerKind = 'switchboard' | 'bare ws';

export interface Memory {
  readonly rss: number;
  readonly heapUsed: number;
}

export interface TreeMemory {
  readonly rss: number;
  readonly pss: number;
  readonly processes: number;
}

/** A server under test; its numbers come from its own process (tree) only. */
export interface ServerUnderTest {
  readonly kind: ServerKind;
  readonly pid: number;
  /** The WebSocket URL clients connect to. */
  readonly wsUrl: string;
  /** RSS and heap of the main process after two full GCs (asked over IPC). */
  memory(): Promise<Memory>;
  /** RSS and PSS summed over the process and its descendants (workers). */
  treeMemory(): TreeMemory;
  /** A full GC in every process of the tree (SIGUSR2 to the probe), then a pause. */
  gcTree(): Promise<void>;
  /** CPU time (user + system) of the process tree so far, ms. */
  cpuMs(): number;
  /** Sends `body` (JSON) to every subscriber: channel push or the bare server's loop. */
  publish(body: string): Promise<void>;
  /** SIGTERM, then SIGKILL if it has not exited within `graceMs` (default 8 s). */
  stop(graceMs?: number): Promise<void>;
}

export class StartError extends Error {
  readonly exitCode: number | null;
  readonly output: string;
  constructor(message: string, exitCode: number | null, output: string) {
    super(output.trim() ? `${message}:\n${output.trim().split('\n').slice(-5).join('\n')}` : message);
    this.name = 'StartError';
    this.exitCode = exitCode;
    this.output = output;
  }
}

const agent = new Agent({ keepAlive: true, maxSockets: 4 });

/** A loopback HTTP request with a bounded wait. */
export function http(method: string, url: string, body?: string, contentType = 'application/json', timeoutMs = 30_000): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url, {
      method, agent, timeout: timeoutMs,
      headers: body === undefined ? {} : { 'content-type': contentType, 'content-length': Buffer.byteLength(body) },
    }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`${method} ${url}: no answer in ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end(body);
  });
}

/** Waits for `ready()` or the child's exit, whichever comes first. */
async function started(child: ChildProcess, output: () => string, what: string, ready: () => Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new StartError(`${what} exited during startup (${child.signalCode ?? child.exitCode})`, child.exitCode, output());
    }
    if (await ready().catch(() => false)) return;
    await sleep(50);
  }
  throw new StartError(`${what} was not ready within ${timeoutMs} ms`, null, output());
}

function ipcReady(child: ChildProcess): () => Promise<boolean> {
  let ready = false;
  child.on('message', (m: { bench?: string }) => {
    if (m?.bench === 'ready') ready = true;
  });
  return async () => ready;
}

function askMemory(child: ChildProcess): Promise<Memory> {
  const id = Math.floor(Math.random() * 1e9);
  return new Promise<Memory>((resolve, reject) => {
    const t = setTimeout(() => {
      child.off('message', onMessage);
      reject(new Error('the memory probe did not answer in 30 s'));
    }, 30_000);
    const onMessage = (m: { bench?: string; id?: number; gc?: boolean } & Memory) => {
      if (m?.bench !== 'memory' || m.id !== id) return;
      clearTimeout(t);
      child.off('message', onMessage);
      if (!m.gc) return reject(new Error('the probe has no gc(): --expose-gc missing'));
      resolve({ rss: m.rss, heapUsed: m.heapUsed });
    };
    child.on('message', onMessage);
    child.send({ bench: 'memory', id });
  });
}

function treeOf(pid: number): number[] {
  return [pid, ...descendants(pid)];
}

function handle(kind: ServerKind, child: ChildProcess, wsUrl: string, publish: (body: string) => Promise<void>, cleanup: () => void): ServerUnderTest {
  const pid = child.pid!;
  return {
    kind, pid, wsUrl, publish,
    memory: () => askMemory(child),
    treeMemory() {
      const pids = treeOf(pid);
      return {
        rss: pids.reduce((s, p) => s + rssBytes(p), 0),
        pss: pids.reduce((s, p) => s + pssBytes(p), 0),
        processes: pids.length,
      };
    },
    async gcTree() {
      // Only processes that loaded the probe: for any other, SIGUSR2 would be fatal.
      for (const p of treeOf(pid)) if (cmdline(p).includes('probe.js')) kill(p, 'SIGUSR2');
      await sleep(1000);
    },
    cpuMs: () => treeOf(pid).reduce((s, p) => s + cpuMs(p), 0),
    async stop(graceMs = 8000) {
      await stop(child, graceMs);
      cleanup();
    },
  };
}

export interface SwitchboardOptions {
  /** Config merged over the bench defaults (loopback ports, log.level warn, short drain). */
  readonly config?: Record<string, unknown>;
  /** Node flags for the sidecar, e.g. --cpu-prof. */
  readonly nodeFlags?: readonly string[];
  /** Environment added to this process's, e.g. NODE_CLUSTER_SCHED_POLICY. */
  readonly env?: Readonly<Record<string, string>>;
}

export interface SwitchboardUnderTest extends ServerUnderTest {
  readonly controlUrl: string;
  /** A metric value summed over its label sets, from GET /metrics. */
  metric(name: string): Promise<number>;
}

export async function startSwitchboard(options: SwitchboardOptions = {}): Promise<SwitchboardUnderTest> {
  const [port, controlPort] = [await freePort(), await freePort()];
  const config = merge({
    listen: `127.0.0.1:${port}`,
    control: { listen: `127.0.0.1:${controlPort}` },
    log: { level: process.env.BENCH_LOG_LEVEL ?? 'warn' },
    drain: { timeoutMs: 3000 },
  }, options.config ?? {});
  const dir = mkdtempSync(join(tmpdir(), 'switchboard-bench-'));
  const file = join(dir, 'config.json');
  writeFileSync(file, JSON.stringify(config, null, 2));
  const child = spawnTracked(process.execPath, [...(options.nodeFlags ?? []), '--expose-gc', '--import', probeUrl, cliPath, '--config', file], {
    stdio: ['ignore', 'pipe', 'pipe', 'ipc'], env: { ...process.env, ...options.env },
  });
  const output = tail(child);
  keepLog(child, config);
  const controlUrl = `http://127.0.0.1:${controlPort}`;
  const cleanup = () => rmSync(dir, { recursive: true, force: true });
  try {
    await started(child, output, 'switchboard', async () => (await http('GET', `${controlUrl}/readyz`, undefined, undefined, 2000)).status === 200);
  } catch (err) {
    await stop(child, 1000);
    cleanup();
    throw err;
  }
  const base = handle('switchboard', child, `ws://127.0.0.1:${port}/ws`, async (body) => {
    const res = await http('POST', `${controlUrl}/v1/channels/bench/messages`, body);
    if (res.status !== 202) throw new Error(`push answered ${res.status}: ${res.text.slice(0, 200)}`);
  }, cleanup);
  return {
    ...base,
    controlUrl,
    async metric(name) {
      const res = await http('GET', `${controlUrl}/metrics`);
      let sum = 0;
      for (const line of res.text.split('\n')) {
        if (line.startsWith(`${name} `) || line.startsWith(`${name}{`)) sum += Number(line.slice(line.lastIndexOf(' ') + 1));
      }
      return sum;
    },
  };
}

/** With BENCH_LOG_DIR set, each Switchboard's log lines are kept there, one file per process (by node id and port); BENCH_LOG_LEVEL sets their level (warn). */
function keepLog(child: ChildProcess, config: Record<string, unknown>): void {
  const dir = process.env.BENCH_LOG_DIR;
  if (!dir) return;
  const name = `${String(config.nodeId ?? 'switchboard')}-${String(config.listen).split(':').pop()}.log`;
  const out = createWriteStream(join(dir, name), { flags: 'a' });
  child.stdout?.pipe(out);
  child.stderr?.pipe(out);
}

export interface BareOptions {
  readonly mode: 'idle' | 'echo' | 'fanout';
  readonly workers?: number;
  readonly nodeFlags?: readonly string[];
  readonly env?: Readonly<Record<string, string>>;
}

export async function startBare(options: BareOptions): Promise<ServerUnderTest> {
  const port = await freePort();
  const controlPort = options.mode === 'fanout' ? await freePort() : null;
  const args = ['--mode', options.mode, '--port', String(port), '--workers', String(options.workers ?? 1)];
  if (controlPort !== null) args.push('--control', String(controlPort));
  const child = spawnTracked(process.execPath, [...(options.nodeFlags ?? []), '--expose-gc', '--import', probeUrl, bareServerPath, ...args], {
    stdio: ['ignore', 'pipe', 'pipe', 'ipc'], env: { ...process.env, ...options.env },
  });
  const output = tail(child);
  try {
    await started(child, output, 'bare ws server', ipcReady(child));
  } catch (err) {
    await stop(child, 1000);
    throw err;
  }
  return handle('bare ws', child, `ws://127.0.0.1:${port}/ws`, async (body) => {
    if (controlPort === null) throw new Error('the bare server runs without a publish port');
    const res = await http('POST', `http://127.0.0.1:${controlPort}/publish`, body);
    if (res.status !== 202) throw new Error(`publish answered ${res.status}`);
  }, () => {});
}

export interface App {
  readonly url: string;
  /** CPU time (user + system) of the app process so far, ms. */
  cpuMs(): number;
  stop(): Promise<void>;
}

/** The webhook app (app.js) in its own process. */
export async function startApp(): Promise<App> {
  const port = await freePort();
  const child = spawnTracked(process.execPath, [appPath, '--port', String(port)], { stdio: ['ignore', 'pipe', 'pipe', 'ipc'] });
  const output = tail(child);
  await started(child, output, 'bench app', ipcReady(child));
  return { url: `http://127.0.0.1:${port}`, cpuMs: () => cpuMs(child.pid!), stop: () => stop(child, 2000) };
}
