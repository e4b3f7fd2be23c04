// The client's Server-Sent Events parser (client/sse.ts), fed bytes: any event sequence encoded as
// the standard allows (CRLF, LF or CR line ends, with or without the space after the colon,
// comments, retry and unknown fields, a BOM first), split at any byte boundaries, parses back; and
// the events the client turns into reliable-mode frames.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { SseParser, type SseEvent } from '../client/sse.js';
import { eventFrame } from '../client/transport-sse.js';
import { httpUrl } from '../client/transport-http.js';

function parseAll(chunks: Array<Uint8Array | string>): SseEvent[] {
  const out: SseEvent[] = [];
  const p = new SseParser((e) => out.push(e));
  for (const c of chunks) p.push(c);
  return out;
}

interface Spec { event: string | null; data: string[]; id: string | null; comment: string | null; retry: boolean }

// Field values hold no line break; a data line may hold anything else, a leading space included.
const lineText = fc.oneof(fc.string({ unit: fc.constantFrom('a', ' ', ':', 'é', '😀', '\0', '\t', '\uFEFF') }), fc.string({ unit: 'binary' }))
  .map((s) => s.replace(/[\r\n]/g, ''));
const name = fc.stringMatching(/^[a-z][a-z0-9_-]{0,8}$/);
const spec: fc.Arbitrary<Spec> = fc.record({
  event: fc.option(name),
  data: fc.array(lineText, { minLength: 1, maxLength: 4 }),
  id: fc.option(fc.stringMatching(/^[0-9a-z]{1,6}$/)),
  comment: fc.option(lineText),
  retry: fc.boolean(),
});

function encode(events: Spec[], eol: string[], spaced: boolean[], bom: boolean): string {
  let i = 0;
  let last = '';
  // A CR then an LF would be one CRLF: after a CR, an LF end is written as CRLF.
  const end = () => {
    const e = eol[i++ % eol.length];
    last = last === '\r' && e === '\n' ? '\r\n' : e;
    return last;
  };
  const field = (f: string, v: string) => `${f}:${spaced[i % spaced.length] || v.startsWith(' ') ? ' ' : ''}${v}${end()}`;
  let out = bom ? '\uFEFF' : '';
  for (const e of events) {
    if (e.comment !== null) out += `:${e.comment}${end()}`;
    if (e.id !== null) out += field('id', e.id);
    if (e.event !== null) out += field('event', e.event);
    if (e.retry) out += `retry: 1000${end()}unknownfield: x${end()}`;
    for (const d of e.data) out += field('data', d);
    out += end();
  }
  return out;
}

function expected(events: Spec[]): SseEvent[] {
  let id = '';
  return events.map((e) => {
    if (e.id !== null) id = e.id;
    return { event: e.event ?? 'message', data: e.data.join('\n'), id };
  });
}

/** `bytes` cut at the given offsets (sorted, deduplicated, within bounds). */
function split(bytes: Uint8Array, cuts: number[]): Uint8Array[] {
  const at = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
  const out: Uint8Array[] = [];
  let prev = 0;
  for (const c of [...at, bytes.length]) {
    out.push(bytes.subarray(prev, c));
    prev = c;
  }
  return out;
}

test('any event sequence, encoded per the standard and split at any byte boundaries, parses back', () => {
  fc.assert(fc.property(
    fc.array(spec, { maxLength: 8 }),
    fc.array(fc.constantFrom('\n', '\r', '\r\n'), { minLength: 1, maxLength: 4 }),
    fc.array(fc.boolean(), { minLength: 1, maxLength: 3 }),
    fc.boolean(),
    fc.array(fc.nat(), { maxLength: 12 }),
    (events, eol, spaced, bom, cuts) => {
      const bytes = new TextEncoder().encode(encode(events, eol, spaced, bom));
      assert.deepEqual(parseAll(split(bytes, cuts)), expected(events));
      // One byte at a time: every CR, CRLF and multi-byte character split.
      assert.deepEqual(parseAll([...bytes].map((b) => Uint8Array.of(b))), expected(events));
    },
  ), { numRuns: 300 });
});

