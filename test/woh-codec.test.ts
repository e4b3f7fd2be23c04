import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  closeEvent,
  closePayload,
  decodeEvents,
  encodeEvents,
  isEventsResponse,
  isSendableCloseCode,
  parseClose,
  WohDecodeError,
  type WohEvent,
} from '../plugins/websocket-over-http/codec.js';

const b = (s: string): Buffer => Buffer.from(s, 'latin1');
const binary = Buffer.from([0x00, 0xff, 0x0d, 0x0a, 0x80, 0x7f]);

const encodeCases: { name: string; events: WohEvent[]; wire: Buffer }[] = [
  { name: 'OPEN has no length line', events: [{ type: 'OPEN' }], wire: b('OPEN\r\n') },
  { name: 'DISCONNECT has no length line', events: [{ type: 'DISCONNECT' }], wire: b('DISCONNECT\r\n') },
  { name: 'text, lower-case hex', events: [{ type: 'TEXT', content: Buffer.from('hello world') }], wire: b('TEXT b\r\nhello world\r\n') },
  { name: 'empty text keeps a zero length', events: [{ type: 'TEXT', content: Buffer.alloc(0) }], wire: b('TEXT 0\r\n\r\n') },
  {
    name: 'binary with CR LF and high bytes inside',
    events: [{ type: 'BINARY', content: binary }],
    wire: Buffer.concat([b('BINARY 6\r\n'), binary, b('\r\n')]),
  },
  { name: 'UTF-8 text counts bytes', events: [{ type: 'TEXT', content: Buffer.from('héllo') }], wire: Buffer.concat([b('TEXT 6\r\n'), Buffer.from('héllo'), b('\r\n')]) },
  { name: 'ping without content', events: [{ type: 'PING' }], wire: b('PING\r\n') },
  { name: 'close with code 1000', events: [{ type: 'CLOSE', content: closePayload(1000) }], wire: b('CLOSE 2\r\n\x03\xe8\r\n') },
  {
    name: 'several events',
    events: [{ type: 'OPEN' }, { type: 'TEXT', content: Buffer.from('c:{}') }, { type: 'PONG', content: Buffer.from('p') }],
    wire: b('OPEN\r\nTEXT 4\r\nc:{}\r\nPONG 1\r\np\r\n'),
  },
  { name: 'no events', events: [], wire: Buffer.alloc(0) },
  {
    name: 'length of 300 bytes is 12c',
    events: [{ type: 'TEXT', content: Buffer.alloc(300, 0x61) }],
    wire: Buffer.concat([b('TEXT 12c\r\n'), Buffer.alloc(300, 0x61), b('\r\n')]),
  },
];

for (const c of encodeCases) {
  test(`encode/decode: ${c.name}`, () => {
    assert.deepEqual(encodeEvents(c.events), c.wire);
    assert.deepEqual(decodeEvents(c.wire), c.events);
  });
}

test('decode accepts upper-case hex and an event without content', () => {
  assert.deepEqual(decodeEvents(b('TEXT B\r\nhello world\r\nTEXT\r\n')), [
    { type: 'TEXT', content: Buffer.from('hello world') },
    { type: 'TEXT' },
  ]);
});

test('decode of what js-grip sends for close() with its default code 0', () => {
  const [e] = decodeEvents(b('OPEN\r\nCLOSE 2\r\n\x00\x00\r\n')).slice(1);
  assert.equal(e!.type, 'CLOSE');
  assert.deepEqual(parseClose(e!.content), { code: 1000, reason: '', rawCode: 0 });
});

test('decode skips unknown types, content included, and reports them', () => {
  const seen: [string, number][] = [];
  const events = decodeEvents(b('OPEN\r\nFOO 3\r\nabc\r\nopen\r\nTEXT 1\r\nx\r\n'), (type, offset) => seen.push([type, offset]));
  assert.deepEqual(events, [{ type: 'OPEN' }, { type: 'TEXT', content: Buffer.from('x') }]);
  assert.deepEqual(seen, [
    ['FOO', 6],
    ['open', 18],
  ]);
});

