// OpenTelemetry for tickserve: one SERVER span per sampled RPC from a grpc-js server interceptor (continuing the
// caller's W3C traceparent/tracestate), one span per executed batch linked to the spans of the requests it served,
// and metrics on a Prometheus endpoint, all exported through the OpenTelemetry SDK.
//
// Export is configured only by the standard OTEL_* variables, read by the SDK itself. With no trace endpoint
// configured, no tracer provider is registered and no interceptor is installed: nothing tries to connect anywhere.
//
// No context manager is registered, ever: AsyncLocalStorage would tax every promise and callback in the process.
// Instead the interceptor files each sampled call's span context under the call's request Metadata object, which
// grpc-js hands on to the handler as call.metadata; handlers look it up there and pass it on explicitly.
//
// A call's tracing costs what it records. The interceptor takes the sampling decision from the traceparent header
// alone (trace-sampling.ts); a call that is not sampled gets no span, no ids and no attributes, and its handler
// finds no span context. A sampled call gets a ServerSpan: a compact record on this thread, which the span export
// thread turns into the SDK's ReadableSpan. Batch spans and stream message spans, made only for sampled calls,
// are still started with the SDK's tracer.
import * as grpc from '@grpc/grpc-js';
import {
  metrics,
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  trace,
  TraceFlags,
  type Attributes,
  type Histogram,
  type Link,
  type Span,
  type SpanContext,
} from '@opentelemetry/api';
import { getStringFromEnv, TraceState } from '@opentelemetry/core';
import { PrometheusExporter } from '@opentelemetry/exporter-prometheus';
import {
  defaultResource,
  detectResources,
  envDetector,
  hostDetector,
  processDetector,
  resourceFromAttributes,
  type Resource,
} from '@opentelemetry/resources';
import { NodeSDK } from '@opentelemetry/sdk-node';
// How NodeSDK reads OTEL_NODE_RESOURCE_DETECTORS; not in sdk-node's public index (the export thread imports its
// span processors from the same module).
import { getResourceDetectorsFromEnv } from '@opentelemetry/sdk-node/build/src/utils';
import { ATTR_SERVICE_NAME } from '@opentelemetry/semantic-conventions';
import { performance } from 'node:perf_hooks';
import type { Logger } from 'pino';
import type { BatchFigures, BatchObserver, BatchRequest } from '../batching/batcher';
import type { InferenceStatistics } from '../models/statistics';
import { listenError, type Config } from './config';
import { RpcMetrics } from './rpc-metrics';
import { ThreadSpanProcessor } from './span-export/processor';
import type { ServerSpanRecord } from './span-export/protocol';
import { remoteParent, sdkSampler, traceStateHeader, TraceSampler } from './trace-sampling';

const MODEL_SERVICE = 'inference.ModelService';
export const INFERENCE_SERVICE = 'inference.GRPCInferenceService';
/** Services whose handlers report their own calls (metrics, failure logs); the interceptor reports the others. */
const SELF_REPORTING = new Set([MODEL_SERVICE, INFERENCE_SERVICE]);

const INSTRUMENTATION = 'tickserve';

/**
 * service.name unless OTEL_SERVICE_NAME or OTEL_RESOURCE_ATTRIBUTES says otherwise: the SDK merges what its env
 * detector finds over the resource it is given (the SDK's own default is "unknown_service:node").
 */
const DEFAULT_SERVICE_NAME = 'tickserve';

/**
 * Each traced call's span context rides on its request Metadata object, the one object that both the interceptor
 * and the handler hold. A symbol-keyed property rather than a WeakMap: a WeakMap entry costs a hash insert per call
 * and ephemeron work in every GC, measurable at tens of thousands of calls a second.
 */
const SPAN_CONTEXT = Symbol('tickserve.spanContext');
type TracedMetadata = grpc.Metadata & { [SPAN_CONTEXT]?: SpanContext };

