// Runs the CLI as a child process, for what only a real process shows (signals, workers, exit codes).
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const cliPath = new URL('../../proxy/cli.js', import.meta.url).pathname;

/** Where the kernel's ephemeral range starts: outgoing connections take their source ports from it. */
function ephemeralStart(): number {
  try {
    const start = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]);
    return Number.isInteger(start) && start > 0 ? start : 32768;
  } catch {
    return 32768;
  }
}

function canListen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

/**
 * A port that was free a moment ago (the CLI cannot report a port 0 it was given), below the
 * kernel's ephemeral range (and below `max`): one from that range can be taken as the source port
 * of any outgoing connection before the server meant to listen on it starts.
 */
export async function freePort(max = 65_535): Promise<number> {
  const top = Math.min(max, ephemeralStart());
  for (let i = 0; top - 10_000 >= 1000 && i < 100; i++) {
    const port = 10_000 + Math.floor(Math.random() * (top - 10_000));
    if (await canListen(port)) return port;
  }
  // No room below the range: any free port.
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const port = (server.address() as { port: number }).port;
  await new Promise<void>((r) => server.close(() => r()));
  return port;
}

export function writeConfig(config: object): string {
  const dir = mkdtempSync(join(tmpdir(), 'switchboard-test-'));
  const file = join(dir, 'config.json');
  writeFileSync(file, JSON.stringify(config));
  return file;
}

export interface CliProcess {
  readonly child: ChildProcess;
  readonly output: () => string;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  waitForOutput(pattern: RegExp, what?: string): Promise<void>;
}

export function runCli(args: string[], env: Record<string, string> = {}): CliProcess {
  const child = spawn(process.execPath, [cliPath, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  const listeners: Array<() => void> = [];
  const onData = (d: Buffer) => { out += d.toString(); for (const l of [...listeners]) l(); };
  child.stdout!.on('data', onData);
  child.stderr!.on('data', onData);
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
  return {
    child,
    output: () => out,
    exited,
    waitForOutput(pattern, what = String(pattern)) {
      return new Promise<void>((resolve, reject) => {
        // The output is quoted as it is when the wait gives up, not as it was when it began.
        const timer = setTimeout(() => {
          listeners.splice(listeners.indexOf(check), 1);
          reject(new Error(`gave up waiting: output ${what}; got: ${out.slice(-500)}`));
        }, 15_000);
        const check = () => {
          if (!pattern.test(out)) return;
          clearTimeout(timer);
          listeners.splice(listeners.indexOf(check), 1);
          resolve();
        };
        listeners.push(check);
        check();
      });
    },
  };
}

/** A primary with `workers` workers in front of `appUrl`, on free ports, ready; killed after the test. */
export async function startWorkers(t: { after(fn: () => void): void }, appUrl: string, nodeId: string, workers = 2): Promise<{ cli: CliProcess; pub: number; ctl: number }> {
  const [pub, ctl] = [await freePort(), await freePort()];
  const cli = runCli(['--config', writeConfig({
    listen: `127.0.0.1:${pub}`, control: { listen: `127.0.0.1:${ctl}` }, workers, nodeId,
    app: { url: appUrl }, log: { level: 'info' }, drain: { timeoutMs: 3000 },
  })]);
  t.after(() => { cli.child.kill('SIGKILL'); });
  await cli.waitForOutput(/switchboard primary ready/);
  return { cli, pub, ctl };
}
