// A load process: holds up to 10,000 client sockets (one fd each; the per-process hard
// limit here is 20,000) and runs what the bench process asks over IPC. Loopback only,
// every wait bounded; it exits when the bench process goes away.
import { Agent, request, type AgentOptions, type ClientRequest } from 'node:http';
import { WebSocket } from 'ws';
import {
  MAX_SOCKETS_PER_PROCESS, monotonicMs,
  type CommandName, type Commands, type ConnectArgs, type ConnectResult, type EchoBurstArgs, type EchoBurstResult,
  type EchoRateArgs, type EchoRateResult, type Reply, type Request, type ResumeArgs, type ResumeResult,
  type SeqWaitArgs, type SeqWaitResult,
  type FollowCollectResult, type FollowConnectArgs, type FollowNodesArgs, type FollowStats, type FollowStatsArgs,
} from './load-protocol.js';

interface Conn {
  ws: WebSocket | null;
  /** An SSE stream instead of a socket (transport `sse`). */
  stream: ClientRequest | null;
  /** A polling loop instead (transport `long-poll`): stops it and its keep-alive socket. */
  poller: { stop(): void } | null;
  /** The source address this client uses, again when it resumes. */
  localAddress: string | undefined;
  // echo: send times of the messages in flight, in order (the server answers in order)
  readonly sendTimes: number[];
  sent: number;
  received: number;
  // reliable mode
  session: string | null;
  token: string | null;
  lastSeq: number;
  lost: number;
  duplicates: number;
  wrongData: number;
  onWelcome: ((resumed: boolean) => void) | null;
}

const conns: Conn[] = [];
let open = 0;

// What a raw-mode frame means depends on the scenario running.
let onRaw: (c: Conn, data: Buffer) => void = () => {};

function isLoopback(url: string): boolean {
  const host = new URL(url).hostname;
  return host === 'localhost' || host.startsWith('127.') || host === '[::1]';
}

function countError(errors: Record<string, number>, err: unknown): void {
  const key = (err as NodeJS.ErrnoException)?.code ?? (err as Error)?.message?.slice(0, 60) ?? String(err);
  errors[key] = (errors[key] ?? 0) + 1;
}

function withDeadline<T>(work: Promise<T>, ms: number, what: string): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`${what}: gave up after ${ms} ms`)), ms);
    work.then((v) => { clearTimeout(t); resolve(v); }, (e: unknown) => { clearTimeout(t); reject(e as Error); });
  });
}

// ── reliable mode ──────────────────────────────────────────────────────────────

/** What a reliable message's data means, when the scenario running reads it (fanout); else it is checked as `{n: seq}`. */
let onData: ((data: unknown) => void) | null = null;

let seqTarget = Infinity;
let seqReached = 0;
let seqDone: (() => void) | null = null;

function onReliable(c: Conn, data: Buffer): void {
  let frame: { type?: string; seq?: number; from?: number; to?: number; data?: { n?: number }; session?: string; token?: string; resumed?: boolean };
  try {
    frame = JSON.parse(data.toString('utf8'));
  } catch {
    return;
  }
  switch (frame.type) {
    case 'welcome': {
      const resumed = frame.resumed === true && frame.session === c.session;
      if (!resumed) c.lastSeq = 0;
      c.session = frame.session ?? null;
      c.token = frame.token ?? null;
      c.onWelcome?.(resumed);
      c.onWelcome = null;
      return;
    }
    case 'gap':
      c.lost += (frame.to ?? 0) - (frame.from ?? 0) + 1;
      advance(c, frame.to ?? c.lastSeq);
      return;
    case 'message': {
      const seq = frame.seq ?? 0;
      if (seq <= c.lastSeq) {
        c.duplicates++;
        return;
      }
      if (seq > c.lastSeq + 1) c.lost += seq - c.lastSeq - 1;
      if (onData) onData(frame.data);
      else if (frame.data?.n !== seq) c.wrongData++;
      advance(c, seq);
      return;
    }
    default:
  }
}

function advance(c: Conn, seq: number): void {
  const before = c.lastSeq;
  c.lastSeq = Math.max(c.lastSeq, seq);
  if (before < seqTarget && c.lastSeq >= seqTarget && ++seqReached >= conns.length) seqDone?.();
}

