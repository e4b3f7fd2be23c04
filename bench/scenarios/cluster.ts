// Cluster mode (cluster.amqp, docs/cluster.md): what it costs on the steady path, and what a
// crash leaves behind.
//   cluster-cost  one Switchboard with cluster on, one with it off, reliable clients: connect
//                 rate and idle memory per session. The table's "switchboard" column is
//                 cluster on, its "bare ws" column cluster off.
//   crash         three nodes, reliable sessions on each; one is SIGKILLed: how long until
//                 its sessions' disconnect webhooks have all arrived, and what the survivors
//                 still show of it. Switchboard alone: bare ws has no cluster.
// One private RabbitMQ (test/helpers/rabbit.ts) for the whole run, started on first use and
// killed with the run by the helper's own exit hook; every node set gets an exchange of its own.
import { once } from 'node:events';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { uniqueName } from '../../test/helpers/rabbit.js';
import { brokerCpuMs, rabbit, until } from '../broker.js';
import { LoadGroup } from '../load-generator.js';
import { kill, sleep } from '../procs.js';
import { bothSides, type RunOptions, type Scenario } from '../scenario.js';
import { http, startSwitchboard, type SwitchboardUnderTest } from '../servers.js';

/** Resume tokens must verify on every node: one secret for all of them (both sides of cluster-cost too). */
const TOKEN_SECRET = 'one-secret-for-every-node';
/** Handshakes in progress at once while connecting. */
const CONCURRENCY = 100;
/** crash: heartbeats every 500 ms, so the killed node is counted gone after 1.5 s of silence (default 2000: 6 s). */
const HEARTBEAT_MS = 500;
/** crash: a disconnect webhook later than this after the kill counts as missing. */
const DISCONNECT_BOUND_MS = 60_000;
/** crash: how long after the last expected disconnect a second one still counts as a duplicate. */
const SETTLE_MS = 5000;

async function getJson<T>(url: string): Promise<T> {
  const res = await http('GET', url);
  if (res.status !== 200) throw new Error(`GET ${url} answered ${res.status}: ${res.text.slice(0, 200)}`);
  return JSON.parse(res.text) as T;
}

interface NodeView {
  readonly node: string;
  readonly sessions: number;
}

const nodesOf = async (server: SwitchboardUnderTest) => (await getJson<{ nodes: NodeView[] }>(`${server.controlUrl}/v1/nodes`)).nodes;

// ── cluster-cost ───────────────────────────────────────────────────────────────

/**
 * Both sides: reliable clients, no webhooks, the same token secret; session.graceMs 0, so a
 * session ends with its socket and the final stop has nothing to park in the broker.
 */
const costConfig = {
  webhooks: { paths: { connect: null, message: null, disconnect: null } },
  session: { tokenSecret: TOKEN_SECRET, graceMs: 0 },
};

async function holdSessions(server: SwitchboardUnderTest, count: number): Promise<Record<string, number>> {
  let group: LoadGroup | null = null;
  try {
    await sleep(500);
    const before = await server.memory();
    group = LoadGroup.sized(count);
    const cpu = { server: server.cpuMs(), broker: brokerCpuMs() };
    const { elapsedMs } = await group.connect(server.wsUrl, count, { protocol: 'switchboard.v1', concurrency: CONCURRENCY });
    // Also lets the roster's last changes reach the broker (cluster on).
    await sleep(1000);
    const perSession = (ms: number) => (ms * 1000) / count;
    const serverCpu = perSession(server.cpuMs() - cpu.server);
    const brokerCpu = perSession(brokerCpuMs() - cpu.broker);
    const after = await server.memory();
    return {
      rssPerConnection: (after.rss - before.rss) / count,
      heapPerConnection: (after.heapUsed - before.heapUsed) / count,
      rss: after.rss,
      handshakeRate: count / (elapsedMs / 1000),
      serverCpu,
      brokerCpu,
    };
  } finally {
    await group?.close();
    await server.stop();
  }
}

