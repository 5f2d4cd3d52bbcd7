import pino, { type Logger } from 'pino';
import type { LogLevel } from './config';

/**
 * JSON lines on stdout. Request-scoped lines (a failed call) carry the call's trace_id and span_id explicitly:
 * there is no ambient context to read them from (see telemetry.ts).
 */
export function createLogger(level: LogLevel): Logger {
  return pino({ level, base: { service: 'tickserve' } });
}
