// The span processor on the gRPC thread: it turns each ended, sampled span into a plain record and posts them in
// groups to the span export thread (worker.ts), where the SDK's own processors batch, serialize and send them.
//
// Why a thread: with the SDK's BatchSpanProcessor on the gRPC thread, every call's span stayed in its buffer until
// 512 had gathered, long enough to be promoted out of V8's young generation, and the export then serialized all 512
// on the spot: ~3.8 µs a span, and a ~2 ms stall of the thread that answers RPCs each time. A record costs ~1.3 µs
// to make and post (measured with 512 server spans), and the span itself dies young.
//
// A call's SERVER span is not an SDK span at all: the interceptor hands its compact record to addServerSpan(), and
// the export thread makes the ReadableSpan. Spans the SDK's tracer starts (batches, stream messages) come through
// onEnd() as before. Both kinds share one bound and one message.
import { TraceFlags, type Attributes } from '@opentelemetry/api';
import type { Resource } from '@opentelemetry/resources';
import type { ReadableSpan, SpanProcessor } from '@opentelemetry/sdk-trace-base';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { Worker } from 'node:worker_threads';
import type { FromExportThread, ServerSpanRecord, SpanRecord, ToExportThread } from './protocol';

const EXPORT_THREAD = path.join(__dirname, 'worker.js');

/** Records are posted once this many have gathered... */
const POST_EVERY = 256;
/** ...or this long after the first of them, whichever comes first. */
const POST_AFTER_MS = 100;
/**
 * Spans posted but not yet taken by the export thread, plus those gathering here, beyond which new spans are
 * dropped: a stalled export thread must not grow this thread's memory without bound. (The export thread's own
 * queue, OTEL_BSP_MAX_QUEUE_SIZE, bounds what waits for the network.)
 */
const MAX_IN_TRANSIT = 16_384;

function toRecord(span: ReadableSpan): SpanRecord {
  const context = span.spanContext();
  const parent = span.parentSpanContext;
  return {
    name: span.name,
    kind: span.kind,
    traceId: context.traceId,
    spanId: context.spanId,
    traceFlags: context.traceFlags,
    traceState: context.traceState?.serialize(),
    parentSpanId: parent?.spanId,
    parentIsRemote: parent?.isRemote,
    startTime: span.startTime,
    endTime: span.endTime,
    duration: span.duration,
    attributes: span.attributes,
    status: span.status,
    links: span.links.map((link) => ({
      traceId: link.context.traceId,
      spanId: link.context.spanId,
      traceFlags: link.context.traceFlags,
      isRemote: link.context.isRemote,
      traceState: link.context.traceState?.serialize(),
      attributes: link.attributes,
      droppedAttributesCount: link.droppedAttributesCount,
    })),
    events: span.events,
    droppedAttributesCount: span.droppedAttributesCount,
    droppedEventsCount: span.droppedEventsCount,
    droppedLinksCount: span.droppedLinksCount,
    scope: span.instrumentationScope,
  };
}

export class ThreadSpanProcessor implements SpanProcessor {
  private readonly thread: Worker;
  private pending: SpanRecord[] = [];
  private pendingServer: ServerSpanRecord[] = [];
  private inTransit = 0;
  private timer: NodeJS.Timeout | null = null;
  /** The resource's attributes once its detectors have settled (host.id is read asynchronously); spans wait here
   * until then, which is before the server listens. */
  private resource: Attributes | null = null;
  private readonly resourceSettled: Promise<void>;
  /** Whether the drop warning has been given (once per process). */
  private warnedOfDrops = false;
  private failed = false;
  private lastRequest = 0;
  private readonly requests = new Map<number, () => void>();

  /**
   * @param onProblem told once when spans start being dropped, and if the export thread dies
   * @param resource the resource of every span exported, the one the SDK's tracer provider was given
   */
  constructor(
    private readonly onProblem: (message: string) => void,
    resource: Resource,
  ) {
    this.resourceSettled = (resource.waitForAsyncAttributes?.() ?? Promise.resolve()).then(() => {
      this.resource = resource.attributes;
      this.post();
    });
    this.thread = new Worker(EXPORT_THREAD);
    // An idle export thread does not keep the process alive; shutdown() waits for it to finish exporting.
    this.thread.unref();
    this.thread.on('message', (message: FromExportThread) => {
      if (message.type === 'taken') this.inTransit -= message.spans;
      else this.settle(message.id);
    });
    this.thread.on('error', (error) => {
      this.failed = true;
      this.pending = [];
      this.pendingServer = [];
      this.onProblem(`the span export thread failed (${error.message}); spans are no longer exported`);
      for (const id of [...this.requests.keys()]) this.settle(id);
    });
  }

  onStart(): void {}

  onEnd(span: ReadableSpan): void {
    if ((span.spanContext().traceFlags & TraceFlags.SAMPLED) === 0 || !this.admit()) return;
    this.pending.push(toRecord(span));
    this.gathered();
  }

  /** A call's ended SERVER span, recorded by the interceptor (sampled: unsampled calls make no record). */
  addServerSpan(span: ServerSpanRecord): void {
    if (!this.admit()) return;
    this.pendingServer.push(span);
    this.gathered();
  }

  async forceFlush(): Promise<void> {
    await this.resourceSettled;
    this.post();
    return this.request('flush');
  }

  async shutdown(): Promise<void> {
    await this.resourceSettled;
    this.post();
    await this.request('shutdown');
    await this.thread.terminate();
  }

  /** Whether there is room for one more span; warns once when there is not. */
  private admit(): boolean {
    if (this.failed) return false;
    if (this.inTransit + this.pending.length + this.pendingServer.length < MAX_IN_TRANSIT) return true;
    if (!this.warnedOfDrops) {
      this.warnedOfDrops = true;
      this.onProblem(`span export is behind by ${MAX_IN_TRANSIT} spans; dropping spans`);
    }
    return false;
  }

  /** A span was added: post once enough have gathered, or soon. */
  private gathered(): void {
    if (this.pending.length + this.pendingServer.length >= POST_EVERY) this.post();
    else if (this.timer === null) this.timer = setTimeout(this.post, POST_AFTER_MS).unref();
  }

  private readonly post = (): void => {
    if (this.timer !== null) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    if ((this.pending.length === 0 && this.pendingServer.length === 0) || this.failed || this.resource === null) return;
    const spans = this.pending;
    const serverSpans = this.pendingServer;
    this.pending = [];
    this.pendingServer = [];
    this.inTransit += spans.length + serverSpans.length;
    this.send({ type: 'spans', resource: this.resource, timeOrigin: performance.timeOrigin, spans, serverSpans });
  };

  private request(type: 'flush' | 'shutdown'): Promise<void> {
    if (this.failed) return Promise.resolve();
    const id = ++this.lastRequest;
    // Held while a flush is awaited, so that the process does not exit with spans still on their way.
    this.thread.ref();
    return new Promise((resolve) => {
      this.requests.set(id, resolve);
      this.send({ type, id });
    });
  }

  private settle(id: number): void {
    this.requests.get(id)?.();
    this.requests.delete(id);
    if (this.requests.size === 0) this.thread.unref();
  }

  private send(message: ToExportThread): void {
    this.thread.postMessage(message);
  }
}
