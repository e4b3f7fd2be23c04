// `npm start`: the example app and Switchboard in front of it, as two processes.
// Ports: the demo's config (8080 public, 8081 control, app on 3000), or PORT (the app),
// SWITCHBOARD_LISTEN and SWITCHBOARD_CONTROL_LISTEN.
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { createInterface } from 'node:readline';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..', '..', '..');
const appPort = process.env.PORT ?? '3000';
const controlListen = process.env.SWITCHBOARD_CONTROL_LISTEN ?? '127.0.0.1:8081';
// One fresh signing secret per run, given to both: Switchboard signs every webhook, the app
// verifies each one (a request to the app's webhook paths from anyone else gets 401).
const env = {
  ...process.env,
  PORT: appPort,
  SWITCHBOARD_APP_URL: `http://127.0.0.1:${appPort}`,
  SWITCHBOARD_CONTROL_LISTEN: controlListen,
  SWITCHBOARD_CONTROL_URL: `http://${controlListen}`,
  SWITCHBOARD_WEBHOOK_SECRET: process.env.SWITCHBOARD_WEBHOOK_SECRET || `whsec_${randomBytes(32).toString('base64')}`,
};

const children: ChildProcess[] = [];
let stopping = false;
let ready = 0;
let ports: { public: number; control: number } | null = null;

/** A child in a process group of its own: a Ctrl-C reaches this launcher only, which stops them in order. */
function run(name: string, args: string[], onLine: (line: string) => void): void {
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'], cwd: root, env, detached: true });
  children.push(child);
  createInterface({ input: child.stdout! }).on('line', (line) => {
    process.stdout.write(`${line}\n`);
    onLine(line);
  });
  child.on('exit', (code, signal) => {
    if (stopping) return;
    process.stderr.write(`${name} exited (${signal ?? code}); stopping the demo\n`);
    void stop(code ?? 1);
  });
}

const exited = (c: ChildProcess) => new Promise((r) => (c.exitCode !== null || c.signalCode !== null ? r(null) : c.once('exit', r)));

/** Switchboard drains first (its disconnect webhooks still reach the app), then the app stops. */
async function stop(code = 0): Promise<void> {
  if (stopping) return;
  stopping = true;
  setTimeout(() => process.exit(code), 35_000).unref();
  for (const child of [...children].reverse()) {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    await exited(child);
  }
  process.exit(code);
}

function banner(): void {
  if (++ready < 2 || !ports) return;
  process.stdout.write([
    '',
    `  Switchboard demo: open http://localhost:${ports.public} in two tabs`,
    `  control port (push API, /metrics, status page): http://127.0.0.1:${ports.control}/`,
    '  push a line to every tab:',
    `    curl -X POST http://127.0.0.1:${ports.control}/v1/channels/chat/messages \\`,
    `      -H 'content-type: application/json' -d '{"from":"curl","text":"hello"}'`,
    '  Ctrl-C stops both (Switchboard drains first).',
    '',
  ].join('\n') + '\n');
}

run('app', [join(here, 'app.js')], (line) => { if (line.startsWith('demo app on')) banner(); });
run('switchboard', [join(root, 'dist', 'proxy', 'cli.js'), '--config', join(root, 'config-examples', 'demo', 'switchboard.yaml')], (line) => {
  if (!line.includes('"msg":"switchboard ready"')) return;
  const { listen, control } = JSON.parse(line) as { listen: { port: number }; control: { port: number } };
  ports = { public: listen.port, control: control.port };
  banner();
});
process.on('SIGINT', () => void stop(0));
process.on('SIGTERM', () => void stop(0));
