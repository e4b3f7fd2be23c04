import { pino, type Logger } from 'pino';

export type { Logger };

/** JSON lines on stdout; payloads only ever at debug. */
export function createLogger(level: string, bindings: Record<string, unknown> = {}): Logger {
  return pino({ level, base: { ...bindings }, timestamp: pino.stdTimeFunctions.isoTime });
}
