// The span export thread: it rebuilds the spans that the gRPC thread posts as records and hands them to the span
// processors that the OpenTelemetry SDK builds from the OTEL_* variables (OTEL_TRACES_EXPORTER, the OTLP protocol,
// endpoint and headers, OTEL_BSP_*): batching, OTLP serialization and the network happen here, off the thread
// that answers RPCs. It imports nothing from the main thread but the message types.
import { SpanKind, SpanStatusCode, type Attributes, type HrTime, type SpanStatus } from '@opentelemetry/api';
import { addHrTimes, hrTimeDuration, millisToHrTime, TraceState } from '@opentelemetry/core';
import { resourceFromAttributes, type Resource } from '@opentelemetry/resources';
import type { ReadableSpan } from '@opentelemetry/sdk-trace-base';
// The function NodeSDK itself uses to turn OTEL_* into span processors. It is not in sdk-node's public index, so it
// is imported by path; the tests export over all three OTLP protocols through this thread and fail if it moves.
import { getSpanProcessorsFromEnv } from '@opentelemetry/sdk-node/build/src/utils';
import { parentPort } from 'node:worker_threads';
import type { FromExportThread, ServerSpanRecord, SpanRecord, ToExportThread } from './protocol';

const processors = getSpanProcessorsFromEnv(undefined);
let resource: Resource | null = null;

/** The scope of the server spans: the tracer name the gRPC thread's SDK spans carry too. */
const SERVER_SCOPE = Object.freeze({ name: 'tickserve' });
const STATUS_OK: SpanStatus = Object.freeze({ code: SpanStatusCode.UNSET });
const NO_LINKS = Object.freeze([]) as unknown as ReadableSpan['links'];
const NO_EVENTS = Object.freeze([]) as unknown as ReadableSpan['events'];

/** `rpc.*` attributes by span name ("inference.ModelService/Predict"), made once each. */
const methodAttributes = new Map<string, Attributes>();
/** `network.peer.*` attributes by grpc-js peer string ("host:port"); a connection's calls share one entry. */
const peerAttributes = new Map<string, Attributes>();
const PEER_CACHE_LIMIT = 4096;

function methodAttributesOf(name: string): Attributes {
  let attributes = methodAttributes.get(name);
  if (attributes === undefined) {
    const slash = name.lastIndexOf('/');
    attributes = Object.freeze({ 'rpc.system': 'grpc', 'rpc.service': name.slice(0, slash), 'rpc.method': name.slice(slash + 1) });
    methodAttributes.set(name, attributes);
  }
  return attributes;
}

function peerAttributesOf(peer: string): Attributes {
  let attributes = peerAttributes.get(peer);
  if (attributes !== undefined) return attributes;
  const colon = peer.lastIndexOf(':');
  attributes = Object.freeze({
    'network.peer.address': colon > 0 ? peer.slice(0, colon).replace(/^\[|\]$/g, '') : peer,
    ...(colon > 0 ? { 'network.peer.port': Number(peer.slice(colon + 1)) } : {}),
  });
  if (peerAttributes.size >= PEER_CACHE_LIMIT) peerAttributes.clear();
  peerAttributes.set(peer, attributes);
  return attributes;
}

/** A call's SERVER span, made from its record as the SDK would have made it (see ServerSpanRecord). */
function serverSpan(record: ServerSpanRecord, origin: HrTime, spanResource: Resource): ReadableSpan {
  const traceState = record.traceStateHeader === undefined ? undefined : new TraceState(record.traceStateHeader);
  const context = { traceId: record.traceId, spanId: record.spanId, traceFlags: 1, traceState };
  const startTime = addHrTimes(origin, millisToHrTime(record.startMs));
  const endTime = addHrTimes(origin, millisToHrTime(record.endMs));
  return {
    name: record.name,
    kind: SpanKind.SERVER,
    spanContext: () => context,
    parentSpanContext:
      record.parentSpanId === undefined
        ? undefined
        : { traceId: record.traceId, spanId: record.parentSpanId, traceFlags: 1, isRemote: true },
    startTime,
    endTime,
    duration: hrTimeDuration(startTime, endTime),
    status: record.statusMessage === undefined ? STATUS_OK : { code: SpanStatusCode.ERROR, message: record.statusMessage },
    attributes: { ...methodAttributesOf(record.name), ...peerAttributesOf(record.peer), 'rpc.grpc.status_code': record.code },
    links: NO_LINKS,
    events: NO_EVENTS,
    ended: true,
    resource: spanResource,
    instrumentationScope: SERVER_SCOPE,
    droppedAttributesCount: 0,
    droppedEventsCount: 0,
    droppedLinksCount: 0,
  };
}

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
      const origin = millisToHrTime(message.timeOrigin);
      for (const record of message.serverSpans) {
        const span = serverSpan(record, origin, resource);
        for (const processor of processors) processor.onEnd(span);
      }
      for (const record of message.spans) {
        const span = toReadableSpan(record, resource);
        for (const processor of processors) processor.onEnd(span);
      }
      reply({ type: 'taken', spans: message.spans.length + message.serverSpans.length });
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
