// Reliable mode spelled as Server-Sent Events (docs/usage.md, "HTTP fallback (SSE)"), socket-free. A message is
// `id: <seq>` and its payload's text as `data:` lines (binary as base64 under `event: binary`, a
// presence event as its JSON under `event: presence`);
// every other server frame is an event named by its type, whose data is the frame without it.
// The HTML living standard's parser splits lines on CRLF, LF and CR and joins `data:` lines with
// LF, so a payload's line breaks arrive as LF.
import type { ServerFrame } from './frame.js';
import type { Wire } from './link.js';
import type { Push } from './push.js';

const LINE_BREAK = /\r\n|\r|\n/;

/** `data:` lines for a text, each ended by LF; one line for a text without line breaks. */
export function dataLines(text: string): string {
  if (!text.includes('\n') && !text.includes('\r')) return `data: ${text}\n`;
  let out = '';
  for (const line of text.split(LINE_BREAK)) out += `data: ${line}\n`;
  return out;
}

/** One event: optional `id`, optional name, its data, and the blank line that dispatches it. */
export function sseEvent(event: string | null, data: string, id?: number): string {
  return `${id === undefined ? '' : `id: ${id}\n`}${event === null ? '' : `event: ${event}\n`}${dataLines(data)}\n`;
}

/** A heartbeat: a comment line, which an EventSource ignores but proxies see as traffic. */
export const SSE_HEARTBEAT = ': heartbeat\n\n';

/** What follows a message's `id:` line, shared by every recipient of a push. */
const tails = new WeakMap<Push, string>();

function messageTail(push: Push): string {
  let tail = tails.get(push);
  if (tail === undefined) {
    const p = push.payload;
    tail = push.type === 'presence' ? `event: presence\n${dataLines((p as { json: string }).json)}\n`
      : p.kind === 'binary' ? `event: binary\n${dataLines(p.data.toString('base64'))}\n`
      : `${dataLines(p.kind === 'text' ? p.text : p.json)}\n`;
    tails.set(push, tail);
  }
  return tail;
}

/** A server frame as an event. A new session's welcome carries `id: 0`: the browser then always has a Last-Event-ID to come back with. */
export function sseFrame(f: ServerFrame): string {
  switch (f.type) {
    case 'gap': return `event: gap\ndata: {"from":${f.from},"to":${f.to}}\n\n`;
    case 'ack': return `event: ack\ndata: {"id":${JSON.stringify(f.id)}}\n\n`;
    case 'welcome': {
      const { type, ...rest } = f;
      return sseEvent(type, JSON.stringify(rest), f.resumed ? undefined : 0);
    }
    case 'reconnect':
      // `retry:` sets how long a plain EventSource waits before it comes back.
      return `retry: ${f.afterMs}\nevent: reconnect\ndata: {"afterMs":${f.afterMs}}\n\n`;
    default: {
      const { type, ...rest } = f;
      return sseEvent(type, JSON.stringify(rest));
    }
  }
}

/** The last event of a stream the session closed: its close code and reason. */
export function sseClose(code: number, reason: string): string {
  return sseEvent('close', JSON.stringify({ code, reason }));
}

export const sseWire: Wire = {
  message: (seq, push) => `id: ${seq}\n${messageTail(push)}`,
  frame: sseFrame,
};
