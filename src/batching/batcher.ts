// The dynamic micro-batcher: owns the request queue, the one timer, the slabs and the batches in flight.
// Requests of any RPC come in through enqueue(); the policy (policy.ts) decides when a batch goes, from what the
// adaptive controller (controller.ts) has learned under BATCH_DELAY=adaptive; the batch is assembled into a free
// slab and handed to the executor (the worker pool); each request then gets exactly one of complete() or fail(),
// unless it was cancelled, in which case nobody is listening and it is dropped silently. Time is read and waited
// for only through the injected BatcherClock (clock.ts); nothing polls.
import type { SpanContext } from '@opentelemetry/api';
import { deadlineExceeded, internal, unavailable, type ServingError } from '../main/errors';
import { systemClock, type BatcherClock, type TimerHandle } from './clock';
import { AdaptiveController } from './controller';
import { decide, decideAdaptive, type BatchDelay, type BatchPolicy } from './policy';
import { RingQueue } from './queue';
import { slabViews, type SlabLayout, type SlabViews } from './slab';

/**
 * A request as the batcher sees it. The caller fills it and hands it to enqueue(); from then on the batcher owns
 * it until it calls complete() or fail() (or drops it, cancelled).
 */
export interface BatchRequest {
  /**
   * Each input's bytes, in the model's input order: rows x that input's row bytes, little-endian, row-major (for a
   * solo model: the whole tensor as sent).
   */
  readonly inputs: readonly Buffer[];
  readonly rows: number;
  /** Solo models only (variable dimensions): each input's shape as sent; null otherwise. */
  readonly shapes: number[][] | null;
  /** The batcher's clock (performance.now() in the server) by which the answer is useless; Infinity for none. */
  readonly deadline: number;
  /** The batcher's clock at enqueue; written by the batcher. */
  enqueuedAt: number;
  /** Written by the batcher: true from enqueue until the request is taken into a batch or dropped. */
  queued: boolean;
  /** Set through Batcher.cancel() only. */
  cancelled: boolean;
  /** The traced span this request belongs to, for the batch span's links; undefined when not traced. */
  readonly spanContext: SpanContext | undefined;
  /**
   * The answer is rows `firstRow` to `firstRow + rows` of each of the batch's outputs, which live in a slab that is
   * reused as soon as complete() returns: copy what you keep. `batch.finishedAt` is the batcher's clock when the
   * batch's results arrived.
   */
  complete(outputs: BatchOutputs, firstRow: number, batch: BatchFigures): void;
  fail(error: ServingError): void;
}

/** How the batch that computed a request went; one object per batch, shared by its requests. */
export interface BatchFigures {
  rows: number;
  computeUs: number;
  finishedAt: number;
  dispatchedAt: number;
  /** The worker that ran it; -1 when it failed before one reported. */
  worker: number;
}

/** Told of every batch once its requests are answered (metrics, batch spans); must not throw. */
export interface BatchObserver {
  onBatch(members: readonly BatchRequest[], batch: BatchFigures, error: string | null): void;
  /** A slab was set aside (ExecutorFault.slabSetAside): `count` of the `total` slabs are now out of use. */
  onSlabSetAside?(count: number, total: number): void;
}

/**
 * A finished batch's outputs, by output index: the bytes of all its rows (row-major) and each output's shape for
 * the whole batch. Valid only during complete().
 */
export interface BatchOutputs {
  readonly bytes: readonly Buffer[];
  /** Bytes of one row of each output (0 rows: the whole tensor for a solo model). */
  readonly rowBytes: readonly number[];
  readonly shapes: readonly (readonly number[])[];
}

export interface BatchResult {
  /** Time the worker spent computing, measured inside the worker. */
  computeUs: number;
  /** Which worker ran the batch. */
  worker: number;
  /** Outputs that are not in the slab (variable shape): their shapes and bytes, by output index. */
  outputs?: ReadonlyArray<{ dims: number[]; data: Uint8Array } | null>;
  /** Set when the model failed on the batch: no outputs were written. */
  error?: string;
}

