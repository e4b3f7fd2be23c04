// The control port's OpenAPI document (proxy/openapi.ts) against the code: it is a valid
// OpenAPI 3.1 document, every route the control port answers is documented and every
// documented route is answered, the token rule matches, what it calls valid a live sidecar
// accepts and what it calls invalid is refused with 400, and every answer recorded from a
// live sidecar (sends, views, nodes, health, status, errors) matches its documented schema.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { Validator } from '@seriousme/openapi-schema-validator';
import { startApp } from './helpers/app.js';
import { startSidecar, type Sidecar } from './helpers/sidecar.js';
import { connect, connectReliable, type TestClient } from './helpers/client.js';
import { assertDocumented, doc, documented, methods, operationFor, schemaValid, templatePattern, validatorAt, type Operation } from './helpers/openapi.js';
import { createControlApi, type ControlRoute } from '../proxy/control-api.js';
import { pluginRoutes } from '../proxy/plugin.js';
import { builtinPlugins } from '../plugins/index.js';
import { parseBatch } from '../proxy/push-request.js';
import { SwitchboardError } from '../proxy/errors.js';
import { MAX_BATCH_MESSAGES, MAX_COALESCE_KEY } from '../proxy/limits.js';

const token = 'a-control-token-of-some-length';
const auth = { authorization: `Bearer ${token}` };

async function setup(t: TestContext, overrides: Record<string, unknown> = {}) {
  const app = await startApp((r) => {
    if (r.url !== '/ws/connect') return { status: 204 };
    const q = r.json().query as Record<string, string>;
    return q.user ? { body: { user: q.user, channels: (q.channels ?? '').split(',').filter(Boolean), meta: { plan: 'pro' } } } : { status: 204 };
  });
  const sc = await startSidecar(app.url, { control: { token }, ...overrides });
  const clients: TestClient[] = [];
  t.after(async () => {
    await Promise.all(clients.map((c) => { c.ws.terminate(); return c.closed; }));
    await sc.close();
    await app.close();
  });
  return { app, sc, clients };
}

/** The routes the control port of this sidecar answers: built by the same function, from the same plugins. */
function routesOf(sc: Sidecar): readonly ControlRoute[] {
  const { sb } = sc;
  return createControlApi({
    config: sc.config, clock: sb.clock, log: sb.log, metrics: sb.metrics, directory: sb.directory, views: sb.views,
    node: async () => ({ node: sb.nodeId, processes: 1, ...sb.status() }), ready: async () => sb.readiness(),
    metricsText: async () => ({ contentType: 'text/plain', body: '' }), routes: pluginRoutes(builtinPlugins, sc.config),
  }).routes;
}

/** The concrete paths a route's pattern takes: `([^/]+)` as a sample segment, `\/?` both ways. */
function samplesOf(pattern: RegExp): string[] {
  let body = pattern.source.replace(/^\^/, '').replace(/\$$/, '').replace(/\(\[\^\/\]\+\)/g, 'x');
  const variants = body.includes('\\/?') ? [body.replace('\\/?', '\\/'), body.replace('\\/?', '')] : [body];
  return variants.map((v) => {
    assert.ok(!/[()[\]*+?|]/.test(v.replace(/\\./g, '')), `the test cannot read the pattern ${pattern.source}`);
    return v.replace(/\\(.)/g, '$1');
  });
}

const documentedMethods = (template: string) => methods.filter((m) => doc.paths[template][m]);
const operations = () => Object.entries(doc.paths).flatMap(([template, item]) => documentedMethods(template).map((m) => ({ template, method: m.toUpperCase(), operation: item[m] as Operation })));
const sample = (template: string) => template.replace(/\{[^}]+\}/g, 'x');

