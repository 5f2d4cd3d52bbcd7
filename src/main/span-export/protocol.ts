// Messages between the gRPC thread's span processor (processor.ts) and the span export thread (worker.ts). Spans
// cross as plain records: what the OTLP, Zipkin and console exporters read from a ReadableSpan, and nothing else.
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

export type ToExportThread =
  /** Ended, sampled spans, and the process's resource (the same in every message). */
  | { type: 'spans'; resource: Attributes; spans: SpanRecord[] }
  /** Export everything received so far; answered with `done`. */
  | { type: 'flush'; id: number }
  /** Export everything and stop; answered with `done`. */
  | { type: 'shutdown'; id: number };

export type FromExportThread =
  /** This many spans have been handed to the export pipeline (the gRPC thread's bound on spans in transit). */
  | { type: 'taken'; spans: number }
  | { type: 'done'; id: number };
