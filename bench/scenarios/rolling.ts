// Sessions moving between nodes: three Switchboard nodes (processes) in one cluster over a
// private RabbitMQ, reliable clients that follow their sessions from node to node (resume
// with token and lastSeq, de-duplication by seq, acks), and an app in this process that
// gives each client its user and channel and counts the connect and disconnect webhooks.
// `rolling` restarts the nodes one by one under steady pushes; `cluster-storm` drains one
// node and every client resumes on the other two at once. Switchboard alone: bare ws has
// no sessions to move.
import { once } from 'node:events';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { uniqueName } from '../../test/helpers/rabbit.js';
import { rabbit, until } from '../broker.js';
import { LoadGroup } from '../load-generator.js';
import { monotonicMs, type FollowCollectResult, type FollowMember, type FollowStats } from '../load-protocol.js';
import { kill, sleep } from '../procs.js';
import { concat, percentile } from '../report.js';
import type { RunOptions, Scenario } from '../scenario.js';
import { http, startSwitchboard, type SwitchboardUnderTest } from '../servers.js';

const TOKEN_SECRET = 'one-secret-for-every-node';
const NODE_IDS = ['nodea', 'nodeb', 'nodec'];
/** Pushes waiting for their 202 at once; beyond, the open loop waits and catches up. */
const MAX_IN_FLIGHT = 200;
/**
 * Webhooks are counted this long after the last drain: a process not heard from for three
 * heartbeats (cluster.heartbeatMs 2000) is counted gone, and a survivor then sends the
 * disconnects of the sessions its roster still lists.
 */
const LATE_WEBHOOKS_MS = 8000;

// ── the app ────────────────────────────────────────────────────────────────────

interface HookApp {
  readonly url: string;
  /** Webhooks received, by connection id; disconnects also by close code. */
  readonly connects: Map<string, number>;
  readonly disconnects: Map<string, number>;
  readonly codes: Map<string, number>;
  close(): Promise<void>;
}

/** Connect answers `{"user","channels":[ch]}` from the client's query (`user`, `ch`); the rest get 204. */
async function startHookApp(): Promise<HookApp> {
  const connects = new Map<string, number>();
  const disconnects = new Map<string, number>();
  const codes = new Map<string, number>();
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const path = req.url?.split('?')[0];
      let hook: { connection?: string; query?: Record<string, string>; code?: number; reason?: string } = {};
      try {
        hook = JSON.parse(Buffer.concat(chunks).toString('utf8'));
      } catch {
        // not JSON: nothing to count it by
      }
      const id = hook.connection ?? '';
      if (req.method === 'POST' && path === '/ws/connect') {
        connects.set(id, (connects.get(id) ?? 0) + 1);
        const body = Buffer.from(JSON.stringify({ user: hook.query?.user, channels: hook.query?.ch ? [hook.query.ch] : [] }));
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': body.length });
        return void res.end(body);
      }
      if (req.method === 'POST' && path === '/ws/disconnect') {
        disconnects.set(id, (disconnects.get(id) ?? 0) + 1);
        const code = `${hook.code} ${hook.reason ?? ''}`.trim();
        codes.set(code, (codes.get(code) ?? 0) + 1);
      }
      res.writeHead(204);
      res.end();
    });
  });
  server.keepAliveTimeout = 60_000;
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    connects, disconnects, codes,
    close: () => new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}

const sum = (counts: Map<string, number>) => [...counts.values()].reduce((n, v) => n + v, 0);

// ── the nodes ──────────────────────────────────────────────────────────────────

interface ClusterOptions {
  readonly rabbitUrl: string;
  readonly exchange: string;
  readonly appUrl: string;
  readonly drainMs: number;
}

/** Node `i` of the cluster; a restart starts it again under the same nodeId (on new ports). */
function startNode(i: number, cluster: ClusterOptions, options: RunOptions): Promise<SwitchboardUnderTest> {
  return startSwitchboard({
    config: {
      nodeId: NODE_IDS[i],
      app: { url: cluster.appUrl },
      cluster: { amqp: { url: cluster.rabbitUrl, exchange: cluster.exchange } },
      session: { tokenSecret: TOKEN_SECRET },
      drain: { timeoutMs: cluster.drainMs },
      webhooks: { paths: { message: null } },
    },
    nodeFlags: options.nodeFlags('switchboard'),
  });
}

