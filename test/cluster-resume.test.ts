// Sessions move between nodes: a reliable client resumes on any node of a cluster (a real
// RabbitMQ, several Switchboard nodes on loopback), and the whole session comes with it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connectReliable, type TestClient } from './helpers/client.js';
import { AmqpClient, rabbitSkip } from './helpers/rabbit.js';
import { eventually } from './helpers/eventually.js';
import { startCluster, type TestNode } from './helpers/cluster.js';

const skip = rabbitSkip();

/** Nodes in this process, each sending `resume` events to the app. */
async function cluster(t: import('node:test').TestContext, ids: string[]) {
  const c = await startCluster(t, { webhooks: { paths: { resume: '/ws/resume' } } });
  const nodes = [];
  for (const id of ids) nodes.push(await c.node(id));
  return { ...c, nodes };
}

const isProbe = (f: any) => f.type === 'message' && f.data && typeof f.data === 'object' && 'probe' in f.data;

/** The next pushed message frame that is not a probe. */
async function nextMessage(c: TestClient): Promise<any> {
  for (;;) {
    const f = await c.nextJson('a pushed message');
    if (f.type === "gap") assert.fail(`unexpected gap ${JSON.stringify(f)} (${new Error().stack})`);
    if (f.type === 'message' && !isProbe(f)) return f;
  }
}

const pathOf = (target: Record<string, string | true>) =>
  'channel' in target ? `/v1/channels/${encodeURIComponent(target.channel as string)}/messages`
  : 'user' in target ? `/v1/users/${encodeURIComponent(target.user as string)}/messages`
  : `/v1/connections/${encodeURIComponent(target.connection as string)}/messages`;

/** Binding is asynchronous: push probes from `from` until `client` has seen one. */
async function routeSettled(from: TestNode, target: Record<string, string | true>, client: TestClient): Promise<void> {
  let k = 0;
  await eventually(async () => {
    if (client.frames.some((f) => isProbe(f.json()))) return true;
    assert.equal((await from.control('POST', pathOf(target), { probe: k++ })).status, 202);
    return false;
  }, () => `a probe to ${JSON.stringify(target)} after ${k}`);
  // Drop the probes read so far, so the next frames are the test's.
  for (let i = client.frames.length - 1; i >= 0; i--) if (isProbe(client.frames[i].json())) client.frames.splice(i, 1);
}