/** A solo batch's inputs as the worker needs them: each input's shape and its bytes in the slab. */
export interface SoloShapes {
  shapes: number[][];
  byteLengths: number[];
}

/**
 * Runs the batch held in slab `slab` (its first `rows` input rows), writing its output rows into the same slab.
 * Rejects when the worker itself failed; by then nothing will touch the slab for this batch any more, unless the
 * rejection says `slabSetAside`: then a worker may still hold it, and the slab is never used again.
 */
export interface ExecutorFault extends Error {
  readonly slabSetAside?: boolean;
}

export interface BatchExecutor {
  run(slab: number, rows: number, solo?: SoloShapes): Promise<BatchResult>;
}

export interface BatcherOptions extends BatchPolicy {
  /** Rows the queue may hold; enqueue() refuses beyond it. */
  maxQueueRows: number;
  layout: SlabLayout;
  /** One per batch that may be in flight at once. */
  slabs: readonly SharedArrayBuffer[];
  executor: BatchExecutor;
  observer?: BatchObserver;
  /**
   * The model has variable dimensions: every batch is one request, its tensors as sent (the slab's input regions
   * hold one request's bytes, and every output comes back in the batch's result).
   */
  solo?: boolean;
  /** Each output's per-row dims (after the batch dimension when batching), for the answers' shapes. */
  outputDims?: readonly (readonly number[])[];
  /** Whether the model batches along a leading dimension (the outputs' shapes then start with the rows). */
  batches?: boolean;
  /** Where time is read and waited for; systemClock (performance.now(), Node's timers) by default. */
  clock?: BatcherClock;
  /**
   * fixed: a partial batch waits maxQueueDelayUs for company. adaptive: it waits only while that pays, up to
   * maxQueueDelayUs, and a request whose deadline the predicted queue and compute cannot meet is refused early.
   */
  batchDelay: BatchDelay;
  /** Workers taking batches (the slabs are more: a batch may wait assembled for a busy worker); slabs by default. */
  workers?: number;
}

/** setTimeout waits whole milliseconds: a longer wait is set to the millisecond before, and re-decided then. */
const MS_TIMER_US = 1000;

/** A caller's complete() that throws is a bug; it must not cost the batch's other requests their answers. */
function answer(request: BatchRequest, outputs: BatchOutputs, firstRow: number, batch: BatchFigures): void {
  try {
    request.complete(outputs, firstRow, batch);
  } catch (error) {
    try {
      request.fail(internal(`answering failed: ${error instanceof Error ? error.message : String(error)}`));
    } catch {
      // nothing more can be done for this one request
    }
  }
}

