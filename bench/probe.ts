// Preloaded (`node --expose-gc --import probe.js`) into every measured server process,
// Switchboard and bare ws alike, so both are measured the same way: on an IPC request
// it runs a full GC twice and answers with process.memoryUsage(). SIGUSR2 runs a full
// GC too: that reaches cluster workers, whose IPC channel belongs to their primary.
// It allocates nothing until asked. It leaves the IPC channel's ref alone: unref'ing it
// lets a cluster worker exit while its listen() waits for the primary.
import { readFileSync } from 'node:fs';

interface MemoryRequest {
  readonly bench: 'memory';
  readonly id: number;
}

function isRequest(m: unknown): m is MemoryRequest {
  return typeof m === 'object' && m !== null && (m as MemoryRequest).bench === 'memory';
}

function vmRss(): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'));
  return m ? Number(m[1]) * 1024 : 0;
}

const gc = (globalThis as { gc?: () => void }).gc;

if (gc) process.on('SIGUSR2', () => gc());

// A cluster worker's channel belongs to its primary (NODE_UNIQUE_ID marks a worker).
if (typeof process.send === 'function' && process.env.NODE_UNIQUE_ID === undefined) {
  process.on('message', (m: unknown) => {
    if (!isRequest(m)) return;
    gc?.();
    setImmediate(() => {
      gc?.();
      const usage = process.memoryUsage();
      process.send?.({
        bench: 'memory', id: m.id, gc: gc !== undefined,
        rss: vmRss(), heapUsed: usage.heapUsed, heapTotal: usage.heapTotal,
        external: usage.external, arrayBuffers: usage.arrayBuffers,
      });
    });
  });
}