test('the document is valid OpenAPI 3.1, and the validator refuses a broken copy', async () => {
  const validator = new Validator();
  const result = await validator.validate(JSON.parse(JSON.stringify(doc)));
  assert.deepEqual(result.errors, undefined);
  assert.equal(result.valid, true);
  assert.equal(validator.version, '3.1');
  const broken = JSON.parse(JSON.stringify(doc));
  broken.paths['/v1/batch'].post.responses = 'none';
  assert.equal((await new Validator().validate(broken)).valid, false);
});

test('route by route: every route is documented, every documented route exists, the token rule is the same', async (t) => {
  const { sc } = await setup(t);
  const routes = routesOf(sc);
  assert.ok(routes.length >= 20, 'the routes are read from the code');
  for (const route of routes) {
    for (const path of samplesOf(route.pattern)) {
      assert.ok(route.pattern.test(path), `${route.pattern} takes its own sample ${path}`);
      const templates = Object.keys(doc.paths).filter((tp) => templatePattern(tp).test(path));
      assert.equal(templates.length, 1, `${route.method} ${path} (${route.pattern}) is documented once`);
      const ms = route.method === '*' ? documentedMethods(templates[0]) : [route.method.toLowerCase()];
      assert.ok(ms.length > 0, `${path}: a route for every method documents at least one`);
      for (const m of ms) {
        const operation = doc.paths[templates[0]][m] as Operation | undefined;
        assert.ok(operation, `${route.method} ${path}: ${m.toUpperCase()} ${templates[0]} is documented`);
        const tokenRule = JSON.stringify(operation.security) === JSON.stringify([{ controlToken: [] }]);
        assert.equal(tokenRule, route.authenticated !== false, `${m.toUpperCase()} ${templates[0]}: documented security matches the route`);
      }
    }
  }
  for (const { template, method, operation } of operations()) {
    const path = sample(template);
    const route = routes.find((r) => r.pattern.test(path) && (r.method === method || r.method === '*'));
    assert.ok(route, `${method} ${template} is documented but no route takes it`);
    // And live: the port answers it with something other than "no such route" or "method not allowed".
    const res = await fetch(sc.controlUrl + path, { method, headers: auth, body: method === 'POST' || method === 'PUT' ? '{}' : undefined });
    const body = await res.text();
    assert.ok(!/"error":"(not_found|method_not_allowed)"/.test(body) && res.status !== 405, `${method} ${template}: answered ${res.status} ${body}`);
    // Without the token: refused exactly where the document says the token is needed.
    const bare = await fetch(sc.controlUrl + path, { method, body: method === 'POST' || method === 'PUT' ? '{}' : undefined });
    await bare.arrayBuffer();
    const needsToken = JSON.stringify(operation.security) === JSON.stringify([{ controlToken: [] }]) || template.startsWith('/publish');
    assert.equal(bare.status === 401, needsToken, `${method} ${template} without the token answered ${bare.status}`);
  }
});

