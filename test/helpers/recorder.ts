// What a SwitchboardClient told its app, in order, so tests can wait for an event and then look
// at everything that came before it.
import type { SwitchboardClient, TransportName } from '../../client/index.js';
import { guard } from './app.js';

export interface Recorder {
  readonly client: SwitchboardClient;
  readonly transports: TransportName[];
  readonly messages: Array<{ data: unknown; seq: number }>;
  readonly events: string[];
  /** Resolves on the first event (past or future) for which `match` holds. */
  until(what: string, match: () => boolean): Promise<void>;
}

export function record(client: SwitchboardClient): Recorder {
  const transports: TransportName[] = [];
  const messages: Array<{ data: unknown; seq: number }> = [];
  const events: string[] = [];
  const checks: Array<() => void> = [];
  const changed = () => { for (const c of [...checks]) c(); };
  client.on('transport', ({ name }) => { transports.push(name); events.push(`transport:${name}`); changed(); });
  client.on('message', (data, { seq }) => { messages.push({ data, seq }); changed(); });
  client.on('open', ({ resumed }) => { events.push(`open:${resumed}`); changed(); });
  client.on('close', ({ willReconnect }) => { events.push(`close:${willReconnect}`); changed(); });
  client.on('refused', ({ status }) => { events.push(`refused:${status}`); changed(); });
  client.on('gap', () => { events.push('gap'); changed(); });
  client.on('reset', () => { events.push('reset'); changed(); });
  return {
    client, transports, messages, events,
    until(what, match) {
      return guard(new Promise<void>((resolve) => {
        const check = () => { if (match()) { checks.splice(checks.indexOf(check), 1); resolve(); } };
        checks.push(check);
        check();
      }), what);
    },
  };
}
