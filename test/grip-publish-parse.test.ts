import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  applySetMeta,
  isStrippedClientHeader,
  metaHeaders,
  parseControlMessage,
  parseGripExtension,
  parseKeepAliveInterval,
  readMetaHeaders,
  routeAppMessage,
  wohRequestHeaders,
  type GripControl,
} from '../plugins/websocket-over-http/grip.js';
import {
  methodNotAllowedReply,
  NOT_ACCEPTABLE_REPLY,
  parsePublishBody,
  publishedReply,
  publishReplyType,
  type PublishItem,
} from '../plugins/websocket-over-http/publish.js';

// ---------------------------------------------------------------------------------------
// grip extension

test('parseGripExtension', () => {
  const table: [string | string[] | undefined, string | null][] = [
    [undefined, null],
    ['', null],
    ['grip', 'm:'],
    ['permessage-deflate, grip', 'm:'],
    [['permessage-deflate', 'grip'], 'm:'],
    ['grip; message-prefix=""', ''],
    ['grip; message-prefix="x:"', 'x:'],
    ['grip; message-prefix=y:', 'y:'],
    ['grip; message-prefix="a\\"b"', 'a"b'],
    ['grip; other=1; message-prefix="p, q"', 'p, q'],
    ['grip; flag', 'm:'],
    ['grip; message-prefix=', null],
    ['grip; message-prefix="open', null],
    ['gripx', null],
    ['x-grip', null],
  ];
  for (const [header, prefix] of table) {
    const ext = parseGripExtension(header);
    assert.deepEqual(ext, prefix === null ? null : { messagePrefix: prefix }, JSON.stringify(header));
  }
});

// ---------------------------------------------------------------------------------------
// control messages

const controlOk: [string, GripControl][] = [
  ['{"type":"subscribe","channel":"room"}', { type: 'subscribe', channel: 'room', filters: [] }],
  ['{"channel":"room","type":"subscribe","filters":["skip-self"]}', { type: 'subscribe', channel: 'room', filters: ['skip-self'] }],
  ['{"type":"unsubscribe","channel":"room"}', { type: 'unsubscribe', channel: 'room' }],
  ['{"type":"detach"}', { type: 'detach' }],
  ['{"type":"set-meta","name":"user","value":"u1"}', { type: 'set-meta', name: 'user', value: 'u1' }],
  ['{"type":"set-meta","name":"user"}', { type: 'set-meta', name: 'user', value: null }],
  ['{"type":"set-meta","name":"user","value":null}', { type: 'set-meta', name: 'user', value: null }],
  [
    '{"type":"keep-alive","content":"{}"}',
    { type: 'keep-alive', message: { type: 'text', content: Buffer.from('{}') }, timeout: 55, mode: 'idle' },
  ],
  [
    '{"type":"keep-alive","content":"ka","timeout":30,"mode":"interval"}',
    { type: 'keep-alive', message: { type: 'text', content: Buffer.from('ka') }, timeout: 30, mode: 'interval' },
  ],
  [
    '{"type":"keep-alive","content-bin":"AAH/","message-type":"binary","timeout":0}',
    { type: 'keep-alive', message: { type: 'binary', content: Buffer.from([0, 1, 255]) }, timeout: 55, mode: 'idle' },
  ],
  [
    '{"type":"keep-alive","content-bin":"AAH/"}',
    { type: 'keep-alive', message: { type: 'text', content: Buffer.from([0, 1, 255]) }, timeout: 55, mode: 'idle' },
  ],
  [
    '{"type":"keep-alive","content":"","message-type":"ping","mode":"other"}',
    { type: 'keep-alive', message: { type: 'ping', content: Buffer.alloc(0) }, timeout: 55, mode: 'idle' },
  ],
  ['{"type":"keep-alive"}', { type: 'keep-alive', message: null, timeout: 55, mode: 'idle' }],
  ['{"type":"keep-alive","timeout":-5}', { type: 'keep-alive', message: null, timeout: 55, mode: 'idle' }],
  ['{"type":"session","id":"s1"}', { type: 'unsupported', name: 'session' }],
  ['{"type":"send-delayed","content":"x"}', { type: 'unsupported', name: 'send-delayed' }],
];

