// A real RabbitMQ for the amqp tests. `AMQP_URL` names a running broker; otherwise, when
// `rabbitmq-server` is installed, each test file starts a private node of its own (own
// node name, ports and data directory in a temp dir), which it can stop and start again
// for the restart test. With neither, the tests skip — or fail under CI=true.
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync, closeSync } from 'node:fs';
import { freePort } from './process.js';
import { tmpdir } from 'node:os';
import { delimiter, dirname, join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { connect, type Channel, type ChannelModel, type ConsumeMessage } from 'amqplib';
import { guard } from './app.js';
import { eventually } from './eventually.js';

export interface Rabbit {
  readonly url: string;
  /** True when this helper runs the broker: `stop()` and `start()` work. */
  readonly owned: boolean;
  /** Stops the broker (clients see their connections close; connects are refused). */
  stop(): Promise<void>;
  /** Starts it again with the same data: durable queues and persistent messages survive. */
  start(): Promise<void>;
  rabbitmqctl(...args: string[]): Promise<string>;
  /** Stops an owned broker and removes its data. */
  close(): Promise<void>;
}

/** Debian's /usr/sbin wrapper re-runs everything as the rabbitmq user; the scripts behind it do not. */
function findServer(): string | null {
  const candidates = [process.env.RABBITMQ_SERVER, '/usr/lib/rabbitmq/bin/rabbitmq-server'];
  for (const dir of (process.env.PATH ?? '').split(delimiter)) if (dir) candidates.push(join(dir, 'rabbitmq-server'));
  candidates.push('/usr/sbin/rabbitmq-server', '/usr/local/sbin/rabbitmq-server', '/opt/homebrew/sbin/rabbitmq-server');
  for (const c of candidates) {
    if (!c || !existsSync(c)) continue;
    if (c === '/usr/sbin/rabbitmq-server' && existsSync('/usr/lib/rabbitmq/bin/rabbitmq-server')) continue;
    return c;
  }
  return null;
}

const MISSING = 'no RabbitMQ: set AMQP_URL=amqp://… or install rabbitmq-server (apt-get install rabbitmq-server)';

/** A skip reason for `test(…, { skip })`; false when a broker can be had. Under CI=true never skips: the helper then fails loudly. */
export function rabbitSkip(): string | false {
  if (process.env.AMQP_URL || findServer() !== null) return false;
  return process.env.CI === 'true' ? false : MISSING;
}

function run(file: string, args: string[], env: NodeJS.ProcessEnv, timeoutMs = 60_000): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    execFile(file, args, { env, timeout: timeoutMs }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 1) : 0;
      resolve({ code, out: `${stdout}${stderr}` });
    });
  });
}