export class Batcher {
  private readonly queue = new RingQueue<BatchRequest>();
  private queuedRows = 0;
  private readonly views: SlabViews[];
  /** Each slab's outputs, made once: the regions, their row bytes, and shapes whose row count is set per batch. */
  private readonly slabOutputs: Array<{ bytes: Buffer[]; rowBytes: number[]; shapes: number[][] }>;
  private readonly freeSlabs: number[];
  /** Workers running this version's batches (a slab each when not given). */
  private readonly workers: number;
  /** The requests riding in each slab while it is in flight; reused arrays, indexed by slab. */
  private readonly members: BatchRequest[][];
  private readonly clock: BatcherClock;
  /** Under BATCH_DELAY=adaptive only; null under fixed, which predicts nothing and refuses nothing early. */
  private readonly controller: AdaptiveController | null;
  /** Each slab's batch while in flight: its dispatch time and rows (for when a worker is predicted to free up). */
  private readonly slabRows: Int32Array;
  /**
   * When a worker was free for each slab's batch: its dispatch, or, for one dispatched while every worker was busy,
   * when a batch ahead of it ended (the pool hands batches to workers in dispatch order, one each). NaN while it
   * waits, and for a batch whose worker came free through a fault (its replacement's start-up would count as cost).
   * The cost fit learns from here to the result, so that queueing behind a busy worker is not taken for compute.
   */
  private readonly slabStartedAt: Float64Array;
  /** Slabs dispatched while every worker was busy, in dispatch order, each waiting for a worker to come free. */
  private readonly waitingForWorker: number[] = [];
  private pumpQueued = false;
  /** The one wake-up timer; meaningful only while timerDue is finite. */
  private timer: TimerHandle = null;
  /** When the timer fires; Infinity while none is set. */
  private timerDue = Infinity;
  // The queue is FIFO, and deadlines mostly arrive in order (one REQUEST_TIMEOUT_MS for all), so the head, the
  // oldest request, usually expires first. A request whose deadline is earlier than that of one queued ahead of it
  // (a client's shorter deadline) "overtakes": it may expire behind the head, and must still be answered then, even
  // while every slab is busy. Two running figures find those without scanning the queue on each pump:
  /** At least the latest deadline of any queued request (it may belong to one that has left since). */
  private latestQueuedDeadline = -Infinity;
  /** At most the earliest deadline of a queued request that overtakes (it may belong to one that has left). */
  private overtakerDeadline = Infinity;
  private drainWaiters: Array<() => void> = [];
  /** Slabs a failed worker may still hold (ExecutorFault.slabSetAside): out of the free list for good. */
  private setAside = 0;
  private roomWaiters: Array<() => void> = [];

  constructor(private readonly options: BatcherOptions) {
    this.clock = options.clock ?? systemClock;
    this.clock.prepare?.();
    this.views = options.slabs.map((slab) => slabViews(slab, options.layout));
    const outputDims = options.outputDims ?? options.layout.outputRowBytes.map(() => []);
    const batches = options.batches ?? true;
    this.slabOutputs = this.views.map((views) => ({
      bytes: views.outputs,
      rowBytes: [...options.layout.outputRowBytes],
      shapes: outputDims.map((dims) => (batches ? [0, ...dims] : [...dims])),
    }));
    this.freeSlabs = options.slabs.map((_, i) => i).reverse();
    this.members = options.slabs.map(() => []);
    this.workers = options.workers ?? options.slabs.length;
    this.controller = options.batchDelay === 'adaptive' ? new AdaptiveController(this.workers) : null;
    this.slabRows = new Int32Array(options.slabs.length);
    this.slabStartedAt = new Float64Array(options.slabs.length);
  }

  /** The adaptive controller's figures (null under fixed), for statistics and tests. */
  get adaptive(): AdaptiveController | null {
    return this.controller;
  }

  /** Rows waiting for a batch (cancelled requests leave at once). */
  get queuedRowCount(): number {
    return this.queuedRows;
  }

  get inFlightBatches(): number {
    return this.options.slabs.length - this.setAside - this.freeSlabs.length;
  }

  /** Slabs set aside because a failed worker may still hold them; each is one batch fewer in flight at once. */
  get slabsSetAside(): number {
    return this.setAside;
  }

  /** Rows in the largest batch. */
  get maxBatchRows(): number {
    return this.options.maxBatchRows;
  }

  get maxQueueRows(): number {
    return this.options.maxQueueRows;
  }

  /** Whether `rows` more rows fit in the queue now. */
  private hasRoomFor(rows: number): boolean {
    return this.queuedRows + rows <= this.options.maxQueueRows;
  }

  /** Takes ownership of `request`; false (and no ownership) when the queue has no room for its rows. */
  enqueue(request: BatchRequest): boolean {
    if (!this.hasRoomFor(request.rows)) return false;
    request.enqueuedAt = this.clock.now();
    request.queued = true;
    this.controller?.onArrival(request.rows, request.enqueuedAt * 1000);
    if (request.deadline >= this.latestQueuedDeadline) this.latestQueuedDeadline = request.deadline;
    else if (request.deadline < this.overtakerDeadline) this.overtakerDeadline = request.deadline;
    this.queue.push(request);
    this.queuedRows += request.rows;
    this.schedulePump();
    return true;
  }

