// Standard Webhooks signatures: `v1,<base64 HMAC-SHA256("id.timestamp.body")>` keyed by
// the base64-decoded part of each `whsec_` secret; several secrets give several signatures.
import { createHmac } from 'node:crypto';

export function decodeSecret(secret: string): Buffer {
  return Buffer.from(secret.slice('whsec_'.length), 'base64');
}

export function sign(keys: readonly Buffer[], id: string, timestampSec: number, body: Buffer | string): string {
  return keys
    .map((key) => `v1,${createHmac('sha256', key).update(`${id}.${timestampSec}.`).update(body).digest('base64')}`)
    .join(' ');
}

export function signatureHeaders(keys: readonly Buffer[], id: string, nowMs: number, body: Buffer | string): Record<string, string> {
  const timestamp = Math.floor(nowMs / 1000);
  return {
    'webhook-id': id,
    'webhook-timestamp': String(timestamp),
    'webhook-signature': sign(keys, id, timestamp, body),
  };
}
