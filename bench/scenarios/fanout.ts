// Fanout: one push to every subscriber of a channel, at 1k and then 10k subscribers.
// Switchboard: the connect webhook puts each client in channel "bench"; the push is
// POST /v1/channels/bench/messages on the control port. Bare: POST /publish on the bare
// server's own control port, which loops over its clients.
import { LoadGroup } from '../load-generator.js';
import { monotonicMs } from '../load-protocol.js';
import { concat, percentile } from '../report.js';
import { sleep } from '../procs.js';
import { bothSides, type RunOptions, type Scenario } from '../scenario.js';
import { startApp, startBare, startSwitchboard, type App, type ServerUnderTest } from '../servers.js';

interface Step {
  readonly subscribers: number;
  readonly pushes: number;
  readonly label: string;
}

function steps(quick: boolean): Step[] {
  return quick
    ? [{ subscribers: 200, pushes: 20, label: '1k' }, { subscribers: 1000, pushes: 10, label: '10k' }]
    : [{ subscribers: 1000, pushes: 60, label: '1k' }, { subscribers: 10_000, pushes: 20, label: '10k' }];
}

let pushKey = 0;

/** Publishes `pushes` messages one after the other, each once every subscriber has the previous one. */
export async function publishAll(server: ServerUnderTest, group: LoadGroup, pushes: number, subscribers: number): Promise<{ missing: number }> {
  let missing = 0;
  for (let i = 0; i < pushes; i++) {
    const key = ++pushKey;
    await server.publish(JSON.stringify({ k: key, t: monotonicMs() }));
    const counts = await group.all('fanoutWait', { key, timeoutMs: 30_000 }, 35_000);
    missing += subscribers - counts.reduce((n, c) => n + c.received, 0);
    await sleep(20);
  }
  return { missing };
}

async function fanout(server: ServerUnderTest, app: App | null, options: RunOptions): Promise<Record<string, number>> {
  const figures: Record<string, number> = {};
  const plan = steps(options.quick);
  // Two client processes, so reading 10k frames is not one process's queue.
  const group = new LoadGroup(2);
  try {
    let connected = 0;
    for (const step of plan) {
      await group.connect(server.wsUrl, step.subscribers - connected, { concurrency: 100 });
      connected = step.subscribers;
      await group.all('fanoutCollect', {});
      await publishAll(server, group, 5, step.subscribers); // warm-up
      await group.all('fanoutCollect', {});
      const cpuBefore = server.cpuMs();
      const { missing } = await publishAll(server, group, step.pushes, step.subscribers);
      const cpu = server.cpuMs() - cpuBefore;
      const latencies = concat((await group.all('fanoutCollect', {})).map((r) => r.latencies));
      figures[`p50_${step.label}`] = percentile(latencies, 50);
      figures[`p99_${step.label}`] = percentile(latencies, 99);
      figures[`cpu_${step.label}`] = (cpu * 1000) / (step.pushes * step.subscribers);
      figures[`missing_${step.label}`] = missing;
    }
    return figures;
  } finally {
    await group.close();
    await server.stop();
    await app?.stop();
  }
}

export const fanoutScenario: Scenario = {
  name: 'fanout',
  title: 'fanout to one channel, 1k and 10k subscribers',
  notes: [
    'Publish → receive per recipient: the publisher stamps CLOCK_MONOTONIC (shared by all processes) in',
    'the JSON body just before the HTTP request; each client subtracts it on receipt. p50/p99 over all',
    'recipients of all pushes; one push at a time (the next once everyone has the previous), 60 pushes',
    'at 1k, 20 at 10k (quick: 200 and 1,000 subscribers). CPU: utime+stime of the server process from',
    '/proc/<pid>/stat over the measured pushes (10 ms ticks), divided by deliveries. Raw mode; Switchboard',
    'has message and disconnect webhooks off. Two client processes; on 2 cores they share with the server.',
  ],
  metrics: [
    { key: 'p50_1k', label: 'p50, 1k subscribers', unit: 'ms' },
    { key: 'p99_1k', label: 'p99, 1k subscribers', unit: 'ms' },
    { key: 'cpu_1k', label: 'CPU per delivery, 1k', unit: 'us' },
    { key: 'p50_10k', label: 'p50, 10k subscribers', unit: 'ms' },
    { key: 'p99_10k', label: 'p99, 10k subscribers', unit: 'ms', target: { text: '≤ 1.3× bare', on: 'ratio', max: 1.3 } },
    { key: 'cpu_10k', label: 'CPU per delivery, 10k', unit: 'us', target: { text: '≤ 1.5× bare', on: 'ratio', max: 1.5 } },
    { key: 'missing_10k', label: 'deliveries missing, 10k', unit: 'count', target: { text: '= 0', on: 'switchboard', max: 0 } },
  ],
  async rep(options: RunOptions, index: number) {
    options.log('fanout: 1k then 10k subscribers');
    return bothSides(
      index,
      async () => {
        const app = await startApp();
        const server = await startSwitchboard({
          config: { app: { url: app.url }, webhooks: { paths: { message: null, disconnect: null } } },
          nodeFlags: options.nodeFlags('switchboard'),
        }).catch(async (err: unknown) => { await app.stop(); throw err; });
        return fanout(server, app, options);
      },
      async () => fanout(await startBare({ mode: 'fanout', nodeFlags: options.nodeFlags('bare ws') }), null, options),
    );
  },
};