test('the standard\'s corner cases', () => {
  const table: Array<[input: string[], events: SseEvent[]]> = [
    [['data\n\n'], [{ event: 'message', data: '', id: '' }]], // a field without a colon has an empty value
    [['data:  two spaces\n\n'], [{ event: 'message', data: ' two spaces', id: '' }]], // only one space is dropped
    [['event: x\n\n', 'data: a\n\n'], [{ event: 'message', data: 'a', id: '' }]], // no data: nothing dispatched, the name is reset
    [['id: 7\ndata: a\n\n', 'data: b\n\n'], [{ event: 'message', data: 'a', id: '7' }, { event: 'message', data: 'b', id: '7' }]],
    [['id: 7\n\n', 'id: bad\0id\ndata: c\n\n'], [{ event: 'message', data: 'c', id: '7' }]], // an id with NUL is ignored
    [['data: open at the end\n'], []], // no blank line: not dispatched
    [['data: a\r', '\ndata: b\r\n\r\n'], [{ event: 'message', data: 'a\nb', id: '' }]], // a CRLF split between chunks is one line end
    [[': just a comment\n\n'], []],
  ];
  for (const [input, events] of table) assert.deepEqual(parseAll(input), events, JSON.stringify(input));
});

test('events as reliable-mode frames, as a WebSocket would carry them', () => {
  const table: Array<[SseEvent, unknown]> = [
    [{ event: 'message', data: '{"a":1}', id: '4' }, { type: 'message', seq: 4, data: { a: 1 } }],
    [{ event: 'message', data: 'plain text', id: '5' }, { type: 'message', seq: 5, data: 'plain text' }],
    [{ event: 'binary', data: 'AAE=', id: '6' }, { type: 'message', seq: 6, binary: 'AAE=' }],
    [{ event: 'welcome', data: '{"session":"s","token":"t","resumed":false,"heartbeatMs":1,"graceMs":2}', id: '0' },
      { session: 's', token: 't', resumed: false, heartbeatMs: 1, graceMs: 2, type: 'welcome' }],
    [{ event: 'gap', data: '{"from":2,"to":3}', id: '1' }, { from: 2, to: 3, type: 'gap' }],
    [{ event: 'reconnect', data: '{"afterMs":10}', id: '' }, { afterMs: 10, type: 'reconnect' }],
    [{ event: 'presence', data: '{"event":"member_added","channel":"c","user":"u","id":"i","at":"t"}', id: '7' },
      { event: 'member_added', channel: 'c', user: 'u', id: 'i', at: 't', type: 'presence', seq: 7 }],
  ];
  for (const [e, frame] of table) assert.deepEqual(JSON.parse(eventFrame(e)!), frame, JSON.stringify(e));
  // Bad input: a message without a seq, a named event whose data is not a JSON object.
  for (const e of [
    { event: 'message', data: 'x', id: '' }, { event: 'message', data: 'x', id: '0' }, { event: 'message', data: 'x', id: '1e3' },
    { event: 'gap', data: 'not json', id: '' }, { event: 'gap', data: '[1,2]', id: '' }, { event: 'welcome', data: 'null', id: '' },
    // A presence event without a seq, or whose data is not an object.
    { event: 'presence', data: '{"event":"member_added"}', id: '' }, { event: 'presence', data: '{"event":"member_added"}', id: '0' }, { event: 'presence', data: '"x"', id: '3' },
  ]) assert.equal(eventFrame(e), undefined, JSON.stringify(e));
});

test('the stream\'s URL is the WebSocket URL over HTTP', () => {
  assert.equal(httpUrl('ws://h:1/ws?a=1'), 'http://h:1/ws?a=1');
  assert.equal(httpUrl('wss://h/ws'), 'https://h/ws');
  assert.equal(httpUrl('https://h/ws'), 'https://h/ws');
});