// ── connecting ─────────────────────────────────────────────────────────────────

function newConn(): Conn {
  return {
    ws: null, stream: null, poller: null, localAddress: undefined, sendTimes: [], sent: 0, received: 0,
    session: null, token: null, lastSeq: 0, lost: 0, duplicates: 0, wrongData: 0, onWelcome: null,
  };
}

/** Opens one socket for `c`; resolves on open (raw) or on the welcome frame (reliable). */
function openSocket(c: Conn, url: string, protocol: string | undefined, localAddress: string | undefined, timeoutMs: number): Promise<boolean> {
  return new Promise<boolean>((resolve, reject) => {
    const ws = new WebSocket(url, protocol ? [protocol] : undefined, {
      localAddress, perMessageDeflate: false, handshakeTimeout: timeoutMs,
    });
    let settled = false;
    const fail = (err: unknown) => {
      if (settled) return;
      settled = true;
      ws.terminate();
      reject(err as Error);
    };
    ws.on('error', fail);
    ws.on('unexpected-response', (_req, res) => fail(new Error(`handshake answered ${res.statusCode}`)));
    ws.on('close', () => {
      if (!settled) return fail(new Error('closed during the handshake'));
      if (c.ws === ws) {
        c.ws = null;
        open--;
      }
    });
    if (protocol) {
      c.onWelcome = (resumed) => {
        settled = true;
        resolve(resumed);
      };
      ws.on('message', (data: Buffer) => onReliable(c, data));
    } else {
      ws.on('message', (data: Buffer) => onRaw(c, data));
    }
    ws.on('open', () => {
      c.ws = ws;
      open++;
      if (!protocol) {
        settled = true;
        resolve(false);
      }
    });
  });
}

// ── Server-Sent Events ─────────────────────────────────────────────

/** Reads an event stream as the SSE spec does: `event`, `data` (lines joined by \n) and `id` fields; comments skipped. */
function sseEvents(onEvent: (event: string, data: string, id: string | null) => void): (chunk: string) => void {
  let buffer = '';
  let event = '';
  let data: string[] = [];
  let id: string | null = null;
  return (chunk) => {
    buffer += chunk;
    let nl: number;
    while ((nl = buffer.search(/\r\n|\n|\r/)) !== -1) {
      const line = buffer.slice(0, nl);
      buffer = buffer.slice(nl + (buffer.startsWith('\r\n', nl) ? 2 : 1));
      if (line === '') {
        if (data.length > 0) onEvent(event || 'message', data.join('\n'), id);
        event = '';
        data = [];
        continue;
      }
      if (line.startsWith(':')) continue;
      const colon = line.indexOf(':');
      const field = colon === -1 ? line : line.slice(0, colon);
      const value = colon === -1 ? '' : line.slice(colon + 1).replace(/^ /, '');
      if (field === 'event') event = value;
      else if (field === 'data') data.push(value);
      else if (field === 'id') id = value;
    }
  };
}

/** Opens one SSE stream for `c`; resolves on its welcome event. A message event's data is a reliable message's data. */
function openStream(c: Conn, url: string, localAddress: string | undefined, timeoutMs: number): Promise<boolean> {
  return new Promise<boolean>((resolve, reject) => {
    let settled = false;
    const req = request(url, { headers: { accept: 'text/event-stream' }, localAddress, agent: false, timeout: timeoutMs });
    const fail = (err: unknown) => {
      if (settled) return;
      settled = true;
      req.destroy();
      reject(err as Error);
    };
    req.on('error', fail);
    req.on('timeout', () => fail(new Error('no welcome in time')));
    req.on('response', (res) => {
      if (res.statusCode !== 200) {
        res.resume();
        return fail(new Error(`answered ${res.statusCode}`));
      }
      res.setEncoding('utf8');
      res.on('data', sseEvents((event, data, id) => {
        if (event === 'welcome') {
          const w = JSON.parse(data) as { session?: string; token?: string };
          c.session = w.session ?? null;
          c.token = w.token ?? null;
          if (settled) return;
          settled = true;
          req.setTimeout(0);
          c.stream = req;
          open++;
          resolve(false);
        } else if (event === 'message') {
          const seq = Number(id);
          if (seq <= c.lastSeq) return void c.duplicates++;
          let parsed: unknown;
          try {
            parsed = JSON.parse(data);
          } catch {
            parsed = data;
          }
          onData?.(parsed);
          advance(c, seq);
        }
      }));
      res.on('close', () => {
        if (!settled) return fail(new Error('closed before the welcome'));
        if (c.stream === req) {
          c.stream = null;
          open--;
        }
      });
    });
    req.end();
  });
}