test('recorded answers of a live sidecar match the documented responses, errors included', async (t) => {
  const { sc, clients } = await setup(t);
  const base = sc.controlUrl;
  const json = (body: unknown, headers: Record<string, string> = {}) => ({ body: JSON.stringify(body), headers: { ...auth, 'content-type': 'application/json', ...headers } });
  const a = await connect(sc.wsUrl('/ws?user=alice&channels=news,chat'));
  const { client: b, welcome } = await connectReliable(sc.wsUrl('/ws?user=bob&channels=news'));
  clients.push(a, b);
  const list = await documented(base, 'GET', '/v1/connections?limit=1', { headers: auth });
  assert.equal(list.json.connections.length, 1);
  assert.equal(typeof list.json.next, 'string');
  const last = await documented(base, 'GET', `/v1/connections?cursor=${list.json.next}`, { headers: auth });
  assert.equal(last.json.next, null);
  const aliceId = [...list.json.connections, ...last.json.connections].find((c: { user: string }) => c.user === 'alice').connection as string;
  const bobId = welcome.session as string;

  const answers: Array<[string, string, Parameters<typeof documented>[3]?]> = [
    ['GET', '/healthz'], ['GET', '/readyz'], ['GET', '/metrics', { headers: auth }], ['GET', '/openapi.json'], ['GET', '/'],
    ['GET', '/v1/status', { headers: auth }], ['GET', '/v1/nodes', { headers: auth }],
    ['GET', `/v1/connections/${bobId}`, { headers: auth }], ['GET', `/v1/connections?user=alice`, { headers: auth }],
    ['GET', '/v1/channels/news', { headers: auth }],
    ['GET', '/v1/channels/news/presence', { headers: auth }], ['GET', '/v1/channels/news/presence?limit=1', { headers: auth }],
    ['GET', '/v1/users/alice', { headers: auth }], ['GET', '/v1/users/nobody', { headers: auth }],
    ['GET', '/v1/channels/news/presence?cursor=!', { headers: auth }], ['GET', `/v1/users/${'u'.repeat(1025)}`, { headers: auth }],
    ['POST', `/v1/connections/${aliceId}/messages`, json({ hello: 1 })],
    ['POST', `/v1/connections/${bobId}/messages`, { body: 'text', headers: { ...auth, 'content-type': 'text/plain', 'x-switchboard-class': 'lossy', 'x-switchboard-ttl-ms': '5000', 'x-switchboard-coalesce-key': 'k' } }],
    ['POST', '/v1/users/alice/messages', { body: Buffer.from([1, 2]), headers: { ...auth, 'content-type': 'application/octet-stream' } }],
    ['POST', '/v1/channels/news/messages', json([1, 2, 3])],
    ['POST', '/v1/broadcast', json('all')],
    ['POST', '/v1/batch', json({ messages: [{ to: { all: true }, data: 1 }, { to: { connection: 'n-0-gone' }, binary: 'AAE=' }, { to: { channel: 'chat' }, data: 'x', class: 'lossy', coalesceKey: 'c', ttlMs: 1000 }] })],
    ['PUT', `/v1/connections/${aliceId}/channels/extra`, { headers: auth }],
    ['DELETE', `/v1/connections/${aliceId}/channels/extra`, { headers: auth }],
    ['GET', `/@connections/${aliceId}`, { headers: auth }],
    ['POST', `/@connections/${aliceId}`, { body: 'hi', headers: auth }],
    ['POST', '/publish/', json({ items: [{ channel: 'news', formats: { 'ws-message': { content: 'grip' } } }] })],
    ['POST', '/publish', json({ items: [] }, { accept: 'application/json' })],
    // Errors, each with its documented status and code.
    ['GET', '/v1/status'], ['GET', '/metrics'], ['POST', '/v1/broadcast', { body: '{}' }],
    ['POST', '/v1/connections/n-0-gone/messages', json({})],
    ['POST', '/v1/broadcast', { body: '{"a":', headers: { ...auth, 'content-type': 'application/json' } }],
    ['POST', '/v1/broadcast', { body: `${'['.repeat(100)}${']'.repeat(100)}`, headers: { ...auth, 'content-type': 'application/json' } }],
    ['POST', '/v1/broadcast', { body: 'x', headers: { ...auth, 'content-type': 'image/png' } }],
    ['POST', '/v1/broadcast', { body: 'x'.repeat(sc.config.limits.maxMessageBytes + 1), headers: { ...auth, 'content-type': 'text/plain' } }],
    ['POST', '/v1/broadcast', { body: 'x', headers: { ...auth, 'content-type': 'text/plain', 'x-switchboard-class': 'loud' } }],
    ['POST', '/v1/batch', json({ messages: [{ to: { everyone: true }, data: 1 }] })],
    ['POST', '/v1/batch', { body: 'x', headers: { ...auth, 'content-type': 'text/plain' } }],
    ['GET', '/v1/connections?limit=0', { headers: auth }], ['GET', '/v1/connections?cursor=!', { headers: auth }],
    ['GET', '/v1/connections/n-0-gone', { headers: auth }], ['GET', '/v1/connections/%E0%A4%A', { headers: auth }],
    ['DELETE', `/v1/connections/${aliceId}?code=3000`, { headers: auth }],
    ['DELETE', `/v1/users/bob?reason=${'r'.repeat(124)}`, { headers: auth }],
    ['PUT', '/v1/connections/n-0-gone/channels/c', { headers: auth }],
    ['GET', '/@connections/n-0-gone', { headers: auth }], ['DELETE', '/@connections/n-0-gone', { headers: auth }],
    ['GET', '/publish/'], ['POST', '/publish/', { body: '{}', headers: { ...auth, 'content-type': 'application/json' } }],
    ['POST', '/publish/', { body: '{"items":[]}', headers: { ...auth, accept: 'image/png' } }],
    ['GET', '/no/such/route', { headers: auth }], ['PATCH', '/v1/broadcast', { headers: auth }],
    // Closes last: they end the sessions the answers above describe.
    ['DELETE', `/v1/connections/${aliceId}?code=4001&reason=bye`, { headers: auth }],
    ['DELETE', '/v1/users/bob', { headers: auth }],
    ['DELETE', '/v1/users/nobody', { headers: auth }],
  ];
  const statuses = new Set<string>();
  for (const [method, path, init] of answers) {
    const answer = await documented(base, method, path, init);
    statuses.add(`${method} ${path.split('?')[0].replace(/n1?-\d-\w+|[a-z0-9]+-\d+-[\w-]+/g, '{id}')} ${answer.status}`);
  }
  for (const expected of ['POST /v1/broadcast 401', 'POST /v1/broadcast 400', 'POST /v1/broadcast 413', 'POST /v1/broadcast 415', 'POST /v1/batch 400', 'GET /v1/connections 400', 'GET /v1/connections/%E0%A4%A 400', 'DELETE /v1/connections/{id} 400', 'DELETE /v1/users/bob 400', 'GET /no/such/route 404', 'PATCH /v1/broadcast 405', 'GET /@connections/{id} 410', 'GET /publish/ 405', 'POST /publish/ 406', 'DELETE /v1/users/bob 200']) {
    assert.ok(statuses.has(expected), `recorded ${expected} (got ${[...statuses].join('; ')})`);
  }
});

