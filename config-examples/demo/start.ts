// `npm start`: the example app and Switchboard in front of it, as two processes.
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..', '..', '..');
const children: ChildProcess[] = [];

function run(name: string, args: string[]): void {
  const child = spawn(process.execPath, args, { stdio: 'inherit', cwd: root });
  children.push(child);
  child.on('exit', (code, signal) => {
    if (stopping) return;
    process.stderr.write(`${name} exited (${signal ?? code}); stopping the demo\n`);
    stop(code ?? 1);
  });
}

let stopping = false;
function stop(code = 0): void {
  stopping = true;
  for (const c of children) c.kill('SIGTERM');
  setTimeout(() => process.exit(code), 2000).unref();
  Promise.all(children.map((c) => new Promise((r) => (c.exitCode !== null ? r(null) : c.once('exit', r))))).then(() => process.exit(code));
}

run('app', [join(here, 'app.js')]);
run('switchboard', [join(root, 'dist', 'proxy', 'cli.js'), '--config', join(root, 'config-examples', 'demo', 'switchboard.yaml')]);
process.stdout.write('\n  Switchboard demo: open http://localhost:8080 in two tabs\n\n');
process.on('SIGINT', () => stop(0));
process.on('SIGTERM', () => stop(0));