// ── long-polling ───────────────────────────────────────────────────────────────

/** A poll's frames, as a WebSocket carries them. */
type PollFrame = { type: string; session?: string; token?: string; seq?: number; to?: number; data?: unknown };

/**
 * Opens one long-polling session for `c` (the opening GET answers the welcome), then polls from
 * its last seq on one keep-alive socket until stopped. A message's data is a reliable message's data.
 */
async function openPoll(c: Conn, url: string, localAddress: string | undefined, timeoutMs: number): Promise<boolean> {
  const agent = new Agent({ keepAlive: true, maxSockets: 1, localAddress } as AgentOptions);
  let stopped = false;
  let current: ClientRequest | null = null;
  const get = (query: string, headers: Record<string, string>) => new Promise<PollFrame[]>((resolve, reject) => {
    const req = request(`${url}?transport=long-poll${query}`, { agent, headers: { accept: 'application/json', ...headers } }, (res) => {
      if (res.statusCode !== 200) {
        res.resume();
        return reject(new Error(`answered ${res.statusCode}`));
      }
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => { body += d; });
      res.on('end', () => {
        try {
          resolve(JSON.parse(body) as PollFrame[]);
        } catch (err) {
          reject(err as Error);
        }
      });
    });
    current = req;
    req.on('error', reject);
    req.end();
  });
  const take = (frames: PollFrame[]) => {
    for (const f of frames) {
      if (f.type === 'welcome') {
        c.session = f.session ?? null;
        c.token = f.token ?? null;
      } else if (f.type === 'message' && typeof f.seq === 'number') {
        if (f.seq <= c.lastSeq) {
          c.duplicates++;
          continue;
        }
        onData?.(f.data);
        advance(c, f.seq);
      } else if (f.type === 'gap' && typeof f.to === 'number') {
        advance(c, f.to);
      }
    }
  };
  try {
    take(await withDeadline(get('', {}), timeoutMs, 'long-poll open'));
  } catch (err) {
    agent.destroy();
    throw err;
  }
  c.poller = {
    stop() {
      stopped = true;
      current?.destroy();
      agent.destroy();
    },
  };
  open++;
  void (async () => {
    while (!stopped) {
      try {
        take(await get(`&lastSeq=${c.lastSeq}`, { 'x-switchboard-token': c.token ?? '' }));
      } catch {
        break;
      }
    }
    if (c.poller !== null) {
      c.poller = null;
      open--;
    }
    agent.destroy();
  })();
  return false;
}

async function connect(args: ConnectArgs): Promise<ConnectResult> {
  if (!isLoopback(args.url)) throw new Error(`refusing a non-loopback target: ${args.url}`);
  if (conns.length + args.count > MAX_SOCKETS_PER_PROCESS) {
    throw new Error(`a load process holds at most ${MAX_SOCKETS_PER_PROCESS} sockets (fd limit)`);
  }
  const start = performance.now();
  const errors: Record<string, number> = {};
  let next = 0;
  let opened = 0;
  let failed = 0;
  const base = conns.length;
  const worker = async () => {
    while (next < args.count) {
      const i = next++;
      const c = newConn();
      c.localAddress = args.addresses[(base + i) % args.addresses.length];
      try {
        if (args.transport === 'sse') await openStream(c, args.url, c.localAddress, args.timeoutMs);
        else if (args.transport === 'long-poll') await openPoll(c, args.url, c.localAddress, args.timeoutMs);
        else await openSocket(c, args.url, args.protocol, c.localAddress, args.timeoutMs);
        conns.push(c);
        opened++;
      } catch (err) {
        failed++;
        countError(errors, err);
      }
    }
  };
  const workers = Array.from({ length: Math.max(1, Math.min(args.concurrency, args.count)) }, worker);
  await withDeadline(Promise.all(workers), args.timeoutMs, 'connect');
  return { opened, failed, errors, elapsedMs: performance.now() - start };
}

