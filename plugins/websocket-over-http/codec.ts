// Pushpin's WebSocket-over-HTTP event encoding: `TYPE <hex length>\r\n<content>\r\n`, or
// `TYPE\r\n` for an event without content. Facts and sources: docs/websocket-over-http-notes.md.

export const WOH_CONTENT_TYPE = 'application/websocket-events';

/** Pushpin's bounds (src/proxy/websocketoverhttp.cpp), for the caller to enforce. */
export const WOH_LIMITS = {
  /** On a refused OPEN, at most this much of the app's body is relayed to the client. */
  rejectBodyMax: 100_000,
  /** Keep-Alive-Interval values below this (seconds) are raised to it. */
  keepAliveMinSeconds: 20,
} as const;

export const WOH_EVENT_TYPES = ['OPEN', 'TEXT', 'BINARY', 'PING', 'PONG', 'CLOSE', 'DISCONNECT'] as const;
export type WohEventType = (typeof WOH_EVENT_TYPES)[number];

/** `content` undefined means the event was (or is to be) written without a length line. */
export interface WohEvent {
  readonly type: WohEventType;
  readonly content?: Buffer;
}

export class WohDecodeError extends Error {
  readonly code = 'woh_decode';
  readonly offset: number;

  constructor(message: string, offset: number) {
    super(`${message} at byte ${offset}`);
    this.name = 'WohDecodeError';
    this.offset = offset;
  }
}

const CRLF = Buffer.from('\r\n');
const KNOWN = new Set<string>(WOH_EVENT_TYPES);
// Pushpin parses the length into an int; eight hex digits already exceed any body we accept.
const HEX = /^[0-9a-fA-F]{1,8}$/;

export function encodeEvents(events: readonly WohEvent[]): Buffer {
  const parts: Buffer[] = [];
  for (const e of events) {
    if (e.content === undefined) {
      parts.push(Buffer.from(`${e.type}\r\n`, 'latin1'));
    } else {
      parts.push(Buffer.from(`${e.type} ${e.content.length.toString(16)}\r\n`, 'latin1'), e.content, CRLF);
    }
  }
  return Buffer.concat(parts);
}

/**
 * Decodes an app's response body. Pushpin silently ignores event types it does not know,
 * so they are skipped here too; `onUnknownType` lets the caller log them. Stricter than
 * Pushpin on framing: a short content or a missing CRLF after it is an error, not a guess.
 */
export function decodeEvents(body: Buffer, onUnknownType?: (type: string, offset: number) => void): WohEvent[] {
  const out: WohEvent[] = [];
  let pos = 0;
  while (pos < body.length) {
    const lineEnd = body.indexOf(CRLF, pos);
    if (lineEnd === -1) throw new WohDecodeError('event type line without CRLF', pos);
    const line = body.toString('latin1', pos, lineEnd);
    const lineStart = pos;
    pos = lineEnd + 2;

    const space = line.indexOf(' ');
    const type = space === -1 ? line : line.slice(0, space);
    let content: Buffer | undefined;
    if (space !== -1) {
      const hex = line.slice(space + 1);
      if (!HEX.test(hex)) throw new WohDecodeError(`bad hex length ${JSON.stringify(hex)}`, lineStart + space + 1);
      const length = parseInt(hex, 16);
      if (pos + length > body.length) {
        throw new WohDecodeError(`content truncated: ${length} bytes declared, ${body.length - pos} present`, pos);
      }
      content = body.subarray(pos, pos + length);
      pos += length;
      if (body[pos] !== 0x0d || body[pos + 1] !== 0x0a) throw new WohDecodeError('missing CRLF after content', pos);
      pos += 2;
    }

    if (KNOWN.has(type)) {
      out.push(content === undefined ? { type: type as WohEventType } : { type: type as WohEventType, content });
    } else {
      onUnknownType?.(type, lineStart);
    }
  }
  return out;
}

/** CLOSE content: the code as two big-endian bytes, then the UTF-8 reason. */
export function closePayload(code: number, reason = ''): Buffer {
  if (!Number.isInteger(code) || code < 0 || code > 0xffff) throw new RangeError(`close code ${code} is not a 16-bit integer`);
  const text = Buffer.from(reason, 'utf8');
  const out = Buffer.allocUnsafe(2 + text.length);
  out.writeUInt16BE(code, 0);
  text.copy(out, 2);
  return out;
}

/** The CLOSE event Pushpin sends the app: without content when the client gave no code. */
export function closeEvent(code?: number, reason?: string): WohEvent {
  if (code === undefined || code === 1005) return { type: 'CLOSE' };
  return { type: 'CLOSE', content: closePayload(code, reason) };
}

/** Codes a server may put in a close frame (RFC 6455 §7.4; the same test as ws). */
export function isSendableCloseCode(code: number): boolean {
  return (code >= 1000 && code <= 1014 && code !== 1004 && code !== 1005 && code !== 1006) || (code >= 3000 && code <= 4999);
}

// A close frame's payload is at most 125 bytes, two of them the code.
const REASON_MAX_BYTES = 123;

export interface ParsedClose {
  /** Always sendable: a missing code, 0 (js-grip's default) or an unsendable code become 1000. */
  readonly code: number;
  readonly reason: string;
  /** The code the app sent, or null when CLOSE carried fewer than two bytes. */
  readonly rawCode: number | null;
}

/** Reads the content of a CLOSE event from the app. */
export function parseClose(content: Buffer | undefined): ParsedClose {
  if (content === undefined || content.length < 2) return { code: 1000, reason: '', rawCode: null };
  const rawCode = content.readUInt16BE(0);
  return {
    code: isSendableCloseCode(rawCode) ? rawCode : 1000,
    reason: truncateUtf8(content.subarray(2), REASON_MAX_BYTES),
    rawCode,
  };
}

function truncateUtf8(bytes: Buffer, max: number): string {
  if (bytes.length <= max) return bytes.toString('utf8');
  let end = max;
  // Step back over continuation bytes so a character is never cut in half.
  while (end > 0 && (bytes[end] & 0xc0) === 0x80) end--;
  return bytes.toString('utf8', 0, end);
}

/**
 * Whether an app response carries events: Pushpin needs status 200 and this content type.
 * Anything else refuses an OPEN (the client gets the app's status) or fails an open
 * connection. Pushpin compares the header exactly; parameters and case are tolerated here.
 */
export function isEventsResponse(status: number, contentType: string | undefined): boolean {
  if (status !== 200 || contentType === undefined) return false;
  return contentType.split(';', 1)[0]!.trim().toLowerCase() === WOH_CONTENT_TYPE;
}
