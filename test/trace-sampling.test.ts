// The interceptor's sampling decisions against the OpenTelemetry SDK's own: the samplers NodeSDK builds from
// OTEL_TRACES_SAMPLER / OTEL_TRACES_SAMPLER_ARG, asked about the same trace ids and parents, and the SDK's W3C
// propagator, given the same headers.
import { ROOT_CONTEXT, SamplingDecision, SpanKind, trace, type SpanContext } from '@opentelemetry/api';
import { TraceState, W3CTraceContextPropagator } from '@opentelemetry/core';
import { ParentBasedSampler, AlwaysOnSampler, TraceIdRatioBasedSampler, type Sampler } from '@opentelemetry/sdk-trace-base';
// What NodeSDK calls to build its sampler from the environment (undefined: unset, and its default applies).
import { createSamplerFromEnv } from '@opentelemetry/sdk-node/build/src/create-from-env';
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { loadConfig } from '../src/main/config';
import { remoteParent, sdkSampler, traceIdAccumulation, traceStateHeader, TraceSampler, type HeaderSource } from '../src/main/trace-sampling';
import { seededRandom } from '../scripts/onnx-writer';

const word = (random: () => number) => ((random() * 2 ** 32) >>> 0).toString(16).padStart(8, '0');

/** The SDK's sampler for these OTEL_* settings, built as NodeSDK builds it (from process.env, restored after). */
function sdkSamplerFromEnv(env: Record<string, string>): Sampler {
  const saved = { OTEL_TRACES_SAMPLER: process.env.OTEL_TRACES_SAMPLER, OTEL_TRACES_SAMPLER_ARG: process.env.OTEL_TRACES_SAMPLER_ARG };
  delete process.env.OTEL_TRACES_SAMPLER;
  delete process.env.OTEL_TRACES_SAMPLER_ARG;
  Object.assign(process.env, env);
  try {
    // Unset, NodeSDK passes no sampler and the tracer provider's default applies.
    return createSamplerFromEnv() ?? new ParentBasedSampler({ root: new AlwaysOnSampler() });
  } finally {
    for (const [key, value] of Object.entries(saved)) {
      if (value === undefined) delete process.env[key];
      else process.env[key] = value;
    }
  }
}

const SETTINGS: Array<Record<string, string>> = [
  {},
  { OTEL_TRACES_SAMPLER: 'always_on' },
  { OTEL_TRACES_SAMPLER: 'always_off' },
  { OTEL_TRACES_SAMPLER: 'parentbased_always_on' },
  { OTEL_TRACES_SAMPLER: 'parentbased_always_off' },
  { OTEL_TRACES_SAMPLER: 'traceidratio' }, // no ratio: 1
  { OTEL_TRACES_SAMPLER: 'parentbased_traceidratio' },
  ...['0', '0.01', '0.25', '0.5', '0.99', '1'].flatMap((ratio) => [
    { OTEL_TRACES_SAMPLER: 'traceidratio', OTEL_TRACES_SAMPLER_ARG: ratio },
    { OTEL_TRACES_SAMPLER: 'parentbased_traceidratio', OTEL_TRACES_SAMPLER_ARG: ratio },
  ]),
];

const IDS = 4000;

