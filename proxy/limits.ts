// The fixed bounds: each a named constant with the reason it has this value. Bounds a user
// may change are config keys instead (proxy/config.ts, listed in docs/usage.md).

/** Nesting of any JSON from outside: V8 parses deep nesting, but JSON.stringify of it overflows the stack. */
export const MAX_JSON_DEPTH = 64;

/** No configuration needs more nesting than this; deeper input is refused before validation. */
export const MAX_CONFIG_DEPTH = 16;

/** Node's timers take at most 2^31-1 ms; a longer duration would fire at once. */
export const MAX_DURATION_MS = 2_147_483_647;

/** Standard Webhooks keys shorter than this (bytes) are guessable. */
export const MIN_SECRET_BYTES = 16;

/** A control token guards the push API on a reachable port: at least this long (characters) there. */
export const MIN_CONTROL_TOKEN = 16;

/** Client message ids and channel names (characters): ids travel in headers and acks, names in routing keys. */
export const MAX_CLIENT_ID = 256;
export const MAX_CHANNEL = 256;

/** Patterns in `presence.frames`: each presence event is matched against every one of them. */
export const MAX_CHANNEL_PATTERNS = 256;

/** A push's coalesce key (characters): keys are compared per queued message. */
export const MAX_COALESCE_KEY = 256;

/** Messages of one `POST /v1/batch` (or push-queue message): one request must not hold a node's whole fan-out. */
export const MAX_BATCH_MESSAGES = 1000;

/** Percent-decoding rounds of a public request path before it is refused: no router decodes more. */
export const MAX_DECODE_ROUNDS = 4;

/** Fragments of one client message ws takes (its own server default): beyond, close 1008. */
export const MAX_MESSAGE_FRAGMENTS = 16_384;

/** Client messages one amqp `message` call may carry: published together, confirmed together. */
export const MAX_AMQP_BATCH = 32;

/** Escaped names (base64url) longer than this are hashed: AMQP routing keys hold at most 255 bytes. */
export const MAX_ROUTING_NAME = 200;

/** Client messages one websocket-over-http request carries (the rest wait for the next). */
export const MAX_EVENTS_PER_REQUEST = 64;

/** A GRIP publish body (bytes): Pushpin's own bound, so publishers see the same answer. */
export const MAX_PUBLISH_BYTES = 10_000_000;

// ── sessions across processes (docs/cluster.md) ──

/** Heartbeats a cluster process may miss before the others count it gone: two lost ones are a blip, three an outage. */
export const MISSED_HEARTBEATS = 3;

/** `moved` answers a session take follows: a session moves twice in a move's time only in a reconnect storm. */
export const MAX_TAKE_HOPS = 3;

/** Sessions a node remembers having moved away (for redirects): a bound on memory in a reconnect storm. */
export const MAX_REMEMBERED_MOVES = 100_000;

/** A parked queue outlives its session's grace by this much (ms), so a claim at the very end still finds its pushes. */
export const PARK_MARGIN_MS = 60_000;

/** Reading the rest of a claimed parked queue or a dead process's roster (ms): a broker that takes longer is failing. */
export const CLAIM_READ_MS = 30_000;

/** Roster changes are gathered this long (ms) before they are written: one message for a connect storm, at the price of missing the sessions of a crash's last moments. */
export const ROSTER_FLUSH_MS = 20;

/** Roster changes written beyond the sessions held before a full roster is written again: the queue stays short. */
export const ROSTER_SLACK = 1000;

/** Sessions per message of a full roster: messages stay far below the broker's size bound. */
export const ROSTER_CHUNK = 1000;

/** Disconnects of a dead process's sessions in flight at once: a survivor does not flood the app. */
export const LOST_AT_ONCE = 32;

/**
 * Channels a process changes its cluster queue's bindings on, each key always on the same one:
 * the broker runs one binding change at a time per channel, so a resume storm's thousands of them
 * go through several at once.
 */
export const BINDING_CHANNELS = 4;

/** Connection ids in one question of which sessions a process holds (a dead process's roster is asked about in such parts). */
export const MAX_HELD_QUESTION = 1000;

/** Parked queues looked up at once when a dead process's roster is read (each lookup of a missing one costs a channel). */
export const PARKED_CHECKS_AT_ONCE = 8;

/** With workers, how often a presence batch looks again for a running worker to send it while all are restarting. */
export const NO_WORKER_RETRY_MS = 100;

/** How often a claim looks again for the parked copy of a session its holder is parking right now (up to cluster.transferTimeoutMs). */
export const CLAIM_RETRY_MS = 25;

/** Channels a draining process parks sessions over, in turn: the broker runs one queue declaration at a time per channel. */
export const PARK_CHANNELS = 4;

/** Members in one page of `GET /v1/channels/{channel}/presence`: the default, and the most a request may ask. */
export const MEMBERS_DEFAULT_LIMIT = 100;
export const MEMBERS_MAX_LIMIT = 1000;

/** A user name in a presence query, in characters: the cluster's questions carry names up to this. */
export const MAX_USER_NAME = 1024;

/** Connections in one page of `GET /v1/connections`: the default, and the most a request may ask. */
export const CONNECTIONS_DEFAULT_LIMIT = 100;
export const CONNECTIONS_MAX_LIMIT = 1000;

/** SSE session cookies read from one request: one per tab of a page that is open or within its grace; more are not looked at. */
export const MAX_SSE_COOKIES = 32;

/** Frames in one POST of an SSE session: each is answered in the reply, which must stay small beside the body bound. */
export const MAX_SEND_FRAMES = 100;

/** A close reason in bytes of UTF-8: what a WebSocket close frame can carry (RFC 6455 §5.5), so every transport can say it. */
export const MAX_CLOSE_REASON_BYTES = 123;

/** A resume token's length: issued ones are far shorter (a session id, an expiry, a holder, a MAC); longer ones are not read. */
export const MAX_TOKEN_BYTES = 512;

/** Member changes in one message to the cluster's presence owner: a join storm's tick is split into messages of at most this many. */
export const PRESENCE_CHANGES_PER_MESSAGE = 5000;

/** A message on the cluster's presence queue, in bytes: a process's whole count of 100,000 connections fits; a larger one is refused as malformed. */
export const MAX_PRESENCE_MESSAGE_BYTES = 64 * 1024 * 1024;

/** Connections of one user in one channel that one process's count may name: no process holds more sockets than this. */
export const MAX_PRESENCE_COUNT = 1_000_000;

/** Messages of the presence queue the owner holds unacked at once: changes beyond wait in the broker. */
export const PRESENCE_PREFETCH = 64;

/** How often, at most, the presence owner writes what the app was told beside the queue (ms): a new owner may repeat up to this much of it. */
export const TOLD_WRITE_MS = 1000;