/** Files a call's span context under its request metadata, where spanContextOf() finds it. */
export function fileSpanContext(metadata: grpc.Metadata, spanContext: SpanContext): void {
  (metadata as TracedMetadata)[SPAN_CONTEXT] = spanContext;
}

/** performance.now() milliseconds as an epoch time in ms, for span start and end times. */
const epochMs = (monotonicMs: number) => performance.timeOrigin + monotonicMs;

const CLIENT_ERRORS = new Set([
  grpc.status.INVALID_ARGUMENT,
  grpc.status.NOT_FOUND,
  grpc.status.CANCELLED,
  grpc.status.DEADLINE_EXCEEDED,
  grpc.status.RESOURCE_EXHAUSTED,
]);

/** What the gauges read of one loaded version. */
export interface ServedVersionInfo {
  name: string;
  version: string;
  inputWidth: number;
  outputWidth: number;
  executionProvider: string;
  workers: number;
  queuedRows(): number;
  inFlightBatches(): number;
  /** The version's inference counters, the same ones ModelStatistics answers from. */
  stats: InferenceStatistics;
}

/** A version's counters summed over its instances, live and gone, with its metric labels. */
interface VersionCounters {
  attributes: Attributes;
  inferenceCount: number;
  executionCount: number;
  successCount: number;
  failCount: number;
  successNs: number;
  failNs: number;
  queueNs: number;
  computeNs: number;
}

const zeroCounters = (attributes: Attributes): VersionCounters => ({
  attributes, inferenceCount: 0, executionCount: 0, successCount: 0, failCount: 0, successNs: 0, failNs: 0, queueNs: 0, computeNs: 0,
});

function addStatistics(to: VersionCounters, stats: InferenceStatistics): void {
  to.inferenceCount += stats.inferenceCount;
  to.executionCount += stats.executionCount;
  to.successCount += stats.success.count;
  to.failCount += stats.fail.count;
  to.successNs += stats.success.ns;
  to.failNs += stats.fail.ns;
  to.queueNs += stats.queue.ns;
  to.computeNs += stats.computeInfer.ns;
}

/**
 * Per-version counters that survive the version's instances. Each instance counts from 0; as one unloads, its
 * final figures are added to what its model and version carry, and every collection reports carried + live, one
 * series per model and version (an instance draining beside its reload's is summed with it, not reported twice
 * under the same labels). A version with nothing loaded still reports what it carries: a counter does not vanish.
 */
class VersionTotals {
  private readonly carried = new Map<string, VersionCounters>();
  /** Instances whose figures are carried already (one may still be listed as loaded for a moment). */
  private readonly retired = new WeakSet<InferenceStatistics>();

  collect(versions: Iterable<ServedVersionInfo>): VersionCounters[] {
    const totals = new Map<string, VersionCounters>();
    for (const [key, carried] of this.carried) totals.set(key, { ...carried });
    for (const v of versions) {
      if (!this.retired.has(v.stats)) addStatistics(this.entry(totals, v.name, v.version), v.stats);
    }
    return [...totals.values()];
  }

  /** An instance unloaded: its final figures are carried from now on. */
  retire(name: string, version: string, stats: InferenceStatistics): void {
    if (this.retired.has(stats)) return;
    this.retired.add(stats);
    addStatistics(this.entry(this.carried, name, version), stats);
  }

  private entry(map: Map<string, VersionCounters>, name: string, version: string): VersionCounters {
    const key = `${name}\u0000${version}`;
    let counters = map.get(key);
    if (counters === undefined) {
      counters = zeroCounters(versionAttributes(name, version));
      map.set(key, counters);
    }
    return counters;
  }
}

/** What the gauges read; bound once the server exists. */
export interface TelemetrySources {
  /** Every loaded version (ready or unloading). */
  versions(): Iterable<ServedVersionInfo>;
}

/** The `model` and `version` labels of a version's metrics, made once per version. */
function versionAttributes(model: string, version: string): Attributes {
  return Object.freeze({ model, version });
}

