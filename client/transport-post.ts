// What the client sends over an HTTP transport (SSE, long-polling; docs/usage.md, "HTTP fallback
// (SSE)", "Sending"): POSTs on the session's path with its token, one request at a time (so the
// session takes the frames in send order), batching whatever queued meanwhile. The answers in the
// replies (ack, nack, pong, error) come back as frames, as a WebSocket would carry them.

/** The header that names the session on a POST: the welcome's token. */
export const TOKEN_HEADER = 'x-switchboard-token';

/**
 * The close reason of an HTTP transport whose first request never got an answer (the network is
 * down, the host unreachable): not a sign that the transport is blocked, so the client retries it
 * with its backoff rather than moving on to the next one.
 */
export const UNREACHABLE = 'the server could not be reached';
/** At most this many frames in one POST (the server's MAX_SEND_FRAMES). */
export const MAX_POST_FRAMES = 100;
/** Below the 64 KiB browsers allow a keepalive request's body. */
const KEEPALIVE_BODY = 60_000;

export type Fetch = (url: string, init: {
  method: string;
  headers: { [name: string]: string };
  body?: string;
  signal?: AbortSignal;
  credentials?: 'include';
  cache?: 'no-store';
  keepalive?: boolean;
}) => Promise<Response>;

/** What the poster needs of the transport that holds it. */
export interface PostHost {
  /** `open`: sending; `closing`: sending what queued before the close frame; else nothing more goes. */
  state(): 'open' | 'closing' | 'gone';
  token(): string | null;
  /** An answer as a reliable-mode frame's text. */
  answer(frame: string): void;
  /** The queue ran empty while closing: the close frame was answered (or could not be sent). */
  closed(): void;
  /**
   * What was sent was not taken while the transport is open (not answered 200, or nacked
   * `closed`): the transport is dropped, so the client resumes and sends it again after the welcome.
   */
  stale(): void;
}

export class FramePoster {
  readonly #url: string;
  readonly #fetch: Fetch;
  readonly #headers: { readonly [name: string]: string };
  readonly #host: PostHost;
  #queue: string[] = [];
  #posting = false;

  constructor(url: string, fetchImpl: Fetch, headers: { readonly [name: string]: string }, host: PostHost) {
    this.#url = url;
    this.#fetch = fetchImpl;
    this.#headers = headers;
    this.#host = host;
  }

  send(text: string): void {
    this.#queue.push(text);
    if (!this.#posting) void this.#post();
  }

  /** Forgets what has not gone yet (the transport is gone: it goes again after the next welcome). */
  clear(): void {
    this.#queue = [];
  }

  /** POSTs what queued, one request at a time, until the queue is empty or the transport is gone. */
  async #post(): Promise<void> {
    const host = this.#host;
    this.#posting = true;
    let token: string | null;
    while (this.#queue.length > 0 && host.state() !== 'gone' && (token = host.token()) !== null) {
      const frames = this.#queue.splice(0, MAX_POST_FRAMES);
      const body = `[${frames.join(',')}]`;
      let answers: unknown;
      try {
        const res = await this.#fetch(this.#url, {
          method: 'POST',
          headers: { ...this.#headers, 'content-type': 'application/json', [TOKEN_HEADER]: token },
          body,
          credentials: 'include',
          cache: 'no-store',
          // The POST that closes outlives the page being closed, when a page calls close();
          // browsers take keepalive bodies up to 64 KiB only.
          ...(host.state() === 'closing' && this.#queue.length === 0 && body.length < KEEPALIVE_BODY ? { keepalive: true } : {}),
        });
        // 403, 404, 409: the transport is ending or gone; its close drives the reconnect, and the
        // messages, still un-acked, are sent again after the next welcome.
        answers = res.status === 200 ? await res.json() : null;
      } catch {
        answers = null;
      }
      if (!Array.isArray(answers)) {
        // Not taken while the stream or poll still looks open (a server that could not reach the
        // session's holder): resuming is what gets them sent again.
        if (host.state() === 'open') host.stale();
        continue;
      }
      let dropped = false;
      for (const answer of answers) {
        // `closed`: the link dropped before the app decided; the message stays pending and goes
        // again, with its id, after the next welcome, as on a WebSocket.
        if (typeof answer !== 'object' || answer === null) continue;
        const a = answer as { type?: unknown; error?: unknown };
        if (a.type === 'nack' && a.error === 'closed') dropped = true;
        if (a.type === 'accepted' || (a.type === 'nack' && a.error === 'closed')) continue;
        if (host.state() !== 'open') break;
        host.answer(JSON.stringify(answer));
      }
      if (dropped && host.state() === 'open') host.stale();
    }
    this.#posting = false;
    if (host.state() === 'closing' && this.#queue.length === 0) host.closed();
  }
}