const malformed: { name: string; body: Buffer; offset: number; message: RegExp }[] = [
  { name: 'no CRLF after the type', body: b('OPEN'), offset: 0, message: /without CRLF at byte 0/ },
  { name: 'no CRLF after the second type', body: b('OPEN\r\nTEXT 1'), offset: 6, message: /at byte 6/ },
  { name: 'bad hex', body: b('TEXT zz\r\nab\r\n'), offset: 5, message: /bad hex length "zz" at byte 5/ },
  { name: 'empty hex', body: b('TEXT \r\n\r\n'), offset: 5, message: /bad hex/ },
  { name: 'negative length', body: b('TEXT -1\r\n\r\n'), offset: 5, message: /bad hex/ },
  { name: 'hex too long', body: b('TEXT 123456789\r\n'), offset: 5, message: /bad hex/ },
  { name: 'truncated content', body: b('TEXT 5\r\nhi\r\n'), offset: 8, message: /truncated: 5 bytes declared, 4 present at byte 8/ },
  { name: 'missing CRLF after content', body: b('TEXT 2\r\nhiXX'), offset: 10, message: /missing CRLF after content at byte 10/ },
  { name: 'CRLF cut short at the end', body: b('TEXT 2\r\nhi\r'), offset: 10, message: /missing CRLF/ },
  { name: 'malformed unknown type still fails', body: b('FOO q\r\n'), offset: 4, message: /bad hex/ },
];

for (const c of malformed) {
  test(`decode rejects ${c.name}`, () => {
    assert.throws(
      () => decodeEvents(c.body),
      (e: unknown) => e instanceof WohDecodeError && e.offset === c.offset && c.message.test(e.message) && e.code === 'woh_decode',
    );
  });
}

const closeCases: { name: string; content: Buffer | undefined; code: number; reason: string; rawCode: number | null }[] = [
  { name: 'no content', content: undefined, code: 1000, reason: '', rawCode: null },
  { name: 'empty content', content: Buffer.alloc(0), code: 1000, reason: '', rawCode: null },
  { name: 'one byte', content: Buffer.from([0x03]), code: 1000, reason: '', rawCode: null },
  { name: 'code 0', content: Buffer.from([0, 0]), code: 1000, reason: '', rawCode: 0 },
  { name: '1001 with reason', content: Buffer.concat([Buffer.from([0x03, 0xe9]), Buffer.from('bye')]), code: 1001, reason: 'bye', rawCode: 1001 },
  { name: '4000 app code', content: Buffer.from([0x0f, 0xa0]), code: 4000, reason: '', rawCode: 4000 },
  { name: '1005 cannot be sent', content: Buffer.from([0x03, 0xed]), code: 1000, reason: '', rawCode: 1005 },
  { name: '5000 cannot be sent', content: Buffer.from([0x13, 0x88]), code: 1000, reason: '', rawCode: 5000 },
];

for (const c of closeCases) {
  test(`parseClose: ${c.name}`, () => {
    assert.deepEqual(parseClose(c.content), { code: c.code, reason: c.reason, rawCode: c.rawCode });
  });
}

test('close code and reason round trip', () => {
  for (const [code, reason] of [
    [1000, ''],
    [1001, 'going away'],
    [1011, 'ünïcode ✓'],
    [3000, 'x'],
    [4999, 'last app code'],
  ] as const) {
    const wire = encodeEvents([closeEvent(code, reason)]);
    const [e] = decodeEvents(wire);
    assert.deepEqual(parseClose(e!.content), { code, reason, rawCode: code });
  }
});

test('a long reason is cut to 123 bytes without splitting a character', () => {
  const reason = 'é'.repeat(100); // 200 bytes
  const parsed = parseClose(closePayload(1000, reason));
  assert.equal(parsed.reason, 'é'.repeat(61));
  assert.ok(Buffer.byteLength(parsed.reason) <= 123);
});

test('closeEvent without a code, or with 1005, carries no content', () => {
  assert.deepEqual(closeEvent(), { type: 'CLOSE' });
  assert.deepEqual(closeEvent(1005), { type: 'CLOSE' });
  assert.equal(encodeEvents([closeEvent()]).toString(), 'CLOSE\r\n');
});

test('closePayload rejects codes that are not 16-bit integers', () => {
  assert.throws(() => closePayload(-1), RangeError);
  assert.throws(() => closePayload(65536), RangeError);
  assert.throws(() => closePayload(1000.5), RangeError);
});

test('isSendableCloseCode', () => {
  const table: [number, boolean][] = [
    [999, false], [1000, true], [1003, true], [1004, false], [1005, false], [1006, false],
    [1007, true], [1014, true], [1015, false], [2999, false], [3000, true], [4999, true], [5000, false],
  ];
  for (const [code, ok] of table) assert.equal(isSendableCloseCode(code), ok, String(code));
});

test('isEventsResponse', () => {
  const table: [number, string | undefined, boolean][] = [
    [200, 'application/websocket-events', true],
    [200, 'Application/WebSocket-Events; charset=utf-8', true],
    [200, 'text/plain', false],
    [200, undefined, false],
    [204, 'application/websocket-events', false],
    [403, 'application/websocket-events', false],
  ];
  for (const [status, type, ok] of table) assert.equal(isEventsResponse(status, type), ok, `${status} ${type}`);
});
