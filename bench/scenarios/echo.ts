// Echo: client → `message` webhook → the app's answer → client, against a ws server
// that echoes directly. Throughput with a fixed amount of work, then latency at a fixed
// open-loop rate.
import { LoadGroup } from '../load-generator.js';
import { concat, percentile } from '../report.js';
import { bothSides, type RunOptions, type Scenario } from '../scenario.js';
import { startApp, startBare, startSwitchboard, type App, type ServerUnderTest } from '../servers.js';

const CONNECTIONS = 50;
const IN_FLIGHT = 16;
const SIZE = 64;
const RATE = 1000;
const BATCH = 64;

/** Throughput only (the burst), or throughput then latency at a fixed rate. */
async function echo(server: ServerUnderTest, app: App | null, options: RunOptions, burstOnly = false): Promise<Record<string, number>> {
  const perConnection = options.quick ? 200 : 1000;
  const durationMs = options.quick ? 3000 : 10_000;
  const group = new LoadGroup(1);
  try {
    await group.connect(server.wsUrl, CONNECTIONS);
    // Warm-up: JIT, and the sidecar's keep-alive pool to the app.
    await group.all('echoBurst', { messages: 50, inFlight: IN_FLIGHT, size: SIZE, timeoutMs: 30_000 });
    const cpu = { server: server.cpuMs(), app: app?.cpuMs() ?? 0, client: group.cpuMs() };
    const [burst] = await group.all('echoBurst', { messages: perConnection, inFlight: IN_FLIGHT, size: SIZE, timeoutMs: 120_000 }, 130_000);
    const perMessage = (ms: number) => (ms * 1000) / burst.received;
    const serverCpu = perMessage(server.cpuMs() - cpu.server);
    const appCpu = perMessage((app?.cpuMs() ?? 0) - cpu.app);
    const clientCpu = perMessage(group.cpuMs() - cpu.client);
    if (burst.timedOut) throw new Error(`${server.kind}: echo burst timed out (${burst.received} of ${CONNECTIONS * perConnection} back)`);
    const throughput = burst.received / (burst.elapsedMs / 1000);
    if (burstOnly) return { throughput, serverCpu, appCpu, outOfOrder: burst.mismatched };
    const [rate] = await group.all('echoRate', { rate: RATE, durationMs, size: SIZE, timeoutMs: 10_000 }, durationMs + 20_000);
    const latencies = concat([rate.latencies]);
    return {
      throughput,
      serverCpu,
      appCpu,
      clientCpu,
      p50: percentile(latencies, 50),
      p99: percentile(latencies, 99),
      max: percentile(latencies, 100),
      unanswered: rate.sent - rate.received,
      outOfOrder: burst.mismatched + rate.mismatched,
    };
  } finally {
    await group.close();
    await server.stop();
    await app?.stop();
  }
}

async function sidecar(options: RunOptions, batchMessages: number, burstOnly: boolean): Promise<Record<string, number>> {
  const app = await startApp();
  const server = await startSwitchboard({
    config: { app: { url: app.url }, webhooks: { batchMessages, paths: { connect: null, disconnect: null } } },
    nodeFlags: options.nodeFlags('switchboard'),
  }).catch(async (err: unknown) => { await app.stop(); throw err; });
  return echo(server, app, options, burstOnly);
}

export const echoScenario: Scenario = {
  name: 'echo',
  title: `echo, ${CONNECTIONS} connections, ${SIZE}-byte text messages`,
  notes: [
    `Switchboard: raw text frame → POST /ws/message to a node:http app (own process) that answers with`,
    'the body → text frame back; connect and disconnect webhooks off. Bare: the ws server echoes.',
    `Throughput: ${IN_FLIGHT} messages in flight per connection, fixed count per connection (1,000; quick: 200).`,
    `Latency: open loop at ${RATE.toLocaleString('en-US')} msg/s spread over the ${CONNECTIONS} connections for 10 s (quick: 3 s),`,
    'round trip measured in the client process. On 2 cores, the client, the sidecar and the app share them.',
    'CPU per message: utime+stime from /proc/<pid>/stat over the burst, divided by messages echoed.',
    `Batched: a second sidecar with webhooks.batchMessages: ${BATCH}; the app answers {"send":[...]}; its ratio`,
    'is against the same bare ws echo.',
  ],
  metrics: [
    { key: 'throughput', label: 'max throughput', unit: 'msg/s', target: { text: '≥ 0.25× bare', on: 'ratio', min: 0.25 } },
    { key: 'throughputBatched', label: `max throughput, batchMessages: ${BATCH}`, unit: 'msg/s', target: { text: '≥ 0.25× bare', on: 'ratio', min: 0.25 } },
    { key: 'serverCpu', label: 'server CPU per message (burst)', unit: 'us' },
    { key: 'serverCpuBatched', label: `server CPU per message, batchMessages: ${BATCH}`, unit: 'us' },
    { key: 'appCpu', label: 'app CPU per message (burst)', unit: 'us', bare: false },
    { key: 'clientCpu', label: 'client CPU per message (burst)', unit: 'us' },
    { key: 'p50', label: `p50 at ${RATE} msg/s`, unit: 'ms' },
    { key: 'p99', label: `p99 at ${RATE} msg/s`, unit: 'ms', target: { text: '≤ 3 ms', on: 'switchboard', max: 3 } },
    { key: 'max', label: `max at ${RATE} msg/s`, unit: 'ms' },
    { key: 'unanswered', label: 'messages never answered', unit: 'count', target: { text: '= 0', on: 'switchboard', max: 0 } },
    { key: 'outOfOrder', label: 'answers out of order', unit: 'count', target: { text: '= 0', on: 'switchboard', max: 0 } },
  ],
  async rep(options: RunOptions, index: number) {
    options.log('echo: throughput, then latency at a fixed rate');
    return bothSides(
      index,
      async () => {
        const single = await sidecar(options, 1, false);
        const batched = await sidecar(options, BATCH, true);
        return { ...single, throughputBatched: batched.throughput, serverCpuBatched: batched.serverCpu, outOfOrder: single.outOfOrder + batched.outOfOrder };
      },
      async () => {
        const bare = await echo(await startBare({ mode: 'echo', nodeFlags: options.nodeFlags('bare ws') }), null, options);
        return { ...bare, throughputBatched: bare.throughput, serverCpuBatched: bare.serverCpu };
      },
    );
  },
};
