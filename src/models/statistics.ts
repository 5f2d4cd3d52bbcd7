// One model version's inference statistics, kept as running counters on the main thread: ModelStatistics (the v2
// API) reads them as they are, and the Prometheus endpoint reads the same counters, so the two never disagree.
// Durations are kept in nanoseconds, as Triton reports them.
import type { BatchFigures, BatchObserver, BatchRequest } from '../batching/batcher';

export interface Duration {
  count: number;
  ns: number;
}

const duration = (): Duration => ({ count: 0, ns: 0 });

export interface BatchSizeStatistics {
  batchSize: number;
  computeInfer: Duration;
}

export class InferenceStatistics implements BatchObserver {
  /** Requests answered with their outputs, and the time from enqueue to the answer. */
  readonly success = duration();
  /** Requests whose batch failed (a model error or a worker fault). */
  readonly fail = duration();
  /** Time requests waited in the queue. */
  readonly queue = duration();
  /** The worker's compute time, counted once per request, as Triton counts it. */
  readonly computeInfer = duration();
  /** Rows computed (Triton's inference_count) and batches run (execution_count). */
  inferenceCount = 0;
  executionCount = 0;
  /** Epoch milliseconds of the last answered batch; 0: none yet. */
  lastInference = 0;
  private readonly bySize = new Map<number, BatchSizeStatistics>();

  constructor(private readonly next: BatchObserver) {}

  onBatch(members: readonly BatchRequest[], batch: BatchFigures, error: string | null): void {
    const computeNs = Math.round(batch.computeUs * 1000);
    for (const request of members) {
      const queueNs = Math.round((batch.dispatchedAt - request.enqueuedAt) * 1e6);
      this.queue.count++;
      this.queue.ns += queueNs;
      const total = Math.round((batch.finishedAt - request.enqueuedAt) * 1e6);
      const outcome = error === null ? this.success : this.fail;
      outcome.count++;
      outcome.ns += total;
      if (error === null) {
        this.computeInfer.count++;
        this.computeInfer.ns += computeNs;
      }
    }
    if (error === null) {
      this.inferenceCount += batch.rows;
      this.executionCount++;
      this.lastInference = Date.now();
      let size = this.bySize.get(batch.rows);
      if (size === undefined) {
        size = { batchSize: batch.rows, computeInfer: duration() };
        this.bySize.set(batch.rows, size);
      }
      size.computeInfer.count++;
      size.computeInfer.ns += computeNs;
    }
    this.next.onBatch(members, batch, error);
  }

  onSlabSetAside(count: number, total: number): void {
    this.next.onSlabSetAside?.(count, total);
  }

  /** Per batch size, ascending. */
  batchSizes(): BatchSizeStatistics[] {
    return [...this.bySize.values()].sort((a, b) => a.batchSize - b.batchSize);
  }
}
