// `npm start`: the example app and Switchboard in front of it, as two processes.
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import { randomBytes } from 'node:crypto';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..', '..', '..');
const children: ChildProcess[] = [];
// One fresh signing secret per run, given to both: Switchboard signs every webhook, the app
// verifies each one (a request to the app's webhook paths from anyone else gets 401).
const env = { ...process.env, SWITCHBOARD_WEBHOOK_SECRET: process.env.SWITCHBOARD_WEBHOOK_SECRET || `whsec_${randomBytes(32).toString('base64')}` };

function run(name: string, args: string[]): void {
  const child = spawn(process.execPath, args, { stdio: 'inherit', cwd: root, env });
  children.push(child);
  child.on('exit', (code, signal) => {
    if (stopping) return;
    process.stderr.write(`${name} exited (${signal ?? code}); stopping the demo\n`);
    void stop(code ?? 1);
  });
}

const exited = (c: ChildProcess) => new Promise((r) => (c.exitCode !== null || c.signalCode !== null ? r(null) : c.once('exit', r)));

let stopping = false;
/** Switchboard drains first (its disconnect webhooks still reach the app), then the app stops. */
async function stop(code = 0): Promise<void> {
  if (stopping) return;
  stopping = true;
  setTimeout(() => process.exit(code), 35_000).unref();
  const [app, switchboard] = children;
  switchboard.kill('SIGTERM');
  await exited(switchboard);
  app.kill('SIGTERM');
  await exited(app);
  process.exit(code);
}

run('app', [join(here, 'app.js')]);
run('switchboard', [join(root, 'dist', 'proxy', 'cli.js'), '--config', join(root, 'config-examples', 'demo', 'switchboard.yaml')]);
process.stdout.write('\n  Switchboard demo: open http://localhost:8080 in two tabs\n\n');
process.on('SIGINT', () => void stop(0));
process.on('SIGTERM', () => void stop(0));
