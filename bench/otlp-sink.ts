// An OTLP/HTTP (protobuf) trace receiver for the telemetry-cost benchmark, run as its own process: a receiver inside
// bench:compare could not answer while the comparison waits on h2load synchronously, and a server whose exports
// hang drops spans once its queue is full, which made tracing look cheaper than it is. It counts what it receives
// (GET /stats), so the report can show that every span arrived. Prints its port on stdout.
import http from 'node:http';
import type { AddressInfo } from 'node:net';

const stats = { requests: 0, bytes: 0, spans: 0 };

/** Calls `onField(field, value)` for each length-delimited field of a protobuf message; skips the others. */
function eachLengthDelimited(message: Buffer, onField: (field: number, value: Buffer) => void): void {
  let at = 0;
  const varint = () => {
    let value = 0;
    let factor = 1;
    let byte: number;
    do {
      byte = message[at++];
      value += (byte & 0x7f) * factor;
      factor *= 128;
    } while (byte >= 0x80 && at < message.length);
    return value;
  };
  while (at < message.length) {
    const tag = varint();
    const wire = tag & 7;
    if (wire === 0) varint();
    else if (wire === 1) at += 8;
    else if (wire === 5) at += 4;
    else if (wire === 2) {
      const length = varint();
      onField(tag >>> 3, message.subarray(at, at + length));
      at += length;
    } else return; // groups: not in OTLP
  }
}

/** Spans in an ExportTraceServiceRequest: resource_spans (1) → scope_spans (2) → spans (2). */
function countSpans(request: Buffer): number {
  let spans = 0;
  eachLengthDelimited(request, (field, resourceSpans) => {
    if (field !== 1) return;
    eachLengthDelimited(resourceSpans, (field, scopeSpans) => {
      if (field !== 2) return;
      eachLengthDelimited(scopeSpans, (field) => {
        if (field === 2) spans++;
      });
    });
  });
  return spans;
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
    stats.spans += countSpans(body);
    res.writeHead(200, { 'content-type': 'application/x-protobuf' }).end();
  });
});
server.listen(0, '127.0.0.1', () => process.stdout.write(`${(server.address() as AddressInfo).port}\n`));
process.on('SIGTERM', () => server.close(() => process.exit(0)));
