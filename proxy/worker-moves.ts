// Sessions moving between the workers of one node, without a cluster broker: a client that
// resumes on another worker than the one holding its session (an SSE stream's reconnection lands
// wherever the cluster module sends it; a WebSocket resume is handed to the holder instead, socket
// and all) takes the session over through the primary, as proxy/moves.ts does between nodes:
//
//   B (arriving)                      primary                  A (holding)
//   take ───── depart(id, B) ─────▶  forwards  ─────────────▶ session.depart(): 4009
//        ◀──── snapshot ──────────             ◀────────────
//   registered here, then
//   release ── release(id) ───────▶  forwards  ─────────────▶ tail(), forget()
//        ◀──── tail ──────────────             ◀────────────
//
// Every push the primary routed to A before B's release reached A is in the tail, and every one
// routed after B registered the session reaches B: pushes carry ids with workers, so one that
// reached both is delivered once. There is no broker to park a session in: a drain ends them.
import { MAX_TAKE_HOPS } from './limits.js';
import type { Mover, Transfer } from './moves.js';
import type { MoveTail, SessionSnapshot } from './snapshot.js';
import type { Post, Posted } from './sse-gateway.js';
import { parseConnectionId } from './target.js';

/** What a worker asks of the worker holding a session (through the primary). */
export type MoveOp =
  | { readonly op: 'depart'; readonly id: string; readonly from: string }
  | { readonly op: 'release'; readonly id: string }
  | { readonly op: 'post'; readonly id: string; readonly post: Post };

/** The holder's answer to `depart`: the session, where it went, or nothing. */
export type DepartAnswer = { readonly snapshot: SessionSnapshot } | { readonly movedTo: string } | null;

/**
 * The mover of a worker: `ask` reaches worker `index` of this node through the primary; `before`
 * runs before a release is asked for (what this worker tells the primary goes first).
 */
export function workerMover(options: WorkerAsks & { readonly before: () => void }): Mover {
  const { ask, before } = options;
  const workerOf = workerIndex(options);
  return {
    async take(holder: string | null, id: string): Promise<Transfer | null> {
      for (let hop = 0; hop < MAX_TAKE_HOPS && holder !== null; hop++) {
        const index = workerOf(holder);
        if (index === null) return null;
        const answer = await ask(index, { op: 'depart', id, from: options.self }) as DepartAnswer;
        if (answer === null) return null;
        if ('movedTo' in answer) {
          holder = answer.movedTo;
          continue;
        }
        return {
          snapshot: answer.snapshot,
          finish: async () => {
            before();
            return await ask(index, { op: 'release', id }) as MoveTail | null;
          },
        };
      }
      return null;
    },
    park: () => Promise.reject(new Error('workers without a cluster broker have nowhere to park a session')),
  };
}

/** How a worker reaches the other workers of its node. */
export interface WorkerAsks {
  readonly nodeId: string;
  readonly self: string;
  readonly ask: (index: number, op: MoveOp) => Promise<unknown>;
}

/** The index of another worker of this node that a holder names; null for this one or another node's. */
function workerIndex({ nodeId, self }: WorkerAsks): (holder: string) => number | null {
  return (holder) => {
    const parsed = parseConnectionId(`${holder}-x`);
    return parsed && parsed.node === nodeId && holder !== self ? parsed.worker : null;
  };
}

/**
 * A POST (SSE or long-poll) that landed on a worker without its session goes to the worker that
 * holds it, following where it moved; null when none does. Rejects when the holder does not answer.
 */
export function workerForward(options: WorkerAsks): (holder: string, id: string, post: Post) => Promise<Posted | null> {
  const workerOf = workerIndex(options);
  return async (holder, id, post) => {
    let at: string | null = holder;
    for (let hop = 0; hop < MAX_TAKE_HOPS && at !== null; hop++) {
      const index = workerOf(at);
      if (index === null) return null;
      const answer = await options.ask(index, { op: 'post', id, post }) as Posted | { movedTo: string } | null;
      if (answer === null || !('movedTo' in answer)) return answer;
      at = answer.movedTo;
    }
    return null;
  };
}