/** Until every node lists every node as ready in GET /v1/nodes (heartbeats heard). */
function clusterReady(nodes: readonly SwitchboardUnderTest[]): Promise<void> {
  return until('every node to see the others ready', async () => {
    for (const n of nodes) {
      const view = JSON.parse((await http('GET', `${n.controlUrl}/v1/nodes`, undefined, undefined, 2000)).text) as { nodes?: Array<{ state: string }> };
      if (view.nodes?.filter((x) => x.state === 'ready').length !== nodes.length) return false;
    }
    return true;
  }, 20_000);
}

/** SIGTERM and wait for the exit (SIGKILL 5 s after its drain budget); ms it took. */
async function drain(node: SwitchboardUnderTest, drainMs: number): Promise<number> {
  const start = performance.now();
  await node.stop(drainMs + 5000);
  return performance.now() - start;
}

/** Teardown once the figures are taken: no drain, the process is killed. */
async function halt(node: SwitchboardUnderTest): Promise<void> {
  kill(node.pid, 'SIGKILL');
  await node.stop();
}

// ── pushes ─────────────────────────────────────────────────────────────────────

interface Target {
  readonly path: string;
  /** The user or channel, also in the push (`to`): a client checks it is one of its own. */
  readonly to: string;
  /** Clients in that user or channel. */
  readonly expected: number;
}

interface Posted {
  readonly k: number;
  readonly expected: number;
  readonly phase: number;
}

/**
 * An open loop of pushes at `rate` per second, each `{"k","t","p","to"}`: its number (from 1),
 * its send time (CLOCK_MONOTONIC, just before the POST), the phase and its target; posted to
 * the control ports in rotation. Only pushes answered 202 are counted as sent.
 */
class Pusher {
  readonly accepted: Posted[] = [];
  refused = 0;
  phase = 0;
  readonly #rate: number;
  readonly #target: (k: number) => Target;
  #controls: string[];
  readonly #inFlight = new Map<string, Set<Promise<void>>>();
  #timer: NodeJS.Timeout | null = null;
  #k = 0;

  constructor(controls: readonly string[], rate: number, target: (k: number) => Target) {
    this.#controls = [...controls];
    this.#rate = rate;
    this.#target = target;
  }

  start(): void {
    const start = performance.now();
    this.#timer = setInterval(() => {
      const due = Math.floor(((performance.now() - start) * this.#rate) / 1000);
      while (this.#k < due && this.#pending() < MAX_IN_FLIGHT && this.#controls.length > 0) this.#post(++this.#k);
    }, 5);
  }

  #pending(): number {
    let n = 0;
    for (const set of this.#inFlight.values()) n += set.size;
    return n;
  }

  #post(k: number): void {
    const { path, to, expected } = this.#target(k);
    const control = this.#controls[k % this.#controls.length];
    const phase = this.phase;
    const set = this.#inFlight.get(control) ?? new Set<Promise<void>>();
    this.#inFlight.set(control, set);
    const done: Promise<void> = http('POST', `${control}${path}`, JSON.stringify({ k, t: monotonicMs(), p: phase, to })).then(
      (res) => {
        if (res.status === 202) this.accepted.push({ k, expected, phase });
        else this.refused++;
      },
      () => {
        this.refused++;
      },
    ).finally(() => set.delete(done));
    set.add(done);
  }

