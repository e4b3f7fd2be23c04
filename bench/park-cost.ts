// What parking costs: N reliable sessions, detached, on node A of a two-node cluster (one
// RabbitMQ); A drains and parks them all; then every client resumes on node B, which claims
// its parked session. Baseline in the same run: N sessions detached on B resumed on B itself
// (a resume that moves nothing). Parking is timed as A's drain minus its reconnect spread.
//
//   npx tsc -p . && node dist/bench/park-cost.js [sessions=2000] [reps=3]
//
// Uses AMQP_URL when set, else starts a private RabbitMQ (rabbitmq-server must be installed).
import { once } from 'node:events';
import { WebSocket } from 'ws';
import { startApp } from '../test/helpers/app.js';
import { startSidecar, type Sidecar } from '../test/helpers/sidecar.js';
import { startRabbit, uniqueName } from '../test/helpers/rabbit.js';

const sessions = Number(process.argv[2] ?? 2000);
const reps = Number(process.argv[3] ?? 3);
/**
 * drain.timeoutMs: half of it is the reconnect spread (and 200 ms more the drain waits for
 * clients), subtracted from the drain's time; most of the rest is parking's budget.
 */
const DRAIN_MS = 20_000;
const CONCURRENCY = 50;

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

interface Welcome { session: string; token: string; resumed: boolean }

function open(url: string, protocols = 'switchboard.v1'): Promise<{ ws: WebSocket; welcome: Welcome }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, protocols);
    const timer = setTimeout(() => reject(new Error(`no welcome from ${url}`)), 30_000);
    ws.once('message', (data: Buffer) => { clearTimeout(timer); resolve({ ws, welcome: JSON.parse(data.toString()) as Welcome }); });
    ws.once('error', (err) => { clearTimeout(timer); reject(err); });
  });
}

async function inBatches<T>(items: T[], run: (item: T) => Promise<void>): Promise<void> {
  for (let i = 0; i < items.length; i += CONCURRENCY) await Promise.all(items.slice(i, i + CONCURRENCY).map(run));
}

/** Opens n sessions on `sc`, drops their sockets, waits until `sc` sees them detached. */
async function detached(sc: Sidecar, n: number): Promise<Welcome[]> {
  const welcomes: Welcome[] = [];
  await inBatches(Array.from({ length: n }, (_, i) => i), async () => {
    const { ws, welcome } = await open(sc.wsUrl());
    welcomes.push(welcome);
    ws.terminate();
  });
  for (let i = 0; [...sc.sb.registry.all()].some((s) => s.attached); i++) {
    if (i === 1000) throw new Error('sessions still attached after 20 s');
    await new Promise((r) => setTimeout(r, 20));
  }
  return welcomes;
}

/** Resumes every session on `sc`; ms for all, and how many came back resumed. */
async function resumeAll(sc: Sidecar, welcomes: Welcome[]): Promise<{ ms: number; resumed: number }> {
  let resumed = 0;
  const started = performance.now();
  await inBatches(welcomes, async (w) => {
    const { ws, welcome } = await open(sc.wsUrl(`/ws?resume=${encodeURIComponent(w.token)}&lastSeq=0`));
    if (welcome.resumed && welcome.session === w.session) resumed++;
    ws.close();
    await once(ws, 'close');
  });
  return { ms: performance.now() - started, resumed };
}

const rabbit = await startRabbit();
const app = await startApp(() => ({ status: 204 }));
const figures = { park: [] as number[], claim: [] as number[], local: [] as number[] };
try {
  for (let rep = 0; rep < reps; rep++) {
    const exchange = uniqueName('cluster');
    const node = (nodeId: string) => startSidecar(app.url, {
      nodeId,
      cluster: { amqp: { url: rabbit.url, exchange } },
      session: { tokenSecret: 'one-secret-for-every-node' },
      webhooks: { paths: { connect: null, message: null, disconnect: null } },
      drain: { timeoutMs: DRAIN_MS },
    });
    const a = await node('parka');
    const b = await node('parkb');
    for (let i = 0; !(a.sb.readiness().ready && b.sb.readiness().ready); i++) {
      if (i === 500) throw new Error('nodes not ready within 10 s');
      await new Promise((r) => setTimeout(r, 20));
    }
    const local = await detached(b, sessions);
    const baseline = await resumeAll(b, local);
    if (baseline.resumed !== sessions) throw new Error(`local resume: ${baseline.resumed} of ${sessions}`);

    const parked = await detached(a, sessions);
    const drainStarted = performance.now();
    await a.close();
    const parkMs = performance.now() - drainStarted - DRAIN_MS / 2 - 200;
    const claimed = await resumeAll(b, parked);
    if (claimed.resumed !== sessions) throw new Error(`claims: ${claimed.resumed} of ${sessions} resumed`);
    figures.park.push(parkMs);
    figures.claim.push(claimed.ms);
    figures.local.push(baseline.ms);
    console.error(`rep ${rep + 1}: park ${parkMs.toFixed(0)} ms, claim ${claimed.ms.toFixed(0)} ms, local resume ${baseline.ms.toFixed(0)} ms`);
    await b.close();
  }
  const per = (ms: number) => `${((ms * 1000) / sessions).toFixed(0)} µs`;
  const [park, claim, local] = [median(figures.park), median(figures.claim), median(figures.local)];
  console.log(`${sessions} sessions, ${reps} repetitions (medians), ${CONCURRENCY} resumes in flight`);
  console.log(`park (A's drain, spread excluded)   ${park.toFixed(0)} ms   ${per(park)} per session`);
  console.log(`claim on B (resume of a parked one)  ${claim.toFixed(0)} ms   ${per(claim)} per session`);
  console.log(`local resume on B (baseline)         ${local.toFixed(0)} ms   ${per(local)} per session`);
  console.log(`claim / local resume                 ${(claim / local).toFixed(1)}×`);
} finally {
  await app.close();
  await rabbit.close();
}
