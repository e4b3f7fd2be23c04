// Public entry of the Switchboard client library.
export {
  SwitchboardClient,
  SwitchboardClientError,
  PROTOCOL,
  reconnectsAfter,
  resumeUrl,
  type ClientEvents,
  type ClientErrorCode,
  type ClientOptions,
  type ClientState,
  type WebSocketConstructor,
  type WebSocketLike,
  type SetTimer,
  type ClearTimer,
} from './client.js';
export { backoffDelay, hintDelay, resolveBackoff, defaultBackoff, type BackoffOptions } from './backoff.js';