  /** No more pushes to `control`; resolves once those in flight are answered. */
  async remove(control: string): Promise<void> {
    this.#controls = this.#controls.filter((c) => c !== control);
    await Promise.all(this.#inFlight.get(control) ?? []);
    this.#inFlight.delete(control);
  }

  add(control: string): void {
    this.#controls.push(control);
  }

  async stop(): Promise<void> {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = null;
    await Promise.all([...this.#inFlight.values()].flatMap((set) => [...set]));
  }
}

// ── what the clients saw ───────────────────────────────────────────────────────

type Counter = { [K in keyof FollowStats]: FollowStats[K] extends number ? K : never }[keyof FollowStats];

/** The load processes' stats as one: counts summed, the last resume the latest. */
function merged(stats: readonly FollowStats[]): FollowStats {
  const closes: Record<string, number> = {};
  const errors: Record<string, number> = {};
  for (const s of stats) {
    for (const [k, v] of Object.entries(s.closes)) closes[k] = (closes[k] ?? 0) + v;
    for (const [k, v] of Object.entries(s.errors)) errors[k] = (errors[k] ?? 0) + v;
  }
  const total = (key: Counter) => stats.reduce((n, s) => n + s[key], 0);
  return {
    clients: total('clients'), open: total('open'), moving: total('moving'), resumedSince: total('resumedSince'),
    lastResumeAt: Math.max(0, ...stats.map((s) => s.lastResumeAt)),
    hints: total('hints'), resumes: total('resumes'), resets: total('resets'), gaps: total('gaps'), gapSeqs: total('gapSeqs'),
    resent: total('resent'), duplicates: total('duplicates'), misdelivered: total('misdelivered'), received: total('received'),
    failedAttempts: total('failedAttempts'), gaveUp: total('gaveUp'), closes, errors,
  };
}

async function stats(group: LoadGroup, since = 0): Promise<FollowStats> {
  return merged(await group.all('followStats', { since }));
}

/** Deliveries expected by the pushes answered 202 minus those the clients counted (each client once per push). */
function lostOf(accepted: readonly Posted[], collected: readonly FollowCollectResult[]): { lost: number; byPhase: number[] } {
  const got = new Map<number, number>();
  for (const c of collected) for (let i = 0; i < c.pushes.length; i++) got.set(c.pushes[i], (got.get(c.pushes[i]) ?? 0) + c.counts[i]);
  const byPhase = [0, 0];
  for (const p of accepted) byPhase[p.phase] += Math.max(0, p.expected - (got.get(p.k) ?? 0));
  return { lost: byPhase[0] + byPhase[1], byPhase };
}

function describe(s: FollowStats): string {
  return `hints ${s.hints}, resumes ${s.resumes}, resets ${s.resets}, gaps ${s.gaps} (${s.gapSeqs} seqs), resent ${s.resent}, `
    + `duplicates ${s.duplicates}, misdelivered ${s.misdelivered}, failed attempts ${s.failedAttempts} ${JSON.stringify(s.errors)}, `
    + `gave up ${s.gaveUp}, closes ${JSON.stringify(s.closes)}`;
}

// ── rolling ────────────────────────────────────────────────────────────────────

/** Client j: user u⌊j/2⌋ (two clients each), channel c⌊j/10⌋ (ten each), first on node j mod 3. */
function rollingMembers(clients: number, urls: readonly string[]): FollowMember[] {
  return Array.from({ length: clients }, (_, j) => ({ url: urls[j % urls.length], user: `u${j >> 1}`, channel: `c${Math.floor(j / 10)}` }));
}

/** Push k: odd to user u⌊k/2⌋, even to channel c⌊k/2⌋ (both modulo how many there are). */
function rollingTargets(members: readonly FollowMember[]): (k: number) => Target {
  const users = new Map<string, number>();
  const channels = new Map<string, number>();
  for (const m of members) {
    users.set(m.user, (users.get(m.user) ?? 0) + 1);
    channels.set(m.channel, (channels.get(m.channel) ?? 0) + 1);
  }
  return (k) => {
    if (k % 2 === 1) {
      const to = `u${(k >> 1) % users.size}`;
      return { path: `/v1/users/${to}/messages`, to, expected: users.get(to)! };
    }
    const to = `c${(k >> 1) % channels.size}`;
    return { path: `/v1/channels/${to}/messages`, to, expected: channels.get(to)! };
  };
}

/**
 * drain.timeoutMs of the roll: hints are spread over half of it, and a node's moves must fit
 * in it (about 1,000 of them take 2–3 s on this machine's two cores).
 */
const ROLL_DRAIN_MS = 20_000;

export const rollingScenario: Scenario = {
  name: 'rolling',
  title: 'rolling restart of a three-node cluster under steady pushes (Switchboard only)',
  notes: [
    'Bare ws has no sessions to move, so these are Switchboard figures alone. Three nodes (processes) sharing one',
    `private RabbitMQ (cluster.amqp, one session.tokenSecret, drain.timeoutMs ${ROLL_DRAIN_MS}); 3,000 reliable clients (quick:`,
    '600), client j first on node j mod 3, user u⌊j/2⌋ (2 clients) and channel c⌊j/10⌋ (10 clients) from the connect',
    'webhook of an app in the bench process, which counts connect and disconnect webhooks by connection id. An open',
    'loop posts 500 pushes/s (quick: 200/s), alternately to a user and a channel, to the live nodes\' control ports in',
    'rotation; each carries its number and its send time (CLOCK_MONOTONIC). After 10 s steady (quick: 5 s), each node',
    'in turn is taken out of the rotations, SIGTERMed, waited for, started again (same nodeId, new ports), and once',
    'every node lists all three ready and every client is settled, the next. Clients resume (?resume=<token>&',
    'lastSeq=<n>) on the next live node in rotation, after a `reconnect` hint\'s afterMs + up to 500 ms or a close',
    'after up to 500 ms (the client library\'s delays), keeping the old socket open until it is taken over (4009):',
    'the library closes it with 1000 at the hint, which ends the session (docs/BENCHMARKS.md). Seq <= lastSeq is',
    'dropped; acks every 32 messages or 200 ms. Lost = per push answered 202, the clients in its user or channel',
    'minus those that got it (each once); duplicated = a push number a client had already, under a new seq. Gaps:',
    'gap frames and seq holes. Resets: a resume answered resumed:false or with another session. Resume: first',
    'attempt → welcome. Latency: send → receipt per delivery, by when the push was sent (steady, or from the first',
    'drain to the end).',
  ],
  metrics: [
    { key: 'sessions', label: 'sessions', unit: 'count', bare: false },
    { key: 'pushes', label: 'pushes answered 202', unit: 'count', bare: false },
    { key: 'deliveries', label: 'deliveries expected', unit: 'count', bare: false },
    { key: 'lost', label: 'deliveries lost', unit: 'count', bare: false, target: { text: '= 0', on: 'switchboard', max: 0 } },
    { key: 'duplicates', label: 'duplicated deliveries', unit: 'count', bare: false, target: { text: '= 0', on: 'switchboard', max: 0 } },
    { key: 'gaps', label: 'gaps (gap frames + seq holes)', unit: 'count', bare: false, target: { text: '= 0', on: 'switchboard', max: 0 } },
    { key: 'resets', label: 'resets (new session on resume)', unit: 'count', bare: false, target: { text: '= 0', on: 'switchboard', max: 0 } },
    { key: 'connects', label: 'connect webhooks beyond the first per client', unit: 'count', bare: false, target: { text: '= 0', on: 'switchboard', max: 0 } },
    { key: 'disconnects', label: 'disconnect webhooks', unit: 'count', bare: false, target: { text: '= 0', on: 'switchboard', max: 0 } },
    { key: 'disconnectsPerId', label: 'disconnect webhooks for one id, most', unit: 'count', bare: false, target: { text: '≤ 1', on: 'switchboard', max: 1 } },
    { key: 'moves', label: 'resumes (sessions moved)', unit: 'count', bare: false },
    { key: 'resumeP50', label: 'resume → welcome, p50', unit: 'ms', bare: false },
    { key: 'resumeP99', label: 'resume → welcome, p99', unit: 'ms', bare: false },
    { key: 'steadyP99', label: 'push latency p99, steady', unit: 'ms', bare: false },
    { key: 'rollP99', label: 'push latency p99, during the roll', unit: 'ms', bare: false },
    { key: 'p99Percent', label: 'p99 roll / steady, %', unit: 'count', bare: false },
    { key: 'steadyP50', label: 'push latency p50, steady', unit: 'ms', bare: false },
    { key: 'rollP50', label: 'push latency p50, during the roll', unit: 'ms', bare: false },
    { key: 'rollS', label: 'roll (first SIGTERM → all settled)', unit: 's', bare: false },
    { key: 'drainS', label: 'longest drain (SIGTERM → exit)', unit: 's', bare: false },
    { key: 'failedAttempts', label: 'reconnect attempts refused or failed', unit: 'count', bare: false },
  ],
  async rep(options: RunOptions) {
    const clients = options.quick ? 600 : 3000;
    const rate = options.quick ? 200 : 500;
    const steadyMs = options.quick ? 5000 : 10_000;
    options.log(`rolling: 3 nodes, ${clients.toLocaleString('en-US')} reliable clients, ${rate} pushes/s`);
    const { url: rabbitUrl } = await rabbit();
    const app = await startHookApp();
    const cluster: ClusterOptions = { rabbitUrl, exchange: uniqueName('rolling'), appUrl: app.url, drainMs: ROLL_DRAIN_MS };
    const nodes: Array<SwitchboardUnderTest | null> = [null, null, null];
    const live = () => nodes.filter((n): n is SwitchboardUnderTest => n !== null);
    let group: LoadGroup | null = null;
    let pusher: Pusher | null = null;
    try {
      for (let i = 0; i < nodes.length; i++) nodes[i] = await startNode(i, cluster, options);
      await clusterReady(live());
      const g = (group = new LoadGroup(2));
      const members = rollingMembers(clients, live().map((n) => n.wsUrl));
      await g.all('followNodes', { urls: live().map((n) => n.wsUrl) });
      await g.follow(members, { pace: 'wait', concurrency: 50 });
      const initialConnects = sum(app.connects);
      if (initialConnects !== clients) options.log(`rolling: warning: ${initialConnects} connect webhooks for ${clients} clients`);
      const settled = (what: string) => until(what, async () => (await stats(g)).moving === 0, 60_000)
        .catch((err: unknown) => options.log(`rolling: ${(err as Error).message}`));
      // The last sessions' bindings settle before the first push.
      await sleep(1000);

      const p = (pusher = new Pusher(live().map((n) => n.controlUrl), rate, rollingTargets(members)));
      p.start();
      await sleep(steadyMs);
      p.phase = 1;
      const rollStart = performance.now();
      const drains: number[] = [];
      for (let i = 0; i < nodes.length; i++) {
        const leaving = nodes[i]!;
        nodes[i] = null;
        await g.all('followNodes', { urls: live().map((n) => n.wsUrl) });
        await p.remove(leaving.controlUrl);
        drains.push(await drain(leaving, ROLL_DRAIN_MS));
        nodes[i] = await startNode(i, cluster, options);
        await clusterReady(live());
        await g.all('followNodes', { urls: live().map((n) => n.wsUrl) });
        p.add(nodes[i]!.controlUrl);
        await settled(`the clients of ${NODE_IDS[i]} to settle`);
        options.log(`rolling: ${NODE_IDS[i]} drained in ${(drains[i] / 1000).toFixed(2)} s and back; ${describe(await stats(g))}`);
      }
      const rollS = (performance.now() - rollStart) / 1000;
      await p.stop();
      const deliveries = p.accepted.reduce((n, x) => n + x.expected, 0);
      const late = sleep(LATE_WEBHOOKS_MS);
      await until('every delivery', async () => (await stats(g)).received >= deliveries, 15_000)
        .catch((err: unknown) => options.log(`rolling: ${(err as Error).message}`));
      await late;

      const s = await stats(g);
      const collected = await g.all('followCollect', { phases: 2 });
      const { lost, byPhase } = lostOf(p.accepted, collected);
      const steady = concat(collected.map((c) => c.latencies[0]));
      const roll = concat(collected.map((c) => c.latencies[1]));
      const times = concat(collected.map((c) => c.resumeTimes));
      options.log(`rolling: lost ${lost} (steady ${byPhase[0]}, roll ${byPhase[1]}), refused pushes ${p.refused}; ${describe(s)}; `
        + `disconnects by code ${JSON.stringify(Object.fromEntries(app.codes))}`);
      return {
        switchboard: {
          sessions: s.clients,
          pushes: p.accepted.length,
          deliveries,
          lost,
          duplicates: s.duplicates + s.misdelivered,
          gaps: s.gaps,
          resets: s.resets,
          connects: sum(app.connects) - clients,
          disconnects: sum(app.disconnects),
          disconnectsPerId: Math.max(0, ...app.disconnects.values()),
          moves: s.resumes,
          resumeP50: percentile(times, 50),
          resumeP99: percentile(times, 99),
          steadyP99: percentile(steady, 99),
          rollP99: percentile(roll, 99),
          p99Percent: (100 * percentile(roll, 99)) / percentile(steady, 99),
          steadyP50: percentile(steady, 50),
          rollP50: percentile(roll, 50),
          rollS,
          drainS: Math.max(...drains) / 1000,
          failedAttempts: s.failedAttempts,
        },
        bare: null,
      };
    } finally {
      await pusher?.stop();
      if (group) {
        await group.all('followClose', {}, 10_000).catch(() => {});
        await group.close();
      }
      await Promise.all(live().map(halt));
      await app.close();
    }
  },
};

// ── cluster-storm ──────────────────────────────────────────────────────────────

/** The default drain.timeoutMs: the storm clients resume at once on their hint, whatever its afterMs; the budget bounds the moves. */
const STORM_DRAIN_MS = 30_000;

async function pushTo(node: SwitchboardUnderTest, channel: string, k: number, phase: number): Promise<void> {
  const res = await http('POST', `${node.controlUrl}/v1/channels/${channel}/messages`, JSON.stringify({ k, t: monotonicMs(), p: phase, to: channel }));
  if (res.status !== 202) throw new Error(`push ${k} answered ${res.status}: ${res.text.slice(0, 200)}`);
}

export const clusterStormScenario: Scenario = {
  name: 'cluster-storm',
  title: 'a drained node\'s sessions all resume on the other two at once (Switchboard only)',
  notes: [
    'Bare ws has no sessions to move, so these are Switchboard figures alone. Three nodes (processes) sharing one',
    `private RabbitMQ, drain.timeoutMs ${STORM_DRAIN_MS} (the default); 5,000 reliable clients (quick:`,
    '1,000), all on node A, in one channel; push 1 reaches every one of them. Then A is SIGTERMed and every',
    'client resumes (?resume=<token>&lastSeq=<n>) as soon as it gets its hint or its close, not after afterMs,',
    'alternately on B and C, its old socket open until taken over (4009); push 2 goes to the channel through B',
    'as soon as the first hint has arrived.',
    'All resumed: SIGTERM → the last welcome with resumed:true and the same session (n/a when some never did).',
    'Lost = of the two pushes, deliveries missing at the end (each client once); resume: first attempt →',
    'welcome, per resumed client.',
  ],
  metrics: [
    { key: 'sessions', label: 'sessions', unit: 'count', bare: false },
    { key: 'notResumed', label: 'sessions not resumed', unit: 'count', bare: false, target: { text: '= 0', on: 'switchboard', max: 0 } },
    { key: 'resumedIn', label: 'all resumed (SIGTERM → last welcome)', unit: 's', bare: false, target: { text: '≤ 10 s', on: 'switchboard', max: 10 } },
    { key: 'resumeP50', label: 'resume → welcome, p50', unit: 'ms', bare: false },
    { key: 'resumeP99', label: 'resume → welcome, p99', unit: 'ms', bare: false },
    { key: 'lost', label: 'messages lost (2 pushes)', unit: 'count', bare: false, target: { text: '= 0', on: 'switchboard', max: 0 } },
    { key: 'duplicates', label: 'duplicated deliveries', unit: 'count', bare: false, target: { text: '= 0', on: 'switchboard', max: 0 } },
    { key: 'resets', label: 'resets (new session on resume)', unit: 'count', bare: false, target: { text: '= 0', on: 'switchboard', max: 0 } },
    { key: 'gaps', label: 'gaps (gap frames + seq holes)', unit: 'count', bare: false },
    { key: 'connects', label: 'connect webhooks beyond the first per client', unit: 'count', bare: false },
    { key: 'disconnects', label: 'disconnect webhooks', unit: 'count', bare: false },
    { key: 'disconnectsPerId', label: 'disconnect webhooks for one id, most', unit: 'count', bare: false },
    { key: 'failedAttempts', label: 'resume attempts refused or failed', unit: 'count', bare: false },
    { key: 'drainS', label: 'drain of A (SIGTERM → exit)', unit: 's', bare: false },
  ],
  async rep(options: RunOptions) {
    const sessions = options.quick ? 1000 : 5000;
    options.log(`cluster-storm: ${sessions.toLocaleString('en-US')} reliable sessions on node A, resuming on B and C`);
    const { url: rabbitUrl } = await rabbit();
    const app = await startHookApp();
    const cluster: ClusterOptions = { rabbitUrl, exchange: uniqueName('storm'), appUrl: app.url, drainMs: STORM_DRAIN_MS };
    const nodes: SwitchboardUnderTest[] = [];
    let drained: SwitchboardUnderTest | null = null;
    let group: LoadGroup | null = null;
    try {
      for (let i = 0; i < 3; i++) nodes.push(await startNode(i, cluster, options));
      await clusterReady(nodes);
      const [a, b, c] = nodes;
      const g = (group = new LoadGroup(2));
      await g.all('followNodes', { urls: [a.wsUrl] });
      await g.follow(Array.from({ length: sessions }, (_, j) => ({ url: a.wsUrl, user: `s${j}`, channel: 'storm' })), { pace: 'now', concurrency: 100 });
      await sleep(500);
      await pushTo(a, 'storm', 1, 0);
      await until('push 1 to reach every session', async () => (await stats(g)).received >= sessions, 20_000);

      await g.all('followNodes', { urls: [b.wsUrl, c.wsUrl] });
      const since = monotonicMs();
      drained = a;
      nodes.shift();
      const draining = drain(a, STORM_DRAIN_MS);
      await until('the first reconnect hint', async () => (await stats(g)).hints > 0, 10_000);
      await pushTo(b, 'storm', 2, 1);
      await until('every session to resume', async () => (await stats(g, since)).resumedSince >= sessions, 30_000)
        .catch((err: unknown) => options.log(`cluster-storm: ${(err as Error).message}`));
      const resumed = await stats(g, since);
      await until('push 2 to reach every session', async () => (await stats(g)).received >= 2 * sessions, 10_000)
        .catch((err: unknown) => options.log(`cluster-storm: ${(err as Error).message}`));
      const drainMs = await draining;
      drained = null;
      await sleep(LATE_WEBHOOKS_MS);

      const s = await stats(g, since);
      const collected = await g.all('followCollect', { phases: 2 });
      const { lost } = lostOf([{ k: 1, expected: sessions, phase: 0 }, { k: 2, expected: sessions, phase: 1 }], collected);
      const times = concat(collected.map((x) => x.resumeTimes));
      options.log(`cluster-storm: ${describe(s)}; disconnects by code ${JSON.stringify(Object.fromEntries(app.codes))}`);
      return {
        switchboard: {
          sessions: s.clients,
          notResumed: sessions - resumed.resumedSince,
          // Not all resumed: there is no time at which they all had.
          resumedIn: resumed.resumedSince === sessions ? (resumed.lastResumeAt - since) / 1000 : NaN,
          resumeP50: percentile(times, 50),
          resumeP99: percentile(times, 99),
          lost,
          duplicates: s.duplicates + s.misdelivered,
          resets: s.resets,
          gaps: s.gaps,
          connects: sum(app.connects) - sessions,
          disconnects: sum(app.disconnects),
          disconnectsPerId: Math.max(0, ...app.disconnects.values()),
          failedAttempts: s.failedAttempts,
          drainS: drainMs / 1000,
        },
        bare: null,
      };
    } finally {
      if (group) {
        await group.all('followClose', {}, 10_000).catch(() => {});
        await group.close();
      }
      if (drained) await halt(drained);
      await Promise.all(nodes.map(halt));
      await app.close();
    }
  },
};
