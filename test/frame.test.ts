// The reliable-mode codec without a socket: client frames parse to typed frames or typed
// faults, server frames encode to exactly the documented JSON.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { encodeServerFrame, parseClientFrame, type ServerFrame } from '../proxy/frame.js';
import { MAX_CHANNEL, MAX_CLIENT_ID } from '../proxy/limits.js';

test('client frames: each documented frame, and the fault for each way one can be wrong', () => {
  const table: Array<[string, unknown]> = [
    ['{"type":"message","data":{"a":[1,"x"]},"id":"c1"}', { type: 'message', json: '{"a":[1,"x"]}', id: 'c1' }],
    ['{"type":"message","data":null}', { type: 'message', json: 'null' }],
    ['{"type":"ack","seq":17}', { type: 'ack', seq: 17 }],
    ['{"type":"ping"}', { type: 'ping' }],
    ['{"type":"subscribe","channel":"c","id":"s1"}', { type: 'subscribe', channel: 'c', id: 's1' }],
    ['{"type":"unsubscribe","channel":"c"}', { type: 'unsubscribe', channel: 'c' }],
    ['not json', { type: 'fault', error: 'bad_json', message: undefined }],
    ['[1]', { type: 'fault', error: 'bad_json', message: undefined }],
    ['{"type":"message"}', { type: 'fault', error: 'bad_field', message: '"data" is required' }],
    ['{"type":"ack","seq":-1}', { type: 'fault', error: 'bad_field', message: '"seq" must be an integer >= 0' }],
    ['{"type":"ack","seq":1.5}', { type: 'fault', error: 'bad_field', message: '"seq" must be an integer >= 0' }],
    [`{"type":"message","data":1,"id":"${'x'.repeat(MAX_CLIENT_ID + 1)}"}`, { type: 'fault', error: 'bad_field', message: `"id" must be a string of 1 to ${MAX_CLIENT_ID} characters` }],
    [`{"type":"subscribe","channel":"${'x'.repeat(MAX_CHANNEL + 1)}"}`, { type: 'fault', error: 'bad_field', message: `"channel" must be a string of 1 to ${MAX_CHANNEL} characters` }],
    ['{"type":"subscribe","channel":""}', { type: 'fault', error: 'bad_field', message: `"channel" must be a string of 1 to ${MAX_CHANNEL} characters` }],
    ['{"type":"shout"}', { type: 'fault', error: 'bad_type', message: 'unknown frame type "shout"' }],
    ['{}', { type: 'fault', error: 'bad_type', message: 'unknown frame type undefined' }],
  ];
  for (const [text, frame] of table) assert.deepEqual(parseClientFrame(text), frame, text);
});

test('server frames encode to the documented JSON, keys in order', () => {
  const frames: ServerFrame[] = [
    { type: 'welcome', session: 'n-0-a', token: 't', resumed: false, heartbeatMs: 25000, graceMs: 120000 },
    { type: 'gap', from: 5, to: 9 },
    { type: 'ack', id: 'c"1' },
    { type: 'nack', id: 'c2', error: 'webhook_failed', retryable: true },
    { type: 'pong' },
    { type: 'reconnect', afterMs: 1500 },
    { type: 'error', error: 'bad_json', message: 'frame is not a JSON object' },
  ];
  for (const f of frames) {
    const text = encodeServerFrame(f);
    assert.deepEqual(JSON.parse(text), f);
    assert.deepEqual(Object.keys(JSON.parse(text)), Object.keys(f), `${f.type}: keys in order`);
  }
  assert.equal(encodeServerFrame({ type: 'gap', from: 1, to: 2 }), '{"type":"gap","from":1,"to":2}');
});