export async function startRabbit(): Promise<Rabbit> {
  const external = process.env.AMQP_URL;
  if (external) {
    const unavailable = async () => { throw new Error('stop()/start() need a broker run by the test helper (unset AMQP_URL)'); };
    return { url: external, owned: false, stop: unavailable, start: unavailable, rabbitmqctl: unavailable, close: async () => {} };
  }
  const server = findServer();
  if (server === null) throw new Error(MISSING);
  const ctl = join(dirname(server), 'rabbitmqctl');
  const dir = mkdtempSync(join(tmpdir(), 'sb-rabbit-'));
  writeFileSync(join(dir, 'enabled_plugins'), '[].\n');
  writeFileSync(join(dir, 'rabbitmq-env.conf'), '');
  const port = await freePort();
  // The CLI tools take ports from DIST_PORT + 10000 upwards: those stay below the ephemeral range too.
  const dist = await freePort(20_000);
  const node = `sbtest${process.pid}${randomBytes(3).toString('hex')}@localhost`;
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    // Erlang keeps its cookie in $HOME; ours stays in the temp dir.
    HOME: dir,
    RABBITMQ_NODENAME: node,
    RABBITMQ_NODE_IP_ADDRESS: '127.0.0.1',
    RABBITMQ_NODE_PORT: String(port),
    RABBITMQ_DIST_PORT: String(dist),
    RABBITMQ_MNESIA_BASE: join(dir, 'mnesia'),
    RABBITMQ_LOG_BASE: join(dir, 'log'),
    RABBITMQ_ENABLED_PLUGINS_FILE: join(dir, 'enabled_plugins'),
    RABBITMQ_CONFIG_FILE: join(dir, 'rabbitmq'),
    RABBITMQ_ADVANCED_CONFIG_FILE: join(dir, 'advanced.config'),
    RABBITMQ_CONF_ENV_FILE: join(dir, 'rabbitmq-env.conf'),
    RABBITMQ_PID_FILE: join(dir, 'rabbitmq.pid'),
  };
  const output = join(dir, 'server.out');
  let child: ChildProcess | null = null;
  let exited: Promise<void> = Promise.resolve();

  const killGroup = () => {
    if (child?.pid !== undefined && child.exitCode === null) {
      try { process.kill(-child.pid, 'SIGKILL'); } catch { /* already gone */ }
    }
  };
  // A test process that dies without its after-hooks takes its broker and data with it.
  const onExit = () => {
    killGroup();
    rmSync(dir, { recursive: true, force: true });
  };
  process.once('exit', onExit);

  const rabbitmqctl = async (...args: string[]) => {
    const r = await run(ctl, ['-n', node, ...args], env);
    if (r.code !== 0) throw new Error(`rabbitmqctl ${args.join(' ')} exited ${r.code}: ${r.out.trim()}`);
    return r.out;
  };

  const start = async () => {
    const fd = openSync(output, 'a');
    const c = spawn(server, [], { env, detached: true, stdio: ['ignore', fd, fd] });
    closeSync(fd);
    child = c;
    exited = new Promise((resolve) => c.once('exit', () => resolve()));
    let last = '';
    try {
      await eventually(async () => {
        if (c.exitCode !== null) throw new Error(`rabbitmq-server exited ${c.exitCode}:\n${readFileSync(output, 'utf8').slice(-2000)}`);
        // Fails at once while the node is not registered yet; waits while it boots.
        const r = await run(ctl, ['-n', node, 'await_startup', '--timeout', '30'], env);
        last = r.out;
        return r.code === 0;
      }, () => `rabbitmq-server to start in 60 s:\n${last}\n${readFileSync(output, 'utf8').slice(-2000)}`, 60_000, 200);
    } catch (err) {
      killGroup();
      throw err;
    }
  };

  const stop = async () => {
    if (child === null || child.exitCode !== null) return;
    const r = await run(ctl, ['-n', node, 'stop'], env, 30_000);
    if (r.code !== 0) killGroup();
    await guard(exited, 'rabbitmq-server to exit', 30_000).catch(() => killGroup());
  };

  await start();
  return {
    url: `amqp://guest:guest@127.0.0.1:${port}`,
    owned: true,
    // The RabbitMQ application, not the Erlang node: clients lose their connections and are
    // refused until it is back, and durable state is recovered from disk, as in a restart,
    // in about a second instead of several.
    stop: async () => { await rabbitmqctl('stop_app'); },
    start: async () => { await rabbitmqctl('start_app'); await rabbitmqctl('await_startup'); },
    rabbitmqctl,
    async close() {
      await stop();
      process.off('exit', onExit);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A unique name prefix, so tests sharing one broker (AMQP_URL) do not see each other. */
export function uniqueName(what: string): string {
  return `t${randomBytes(4).toString('hex')}.${what}`;
}

// ── a test-side AMQP client ─────────────────────────────────────────────────────

export interface Collector {
  readonly messages: ConsumeMessage[];
  /** Resolves once `n` messages (in total) have arrived. */
  waitFor(n: number, what?: string, ms?: number): Promise<ConsumeMessage[]>;
}

export class AmqpClient {
  readonly model: ChannelModel;
  readonly channel: Channel;

  private constructor(model: ChannelModel, channel: Channel) {
    this.model = model;
    this.channel = channel;
  }

  static async open(url: string): Promise<AmqpClient> {
    const model = await connect(url);
    model.on('error', () => {});
    const channel = await model.createChannel();
    channel.on('error', () => {});
    return new AmqpClient(model, channel);
  }

  /** A queue bound to `exchange` with `pattern`, consumed into a collector. */
  async collect(exchange: string, pattern: string, queue = ''): Promise<Collector & { queue: string }> {
    await this.channel.assertExchange(exchange, 'topic', { durable: true });
    const q = await this.channel.assertQueue(queue, queue === '' ? { exclusive: true } : { durable: true });
    await this.channel.bindQueue(q.queue, exchange, pattern);
    return this.consume(q.queue);
  }

  async consume(queue: string): Promise<Collector & { queue: string }> {
    const messages: ConsumeMessage[] = [];
    const waiters: Array<{ n: number; resolve: () => void }> = [];
    await this.channel.consume(queue, (msg) => {
      if (!msg) return;
      messages.push(msg);
      for (const w of [...waiters]) if (messages.length >= w.n) { waiters.splice(waiters.indexOf(w), 1); w.resolve(); }
    }, { noAck: true });
    return {
      queue,
      messages,
      async waitFor(n, what = `${n} messages on ${queue}`, ms = 10_000) {
        if (messages.length < n) await guard(new Promise<void>((resolve) => waiters.push({ n, resolve })), `${what} (got ${messages.length})`, ms);
        return messages.slice(0, n);
      },
    };
  }

  /** Whether a queue is bound for `routingKey`: a mandatory publish comes back when none is. */
  async routable(exchange: string, routingKey: string): Promise<boolean> {
    const ch = await this.model.createConfirmChannel();
    try {
      let returned = false;
      ch.on('return', () => { returned = true; });
      ch.publish(exchange, routingKey, Buffer.from('probe'), { mandatory: true, type: 'probe', headers: { 'x-switchboard-origin': 'probe' } });
      await ch.waitForConfirms();
      return !returned;
    } finally {
      await ch.close().catch(() => {});
    }
  }

  async close(): Promise<void> {
    await this.model.close().catch(() => {});
  }
}
