// The span export thread: spans ended on the gRPC thread reach a real OTLP receiver with every field an exporter
// reads, exported by the SDK's own processors built from OTEL_* inside the thread, and nothing is lost at shutdown.
import { ROOT_CONTEXT, SpanKind, SpanStatusCode, trace } from '@opentelemetry/api';
import { TraceState } from '@opentelemetry/core';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { BasicTracerProvider } from '@opentelemetry/sdk-trace-base';
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ThreadSpanProcessor } from '../src/main/span-export/processor';
import { OtlpReceiver } from './helpers/otlp-receiver';

const ENV = {
  OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json',
  OTEL_BSP_SCHEDULE_DELAY: '50',
  // Room in the export thread's own queue for the flood below, so that only this side's bound drops spans.
  OTEL_BSP_MAX_QUEUE_SIZE: '32768',
  OTEL_BSP_MAX_EXPORT_BATCH_SIZE: '4096',
  OTEL_TRACES_EXPORTER: 'otlp',
};

describe('ThreadSpanProcessor', () => {
  const receiver = new OtlpReceiver();
  const saved: Record<string, string | undefined> = {};
  const problems: string[] = [];
  let provider: BasicTracerProvider;

  before(async () => {
    await receiver.start();
    // The export thread reads OTEL_* as the SDK does, from the environment it starts with.
    const env = { ...ENV, OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${receiver.httpPort}` };
    for (const [key, value] of Object.entries(env)) {
      saved[key] = process.env[key];
      process.env[key] = value;
    }
    const resource = resourceFromAttributes({ 'service.name': 'export-thread-test' });
    provider = new BasicTracerProvider({
      resource,
      spanProcessors: [new ThreadSpanProcessor((problem) => problems.push(problem), resource)],
    });
    for (const [key, value] of Object.entries(saved)) {
      if (value === undefined) delete process.env[key];
      else process.env[key] = value;
    }
  });
  after(() => receiver.stop());

  it('carries every field an exporter reads across the thread', async () => {
    const traceId = '0af7651916cd43dd8448eb211c80319c';
    const parent = trace.setSpanContext(ROOT_CONTEXT, {
      traceId,
      spanId: 'b7ad6b7169203331',
      traceFlags: 1,
      isRemote: true,
      traceState: new TraceState('vendor=1,other=2'),
    });
    const tracer = provider.getTracer('scope-a', '1.2.3');
    const span = tracer.startSpan('work', {
      kind: SpanKind.CLIENT,
      attributes: { count: 3, label: 'x', flag: true },
      links: [{ context: { traceId: 'f'.repeat(32), spanId: 'e'.repeat(16), traceFlags: 1 } }],
    }, parent);
    span.addEvent('first', { k: 'v' });
    span.addEvent('second');
    span.setStatus({ code: SpanStatusCode.ERROR, message: 'bad' });
    span.end();
    await provider.forceFlush();
    const got = (await receiver.waitFor((all) => all.some((s) => s.name === 'work'))).find((s) => s.name === 'work')!;
    assert.equal(got.traceId, traceId);
    assert.equal(got.spanId, span.spanContext().spanId);
    assert.equal(got.parentSpanId, 'b7ad6b7169203331');
    assert.equal(got.kind, 3); // OTLP SPAN_KIND_CLIENT
    assert.deepEqual(got.attributes, { count: 3, label: 'x', flag: true });
    assert.deepEqual(got.links, [{ traceId: 'f'.repeat(32), spanId: 'e'.repeat(16) }]);
    assert.deepEqual(got.events, ['first', 'second']);
    assert.deepEqual(got.status, { code: 2, message: 'bad' });
    assert.equal(got.traceState, 'vendor=1,other=2');
    assert.equal(got.serviceName, 'export-thread-test');
    assert.equal(got.scopeName, 'scope-a');
    assert.deepEqual(problems, []);
  });

  it('bounds the spans in transit: beyond 16,384 it drops, says so once, and exports the rest', async () => {
    const tracer = provider.getTracer('scope-c');
    const ids = new Set<string>();
    // One synchronous loop: the export thread's receipts cannot arrive in between, as if it had stalled.
    for (let i = 0; i < 20_000; i++) {
      const span = tracer.startSpan('flood');
      ids.add(span.spanContext().spanId);
      span.end();
    }
    assert.equal(problems.length, 1, `expected one warning, got ${JSON.stringify(problems)}`);
    assert.match(problems[0], /dropping spans/);
    await provider.forceFlush();
    const received = await receiver.waitFor((all) => all.filter((s) => ids.has(s.spanId)).length >= 16_384, 20_000);
    assert.equal(received.filter((s) => ids.has(s.spanId)).length, 16_384);
    problems.length = 0;
  });

  it('exports every span ended before shutdown', async () => {
    const tracer = provider.getTracer('scope-b');
    const ids = new Set<string>();
    for (let i = 0; i < 700; i++) {
      const span = tracer.startSpan(`burst ${i}`);
      ids.add(span.spanContext().spanId);
      span.end();
    }
    await provider.shutdown();
    const received = receiver.spans.filter((s) => ids.has(s.spanId));
    assert.equal(received.length, 700);
  });
});