export const clusterCost: Scenario = {
  name: 'cluster-cost',
  title: 'cost of cluster mode: cluster on (switchboard column) vs cluster off (bare ws column)',
  notes: [
    'Both columns are Switchboard: "switchboard" = cluster on (cluster.amqp to a private RabbitMQ, an',
    'exchange of its own per repetition: session roster, bindings, heartbeats), "bare ws" = cluster off;',
    'ratio = cluster on / cluster off. Each its own process, one after the other (alternating which goes',
    'first). Reliable clients (switchboard.v1: each handshake ends with the welcome frame), 5,000 sessions',
    `(quick: 1,000), ${CONCURRENCY} handshakes at once; no webhooks (connect, message, disconnect null); the same`,
    'session.tokenSecret on both, session.graceMs 0 on both (sessions end with their sockets: nothing to',
    'park at the stop). Memory: RSS and heap of the sidecar process after two forced full GCs, read by the',
    'preloaded probe before and 1 s after the clients connect; per session = difference / sessions.',
    'Connect rate: the target is on the cost, so it reads ≥ 1/1.2 for a rate (handshake time ≤ 1.2×).',
    'CPU: utime+stime from /proc/<pid>/stat over the connects and the 1 s after, per session: of the sidecar,',
    "and of the broker's Erlang VM (beam.smp; running on both sides, idle on the cluster-off one).",
  ],
  metrics: [
    { key: 'rssPerConnection', label: 'RSS per session', unit: 'bytes', target: { text: '≤ 1.2× cluster off', on: 'ratio', max: 1.2 } },
    { key: 'heapPerConnection', label: 'heap per session', unit: 'bytes' },
    { key: 'rss', label: 'RSS with all sessions', unit: 'MiB' },
    { key: 'handshakeRate', label: 'handshakes/s while connecting', unit: 'per-s', target: { text: '≥ 0.83× (time ≤ 1.2×)', on: 'ratio', min: 1 / 1.2 } },
    { key: 'serverCpu', label: 'sidecar CPU per session', unit: 'us' },
    { key: 'brokerCpu', label: 'RabbitMQ CPU per session', unit: 'us' },
  ],
  async rep(options: RunOptions, index: number) {
    const count = options.quick ? 1000 : 5000;
    options.log(`cluster-cost: ${count.toLocaleString('en-US')} reliable sessions, cluster on and off`);
    const { url } = await rabbit();
    const { switchboard, bare } = await bothSides(
      index,
      async () => holdSessions(await startSwitchboard({
        config: { ...costConfig, nodeId: 'coston', cluster: { amqp: { url, exchange: uniqueName('cost') } } },
        nodeFlags: options.nodeFlags('switchboard'),
      }), count),
      // Its column's profile directory, with --profile.
      async () => holdSessions(await startSwitchboard({ config: { ...costConfig, nodeId: 'costoff' }, nodeFlags: options.nodeFlags('bare ws') }), count),
    );
    return { switchboard, bare };
  },
};

// ── crash ──────────────────────────────────────────────────────────────────────

/** The app behind the three nodes, in this process: accepts every connect, records every disconnect. */
interface CountingApp {
  readonly url: string;
  /** Connection ids of the connect webhooks, in arrival order. */
  readonly connected: string[];
  /** Arrival times (performance.now()) of the disconnect webhooks, by connection id. */
  readonly disconnects: Map<string, number[]>;
  close(): Promise<void>;
}

async function startCountingApp(): Promise<CountingApp> {
  const connected: string[] = [];
  const disconnects = new Map<string, number[]>();
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const at = performance.now();
      let id = '';
      try {
        id = String((JSON.parse(Buffer.concat(chunks).toString('utf8')) as { connection?: unknown }).connection ?? '');
      } catch {
        // no JSON body: recorded under ''
      }
      if (req.method === 'POST' && req.url === '/ws/connect') {
        connected.push(id);
        res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
      } else if (req.method === 'POST' && req.url === '/ws/disconnect') {
        const times = disconnects.get(id) ?? [];
        times.push(at);
        disconnects.set(id, times);
        res.writeHead(204).end();
      } else {
        res.writeHead(404).end();
      }
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    connected,
    disconnects,
    close: () => new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}

const NODE_IDS = ['crasha', 'crashb', 'crashc'] as const;