  /** The caller no longer wants the answer: the request leaves the queue's count now and is never computed. */
  cancel(request: BatchRequest): void {
    if (request.cancelled) return;
    request.cancelled = true;
    if (request.queued) {
      request.queued = false;
      this.queuedRows -= request.rows;
      this.notifyRoom();
      this.notifyIfDrained();
    }
  }

  /** Calls `callback` once, the next time rows leave the queue (for callers that wait for room). */
  onceRoom(callback: () => void): void {
    this.roomWaiters.push(callback);
  }

  /** Resolves once nothing is queued and no batch is in flight. */
  drain(): Promise<void> {
    if (this.isDrained()) return Promise.resolve();
    return new Promise((resolve) => this.drainWaiters.push(resolve));
  }

  private isDrained(): boolean {
    return this.queuedRows === 0 && this.inFlightBatches === 0;
  }

  private notifyIfDrained(): void {
    if (this.drainWaiters.length === 0 || !this.isDrained()) return;
    const waiters = this.drainWaiters;
    this.drainWaiters = [];
    for (const resolve of waiters) resolve();
  }

  private schedulePump(): void {
    // Deferred to the end of this event-loop turn, so that every request read from the socket in this turn
    // joins the same decision.
    if (this.pumpQueued) return;
    this.pumpQueued = true;
    this.clock.setImmediate(this.onPump);
  }

  private readonly onPump = (): void => {
    this.pumpQueued = false;
    this.pump();
  };

  private readonly onTimer = (): void => {
    this.timer = null;
    this.timerDue = Infinity;
    this.pump();
  };

  private pump(): void {
    for (;;) {
      const now = this.clock.now();
      // Under adaptive, the least time before a batch dispatched now could answer: a request whose deadline falls
      // within it cannot be met, and is refused now rather than computed late (0 under fixed, and until trained).
      const startUs = this.workerFreeInUs(now);
      const oneRowUs = this.controller === null ? 0 : startUs + this.controller.predictUs(1);
      if (this.overtakerDeadline <= now + oneRowUs / 1000) this.expireQueued(now, startUs);
      const oldest = this.dropExpiredHead(now, startUs);
      if (oldest === undefined) {
        // Nothing is queued: no deadline is ahead of the next request.
        this.latestQueuedDeadline = -Infinity;
        this.overtakerDeadline = Infinity;
        break;
      }
      // Wake for the earliest deadline too, so that a request is answered when it expires even while every worker
      // is busy: the oldest request's, or an overtaker's when that may come first.
      const untilDeadlineUs = (Math.min(oldest.deadline, this.overtakerDeadline) - now) * 1000 - oneRowUs;
      if (this.setAside === this.options.slabs.length) {
        this.failQueued(unavailable('no batch memory left: workers died holding every slab; the server must be restarted'));
        break;
      }
      if (this.freeSlabs.length === 0) {
        this.wakeIn(untilDeadlineUs, now);
        break;
      }
      const waitedUs = (now - oldest.enqueuedAt) * 1000;
      const decision = this.controller === null
        ? decide(this.queuedRows, waitedUs, this.options)
        : decideAdaptive(this.queuedRows, waitedUs, this.options, this.controller.loadEstimate(this.inFlightBatches, startUs));
      if (!decision.dispatch) {
        this.wakeIn(Math.min(decision.waitUs, untilDeadlineUs), now);
        break;
      }
      this.dispatch(decision.rows, now, startUs);
    }
    this.notifyRoom();
    this.notifyIfDrained();
  }

  private notifyRoom(): void {
    if (this.roomWaiters.length === 0 || this.queuedRows >= this.options.maxQueueRows) return;
    const waiters = this.roomWaiters;
    this.roomWaiters = [];
    for (const callback of waiters) callback();
  }

