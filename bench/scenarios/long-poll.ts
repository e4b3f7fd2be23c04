// Long-polling against Server-Sent Events, both Switchboard, in the same run: the same sessions
// (reliable: seq, outbox, grace) over polls or over a stream. The table's "switchboard" column is
// long-poll, its "bare ws" column SSE.
//   throughput  a burst of pushes to 1,000 clients: deliveries per second until every client has all
//   latency     one push at a time to all 1,000: publish → receive p50/p99 (the added latency against SSE)
import { LoadGroup } from '../load-generator.js';
import { monotonicMs } from '../load-protocol.js';
import { publishAll } from './fanout.js';
import { concat, percentile } from '../report.js';
import { sleep } from '../procs.js';
import { bothSides, type RunOptions, type Scenario } from '../scenario.js';
import { startApp, startSwitchboard, type ServerUnderTest } from '../servers.js';

type Transport = 'long-poll' | 'sse';

const CLIENTS = 1000;

/** Keys of the burst's pushes; apart from those publishAll uses. */
let burstKey = 1_000_000;

/** `pushes` published back to back; resolves once every client has the last one (each session's come in order). */
async function burst(server: ServerUnderTest, group: LoadGroup, pushes: number): Promise<{ elapsedMs: number; deliveries: number }> {
  await group.all('fanoutCollect', {});
  const start = performance.now();
  let last = 0;
  for (let i = 0; i < pushes; i++) {
    last = ++burstKey;
    await server.publish(JSON.stringify({ k: last, t: monotonicMs() }));
  }
  await group.all('fanoutWait', { key: last, timeoutMs: 60_000 }, 65_000);
  const elapsedMs = performance.now() - start;
  const deliveries = (await group.all('fanoutCollect', {})).reduce((n, r) => n + r.latencies.length, 0);
  return { elapsedMs, deliveries };
}

async function side(transport: Transport, options: RunOptions): Promise<Record<string, number>> {
  const pushes = options.quick ? 10 : 30;
  const burstPushes = options.quick ? 50 : 200;
  const app = await startApp();
  const server = await startSwitchboard({
    config: { app: { url: app.url }, webhooks: { paths: { message: null, disconnect: null } } },
    nodeFlags: options.nodeFlags('switchboard'),
  }).catch(async (err: unknown) => { await app.stop(); throw err; });
  const group = new LoadGroup(2);
  try {
    await group.connect(server.wsUrl.replace(/^ws:/, 'http:'), CLIENTS, { transport, concurrency: 100 });
    await sleep(500);
    await group.all('fanoutCollect', {});
    await publishAll(server, group, 5, CLIENTS); // warm-up
    await group.all('fanoutCollect', {});
    const { missing } = await publishAll(server, group, pushes, CLIENTS);
    const latencies = concat((await group.all('fanoutCollect', {})).map((r) => r.latencies));
    const { elapsedMs, deliveries } = await burst(server, group, burstPushes);
    return {
      messagesPerSec: deliveries / (elapsedMs / 1000),
      p50: percentile(latencies, 50),
      p99: percentile(latencies, 99),
      missing: missing + (CLIENTS * burstPushes - deliveries),
    };
  } finally {
    await group.close();
    await server.stop();
    await app.stop();
  }
}

export const longPollScenario: Scenario = {
  name: 'long-poll',
  title: 'long-polling (switchboard column) against Server-Sent Events (bare ws column), both Switchboard',
  notes: [
    'Both columns are Switchboard: "switchboard" = long-poll sessions (GET /ws?transport=long-poll, then',
    'polls from the last seq on one keep-alive socket each, docs/usage.md), "bare ws" = SSE sessions: the same',
    'sessions (seq, outbox, grace), so the ratio is what polling costs against a stream. Each its own process,',
    'one after the other (alternating which goes first). 1,000 clients, 100 opening at once, all in channel',
    '"bench" by the connect webhook; message and disconnect webhooks off; no acks from either client (a poll\'s',
    'lastSeq acks, SSE clients never do). Latency: one push at a time to the channel (the next once every',
    'client has the previous), 5 warm-up then 30 measured (quick: 10); publish → receive per recipient',
    '(CLOCK_MONOTONIC stamped in the body). Throughput: 200 pushes (quick: 50) published back to back, one',
    'POST after the other; deliveries per second from the first publish until every client has the last.',
  ],
  metrics: [
    { key: 'messagesPerSec', label: 'deliveries per second (burst)', unit: 'msg/s' },
    { key: 'p50', label: 'fanout p50', unit: 'ms' },
    { key: 'p99', label: 'fanout p99', unit: 'ms' },
    { key: 'missing', label: 'deliveries missing', unit: 'count', target: { text: '= 0', on: 'switchboard', max: 0 } },
  ],
  async rep(options: RunOptions, index: number) {
    options.log('long-poll: 1,000 clients polling, then over SSE (or the other way round)');
    return bothSides(index, () => side('long-poll', options), () => side('sse', options));
  },
};