test('a session resumes on another node: same session, held messages in order, a resume event and no connect webhook; pushes by id, user and channel follow it', { skip }, async (t) => {
  const { app, nodes: [a, b, c], join, resume } = await cluster(t, ['na', 'nb', 'nc']);
  const first = await join(a, '?user=mover&ch=room');
  assert.ok(first.id.startsWith('na-'));
  await routeSettled(c, { user: 'mover' }, first.client);

  for (const n of [1, 2]) assert.equal((await c.control('POST', pathOf({ connection: first.id }), { n })).status, 202);
  const m1 = await nextMessage(first.client);
  const m2 = await nextMessage(first.client);
  assert.deepEqual([m1.data, m2.data], [{ n: 1 }, { n: 2 }]);
  first.client.send({ type: 'ack', seq: m1.seq });
  // The socket dies without a close frame; the session waits on A, detached.
  first.client.ws.terminate();
  await eventually(() => a.sb.registry.get(first.id)?.state === 'detached', 'detached on A');
  assert.equal((await c.control('POST', pathOf({ user: 'mover' }), { n: 3 })).status, 202);
  await eventually(() => (a.sb.registry.get(first.id)?.outboxMessages ?? 0) >= 2, 'the push held on A');

  const connects = app.byPath('/ws/connect').length;
  const moved = await resume(b, first.token, m1.seq);
  assert.equal(moved.welcome.resumed, true);
  assert.equal(moved.welcome.session, first.id);
  // Everything after lastSeq, in order, then live traffic.
  assert.deepEqual((await nextMessage(moved.client)).data, { n: 2 });
  assert.deepEqual((await nextMessage(moved.client)).data, { n: 3 });
  assert.equal(app.byPath('/ws/connect').length, connects, 'no connect webhook for a resumed session');
  const event = await app.waitFor((r) => r.url === '/ws/resume', 'the resume event');
  assert.deepEqual({ ...(event.json() as object), gapMs: 0 }, { connection: first.id, user: 'mover', gapMs: 0, replayed: 2, lost: 0 });
  assert.equal(event.headers['x-switchboard-user'], 'mover');
  assert.equal(a.sb.registry.get(first.id), undefined, 'gone from A');
  assert.equal(b.sb.registry.get(first.id)?.user, 'mover');
  assert.deepEqual([...(b.sb.registry.get(first.id)?.channels ?? [])], ['room']);

  // Pushes reach it on B by connection id (through any node), user and channel.
  await routeSettled(c, { connection: first.id }, moved.client);
  await routeSettled(a, { channel: 'room' }, moved.client);
  await routeSettled(c, { user: 'mover' }, moved.client);
  for (const [from, target, n] of [[a, { connection: first.id }, 4], [b, { connection: first.id }, 5], [c, { user: 'mover' }, 6], [a, { channel: 'room' }, 7]] as const) {
    const res = await from.control('POST', pathOf(target), { n });
    assert.equal(res.status, 202, `push ${n}`);
    assert.deepEqual((await nextMessage(moved.client)).data, { n });
  }
  const info = await b.control('GET', `/v1/connections/${first.id}`);
  assert.equal(info.status, 200);
  assert.equal(info.json.user, 'mover');
  assert.equal(info.json.state, 'open');
  assert.equal(app.byPath('/ws/disconnect').length, 0, 'no disconnect: the session lives on');

  // Again, from B to C with B's token; and A's first token still finds it (A and B say where it went).
  const again = await resume(c, moved.welcome.token, m1.seq);
  assert.equal(again.welcome.resumed, true);
  assert.deepEqual((await moved.client.closed).code, 4009, 'the socket on B is taken over');
  const replayed = [];
  for (let i = 0; i < 6; i++) replayed.push((await nextMessage(again.client)).data.n);
  assert.deepEqual(replayed, [2, 3, 4, 5, 6, 7], 'nothing acked after 1: all held, probes aside');
  again.client.send({ type: 'ack', seq: 100 });
  const back = await resume(a, first.token, 0);
  assert.equal(back.welcome.resumed, true, 'A redirects to B, B to C');
  assert.equal(back.welcome.session, first.id);
  assert.equal((await again.client.closed).code, 4009);
  assert.equal(a.sb.registry.get(first.id)?.state, 'open', 'home again');
  assert.equal(app.byPath('/ws/connect').length, connects);
  assert.equal(app.byPath('/ws/disconnect').length, 0);
});

test('resuming on another node while the old socket is open takes it over with 4009', { skip }, async (t) => {
  const { nodes: [a, b], join, resume } = await cluster(t, ['na', 'nb']);
  const first = await join(a, '?user=two-tabs');
  const taken = await resume(b, first.token, 0);
  assert.equal(taken.welcome.resumed, true);
  assert.equal(taken.welcome.session, first.id);
  assert.deepEqual(await first.client.closed, { code: 4009, reason: 'session resumed elsewhere' });
  assert.equal(a.sb.registry.get(first.id), undefined);
  assert.equal(b.sb.registry.get(first.id)?.state, 'open');
});