export class Telemetry {
  readonly tracing: boolean;
  private readonly sdk: NodeSDK | null;
  /** The /metrics endpoint; null when METRICS_PORT is 0 or OpenTelemetry is disabled. */
  private readonly prometheus: PrometheusExporter | null;
  private readonly tracer;
  private readonly meter;
  private readonly rpc = new RpcMetrics();
  private readonly batchRows: Histogram;
  private readonly queueWait: Histogram;
  private readonly computeTime: Histogram;
  private readonly failedBatches;
  private readonly slabsSetAside;
  private readonly modelLoads;
  private readonly modelLoadTime: Histogram;
  private readonly modelUnloads;
  private readonly workerBusy;
  private busySeconds = 0;
  private utilisationMark = { at: performance.now(), busy: 0 };
  private sources: TelemetrySources | null = null;
  private readonly versionTotals = new VersionTotals();
  private readonly streamMessageSpans: boolean;
  /** Where sampled spans go; null while not tracing. */
  private readonly spans: ThreadSpanProcessor | null;
  private readonly sampler: TraceSampler;

  constructor(
    private readonly config: Config,
    private readonly logger: Logger,
  ) {
    this.tracing = config.tracing;
    this.streamMessageSpans = config.tracing && config.streamMessageSpans;
    this.sampler = new TraceSampler(config.tracesSampler);
    if (config.telemetryDisabled) {
      this.sdk = null;
      this.prometheus = null;
      this.spans = null;
    } else {
      // Its server is started by listen(), whose promise says whether the port could be had: started by the
      // exporter itself, a listen failure would only reach OpenTelemetry's diag logger, which nobody reads.
      this.prometheus =
        config.metricsPort > 0
          ? new PrometheusExporter({ host: config.host, port: config.metricsPort, metricProducers: [this.rpc], preventServerStart: true })
          : null;
      const resource = detectedResource();
      // Spans go to the export thread, which builds the exporters from OTEL_* as NodeSDK would have here. No
      // endpoint configured: no span processor, so no tracer provider, no thread and no connection attempts.
      this.spans = config.tracing ? new ThreadSpanProcessor((problem) => logger.warn(problem), resource) : null;
      this.sdk = new NodeSDK({
        resource,
        autoDetectResources: false,
        // The sampler the interceptor's decisions follow (TraceSampler), for the spans the SDK's tracer starts.
        sampler: sdkSampler(config.tracesSampler),
        instrumentations: [],
        metricReaders: this.prometheus === null ? [] : [this.prometheus],
        logRecordProcessors: [],
        // sdk-node takes null for "register no context manager"; its type declaration does not say so.
        contextManager: null as unknown as undefined,
        spanProcessors: this.spans === null ? [] : [this.spans],
      });
      this.sdk.start();
    }
    // Instruments are made after start(), from the global providers that the SDK installed.
    this.tracer = trace.getTracer(INSTRUMENTATION);
    this.meter = metrics.getMeter(INSTRUMENTATION);
    this.batchRows = this.meter.createHistogram('tickserve.batch.rows', {
      description: 'Rows in each executed batch',
      unit: '{row}',
      advice: { explicitBucketBoundaries: [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024] },
    });
    this.queueWait = this.meter.createHistogram('tickserve.queue.wait', {
      description: 'Time a request waited in the batcher queue',
      unit: 'us',
      advice: { explicitBucketBoundaries: [10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 50000] },
    });
    this.computeTime = this.meter.createHistogram('tickserve.batch.compute', {
      description: 'Time a worker spent computing a batch, measured in the worker',
      unit: 'us',
      advice: { explicitBucketBoundaries: [10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 50000] },
    });
    this.failedBatches = this.meter.createCounter('tickserve.batch.failures', { description: 'Batches that failed' });
    this.slabsSetAside = this.meter.createCounter('tickserve.slabs.set_aside', {
      description: 'Batch slabs set aside for good because a worker died or hung holding them',
    });
    this.workerBusy = this.meter.createCounter('tickserve.worker.busy', {
      description: 'Seconds workers spent computing; rate() / workers is utilisation',
      unit: 's',
    });
    this.modelLoads = this.meter.createCounter('tickserve.model.loads', {
      description: 'Model version loads, by model, version and outcome (success, failure)',
    });
    this.modelLoadTime = this.meter.createHistogram('tickserve.model.load.duration', {
      description: 'Time to load and warm up a model version',
      unit: 's',
      advice: { explicitBucketBoundaries: [0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60] },
    });
    this.modelUnloads = this.meter.createCounter('tickserve.model.unloads', {
      description: 'Model version unloads (after answering every request they took), by model and version',
    });
    // ModelStatistics' counters, read as they are: the v2 API and Prometheus never disagree. A version loaded again
    // (a reload, or unloaded and loaded) is a new instance with counters from 0: the figures of its instances gone
    // are carried (VersionTotals), so that each series only ever grows, as a Prometheus counter must.
    const inferenceCount = this.meter.createObservableCounter('tickserve.inference.count', { description: 'Rows computed (Triton\'s inference_count), by model and version' });
    const executionCount = this.meter.createObservableCounter('tickserve.execution.count', { description: 'Batches run (Triton\'s execution_count), by model and version' });
    const requests = this.meter.createObservableCounter('tickserve.inference.requests', { description: 'Requests answered, by model, version and outcome (success, fail)' });
    const durationNs = this.meter.createObservableCounter('tickserve.inference.duration_ns', {
      description: 'Summed request time in nanoseconds by phase (success, fail, queue, compute_infer), as ModelStatistics reports it',
    });
    // One callback for the four, so that a collection adds the versions' figures up once.
    this.meter.addBatchObservableCallback((observer) => {
      for (const v of this.totals()) {
        observer.observe(inferenceCount, v.inferenceCount, v.attributes);
        observer.observe(executionCount, v.executionCount, v.attributes);
        observer.observe(requests, v.successCount, { ...v.attributes, outcome: 'success' });
        observer.observe(requests, v.failCount, { ...v.attributes, outcome: 'fail' });
        for (const [phase, ns] of [['success', v.successNs], ['fail', v.failNs], ['queue', v.queueNs], ['compute_infer', v.computeNs]] as const) {
          observer.observe(durationNs, ns, { ...v.attributes, phase });
        }
      }
    }, [inferenceCount, executionCount, requests, durationNs]);
    this.meter.createObservableGauge('tickserve.queue.depth', { description: 'Rows waiting in a version\'s batcher queue', unit: '{row}' })
      .addCallback((result) => {
        for (const v of this.sources?.versions() ?? []) result.observe(v.queuedRows(), versionAttributes(v.name, v.version));
      });
    this.meter.createObservableGauge('tickserve.batches.in_flight', { description: 'Batches handed to a version\'s workers and not yet answered' })
      .addCallback((result) => {
        for (const v of this.sources?.versions() ?? []) result.observe(v.inFlightBatches(), versionAttributes(v.name, v.version));
      });
    this.meter.createObservableGauge('tickserve.worker.utilization', {
      description: 'Fraction of worker time spent computing since the previous collection',
      unit: '1',
    }).addCallback((result) => {
      if (!this.sources) return;
      const now = performance.now();
      const elapsedS = (now - this.utilisationMark.at) / 1000;
      const busy = this.busySeconds - this.utilisationMark.busy;
      this.utilisationMark = { at: now, busy: this.busySeconds };
      let workers = 0;
      for (const v of this.sources.versions()) workers += v.workers;
      if (elapsedS > 0 && workers > 0) result.observe(Math.min(1, busy / (elapsedS * workers)));
    });
    this.meter.createObservableGauge('tickserve.model.info', { description: 'Each loaded model version (value 1)' })
      .addCallback((result) => {
        for (const model of this.sources?.versions() ?? []) {
          // `model` and `version`, as on every other per-version metric, so that a query can join on them.
          result.observe(1, {
            model: model.name,
            version: model.version,
            'model.input_width': model.inputWidth,
            'model.output_width': model.outputWidth,
            'model.execution_provider': model.executionProvider,
            workers: model.workers,
          });
        }
      });
  }

