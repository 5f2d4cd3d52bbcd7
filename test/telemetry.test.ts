// Traces, metrics and logs, end to end: the server runs as a user runs it (its own process, configured only by
// environment variables), exports to an OTLP receiver inside the test, and serves /metrics.
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { protoPath as healthProtoPath } from 'grpc-health-check';
import assert from 'node:assert/strict';
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { once } from 'node:events';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { featuresFor } from './helpers/models';
import { OtlpReceiver, type ReceivedSpan } from './helpers/otlp-receiver';
import { freePort, modelClient, type ModelServiceClient, type PredictReply } from './helpers/server';

const ENTRY = path.join(__dirname, '..', 'src', 'main', 'index.js');
const SERVER = 2; // SpanKind.SERVER in OTLP (SPAN_KIND_SERVER)
const ERROR = 2; // STATUS_CODE_ERROR

interface RunningServer {
  child: ChildProcessWithoutNullStreams;
  client: ModelServiceClient;
  metricsPort: number;
  stdout: () => string;
  stderr: () => string;
  stop(): Promise<void>;
}

async function startServer(env: Record<string, string>): Promise<RunningServer> {
  const metricsPort = await freePort();
  const child = spawn(process.execPath, [ENTRY], {
    env: { PATH: process.env.PATH ?? '', HOST: '127.0.0.1', PORT: '0', METRICS_PORT: String(metricsPort), OTEL_BSP_SCHEDULE_DELAY: '50', ...env },
  });
  let out = '';
  let err = '';
  child.stdout.on('data', (chunk) => (out += chunk));
  child.stderr.on('data', (chunk) => (err += chunk));
  while (!/"port":(\d+)/.test(out)) {
    if (child.exitCode !== null) throw new Error(`server exited: ${err}`);
    await once(child.stdout, 'data');
  }
  const client = modelClient(`127.0.0.1:${/"port":(\d+)/.exec(out)![1]}`);
  return {
    child,
    client,
    metricsPort,
    stdout: () => out,
    stderr: () => err,
    async stop() {
      client.close();
      child.kill('SIGTERM');
      if (child.exitCode === null) await once(child, 'exit');
    },
  };
}

const TRACE_ID = '4bf92f3577b34da6a3ce929d0e0e4736';
const PARENT_SPAN = '00f067aa0ba902b7';
const traceparent = (traceId = TRACE_ID, spanId = PARENT_SPAN, flags = '01') => `00-${traceId}-${spanId}-${flags}`;

function predictWithTrace(client: ModelServiceClient, request: object, traceId = TRACE_ID, sampled = true): Promise<PredictReply> {
  const metadata = new grpc.Metadata();
  metadata.set('traceparent', traceparent(traceId, PARENT_SPAN, sampled ? '01' : '00'));
  metadata.set('tracestate', 'vendor=1');
  metadata.set('baggage', 'desk=rates');
  return new Promise((resolve, reject) =>
    client.Predict(request, metadata, {}, (error, reply) => (error ? reject(error) : resolve(reply!))),
  );
}

const serverSpan = (spans: ReceivedSpan[], traceId: string, name: string) =>
  spans.find((s) => s.traceId === traceId && s.name === name && s.kind === SERVER);