test('pushes racing two moves are neither lost nor duplicated and keep their order', { skip }, async (t) => {
  const { nodes: [a, b, c], join, resume } = await cluster(t, ['na', 'nb', 'nc']);
  const first = await join(a, '?user=racer&ch=lane');
  await routeSettled(c, { user: 'racer' }, first.client);
  await routeSettled(c, { channel: 'lane' }, first.client);

  // One node pushes 1..N, alternately to the user and to the channel, one after the other.
  const N = 300;
  let pushing = true;
  const pusher = (async () => {
    for (let n = 1; n <= N; n++) {
      const res = await c.control('POST', pathOf(n % 2 ? { user: 'racer' } : { channel: 'lane' }), { n });
      assert.equal(res.status, 202);
    }
    pushing = false;
  })();

  const got: number[] = [];
  // Probes took the first seqs; from the first message on, seqs have no holes.
  let lastSeq = -1;
  let client = first.client;
  let token = first.token;
  const read = async (until: (n: number) => boolean) => {
    for (;;) {
      const f = await client.nextJson('a pushed message');
      assert.notEqual(f.type, 'gap', `no gap: ${JSON.stringify(f)}`);
      if (f.type !== 'message') continue;
      if (f.seq <= lastSeq) continue; // re-sent after a resume: already had it (as the client library does)
      if (lastSeq !== -1) assert.equal(f.seq, lastSeq + 1, 'seqs without holes');
      lastSeq = f.seq;
      if (isProbe(f)) continue;
      got.push(f.data.n);
      if (until(f.data.n)) return;
    }
  };
  // Move to B after 60 pushes arrived, to A again after 150, and read the rest there.
  for (const [to, at] of [[b, 60], [a, 150]] as const) {
    await read((n) => n >= at);
    client.ws.terminate();
    const moved = await resume(to, token, lastSeq);
    assert.equal(moved.welcome.resumed, true, `moved after ${at}`);
    client = moved.client;
    token = moved.welcome.token;
  }
  await read((n) => n === N);
  await pusher;
  assert.equal(pushing, false);
  assert.deepEqual(got, Array.from({ length: N }, (_, i) => i + 1), 'every push once, in order');
});

test('a token for a session that ended, or whose node died, gives a new session with a connect webhook', { skip }, async (t) => {
  const { app, nodes: [a, b, c], join, resume } = await cluster(t, ['na', 'nb', 'nc']);
  const ended = await join(a, '?user=gone');
  await ended.client.close(1000);
  await app.waitFor((r) => r.url === '/ws/disconnect' && r.json().connection === ended.id, 'the disconnect');
  const connects = app.byPath('/ws/connect').length;
  const fresh = await resume(b, ended.token, 0);
  assert.equal(fresh.welcome.resumed, false);
  assert.notEqual(fresh.welcome.session, ended.id);
  assert.equal(app.byPath('/ws/connect').length, connects + 1);

  const orphan = await join(c, '?user=orphan');
  orphan.client.ws.terminate();
  await eventually(() => c.sb.registry.get(orphan.id)?.state === 'detached', 'detached on C');
  // C dies without a drain (nothing parked): its sessions are lost.
  c.sb.destroy();
  const after = await resume(a, orphan.token, 0);
  assert.equal(after.welcome.resumed, false, 'the node that held it is gone: a new session, never a partial one');
  assert.equal(b.sb.metrics.registry.getSingleMetric('switchboard_session_moves_total') !== undefined, true);
});