// ── echo ───────────────────────────────────────────────────────────────────────

let mismatched = 0;

function message(seq: number, size: number): string {
  return `${seq}:`.padEnd(size, 'x');
}

/** Records the round trip of the oldest message in flight on `c`. */
function onEcho(record: (ms: number) => void) {
  return (c: Conn, data: Buffer) => {
    const now = performance.now();
    const sentAt = c.sendTimes.shift();
    if (sentAt === undefined) return;
    const colon = data.indexOf(58);
    if (colon < 0 || Number(data.toString('latin1', 0, colon)) !== c.received) mismatched++;
    c.received++;
    record(now - sentAt);
  };
}

function sendEcho(c: Conn, size: number): void {
  c.sendTimes.push(performance.now());
  c.ws!.send(message(c.sent++, size));
}

async function echoBurst(args: EchoBurstArgs): Promise<EchoBurstResult> {
  const live = conns.filter((c) => c.ws);
  const total = live.length * args.messages;
  let received = 0;
  mismatched = 0;
  const start = performance.now();
  let finish: () => void = () => {};
  const done = new Promise<void>((resolve) => { finish = resolve; });
  const pump = (c: Conn) => {
    while (c.ws && c.sent < args.messages && c.sent - c.received < args.inFlight) sendEcho(c, args.size);
  };
  const record = onEcho(() => {});
  onRaw = (c, data) => {
    record(c, data);
    if (++received >= total) finish();
    else pump(c);
  };
  for (const c of live) {
    c.sent = 0;
    c.received = 0;
    c.sendTimes.length = 0;
    pump(c);
  }
  let timedOut = false;
  await withDeadline(done, args.timeoutMs, 'echo burst').catch(() => { timedOut = true; });
  onRaw = () => {};
  return { received, elapsedMs: performance.now() - start, timedOut, mismatched };
}

async function echoRate(args: EchoRateArgs): Promise<EchoRateResult> {
  const live = conns.filter((c) => c.ws);
  const latencies: number[] = [];
  let sent = 0;
  let received = 0;
  mismatched = 0;
  for (const c of live) {
    c.sent = 0;
    c.received = 0;
    c.sendTimes.length = 0;
  }
  const record = onEcho((ms) => latencies.push(ms));
  let drained: () => void = () => {};
  onRaw = (c, data) => {
    record(c, data);
    received++;
    if (sending === null && received >= sent) drained();
  };
  // Open loop: messages leave on schedule whether or not earlier ones came back.
  const start = performance.now();
  let sending: NodeJS.Timeout | null = setInterval(() => {
    const due = Math.min(Math.floor(((performance.now() - start) * args.rate) / 1000), Math.floor((args.durationMs * args.rate) / 1000));
    while (sent < due) {
      const c = live[sent % live.length];
      sent++;
      if (c.ws) sendEcho(c, args.size);
    }
  }, 1);
  await new Promise((resolve) => setTimeout(resolve, args.durationMs));
  clearInterval(sending);
  sending = null;
  if (received < sent) {
    await withDeadline(new Promise<void>((resolve) => { drained = resolve; }), Math.min(args.timeoutMs, 10_000), 'echo drain').catch(() => {});
  }
  onRaw = () => {};
  return { sent, received, latencies: Float64Array.from(latencies), mismatched };
}

// ── fanout ─────────────────────────────────────────────────────────────────────

let fanoutLatencies: number[] = [];
const fanoutCounts = new Map<number, number>();
let fanoutWaiter: { key: number; resolve: () => void } | null = null;

function onFanout(_c: Conn, data: Buffer): void {
  let push: { k: number; t: number };
  try {
    push = JSON.parse(data.toString('utf8'));
  } catch {
    return;
  }
  countFanout(push);
}