  private wakeIn(waitUs: number, now: number): void {
    if (waitUs === Infinity) return;
    // At least a microsecond: a wait computed as 0 (a deadline just within reach) must still let time pass.
    waitUs = Math.max(1, waitUs);
    const due = now + waitUs / 1000;
    if (this.timerDue <= due) return;
    if (this.timerDue !== Infinity) this.clock.clearTimer(this.timer);
    this.timerDue = due;
    // A wait of a millisecond or more goes on Node's timer, to the whole millisecond before (pump() re-decides
    // then); a shorter one on the clock's fine timer, which sleeps rather than polls (fine-timer.ts).
    this.timer = this.clock.setTimer(this.onTimer, waitUs >= MS_TIMER_US ? Math.floor(waitUs / MS_TIMER_US) : waitUs / 1000);
  }

  /**
   * Under adaptive, µs until a worker is predicted to be free for a new batch: 0 with one idle, else the earliest
   * predicted end of a batch in flight (a lower bound: a batch waiting assembled for its worker starts later).
   * 0 under fixed and until the controller is trained.
   */
  private workerFreeInUs(now: number): number {
    const controller = this.controller;
    if (controller === null || !controller.trained) return 0;
    if (this.inFlightBatches < this.workers) return 0;
    let earliest = Infinity;
    for (let slab = 0; slab < this.slabRows.length; slab++) {
      // Batches on a worker only: one still waiting for a worker ends later than those it waits for.
      if (this.slabRows[slab] === 0 || this.slabStartedAt[slab] !== this.slabStartedAt[slab]) continue;
      const endsIn = (this.slabStartedAt[slab] - now) * 1000 + controller.predictUs(this.slabRows[slab]);
      if (endsIn < earliest) earliest = endsIn;
    }
    return earliest === Infinity ? 0 : Math.max(0, earliest);
  }

  /**
   * Whether `request` cannot be answered by its deadline: it has passed, or (adaptive, trained) a batch of this
   * request alone, started when a worker is predicted to be free, is predicted to end after it.
   */
  private doomed(request: BatchRequest, now: number, startUs: number): boolean {
    if (request.deadline <= now) return true;
    if (this.controller === null || request.deadline === Infinity) return false;
    return request.deadline < now + (startUs + this.controller.predictUs(request.rows)) / 1000;
  }

  /**
   * Fails every queued request that cannot meet its deadline (doomed()), wherever it is in the queue (their places
   * are skipped later, as cancelled ones' are), and works out the two deadline figures afresh from the requests left.
   */
  private expireQueued(now: number, startUs: number): void {
    let latest = -Infinity;
    let overtaker = Infinity;
    // By index, re-reading the length: a fail() may enqueue (a stream's held message), which only appends.
    for (let i = 0; i < this.queue.length; i++) {
      const request = this.queue.at(i)!;
      if (!request.queued) continue;
      if (this.doomed(request, now, startUs)) this.drop(request, now);
      else if (request.deadline >= latest) latest = request.deadline;
      else if (request.deadline < overtaker) overtaker = request.deadline;
    }
    this.latestQueuedDeadline = latest;
    this.overtakerDeadline = overtaker;
  }

  /** Removes cancelled and doomed requests from the head of the queue; returns the first live one. */
  private dropExpiredHead(now: number, startUs: number): BatchRequest | undefined {
    for (let head = this.queue.peek(); head !== undefined; head = this.queue.peek()) {
      if (head.queued && !this.doomed(head, now, startUs)) return head;
      this.queue.shift();
      this.drop(head, now);
    }
    return undefined;
  }

  /** Answers every queued request with `failure` (nothing can run them). */
  private failQueued(failure: ServingError): void {
    for (let request = this.queue.shift(); request !== undefined; request = this.queue.shift()) {
      if (!request.queued) continue;
      request.queued = false;
      this.queuedRows -= request.rows;
      request.fail(failure);
    }
  }

