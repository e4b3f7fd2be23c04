// A raw long-polling client for the tests (docs/usage.md, "HTTP fallback (long-polling)"): each
// request on a socket of its own, so what the sidecar counts per socket is what the test made.
import { request, type IncomingHttpHeaders } from 'node:http';

export interface Answer {
  readonly status: number;
  readonly headers: IncomingHttpHeaders;
  readonly text: string;
  /** The body as JSON; undefined when it is not. */
  readonly json: any;
}

export interface Held {
  readonly answer: Promise<Answer>;
  /** Gives the request up (its socket is destroyed; the answer is then status 0). */
  abort(): void;
}

/** A request whose answer may be held: its promise, and a way to give it up. */
export function send(url: string, method: string, headers: Record<string, string> = {}, body?: string): Held {
  let abort = () => {};
  let aborted = false;
  const answer = new Promise<Answer>((resolve, reject) => {
    const given = (err: Error) => (aborted ? resolve({ status: 0, headers: {}, text: '', json: undefined }) : reject(err));
    const req = request(url, { method, headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let json: unknown;
        try { json = JSON.parse(text); } catch { json = undefined; }
        resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json });
      });
      res.on('error', given);
    });
    req.on('error', given);
    abort = () => {
      aborted = true;
      req.destroy();
    };
    req.end(body);
  });
  return { answer, abort: () => abort() };
}

/** A session's client side: the token of its last welcome and the highest seq it has. */
export class Poller {
  readonly base: string;
  token = '';
  lastSeq = 0;
  /** Every frame answered so far, in order. */
  readonly frames: any[] = [];
  readonly #held = new Set<Held>();

  constructor(base: string) {
    this.base = base;
  }

  /** The opening GET; its answer's frames are taken in. */
  async open(query = '', headers: Record<string, string> = {}): Promise<Answer> {
    const a = await this.#take(send(`${this.base}?transport=long-poll${query}`, 'GET', { accept: 'application/json', ...headers }));
    return a;
  }

  /** One poll from `lastSeq` (the highest seq seen, unless given). */
  poll(lastSeq = this.lastSeq, headers: Record<string, string> = {}): Held {
    const held = send(`${this.base}?transport=long-poll&lastSeq=${lastSeq}`, 'GET', { accept: 'application/json', 'x-switchboard-token': this.token, ...headers });
    this.#held.add(held);
    const answer = this.#take(held).finally(() => this.#held.delete(held));
    return { answer, abort: held.abort };
  }

  /** Polls until `done` holds for the frames seen (each poll held by the server until there is something). */
  async until(done: (frames: any[]) => boolean, what: string, max = 200): Promise<void> {
    for (let i = 0; i < max && !done(this.frames); i++) {
      const a = await this.poll().answer;
      if (a.status !== 200) throw new Error(`poll answered ${a.status} ${a.text} while waiting for ${what}`);
    }
    if (!done(this.frames)) throw new Error(`gave up polling for ${what}`);
  }

  /** A POST of frames to the session. */
  post(body: unknown, headers: Record<string, string> = {}): Promise<Answer> {
    return send(this.base, 'POST', { 'content-type': 'application/json', 'x-switchboard-token': this.token, ...headers }, JSON.stringify(body)).answer;
  }

  messages(): any[] {
    return this.frames.filter((f) => f.type === 'message');
  }

  abortAll(): void {
    for (const h of this.#held) h.abort();
  }

  async #take(held: Held): Promise<Answer> {
    const a = await held.answer;
    if (a.status === 200 && Array.isArray(a.json)) {
      for (const f of a.json) {
        this.frames.push(f);
        if (f.type === 'welcome') this.token = f.token;
        if (f.type === 'message' && f.seq > this.lastSeq) this.lastSeq = f.seq;
        if (f.type === 'gap' && f.to > this.lastSeq) this.lastSeq = f.to;
      }
    }
    return a;
  }
}