describe('traces over OTLP/HTTP JSON', () => {
  const receiver = new OtlpReceiver();
  let server: RunningServer;
  before(async () => {
    await receiver.start();
    server = await startServer({
      OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${receiver.httpPort}`,
      OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json',
      OTEL_SERVICE_NAME: 'tickserve-test',
      LOG_LEVEL: 'debug',
    });
  });
  after(async () => {
    await server.stop();
    await receiver.stop();
  });

  it('continues the caller\'s trace: a SERVER span, child of the client\'s traceparent, with RPC attributes', async () => {
    await predictWithTrace(server.client, { features: featuresFor(1, 1, 17) });
    const spans = await receiver.waitFor((all) => serverSpan(all, TRACE_ID, 'inference.ModelService/Predict') !== undefined);
    const span = serverSpan(spans, TRACE_ID, 'inference.ModelService/Predict')!;
    assert.equal(span.parentSpanId, PARENT_SPAN);
    assert.equal(span.serviceName, 'tickserve-test');
    assert.equal(span.attributes['rpc.system'], 'grpc');
    assert.equal(span.attributes['rpc.service'], 'inference.ModelService');
    assert.equal(span.attributes['rpc.method'], 'Predict');
    assert.equal(span.attributes['rpc.grpc.status_code'], 0);
    assert.equal(span.attributes['network.peer.address'], '127.0.0.1');
    assert.equal(span.status.code, 0);
  });

  it('gives a request span the resource and the clock of the SDK\'s spans: its batch span\'s resource, times around the batch', async () => {
    const traceId = 'f1'.repeat(16);
    await predictWithTrace(server.client, { features: featuresFor(5, 1, 17) }, traceId);
    const linked = (all: ReceivedSpan[], request: ReceivedSpan | undefined) =>
      all.find((s) => request !== undefined && s.name === 'inference.batch' && s.links.some((l) => l.spanId === request.spanId));
    const spans = await receiver.waitFor((all) => linked(all, serverSpan(all, traceId, 'inference.ModelService/Predict')) !== undefined);
    const request = serverSpan(spans, traceId, 'inference.ModelService/Predict')!;
    const batch = linked(spans, request)!;
    assert.deepEqual(request.resource, batch.resource);
    assert.equal(request.resource['service.name'], 'tickserve-test');
    assert.equal(request.resource['process.pid'], server.child.pid); // NodeSDK's process and host detectors
    assert.ok(request.resource['host.name']);
    assert.equal(request.scopeName, 'tickserve');
    assert.equal(request.traceState, 'vendor=1');
    // Both on one clock: the request's span, from its headers to its status, holds its batch (1 µs of rounding).
    assert.ok(request.startTimeUnixNano <= batch.startTimeUnixNano + 1000, `${request.startTimeUnixNano} > ${batch.startTimeUnixNano}`);
    assert.ok(batch.endTimeUnixNano <= request.endTimeUnixNano + 1000, `${batch.endTimeUnixNano} > ${request.endTimeUnixNano}`);
    assert.ok(Math.abs(request.startTimeUnixNano / 1e6 - Date.now()) < 60_000);
  });

  it('records the batch as a span linked to the span of every request it served', async () => {
    const traceIds = Array.from({ length: 8 }, (_, i) => `${'a'.repeat(31)}${i}`);
    await Promise.all(traceIds.map((id, i) => predictWithTrace(server.client, { features: featuresFor(i, 1, 17) }, id)));
    const spans = await receiver.waitFor((all) => traceIds.every((id) => serverSpan(all, id, 'inference.ModelService/Predict')));
    const requestSpans = traceIds.map((id) => serverSpan(spans, id, 'inference.ModelService/Predict')!);
    await receiver.waitFor((all) => requestSpans.every((r) => all.some((s) => s.name === 'inference.batch' && s.links.some((l) => l.spanId === r.spanId))));
    for (const request of requestSpans) {
      const batch = receiver.spans.find((s) => s.name === 'inference.batch' && s.links.some((l) => l.spanId === request.spanId))!;
      assert.ok(Number(batch.attributes['tickserve.batch.rows']) >= 1);
      assert.equal(batch.attributes['tickserve.batch.requests'], batch.links.length);
      assert.ok(Number(batch.attributes['tickserve.batch.compute_us']) > 0);
      assert.ok('tickserve.batch.queue_wait_us.max' in batch.attributes);
      assert.equal(batch.attributes['tickserve.worker.id'], Number(batch.attributes['tickserve.worker.id']));
      assert.equal(batch.attributes['model.name'], 'default');
      assert.equal(batch.attributes['model.version'], '1');
      // The batch span sits in the trace of one of its requests, under that request's span.
      const parent = requestSpans.find((r) => r.spanId === batch.parentSpanId);
      assert.ok(parent, 'the batch span is a child of one of its requests');
      assert.equal(batch.traceId, parent.traceId);
    }
  });

  it('ends a failed call\'s span with status ERROR and its gRPC code, and logs it with the trace id', async () => {
    const traceId = 'b'.repeat(32);
    await assert.rejects(predictWithTrace(server.client, { features: [1, 2, 3] }, traceId));
    const spans = await receiver.waitFor((all) => serverSpan(all, traceId, 'inference.ModelService/Predict') !== undefined);
    const span = serverSpan(spans, traceId, 'inference.ModelService/Predict')!;
    assert.equal(span.status.code, ERROR);
    assert.match(span.status.message, /INVALID_ARGUMENT: wrong feature count/);
    assert.equal(span.attributes['rpc.grpc.status_code'], grpc.status.INVALID_ARGUMENT);
    const line = server.stdout().split('\n').find((l) => l.includes(traceId) && l.includes('call failed'));
    assert.ok(line, 'no log line with the trace id');
    const entry = JSON.parse(line);
    assert.equal(entry.trace_id, traceId);
    assert.equal(entry.span_id, span.spanId);
    assert.equal(entry.code, 'INVALID_ARGUMENT');
  });

  it('links a batch only to its sampled requests: an unsampled caller\'s trace gets no span and no link', async () => {
    const sampled = Array.from({ length: 12 }, (_, i) => `${'d'.repeat(31)}${i.toString(16)}`);
    const unsampled = Array.from({ length: 12 }, (_, i) => `${'e'.repeat(31)}${i.toString(16)}`);
    // Interleaved and concurrent, so that batches mix sampled and unsampled requests.
    await Promise.all(sampled.flatMap((id, i) => [
      predictWithTrace(server.client, { features: featuresFor(i, 1, 17) }, id, true),
      predictWithTrace(server.client, { features: featuresFor(i, 1, 17) }, unsampled[i], false),
    ]));
    const spans = await receiver.waitFor((all) => sampled.every((id) => {
      const request = serverSpan(all, id, 'inference.ModelService/Predict');
      return request !== undefined && all.some((s) => s.name === 'inference.batch' && s.links.some((l) => l.spanId === request.spanId));
    }));
    const batches = spans.filter((s) => s.name === 'inference.batch' && s.links.some((l) => sampled.includes(l.traceId)));
    for (const batch of batches) {
      assert.ok(batch.links.every((l) => !unsampled.includes(l.traceId)), 'a batch span links to an unsampled request');
      assert.ok(Number(batch.attributes['tickserve.batch.requests']) >= batch.links.length);
    }
    assert.ok(
      batches.some((b) => Number(b.attributes['tickserve.batch.requests']) > b.links.length),
      'no batch mixed sampled and unsampled requests, so the test proved nothing',
    );
    assert.ok(spans.every((s) => !unsampled.includes(s.traceId)), 'an unsampled trace was exported');
  });

  it('gives a stream one SERVER span, and its batches link to it', async () => {
    const traceId = 'c'.repeat(32);
    const metadata = new grpc.Metadata();
    metadata.set('traceparent', traceparent(traceId));
    const stream = server.client.StreamPredict(metadata);
    stream.on('error', () => {});
    let answers = 0;
    stream.on('data', () => answers++);
    for (let i = 0; i < 5; i++) stream.write({ features: featuresFor(i, 1, 17) });
    stream.end();
    await once(stream, 'end');
    assert.equal(answers, 5);
    const spans = await receiver.waitFor((all) => serverSpan(all, traceId, 'inference.ModelService/StreamPredict') !== undefined);
    const span = serverSpan(spans, traceId, 'inference.ModelService/StreamPredict')!;
    assert.equal(span.parentSpanId, PARENT_SPAN);
    assert.equal(span.status.code, 0);
    await receiver.waitFor((all) => all.some((s) => s.name === 'inference.batch' && s.links.some((l) => l.spanId === span.spanId)));
  });

  it('serves Prometheus metrics: RPC durations by method and code, batch sizes, queue, compute, workers, model', async () => {
    const text = await (await fetch(`http://127.0.0.1:${server.metricsPort}/metrics`)).text();
    const samples = text.split('\n').filter((l) => l !== '' && !l.startsWith('#'));
    const sample = (name: string, labels: RegExp = /.*/) => samples.find((l) => l.startsWith(name) && labels.test(l));
    const value = (line: string | undefined) => Number(line?.split(' ').pop());
    assert.ok(value(sample('rpc_server_duration_count', /rpc_method="Predict".*rpc_grpc_status_code="0"/)) >= 9, text);
    assert.ok(value(sample('rpc_server_duration_count', /rpc_method="Predict".*rpc_grpc_status_code="3"/)) >= 1);
    assert.ok(sample('rpc_server_duration_bucket', /le="0.5"/));
    assert.ok(value(sample('tickserve_requests_total', /rpc_method="Predict".*rpc_grpc_status_code="0"/)) >= 9);
    assert.ok(value(sample('tickserve_requests_total', /rpc_method="StreamPredict"/)) >= 5);
    assert.ok(value(sample('tickserve_batch_rows_count')) >= 1);
    assert.ok(value(sample('tickserve_queue_wait_count')) >= 14); // 1 + 8 unary + 5 stream messages
    assert.ok(value(sample('tickserve_batch_compute_count')) >= 1);
    assert.equal(value(sample('tickserve_queue_depth')), 0);
    assert.equal(value(sample('tickserve_batches_in_flight')), 0);
    assert.ok(value(sample('tickserve_worker_busy')) > 0);
    assert.ok(sample('tickserve_worker_utilization'));
    assert.ok(sample('tickserve_model_info', /\bmodel="default".*\bversion="1"/));
    // Per version: batch metrics and gauges carry model and version; loads are counted with outcome and duration.
    assert.ok(value(sample('tickserve_batch_rows_count', /model="default".*version="1"/)) >= 1);
    assert.equal(value(sample('tickserve_queue_depth', /model="default".*version="1"/)), 0);
    assert.equal(value(sample('tickserve_model_loads_total', /model="default".*outcome="success".*version="1"|model="default".*version="1".*outcome="success"/)), 1);
    assert.equal(value(sample('tickserve_model_load_duration_count', /model="default"/)), 1);
    // The counters ModelStatistics answers from.
    assert.ok(value(sample('tickserve_inference_count_total', /model="default"/)) >= 9);
    assert.ok(value(sample('tickserve_inference_requests_total', /outcome="success"/)) >= 9);
    assert.ok(value(sample('tickserve_inference_duration_ns_total', /phase="compute_infer"/)) > 0);
  });
});

for (const [protocol, port] of [['grpc', 'grpcPort'], ['http/protobuf', 'httpPort']] as const) {
  describe(`traces over OTLP ${protocol}`, () => {
    const receiver = new OtlpReceiver();
    let server: RunningServer;
    before(async () => {
      await receiver.start();
      server = await startServer({
        OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${receiver[port]}`,
        OTEL_EXPORTER_OTLP_PROTOCOL: protocol,
      });
    });
    after(async () => {
      await server.stop();
      await receiver.stop();
    });

    it('delivers the request span, child of the caller\'s span', async () => {
      await predictWithTrace(server.client, { features: featuresFor(2, 1, 17) });
      const spans = await receiver.waitFor((all) => serverSpan(all, TRACE_ID, 'inference.ModelService/Predict') !== undefined);
      assert.equal(serverSpan(spans, TRACE_ID, 'inference.ModelService/Predict')!.parentSpanId, PARENT_SPAN);
      assert.ok([...receiver.contentTypes].some((t) => t.includes(protocol === 'grpc' ? 'grpc' : 'protobuf')));
    });
  });
}

describe('sampling from the traceparent alone (OTEL_TRACES_SAMPLER=parentbased_always_off)', () => {
  const receiver = new OtlpReceiver();
  let server: RunningServer;
  const healthDefinition = protoLoader.loadSync(healthProtoPath, { keepCase: true, enums: String });
  const Health = (grpc.loadPackageDefinition(healthDefinition).grpc as grpc.GrpcObject).health as grpc.GrpcObject;
  const HealthClient = (Health.v1 as grpc.GrpcObject).Health as grpc.ServiceClientConstructor;
  let health: InstanceType<grpc.ServiceClientConstructor>;
  const check = (metadata: grpc.Metadata) =>
    new Promise<{ status: string }>((resolve, reject) =>
      health.Check({ service: '' }, metadata, (error: grpc.ServiceError | null, reply: { status: string }) => (error ? reject(error) : resolve(reply))),
    );
  const traced = (traceId: string) => {
    const metadata = new grpc.Metadata();
    metadata.set('traceparent', traceparent(traceId));
    return metadata;
  };

  before(async () => {
    await receiver.start();
    server = await startServer({
      OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${receiver.httpPort}`,
      OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json',
      OTEL_TRACES_SAMPLER: 'parentbased_always_off',
    });
    const address = /"port":(\d+)/.exec(server.stdout())![1];
    health = new HealthClient(`127.0.0.1:${address}`, grpc.credentials.createInsecure());
  });
  after(async () => {
    health.close();
    await server.stop();
    await receiver.stop();
  });

  it('a call without a traceparent gets no span; one whose caller sampled gets its span, in the caller\'s trace', async () => {
    const reply = await new Promise<PredictReply>((resolve, reject) =>
      server.client.Predict({ features: featuresFor(1, 1, 17) }, new grpc.Metadata(), {}, (error, r) => (error ? reject(error) : resolve(r!))),
    );
    assert.equal(reply.predictions.length, 5);
    const traceId = '1a'.repeat(16);
    await predictWithTrace(server.client, { features: featuresFor(2, 1, 17) }, traceId);
    // Spans leave in the order they end: once the second call's has arrived, the first call's would have too.
    const spans = await receiver.waitFor((all) => serverSpan(all, traceId, 'inference.ModelService/Predict') !== undefined);
    assert.deepEqual(spans.filter((s) => s.kind === SERVER).map((s) => s.traceId), [traceId]);
    assert.equal(serverSpan(spans, traceId, 'inference.ModelService/Predict')!.parentSpanId, PARENT_SPAN);
  });

  it('traces and measures the services whose handlers do not report their own calls (health)', async () => {
    assert.equal((await check(new grpc.Metadata())).status, 'SERVING');
    const traceId = '2b'.repeat(16);
    assert.equal((await check(traced(traceId))).status, 'SERVING');
    const spans = await receiver.waitFor((all) => serverSpan(all, traceId, 'grpc.health.v1.Health/Check') !== undefined);
    const span = serverSpan(spans, traceId, 'grpc.health.v1.Health/Check')!;
    assert.equal(span.attributes['rpc.service'], 'grpc.health.v1.Health');
    assert.equal(span.attributes['rpc.method'], 'Check');
    assert.equal(span.attributes['rpc.grpc.status_code'], 0);
    assert.equal(spans.filter((s) => s.name === 'grpc.health.v1.Health/Check').length, 1);
    const text = await (await fetch(`http://127.0.0.1:${server.metricsPort}/metrics`)).text();
    const line = text.split('\n').find((l) => l.startsWith('rpc_server_duration_count') && l.includes('rpc_method="Check"'));
    assert.equal(Number(line?.split(' ').pop()), 2, text);
  });

  it('a failed call of such a service ends its span with ERROR and its code', async () => {
    const traceId = '3c'.repeat(16);
    const failed = new Promise<grpc.ServiceError>((resolve) =>
      health.Check({ service: 'no.such.Service' }, traced(traceId), (error: grpc.ServiceError | null) => resolve(error!)),
    );
    assert.equal((await failed).code, grpc.status.NOT_FOUND);
    const spans = await receiver.waitFor((all) => serverSpan(all, traceId, 'grpc.health.v1.Health/Check') !== undefined);
    const span = serverSpan(spans, traceId, 'grpc.health.v1.Health/Check')!;
    assert.equal(span.status.code, ERROR);
    assert.match(span.status.message, /^NOT_FOUND: /);
    assert.equal(span.attributes['rpc.grpc.status_code'], grpc.status.NOT_FOUND);
  });
});

describe('per-message stream spans', () => {
  const receiver = new OtlpReceiver();
  let server: RunningServer;
  before(async () => {
    await receiver.start();
    server = await startServer({
      OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: `http://127.0.0.1:${receiver.httpPort}/v1/traces`,
      OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: 'http/json',
      STREAM_MESSAGE_SPANS: 'true',
    });
  });
  after(async () => {
    await server.stop();
    await receiver.stop();
  });

  it('with STREAM_MESSAGE_SPANS=true each message gets a child span of the stream\'s, and batches link to those', async () => {
    const replies: PredictReply[] = [];
    const call = server.client.StreamPredict({});
    call.on('data', (r: PredictReply) => replies.push(r));
    for (let i = 0; i < 3; i++) call.write({ features: featuresFor(i, 1, 17) });
    call.end();
    await once(call, 'end');
    assert.equal(replies.length, 3);
    const spans = await receiver.waitFor((all) => all.filter((s) => s.name.endsWith('StreamPredict message')).length === 3);
    const stream = spans.find((s) => s.name === 'inference.ModelService/StreamPredict')
      ?? (await receiver.waitFor((all) => all.some((s) => s.name === 'inference.ModelService/StreamPredict'))).find((s) => s.name === 'inference.ModelService/StreamPredict')!;
    const messages = receiver.spans.filter((s) => s.name.endsWith('StreamPredict message'));
    for (const m of messages) assert.equal(m.parentSpanId, stream.spanId);
    await receiver.waitFor((all) => messages.every((m) => all.some((s) => s.name === 'inference.batch' && s.links.some((l) => l.spanId === m.spanId))));
  });
});

describe('no endpoint configured', () => {
  it('exports nothing, tries no connection and logs no errors', async () => {
    const server = await startServer({ LOG_LEVEL: 'info' });
    try {
      const reply = await predictWithTrace(server.client, { features: featuresFor(3, 1, 17) });
      assert.equal(reply.predictions.length, 5);
      await new Promise((resolve) => setTimeout(resolve, 300));
      assert.doesNotMatch(server.stderr() + server.stdout(), /ECONNREFUSED|error|exporter/i);
    } finally {
      await server.stop();
    }
  });
});
