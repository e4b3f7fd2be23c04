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
import { parseConnectionId } from './target.js';

/** What a worker asks of the worker holding a session (through the primary). */
export type MoveOp =
  | { readonly op: 'depart'; readonly id: string; readonly from: string }
  | { readonly op: 'release'; readonly id: string };

/** The holder's answer to `depart`: the session, where it went, or nothing. */
export type DepartAnswer = { readonly snapshot: SessionSnapshot } | { readonly movedTo: string } | null;

/**
 * The mover of a worker: `ask` reaches worker `index` of this node through the primary; `before`
 * runs before a release is asked for (what this worker tells the primary goes first).
 */
export function workerMover(options: {
  readonly nodeId: string;
  readonly self: string;
  readonly ask: (index: number, op: MoveOp) => Promise<unknown>;
  readonly before: () => void;
}): Mover {
  const { nodeId, self, ask, before } = options;
  const workerOf = (holder: string): number | null => {
    const parsed = parseConnectionId(`${holder}-x`);
    return parsed && parsed.node === nodeId && holder !== self ? parsed.worker : null;
  };
  return {
    async take(holder: string | null, id: string): Promise<Transfer | null> {
      for (let hop = 0; hop < MAX_TAKE_HOPS && holder !== null; hop++) {
        const index = workerOf(holder);
        if (index === null) return null;
        const answer = await ask(index, { op: 'depart', id, from: self }) as DepartAnswer;
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
