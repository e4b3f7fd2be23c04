// Every field of every control-port JSON answer is documented: the table of answer fields in
// docs/usage.md lists exactly the fields of the OpenAPI document, each has a description there,
// and every field of answers recorded from a live sidecar is in the table.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { startApp } from './helpers/app.js';
import { startSidecar } from './helpers/sidecar.js';
import { connect, connectReliable } from './helpers/client.js';
import { answerFields, type Field } from './helpers/answer-fields.js';

const usage = readFileSync(new URL('../../docs/usage.md', import.meta.url), 'utf8');

function tableRows(): Array<{ answer: string; field: string }> {
  const start = usage.indexOf('### Answer fields\n');
  assert.ok(start >= 0, 'docs/usage.md has an "Answer fields" section');
  const end = usage.indexOf('\n#', start + 1);
  return [...usage.slice(start, end).matchAll(/^\| ([^|]+?) \| `([^`]+)` \| [^|]*(?:\\\|[^|]*)*\|$/gm)].map((m) => ({ answer: m[1], field: m[2] }));
}

const key = (r: { answer: string; field: string }) => `${r.answer} ${r.field}`;

test('the table of answer fields lists exactly the fields of the OpenAPI document, each described', () => {
  const fields = answerFields();
  assert.ok(fields.length > 50, 'the fields are read from the document');
  for (const f of fields) assert.ok(f.description.trim().length > 0, `${key(f)} has a description in the document`);
  const rows = tableRows();
  assert.equal(new Set(rows.map(key)).size, rows.length, 'each row once');
  assert.deepEqual(new Set(rows.map(key)), new Set(fields.map(key)));
});

/** Each field path of a live JSON answer, read against the table: a map's keys are its values, not fields. */
function undocumented(answer: string, value: unknown, fields: readonly Field[], prefix = ''): string[] {
  if (value === null || typeof value !== 'object') return [];
  if (Array.isArray(value)) return value.flatMap((v) => undocumented(answer, v, fields, prefix));
  const missing: string[] = [];
  for (const [k, v] of Object.entries(value)) {
    const path = `${prefix}${k}`;
    const field = fields.find((f) => f.answer === answer && f.field === path);
    if (!field) {
      missing.push(`${answer} ${path}`);
      continue;
    }
    if (field.refersTo) missing.push(...undocumented(field.refersTo, v, fields));
    else if (field.parent) missing.push(...undocumented(answer, v, fields, Array.isArray(v) ? `${path}[].` : `${path}.`));
  }
  return missing;
}

test('every field of live answers (sends, views, nodes, health, status, errors) is in the table', async (t) => {
  const app = await startApp((r) => (r.url === '/ws/connect' ? { body: { user: 'ann', channels: ['c'], meta: { plan: 'pro' } } } : { status: 204 }));
  const sc = await startSidecar(app.url);
  const raw = await connect(sc.wsUrl());
  const { client, welcome } = await connectReliable(sc.wsUrl());
  t.after(async () => { raw.ws.terminate(); client.ws.terminate(); await sc.close(); await app.close(); });
  const fields = answerFields();
  const rows = new Set(tableRows().map(key));
  const documented = fields.filter((f) => rows.has(key(f)));
  const id = welcome.session as string;
  const recorded: Array<[string, unknown]> = [
    ['GET /healthz 200', (await sc.control('GET', '/healthz')).json],
    ['GET /readyz 200', (await sc.control('GET', '/readyz')).json],
    ['Status', (await sc.control('GET', '/v1/status')).json],
    ['Nodes', (await sc.control('GET', '/v1/nodes')).json],
    ['ConnectionAnswer', (await sc.control('GET', `/v1/connections/${id}`)).json],
    ['ConnectionPage', (await sc.control('GET', '/v1/connections')).json],
    ['Channel', (await sc.control('GET', '/v1/channels/c')).json],
    ['Presence', (await sc.control('GET', '/v1/channels/c/presence')).json],
    ['UserPresence', (await sc.control('GET', '/v1/users/ann')).json],
    ['Membership', (await sc.control('PUT', `/v1/connections/${id}/channels/d`)).json],
    ['PushResult', (await sc.control('POST', '/v1/channels/c/messages', { x: 1 })).json],
    ['BatchResult', (await sc.control('POST', '/v1/batch', { messages: [{ to: { connection: 'n-0-none' }, data: 1 }] })).json],
    ['Error', (await sc.control('POST', '/v1/batch', { messages: 1 })).json],
    ['Error', (await sc.control('GET', '/nowhere')).json],
    ['ApiGatewayConnection', (await sc.control('GET', `/@connections/${id}`)).json],
    ['Gone', (await sc.control('GET', '/@connections/n-0-none')).json],
    ['Closed', (await sc.control('DELETE', '/v1/users/ann')).json],
  ];
  for (const [answer, body] of recorded) {
    assert.ok(body && typeof body === 'object', `${answer} is a JSON object`);
    assert.deepEqual(undocumented(answer, body, documented), [], `${answer}: ${JSON.stringify(body).slice(0, 200)}`);
  }
  // The check itself: a field no row names is found.
  assert.deepEqual(undocumented('Nodes', { nodes: [{ node: 'n', surprise: 1 }], missing: [] }, documented), ['Nodes nodes[].surprise']);
});