  /** Opens the Prometheus endpoint on HOST:METRICS_PORT, if there is one; rejects with a StartupError naming the
   * setting at fault when it cannot listen. */
  async listen(): Promise<void> {
    if (this.prometheus === null) return;
    try {
      await this.prometheus.startServer();
    } catch (error) {
      throw listenError(this.config, 'METRICS_PORT', this.config.metricsPort, (error as Error).message);
    }
  }

  bind(sources: TelemetrySources): void {
    this.sources = sources;
  }

  /** Each version's counters over every instance of it there has been. */
  private totals(): Iterable<VersionCounters> {
    return this.versionTotals.collect(this.sources?.versions() ?? []);
  }

  /** The span of the call whose request metadata this is, for its requests to carry to their batch. */
  spanContextOf(metadata: grpc.Metadata): SpanContext | undefined {
    return (metadata as TracedMetadata)[SPAN_CONTEXT];
  }

  /** Counts one answered stream message (unary calls are counted by callEnded). */
  countAnswer(method: string, code: grpc.status, service = MODEL_SERVICE): void {
    this.rpc.countAnswer(service, method, code);
  }

  /**
   * A ModelService or GRPCInferenceService call ended (their handlers report these; the interceptor, present only
   * while tracing, reports the other services): its duration metric, and a log line when it failed.
   */
  callEnded(
    method: string,
    code: grpc.status,
    durationMs: number,
    details: string,
    spanContext: SpanContext | undefined,
    answers = 0,
    service = MODEL_SERVICE,
  ): void {
    this.rpc.recordCall(service, method, code, durationMs, answers);
    if (code !== grpc.status.OK) this.logFailure(`${service}/${method}`, code, details, spanContext);
  }

