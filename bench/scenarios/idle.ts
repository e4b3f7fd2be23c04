// Idle connections: what holding a socket costs the server process.
//   idle      10k raw connections, one server process each side.
//   idle-50k  50k raw connections, Switchboard `workers: 3` vs three bare ws processes
//             behind node:cluster (round-robin: the primary accepts and hands each over).
//   idle-50k-kernel  the same with NODE_CLUSTER_SCHED_POLICY=none on both sides: workers
//             accept from the shared socket themselves, the primary never holds a connection.
import { LoadGroup } from '../load-generator.js';
import { sleep } from '../procs.js';
import { bothSides, type RunOptions, type Scenario } from '../scenario.js';
import { startBare, startSwitchboard, type ServerUnderTest } from '../servers.js';
import { WORKER_SEMI_SPACE_FLAG } from '../../proxy/workers.js';

/** Idle clients need no webhook: the sidecar accepts them without asking an app. */
const noWebhooks = { webhooks: { paths: { connect: null, message: null, disconnect: null } } };

async function holdConnections(server: ServerUnderTest, count: number): Promise<Record<string, number>> {
  let group: LoadGroup | null = null;
  try {
    await sleep(500);
    const before = await server.memory();
    group = LoadGroup.sized(count);
    const { elapsedMs } = await group.connect(server.wsUrl, count, { concurrency: 100 });
    await sleep(1000);
    const after = await server.memory();
    return {
      rssPerConnection: (after.rss - before.rss) / count,
      heapPerConnection: (after.heapUsed - before.heapUsed) / count,
      rss: after.rss,
      heap: after.heapUsed,
      handshakeRate: count / (elapsedMs / 1000),
    };
  } finally {
    await group?.close();
    await server.stop();
  }
}

export const idle: Scenario = {
  name: 'idle',
  title: 'idle connections, one server process',
  notes: [
    'RSS: VmRSS of the server process; heap: V8 heapUsed. Both read inside the server process by the',
    'preloaded probe after two forced full GCs (--expose-gc), before and after the clients connect;',
    'per connection = difference / connections. Raw mode, no webhooks (connect, message, disconnect',
    'paths null). Clients: separate processes, source addresses 127.0.0.2 and up.',
  ],
  metrics: [
    { key: 'rssPerConnection', label: 'RSS per connection', unit: 'bytes', target: { text: '≤ 1.5× bare', on: 'ratio', max: 1.5 } },
    { key: 'heapPerConnection', label: 'heap per connection', unit: 'bytes' },
    { key: 'rss', label: 'RSS with all connections', unit: 'MiB' },
    { key: 'heap', label: 'heap with all connections', unit: 'MiB' },
    { key: 'handshakeRate', label: 'handshakes/s while connecting', unit: 'per-s' },
  ],
  async rep(options: RunOptions, index: number) {
    const count = options.quick ? 2000 : 10_000;
    options.log(`idle: ${count.toLocaleString('en-US')} connections`);
    const { switchboard, bare } = await bothSides(
      index,
      async () => holdConnections(await startSwitchboard({ config: noWebhooks, nodeFlags: options.nodeFlags('switchboard') }), count),
      async () => holdConnections(await startBare({ mode: 'idle', nodeFlags: options.nodeFlags('bare ws') }), count),
    );
    return { switchboard, bare };
  },
};

// The fewest processes that hold 50,000 sockets under the 20,000-descriptor limit (16,667 each).
const WORKERS = 3;

async function holdManyConnections(server: ServerUnderTest, count: number): Promise<Record<string, number>> {
  let group: LoadGroup | null = null;
  try {
    await sleep(1000);
    await server.gcTree();
    const before = server.treeMemory();
    group = LoadGroup.sized(count);
    const { elapsedMs } = await group.connect(server.wsUrl, count, { concurrency: 100, timeoutMs: 180_000 });
    await sleep(1000);
    await server.gcTree();
    const after = server.treeMemory();
    return {
      rss: after.rss,
      pss: after.pss,
      rssPerConnection: (after.rss - before.rss) / count,
      processes: after.processes,
      handshakeRate: count / (elapsedMs / 1000),
    };
  } finally {
    await group?.close();
    await server.stop();
  }
}

/** Switchboard with `workers: 3`, once all its processes are up. */
async function startWorkers(options: RunOptions, env: Record<string, string>): Promise<ServerUnderTest> {
  const server = await startSwitchboard({ config: { ...noWebhooks, workers: WORKERS }, nodeFlags: options.nodeFlags('switchboard'), env });
  const processes = server.treeMemory().processes;
  if (processes !== WORKERS + 1) {
    await server.stop();
    throw new Error(`\`workers: ${WORKERS}\` should run ${WORKERS + 1} processes, found ${processes}`);
  }
  return server;
}

function idleWorkers(name: string, policy: 'rr' | 'none'): Scenario {
  const env = { NODE_CLUSTER_SCHED_POLICY: policy };
  // Switchboard's primary gives its workers this young-generation size; bare ws gets it too.
  const bareEnv = { ...env, NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} ${WORKER_SEMI_SPACE_FLAG}`.trim() };
  return {
    name,
    title: `idle connections, ${WORKERS} processes per side, ${policy === 'rr' ? 'round-robin hand-off (node:cluster default)' : 'workers accept directly (NODE_CLUSTER_SCHED_POLICY=none)'}`,
    notes: [
      `Switchboard \`workers: ${WORKERS}\` vs ${WORKERS} bare ws processes behind node:cluster (the same process count),`,
      `both with NODE_CLUSTER_SCHED_POLICY=${policy}; both with ${WORKER_SEMI_SPACE_FLAG} (Switchboard's default`,
      'for its workers; NODE_OPTIONS for every bare ws process, the primary included).',
      'Memory summed over each process tree (primary + workers) from /proc: VmRSS and PSS (PSS splits',
      'shared pages such as the node binary between processes, so it is the better total). Each process',
      'gets a full GC (SIGUSR2 to the preloaded probe) before reading. Clients: 10k sockets per process.',
    ],
    metrics: [
      { key: 'rss', label: 'total RSS (sum over processes)', unit: 'MiB', target: { text: '≤ 512 MiB', on: 'switchboard', max: 512 * 1048576 } },
      { key: 'pss', label: 'total PSS (sum over processes)', unit: 'MiB' },
      { key: 'rssPerConnection', label: 'RSS per connection', unit: 'bytes' },
      { key: 'processes', label: 'server processes', unit: 'count' },
      { key: 'handshakeRate', label: 'handshakes/s while connecting', unit: 'per-s' },
    ],
    async rep(options: RunOptions, index: number) {
      const count = options.quick ? 10_000 : 50_000;
      options.log(`${name}: ${count.toLocaleString('en-US')} connections, ${WORKERS} processes`);
      const { switchboard, bare } = await bothSides(
        index,
        async () => holdManyConnections(await startWorkers(options, env), count),
        async () => holdManyConnections(await startBare({ mode: 'idle', workers: WORKERS, nodeFlags: options.nodeFlags('bare ws'), env: bareEnv }), count),
      );
      return { switchboard, bare };
    },
  };
}

export const idle50k = idleWorkers('idle-50k', 'rr');
export const idle50kKernel = idleWorkers('idle-50k-kernel', 'none');
