// An OTLP trace receiver inside the tests (no Collector binary exists on these machines): OTLP/gRPC, OTLP/HTTP with
// protobuf and OTLP/HTTP with JSON, all decoded into one simple span shape.
import * as grpc from '@grpc/grpc-js';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import protobuf from 'protobufjs';

// The subset of opentelemetry/proto/collector/trace/v1 and trace/v1 that the tests read (field numbers as upstream).
const OTLP_SUBSET = `
syntax = "proto3";
package otlp;
message ExportTraceServiceRequest { repeated ResourceSpans resource_spans = 1; }
message ResourceSpans { Resource resource = 1; repeated ScopeSpans scope_spans = 2; }
message Resource { repeated KeyValue attributes = 1; }
message ScopeSpans { repeated Span spans = 2; }
message Span {
  bytes trace_id = 1; bytes span_id = 2; string trace_state = 3; bytes parent_span_id = 4; string name = 5; int32 kind = 6;
  fixed64 start_time_unix_nano = 7; fixed64 end_time_unix_nano = 8; repeated KeyValue attributes = 9;
  repeated Link links = 13; Status status = 15;
}
message Link { bytes trace_id = 1; bytes span_id = 2; }
message Status { string message = 2; int32 code = 3; }
message KeyValue { string key = 1; AnyValue value = 2; }
message AnyValue { string string_value = 1; bool bool_value = 2; int64 int_value = 3; double double_value = 4; }
`;
const ExportRequest = protobuf.parse(OTLP_SUBSET, { keepCase: true }).root.lookupType('otlp.ExportTraceServiceRequest');

export interface ReceivedSpan {
  traceId: string;
  spanId: string;
  parentSpanId: string;
  name: string;
  kind: number;
  attributes: Record<string, string | number | boolean>;
  links: Array<{ traceId: string; spanId: string }>;
  status: { code: number; message: string };
  serviceName: string;
  /** Every attribute of the span's resource. */
  resource: Record<string, string | number | boolean>;
  /** Epoch nanoseconds, as numbers (sub-microsecond precision lost). */
  startTimeUnixNano: number;
  endTimeUnixNano: number;
  traceState: string;
  /** Event names, in order. */
  events: string[];
  scopeName: string;
}

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

const hex = (value: unknown): string =>
  value === undefined || value === null ? '' : typeof value === 'string' ? value.toLowerCase() : Buffer.from(value as Uint8Array).toString('hex');

function attributeValue(value: Json | undefined): string | number | boolean {
  if (!value) return '';
  const v = value.stringValue ?? value.string_value ?? value.boolValue ?? value.bool_value ?? value.intValue ?? value.int_value ?? value.doubleValue ?? value.double_value;
  if (typeof v === 'object' && v !== null && 'toNumber' in v) return (v as { toNumber(): number }).toNumber();
  return typeof v === 'string' && /^-?\d+$/.test(v) && (value.intValue !== undefined || value.int_value !== undefined) ? Number(v) : v;
}

function attributes(list: Json[] | undefined): Record<string, string | number | boolean> {
  return Object.fromEntries((list ?? []).map((kv) => [kv.key, attributeValue(kv.value)]));
}

/** Both the JSON form (camelCase, hex ids) and the decoded protobuf form (snake_case, byte ids). */
function normalise(request: Json): ReceivedSpan[] {
  const spans: ReceivedSpan[] = [];
  for (const rs of request.resourceSpans ?? request.resource_spans ?? []) {
    const resource = attributes(rs.resource?.attributes);
    const serviceName = String(resource['service.name'] ?? '');
    for (const ss of rs.scopeSpans ?? rs.scope_spans ?? []) {
      const scopeName = String(ss.scope?.name ?? '');
      for (const span of ss.spans ?? []) {
        spans.push({
          traceId: hex(span.traceId ?? span.trace_id),
          spanId: hex(span.spanId ?? span.span_id),
          parentSpanId: hex(span.parentSpanId ?? span.parent_span_id),
          name: span.name,
          kind: Number(span.kind ?? 0),
          attributes: attributes(span.attributes),
          links: (span.links ?? []).map((l: Json) => ({ traceId: hex(l.traceId ?? l.trace_id), spanId: hex(l.spanId ?? l.span_id) })),
          status: { code: Number(span.status?.code ?? 0), message: String(span.status?.message ?? '') },
          serviceName,
          resource,
          startTimeUnixNano: Number(span.startTimeUnixNano ?? span.start_time_unix_nano ?? 0),
          endTimeUnixNano: Number(span.endTimeUnixNano ?? span.end_time_unix_nano ?? 0),
          traceState: String(span.traceState ?? span.trace_state ?? ''),
          events: (span.events ?? []).map((e: Json) => String(e.name)),
          scopeName,
        });
      }
    }
  }
  return spans;
}

export class OtlpReceiver {
  readonly spans: ReceivedSpan[] = [];
  readonly contentTypes = new Set<string>();
  private http: http.Server | null = null;
  private grpcServer: grpc.Server | null = null;
  httpPort = 0;
  grpcPort = 0;

  async start(): Promise<void> {
    this.http = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (chunk: Buffer) => chunks.push(chunk));
      req.on('end', () => {
        const body = Buffer.concat(chunks);
        const type = req.headers['content-type'] ?? '';
        this.contentTypes.add(type);
        if (req.url === '/v1/traces' && type.includes('json')) {
          this.spans.push(...normalise(JSON.parse(body.toString('utf8'))));
          res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
        } else if (req.url === '/v1/traces') {
          this.spans.push(...normalise(ExportRequest.toObject(ExportRequest.decode(body), { longs: Number }) as Json));
          res.writeHead(200, { 'content-type': 'application/x-protobuf' }).end();
        } else {
          res.writeHead(404).end();
        }
      });
    });
    await new Promise<void>((resolve) => this.http!.listen(0, '127.0.0.1', resolve));
    this.httpPort = (this.http.address() as AddressInfo).port;

    this.grpcServer = new grpc.Server();
    const raw = (b: Buffer) => b;
    this.grpcServer.addService(
      {
        Export: {
          path: '/opentelemetry.proto.collector.trace.v1.TraceService/Export',
          requestStream: false,
          responseStream: false,
          requestSerialize: raw,
          requestDeserialize: raw,
          responseSerialize: raw,
          responseDeserialize: raw,
        },
      },
      {
        Export: (call: grpc.ServerUnaryCall<Buffer, Buffer>, callback: grpc.sendUnaryData<Buffer>) => {
          this.contentTypes.add('application/grpc');
          this.spans.push(...normalise(ExportRequest.toObject(ExportRequest.decode(call.request), { longs: Number }) as Json));
          callback(null, Buffer.alloc(0));
        },
      },
    );
    this.grpcPort = await new Promise<number>((resolve, reject) =>
      this.grpcServer!.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, port) => (e ? reject(e) : resolve(port))),
    );
  }

  /** Resolves with the received spans once `predicate` holds for them. */
  async waitFor(predicate: (spans: ReceivedSpan[]) => boolean, timeoutMs = 10_000): Promise<ReceivedSpan[]> {
    const started = Date.now();
    while (!predicate(this.spans)) {
      if (Date.now() - started > timeoutMs) {
        throw new Error(`spans not received in time; got: ${this.spans.map((s) => s.name).join(', ') || 'none'}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    return this.spans;
  }

  async stop(): Promise<void> {
    await new Promise<void>((resolve) => this.http?.close(() => resolve()) ?? resolve());
    this.grpcServer?.forceShutdown();
  }
}