for (const [json, expected] of controlOk) {
  test(`control message ${json}`, () => {
    assert.deepEqual(parseControlMessage(Buffer.from(json)), { ok: true, value: expected });
  });
}

const controlBad: [string, string][] = [
  ['not json', 'grip control message is not valid json'],
  ['"a string"', 'grip control message is not valid json'],
  ['[{"type":"detach"}]', 'grip control packet is not an object'],
  ['{}', "grip control object does not contain 'type'"],
  ['{"type":5}', "grip control object contains 'type' with wrong type"],
  ['{"type":"shout"}', "'type' contains unknown value: shout"],
  ['{"type":"subscribe"}', "grip control object does not contain 'channel'"],
  ['{"type":"subscribe","channel":""}', "grip control object contains 'channel' with invalid value"],
  ['{"type":"unsubscribe","channel":7}', "grip control object contains 'channel' with wrong type"],
  ['{"type":"subscribe","channel":"a","filters":"x"}', "grip control object contains 'filters' with wrong type"],
  ['{"type":"subscribe","channel":"a","filters":[1]}', 'filters contains value with wrong type'],
  ['{"type":"set-meta","name":""}', "grip control object contains 'name' with invalid value"],
  ['{"type":"set-meta","name":"a","value":1}', "grip control object contains 'value' with wrong type"],
  ['{"type":"keep-alive","content":"x","message-type":"frame"}', "grip control object contains 'message-type' with unknown value"],
  ['{"type":"keep-alive","content":1}', "grip control object contains 'content' with wrong type"],
  ['{"type":"keep-alive","content":"x","timeout":"soon"}', "grip control object contains 'timeout' with wrong type"],
  ['{"type":"keep-alive","content":"x","timeout":-1}', "grip control object contains 'timeout' with invalid value"],
  ['{"type":"keep-alive","content":"x","mode":true}', "grip control object contains 'mode' with wrong type"],
];

for (const [json, error] of controlBad) {
  test(`control message rejected: ${json}`, () => {
    assert.deepEqual(parseControlMessage(json), { ok: false, error });
  });
}

// ---------------------------------------------------------------------------------------
// the prefix rule

test('routeAppMessage: without grip everything passes as-is, c: included', () => {
  for (const s of ['c:{"type":"detach"}', 'm:hi', 'plain']) {
    assert.deepEqual(routeAppMessage('TEXT', Buffer.from(s), null), { kind: 'message', type: 'TEXT', data: Buffer.from(s) });
  }
});

test('routeAppMessage: with grip', () => {
  const grip = { messagePrefix: 'm:' };
  const table: ['TEXT' | 'BINARY', string, unknown][] = [
    ['TEXT', 'm:hello', { kind: 'message', type: 'TEXT', data: Buffer.from('hello') }],
    ['TEXT', 'm:', { kind: 'message', type: 'TEXT', data: Buffer.alloc(0) }],
    ['BINARY', 'm:\x00\x01', { kind: 'message', type: 'BINARY', data: Buffer.from('\x00\x01') }],
    ['TEXT', 'hello', { kind: 'dropped' }],
    ['BINARY', '\x00\x01', { kind: 'dropped' }],
    ['TEXT', '', { kind: 'dropped' }],
    ['TEXT', 'c:{"type":"detach"}', { kind: 'control', control: { ok: true, value: { type: 'detach' } } }],
    ['TEXT', 'c:{oops', { kind: 'control', control: { ok: false, error: 'grip control message is not valid json' } }],
    // Only TEXT carries control messages; a BINARY `c:` is an unprefixed message.
    ['BINARY', 'c:{"type":"detach"}', { kind: 'dropped' }],
  ];
  for (const [type, s, expected] of table) {
    assert.deepEqual(routeAppMessage(type, Buffer.from(s, 'latin1'), grip), expected, `${type} ${s}`);
  }
});

test('routeAppMessage: an empty prefix passes everything, c: is still control', () => {
  const grip = { messagePrefix: '' };
  assert.deepEqual(routeAppMessage('TEXT', Buffer.from('hello'), grip), { kind: 'message', type: 'TEXT', data: Buffer.from('hello') });
  assert.equal(routeAppMessage('TEXT', Buffer.from('c:{"type":"detach"}'), grip).kind, 'control');
});