test('a cluster-less answer with a field the document does not name fails the check', () => {
  const good = { delivered: 1, queued: 0, dropped: 0 };
  assertDocumented('POST', '/v1/broadcast', { status: 202, contentType: 'application/json', text: JSON.stringify(good) });
  assert.throws(() => assertDocumented('POST', '/v1/broadcast', { status: 202, contentType: 'application/json', text: JSON.stringify({ ...good, extra: 1 }) }), /does not match/);
  assert.throws(() => assertDocumented('POST', '/v1/broadcast', { status: 201, contentType: 'application/json', text: '{}' }), /no 201/);
  assert.throws(() => assertDocumented('GET', '/healthz', { status: 200, contentType: 'text/plain', text: 'ok' }), /not documented/);
});

// ── requests: what the document calls valid is accepted, what it calls invalid is a 400 ──

const asciiString = (constraints: { minLength?: number; maxLength?: number } = {}) => fc.string({ unit: fc.constantFrom(...'abcXYZ019 _-.~:'), ...constraints });
const target = fc.oneof(
  fc.record({ connection: asciiString({ minLength: 1, maxLength: 8 }) }), fc.record({ user: asciiString({ maxLength: 8 }) }),
  fc.record({ channel: asciiString({ minLength: 1, maxLength: 8 }) }), fc.constant({ all: true }),
  fc.constantFrom({}, { all: false }, { all: 'yes' }, { user: 1 }, { connection: 'a', user: 'b' }, 'everyone', null, { everyone: 'x' }),
);
const base64 = fc.uint8Array({ maxLength: 12 }).map((a) => Buffer.from(a).toString('base64'));
const item = fc.record({
  to: target,
  data: fc.jsonValue({ maxDepth: 3 }),
  binary: fc.oneof(base64, fc.constantFrom('QR==', 'abc', '====', 'AAE', 'A A=', 1, null)),
  class: fc.constantFrom('durable', 'lossy', null, 'loud', 1, ''),
  coalesceKey: fc.oneof(asciiString({ minLength: 1, maxLength: MAX_COALESCE_KEY }), fc.constantFrom('', 'k'.repeat(MAX_COALESCE_KEY + 1), null, 5)),
  ttlMs: fc.oneof(fc.integer({ min: 1, max: 1e9 }), fc.integer({ min: 1, max: 1e9 }).map(String), fc.constantFrom(0, -1, 1.5, '0', '', 'ten', '01', null, 2 ** 53, Number.MAX_SAFE_INTEGER)),
  extra: fc.constant('unknown key'),
}, { requiredKeys: [] });
const batch = fc.oneof(
  { weight: 8, arbitrary: fc.record({ messages: fc.array(item, { maxLength: 4 }) }) },
  { weight: 1, arbitrary: fc.constantFrom(null, [], 'x', {}, { messages: {} }, { messages: [], more: 1 }, { messages: [null] }, { messages: [[]] }) },
);

