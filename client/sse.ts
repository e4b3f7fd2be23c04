// Server-Sent Events read as the HTML living standard's event-stream parser does: bytes in any
// chunks (a UTF-8 character or a CRLF may be split between two), lines ended by CRLF, LF or CR,
// `field: value` lines, comments, and a blank line that dispatches. Pure: no stream, no socket.

export interface SseEvent {
  /** The `event:` field, `message` when absent. */
  readonly event: string;
  /** The `data:` lines joined with LF. */
  readonly data: string;
  /** The last `id:` seen on the stream (it persists across events, as in an EventSource). */
  readonly id: string;
}

export class SseParser {
  readonly #onEvent: (event: SseEvent) => void;
  // Fatal off: a malformed byte becomes U+FFFD, as the standard's decoding does. The BOM at the
  // start of the stream is dropped by the decoder itself.
  readonly #decoder = new TextDecoder('utf-8');
  #buffer = ''; // text of an unfinished line
  #afterCr = false; // the last chunk ended with CR: a leading LF in the next one belongs to it
  #event = '';
  #data = '';
  #hasData = false;
  #id = '';

  constructor(onEvent: (event: SseEvent) => void) {
    this.#onEvent = onEvent;
  }

  /** Feeds bytes (or already decoded text); complete events are dispatched before it returns. */
  push(chunk: Uint8Array | string): void {
    let text = typeof chunk === 'string' ? chunk : this.#decoder.decode(chunk, { stream: true });
    if (this.#afterCr) {
      this.#afterCr = false;
      if (text.startsWith('\n')) text = text.slice(1);
    }
    let start = 0;
    for (let i = 0; i < text.length; i++) {
      const c = text.charCodeAt(i);
      if (c !== 10 && c !== 13) continue;
      this.#line(this.#buffer + text.slice(start, i));
      this.#buffer = '';
      if (c === 13) {
        if (i + 1 === text.length) this.#afterCr = true;
        else if (text.charCodeAt(i + 1) === 10) i++;
      }
      start = i + 1;
    }
    this.#buffer += text.slice(start);
  }

  #line(line: string): void {
    if (line === '') return this.#dispatch();
    if (line.charCodeAt(0) === 58) return; // ':' a comment
    const colon = line.indexOf(':');
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? '' : line.slice(colon + 1);
    if (value.charCodeAt(0) === 32) value = value.slice(1);
    switch (field) {
      case 'event':
        this.#event = value;
        return;
      case 'data':
        this.#data = this.#hasData ? `${this.#data}\n${value}` : value;
        this.#hasData = true;
        return;
      case 'id':
        if (!value.includes('\0')) this.#id = value;
        return;
      default: // `retry:` and unknown fields: the client's reconnects follow its own backoff
        return;
    }
  }

  #dispatch(): void {
    const event = this.#event === '' ? 'message' : this.#event;
    const hasData = this.#hasData;
    const data = this.#data;
    this.#event = '';
    this.#data = '';
    this.#hasData = false;
    if (hasData) this.#onEvent({ event, data, id: this.#id });
  }
}