/** A fanout push arrived (raw frame, reliable message or SSE event): its latency, and whether everyone has it. */
function countFanout(push: { k: number; t: number }): void {
  const now = monotonicMs();
  fanoutLatencies.push(now - push.t);
  const n = (fanoutCounts.get(push.k) ?? 0) + 1;
  fanoutCounts.set(push.k, n);
  if (fanoutWaiter && fanoutWaiter.key === push.k && n >= open) fanoutWaiter.resolve();
}

function fanoutData(data: unknown): void {
  const push = data as { k?: unknown; t?: unknown } | null;
  if (push && typeof push.k === 'number' && typeof push.t === 'number') countFanout({ k: push.k, t: push.t });
}

async function fanoutWait(args: { key: number; timeoutMs: number }): Promise<{ received: number }> {
  onRaw = onFanout;
  onData = fanoutData;
  if ((fanoutCounts.get(args.key) ?? 0) < open) {
    await withDeadline(new Promise<void>((resolve) => { fanoutWaiter = { key: args.key, resolve }; }), args.timeoutMs, `push ${args.key}`)
      .catch(() => {});
    fanoutWaiter = null;
  }
  return { received: fanoutCounts.get(args.key) ?? 0 };
}

// ── resume ─────────────────────────────────────────────────────────────────────

function drop(): { dropped: number } {
  let dropped = 0;
  for (const c of conns) {
    const ws = c.ws;
    if (!ws) continue;
    c.ws = null;
    open--;
    ws.removeAllListeners('message');
    ws.removeAllListeners('close');
    ws.terminate();
    dropped++;
  }
  return { dropped };
}

async function resume(args: ResumeArgs): Promise<ResumeResult> {
  if (!isLoopback(args.url)) throw new Error(`refusing a non-loopback target: ${args.url}`);
  const errors: Record<string, number> = {};
  let resumed = 0;
  let fresh = 0;
  let failed = 0;
  const times: number[] = [];
  const start = performance.now();
  // All at once: the storm is the point.
  await withDeadline(Promise.all(conns.map(async (c) => {
    if (!c.token) {
      failed++;
      return;
    }
    const url = `${args.url}?resume=${encodeURIComponent(c.token)}&lastSeq=${c.lastSeq}`;
    try {
      if (await openSocket(c, url, 'switchboard.v1', c.localAddress, args.timeoutMs)) {
        resumed++;
        times.push(performance.now() - start);
      } else {
        fresh++;
      }
    } catch (err) {
      failed++;
      countError(errors, err);
    }
  })), args.timeoutMs, 'resume').catch((err: unknown) => countError(errors, err));
  return { resumed, fresh, failed, errors, times: Float64Array.from(times) };
}

async function seqWait(args: SeqWaitArgs): Promise<SeqWaitResult> {
  seqTarget = args.seq;
  seqReached = conns.filter((c) => c.lastSeq >= args.seq).length;
  if (seqReached < conns.length) {
    await withDeadline(new Promise<void>((resolve) => { seqDone = resolve; }), args.timeoutMs, `seq ${args.seq}`).catch(() => {});
  }
  seqDone = null;
  seqTarget = Infinity;
  let complete = 0;
  let lost = 0;
  let duplicates = 0;
  let wrongData = 0;
  for (const c of conns) {
    if (c.lastSeq >= args.seq) complete++;
    lost += c.lost + Math.max(0, args.seq - c.lastSeq);
    duplicates += c.duplicates;
    wrongData += c.wrongData;
  }
  return { complete, incomplete: conns.length - complete, lost, duplicates, wrongData };
}

// ── following sessions between nodes ───────────────────────────────────────────

/** A reliable client that, like the client library, resumes wherever it is sent next. */
interface Follower {
  ws: WebSocket | null;
  readonly localAddress: string | undefined;
  readonly user: string;
  readonly channel: string;
  /** The node it is on (or was on last). */
  url: string;
  session: string | null;
  token: string | null;
  lastSeq: number;
  ackedSeq: number;
  /** Push numbers received: a second delivery of one is a duplicate, whatever its seq. */
  readonly got: Set<number>;
  /** A reconnect is waiting or under way. */
  moving: boolean;
  /** When the current reconnect's first attempt started, and attempts so far. */
  since: number;
  attempts: number;
  timer: NodeJS.Timeout | null;
  /** When its last welcome resumed its session (0 after a reset). */
  resumedAt: number;
}