test('routeAppMessage: a custom prefix', () => {
  const grip = { messagePrefix: 'msg→' };
  assert.deepEqual(routeAppMessage('TEXT', Buffer.from('msg→hi'), grip), { kind: 'message', type: 'TEXT', data: Buffer.from('hi') });
  assert.deepEqual(routeAppMessage('TEXT', Buffer.from('m:hi'), grip), { kind: 'dropped' });
});

// ---------------------------------------------------------------------------------------
// headers

test('applySetMeta: sets, replaces, removes, in order; ignores other headers', () => {
  const meta = applySetMeta(
    { user: 'old', plan: 'pro', keep: 'k' },
    {
      'set-meta-user': 'u1',
      'Set-Meta-Plan': '',
      'set-meta-multi': ['a', 'b'],
      'set-meta-gone': ['x', ''],
      'set-meta-': 'nameless',
      'meta-ignored': 'x',
      'content-type': 'application/websocket-events',
    },
  );
  assert.deepEqual(meta, { user: 'u1', keep: 'k', multi: 'b' });
});

test('metaHeaders / readMetaHeaders round trip', () => {
  const headers = metaHeaders({ user: 'u1', room: 'a b' });
  assert.deepEqual(headers, { 'Meta-user': 'u1', 'Meta-room': 'a b' });
  const lower = Object.fromEntries(Object.entries(headers).map(([k, v]) => [k.toLowerCase(), v]));
  assert.deepEqual(readMetaHeaders({ ...lower, 'meta-': 'x', host: 'h' }), { user: 'u1', room: 'a b' });
});

test('parseKeepAliveInterval', () => {
  const table: [string | undefined, number | null | undefined][] = [
    [undefined, undefined],
    ['30', 30],
    [' 45 ', 45],
    ['20', 20],
    ['5', 20],
    ['1', 20],
    ['0', null],
    ['-5', null],
    ['abc', null],
    ['10s', null],
    ['1.5', null],
    ['', null],
  ];
  for (const [value, expected] of table) assert.equal(parseKeepAliveInterval(value), expected, String(value));
});

test('wohRequestHeaders and the client headers Pushpin strips', () => {
  assert.deepEqual(wohRequestHeaders({ connectionId: 'c1', meta: { user: 'u1' }, contentLength: 6, gripSig: 'tok' }), {
    Accept: 'application/websocket-events',
    'Connection-Id': 'c1',
    'Content-Type': 'application/websocket-events',
    'Content-Length': '6',
    'Sec-WebSocket-Extensions': 'grip',
    'Meta-user': 'u1',
    'Grip-Sig': 'tok',
  });
  for (const name of ['Upgrade', 'accept', 'Connection-Id', 'Meta-User', 'grip-sig', 'Sec-WebSocket-Extensions', 'Connection', 'Content-Length']) {
    assert.equal(isStrippedClientHeader(name), true, name);
  }
  for (const name of ['Cookie', 'Authorization', 'User-Agent', 'Sec-WebSocket-Protocol', 'X-Forwarded-For']) {
    assert.equal(isStrippedClientHeader(name), false, name);
  }
});

// ---------------------------------------------------------------------------------------
// publish bodies