test('workers and nodes mixed: sessions move between a worker of one node and another node, and back, and pushes by id follow them', { skip }, async (t) => {
  const { app, nodes: [b], join, resume, track, cli } = await cluster(t, ['nb']);
  const nw = await cli('nw', 2);
  const pushTo = async (node: TestNode, id: string, data: object) => (await node.control('POST', `/v1/connections/${id}/messages`, data)).status;

  // Born on a worker of nw, moved to nb.
  const born = await connectReliable(nw.wsUrl('/ws?user=w'));
  track(born.client);
  const id = born.welcome.session as string;
  assert.match(id, /^nw-[01]-/);
  born.client.ws.terminate();
  const onB = await resume(b, born.welcome.token, 0);
  assert.equal(onB.welcome.resumed, true);
  assert.equal(onB.welcome.session, id);
  // Through nw's push API: its worker knows the session went, and the push follows it.
  await eventually(async () => {
    assert.equal(await pushTo(nw, id, { probe: 1 }), 202);
    return onB.client.frames.some((f) => isProbe(f.json()));
  }, 'a push through nw reaches the session on nb');

  // Back to nw with nb's token: whichever worker takes the socket takes the session.
  onB.client.ws.terminate();
  const home = await resume(nw, onB.welcome.token, 0);
  assert.equal(home.welcome.resumed, true);
  assert.equal(home.welcome.session, id);
  for (const through of [nw, b]) {
    await eventually(async () => {
      assert.equal(await pushTo(through, id, { probe: through.name }), 202);
      return home.client.frames.some((f) => { const m = f.json(); return isProbe(m) && m.data.probe === through.name; });
    }, `a push through ${through.name} reaches the session back on nw`);
  }

  // Born on nb, moved to a worker of nw; nb's API still reaches it.
  const other = await join(b, '?user=b');
  other.client.ws.terminate();
  await eventually(() => b.sb.registry.get(other.id)?.state === 'detached', 'detached on nb');
  const onW = await resume(nw, other.token, 0);
  assert.equal(onW.welcome.resumed, true);
  assert.equal(b.sb.registry.get(other.id), undefined);
  await eventually(async () => {
    assert.equal(await pushTo(b, other.id, { probe: 'b' }), 202);
    return onW.client.frames.some((f) => isProbe(f.json()));
  }, 'a push through nb reaches the session on nw');
  assert.equal(app.byPath('/ws/connect').length, 2, 'one connect per session, none for the moves');
});

test('malformed cluster messages (moves, questions, heartbeats, expired snapshots) are ignored: nodes stay up and keep moving sessions', { skip }, async (t) => {
  const { nodes: [a, b], join, resume, url, exchange } = await cluster(t, ['na', 'nb']);
  const amqp = await AmqpClient.open(url);
  t.after(() => amqp.close());
  const first = await join(a, '?user=steady');
  const junk = [Buffer.from('{'), Buffer.from('[]'), Buffer.from(`${'['.repeat(200)}${']'.repeat(200)}`), Buffer.from('{"v":1,"id":""}'), Buffer.alloc(0)];
  const types = ['take', 'release', 'snapshot', 'tail', 'moved', 'none', 'query', 'answer', 'hello', 'bye', 'push', 'close', 'parked', 'nonsense'];
  // Not one of them well-formed: a take naming the asker as itself is refused too.
  const headers = [{}, { 'x-switchboard-from': 'not a process', 'x-switchboard-connection': 42 }, { 'x-switchboard-from': 'na-0', 'x-switchboard-connection': first.id }];
  for (const type of types) {
    for (const h of headers) {
      // A hello or bye with a real process name is not malformed: it says that process is there or gone.
      if ((type === 'hello' || type === 'bye') && h === headers[2]) continue;
      for (const content of junk) {
        for (const key of ['all', 'proc.na-0', 'node.na']) {
          amqp.channel.publish(exchange, key, content, { type, headers: h, correlationId: 'x', replyTo: 'nowhere' });
        }
        amqp.channel.sendToQueue(`${exchange}.expired`, content, { type });
      }
    }
  }
  // Past the junk (one channel keeps its order): a real push still arrives, and the session still moves.
  await eventually(async () => {
    await b.control('POST', `/v1/users/steady/messages`, { probe: 'after junk' });
    return first.client.frames.some((f) => isProbe(f.json()));
  }, 'a push after the junk');
  assert.ok(a.sb.readiness().ready && b.sb.readiness().ready);
  first.client.ws.terminate();
  const moved = await resume(b, first.token, 0);
  assert.equal(moved.welcome.resumed, true);
  assert.equal(moved.welcome.session, first.id);
  assert.equal((await b.control('GET', '/v1/nodes')).json.nodes.length, 2);
});
