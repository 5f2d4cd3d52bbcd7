// The span processor on the gRPC thread: it turns each ended, sampled span into a plain record and posts them in
// groups to the span export thread (worker.ts), where the SDK's own processors batch, serialize and send them.
//
// Why a thread: with the SDK's BatchSpanProcessor on the gRPC thread, every call's span stayed in its buffer until
// 512 had gathered, long enough to be promoted out of V8's young generation, and the export then serialized all 512
// on the spot: ~3.8 µs a span, and a ~2 ms stall of the thread that answers RPCs each time. A record costs ~1.3 µs
// to make and post (measured with 512 server spans), and the span itself dies young.
import { TraceFlags, type Attributes } from '@opentelemetry/api';
import type { ReadableSpan, SpanProcessor } from '@opentelemetry/sdk-trace-base';
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import type { FromExportThread, SpanRecord, ToExportThread } from './protocol';

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
  private inTransit = 0;
  private timer: NodeJS.Timeout | null = null;
  private resource: Attributes | null = null;
  /** Whether the drop warning has been given (once per process). */
  private warnedOfDrops = false;
  private failed = false;
  private lastRequest = 0;
  private readonly requests = new Map<number, () => void>();

  /** @param onProblem told once when spans start being dropped, and if the export thread dies */
  constructor(private readonly onProblem: (message: string) => void) {
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
      this.onProblem(`the span export thread failed (${error.message}); spans are no longer exported`);
      for (const id of [...this.requests.keys()]) this.settle(id);
    });
  }

  onStart(): void {}

  onEnd(span: ReadableSpan): void {
    if ((span.spanContext().traceFlags & TraceFlags.SAMPLED) === 0 || this.failed) return;
    if (this.inTransit + this.pending.length >= MAX_IN_TRANSIT) {
      if (!this.warnedOfDrops) {
        this.warnedOfDrops = true;
        this.onProblem(`span export is behind by ${MAX_IN_TRANSIT} spans; dropping spans`);
      }
      return;
    }
    this.resource ??= span.resource.attributes;
    this.pending.push(toRecord(span));
    if (this.pending.length >= POST_EVERY) this.post();
    else if (this.timer === null) this.timer = setTimeout(this.post, POST_AFTER_MS).unref();
  }

  forceFlush(): Promise<void> {
    this.post();
    return this.request('flush');
  }

  async shutdown(): Promise<void> {
    this.post();
    await this.request('shutdown');
    await this.thread.terminate();
  }

  private readonly post = (): void => {
    if (this.timer !== null) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    if (this.pending.length === 0 || this.failed) return;
    const spans = this.pending;
    this.pending = [];
    this.inTransit += spans.length;
    this.send({ type: 'spans', resource: this.resource ?? {}, spans });
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