  /** A span for one stream message, child of the stream's span, when STREAM_MESSAGE_SPANS is on. */
  startMessageSpan(parent: SpanContext | undefined, index: number): Span | null {
    if (!this.streamMessageSpans || parent === undefined) return null;
    const ctx = trace.setSpanContext(ROOT_CONTEXT, parent);
    return this.tracer.startSpan('inference.ModelService/StreamPredict message', {
      kind: SpanKind.INTERNAL,
      attributes: { 'rpc.message.id': index },
    }, ctx);
  }

  /**
   * The grpc-js server interceptor, installed only while tracing: a SERVER span for each sampled RPC, in the
   * caller's trace, and the duration metric and failure log of the services other than ModelService and
   * GRPCInferenceService (whose handlers report their own).
   */
  readonly interceptor: grpc.ServerInterceptor = (descriptor, call) =>
    // grpc-js types an interceptor's result as its ServerInterceptingCall class, but uses only the interface that
    // TracedCall implements: the next interceptor, and the handler, get it as a ServerInterceptingCallInterface.
    new TracedCall(call, methodOf(descriptor.path), this.callTracer) as unknown as grpc.ServerInterceptingCall;

  /** What each TracedCall reports to. */
  private readonly callTracer: CallTracer = {
    start: (method, metadata, call) => {
      const parent = remoteParent(metadata);
      let span: ServerSpan;
      if (parent === null) {
        const traceId = this.sampler.sampleRoot();
        if (traceId === null) return null;
        span = new ServerSpan(method.fullMethod, traceId, this.sampler.spanId(), undefined, undefined, call.getPeer());
      } else {
        if (!this.sampler.sampleChild(parent)) return null;
        span = new ServerSpan(method.fullMethod, parent.traceId, this.sampler.spanId(), parent.spanId, traceStateHeader(metadata), call.getPeer());
      }
      fileSpanContext(metadata, span);
      return span;
    },
    end: (method, span, status, startedAt) => {
      const code = status.code;
      if (span !== null) {
        span.endMs = performance.now();
        span.code = code;
        if (code !== grpc.status.OK) span.statusMessage = `${grpc.status[code]}: ${status.details ?? ''}`;
        this.spans?.addServerSpan(span);
      }
      if (!method.selfReporting) {
        this.rpc.recordCall(method.service, method.method, code, performance.now() - startedAt);
        if (code !== grpc.status.OK) this.logFailure(method.fullMethod, code, status.details ?? '', span ?? undefined);
      }
    },
  };

