// Presence (docs/presence.md), Switchboard alone on both sides:
//   presence-cost   one Switchboard with presence events on (webhooks.paths.presence), one with
//                   them off; reliable sessions of distinct users joining one channel: idle memory
//                   per session, connect rate, and for the join storm the presence webhook requests
//                   and the time until the app saw every member_added. The table's "switchboard"
//                   column is presence on, its "bare ws" column presence off.
//   presence-frames one Switchboard with presence frames on for the channel (presence.frames), one
//                   with presence off; the same join storm: every join is a frame to every member
//                   already there, so n joins are n(n+1)/2 frames.
//   presence-query  three nodes in a cluster holding 10,000 members of one channel between them:
//                   GET /v1/channels/{c}/presence (a page of 1,000; every page) on one node.
//   presence-cluster three nodes in a cluster, presence events on (one owner sends them) and off:
//                   5,000 reliable sessions of distinct users joining one channel over the three at
//                   once: the join time, the webhook requests, the time until the app saw every
//                   member_added, and the three nodes' CPU per join.
import { once } from 'node:events';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { uniqueName } from '../../test/helpers/rabbit.js';
import { brokerCpuMs, brokerQuiet, rabbit, until } from '../broker.js';
import { LoadGroup } from '../load-generator.js';
import { percentile } from '../report.js';
import { sleep } from '../procs.js';
import { bothSides, type RunOptions, type Scenario } from '../scenario.js';
import { merge } from '../../test/helpers/sidecar.js';
import { http, startSwitchboard, type SwitchboardUnderTest } from '../servers.js';

const CONCURRENCY = 100;
const CHANNEL = 'room';
const TOKEN_SECRET = 'one-secret-for-every-node';

interface PresenceApp {
  readonly url: string;
  /** Presence webhook requests, and when each member_added arrived (performance.now()). */
  readonly requests: number;
  readonly added: Map<string, number>;
  close(): Promise<void>;
}

