// When to dispatch a batch: one pure function, the same semantics as Triton's dynamic batcher, so that it can be
// tested with a fake clock. The batcher asks only while a slab (and so a worker) is free to take a batch; while
// every worker is busy, requests simply gather, which is what makes batching adapt to load.

export interface BatchPolicy {
  /** Rows in the largest batch. */
  maxBatchRows: number;
  /** Longest the oldest queued request waits for company, in microseconds. */
  maxQueueDelayUs: number;
  /** Batch sizes (rows) to dispatch as soon as they can be formed; ascending. Empty: none. */
  preferredBatchSizes: readonly number[];
}

export type Decision =
  /** Form a batch of up to `rows` rows now (always at least the oldest request). */
  | { readonly dispatch: true; readonly rows: number }
  /** Nothing to do until `waitUs` from now (or until more requests arrive). */
  | { readonly dispatch: false; readonly waitUs: number };

const IDLE: Decision = Object.freeze({ dispatch: false, waitUs: Infinity });

/**
 * @param queuedRows rows waiting in the queue
 * @param oldestWaitUs how long the oldest of them has waited
 */
export function decide(queuedRows: number, oldestWaitUs: number, policy: BatchPolicy): Decision {
  if (queuedRows <= 0) return IDLE;
  if (queuedRows >= policy.maxBatchRows) return { dispatch: true, rows: policy.maxBatchRows };
  const preferred = policy.preferredBatchSizes;
  // The largest preferred size the queue can fill goes at once; the rest keeps waiting for company.
  for (let i = preferred.length - 1; i >= 0; i--) {
    if (preferred[i] <= queuedRows) return { dispatch: true, rows: preferred[i] };
  }
  const waitUs = policy.maxQueueDelayUs - oldestWaitUs;
  if (waitUs <= 0) return { dispatch: true, rows: queuedRows };
  return { dispatch: false, waitUs };
}