  /** An unexpected error inside a call (a bug): its message and stack, with the call's trace ids. */
  logUnexpected(method: string, cause: unknown, spanContext: SpanContext | undefined, service = MODEL_SERVICE): void {
    const ids = spanContext ? { trace_id: spanContext.traceId, span_id: spanContext.spanId } : {};
    this.logger.error({ ...ids, method: `${service}/${method}`, err: cause }, 'unexpected server error');
  }

  private logFailure(method: string, code: grpc.status, details: string, spanContext: SpanContext | undefined): void {
    const ids = spanContext ? { trace_id: spanContext.traceId, span_id: spanContext.spanId } : {};
    const entry = { ...ids, method, code: grpc.status[code], details };
    if (CLIENT_ERRORS.has(code)) this.logger.debug(entry, 'call failed');
    else this.logger.warn(entry, 'call failed');
  }

  /** The BatchObserver of one model version: its batch metrics and spans carry the model and version. */
  observerFor(model: string, version: string): BatchObserver {
    const attributes = versionAttributes(model, version);
    return {
      onBatch: (members, batch, error) => this.onBatch(members, batch, error, attributes),
      onSlabSetAside: (count, total) => this.onSlabSetAside(count, total, attributes),
    };
  }

  /** A model version finished loading (or failed to). */
  modelLoaded(model: string, version: string, outcome: 'success' | 'failure', seconds: number): void {
    const attributes = { ...versionAttributes(model, version), outcome };
    this.modelLoads.add(1, attributes);
    this.modelLoadTime.record(seconds, attributes);
  }

  /** A model version finished unloading; `stats`: its instance's final counters. */
  modelUnloaded(model: string, version: string, stats?: InferenceStatistics): void {
    this.modelUnloads.add(1, versionAttributes(model, version));
    if (stats !== undefined) this.versionTotals.retire(model, version, stats);
  }

  /** A slab a dead or hung worker may still hold is out of use for good. */
  private onSlabSetAside(count: number, total: number, attributes: Attributes): void {
    this.slabsSetAside.add(1, attributes);
    this.logger.error(
      { ...attributes, slabsSetAside: count, slabs: total },
      count < total
        ? 'a worker died or hung holding a batch slab; the slab is set aside (one batch fewer in flight at once)'
        : 'every batch slab is set aside after workers died or hung holding them; restart the server',
    );
  }

