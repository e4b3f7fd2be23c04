// Resume storm: reliable sessions all lose their sockets at once, miss pushes while
// detached, and all resume at once. Switchboard alone: bare ws has no sessions to resume.
import { LoadGroup } from '../load-generator.js';
import { listenOverflows, sleep } from '../procs.js';
import { concat, percentile } from '../report.js';
import type { RunOptions, Scenario } from '../scenario.js';
import { http, startSwitchboard, type SwitchboardUnderTest } from '../servers.js';

const DETACHED_PUSHES = 3;

async function broadcast(server: SwitchboardUnderTest, n: number): Promise<{ delivered: number; queued: number; dropped: number }> {
  const res = await http('POST', `${server.controlUrl}/v1/broadcast`, JSON.stringify({ n }));
  if (res.status !== 202) throw new Error(`broadcast answered ${res.status}: ${res.text.slice(0, 200)}`);
  return JSON.parse(res.text);
}

async function until(what: string, check: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`gave up waiting: ${what}`);
    await sleep(50);
  }
}

export const resumeScenario: Scenario = {
  name: 'resume',
  title: 'resume storm (Switchboard only)',
  notes: [
    'Bare ws has no resume, so these are Switchboard figures alone. Reliable sessions (switchboard.v1),',
    'one broadcast received (seq 1), then every client socket terminated at once; once the sidecar',
    `counts 0 connections, ${DETACHED_PUSHES} broadcasts go to the detached sessions; then every client resumes at once`,
    'with ?resume=<token>&lastSeq=<n>. Time from the first resume to the last welcome (resumed:true, same',
    'session) and to the last held message; lost = seq holes + gap frames + seqs never received. Two client',
    'processes; no webhooks (connect, message, disconnect null). Listen queue overflows: TcpExt',
    'ListenOverflows from /proc/net/netstat over the storm (each dropped SYN/ACK costs its client a 1 s+ retry).',
  ],
  metrics: [
    { key: 'sessions', label: 'sessions', unit: 'count', bare: false },
    { key: 'notResumed', label: 'sessions not resumed', unit: 'count', bare: false, target: { text: '= 0', on: 'switchboard', max: 0 } },
    { key: 'resumedIn', label: 'all resumed (last welcome)', unit: 's', bare: false, target: { text: '≤ 10 s', on: 'switchboard', max: 10 } },
    { key: 'welcomeP50', label: 'resume → welcome, p50', unit: 'ms', bare: false },
    { key: 'welcomeP99', label: 'resume → welcome, p99', unit: 'ms', bare: false },
    { key: 'deliveredIn', label: 'all held messages delivered', unit: 's', bare: false, target: { text: '≤ 10 s', on: 'switchboard', max: 10 } },
    { key: 'lost', label: 'messages lost', unit: 'count', bare: false, target: { text: '= 0', on: 'switchboard', max: 0 } },
    { key: 'duplicates', label: 'duplicates or wrong data', unit: 'count', bare: false },
    { key: 'serverCpu', label: 'sidecar CPU per resume', unit: 'us', bare: false },
    { key: 'clientCpu', label: 'client CPU per resume', unit: 'us', bare: false },
    { key: 'overflows', label: 'listen queue overflows (machine)', unit: 'count', bare: false },
    { key: 'detachMs', label: 'sockets dropped → sidecar sees 0', unit: 'ms', bare: false },
  ],
  async rep(options: RunOptions) {
    const sessions = options.quick ? 1000 : 5000;
    options.log(`resume: ${sessions.toLocaleString('en-US')} reliable sessions`);
    const server = await startSwitchboard({
      config: { webhooks: { paths: { connect: null, message: null, disconnect: null } } },
      nodeFlags: options.nodeFlags('switchboard'),
    });
    const group = new LoadGroup(2);
    try {
      await group.connect(server.wsUrl, sessions, { protocol: 'switchboard.v1', concurrency: 100 });
      await broadcast(server, 1);
      const first = await group.all('seqWait', { seq: 1, timeoutMs: 20_000 });
      if (first.some((r) => r.incomplete > 0)) throw new Error('the first broadcast did not reach every session');

      const dropped = performance.now();
      await group.all('drop', {});
      await until('the sidecar to see every socket gone', async () => (await server.metric('switchboard_connections')) === 0, 20_000);
      const detachMs = performance.now() - dropped;
      let queued = 0;
      for (let n = 2; n <= DETACHED_PUSHES + 1; n++) queued += (await broadcast(server, n)).queued;
      if (queued !== sessions * DETACHED_PUSHES) options.log(`resume: warning: ${queued} pushes queued, expected ${sessions * DETACHED_PUSHES}`);

      const cpu = { server: server.cpuMs(), client: group.cpuMs() };
      const overflowsBefore = listenOverflows();
      const start = performance.now();
      const resumed = await group.all('resume', { url: server.wsUrl, timeoutMs: 60_000 }, 65_000);
      const resumedIn = (performance.now() - start) / 1000;
      const held = await group.all('seqWait', { seq: DETACHED_PUSHES + 1, timeoutMs: 60_000 }, 65_000);
      const deliveredIn = (performance.now() - start) / 1000;
      const overflows = listenOverflows() - overflowsBefore;
      const serverCpu = ((server.cpuMs() - cpu.server) * 1000) / sessions;
      const clientCpu = ((group.cpuMs() - cpu.client) * 1000) / sessions;
      const ok = resumed.reduce((n, r) => n + r.resumed, 0);
      const times = concat(resumed.map((r) => r.times));
      const errors = resumed.flatMap((r) => Object.entries(r.errors));
      if (errors.length > 0) options.log(`resume: errors: ${JSON.stringify(errors)}`);
      return {
        switchboard: {
          sessions,
          notResumed: sessions - ok,
          resumedIn,
          welcomeP50: percentile(times, 50),
          welcomeP99: percentile(times, 99),
          deliveredIn,
          lost: held.reduce((n, r) => n + r.lost, 0),
          duplicates: held.reduce((n, r) => n + r.duplicates + r.wrongData, 0),
          detachMs,
          serverCpu,
          clientCpu,
          overflows,
        },
        bare: null,
      };
    } finally {
      await group.close();
      await server.stop();
    }
  },
};