const publishOk: [string, unknown, PublishItem[]][] = [
  [
    'text message (what js-grip WebSocketMessageFormat exports for a string)',
    { items: [{ channel: 'room', formats: { 'ws-message': { content: 'hello' } } }] },
    [{ channel: 'room', ws: { kind: 'text', text: 'hello' } }],
  ],
  [
    'binary message from content-bin',
    { items: [{ channel: 'room', formats: { 'ws-message': { 'content-bin': 'AAH/' } } }] },
    [{ channel: 'room', ws: { kind: 'binary', data: Buffer.from([0, 1, 255]) } }],
  ],
  [
    'type overrides the content kind',
    { items: [{ channel: 'c', formats: { 'ws-message': { content: 'abc', type: 'binary' } } }] },
    [{ channel: 'c', ws: { kind: 'binary', data: Buffer.from('abc') } }],
  ],
  [
    'empty text',
    { items: [{ channel: 'c', formats: { 'ws-message': { content: '' } } }] },
    [{ channel: 'c', ws: { kind: 'text', text: '' } }],
  ],
  [
    'ping needs no content',
    { items: [{ channel: 'c', formats: { 'ws-message': { type: 'ping' } } }] },
    [{ channel: 'c', ws: { kind: 'ping', data: Buffer.alloc(0) } }],
  ],
  [
    'close with code and reason',
    { items: [{ channel: 'c', formats: { 'ws-message': { action: 'close', code: 4001, reason: 'kicked' } } }] },
    [{ channel: 'c', ws: { kind: 'close', code: 4001, reason: 'kicked' } }],
  ],
  [
    'close without code (js-grip WebSocketMessageFormat(null, true))',
    { items: [{ channel: 'c', formats: { 'ws-message': { action: 'close' } } }] },
    [{ channel: 'c', ws: { kind: 'close' } }],
  ],
  [
    'id and prev-id',
    { items: [{ channel: 'c', id: '2', 'prev-id': '1', formats: { 'ws-message': { content: 'x' } } }] },
    [{ channel: 'c', id: '2', prevId: '1', ws: { kind: 'text', text: 'x' } }],
  ],
  [
    'http formats only: accepted, nothing for WebSockets',
    {
      items: [
        {
          channel: 'c',
          formats: {
            'http-stream': { content: 'data: x\n\n' },
            'http-response': { body: 'x', code: 200, headers: { 'X-A': 'b' } },
          },
        },
      ],
    },
    [{ channel: 'c', ws: null }],
  ],
  [
    'hint and refresh are not delivered to WebSockets',
    {
      items: [
        { channel: 'a', formats: { 'ws-message': { action: 'hint' } } },
        { channel: 'b', formats: { 'ws-message': { action: 'refresh' } } },
      ],
    },
    [
      { channel: 'a', ws: null },
      { channel: 'b', ws: null },
    ],
  ],
  [
    'formats on the item itself (older publishers)',
    { items: [{ channel: 'c', 'ws-message': { content: 'legacy' } }] },
    [{ channel: 'c', ws: { kind: 'text', text: 'legacy' } }],
  ],
  [
    'several items, meta, size, no-seq',
    {
      items: [
        { channel: 'a', formats: { 'ws-message': { content: '1' } }, meta: { k: 'v' }, size: 3, 'no-seq': true },
        { channel: 'b', formats: { 'ws-message': { content: '2' } } },
      ],
    },
    [
      { channel: 'a', ws: { kind: 'text', text: '1' } },
      { channel: 'b', ws: { kind: 'text', text: '2' } },
    ],
  ],
  ['no items', { items: [] }, []],
];

for (const [name, body, items] of publishOk) {
  test(`publish accepted: ${name}`, () => {
    assert.deepEqual(parsePublishBody(Buffer.from(JSON.stringify(body))), { ok: true, items });
  });
}

