// Messages between the gRPC thread's span processor (processor.ts) and the span export thread (worker.ts). Spans
// cross as plain records: what the OTLP, Zipkin and console exporters read from a ReadableSpan, and nothing else.
// A call's SERVER span crosses as a smaller record still (ServerSpanRecord): it never was an SDK span, and the
// export thread makes its attributes, status and times from the few fields that differ from call to call.
import type { Attributes, HrTime, SpanStatus } from '@opentelemetry/api';

export interface LinkRecord {
  traceId: string;
  spanId: string;
  traceFlags: number;
  isRemote?: boolean;
  traceState?: string;
  attributes?: Attributes;
  droppedAttributesCount?: number;
}

export interface EventRecord {
  name: string;
  time: HrTime;
  attributes?: Attributes;
  droppedAttributesCount?: number;
}

export interface SpanRecord {
  name: string;
  kind: number;
  traceId: string;
  spanId: string;
  traceFlags: number;
  /** W3C tracestate, serialized. */
  traceState?: string;
  parentSpanId?: string;
  parentIsRemote?: boolean;
  startTime: HrTime;
  endTime: HrTime;
  duration: HrTime;
  attributes: Attributes;
  status: SpanStatus;
  links: LinkRecord[];
  events: EventRecord[];
  droppedAttributesCount: number;
  droppedEventsCount: number;
  droppedLinksCount: number;
  scope: { name: string; version?: string; schemaUrl?: string };
}

/**
 * One call's SERVER span (kind SERVER, scope `tickserve`, sampled), recorded by the gRPC interceptor without an
 * SDK span. Its attributes are `rpc.system`, `rpc.service`, `rpc.method` (from `name`), `network.peer.address` and
 * `network.peer.port` (from `peer`) and `rpc.grpc.status_code`; its status is ERROR with `statusMessage` when
 * `code` is not OK.
 */
export interface ServerSpanRecord {
  /** "inference.ModelService/Predict": the span's name, and its service and method. */
  name: string;
  traceId: string;
  spanId: string;
  /** The caller's span (always remote); undefined for a root span. */
  parentSpanId: string | undefined;
  /** The caller's W3C tracestate, as received. */
  traceStateHeader: string | undefined;
  /** performance.now() on the gRPC thread at the call's request headers and at its status: the message's
   * timeOrigin turns them into epoch times. */
  startMs: number;
  endMs: number;
  /** gRPC status code. */
  code: number;
  /** "INVALID_ARGUMENT: <details>" for a call that failed; undefined for OK. */
  statusMessage: string | undefined;
  /** grpc-js's peer string: "host:port", or "unknown". */
  peer: string;
}

export type ToExportThread =
  /**
   * Ended, sampled spans, and the process's resource (the same in every message). `timeOrigin` is the gRPC
   * thread's performance.timeOrigin, for the times of the server spans (the export thread's own differs).
   */
  | { type: 'spans'; resource: Attributes; timeOrigin: number; spans: SpanRecord[]; serverSpans: ServerSpanRecord[] }
  /** Export everything received so far; answered with `done`. */
  | { type: 'flush'; id: number }
  /** Export everything and stop; answered with `done`. */
  | { type: 'shutdown'; id: number };

export type FromExportThread =
  /** This many spans have been handed to the export pipeline (the gRPC thread's bound on spans in transit). */
  | { type: 'taken'; spans: number }
  | { type: 'done'; id: number };