/** Attempts in a row before a follower gives up; retries back off up to 5 s (full jitter). */
const FOLLOW_ATTEMPTS = 20;
/**
 * How long one attempt waits for its welcome: a move may take several transfer round trips
 * (cluster.transferTimeoutMs, 5 s each), and a client that leaves first is one more ended session.
 */
const WELCOME_TIMEOUT_MS = 30_000;

const followers: Follower[] = [];
let followPace: 'wait' | 'now' = 'wait';
let liveUrls: readonly string[] = [];
let nextNode = 0;
let followStopped = false;
let ackTimer: NodeJS.Timeout | null = null;
const follow = {
  hints: 0, resumes: 0, resets: 0, gaps: 0, gapSeqs: 0, resent: 0, duplicates: 0, misdelivered: 0,
  received: 0, failedAttempts: 0, gaveUp: 0, lastResumeAt: 0,
};
const followCloses: Record<string, number> = {};
const followErrors: Record<string, number> = {};
const pushCounts = new Map<number, number>();
const resumeTimes: number[] = [];
let followLatencies: number[][] = [];

/** The next live node in rotation, other than `from` when there is another. */
function nextUrl(from: string): string {
  const others = liveUrls.length > 1 ? liveUrls.filter((u) => u !== from) : liveUrls;
  return others[nextNode++ % others.length];
}

function sendAck(f: Follower): void {
  if (!f.ws || f.ws.readyState !== WebSocket.OPEN || f.lastSeq <= f.ackedSeq) return;
  f.ackedSeq = f.lastSeq;
  f.ws.send(`{"type":"ack","seq":${f.lastSeq}}`);
}

function onWelcome(f: Follower, frame: { session?: string; token?: string; resumed?: boolean }): void {
  const resumed = frame.resumed === true && frame.session === f.session;
  if (f.session !== null && !resumed) {
    follow.resets++;
    f.lastSeq = 0;
  }
  f.ackedSeq = f.lastSeq;
  f.session = frame.session ?? null;
  f.token = frame.token ?? null;
  f.resumedAt = resumed ? monotonicMs() : 0;
  if (resumed) {
    follow.resumes++;
    follow.lastResumeAt = f.resumedAt;
  }
}

function onFollowFrame(f: Follower, ws: WebSocket, data: Buffer): void {
  const now = monotonicMs();
  let frame: { type?: string; seq?: number; from?: number; to?: number; afterMs?: number; data?: { k?: number; t?: number; p?: number; to?: string } };
  try {
    frame = JSON.parse(data.toString('utf8'));
  } catch {
    return;
  }
  switch (frame.type) {
    case 'message': {
      const seq = frame.seq ?? 0;
      if (seq <= f.lastSeq) {
        follow.resent++;
        return;
      }
      if (seq > f.lastSeq + 1) {
        follow.gaps++;
        follow.gapSeqs += seq - f.lastSeq - 1;
      }
      f.lastSeq = seq;
      const push = frame.data ?? {};
      if (push.to !== f.user && push.to !== f.channel) follow.misdelivered++;
      else if (f.got.has(push.k ?? 0)) follow.duplicates++;
      else {
        f.got.add(push.k ?? 0);
        follow.received++;
        pushCounts.set(push.k ?? 0, (pushCounts.get(push.k ?? 0) ?? 0) + 1);
        (followLatencies[push.p ?? 0] ??= []).push(now - (push.t ?? now));
      }
      if (f.lastSeq - f.ackedSeq >= 32) sendAck(f);
      return;
    }
    case 'gap':
      if ((frame.to ?? 0) <= f.lastSeq) return;
      follow.gaps++;
      follow.gapSeqs += (frame.to ?? 0) - f.lastSeq;
      f.lastSeq = frame.to ?? f.lastSeq;
      return;
    case 'reconnect':
      // The socket stays open, still read, until the node the client resumes on takes the
      // session over (the old node then closes it, 4009). Closing it first with 1000, as the
      // client library does, would end the session: a client's normal close is final.
      follow.hints++;
      moveOn(f, followPace === 'now' ? 0 : Math.max(0, frame.afterMs ?? 0) + Math.floor(Math.random() * 500));
      return;
    default:
  }
}