  /** Batch metrics always; a batch span when any of its requests is traced. */
  private onBatch(members: readonly BatchRequest[], batch: BatchFigures, error: string | null, version: Attributes): void {
    this.batchRows.record(batch.rows, version);
    if (error !== null) this.failedBatches.add(1, version);
    else {
      this.computeTime.record(batch.computeUs, version);
      this.busySeconds += batch.computeUs / 1e6;
      this.workerBusy.add(batch.computeUs / 1e6, version);
    }
    let maxWaitUs = 0;
    let sumWaitUs = 0;
    for (const request of members) {
      const waitUs = (batch.dispatchedAt - request.enqueuedAt) * 1000;
      this.queueWait.record(waitUs, version);
      sumWaitUs += waitUs;
      if (waitUs > maxWaitUs) maxWaitUs = waitUs;
    }
    if (!this.tracing) return;
    const links: Link[] = [];
    let parent: SpanContext | undefined;
    for (const request of members) {
      const traced = request.spanContext;
      // Links only to sampled spans: an unsampled span is never exported, so a link to it leads nowhere, and with
      // a ratio sampler linking every request cost nearly as much as tracing them all.
      if (traced === undefined || (traced.traceFlags & TraceFlags.SAMPLED) === 0) continue;
      links.push({ context: traced });
      parent ??= traced;
    }
    if (parent === undefined) return; // no sampled request rode in this batch
    const attributes: Attributes = {
      'tickserve.batch.rows': batch.rows,
      'tickserve.batch.requests': members.length,
      'tickserve.batch.queue_wait_us.max': Math.round(maxWaitUs),
      'tickserve.batch.queue_wait_us.mean': Math.round(sumWaitUs / Math.max(1, members.length)),
      'tickserve.batch.compute_us': Math.round(batch.computeUs),
      'tickserve.worker.id': batch.worker,
      'model.name': version.model as string,
      'model.version': version.version as string,
    };
    const span = this.tracer.startSpan('inference.batch', { kind: SpanKind.INTERNAL, startTime: epochMs(batch.dispatchedAt), links, attributes }, trace.setSpanContext(ROOT_CONTEXT, parent));
    if (error !== null) span.setStatus({ code: SpanStatusCode.ERROR, message: error });
    span.end(epochMs(batch.finishedAt));
  }

  async shutdown(): Promise<void> {
    await this.sdk?.shutdown();
  }
}

interface MethodInfo {
  /** "inference.ModelService/Predict" */
  fullMethod: string;
  service: string;
  method: string;
  /** Whether its handlers report its calls' metrics and failures (the interceptor reports the others'). */
  selfReporting: boolean;
}

/** By gRPC path, made once each: the interceptor runs on every call. Bounded: grpc-js answers paths it has no
 * handler for before any interceptor runs. */
const methods = new Map<string, MethodInfo>();

function methodOf(path: string): MethodInfo {
  let info = methods.get(path);
  if (info === undefined) {
    const fullMethod = path.slice(1);
    const slash = fullMethod.lastIndexOf('/');
    const service = fullMethod.slice(0, slash);
    const method = fullMethod.slice(slash + 1);
    info = { fullMethod, service, method, selfReporting: SELF_REPORTING.has(service) };
    methods.set(path, info);
  }
  return info;
}

/**
 * The resource NodeSDK would have detected (its default detectors, or OTEL_NODE_RESOURCE_DETECTORS read as it reads
 * it) over tickserve's default service.name. Detected here, once, and handed to both the SDK and the span export
 * thread, so that the server spans, which never pass through the SDK's tracer, carry the same resource as the rest.
 */
function detectedResource(): Resource {
  const detectors = getStringFromEnv('OTEL_NODE_RESOURCE_DETECTORS') === undefined
    ? [envDetector, processDetector, hostDetector]
    : getResourceDetectorsFromEnv();
  return defaultResource()
    .merge(resourceFromAttributes({ [ATTR_SERVICE_NAME]: DEFAULT_SERVICE_NAME }))
    .merge(detectResources({ detectors }));
}

/**
 * A sampled call's SERVER span. While the call runs it is the span context its handler passes on (to batch links
 * and log lines); once the call ends it is the record the span export thread turns into a ReadableSpan, posted as
 * it is (structured cloning copies its fields and leaves the prototype, and with it the traceState getter, behind).
 */
class ServerSpan implements SpanContext, ServerSpanRecord {
  readonly traceFlags = TraceFlags.SAMPLED;
  readonly startMs = performance.now();
  endMs = 0;
  code: number = grpc.status.OK;
  statusMessage: string | undefined = undefined;

  constructor(
    readonly name: string,
    readonly traceId: string,
    readonly spanId: string,
    readonly parentSpanId: string | undefined,
    readonly traceStateHeader: string | undefined,
    readonly peer: string,
  ) {}

