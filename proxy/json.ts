// JSON from outside (client frames, push bodies, queue messages, app answers, config):
// parsed with a bound on nesting depth, and never by throwing. V8 parses deep nesting
// happily, but `JSON.stringify` of it overflows the stack later, far from the input.

import { MAX_JSON_DEPTH } from './limits.js';
import type { Result } from './result.js';

export type JsonErrorCode = 'bad_json' | 'too_deep';

export class JsonError extends Error {
  readonly code: JsonErrorCode;
  constructor(code: JsonErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'JsonError';
    this.code = code;
  }
}

export type JsonResult = Result<unknown, JsonError>;

const OPEN_ARRAY = 0x5b;
const OPEN_OBJECT = 0x7b;
const CLOSE_ARRAY = 0x5d;
const CLOSE_OBJECT = 0x7d;
const QUOTE = 0x22;
const BACKSLASH = 0x5c;

/** The deepest nesting in a JSON text, counting only brackets outside strings. Stops past `limit`. */
export function jsonDepth(text: string, limit = Infinity): number {
  let depth = 0;
  let deepest = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === BACKSLASH) i++;
      else if (c === QUOTE) inString = false;
    } else if (c === QUOTE) {
      inString = true;
    } else if (c === OPEN_ARRAY || c === OPEN_OBJECT) {
      if (++depth > deepest) {
        deepest = depth;
        if (deepest > limit) return deepest;
      }
    } else if (c === CLOSE_ARRAY || c === CLOSE_OBJECT) {
      depth--;
    }
  }
  return deepest;
}

/** Parses JSON text: its value, or a JsonError saying why not. Never throws. */
export function parseJson(text: string, maxDepth = MAX_JSON_DEPTH): JsonResult {
  // A text can nest no deeper than it is long: short ones skip the scan.
  if (text.length > maxDepth && jsonDepth(text, maxDepth) > maxDepth) {
    return { ok: false, error: new JsonError('too_deep', `JSON nested deeper than ${maxDepth} levels`) };
  }
  try {
    return { ok: true, value: JSON.parse(text) as unknown };
  } catch (err) {
    return { ok: false, error: new JsonError('bad_json', `not valid JSON: ${(err as Error).message}`, { cause: err }) };
  }
}

/**
 * The path to the first place a parsed value nests deeper than `maxDepth` (for values parsed
 * by something else, such as YAML), or null. Iterative: the value itself may be too deep to recurse.
 */
export function tooDeep(value: unknown, maxDepth = MAX_JSON_DEPTH): string[] | null {
  const stack: Array<{ value: unknown; path: string[] }> = [{ value, path: [] }];
  while (stack.length > 0) {
    const { value: v, path } = stack.pop()!;
    if (v === null || typeof v !== 'object') continue;
    if (path.length >= maxDepth) return path;
    for (const [k, child] of Object.entries(v)) {
      if (child !== null && typeof child === 'object') stack.push({ value: child, path: [...path, k] });
    }
  }
  return null;
}
