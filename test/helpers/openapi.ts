// The control port's OpenAPI document as a checker: which documented operation a request is,
// and whether an answer (status, content type, body) is one the document describes. JSON
// bodies are validated with ajv in its JSON Schema 2020-12 mode, strict, against the
// document's own schemas (closed: a field the document does not name fails).
import assert from 'node:assert/strict';
import { Ajv2020, type ValidateFunction } from 'ajv/dist/2020.js';
import { openApiDocument } from '../../proxy/openapi.js';

export const doc = openApiDocument() as unknown as OpenApi;
const base = 'https://switchboard.invalid/openapi.json';

export interface Operation {
  readonly security?: Array<Record<string, string[]>>;
  readonly parameters?: Parameter[];
  readonly requestBody?: { content: Record<string, { schema?: object }> };
  readonly responses: Record<string, { content?: Record<string, { schema?: object }> }>;
}
export interface Parameter { readonly name: string; readonly in: string; readonly schema: object }
type PathItem = Record<string, Operation> & { parameters?: Parameter[] };
interface OpenApi { paths: Record<string, PathItem>; components: { schemas: Record<string, object> } }

export const methods = ['get', 'put', 'post', 'delete', 'patch', 'head', 'options'] as const;

// strictRequired off: `oneOf: [{ required: ['data'] }, { required: ['binary'] }]` names properties declared beside it.
const ajv = new Ajv2020({ strict: true, strictRequired: false, allErrors: true });
// The document's top-level keys, so that strict mode takes it as a schema resource to point into.
for (const keyword of ['openapi', 'info', 'jsonSchemaDialect', 'paths', 'components']) ajv.addKeyword({ keyword });
ajv.addFormat('date-time', { type: 'string', validate: (s: string) => /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$/.test(s) && !Number.isNaN(Date.parse(s)) });
ajv.addSchema({ $id: base, ...JSON.parse(JSON.stringify(doc)) });

const pointer = (...parts: string[]) => parts.map((p) => p.replace(/~/g, '~0').replace(/\//g, '~1')).join('/');
const compiled = new Map<string, ValidateFunction>();

/** A validator for the schema at this JSON pointer of the document. */
export function validatorAt(...parts: string[]): ValidateFunction {
  const at = `#/${pointer(...parts)}`;
  let v = compiled.get(at);
  if (!v) {
    v = ajv.compile({ $ref: `${base}${at}` });
    compiled.set(at, v);
  }
  return v;
}

export function schemaValid(v: ValidateFunction, value: unknown): boolean {
  return v(value) as boolean;
}

/** A documented path's template as a regular expression (`{id}` is one segment). */
export function templatePattern(template: string): RegExp {
  return new RegExp(`^${template.split(/\{[^}]+\}/).map((s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('[^/]+')}$`);
}

/** The documented template and operation for a request, or null. */
export function operationFor(method: string, path: string): { template: string; operation: Operation } | null {
  for (const [template, item] of Object.entries(doc.paths)) {
    const operation = item[method.toLowerCase()] as Operation | undefined;
    if (operation && templatePattern(template).test(path)) return { template, operation };
  }
  return null;
}

/** Media types match as ranges do: `text/*` takes `text/plain; charset=utf-8`. */
function mediaMatches(range: string, contentType: string): boolean {
  const type = contentType.split(';')[0].trim().toLowerCase();
  if (range === '*/*') return true;
  if (range.endsWith('/*')) return type.startsWith(range.slice(0, -1));
  return type === range;
}

export interface Answer {
  readonly status: number;
  readonly contentType: string | null;
  readonly text: string;
}

/**
 * Asserts the answer is one the document describes for this request. Answers to a path no
 * route takes (404 `not_found`) or a method it does not take (405) are the Error schema.
 */
export function assertDocumented(method: string, path: string, answer: Answer): void {
  const what = `${method} ${path} → ${answer.status}`;
  const found = operationFor(method, path.split('?')[0]);
  let schemaPointer: string[] | null = null;
  if (!found) {
    assert.ok(answer.status === 404 || answer.status === 405, `${what}: undocumented, so it must be 404 or 405`);
    // A route that takes every method answers the others itself (GRIP publish): as its POST documents.
    const post = operationFor('POST', path.split('?')[0]);
    if (answer.status === 405 && post?.operation.responses['405']) return assertDocumented('POST', path, answer);
    schemaPointer = ['components', 'schemas', 'Error'];
    const body = JSON.parse(answer.text) as { error: string };
    assert.equal(body.error, answer.status === 404 ? 'not_found' : 'method_not_allowed', what);
  } else {
    const response = found.operation.responses[String(answer.status)];
    assert.ok(response, `${what}: the document has no ${answer.status} for ${method} ${found.template}`);
    if (!response.content) {
      assert.equal(answer.text, '', `${what}: documented without a body`);
      return;
    }
    assert.ok(answer.contentType, `${what}: a body without a content type`);
    const media = Object.keys(response.content).find((range) => mediaMatches(range, answer.contentType!));
    assert.ok(media, `${what}: content type ${answer.contentType} is not documented (${Object.keys(response.content).join(', ')})`);
    if (!mediaMatches('application/json', answer.contentType!)) return;
    const pathItem = doc.paths[found.template];
    const methodKey = Object.keys(pathItem).find((k) => pathItem[k] === found.operation)!;
    schemaPointer = ['paths', found.template, methodKey, 'responses', String(answer.status), 'content', media, 'schema'];
  }
  const validate = validatorAt(...schemaPointer);
  const body: unknown = JSON.parse(answer.text);
  assert.ok(validate(body), `${what}: ${answer.text.slice(0, 300)} does not match the document: ${JSON.stringify(validate.errors)}`);
}

/** A request to the control port whose answer is checked against the document, then returned. */
export async function documented(base: string, method: string, path: string, init: { body?: string | Buffer; headers?: Record<string, string> } = {}) {
  const res = await fetch(base + path, { method, headers: init.headers, body: init.body as BodyInit | undefined });
  const text = await res.text();
  const answer = { status: res.status, contentType: res.headers.get('content-type'), text };
  assertDocumented(method, path, answer);
  return { ...answer, headers: res.headers, json: answer.contentType?.includes('json') ? JSON.parse(text) : undefined };
}