  /** Fails a doomed request with DEADLINE_EXCEEDED: expired, or (adaptive) predicted to miss its deadline. */
  private drop(request: BatchRequest, now: number): void {
    if (!request.queued) return; // cancelled: already uncounted, and nobody listens
    request.queued = false;
    this.queuedRows -= request.rows;
    request.fail(
      deadlineExceeded(
        request.deadline <= now
          ? 'deadline exceeded while queued; not computed'
          : `deadline cannot be met: the queue and compute ahead are predicted to take past it; refused before compute`,
      ),
    );
  }

  /** Takes a queued request into the batch being assembled in `slab`, its rows from `row` on. */
  private take(request: BatchRequest, slab: number, row: number): void {
    request.queued = false;
    this.queuedRows -= request.rows;
    const regions = this.views[slab].inputs;
    const rowBytes = this.options.layout.inputRowBytes;
    for (let i = 0; i < regions.length; i++) request.inputs[i].copy(regions[i], row * rowBytes[i]);
    this.members[slab].push(request);
  }

  /**
   * Assembles up to `maxRows` rows (at least the oldest request) into a free slab and sends it to a worker. Under
   * adaptive, trained: requests that overtook (earlier deadlines than some ahead of them) and would not survive
   * waiting for the next batch go first; and the batch stops growing before a request would make it end, as
   * predicted, past the deadline of one already in it.
   */
  private dispatch(maxRows: number, now: number, startUs: number): void {
    const slab = this.freeSlabs.pop()!;
    const solo = this.options.solo === true;
    const controller = this.controller !== null && this.controller.trained ? this.controller : null;
    let rows = 0;
    /** The earliest deadline of the batch's members. */
    let earliest = Infinity;
    if (controller !== null && this.overtakerDeadline < Infinity) {
      // Would an overtaker still be in time for the batch after this one? Those that would not ride in this one.
      const urgentBy = now + (startUs + 2 * controller.predictUs(maxRows)) / 1000;
      if (this.overtakerDeadline < urgentBy) {
        for (let i = 0; i < this.queue.length && !(solo && rows > 0); i++) {
          const request = this.queue.at(i)!;
          if (!request.queued || request.deadline >= urgentBy || rows + request.rows > maxRows) continue;
          if (this.doomed(request, now, startUs)) {
            this.drop(request, now);
            continue;
          }
          this.take(request, slab, rows);
          rows += request.rows;
          if (request.deadline < earliest) earliest = request.deadline;
        }
      }
    }
    for (let next = this.queue.peek(); next !== undefined; next = this.queue.peek()) {
      if (!next.queued || this.doomed(next, now, startUs)) {
        this.queue.shift();
        this.drop(next, now);
        continue;
      }
      if (rows > 0 && (solo || rows + next.rows > maxRows)) break;
      if (rows > 0 && controller !== null && now + (startUs + controller.predictUs(rows + next.rows)) / 1000 > Math.min(earliest, next.deadline)) break;
      this.queue.shift();
      this.take(next, slab, rows);
      rows += next.rows;
      if (next.deadline < earliest) earliest = next.deadline;
    }
    if (rows === 0) {
      this.freeSlabs.push(slab);
      return;
    }
    const members = this.members[slab];
    this.slabRows[slab] = rows;
    if (this.inFlightBatches <= this.workers) {
      this.slabStartedAt[slab] = now;
    } else {
      this.slabStartedAt[slab] = NaN;
      this.waitingForWorker.push(slab);
    }
    const shapes = solo ? { shapes: members[0].shapes!, byteLengths: members[0].inputs.map((b) => b.length) } : undefined;
    this.options.executor.run(slab, rows, shapes).then(
      (result) => {
        if (result.error === undefined) this.finish(slab, rows, now, result);
        else this.abort(slab, rows, now, internal(`model failed on this batch: ${result.error}`), false, false);
      },
      (error: ExecutorFault) => {
        const setAside = error.slabSetAside === true;
        this.abort(slab, rows, now, unavailable(error instanceof Error ? error.message : String(error)), setAside);
      },
    );
  }

