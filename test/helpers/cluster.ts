// A Switchboard cluster for tests: one private RabbitMQ per test file, an app whose connect
// answer comes from the WebSocket URL's query, and nodes in this process (startSidecar) or as
// CLI processes (for workers, signals and crashes), all torn down after each test.
import { after, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { startApp, type Answer, type Recorded, type TestApp } from './app.js';
import { merge, startSidecar, type Sidecar } from './sidecar.js';
import { connect, connectReliable, type TestClient } from './client.js';
import { startRabbit, uniqueName, type Rabbit } from './rabbit.js';
import { eventually } from './eventually.js';
import { freePort, runCli, writeConfig, type CliProcess } from './process.js';

export const TOKEN_SECRET = 'one-secret-for-every-node';

let broker: Promise<Rabbit> | null = null;
after(async () => { if (broker) await (await broker).close(); });
/** The file's RabbitMQ, started on first use. */
export const rabbit = (): Promise<Rabbit> => (broker ??= startRabbit());

/** `?user=u&ch=a,b&meta=gold` on the WebSocket URL: the user, channels and meta the connect webhook answers. */
export function connectAnswer(req: Recorded) {
  if (req.url !== '/ws/connect') return { status: 204 };
  const q = req.json().query as Record<string, string>;
  return {
    status: 200,
    body: { ...(q.user ? { user: q.user } : {}), channels: q.ch ? q.ch.split(',') : [], ...(q.meta ? { meta: { tier: q.meta } } : {}) },
  };
}

/** A node as the tests use it, wherever it runs. */
export interface TestNode {
  readonly name: string;
  wsUrl(path?: string): string;
  control(method: string, path: string, body?: unknown, headers?: Record<string, string>): Promise<{ status: number; json: any; text?: string }>;
}

export interface CliNode extends TestNode {
  readonly proc: CliProcess;
}

async function httpControl(port: number, method: string, path: string, body?: unknown, headers: Record<string, string> = {}) {
  const res = await fetch(`http://127.0.0.1:${port}${path}`, {
    method,
    headers: body === undefined ? headers : { 'content-type': 'application/json', ...headers },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, text, json: text.startsWith('{') ? JSON.parse(text) : undefined };
}

/**
 * A cluster on a fresh exchange: `config` is merged into every node's config (after the
 * cluster, token secret and quick reconnects every node gets). `answer`: the app's answer to a
 * request before the connect answer is asked (null: not this one).
 */
export async function startCluster(t: TestContext, config: Record<string, unknown> = {}, answer: (r: Recorded) => Answer | null = () => null) {
  const r = await rabbit();
  const exchange = uniqueName('cluster');
  const teardown: Array<() => Promise<void>> = [];
  t.after(async () => { for (const f of teardown.reverse()) await f(); });
  const app: TestApp = await startApp((r) => answer(r) ?? connectAnswer(r));
  teardown.push(() => app.close());
  const clients: TestClient[] = [];
  teardown.push(async () => { await Promise.all(clients.map((c) => c.close().catch(() => {}))); });
  const shared = merge({
    cluster: { amqp: { url: r.url, exchange } },
    session: { tokenSecret: TOKEN_SECRET },
    amqp: { reconnect: { baseMs: 20, capMs: 300 } },
  }, config);

  /** A node in this process, ready. */
  const node = async (nodeId: string, extra: Record<string, unknown> = {}): Promise<Sidecar & TestNode> => {
    const sc = await startSidecar(app.url, merge(merge({ nodeId }, shared), extra));
    teardown.push(() => sc.close());
    await eventually(() => sc.sb.readiness().ready, `${nodeId} ready`);
    return Object.assign(sc, { name: nodeId });
  };

  /** A node as a CLI process (`workers` > 1: a primary and its workers), ready. */
  const cli = async (nodeId: string, workers = 1, extra: Record<string, unknown> = {}): Promise<CliNode> => {
    const [pub, ctl] = [await freePort(), await freePort()];
    const proc = runCli(['--config', writeConfig(merge(merge({
      listen: `127.0.0.1:${pub}`, control: { listen: `127.0.0.1:${ctl}` }, workers, nodeId,
      app: { url: app.url }, log: { level: 'info' }, drain: { timeoutMs: 2000 },
    }, shared), extra))]);
    teardown.push(async () => { proc.child.kill('SIGCONT'); proc.child.kill('SIGKILL'); await proc.exited; });
    await proc.waitForOutput(workers > 1 ? /switchboard primary ready/ : /switchboard ready/);
    await eventually(async () => (await httpControl(ctl, 'GET', '/readyz')).status === 200, `${nodeId} ready`);
    return { name: nodeId, proc, wsUrl: (p = '/ws') => `ws://127.0.0.1:${pub}${p}`, control: (m, p, b, h) => httpControl(ctl, m, p, b, h) };
  };

  const track = (c: TestClient): TestClient => { clients.push(c); return c; };

  /** A reliable client on `at`, with the query deciding its user, channels and meta. */
  const join = async (at: TestNode, query = '') => {
    const c = await connectReliable(at.wsUrl(`/ws${query}`));
    track(c.client);
    return { client: c.client, id: c.welcome.session as string, token: c.welcome.token as string };
  };

  /** A resume on `at` with a token and the last seq the client has; returns the welcome. */
  const resume = async (at: TestNode, token: string, lastSeq: number) => {
    const client = track(await connect(at.wsUrl(`/ws?resume=${encodeURIComponent(token)}&lastSeq=${lastSeq}`), 'switchboard.v1'));
    const welcome = await client.nextJson('welcome');
    assert.equal(welcome.type, 'welcome');
    return { client, welcome };
  };

  return { app, url: r.url, exchange, node, cli, track, join, resume };
}