  /** The caller's tracestate, parsed only where a batch or message span is started under this span or links it. */
  get traceState(): TraceState | undefined {
    return this.traceStateHeader === undefined ? undefined : new TraceState(this.traceStateHeader);
  }
}

type ServerCall = grpc.ServerInterceptingCallInterface;
type CallListener = Parameters<ServerCall['start']>[0];
type CallStatus = Parameters<ServerCall['sendStatus']>[0];

/** What a TracedCall reports to (the Telemetry whose interceptor made it). */
interface CallTracer {
  /** The call's span, when the call is sampled (it is filed on the metadata); null, and nothing made, when not. */
  start(method: MethodInfo, metadata: grpc.Metadata, call: ServerCall): ServerSpan | null;
  /** The call's status is going out: its span ends, and the interceptor's own metrics are recorded. */
  end(method: MethodInfo, span: ServerSpan | null, status: CallStatus, startedAt: number): void;
}

/**
 * What the interceptor puts around each call while tracing: a pass-through to the call beneath it and, as the
 * listener it registers there, to the handler's listener above it. It takes the sampling decision when the request
 * headers arrive and ends the span, if one was made, when the status goes out; everything else goes straight on.
 *
 * One object a call, in place of grpc-js's ServerInterceptingCall, which makes a responder, a listener wrapper and
 * a closure for each event of every call, and queues messages for interceptors that hold them back (this one never
 * does). With the SDK's span start, that layer cost a sampled-out call 3.7–4.7 µs of this thread's CPU; this one and
 * the decision cost 0.2–0.3 µs (bench/trace-interceptor.ts, 256 calls in flight).
 */
class TracedCall implements ServerCall, CallListener {
  private listener: CallListener | null = null;
  private span: ServerSpan | null = null;
  /** performance.now() at the call's start, for the metrics of the services that do not report their own. */
  private readonly startedAt: number;

  constructor(
    private readonly next: ServerCall,
    private readonly method: MethodInfo,
    private readonly tracer: CallTracer,
  ) {
    this.startedAt = method.selfReporting ? 0 : performance.now();
  }

  // Toward the handler.
  start(listener: CallListener): void {
    this.listener = listener;
    this.next.start(this);
  }

  onReceiveMetadata(metadata: grpc.Metadata): void {
    this.span = this.tracer.start(this.method, metadata, this.next);
    this.listener!.onReceiveMetadata(metadata);
  }

  onReceiveMessage(message: unknown): void {
    this.listener!.onReceiveMessage(message);
  }

  onReceiveHalfClose(): void {
    this.listener!.onReceiveHalfClose();
  }

  onCancel(): void {
    this.listener!.onCancel();
  }

  // Toward the client.
  sendMetadata(metadata: grpc.Metadata): void {
    this.next.sendMetadata(metadata);
  }

  sendMessage(message: unknown, callback: () => void): void {
    this.next.sendMessage(message, callback);
  }

  sendStatus(status: CallStatus): void {
    const span = this.span;
    this.span = null; // a second status (grpc-js ignores it) must not end the span again
    this.tracer.end(this.method, span, status, this.startedAt);
    this.next.sendStatus(status);
  }

  startRead(): void {
    this.next.startRead();
  }

  getPeer(): string {
    return this.next.getPeer();
  }

  getDeadline(): grpc.Deadline {
    return this.next.getDeadline();
  }

  getHost(): string {
    return this.next.getHost();
  }

  getAuthContext(): ReturnType<ServerCall['getAuthContext']> {
    return this.next.getAuthContext();
  }

  getConnectionInfo(): ReturnType<ServerCall['getConnectionInfo']> {
    return this.next.getConnectionInfo();
  }

  getMetricsRecorder(): ReturnType<ServerCall['getMetricsRecorder']> {
    return this.next.getMetricsRecorder();
  }
}