/** Forgets `ws` as the follower's socket: what it does from now on is not followed. */
function leave(f: Follower, ws: WebSocket): void {
  ws.removeAllListeners('message');
  ws.removeAllListeners('close');
  if (f.ws === ws) f.ws = null;
}

function moveOn(f: Follower, delayMs: number): void {
  if (f.moving || followStopped) return;
  f.moving = true;
  f.attempts = 0;
  f.timer = setTimeout(() => void attempt(f), delayMs);
}

async function attempt(f: Follower): Promise<void> {
  f.timer = null;
  if (followStopped) return;
  if (f.attempts++ === 0) f.since = monotonicMs();
  const url = nextUrl(f.url);
  try {
    await followOpen(f, url, WELCOME_TIMEOUT_MS);
    f.moving = false;
    if (f.resumedAt > 0) resumeTimes.push(monotonicMs() - f.since);
  } catch (err) {
    follow.failedAttempts++;
    countError(followErrors, err);
    if (f.attempts >= FOLLOW_ATTEMPTS) {
      follow.gaveUp++;
      return;
    }
    f.timer = setTimeout(() => void attempt(f), Math.floor(Math.random() * Math.min(5000, 500 * 2 ** f.attempts)));
  }
}

/** Opens a socket for `f` at `url` (resuming when it has a token); resolves on its welcome. */
function followOpen(f: Follower, url: string, timeoutMs: number): Promise<void> {
  const query = `user=${encodeURIComponent(f.user)}&ch=${encodeURIComponent(f.channel)}`
    + (f.token ? `&resume=${encodeURIComponent(f.token)}&lastSeq=${f.lastSeq}` : '');
  return new Promise<void>((resolve, reject) => {
    const ws = new WebSocket(`${url}?${query}`, ['switchboard.v1'], {
      localAddress: f.localAddress, perMessageDeflate: false, handshakeTimeout: timeoutMs,
    });
    let settled = false;
    const t = setTimeout(() => fail(new Error('no welcome')), timeoutMs);
    const fail = (err: unknown) => {
      if (settled) return;
      settled = true;
      clearTimeout(t);
      ws.removeAllListeners('message');
      ws.removeAllListeners('close');
      ws.terminate();
      reject(err as Error);
    };
    ws.on('error', fail);
    ws.on('unexpected-response', (_req, res) => fail(new Error(`handshake answered ${res.statusCode}`)));
    ws.on('close', (code) => {
      if (!settled) return fail(new Error(`closed before the welcome (${code})`));
      followCloses[code] = (followCloses[code] ?? 0) + 1;
      leave(f, ws);
      moveOn(f, followPace === 'now' ? 0 : Math.floor(Math.random() * 500));
    });
    ws.on('message', (data: Buffer) => {
      if (settled) return onFollowFrame(f, ws, data);
      let frame: { type?: string; session?: string; token?: string; resumed?: boolean };
      try {
        frame = JSON.parse(data.toString('utf8'));
      } catch {
        frame = {};
      }
      if (frame.type !== 'welcome') return fail(new Error(`expected welcome first, got ${frame.type}`));
      settled = true;
      clearTimeout(t);
      if (followStopped) {
        ws.terminate();
        return reject(new Error('stopped'));
      }
      onWelcome(f, frame);
      // The old socket, if its node has not closed it yet, is not followed any more.
      if (f.ws) {
        const old = f.ws;
        leave(f, old);
        old.terminate();
      }
      f.ws = ws;
      f.url = url;
      resolve();
    });
  });
}

