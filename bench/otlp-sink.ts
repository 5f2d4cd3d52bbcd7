// An OTLP/HTTP (protobuf) trace receiver for the telemetry-cost benchmark, run as its own process: a receiver inside
// bench:compare could not answer while the comparison waits on h2load synchronously, and a server whose exports
// hang drops spans once its queue is full, which made tracing look cheaper than it is. It counts what it receives
// (GET /stats), so the report can show that every span arrived: all spans, and the SERVER spans of Predict and
// StreamPredict calls apart, to set beside the calls made. Prints its port on stdout.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { WIRE_LENGTH_DELIMITED, WIRE_VARINT, WireReader } from './wire';

const stats = { requests: 0, bytes: 0, spans: 0, callSpans: 0 };

/** OTLP Span fields: name (5), kind (6); SPAN_KIND_SERVER. */
const SPAN_NAME = 5;
const SPAN_KIND = 6;
const SPAN_KIND_SERVER = 2;
const CALL_SPAN_NAMES = new Set(['inference.ModelService/Predict', 'inference.ModelService/StreamPredict']);

/** Whether a Span message is the SERVER span of a Predict or StreamPredict call. */
function isCallSpan(span: Buffer): boolean {
  const reader = new WireReader().reset(span);
  let name = '';
  let kind = 0;
  // Fields come in number order (as the SDK's serializer writes them): past kind, the rest is not needed.
  while (!reader.done) {
    const tag = reader.varint();
    const field = tag >>> 3;
    if (field > SPAN_KIND) break;
    if (field === SPAN_NAME && (tag & 7) === WIRE_LENGTH_DELIMITED) {
      const length = reader.varint();
      name = span.toString('utf8', reader.at, reader.at + length);
      reader.at += length;
    } else if (field === SPAN_KIND && (tag & 7) === WIRE_VARINT) kind = reader.varint();
    else if (!reader.skip(tag & 7)) break;
  }
  return kind === SPAN_KIND_SERVER && CALL_SPAN_NAMES.has(name);
}

/** Calls `onField(field, value)` for each length-delimited field of a protobuf message; skips the others. */
function eachLengthDelimited(message: Buffer, onField: (field: number, value: Buffer) => void): void {
  const reader = new WireReader().reset(message);
  while (!reader.done) {
    const tag = reader.varint();
    if ((tag & 7) === WIRE_LENGTH_DELIMITED) {
      const length = reader.varint();
      onField(tag >>> 3, message.subarray(reader.at, reader.at + length));
      reader.at += length;
    } else if (!reader.skip(tag & 7)) return; // groups: not in OTLP
  }
}

/** Counts the spans of an ExportTraceServiceRequest: resource_spans (1) → scope_spans (2) → spans (2). */
function countSpans(request: Buffer): void {
  eachLengthDelimited(request, (field, resourceSpans) => {
    if (field !== 1) return;
    eachLengthDelimited(resourceSpans, (field, scopeSpans) => {
      if (field !== 2) return;
      eachLengthDelimited(scopeSpans, (field, span) => {
        if (field !== 2) return;
        stats.spans++;
        if (isCallSpan(span)) stats.callSpans++;
      });
    });
  });
}

const server = http.createServer((req, res) => {
  if (req.method === 'GET' && req.url === '/stats') {
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(stats));
    return;
  }
  const chunks: Buffer[] = [];
  req.on('data', (chunk: Buffer) => chunks.push(chunk));
  req.on('end', () => {
    const body = Buffer.concat(chunks);
    stats.requests++;
    stats.bytes += body.length;
    countSpans(body);
    res.writeHead(200, { 'content-type': 'application/x-protobuf' }).end();
  });
});
server.listen(0, '127.0.0.1', () => process.stdout.write(`${(server.address() as AddressInfo).port}\n`));
process.on('SIGTERM', () => server.close(() => process.exit(0)));