/** Connect answers a user of its own for every connection (u0, u1, …) in one channel; presence batches are counted; the rest 204. */
async function startPresenceApp(): Promise<PresenceApp> {
  let next = 0;
  const state = { requests: 0, added: new Map<string, number>() };
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const path = req.url?.split('?')[0];
      if (req.method === 'POST' && path === '/ws/connect') {
        const body = Buffer.from(JSON.stringify({ user: `u${next++}`, channels: [CHANNEL] }));
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': body.length });
        return void res.end(body);
      }
      if (req.method === 'POST' && path === '/ws/presence') {
        state.requests++;
        const now = performance.now();
        try {
          const { events } = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { events: Array<{ type: string; user: string }> };
          for (const e of events) if (e.type === 'member_added' && !state.added.has(e.user)) state.added.set(e.user, now);
        } catch {
          // not a batch: counted as a request only
        }
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
    get requests() { return state.requests; },
    added: state.added,
    close: () => new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}

/** The wait for the app to have every member_added of a storm. */
const SEEN_BOUND_MS = 30_000;

/** Waits (within SEEN_BOUND_MS) until the app has seen `members` member_added; ms from `start` to the last, NaN when some never came. */
async function everyMemberAdded(app: PresenceApp, members: number, start: number): Promise<number> {
  const deadline = performance.now() + SEEN_BOUND_MS;
  while (app.added.size < members && performance.now() < deadline) await sleep(20);
  if (app.added.size < members) return NaN;
  let last = -Infinity;
  for (const at of app.added.values()) if (at > last) last = at;
  return last - start;
}

/**
 * `ids.length` Switchboard processes in one cluster (the run's RabbitMQ, an exchange of their
 * own), sharing one token secret, each with `config` merged in; resolves once every node lists
 * all of them. On a failed start, the nodes already up are stopped.
 */
async function startCluster(ids: readonly string[], config: Record<string, unknown>, options: RunOptions): Promise<SwitchboardUnderTest[]> {
  const { url } = await rabbit();
  const exchange = uniqueName('presence');
  const nodes: SwitchboardUnderTest[] = [];
  try {
    for (const nodeId of ids) {
      nodes.push(await startSwitchboard({
        config: merge({ nodeId, session: { tokenSecret: TOKEN_SECRET }, cluster: { amqp: { url, exchange } } }, config),
        nodeFlags: options.nodeFlags('switchboard'),
      }));
    }
    for (const node of nodes) {
      await until('every node to hear the others', async () => {
        const res = await http('GET', `${node.controlUrl}/v1/nodes`);
        return res.status === 200 && (JSON.parse(res.text) as { nodes: unknown[] }).nodes.length === nodes.length;
      }, 20_000);
    }
    return nodes;
  } catch (err) {
    for (const n of nodes) await n.stop();
    throw err;
  }
}

/**
 * Opens `members` reliable sessions spread evenly over `nodes`, one load process per node:
 * all nodes at once (`together`, CONCURRENCY handshakes in all), or node after node
 * (CONCURRENCY each). The groups are pushed onto `groups` as they start, for the caller to close.
 * `start`: performance.now() at the first handshake.
 */
async function spread(nodes: readonly SwitchboardUnderTest[], members: number, together: boolean, groups: LoadGroup[]): Promise<{ start: number; elapsedMs: number }> {
  const share = (i: number) => Math.floor(members / nodes.length) + (i < members % nodes.length ? 1 : 0);
  const concurrency = together ? Math.ceil(CONCURRENCY / nodes.length) : CONCURRENCY;
  const mine = nodes.map(() => {
    const group = new LoadGroup(1);
    groups.push(group);
    return group;
  });
  // Every load process up (an empty closeAll answers once it is), so the time is the handshakes'.
  await Promise.all(mine.map((g) => g.all('closeAll', {}, 10_000)));
  const start = performance.now();
  const open = (i: number) => mine[i]!.connect(nodes[i]!.wsUrl, share(i), { protocol: 'switchboard.v1', concurrency });
  if (together) await Promise.all(nodes.map((_, i) => open(i)));
  else for (let i = 0; i < nodes.length; i++) await open(i);
  return { start, elapsedMs: performance.now() - start };
}

// ── presence-cost ──────────────────────────────────────────────────────────────

/** What the sidecar tracks while the sessions join: the webhook, the frames to one channel, or nothing. */
type Tracking = 'webhook' | 'frames' | 'off';

async function joinStorm(tracking: Tracking, sessions: number, options: RunOptions): Promise<Record<string, number>> {
  const app = await startPresenceApp();
  const presence = tracking === 'webhook';
  let server: SwitchboardUnderTest | null = null;
  let group: LoadGroup | null = null;
  try {
    server = await startSwitchboard({
      config: {
        app: { url: app.url },
        webhooks: { paths: { message: null, disconnect: null, presence: presence ? '/ws/presence' : null } },
        session: { graceMs: 0 },
        presence: { frames: tracking === 'frames' ? [CHANNEL] : [] },
      },
      nodeFlags: options.nodeFlags('switchboard'),
    });
    await sleep(500);
    const before = await server.memory();
    const cpu = server.cpuMs();
    group = LoadGroup.sized(sessions);
    const start = performance.now();
    const { elapsedMs } = await group.connect(server.wsUrl, sessions, { protocol: 'switchboard.v1', concurrency: CONCURRENCY });
    const allSeen = presence ? await everyMemberAdded(app, sessions, start) : NaN;
    await sleep(1000);
    const serverCpu = ((server.cpuMs() - cpu) * 1000) / sessions;
    const after = await server.memory();
    return {
      rssPerSession: (after.rss - before.rss) / sessions,
      heapPerSession: (after.heapUsed - before.heapUsed) / sessions,
      handshakeRate: sessions / (elapsedMs / 1000),
      serverCpu,
      requests: presence ? app.requests : NaN,
      membersMissing: presence ? sessions - app.added.size : NaN,
      allSeen,
    };
  } finally {
    await group?.close();
    await server?.stop();
    await app.close();
  }
}

export const presenceCost: Scenario = {
  name: 'presence-cost',
  title: 'presence events on (switchboard column) vs off (bare ws column): a join storm and its idle cost',
  notes: [
    'Both columns are Switchboard: "switchboard" = presence events on (webhooks.paths.presence, the defaults:',
    'presence.batchMs 100, batchMax 500), "bare ws" = off; ratio = on / off. Each its own process, one after the',
    'other (alternating which goes first). 10,000 reliable sessions (quick: 1,000), 100 handshakes at once;',
    'the connect webhook gives each its own user (u0, u1, …) and channel "room", so every session is a member',
    'joining. Memory: RSS and heap of the sidecar after two forced GCs, before and 1 s after the sessions open,',
    'per session. Presence webhook requests: batches the app got for the storm; every member_added: from the',
    'first handshake to the arrival of the last member_added at the app. CPU: utime+stime of the sidecar over',
    'the connects and the second after, per session (on: handshake + presence; off: handshake alone).',
  ],
  metrics: [
    { key: 'rssPerSession', label: 'RSS per session', unit: 'bytes', target: { text: '≤ 1.1× presence off', on: 'ratio', max: 1.1 } },
    { key: 'heapPerSession', label: 'heap per session', unit: 'bytes' },
    { key: 'handshakeRate', label: 'handshakes/s while joining', unit: 'per-s' },
    { key: 'serverCpu', label: 'sidecar CPU per session', unit: 'us' },
    { key: 'requests', label: 'presence webhook requests for the storm', unit: 'count' },
    { key: 'membersMissing', label: 'member_added not seen in 30 s', unit: 'count', target: { text: '= 0', on: 'switchboard', max: 0 } },
    { key: 'allSeen', label: 'first handshake → every member_added', unit: 'ms' },
  ],
  async rep(options: RunOptions, index: number) {
    const sessions = options.quick ? 1000 : 10_000;
    options.log(`presence-cost: ${sessions.toLocaleString('en-US')} members joining, presence on and off`);
    return bothSides(index, () => joinStorm('webhook', sessions, options), () => joinStorm('off', sessions, options));
  },
};

// ── presence-frames ────────────────────────────────────────────────────────────

export const presenceFramesCost: Scenario = {
  name: 'presence-frames',
  title: 'presence frames on (switchboard column) vs presence off (bare ws column): a join storm into one channel',
  notes: [
    'Both columns are Switchboard: "switchboard" = presence.frames ["room"] (no webhook), "bare ws" = presence off;',
    'ratio = on / off. Each its own process, one after the other (alternating which goes first). 2,000 reliable',
    'sessions (quick: 500) of distinct users join "room" through the connect answer, 100 handshakes at once, so',
    'the storm is n(n+1)/2 + 1 frames (2,001,001 for 2,000). The load clients read but never ack, so each',
    'outbox keeps its last session.outbox.maxMessages (1,024) frames: the worst case for memory. Memory: RSS and',
    'heap after two forced GCs, before and 1 s after the sessions open, per session. CPU: utime+stime of the',
    'sidecar over the connects and the second after, per session.',
  ],
  metrics: [
    { key: 'rssPerSession', label: 'RSS per session', unit: 'bytes' },
    { key: 'heapPerSession', label: 'heap per session', unit: 'bytes' },
    { key: 'handshakeRate', label: 'handshakes/s while joining', unit: 'per-s' },
    { key: 'serverCpu', label: 'sidecar CPU per session', unit: 'us' },
  ],
  async rep(options: RunOptions, index: number) {
    const sessions = options.quick ? 500 : 2000;
    options.log(`presence-frames: ${sessions.toLocaleString('en-US')} members joining, frames on and presence off`);
    return bothSides(index, () => joinStorm('frames', sessions, options), () => joinStorm('off', sessions, options));
  },
};

// ── presence-query ─────────────────────────────────────────────────────────────

interface MembersPage {
  members: Array<{ user: string; connections: number }>;
  connections: number;
  next?: string | null;
  nodes?: { answered: number; missing: string[] };
}

async function page(server: SwitchboardUnderTest, cursor: string | null): Promise<{ body: MembersPage; ms: number }> {
  const query = cursor === null ? '' : `&cursor=${encodeURIComponent(cursor)}`;
  const start = performance.now();
  const res = await http('GET', `${server.controlUrl}/v1/channels/${CHANNEL}/presence?limit=1000${query}`);
  const ms = performance.now() - start;
  if (res.status !== 200) throw new Error(`presence answered ${res.status}: ${res.text.slice(0, 200)}`);
  return { body: JSON.parse(res.text) as MembersPage, ms };
}

async function query(options: RunOptions): Promise<Record<string, number>> {
  const members = options.quick ? 1500 : 10_000;
  const requests = options.quick ? 50 : 200;
  const app = await startPresenceApp();
  let nodes: SwitchboardUnderTest[] = [];
  const groups: LoadGroup[] = [];
  try {
    nodes = await startCluster(['presa', 'presb', 'presc'], {
      app: { url: app.url },
      webhooks: { paths: { message: null, disconnect: null } },
      session: { graceMs: 0 },
    }, options);
    await spread(nodes, members, false, groups);
    const first = await page(nodes[0]!, null);
    if (first.body.connections !== members) throw new Error(`the channel lists ${first.body.connections} connections, expected ${members}`);
    const times: number[] = [];
    for (let i = 0; i < requests; i++) times.push((await page(nodes[0]!, null)).ms);
    // Every page, following `next`.
    const walkStart = performance.now();
    let listed = 0;
    let cursor: string | null = null;
    for (let p = 0; p < 100; p++) {
      const { body } = await page(nodes[0]!, cursor);
      listed += body.members.length;
      cursor = body.next ?? null;
      if (cursor === null) break;
    }
    const walkMs = performance.now() - walkStart;
    return {
      p50: percentile(Float64Array.from(times), 50),
      p99: percentile(Float64Array.from(times), 99),
      walkMs,
      listedMissing: members - listed,
      answered: first.body.nodes?.answered ?? NaN,
    };
  } finally {
    for (const g of groups) await g.close();
    for (const n of nodes) await n.stop();
    await app.close();
  }
}

export const presenceQuery: Scenario = {
  name: 'presence-query',
  title: 'GET /v1/channels/{c}/presence for a 10,000-member channel over three nodes (Switchboard only)',
  notes: [
    'Bare ws has no presence. Three Switchboard processes in one cluster (one private RabbitMQ), 10,000 reliable',
    'sessions (quick: 1,500) of distinct users in one channel, a third on each node. On the first node,',
    'GET /v1/channels/room/presence?limit=1000 (the first page: the cluster-wide count and 1,000 members,',
    'asked of every node and merged), 200 times one after the other (quick: 50): p50 and p99; then every page',
    'following `next`: the time for the whole list.',
  ],
  metrics: [
    { key: 'p50', label: 'first page (1,000 members), p50', unit: 'ms' },
    { key: 'p99', label: 'first page (1,000 members), p99', unit: 'ms' },
    { key: 'walkMs', label: 'every page (10,000 members)', unit: 'ms' },
    { key: 'listedMissing', label: 'members missing from the pages', unit: 'count', target: { text: '= 0', on: 'switchboard', max: 0 } },
    { key: 'answered', label: 'nodes answered', unit: 'count' },
  ],
  async rep(options: RunOptions) {
    options.log('presence-query: 10k members over three nodes');
    return { switchboard: await query(options), bare: null };
  },
};

// ── presence-cluster ───────────────────────────────────────────────────────────

/** The storm the issue names: this many joins, across the cluster, within JOIN_BOUND_MS. */
const CLUSTER_JOINS = 5000;
const JOIN_BOUND_MS = 10_000;
/** After the nodes hear each other: time for the presence owner to take over and count every node (two heartbeats and more). */
const SETTLE_MS = 5000;

async function clusterStorm(presence: boolean, sessions: number, options: RunOptions): Promise<Record<string, number>> {
  const app = await startPresenceApp();
  let nodes: SwitchboardUnderTest[] = [];
  const groups: LoadGroup[] = [];
  try {
    nodes = await startCluster(['storma', 'stormb', 'stormc'], {
      app: { url: app.url },
      webhooks: { paths: { message: null, disconnect: null, presence: presence ? '/ws/presence' : null } },
      session: { graceMs: 0 },
    }, options);
    await sleep(SETTLE_MS);
    const waited = await brokerQuiet();
    if (waited > 1000) options.log(`presence-cluster: waited ${(waited / 1000).toFixed(1)} s for the broker to be idle`);
    const cpuOf = () => nodes.reduce((sum, n) => sum + n.cpuMs(), 0);
    const requestsBefore = app.requests;
    const cpu = { nodes: cpuOf(), broker: brokerCpuMs() };
    const { start, elapsedMs } = await spread(nodes, sessions, true, groups);
    const allSeen = presence ? await everyMemberAdded(app, sessions, start) : NaN;
    await sleep(1000);
    return {
      joinMs: elapsedMs,
      handshakeRate: sessions / (elapsedMs / 1000),
      serverCpu: ((cpuOf() - cpu.nodes) * 1000) / sessions,
      brokerCpu: ((brokerCpuMs() - cpu.broker) * 1000) / sessions,
      requests: presence ? app.requests - requestsBefore : NaN,
      membersMissing: presence ? sessions - app.added.size : NaN,
      allSeen,
    };
  } finally {
    for (const g of groups) await g.close();
    for (const n of nodes) await n.stop();
    await app.close();
  }
}

export const presenceCluster: Scenario = {
  name: 'presence-cluster',
  title: 'presence events on (switchboard column) vs off (bare ws column): a 5,000-member join storm over a three-node cluster',
  notes: [
    'Both columns are Switchboard: "switchboard" = presence events on (webhooks.paths.presence, the defaults:',
    'presence.batchMs 100, batchMax 500), "bare ws" = off; ratio = on / off. Each side its own cluster of three',
    'processes on the run\'s one RabbitMQ (an exchange of its own), one side after the other (alternating which',
    'goes first); 5 s after the nodes hear each other (the presence owner takes over and counts every node)',
    'and once the broker is idle (under 10% of a core for 0.5 s: the other side\'s queues and bindings gone),',
    '5,000 reliable sessions (quick: 1,000), each its own user (the connect webhook answers u0, u1, …, channel',
    '"room"), a third on each node, all three nodes at once, 100 handshakes at once in all (34 per node).',
    'Joins: first handshake to the last welcome. Presence webhook requests: batches the owner sent the app for',
    'the storm; every member_added: from the first handshake to the arrival of the last member_added at the app.',
    'CPU: utime+stime of the three sidecars over the joins (and, presence on, until every member_added) and the',
    'second after, per join (on: handshake + presence relayed to the owner + events; off: handshake alone),',
    'and of the broker\'s Erlang VM (beam.smp) over the same time.',
  ],
  metrics: [
    { key: 'joinMs', label: 'joins (first handshake → last welcome)', unit: 'ms', target: { text: '≤ 10 s', on: 'switchboard', max: JOIN_BOUND_MS } },
    { key: 'handshakeRate', label: 'handshakes/s while joining', unit: 'per-s' },
    { key: 'serverCpu', label: 'sidecar CPU per join (3 nodes)', unit: 'us' },
    { key: 'brokerCpu', label: 'RabbitMQ CPU per join', unit: 'us' },
    { key: 'requests', label: 'presence webhook requests for the storm', unit: 'count', bare: false },
    { key: 'membersMissing', label: `member_added not seen in ${SEEN_BOUND_MS / 1000} s`, unit: 'count', bare: false, target: { text: '= 0', on: 'switchboard', max: 0 } },
    { key: 'allSeen', label: 'first handshake → every member_added', unit: 'ms', bare: false },
  ],
  async rep(options: RunOptions, index: number) {
    const sessions = options.quick ? 1000 : CLUSTER_JOINS;
    options.log(`presence-cluster: ${sessions.toLocaleString('en-US')} members joining over three nodes, presence on and off`);
    return bothSides(index, () => clusterStorm(true, sessions, options), () => clusterStorm(false, sessions, options));
  },
};
