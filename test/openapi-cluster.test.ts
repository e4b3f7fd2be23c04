// The OpenAPI document in a cluster: the answers that only a cluster gives (views that say which
// nodes answered, pushes published to the other nodes, the nodes on the status) match it too.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { rabbitSkip } from './helpers/rabbit.js';
import { eventually } from './helpers/eventually.js';
import { startCluster } from './helpers/cluster.js';
import { documented } from './helpers/openapi.js';

const skip = rabbitSkip();

test('cluster answers (views with their nodes, published pushes, the status\'s nodes) match the document', { skip }, async (t) => {
  const { node, join } = await startCluster(t);
  const a = await node('oa');
  const b = await node('ob');
  await eventually(async () => (await a.control('GET', '/v1/nodes')).json.nodes.length === 2, 'oa sees both nodes');
  const { id } = await join(b, '?user=u1&ch=room');
  const json = (body: unknown) => ({ body: JSON.stringify(body), headers: { 'content-type': 'application/json' } });
  const base = a.controlUrl;

  const nodes = await documented(base, 'GET', '/v1/nodes');
  assert.deepEqual(nodes.json.nodes.map((n: { node: string }) => n.node), ['oa', 'ob']);
  const everywhere = { answered: 2, missing: [] };
  assert.deepEqual((await documented(base, 'GET', `/v1/connections/${id}`)).json.nodes, everywhere);
  assert.deepEqual((await documented(base, 'GET', '/v1/connections?user=u1')).json.nodes, everywhere);
  assert.deepEqual((await documented(base, 'GET', '/v1/channels/room')).json, { channel: 'room', connections: 1, nodes: everywhere });
  assert.equal((await documented(base, 'POST', '/v1/channels/room/messages', json({ x: 1 }))).json.published, true);
  assert.equal((await documented(base, 'POST', '/v1/batch', json({ messages: [{ to: { user: 'u1' }, data: 1 }] }))).json.published, true);
  assert.equal((await documented(base, 'GET', '/v1/connections/ob-0-gone')).status, 404);
  const status = (await documented(base, 'GET', '/v1/status')).json;
  assert.deepEqual(status.cluster.nodes.map((n: { node: string; sessions: number }) => [n.node, n.sessions]), [['oa', 0], ['ob', 1]]);
  assert.deepEqual(status.cluster.missing, []);
  assert.deepEqual((await documented(base, 'DELETE', '/v1/users/u1')).json, { closed: 1, nodes: everywhere });
  assert.equal((await documented(base, 'DELETE', `/v1/connections/${id}`)).status, 404);
});
