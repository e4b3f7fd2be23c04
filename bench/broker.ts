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
