// The span export thread: it rebuilds the spans that the gRPC thread posts as records and hands them to the span
// processors that the OpenTelemetry SDK builds from the OTEL_* variables (OTEL_TRACES_EXPORTER, the OTLP protocol,
// endpoint and headers, OTEL_BSP_*): batching, OTLP serialization and the network happen here, off the thread
// that answers RPCs. It imports nothing from the main thread but the message types.
import { TraceState } from '@opentelemetry/core';
import { resourceFromAttributes, type Resource } from '@opentelemetry/resources';
import type { ReadableSpan } from '@opentelemetry/sdk-trace-base';
// The function NodeSDK itself uses to turn OTEL_* into span processors. It is not in sdk-node's public index, so it
// is imported by path; the tests export over all three OTLP protocols through this thread and fail if it moves.
import { getSpanProcessorsFromEnv } from '@opentelemetry/sdk-node/build/src/utils';
import { parentPort } from 'node:worker_threads';
import type { FromExportThread, SpanRecord, ToExportThread } from './protocol';

const processors = getSpanProcessorsFromEnv(undefined);
let resource: Resource | null = null;

function toReadableSpan(record: SpanRecord, spanResource: Resource): ReadableSpan {
  const context = {
    traceId: record.traceId,
    spanId: record.spanId,
    traceFlags: record.traceFlags,
    traceState: record.traceState === undefined ? undefined : new TraceState(record.traceState),
  };
  return {
    name: record.name,
    kind: record.kind,
    spanContext: () => context,
    parentSpanContext:
      record.parentSpanId === undefined
        ? undefined
        : { traceId: record.traceId, spanId: record.parentSpanId, traceFlags: record.traceFlags, isRemote: record.parentIsRemote },
    startTime: record.startTime,
    endTime: record.endTime,
    duration: record.duration,
    status: record.status,
    attributes: record.attributes,
    links: record.links.map((link) => ({
      context: {
        traceId: link.traceId,
        spanId: link.spanId,
        traceFlags: link.traceFlags,
        isRemote: link.isRemote,
        traceState: link.traceState === undefined ? undefined : new TraceState(link.traceState),
      },
      attributes: link.attributes,
      droppedAttributesCount: link.droppedAttributesCount,
    })),
    events: record.events,
    ended: true,
    resource: spanResource,
    instrumentationScope: record.scope,
    droppedAttributesCount: record.droppedAttributesCount,
    droppedEventsCount: record.droppedEventsCount,
    droppedLinksCount: record.droppedLinksCount,
  };
}

const reply = (message: FromExportThread) => parentPort!.postMessage(message);

parentPort!.on('message', (message: ToExportThread) => {
  switch (message.type) {
    case 'spans': {
      resource ??= resourceFromAttributes(message.resource);
      for (const record of message.spans) {
        const span = toReadableSpan(record, resource);
        for (const processor of processors) processor.onEnd(span);
      }
      reply({ type: 'taken', spans: message.spans.length });
      break;
    }
    case 'flush':
      void Promise.allSettled(processors.map((p) => p.forceFlush())).then(() => reply({ type: 'done', id: message.id }));
      break;
    case 'shutdown':
      void Promise.allSettled(processors.map((p) => p.shutdown())).then(() => reply({ type: 'done', id: message.id }));
      break;
  }
});
