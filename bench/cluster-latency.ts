// Cross-node push latency: two Switchboard nodes sharing one RabbitMQ (cluster.amqp); a
// raw client on node B subscribed to a channel; pushes to that channel are posted to node
// A's push API one at a time. Latency = from just before the POST on A to the frame's
// arrival at the client on B. The same run against B's own API gives the local baseline.
//
//   npx tsc -p . && node dist/bench/cluster-latency.js [pushes=1000]
//
// Uses AMQP_URL when set, else starts a private RabbitMQ (rabbitmq-server must be installed).
import { once } from 'node:events';
import { WebSocket } from 'ws';
import { startApp } from '../test/helpers/app.js';
import { startSidecar, type Sidecar } from '../test/helpers/sidecar.js';
import { startRabbit, uniqueName } from '../test/helpers/rabbit.js';

const pushes = Number(process.argv[2] ?? 1000);

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}

async function measure(from: Sidecar, ws: WebSocket, n: number): Promise<number[]> {
  const times: number[] = [];
  let arrived: ((at: number) => void) | null = null;
  const onMessage = () => arrived?.(performance.now());
  ws.on('message', onMessage);
  for (let i = 0; i < n; i++) {
    const got = new Promise<number>((resolve) => { arrived = resolve; });
    const started = performance.now();
    const res = await fetch(`${from.controlUrl}/v1/channels/bench/messages`, {
      method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ i }),
    });
    await res.arrayBuffer();
    if (res.status !== 202) throw new Error(`push answered ${res.status}`);
    times.push((await got) - started);
  }
  ws.off('message', onMessage);
  return times.sort((a, b) => a - b);
}

function report(label: string, t: number[]): void {
  const f = (x: number) => `${x.toFixed(2)} ms`;
  console.log(`${label.padEnd(28)} n=${t.length}  p50=${f(percentile(t, 50))}  p90=${f(percentile(t, 90))}  p99=${f(percentile(t, 99))}  max=${f(t[t.length - 1])}`);
}

const rabbit = await startRabbit();
const app = await startApp((req) => (req.url === '/ws/connect' ? { status: 200, body: { channels: ['bench'] } } : { status: 204 }));
const exchange = uniqueName('cluster');
const node = (nodeId: string) => startSidecar(app.url, { nodeId, cluster: { amqp: { url: rabbit.url, exchange } }, session: { tokenSecret: 'one-secret-for-every-node' } });
const a = await node('benchaa');
const b = await node('benchbb');
try {
  for (const n of [a, b]) {
    for (let i = 0; !n.sb.readiness().ready; i++) {
      if (i === 500) throw new Error('a node was not ready within 10 s');
      await new Promise((r) => setTimeout(r, 20));
    }
  }
  const ws = new WebSocket(b.wsUrl());
  await once(ws, 'open');
  // Until the channel binding of B is in place, pushes from A do not reach it.
  for (let attempt = 0; ; attempt++) {
    if (attempt === 100) throw new Error("node B's channel binding did not take effect within 100 pushes");
    const got = new Promise((resolve) => ws.once('message', resolve));
    await fetch(`${a.controlUrl}/v1/channels/bench/messages`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"warm":true}' });
    if (await Promise.race([got.then(() => true), new Promise((r) => setTimeout(() => r(false), 100))])) break;
  }
  await measure(a, ws, 100); // warm-up
  console.log(`RabbitMQ ${rabbit.owned ? 'private (test helper)' : rabbit.url.replace(/:[^:@/]*@/, ':***@')}, node ${process.version}, ${pushes} sequential pushes`);
  report('cross-node (A API -> B ws)', await measure(a, ws, pushes));
  report('same node (B API -> B ws)', await measure(b, ws, pushes));
  ws.close();
} finally {
  await a.close();
  await b.close();
  await app.close();
  await rabbit.close();
}
