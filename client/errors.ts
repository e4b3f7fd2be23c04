// Every error the client library reports, with its code.

export type ClientErrorCode =
  | 'closed' // the client is closed for good; pending sends and pings are rejected with it
  | 'offline_queue_full' // send() while disconnected with offlineQueueLimit messages waiting
  | 'not_open' // ping() while not connected
  | 'disconnected' // a ping in flight when the connection dropped
  | 'bad_frame' // the server sent something that is not a reliable-mode frame
  | 'bad_url' // the WebSocket constructor refused the URL
  | 'bad_data'; // send() data that JSON.stringify cannot encode

/**
 * Every error the client reports. `code` is one of ClientErrorCode, or the server's
 * code for a `nack` or an `error` frame. `retryable` comes from the nack; the client
 * never retries a nacked message itself.
 */
export class SwitchboardClientError extends Error {
  readonly code: string;
  readonly retryable: boolean;

  constructor(code: ClientErrorCode | (string & {}), message: string, retryable = false, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'SwitchboardClientError';
    this.code = code;
    this.retryable = retryable;
  }
}

/** The error pending sends and pings get once the client is closed for good. */
export function closedError(code?: number, reason?: string): SwitchboardClientError {
  const why = code === undefined ? '' : ` (close code ${code}${reason ? `: ${reason}` : ''})`;
  return new SwitchboardClientError('closed', `the Switchboard client is closed${why}`);
}