async function followConnect(args: FollowConnectArgs): Promise<ConnectResult> {
  for (const m of args.members) if (!isLoopback(m.url)) throw new Error(`refusing a non-loopback target: ${m.url}`);
  if (conns.length + followers.length + args.members.length > MAX_SOCKETS_PER_PROCESS) {
    throw new Error(`a load process holds at most ${MAX_SOCKETS_PER_PROCESS} sockets (fd limit)`);
  }
  followPace = args.pace;
  followStopped = false;
  ackTimer ??= setInterval(() => { for (const f of followers) sendAck(f); }, 200);
  const start = performance.now();
  const errors: Record<string, number> = {};
  let next = 0;
  let opened = 0;
  let failed = 0;
  const base = followers.length;
  const worker = async () => {
    while (next < args.members.length) {
      const i = next++;
      const m = args.members[i];
      const f: Follower = {
        ws: null, localAddress: args.addresses[(base + i) % args.addresses.length], user: m.user, channel: m.channel, url: m.url,
        session: null, token: null, lastSeq: 0, ackedSeq: 0, got: new Set(), moving: false, since: 0, attempts: 0, timer: null, resumedAt: 0,
      };
      try {
        await followOpen(f, m.url, args.timeoutMs);
        followers.push(f);
        opened++;
      } catch (err) {
        failed++;
        countError(errors, err);
      }
    }
  };
  const workers = Array.from({ length: Math.max(1, Math.min(args.concurrency, args.members.length)) }, worker);
  await withDeadline(Promise.all(workers), args.timeoutMs, 'connect');
  return { opened, failed, errors, elapsedMs: performance.now() - start };
}

function followStats(args: FollowStatsArgs): FollowStats {
  let live = 0;
  let moving = 0;
  let resumedSince = 0;
  for (const f of followers) {
    if (f.ws) live++;
    if (f.moving || !f.ws) moving++;
    if (f.ws && f.resumedAt >= args.since && f.resumedAt > 0) resumedSince++;
  }
  return { clients: followers.length, open: live, moving, resumedSince, ...follow, closes: { ...followCloses }, errors: { ...followErrors } };
}

function followCollect(args: { phases: number }): FollowCollectResult {
  const latencies = Array.from({ length: args.phases }, (_, p) => Float64Array.from(followLatencies[p] ?? []));
  followLatencies = Array.from({ length: args.phases }, () => []);
  return {
    pushes: Float64Array.from(pushCounts.keys()),
    counts: Float64Array.from(pushCounts.values()),
    resumeTimes: Float64Array.from(resumeTimes),
    latencies,
  };
}

function followClose(): { closed: number } {
  followStopped = true;
  if (ackTimer) clearInterval(ackTimer);
  ackTimer = null;
  let closed = 0;
  for (const f of followers) {
    if (f.timer) clearTimeout(f.timer);
    if (f.ws) {
      const ws = f.ws;
      leave(f, ws);
      ws.terminate();
      closed++;
    }
  }
  followers.length = 0;
  return { closed };
}

// ── the IPC loop ───────────────────────────────────────────────────────────────

function closeAll(): { closed: number } {
  let closed = 0;
  for (const c of conns) {
    if (c.ws) {
      c.ws.removeAllListeners('close');
      c.ws.terminate();
      closed++;
    }
    if (c.stream) {
      c.stream.destroy();
      closed++;
    }
    if (c.poller) {
      const poller = c.poller;
      c.poller = null;
      poller.stop();
      closed++;
    }
    c.ws = null;
    c.stream = null;
  }
  onData = null;
  conns.length = 0;
  open = 0;
  return { closed };
}

const handlers: { [C in CommandName]: (args: Commands[C][0]) => Commands[C][1] | Promise<Commands[C][1]> } = {
  connect,
  echoBurst,
  echoRate,
  fanoutWait,
  fanoutCollect: () => {
    onRaw = onFanout;
    onData = fanoutData;
    const latencies = Float64Array.from(fanoutLatencies);
    fanoutLatencies = [];
    fanoutCounts.clear();
    return { latencies };
  },
  drop,
  resume,
  seqWait,
  closeAll,
  followConnect,
  followNodes: (args: FollowNodesArgs) => {
    liveUrls = [...args.urls];
    return { nodes: liveUrls.length };
  },
  followStats,
  followCollect,
  followClose,
};

process.on('message', (m: Request) => {
  const handler = handlers[m.cmd] as (args: unknown) => unknown;
  Promise.resolve()
    .then(() => handler(m.args))
    .then(
      (result) => process.send!({ id: m.id, ok: true, result } satisfies Reply),
      (err: unknown) => process.send!({ id: m.id, ok: false, error: (err as Error).message ?? String(err) } satisfies Reply),
    );
});
// The bench process is gone: so are we.
process.on('disconnect', () => process.exit(0));
