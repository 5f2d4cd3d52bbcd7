import { context, trace } from '@opentelemetry/api';
import pino, { type Logger } from 'pino';
import type { LogLevel } from './config';

/** JSON lines on stdout; a line written while a traced call is being handled carries its trace_id and span_id. */
export function createLogger(level: LogLevel): Logger {
  return pino({
    level,
    base: { service: 'tickserve' },
    mixin() {
      const span = trace.getSpan(context.active());
      if (span === undefined) return {};
      const { traceId, spanId } = span.spanContext();
      return { trace_id: traceId, span_id: spanId };
    },
  });
}