const publishBad: [string, string, string][] = [
  ['not JSON', '{"items":', 'Body is not valid JSON.\n'],
  ['an array', '[]', 'Invalid format.\n'],
  ['a string', '"x"', 'Invalid format.\n'],
  ['no items', '{}', "Invalid format: object does not contain 'items'\n"],
  ['items not a list', '{"items":{}}', "Invalid format: object contains 'items' with wrong type\n"],
  ['item not an object', '{"items":[1]}', 'Invalid format: publish item object is not an object\n'],
  ['no channel', '{"items":[{"formats":{"ws-message":{"content":"x"}}}]}', "Invalid format: publish item object does not contain 'channel'\n"],
  ['channel not a string', '{"items":[{"channel":1,"formats":{"ws-message":{"content":"x"}}}]}', "Invalid format: publish item object contains 'channel' with wrong type\n"],
  ['id not a string', '{"items":[{"channel":"c","id":1,"formats":{"ws-message":{"content":"x"}}}]}', "Invalid format: publish item object contains 'id' with wrong type\n"],
  ['no formats', '{"items":[{"channel":"c"}]}', 'Invalid format: no formats specified\n'],
  ['empty formats', '{"items":[{"channel":"c","formats":{}}]}', 'Invalid format: no formats specified\n'],
  ['formats not an object', '{"items":[{"channel":"c","formats":[]}]}', "Invalid format: publish item object contains 'formats' with wrong type\n"],
  ['ws-message not an object', '{"items":[{"channel":"c","formats":{"ws-message":"x"}}]}', "Invalid format: 'ws-message' is not an object\n"],
  ['ws-message without content', '{"items":[{"channel":"c","formats":{"ws-message":{}}}]}', "Invalid format: 'ws-message' does not contain 'content' or 'content-bin'\n"],
  ['content not a string', '{"items":[{"channel":"c","formats":{"ws-message":{"content":5}}}]}', "Invalid format: 'ws-message' contains 'content' with wrong type\n"],
  ['content-bin not a string', '{"items":[{"channel":"c","formats":{"ws-message":{"content-bin":[]}}}]}', "Invalid format: 'ws-message' contains 'content-bin' with wrong type\n"],
  ['unknown type', '{"items":[{"channel":"c","formats":{"ws-message":{"content":"x","type":"frame"}}}]}', "Invalid format: 'ws-message' contains 'type' with unknown value\n"],
  ['unknown action', '{"items":[{"channel":"c","formats":{"ws-message":{"action":"shout"}}}]}', "Invalid format: 'ws-message' contains 'action' with unknown value\n"],
  ['close code not a number', '{"items":[{"channel":"c","formats":{"ws-message":{"action":"close","code":"1000"}}}]}', "Invalid format: 'ws-message' contains 'code' with wrong type\n"],
  ['negative close code', '{"items":[{"channel":"c","formats":{"ws-message":{"action":"close","code":-1}}}]}', "Invalid format: 'ws-message' contains 'code' with invalid value\n"],
  ['http-stream without content', '{"items":[{"channel":"c","formats":{"http-stream":{}}}]}', "Invalid format: 'http-stream' does not contain 'content' or 'content-bin'\n"],
  ['http-response without body', '{"items":[{"channel":"c","formats":{"http-response":{"code":200}}}]}', "Invalid format: 'http-response' does not contain 'body', 'body-bin', or 'body-patch'\n"],
  ['http-response code too big', '{"items":[{"channel":"c","formats":{"http-response":{"code":1000,"body":""}}}]}', "Invalid format: 'http-response' contains 'code' with invalid value\n"],
  ['meta value not a string', '{"items":[{"channel":"c","formats":{"ws-message":{"content":"x"}},"meta":{"k":1}}]}', "Invalid format: 'meta' contains 'k' with wrong type\n"],
  ['second item bad', '{"items":[{"channel":"c","formats":{"ws-message":{"content":"x"}}},{"channel":"d"}]}', 'Invalid format: no formats specified\n'],
];

for (const [name, body, reply] of publishBad) {
  test(`publish refused: ${name}`, () => {
    assert.deepEqual(parsePublishBody(body), { ok: false, status: 400, body: reply });
  });
}

test('publish replies', () => {
  const table: [string | undefined, string | null][] = [
    [undefined, 'text/plain'],
    ['*/*', 'text/plain'],
    ['text/plain', 'text/plain'],
    ['application/json', 'application/json'],
    ['text/html, application/json;q=0.9', 'application/json'],
    ['application/json, text/*', 'text/plain'],
    ['text/html', null],
  ];
  for (const [accept, type] of table) assert.equal(publishReplyType(accept), type, String(accept));
  assert.deepEqual(publishedReply('text/plain'), { status: 200, headers: { 'Content-Type': 'text/plain' }, body: 'Published\n' });
  assert.deepEqual(JSON.parse(publishedReply('application/json').body), { message: 'Published' });
  assert.equal(NOT_ACCEPTABLE_REPLY.status, 406);
  assert.deepEqual(methodNotAllowedReply('GET'), {
    status: 405,
    headers: { 'Content-Type': 'text/plain', Allow: 'POST' },
    body: 'Method not allowed: GET.\n',
  });
});
