// When to dispatch a batch: pure functions that return "dispatch now" or "wait this long", so that they can be
// tested with a fake clock. The batcher asks only while a slab is free to take a batch; while every slab is busy,
// requests simply gather, which is what makes batching adapt to load.
//
// Two policies (BATCH_DELAY, or a model's `parameters { key: "batch_delay" ... }`):
//   fixed      Triton's dynamic batcher: a partial batch waits until its oldest request has waited
//              maxQueueDelayUs (the delay is the wait).
//   adaptive   the default: maxQueueDelayUs is only the upper bound. A partial batch goes at once while a worker is
//              idle, unless the rows expected to arrive within the wait make the batch cheaper per worker-µs than
//              dispatching now (the worker's idle wait counted); never longer than the bound.

export type BatchDelay = 'adaptive' | 'fixed';
export const BATCH_DELAYS: readonly BatchDelay[] = ['adaptive', 'fixed'];

export interface BatchPolicy {
  /** Rows in the largest batch. */
  maxBatchRows: number;
  /** fixed: how long the oldest queued request waits for company; adaptive: the most it may wait. Microseconds. */
  maxQueueDelayUs: number;
  /** Batch sizes (rows) to dispatch as soon as they can be formed; ascending. Empty: none. */
  preferredBatchSizes: readonly number[];
}

/**
 * What the adaptive controller (controller.ts) has learned of this model version and its load, as the policy reads
 * it. A batch of r rows is predicted to take fixedUs + perRowUs × r from dispatch to its result on the main thread
 * (compute and both hand-offs).
 */
export interface LoadEstimate {
  fixedUs: number;
  perRowUs: number;
  /** Rows arriving per microsecond, recently. */
  arrivalRowsPerUs: number;
  /** Workers with no batch at all: one of them starts a batch dispatched now at once. */
  idleWorkers: number;
  /** With none idle: µs until the first busy worker is predicted to finish its batch. */
  workerFreeInUs: number;
  /** The part of a batch's time that is not the worker's compute: the hand-off both ways (recent mean). */
  handOffUs: number;
}

export type Decision =
  /** Form a batch of up to `rows` rows now (always at least the oldest request). */
  | { readonly dispatch: true; readonly rows: number }
  /** Nothing to do until `waitUs` from now (or until more requests arrive, or a batch finishes). */
  | { readonly dispatch: false; readonly waitUs: number };

const IDLE: Decision = Object.freeze({ dispatch: false, waitUs: Infinity });

/** A wait shorter than this costs about what it could save (a timer's wake-up and its slack): dispatch instead. */
export const MIN_WAIT_US = 20;

/** The decisions both policies share: an empty queue, a full batch, a preferred size; null when none applies. */
function common(queuedRows: number, policy: BatchPolicy): Decision | null {
  if (queuedRows <= 0) return IDLE;
  if (queuedRows >= policy.maxBatchRows) return { dispatch: true, rows: policy.maxBatchRows };
  const preferred = policy.preferredBatchSizes;
  // The largest preferred size the queue can fill goes at once; the rest keeps waiting for company.
  for (let i = preferred.length - 1; i >= 0; i--) {
    if (preferred[i] <= queuedRows) return { dispatch: true, rows: preferred[i] };
  }
  return null;
}

/**
 * The fixed policy (Triton's).
 * @param queuedRows rows waiting in the queue
 * @param oldestWaitUs how long the oldest of them has waited
 */
export function decide(queuedRows: number, oldestWaitUs: number, policy: BatchPolicy): Decision {
  const decided = common(queuedRows, policy);
  if (decided !== null) return decided;
  const waitUs = policy.maxQueueDelayUs - oldestWaitUs;
  if (waitUs <= 0) return { dispatch: true, rows: queuedRows };
  return { dispatch: false, waitUs };
}

/**
 * The adaptive policy. With a worker idle, a batch of the n rows queued costs it B + a·n µs (B = fixedUs,
 * a = perRowUs): (B + a·n)/n a row. Waiting w µs first brings m = λw more rows (λ rows a µs) and costs the idle
 * worker w: (w + B + a·(n + m))/(n + m) a row. Waiting is cheaper per row exactly when n·w < m·B, i.e. when
 * n < λB: fewer rows are queued than arrive during one batch's fixed cost. Then the batch waits for n* = ⌈λB⌉ rows,
 * due in (n* − n)/λ µs, never past the bound; otherwise (a quiet feed: λB < 1 ≤ n; or a long queue) it goes now.
 * With no worker idle the batch grows until it can be handed over just in time: one hand-off before the first busy
 * worker is predicted to finish, so that it is queued behind that worker's batch and taken the moment the worker is
 * free (a worker left waiting for the main thread's hand-off between two batches is throughput lost under load);
 * never past the bound.
 */
export function decideAdaptive(queuedRows: number, oldestWaitUs: number, policy: BatchPolicy, load: LoadEstimate): Decision {
  const decided = common(queuedRows, policy);
  if (decided !== null) return decided;
  const boundUs = policy.maxQueueDelayUs - oldestWaitUs;
  if (boundUs < MIN_WAIT_US) return { dispatch: true, rows: queuedRows };
  if (load.idleWorkers <= 0) {
    const untilHandOffUs = load.workerFreeInUs - load.handOffUs;
    if (untilHandOffUs < MIN_WAIT_US) return { dispatch: true, rows: queuedRows };
    return { dispatch: false, waitUs: Math.min(boundUs, untilHandOffUs) };
  }
  const lambda = load.arrivalRowsPerUs;
  const worthRows = lambda * load.fixedUs;
  if (!(queuedRows < worthRows)) return { dispatch: true, rows: queuedRows };
  const targetRows = Math.min(policy.maxBatchRows, Math.ceil(worthRows));
  const waitUs = Math.min(boundUs, (targetRows - queuedRows) / lambda);
  if (waitUs < MIN_WAIT_US) return { dispatch: true, rows: queuedRows };
  return { dispatch: false, waitUs };
}
