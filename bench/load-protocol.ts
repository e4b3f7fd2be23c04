// What the bench process asks a load process over IPC, and what it answers.
// One request at a time per command kind; every request carries a deadline.

/** Sockets one load process may hold: each is an fd, and the hard limit here is 20,000 per process. */
export const MAX_SOCKETS_PER_PROCESS = 10_000;

export interface ConnectArgs {
  readonly url: string;
  readonly count: number;
  /** `switchboard.v1` for reliable mode; the welcome frame is awaited as part of the open. */
  readonly protocol?: string;
  /**
   * `sse`: a Server-Sent Events stream (GET with Accept: text/event-stream; `url` is http://), welcome awaited;
   * `long-poll`: a polling loop (GET with ?transport=long-poll, then polls from the last seq; `url` is http://).
   */
  readonly transport?: 'websocket' | 'sse' | 'long-poll';
  /** Source addresses (127.0.0.x), used round-robin, so no address runs out of ports. */
  readonly addresses: readonly string[];
  /** Handshakes in progress at once. */
  readonly concurrency: number;
  readonly timeoutMs: number;
}

export interface ConnectResult {
  readonly opened: number;
  readonly failed: number;
  readonly errors: Record<string, number>;
  readonly elapsedMs: number;
}

export interface EchoBurstArgs {
  readonly messages: number;
  readonly inFlight: number;
  readonly size: number;
  readonly timeoutMs: number;
}

export interface EchoBurstResult {
  readonly received: number;
  readonly elapsedMs: number;
  readonly timedOut: boolean;
  readonly mismatched: number;
}

export interface EchoRateArgs {
  /** Messages per second over all connections of this process. */
  readonly rate: number;
  readonly durationMs: number;
  readonly size: number;
  readonly timeoutMs: number;
}

export interface EchoRateResult {
  readonly sent: number;
  readonly received: number;
  /** Round trips in ms. */
  readonly latencies: Float64Array;
  readonly mismatched: number;
}

export interface FanoutWaitArgs {
  readonly key: number;
  readonly timeoutMs: number;
}

export interface FanoutResult {
  /** publish → receive, ms, one per recipient per push (CLOCK_MONOTONIC, shared by all processes). */
  readonly latencies: Float64Array;
}

export interface ResumeArgs {
  readonly url: string;
  readonly timeoutMs: number;
}

export interface ResumeResult {
  /** Welcome with `resumed: true` and the same session id. */
  readonly resumed: number;
  /** Welcome with `resumed: false`: a new session, the old one lost. */
  readonly fresh: number;
  readonly failed: number;
  readonly errors: Record<string, number>;
  /** Per resumed session: ms from the start of the storm to its welcome. */
  readonly times: Float64Array;
}

export interface SeqWaitArgs {
  /** Every session should have received seq 1..seq, each `data.n` equal to its seq. */
  readonly seq: number;
  readonly timeoutMs: number;
}

export interface SeqWaitResult {
  readonly complete: number;
  readonly incomplete: number;
  /** Messages missing: holes in seq, `gap` frames, and seqs never received. */
  readonly lost: number;
  readonly duplicates: number;
  readonly wrongData: number;
}

export interface FollowMember {
  /** The node it connects to first (a WebSocket URL). */
  readonly url: string;
  /** Sent in the query (`user`, `ch`); the app's connect webhook answers with them. */
  readonly user: string;
  readonly channel: string;
}

export interface FollowConnectArgs {
  readonly members: readonly FollowMember[];
  /**
   * `wait`: a `reconnect` hint is followed after its afterMs plus up to 500 ms, a close after
   * up to 500 ms (the client library's delays); `now`: both at once. After a hint the old
   * socket stays open until the new node takes the session over.
   */
  readonly pace: 'wait' | 'now';
  readonly addresses: readonly string[];
  readonly concurrency: number;
  readonly timeoutMs: number;
}

export interface FollowNodesArgs {
  /** The live nodes (WebSocket URLs), in rotation order: each reconnect takes the next one. */
  readonly urls: readonly string[];
}

export interface FollowStatsArgs {
  /** CLOCK_MONOTONIC ms: `resumedSince` counts resumed welcomes from then on. */
  readonly since: number;
}

export interface FollowStats {
  readonly clients: number;
  /** Welcomed and open now. */
  readonly open: number;
  /** Between a hint or close and the next welcome. */
  readonly moving: number;
  /** Open clients whose last welcome, at or after `since`, resumed their session. */
  readonly resumedSince: number;
  /** CLOCK_MONOTONIC ms of the last resumed welcome (0: none yet). */
  readonly lastResumeAt: number;
  readonly hints: number;
  /** Welcomes with `resumed: true` and the same session. */
  readonly resumes: number;
  /** Welcomes after a reconnect with `resumed: false` or another session id. */
  readonly resets: number;
  /** `gap` frames and seq holes, and the seqs they cover. */
  readonly gaps: number;
  readonly gapSeqs: number;
  /** Frames with seq <= lastSeq, dropped (as the client library does). */
  readonly resent: number;
  /** A push number a client had already received, under a new seq. */
  readonly duplicates: number;
  /** A push for a user or channel the client is not in. */
  readonly misdelivered: number;
  /** Deliveries counted (one per client per push). */
  readonly received: number;
  readonly failedAttempts: number;
  /** Clients that stopped after MAX attempts in a row. */
  readonly gaveUp: number;
  /** Closes the clients did not ask for, by code. */
  readonly closes: Record<string, number>;
  readonly errors: Record<string, number>;
}

export interface FollowCollectResult {
  /** Push numbers (`data.k`) received, and by how many clients each. */
  readonly pushes: Float64Array;
  readonly counts: Float64Array;
  /** Reconnect start (first attempt) → resumed welcome, ms, one per resume. */
  readonly resumeTimes: Float64Array;
  /** Send (`data.t`) → receipt, ms, one per delivery, by the push's phase (`data.p`). */
  readonly latencies: Float64Array[];
}

export interface Commands {
  connect: [ConnectArgs, ConnectResult];
  echoBurst: [EchoBurstArgs, EchoBurstResult];
  echoRate: [EchoRateArgs, EchoRateResult];
  fanoutWait: [FanoutWaitArgs, { received: number }];
  /** Returns the latencies recorded so far and starts recording afresh. */
  fanoutCollect: [Record<string, never>, FanoutResult];
  drop: [Record<string, never>, { dropped: number }];
  resume: [ResumeArgs, ResumeResult];
  seqWait: [SeqWaitArgs, SeqWaitResult];
  closeAll: [Record<string, never>, { closed: number }];
  followConnect: [FollowConnectArgs, ConnectResult];
  followNodes: [FollowNodesArgs, { nodes: number }];
  followStats: [FollowStatsArgs, FollowStats];
  followCollect: [{ phases: number }, FollowCollectResult];
  /** Stops every follower: no more reconnects, sockets terminated. */
  followClose: [Record<string, never>, { closed: number }];
}

export type CommandName = keyof Commands;

export interface Request<C extends CommandName = CommandName> {
  readonly id: number;
  readonly cmd: C;
  readonly args: Commands[C][0];
}

export type Reply =
  | { readonly id: number; readonly ok: true; readonly result: unknown }
  | { readonly id: number; readonly ok: false; readonly error: string };

/** Milliseconds on CLOCK_MONOTONIC: comparable between processes of one machine. */
export function monotonicMs(): number {
  return Number(process.hrtime.bigint()) / 1e6;
}
