// Which calls get a span, decided before anything is made for them: the samplers that OTEL_TRACES_SAMPLER names,
// with the OpenTelemetry SDK's semantics, applied to the caller's W3C traceparent; and the ids of the spans kept.
//
// Why not the SDK's tracer: its startSpan makes a span id (and, for a root span, a trace id) and a context before it
// asks its sampler, so a call it will not record still pays for random ids, their hex strings and a non-recording
// span. Here a call that is not sampled costs the traceparent lookup and the decision: for a root span under a ratio
// sampler, one random number, which becomes part of the trace id only if the span is kept (see rootTraceId).
//
// The decisions must stay those of the SDK's samplers: test/trace-sampling.test.ts compares them on the same trace
// ids and parents.
import { TraceFlags } from '@opentelemetry/api';
import { parseTraceParent } from '@opentelemetry/core';
import {
  AlwaysOffSampler,
  AlwaysOnSampler,
  ParentBasedSampler,
  TraceIdRatioBasedSampler,
  type Sampler,
} from '@opentelemetry/sdk-trace-base';
import type { TracesSampler } from './config';

/** The traceidratio bound that every trace id is under: the SDK's for a ratio of 1. */
const EVERY_TRACE = 0x1_0000_0000;

/** The caller's span, from its W3C traceparent. */
export interface RemoteParent {
  traceId: string;
  spanId: string;
  traceFlags: number;
}

/**
 * What grpc-js hands an interceptor as a call's request metadata, reduced to the one method read here (so that the
 * tests can hand in a plain map).
 */
export interface HeaderSource {
  get(key: string): unknown[];
}

/**
 * The caller's span from its `traceparent`, read as the SDK's W3CTraceContextPropagator reads it (the first value
 * where several were sent, the same regular expression); null when none was sent or it does not parse, which makes
 * the call's span a root, as in the SDK.
 */
export function remoteParent(metadata: HeaderSource): RemoteParent | null {
  const values = metadata.get('traceparent');
  if (values.length === 0) return null;
  const value = values[0];
  return typeof value === 'string' ? parseTraceParent(value) : null;
}

/** The caller's `tracestate`, several values joined as the SDK's propagator joins them; undefined when none. */
export function traceStateHeader(metadata: HeaderSource): string | undefined {
  const values = metadata.get('tracestate');
  if (values.length === 0) return undefined;
  return values.length === 1 ? String(values[0]) : values.join(',');
}

/**
 * The SDK's TraceIdRatioBasedSampler reduction of a trace id: its four 32-bit words XORed together. A trace id is
 * sampled at ratio r when this is below floor(r × 0xffffffff) (every id at r = 1).
 */
export function traceIdAccumulation(traceId: string): number {
  let accumulation = 0;
  for (let i = 0; i < 32; i += 8) accumulation = (accumulation ^ parseInt(traceId.slice(i, i + 8), 16)) >>> 0;
  return accumulation;
}

/** The SDK's bound for a ratio (TraceIdRatioBasedSampler: clamped to [0, 1], NaN as 0). */
function ratioBound(ratio: number): number {
  if (Number.isNaN(ratio) || ratio <= 0) return 0;
  return ratio >= 1 ? EVERY_TRACE : Math.floor(ratio * 0xffffffff);
}

/** The sampler the SDK builds for the same setting: for the spans the SDK's tracer still starts (batch spans,
 * stream message spans), so that they and the call spans are decided alike. */
export function sdkSampler(setting: TracesSampler): Sampler {
  switch (setting.name) {
    case 'always_on':
      return new AlwaysOnSampler();
    case 'always_off':
      return new AlwaysOffSampler();
    case 'traceidratio':
      return new TraceIdRatioBasedSampler(setting.ratio);
    case 'parentbased_always_on':
      return new ParentBasedSampler({ root: new AlwaysOnSampler() });
    case 'parentbased_always_off':
      return new ParentBasedSampler({ root: new AlwaysOffSampler() });
    case 'parentbased_traceidratio':
      return new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(setting.ratio) });
  }
}

/**
 * The sampling decision for a call's SERVER span, and the ids of the spans it keeps. Trace ids and span ids are
 * random, as the SDK's RandomIdGenerator makes them (Math.random, 32 bits at a time, never all zero).
 */
export class TraceSampler {
  /**
   * The root sampler as a traceidratio bound: a trace id is sampled when its accumulation is below it. always_on
   * is every trace id (2^32), always_off none (0).
   */
  private readonly rootBound: number;
  /** parentbased_*: a caller's span decides (its sampled flag); otherwise the root sampler decides every span. */
  private readonly parentBased: boolean;
  /** Where ids are written before they become hex; shared, as the hex string is made at once. */
  private readonly idBytes = Buffer.allocUnsafe(16);

  /** @param random uniform in [0, 1), as Math.random (the tests give a seeded one) */
  constructor(
    setting: TracesSampler,
    private readonly random: () => number = Math.random,
  ) {
    const root = setting.name.replace('parentbased_', '');
    this.parentBased = setting.name.startsWith('parentbased_');
    this.rootBound = root === 'always_on' ? EVERY_TRACE : root === 'always_off' ? 0 : ratioBound(setting.ratio);
  }

  /** Whether a call whose caller sent this (valid) parent gets a sampled span. */
  sampleChild(parent: RemoteParent): boolean {
    if (this.parentBased) return (parent.traceFlags & TraceFlags.SAMPLED) !== 0;
    return this.rootBound === EVERY_TRACE || (this.rootBound > 0 && traceIdAccumulation(parent.traceId) < this.rootBound);
  }

  /** A call with no parent: its new trace id when its span is sampled, null when it is not (and no id is made). */
  sampleRoot(): string | null {
    if (this.rootBound === 0) return null;
    if (this.rootBound === EVERY_TRACE) return this.rootTraceId(this.word());
    // The SDK makes a random trace id and samples it when its accumulation is under the bound. Drawing the
    // accumulation first is the same draw (uniform either way) and leaves the id unmade for the calls not kept.
    const accumulation = this.word();
    return accumulation < this.rootBound ? this.rootTraceId(accumulation) : null;
  }

  /** A new span id: 16 hex digits, not all zero. */
  spanId(): string {
    const bytes = this.idBytes;
    const high = this.word();
    const low = this.word();
    bytes.writeUInt32BE(high, 0);
    bytes.writeUInt32BE(high === 0 && low === 0 ? 1 : low, 4);
    return bytes.toString('hex', 0, 8);
  }

  /**
   * A random trace id whose accumulation (its words XORed) is `accumulation`: three words drawn, the fourth set to
   * make up the XOR. With `accumulation` uniform the id is uniform, and the SDK's ratio sampler at any bound above
   * `accumulation` samples it, here and in every service that samples the trace id at the same ratio.
   */
  private rootTraceId(accumulation: number): string {
    const bytes = this.idBytes;
    const b = this.word();
    const c = this.word();
    let d = this.word();
    let a = (accumulation ^ b ^ c ^ d) >>> 0;
    // All zero is no trace id; flipping the low bit of two words keeps the accumulation.
    if ((a | b | c | d) === 0) {
      a = 1;
      d = 1;
    }
    bytes.writeUInt32BE(a, 0);
    bytes.writeUInt32BE(b, 4);
    bytes.writeUInt32BE(c, 8);
    bytes.writeUInt32BE(d, 12);
    return bytes.toString('hex', 0, 16);
  }

  /** 32 random bits, as the SDK's id generator draws them. */
  private word(): number {
    return (this.random() * 2 ** 32) >>> 0;
  }
}