describe('sampling decisions agree with the SDK\'s samplers', () => {
  for (const env of SETTINGS) {
    const label = Object.entries(env).map(([k, v]) => `${k}=${v}`).join(' ') || 'nothing set (parentbased_always_on)';
    it(label, () => {
      const setting = loadConfig(env).tracesSampler;
      const sdk = sdkSamplerFromEnv(env);
      // The sampler the SDK's tracer gets for batch and message spans is the one NodeSDK would have built.
      assert.equal(sdkSampler(setting).toString(), sdk.toString());
      const sdkSamples = (traceId: string, parent: SpanContext | null) =>
        sdk.shouldSample(parent === null ? ROOT_CONTEXT : trace.setSpanContext(ROOT_CONTEXT, parent), traceId, 'x', SpanKind.SERVER, {}, []).decision === SamplingDecision.RECORD_AND_SAMPLED;

      // A root span draws its trace id from the random source; scripting the source with a trace id's own words
      // makes sampleRoot decide on exactly that id (and return it, when sampled).
      let script: number[] = [];
      const ours = new TraceSampler(setting, () => script.shift() ?? assert.fail('drew more than a trace id'));
      const random = seededRandom(0x5eed);
      const counts = { root: 0, sampledParent: 0, unsampledParent: 0 };
      // Random ids, and ids right at the ratio's bound (the SDK samples an accumulation below floor(r × 0xffffffff)).
      const bound = Math.floor(Number(env.OTEL_TRACES_SAMPLER_ARG ?? 1) * 0xffffffff);
      const edges = [bound - 1, bound, bound + 1].filter((a) => a > 0 && a <= 0xffffffff).map((a) => [a.toString(16).padStart(8, '0'), '0'.repeat(8), '0'.repeat(8), '0'.repeat(8)]);
      for (let i = 0; i < IDS + edges.length; i++) {
        const words = i < IDS ? [word(random), word(random), word(random), word(random)] : edges[i - IDS];
        const traceId = words.join('');
        const accumulation = traceIdAccumulation(traceId);
        script = [accumulation, ...words.slice(1).map((w) => parseInt(w, 16))].map((w) => w / 2 ** 32);
        const root = ours.sampleRoot();
        assert.equal(root !== null, sdkSamples(traceId, null), `root ${traceId}`);
        if (root !== null) assert.equal(root, traceId);
        counts.root += root === null ? 0 : 1;

        for (const traceFlags of [1, 0]) {
          const parent = { traceId, spanId: word(random) + word(random), traceFlags };
          const sampled = ours.sampleChild(parent);
          assert.equal(sampled, sdkSamples(traceId, { ...parent, isRemote: true }), `child of ${traceId} flags ${traceFlags}`);
          if (sampled) counts[traceFlags === 1 ? 'sampledParent' : 'unsampledParent']++;
        }
      }
      // Not a vacuous agreement: each ratio setting sampled some ids and left out others where it should.
      const ratio = Number(env.OTEL_TRACES_SAMPLER_ARG ?? 1);
      if (env.OTEL_TRACES_SAMPLER?.endsWith('traceidratio') && ratio > 0 && ratio < 1) {
        assert.ok(counts.root > 0 && counts.root < IDS + edges.length, JSON.stringify(counts));
      }
    });
  }

  it('a root span at ratio 0.01 is sampled about one time in a hundred, and every id it keeps passes the SDK\'s ratio sampler', () => {
    const ours = new TraceSampler({ name: 'parentbased_traceidratio', ratio: 0.01 }, seededRandom(42));
    const sdk = new TraceIdRatioBasedSampler(0.01);
    let kept = 0;
    const draws = 200_000;
    for (let i = 0; i < draws; i++) {
      const traceId = ours.sampleRoot();
      if (traceId === null) continue;
      kept++;
      assert.match(traceId, /^[0-9a-f]{32}$/);
      assert.equal(sdk.shouldSample(ROOT_CONTEXT, traceId).decision, SamplingDecision.RECORD_AND_SAMPLED);
    }
    // 2000 expected; the bound is over 5 standard deviations (~44) either side, and the seed fixes the draw.
    assert.ok(kept > 1780 && kept < 2220, `${kept} of ${draws}`);
  });

  it('makes no id for a call it does not sample: one random number for a ratio root, none for always_off', () => {
    let draws = 0;
    const counting = (random: () => number) => () => {
      draws++;
      return random();
    };
    const ratio = new TraceSampler({ name: 'traceidratio', ratio: 1e-9 }, counting(seededRandom(7)));
    assert.equal(ratio.sampleRoot(), null);
    assert.equal(draws, 1);
    draws = 0;
    const off = new TraceSampler({ name: 'always_off', ratio: 1 }, counting(seededRandom(7)));
    assert.equal(off.sampleRoot(), null);
    assert.equal(off.sampleChild({ traceId: 'a'.repeat(32), spanId: 'b'.repeat(16), traceFlags: 1 }), false);
    assert.equal(draws, 0);
  });

  it('never makes an all-zero id, and keeps the accumulation while avoiding one', () => {
    const zeros = new TraceSampler({ name: 'always_on', ratio: 1 }, () => 0);
    assert.equal(zeros.spanId(), '0000000000000001');
    const traceId = zeros.sampleRoot()!;
    assert.notEqual(traceId, '0'.repeat(32));
    assert.equal(traceIdAccumulation(traceId), 0);
  });
});

type Sent = Record<string, string | string[]>;

/** Request metadata as grpc-js gives it (every value of a key, [] for a key not sent), over the headers sent. */
const headers = (sent: Sent): HeaderSource & { sent: Sent } => ({ sent, get: (key) => [sent[key] ?? []].flat() });

describe('the caller\'s trace context is read as the SDK\'s W3C propagator reads it', () => {
  const propagator = new W3CTraceContextPropagator();
  const getter = { keys: (c: { sent: Sent }) => Object.keys(c.sent), get: (c: { sent: Sent }, key: string) => c.sent[key] };
  const cases: Array<[string, Sent]> = [
    ['a sampled parent', { traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01' }],
    ['an unsampled parent', { traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00' }],
    ['other flag bits', { traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03' }],
    ['a tracestate', { traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01', tracestate: 'vendor=1,other=2' }],
    ['two tracestate values', { traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01', tracestate: ['vendor=1', 'other=2'] }],
    ['two traceparent values', { traceparent: ['00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01', '00-11111111111111111111111111111111-2222222222222222-00'] }],
    ['a future version with more fields', { traceparent: '01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra' }],
    ['version 00 with more fields', { traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra' }],
    ['version ff', { traceparent: 'ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01' }],
    ['an all-zero trace id', { traceparent: '00-00000000000000000000000000000000-00f067aa0ba902b7-01' }],
    ['an all-zero span id', { traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01' }],
    ['upper-case hex', { traceparent: '00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01' }],
    ['a short trace id', { traceparent: '00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01' }],
    ['surrounding spaces', { traceparent: ' 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01 ' }],
    ['no traceparent, a tracestate', { tracestate: 'vendor=1' }],
    ['nothing', {}],
  ];
  for (const [name, sent] of cases) {
    it(name, () => {
      const carrier = headers(sent);
      const expected = trace.getSpanContext(propagator.extract(ROOT_CONTEXT, carrier, getter));
      const parent = remoteParent(carrier);
      if (expected === undefined) {
        assert.equal(parent, null);
        return;
      }
      assert.ok(parent);
      assert.deepEqual(
        { traceId: parent.traceId, spanId: parent.spanId, traceFlags: parent.traceFlags },
        { traceId: expected.traceId, spanId: expected.spanId, traceFlags: expected.traceFlags },
      );
      // The export thread parses the header as the propagator does (TraceState), so the span carries the same.
      const header = traceStateHeader(carrier);
      assert.equal(header === undefined ? undefined : new TraceState(header).serialize(), expected.traceState?.serialize());
    });
  }
});
