// A raw Server-Sent Events client for the tests: node:http reading the stream, and a parser
// that follows the HTML living standard's event-stream interpretation (lines split on CRLF, LF
// or CR; `data` joined with LF; one leading space after the colon dropped; comments ignored
// for events but recorded, so heartbeats can be seen).
import { request, type IncomingMessage, type ClientRequest } from 'node:http';

export interface SseEvent {
  readonly event: string;
  readonly data: string;
  /** The last event id after this event (as an EventSource's lastEventId). */
  readonly lastEventId: string;
  /** Whether this event carried an `id:` field itself. */
  readonly hasId: boolean;
  readonly retry?: number;
}

/** Incremental parser: feed text chunks, read events and comments as they complete. */
export class SseParser {
  readonly events: SseEvent[] = [];
  readonly comments: string[] = [];
  #buffer = '';
  #data: string[] = [];
  #event = '';
  #lastEventId = '';
  #hasId = false;
  #retry: number | undefined;
  #pendingCr = false;
  onEvent: ((e: SseEvent) => void) | null = null;

  feed(chunk: string): void {
    let text = chunk;
    // A CR at the end of the last chunk and an LF at the start of this one are one line break.
    if (this.#pendingCr && text.startsWith('\n')) text = text.slice(1);
    this.#pendingCr = false;
    this.#buffer += text;
    for (;;) {
      const m = /\r\n|\r|\n/.exec(this.#buffer);
      if (!m) break;
      if (m[0] === '\r' && m.index === this.#buffer.length - 1) {
        // Could be the first half of CRLF: take the line, and skip an LF that comes next.
        this.#pendingCr = true;
      }
      const line = this.#buffer.slice(0, m.index);
      this.#buffer = this.#buffer.slice(m.index + m[0].length);
      this.#line(line);
    }
  }

  #line(line: string): void {
    if (line === '') return this.#dispatch();
    if (line.startsWith(':')) return void this.comments.push(line.slice(1));
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    switch (field) {
      case 'event': this.#event = value; break;
      case 'data': this.#data.push(value); break;
      case 'id': if (!value.includes('\0')) { this.#lastEventId = value; this.#hasId = true; } break;
      case 'retry': if (/^\d+$/.test(value)) this.#retry = Number(value); break;
      default: break;
    }
  }

  #dispatch(): void {
    const hasId = this.#hasId;
    const retry = this.#retry;
    this.#hasId = false;
    this.#retry = undefined;
    if (this.#data.length === 0) {
      this.#event = '';
      return;
    }
    const e: SseEvent = { event: this.#event || 'message', data: this.#data.join('\n'), lastEventId: this.#lastEventId, hasId, ...(retry === undefined ? {} : { retry }) };
    this.#data = [];
    this.#event = '';
    this.events.push(e);
    this.onEvent?.(e);
  }
}

/** Every event of a whole stream text. */
export function parseStream(text: string): SseEvent[] {
  const p = new SseParser();
  p.feed(text);
  return p.events;
}

export interface Stream {
  readonly status: number;
  readonly headers: IncomingMessage['headers'];
  readonly res: IncomingMessage;
  readonly req: ClientRequest;
  readonly parser: SseParser;
  readonly events: SseEvent[];
  /** The body, for an answer that is not a stream. */
  body(): Promise<string>;
  /** Resolves with the first event (seen or to come) that matches; rejects after `ms` naming `what`. */
  next(match: (e: SseEvent) => boolean, what: string, ms?: number): Promise<SseEvent>;
  /** Resolves when the server ended the stream. */
  readonly ended: Promise<void>;
  /** Cuts the stream from the client side (as a network loss would). */
  drop(): void;
  /** The cookies the answer set, as `name=value` for a Cookie header (cleared ones left out). */
  cookies(): string[];
}

export function openStream(url: string, headers: Record<string, string> = { accept: 'text/event-stream' }, method = 'GET'): Promise<Stream> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method, headers, agent: false });
    req.on('error', reject);
    req.on('response', (res) => {
      const parser = new SseParser();
      const waiters: Array<{ match: (e: SseEvent) => boolean; resolve: (e: SseEvent) => void }> = [];
      let raw = '';
      const isStream = (res.headers['content-type'] ?? '').startsWith('text/event-stream');
      res.setEncoding('utf8');
      const ended = new Promise<void>((done) => { res.on('end', () => done()); res.on('close', () => done()); res.on('error', () => done()); });
      if (isStream) {
        res.on('data', (chunk: string) => parser.feed(chunk));
        parser.onEvent = (e) => {
          for (const w of [...waiters]) if (w.match(e)) { waiters.splice(waiters.indexOf(w), 1); w.resolve(e); }
        };
      } else {
        res.on('data', (chunk: string) => { raw += chunk; });
      }
      resolve({
        status: res.statusCode ?? 0,
        headers: res.headers,
        res,
        req,
        parser,
        events: parser.events,
        body: () => ended.then(() => raw),
        next(match, what, ms = 10_000) {
          const seen = parser.events.find(match);
          if (seen) return Promise.resolve(seen);
          return new Promise((ok, fail) => {
            const timer = setTimeout(() => fail(new Error(`gave up waiting for ${what}; events: ${JSON.stringify(parser.events.map((e) => [e.event, e.lastEventId, e.data.slice(0, 60)]))}`)), ms);
            waiters.push({ match, resolve: (e) => { clearTimeout(timer); ok(e); } });
          });
        },
        ended,
        drop: () => { req.destroy(); res.destroy(); },
        cookies: () => [res.headers['set-cookie'] ?? []].flat().map((c) => c.split(';')[0]).filter((c) => !c.endsWith('=')),
      });
    });
    req.end();
  });
}

/** The JSON of an event's data. */
export const dataOf = (e: SseEvent): any => JSON.parse(e.data);