/** What the parser makes of a batch body: accepted, or the status it refuses it with. */
function parserVerdict(body: unknown): number {
  try {
    parseBatch(body, 0, MAX_BATCH_MESSAGES, 1 << 20);
    return 202;
  } catch (err) {
    assert.ok(err instanceof SwitchboardError, String(err));
    return err.status;
  }
}

test('batch bodies: the document and the parser agree on every generated body', () => {
  const schema = validatorAt('components', 'schemas', 'Batch');
  let valid = 0;
  fc.assert(fc.property(batch, (body) => {
    const documentedValid = schemaValid(schema, body);
    if (documentedValid) valid++;
    assert.equal(parserVerdict(body), documentedValid ? 202 : 400, `${JSON.stringify(body)}: the document says ${documentedValid ? 'valid' : `invalid (${JSON.stringify(schema.errors?.[0])})`}`);
  }), { numRuns: 2000 });
  assert.ok(valid > 200, `enough valid bodies were generated (${valid})`);
});

test('live: generated batch bodies, push headers and query parameters are accepted or refused with 400 as the document says', async (t) => {
  const { sc } = await setup(t);
  const batchSchema = validatorAt('components', 'schemas', 'Batch');
  await fc.assert(fc.asyncProperty(batch, async (body) => {
    const res = await sc.control('POST', '/v1/batch', JSON.stringify(body), { ...auth, 'content-type': 'application/json' });
    assert.equal(res.status, schemaValid(batchSchema, body) ? 202 : 400, `${JSON.stringify(body)} → ${res.text}`);
    assertDocumented('POST', '/v1/batch', { status: res.status, contentType: res.headers.get('content-type'), text: res.text });
  }), { numRuns: 80 });

  const parameters = (template: string, method: string) => {
    const item = doc.paths[template];
    return [...(item.parameters ?? []), ...((item[method] as Operation).parameters ?? [])];
  };
  const checkers = (template: string, method: string, where: string) => Object.fromEntries(parameters(template, method).filter((p) => p.in === where).map((p) => {
    const index = parameters(template, method).indexOf(p);
    const own = (doc.paths[template].parameters ?? []).length;
    const at = index < own ? ['paths', template, 'parameters', String(index), 'schema'] : ['paths', template, method, 'parameters', String(index - own), 'schema'];
    return [p.name.toLowerCase(), validatorAt(...at)];
  }));

  const headerSchemas = checkers('/v1/broadcast', 'post', 'header');
  assert.deepEqual(Object.keys(headerSchemas).sort(), ['x-switchboard-class', 'x-switchboard-coalesce-key', 'x-switchboard-ttl-ms']);
  const headerValue = (...good: fc.Arbitrary<string>[]) => fc.option(fc.oneof(...good, asciiString({ maxLength: 300 }).map((s) => s.trim())), { nil: undefined });
  const headers = fc.record({
    'x-switchboard-class': headerValue(fc.constantFrom('durable', 'lossy')),
    'x-switchboard-coalesce-key': headerValue(asciiString({ minLength: 1, maxLength: MAX_COALESCE_KEY }).filter((s) => s.trim() === s && s !== '')),
    'x-switchboard-ttl-ms': headerValue(fc.integer({ min: 0, max: 1e12 }).map(String), fc.constantFrom('0', '007', '-5', '1.5', '9'.repeat(15))),
  });
  await fc.assert(fc.asyncProperty(headers, async (h) => {
    const sent = Object.fromEntries(Object.entries(h).filter(([, v]) => v !== undefined)) as Record<string, string>;
    const valid = Object.entries(sent).every(([name, value]) => schemaValid(headerSchemas[name], value));
    const res = await sc.control('POST', '/v1/broadcast', { x: 1 }, { ...auth, ...sent });
    assert.equal(res.status, valid ? 202 : 400, `${JSON.stringify(sent)} → ${res.text}`);
  }), { numRuns: 60 });

  const listSchemas = checkers('/v1/connections', 'get', 'query');
  const closeSchemas = checkers('/v1/users/{user}', 'delete', 'query');
  const query = fc.record({
    limit: fc.option(fc.oneof(fc.integer({ min: -5, max: 1200 }).map(String), fc.constantFrom('', '0010', '1e2', 'x')), { nil: undefined }),
    cursor: fc.option(fc.oneof(asciiString({ maxLength: 30 }), fc.constant('c'.repeat(201))), { nil: undefined }),
  }, { requiredKeys: [] });
  await fc.assert(fc.asyncProperty(query, async (q) => {
    const sent = Object.fromEntries(Object.entries(q).filter(([, v]) => v !== undefined)) as Record<string, string>;
    const valid = Object.entries(sent).every(([name, value]) => schemaValid(listSchemas[name], value));
    const res = await sc.control('GET', `/v1/connections?${new URLSearchParams(sent)}`, undefined, auth);
    assert.equal(res.status, valid ? 200 : 400, `${JSON.stringify(sent)} → ${res.text}`);
  }), { numRuns: 60 });
  const closeQuery = fc.record({
    code: fc.option(fc.oneof(fc.integer({ min: 3990, max: 4110 }).map(String), fc.constantFrom('', '04000', '4000.0', 'x', '1000')), { nil: undefined }),
    reason: fc.option(asciiString({ maxLength: 130 }), { nil: undefined }),
  }, { requiredKeys: [] });
  await fc.assert(fc.asyncProperty(closeQuery, async (q) => {
    const sent = Object.fromEntries(Object.entries(q).filter(([, v]) => v !== undefined)) as Record<string, string>;
    const valid = Object.entries(sent).every(([name, value]) => schemaValid(closeSchemas[name], value));
    const res = await sc.control('DELETE', `/v1/users/nobody?${new URLSearchParams(sent)}`, undefined, auth);
    assert.equal(res.status, valid ? 200 : 400, `${JSON.stringify(sent)} → ${res.text}`);
  }), { numRuns: 60 });
});

test('the document is served at /openapi.json without the token, and is the module\'s document', async (t) => {
  const { sc } = await setup(t);
  const res = await fetch(`${sc.controlUrl}/openapi.json`);
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type') ?? '', /^application\/json/);
  assert.deepEqual(await res.json(), JSON.parse(JSON.stringify(doc)));
  assert.ok(operationFor('GET', '/openapi.json'));
});
