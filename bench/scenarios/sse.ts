// Server-Sent Events against WebSocket, both Switchboard, in the same run: the same sessions
// (reliable: seq, outbox, grace) over an SSE stream or a `switchboard.v1` socket.
// The table's "switchboard" column is SSE, its "bare ws" column WebSocket.
//   idle    RSS and heap per session with 10,000 sessions held
//   fanout  one push at a time to all 10,000 (one channel): publish → receive p50/p99, CPU per delivery
import { LoadGroup } from '../load-generator.js';
import { MAX_SOCKETS_PER_PROCESS } from '../load-protocol.js';
import { publishAll } from './fanout.js';
import { concat, percentile } from '../report.js';
import { sleep } from '../procs.js';
import { bothSides, type RunOptions, type Scenario } from '../scenario.js';
import { startApp, startSwitchboard } from '../servers.js';

type Transport = 'sse' | 'websocket';

async function side(transport: Transport, options: RunOptions): Promise<Record<string, number>> {
  const sessions = options.quick ? 1000 : 10_000;
  const pushes = options.quick ? 10 : 20;
  const app = await startApp();
  const server = await startSwitchboard({
    config: { app: { url: app.url }, webhooks: { paths: { message: null, disconnect: null } } },
    nodeFlags: options.nodeFlags('switchboard'),
  }).catch(async (err: unknown) => { await app.stop(); throw err; });
  // Two client processes, so reading 10k streams is not one process's queue.
  const group = new LoadGroup(Math.max(2, Math.ceil(sessions / MAX_SOCKETS_PER_PROCESS)));
  try {
    await sleep(500);
    const before = await server.memory();
    const url = transport === 'sse' ? server.wsUrl.replace(/^ws:/, 'http:') : server.wsUrl;
    await group.connect(url, sessions, transport === 'sse' ? { transport: 'sse', concurrency: 100 } : { protocol: 'switchboard.v1', concurrency: 100 });
    await sleep(1000);
    const after = await server.memory();
    await group.all('fanoutCollect', {});
    await publishAll(server, group, 5, sessions); // warm-up
    await group.all('fanoutCollect', {});
    const cpuBefore = server.cpuMs();
    const { missing } = await publishAll(server, group, pushes, sessions);
    const cpu = server.cpuMs() - cpuBefore;
    const latencies = concat((await group.all('fanoutCollect', {})).map((r) => r.latencies));
    return {
      rssPerSession: (after.rss - before.rss) / sessions,
      heapPerSession: (after.heapUsed - before.heapUsed) / sessions,
      p50: percentile(latencies, 50),
      p99: percentile(latencies, 99),
      cpuPerDelivery: (cpu * 1000) / (pushes * sessions),
      missing,
    };
  } finally {
    await group.close();
    await server.stop();
    await app.stop();
  }
}

export const sseScenario: Scenario = {
  name: 'sse',
  title: 'Server-Sent Events (switchboard column) against WebSocket (bare ws column), both Switchboard',
  notes: [
    'Both columns are Switchboard: "switchboard" = SSE sessions (GET /ws with Accept: text/event-stream,',
    'docs/usage.md), "bare ws" = WebSocket sessions in reliable mode (switchboard.v1): the same sessions (seq,',
    'outbox, grace), so the ratio is what the transport costs. Each its own process, one after the other',
    '(alternating which goes first). 10,000 sessions (quick: 1,000), 100 opening at once, all put in channel',
    '"bench" by the connect webhook; message and disconnect webhooks off. Memory: RSS and heap of the sidecar',
    'after two forced full GCs, before and 1 s after the sessions open; per session = difference / sessions.',
    'Fanout: one push at a time to the channel (the next once every session has the previous), 5 warm-up',
    'then 20 measured (quick: 10); publish → receive per recipient (CLOCK_MONOTONIC stamped in the body);',
    'CPU: utime+stime of the sidecar over the measured pushes, per delivery. No acks from either client.',
  ],
  metrics: [
    { key: 'rssPerSession', label: 'RSS per session', unit: 'bytes', target: { text: '≤ 1.5× WebSocket', on: 'ratio', max: 1.5 } },
    { key: 'heapPerSession', label: 'heap per session', unit: 'bytes', target: { text: '≤ 1.5× WebSocket', on: 'ratio', max: 1.5 } },
    { key: 'p50', label: 'fanout p50', unit: 'ms' },
    { key: 'p99', label: 'fanout p99', unit: 'ms', target: { text: '≤ 1.3× WebSocket', on: 'ratio', max: 1.3 } },
    { key: 'cpuPerDelivery', label: 'CPU per delivery', unit: 'us', target: { text: '≤ 1.5× WebSocket', on: 'ratio', max: 1.5 } },
    { key: 'missing', label: 'deliveries missing', unit: 'count', target: { text: '= 0', on: 'switchboard', max: 0 } },
  ],
  async rep(options: RunOptions, index: number) {
    options.log('sse: 10k sessions over SSE, then over WebSocket (or the other way round)');
    return bothSides(index, () => side('sse', options), () => side('websocket', options));
  },
};
