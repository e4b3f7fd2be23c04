// Every field of every JSON answer the OpenAPI document describes, as (answer, field path)
// pairs: named schemas by their name, inline ones by their route and status. docs/usage.md
// lists the same pairs in its table of answer fields (test/answer-fields.test.ts).
import { doc, methods, type Operation } from './openapi.js';

type Schema = { $ref?: string; properties?: Record<string, Schema>; items?: Schema; allOf?: Schema[]; description?: string };

export interface Field {
  readonly answer: string;
  readonly field: string;
  readonly description: string;
  /** The routes that answer with it. */
  readonly routes: readonly string[];
  /** The named answer its value (or each item of it) is, when it is one. */
  readonly refersTo: string | null;
  /** Whether its value has fields of its own listed (an object or array of objects, not a map). */
  readonly parent: boolean;
}

const refName = (ref: string) => ref.replace('#/components/schemas/', '');

export function answerFields(): Field[] {
  const labels = new Map<Schema, { answer: string; routes: Set<string> }>();
  const queue: Schema[] = [];
  const visit = (schema: Schema, answer: string, route: string | null) => {
    let s = schema;
    let name = answer;
    if (s.$ref) { name = refName(s.$ref); s = doc.components.schemas[name] as Schema; }
    else if (s.allOf?.[0]?.$ref) { name = refName(s.allOf[0].$ref); s = doc.components.schemas[name] as Schema; }
    const seen = labels.get(s);
    if (seen) { if (route) seen.routes.add(route); return; }
    labels.set(s, { answer: name, routes: new Set(route ? [route] : []) });
    queue.push(s);
  };
  for (const [template, item] of Object.entries(doc.paths)) {
    for (const m of methods) {
      const op = item[m] as Operation | undefined;
      for (const [status, response] of Object.entries(op?.responses ?? {})) {
        const schema = response.content?.['application/json']?.schema as Schema | undefined;
        if (schema) visit(schema, `${m.toUpperCase()} ${template} ${status}`, `${m.toUpperCase()} ${template}`);
      }
    }
  }
  const fields: Field[] = [];
  while (queue.length > 0) {
    const schema = queue.shift()!;
    const { answer, routes } = labels.get(schema)!;
    const walk = (s: Schema, prefix: string) => {
      for (const [key, value] of Object.entries(s.properties ?? {})) {
        const ref = value.$ref ?? value.items?.$ref;
        const parent = !ref && (value.properties !== undefined || value.items?.properties !== undefined);
        fields.push({ answer, field: prefix + key, description: value.description ?? '', routes: [...routes], refersTo: ref ? refName(ref) : null, parent });
        if (value.$ref) visit(value, '', null);
        else if (value.items?.$ref) visit(value.items, '', null);
        else if (value.items) walk(value.items, `${prefix}${key}[].`);
        else walk(value, `${prefix}${key}.`);
      }
    };
    walk(schema, '');
  }
  return fields;
}