/** Pages through GET /v1/connections (limit 1000, following `next`) on one node: every id the cluster lists. */
async function listAll(server: SwitchboardUnderTest): Promise<string[]> {
  const ids: string[] = [];
  let cursor: string | null = null;
  for (let page = 0; page < 100; page++) {
    const query: string = cursor === null ? '' : `&cursor=${encodeURIComponent(cursor)}`;
    const body: { connections: Array<{ connection: string }>; next: string | null } = await getJson(`${server.controlUrl}/v1/connections?limit=1000${query}`);
    for (const c of body.connections) ids.push(c.connection);
    cursor = body.next;
    if (cursor === null) return ids;
  }
  throw new Error('GET /v1/connections: more than 100 pages');
}

async function crash(options: RunOptions, sessions: number): Promise<Record<string, number>> {
  const { url } = await rabbit();
  const exchange = uniqueName('crash');
  const app = await startCountingApp();
  const nodes: SwitchboardUnderTest[] = [];
  const groups: LoadGroup[] = [];
  try {
    for (const nodeId of NODE_IDS) {
      nodes.push(await startSwitchboard({
        config: {
          nodeId,
          app: { url: app.url },
          webhooks: { paths: { message: null } },
          // graceMs 0: the survivors' sessions end with their sockets, so the final stop parks none.
          session: { tokenSecret: TOKEN_SECRET, graceMs: 0 },
          cluster: { amqp: { url, exchange }, heartbeatMs: HEARTBEAT_MS },
        },
        nodeFlags: options.nodeFlags('switchboard'),
      }));
    }
    for (const node of nodes) await until('every node to hear the other two', async () => (await nodesOf(node)).length === NODE_IDS.length, 20_000);
    for (const node of nodes) {
      const group = new LoadGroup(1);
      groups.push(group);
      await group.connect(node.wsUrl, sessions, { protocol: 'switchboard.v1', concurrency: CONCURRENCY });
    }
    const doomed = nodes.length - 1;
    const prefix = `${NODE_IDS[doomed]}-`;
    const survivors = nodes.slice(0, doomed);
    // The ids the clients' welcomes carry, as the app saw them in the connect webhooks.
    const lost = app.connected.filter((id) => id.startsWith(prefix));
    if (lost.length !== sessions) throw new Error(`${lost.length} connect webhooks from ${NODE_IDS[doomed]}, expected ${sessions}`);
    await until(`a survivor to count ${sessions} sessions on ${NODE_IDS[doomed]}`, async () => (await nodesOf(survivors[0])).some((n) => n.node === NODE_IDS[doomed] && n.sessions === sessions), 20_000);
    // A steady state: the last roster changes have reached the broker.
    await sleep(1000);

    options.log(`crash: SIGKILL ${NODE_IDS[doomed]} (pid ${nodes[doomed].pid}), ${sessions.toLocaleString('en-US')} sessions`);
    const killedAt = performance.now();
    kill(nodes[doomed].pid, 'SIGKILL');
    const told = () => lost.filter((id) => app.disconnects.has(id)).length;
    while (told() < sessions && performance.now() - killedAt < DISCONNECT_BOUND_MS) await sleep(20);
    const waitedUntil = performance.now();
    const firsts = lost.map((id) => app.disconnects.get(id)?.[0] ?? Infinity);
    const inBound = firsts.filter((t) => t - killedAt <= DISCONNECT_BOUND_MS);
    const missing = sessions - inBound.length;
    options.log(`crash: ${inBound.length} of ${sessions} disconnects in ${((waitedUntil - killedAt) / 1000).toFixed(2)} s; resuming on ${NODE_IDS[0]}`);

    // The killed node's clients resume, all at once, on a survivor: each should get a new session.
    const [resumed] = await groups[doomed].all('resume', { url: survivors[0].wsUrl, timeoutMs: 30_000 }, 35_000);
    const errors = Object.entries(resumed.errors);
    if (errors.length > 0) options.log(`crash: resume errors: ${JSON.stringify(errors)}`);
    // Ghosts: what another survivor's cluster-wide list still holds of the killed node.
    const listed = await listAll(survivors[1]);
    const ghosts = listed.filter((id) => id.startsWith(prefix)).length;

    await sleep(Math.max(0, waitedUntil + SETTLE_MS - performance.now()));
    let duplicates = 0;
    let others = 0;
    for (const [id, times] of app.disconnects) {
      if (id.startsWith(prefix)) duplicates += times.length - 1;
      else others += times.length;
    }
    // The table shows medians: a repetition that lost some is said here too.
    if (missing + duplicates + ghosts > 0 || resumed.fresh !== sessions) {
      options.log(`crash: warning: ${missing} missing, ${duplicates} duplicate disconnects, ${ghosts} ghosts, ${resumed.fresh} of ${sessions} resumes reset`);
    }
    return {
      sessions,
      firstDisconnect: (Math.min(...firsts) - killedAt) / 1000,
      allDisconnects: missing === 0 ? (Math.max(...firsts) - killedAt) / 1000 : NaN,
      missing,
      duplicates,
      others,
      fresh: resumed.fresh,
      notFresh: resumed.resumed + resumed.failed,
      ghosts,
      listed: listed.length,
    };
  } finally {
    await Promise.all(groups.map((g) => g.close()));
    await Promise.all(nodes.map((n) => n.stop()));
    await app.close();
  }
}

