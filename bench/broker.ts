// What the cluster scenarios share: the run's one private RabbitMQ, and a bounded wait.
import { startRabbit, type Rabbit } from '../test/helpers/rabbit.js';
import { cmdline, cpuMs, descendants, sleep } from './procs.js';

let broker: Promise<Rabbit> | null = null;

/** The run's broker (AMQP_URL, or a private one started on first use); a failed start is not kept, so a later scenario tries again. */
export function rabbit(): Promise<Rabbit> {
  broker ??= startRabbit().catch((err: unknown) => {
    broker = null;
    throw err;
  });
  return broker;
}

/** Until `check` holds, looked at every 50 ms; throws naming `what` after `timeoutMs`. */
export async function until(what: string, check: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  // A check that throws (a node not listening yet) counts as not yet.
  while (!(await check().catch(() => false))) {
    if (Date.now() > deadline) throw new Error(`gave up waiting: ${what}`);
    await sleep(50);
  }
}

/** CPU time (user + system) so far of this run's RabbitMQ (its Erlang VM, a child of this process), ms. */
export function brokerCpuMs(): number {
  return descendants(process.pid).filter((p) => cmdline(p).includes('beam.smp')).reduce((n, p) => n + cpuMs(p), 0);
}

/**
 * Waits until the run's RabbitMQ is nearly idle (under `share` of one core over `windowMs`), so a
 * measurement does not pay for what an earlier one left it (the queues and bindings of nodes just
 * stopped); gives up after `timeoutMs` and resolves with the time waited, ms.
 */
export async function brokerQuiet(share = 0.1, windowMs = 500, timeoutMs = 30_000): Promise<number> {
  const start = Date.now();
  for (;;) {
    const before = brokerCpuMs();
    await sleep(windowMs);
    if (brokerCpuMs() - before <= share * windowMs || Date.now() - start > timeoutMs) return Date.now() - start;
  }
}
