// Presence events as frames to a channel's subscribers (`presence.frames`), a second consumer of
// what `Membership` emits beside the webhook's delivery. Each event of a matching channel becomes
// one push to that channel, routed as an app's push is: through the outbox of every subscriber
// (numbered, acked and replayed in reliable mode, counted in its bounds), spelled by the link's
// wire (`{"type":"presence","seq",…}` on a WebSocket, `event: presence` on SSE).
import type { Logger } from 'pino';
import { channelMatcher } from './channel-pattern.js';
import type { PresenceEvent } from './presence.js';
import { Push } from './push.js';
import { toChannel, type Target } from './target.js';

/** The event's fields as the frame carries them (`event` is its type: `type` is the frame's). */
export function presencePush(e: PresenceEvent): Push {
  const json = `{"event":"${e.type}","channel":${JSON.stringify(e.channel)},"user":${JSON.stringify(e.user)},"id":${JSON.stringify(e.id)},"at":"${e.at}"}`;
  return new Push({ kind: 'json', json }, { type: 'presence' });
}

/**
 * What takes each event for the channels `patterns` name; null when they name none. The events are
 * routed on a microtask, in the order they came: `Membership` emits in the middle of a change, and
 * a push can end a session (a full outbox closes it), which changes the membership again; that must
 * not happen inside the change that emitted.
 */
export function presenceFrames(patterns: readonly string[], route: (target: Target, push: Push) => Promise<unknown>, log: Logger): ((event: PresenceEvent) => void) | null {
  if (patterns.length === 0) return null;
  const framed = channelMatcher(patterns);
  const queue: PresenceEvent[] = [];
  const drain = (): void => {
    // Events emitted while these are routed (sessions they ended) join the queue and go after them.
    for (let i = 0; i < queue.length; i++) {
      const event = queue[i];
      route(toChannel(event.channel), presencePush(event)).catch((err: unknown) => {
        log.error({ err, channel: event.channel, type: event.type }, 'a presence frame could not be routed');
      });
    }
    queue.length = 0;
  };
  return (event) => {
    if (framed(event.channel) && queue.push(event) === 1) queueMicrotask(drain);
  };
}