  /** The batch's outputs: the slab's regions, with any that came back in the result in place of theirs. */
  private outputsOf(slab: number, rows: number, result: BatchResult): BatchOutputs {
    const outputs = this.slabOutputs[slab];
    const batches = this.options.batches ?? true;
    if (batches) for (const shape of outputs.shapes) shape[0] = rows;
    if (result.outputs === undefined) return outputs;
    const bytes = [...outputs.bytes];
    const rowBytes = [...outputs.rowBytes];
    const shapes: number[][] = [...outputs.shapes];
    result.outputs.forEach((output, i) => {
      if (output === null) return;
      bytes[i] = Buffer.from(output.data.buffer, output.data.byteOffset, output.data.byteLength);
      shapes[i] = output.dims;
      rowBytes[i] = batches && output.dims[0] > 0 ? output.data.byteLength / output.dims[0] : output.data.byteLength;
    });
    return { bytes, rowBytes, shapes };
  }

  private finish(slab: number, batchRows: number, dispatchedAt: number, result: BatchResult): void {
    const outputs = this.outputsOf(slab, batchRows, result);
    const members = this.members[slab];
    const batch: BatchFigures = {
      rows: batchRows,
      computeUs: result.computeUs,
      finishedAt: this.clock.now(),
      dispatchedAt,
      worker: result.worker,
    };
    const startedAt = this.workerFreed(slab, batch.finishedAt, true);
    if (startedAt === startedAt) this.controller?.onBatch(batchRows, (batch.finishedAt - startedAt) * 1000, result.computeUs);
    let firstRow = 0;
    for (let i = 0; i < members.length; i++) {
      const request = members[i];
      if (!request.cancelled) answer(request, outputs, firstRow, batch);
      firstRow += request.rows;
    }
    this.options.observer?.onBatch(members, batch, null);
    this.release(slab);
  }

  /**
   * `slab`'s batch has ended and its worker is free (`finished`) or being replaced: the batch waiting longest for a
   * worker gets it. Returns when a worker was free for `slab`'s batch (NaN: unknown).
   */
  private workerFreed(slab: number, now: number, finished: boolean): number {
    const waiting = this.waitingForWorker.indexOf(slab);
    // Ended before its turn came, as this batcher counts turns: the pool's order was not the dispatch order.
    if (waiting >= 0) this.waitingForWorker.splice(waiting, 1);
    const next = this.waitingForWorker.shift();
    if (next !== undefined) this.slabStartedAt[next] = finished ? now : NaN;
    return waiting >= 0 ? NaN : this.slabStartedAt[slab];
  }

  /** `workerLost`: the worker failed and is being replaced (else: the model failed on the batch; the worker serves on). */
  private abort(slab: number, batchRows: number, dispatchedAt: number, failure: ServingError, setAside = false, workerLost = true): void {
    // A batch waiting for a lost worker waits for its replacement to start, which is not compute.
    this.workerFreed(slab, this.clock.now(), !workerLost);
    const members = this.members[slab];
    for (const request of members) if (!request.cancelled) request.fail(failure);
    const batch = { rows: batchRows, computeUs: 0, finishedAt: this.clock.now(), dispatchedAt, worker: -1 };
    this.options.observer?.onBatch(members, batch, failure.message);
    this.release(slab, setAside);
  }

  private release(slab: number, setAside = false): void {
    this.members[slab].length = 0;
    this.slabRows[slab] = 0;
    if (setAside) {
      this.setAside++;
      this.options.observer?.onSlabSetAside?.(this.setAside, this.options.slabs.length);
    } else {
      this.freeSlabs.push(slab);
    }
    if (this.queuedRows > 0) this.schedulePump();
    this.notifyIfDrained();
  }
}
