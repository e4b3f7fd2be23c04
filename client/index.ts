// Public entry of the Switchboard client library.
export {
  SwitchboardClient,
  type ClientEvents,
  type ClientOptions,
  type ClientState,
  type Refusal,
  type TransportName,
  type HandshakeResponse,
  type WebSocketConstructor,
  type WebSocketLike,
  type SetTimer,
  type ClearTimer,
} from './client.js';
export { SwitchboardClientError, type ClientErrorCode } from './errors.js';
export { PROTOCOL, RECONNECTING_CLOSE, reconnectsAfter, refusalIsFinal, resumeUrl, type PresenceEvent, type PresenceEventType } from './protocol.js';
export { backoffDelay, hintDelay, resolveBackoff, defaultBackoff, type BackoffOptions } from './backoff.js';
