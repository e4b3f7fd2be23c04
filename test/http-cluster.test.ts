// The HTTP transports in a cluster without sticky routing: what an SSE or long-poll client POSTs
// may reach any node, and the node holding its session answers it (the frames travel there over
// the cluster exchange, the answers come back); a poll that lands on another node takes the
// session over there. Real nodes, a real broker, real HTTP clients; the forwarded POST's decoders
// take any bytes without throwing.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { rabbitSkip } from './helpers/rabbit.js';
import { eventually } from './helpers/eventually.js';
import { httpOnce as http, postFrames as post } from './helpers/http.js';
import { startCluster } from './helpers/cluster.js';
import { dataOf, openStream } from './sse-stream.js';
import { decodePost, decodePosted } from '../plugins/amqp/transfer.js';

const skip = rabbitSkip();


test('cluster: an SSE session on one node takes what its client POSTs to another, answered with the acks, in order', { skip }, async (t) => {
  const { app, node } = await startCluster(t);
  const [a, b] = [await node('ha'), await node('hb')];
  const s = await openStream(`${a.httpUrl}/ws?user=ann&ch=room`);
  t.after(() => s.drop());
  const welcome = dataOf(await s.next((e) => e.event === 'welcome', 'welcome'));
  const sent = app.byPath('/ws/message').length;
  for (let i = 0; i < 4; i++) {
    const answer = await post(i % 2 ? a.httpUrl : b.httpUrl, welcome.token, { type: 'message', id: `m${i}`, data: { i } });
    assert.deepEqual([answer.status, answer.json], [200, { type: 'ack', id: `m${i}` }], `POST ${i} to ${i % 2 ? 'the holder' : 'the other node'}`);
  }
  assert.deepEqual(app.byPath('/ws/message').slice(sent).map((r) => r.json().i), [0, 1, 2, 3], 'in order, once each');
  // A subscribe is decided by the holder too (no subscribe webhook here: denied, as it would be there).
  assert.deepEqual((await post(b.httpUrl, welcome.token, [{ type: 'ping' }, { type: 'subscribe', channel: 'extra', id: 's1' }])).json, [{ type: 'pong' }, { type: 'nack', id: 's1', error: 'subscribe_denied', retryable: false }]);
  // A malformed frame is answered by the holder, as it would be there.
  const bad = await post(b.httpUrl, welcome.token, { type: 'message', id: 'x' });
  assert.deepEqual([bad.status, bad.json.error], [400, 'bad_field']);

  // The session ended: every node says so.
  assert.equal((await a.control('DELETE', `/v1/connections/${welcome.session}`)).status < 300, true);
  await eventually(async () => (await a.control('GET', `/v1/connections/${welcome.session}`)).status === 404, 'the session ended');
  assert.deepEqual([(await post(b.httpUrl, welcome.token, { type: 'ping' })).status, (await post(b.httpUrl, welcome.token, { type: 'ping' })).json.error], [404, 'unknown_connection']);
});

test('cluster: a long-poll session follows its polls from node to node, and its POSTs reach it wherever it is', { skip }, async (t) => {
  const { app, node } = await startCluster(t);
  const nodes = [await node('la'), await node('lb')];
  const json = { accept: 'application/json' };
  const [welcome] = (await http(nodes[0].httpUrl, 'GET', '/ws?transport=long-poll&user=bob&ch=room', json)).json;
  let token: string = welcome.token;
  let lastSeq = 0;
  const got: number[] = [];
  const sent = app.byPath('/ws/message').length;
  for (let i = 1; i <= 4; i++) {
    const at = nodes[i % 2];
    assert.equal((await at.control('POST', '/v1/users/bob/messages', { n: i })).status, 202);
    while (!got.includes(i)) {
      const answer = await http(at.httpUrl, 'GET', `/ws?transport=long-poll&lastSeq=${lastSeq}`, { ...json, 'x-switchboard-token': token });
      assert.equal(answer.status, 200, JSON.stringify(answer.json));
      for (const frame of answer.json) {
        if (frame.type === 'welcome') {
          assert.deepEqual([frame.session, frame.resumed], [welcome.session, true]);
          token = frame.token;
        } else if (frame.type === 'message') {
          assert.equal(frame.seq, lastSeq + 1);
          lastSeq = frame.seq;
          got.push(frame.data.n);
        }
      }
    }
    // Sent to the node it just left, with the first token: passed on to where it is.
    const ack = await post(nodes[(i + 1) % 2].httpUrl, welcome.token, { type: 'message', id: `p${i}`, data: { i } });
    assert.deepEqual([ack.status, ack.json], [200, { type: 'ack', id: `p${i}` }], `POST ${i}`);
  }
  assert.deepEqual(got, [1, 2, 3, 4]);
  assert.deepEqual(app.byPath('/ws/message').slice(sent).map((r) => r.json().i), [1, 2, 3, 4]);
});

test('property: a forwarded POST and its answer are decoded from any bytes without throwing; what is encoded comes back', () => {
  const frame = fc.record({ text: fc.string(), id: fc.option(fc.string(), { nil: undefined }) }, { requiredKeys: ['text'] });
  fc.assert(fc.property(fc.string({ maxLength: 40 }), fc.array(frame, { minLength: 1, maxLength: 100 }), fc.boolean(), (path, frames, single) => {
    const clean = frames.map((f) => (f.id === undefined ? { text: f.text, id: undefined } : f));
    const decoded = decodePost(Buffer.from(JSON.stringify({ path, frames: clean, single })));
    assert.ok(decoded.ok);
    assert.deepEqual(decoded.value, { path, frames: clean.map((f) => ({ text: f.text, id: f.id })), single });
  }));
  fc.assert(fc.property(fc.oneof(fc.uint8Array({ maxLength: 200 }).map((b) => Buffer.from(b)), fc.jsonValue().map((v) => Buffer.from(JSON.stringify(v)))), (bytes) => {
    const p = decodePost(bytes);
    const a = decodePosted(bytes);
    assert.equal(typeof p.ok, 'boolean');
    assert.equal(typeof a.ok, 'boolean');
  }));
  for (const bad of ['', '{', '[]', '{"path":"/ws","frames":[],"single":true}', '{"path":"/ws","frames":[{"text":1}],"single":true}', `{"path":"/ws","frames":${JSON.stringify(Array(101).fill({ text: '{}' }))},"single":false}`]) {
    assert.equal(decodePost(Buffer.from(bad)).ok, false, bad.slice(0, 40));
  }
  for (const bad of ['{"status":99,"body":1}', '{"status":200}', '{"status":"200","body":1}', 'null']) assert.equal(decodePosted(Buffer.from(bad)).ok, false, bad);
  assert.deepEqual(decodePosted(Buffer.from('{"status":409,"body":{"error":"not_streaming"}}')), { ok: true, value: { status: 409, body: { error: 'not_streaming' } } });
});