export const crashScenario: Scenario = {
  name: 'crash',
  title: 'a node SIGKILLed in a three-node cluster (Switchboard only)',
  notes: [
    'Bare ws has no cluster, so these are Switchboard figures alone. Three nodes (one process each) on one',
    'private RabbitMQ, an exchange of their own per repetition, each with 1,000 reliable sessions (quick: 300;',
    `one client process per node); cluster.heartbeatMs ${HEARTBEAT_MS} (default 2000), so a silent node is counted gone`,
    `after ${(3 * HEARTBEAT_MS) / 1000} s. The app (in the bench process) answers connect 200 {} and disconnect 204, recording`,
    "arrival times; the killed node's session ids are those of its connect webhooks (the ids the clients'",
    'welcomes carry; they start with "<nodeId>-"). 1 s after a survivor counts all of them, the third node is',
    `SIGKILLed. Disconnects: kill → arrival in the app; missing = none within ${DISCONNECT_BOUND_MS / 1000} s; duplicates =`,
    `more than one per session, counted ${SETTLE_MS / 1000} s after the wait ended. Then its clients all resume at once on the`,
    'first survivor (?resume=<token>&lastSeq=<n>): resumed:false is the expected answer (reset). Ghosts: ids',
    'of the killed node in GET /v1/connections?limit=1000 (every page, following next) on the second survivor.',
    'session.graceMs 0 on every node, so the final stop parks nothing (the killed sessions die with it anyway).',
  ],
  metrics: [
    { key: 'sessions', label: 'sessions on the killed node', unit: 'count', bare: false },
    { key: 'firstDisconnect', label: 'kill → first disconnect webhook', unit: 's', bare: false },
    { key: 'allDisconnects', label: 'kill → every disconnect webhook', unit: 's', bare: false },
    { key: 'missing', label: 'sessions with no disconnect in 60 s', unit: 'count', bare: false, target: { text: '= 0', on: 'switchboard', max: 0 } },
    { key: 'duplicates', label: 'duplicate disconnects', unit: 'count', bare: false },
    { key: 'others', label: 'disconnects of sessions not lost', unit: 'count', bare: false },
    { key: 'fresh', label: 'resumes on a survivor: resumed:false', unit: 'count', bare: false },
    { key: 'notFresh', label: 'resumes on a survivor: resumed:true or failed', unit: 'count', bare: false },
    { key: 'ghosts', label: "killed node's sessions in a survivor's list", unit: 'count', bare: false, target: { text: '= 0', on: 'switchboard', max: 0 } },
    { key: 'listed', label: "sessions in a survivor's list", unit: 'count', bare: false },
  ],
  async rep(options: RunOptions) {
    const sessions = options.quick ? 300 : 1000;
    options.log(`crash: ${NODE_IDS.length} nodes, ${sessions.toLocaleString('en-US')} reliable sessions each`);
    return { switchboard: await crash(options, sessions), bare: null };
  },
};
