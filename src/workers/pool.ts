// The main-thread side of the worker pool: a fixed-size piscina pool of ONNX workers that run batch descriptors.
// A worker that exits, outlives WORKER_TIMEOUT_MS or fails in its own code (a fault, not a model error) fails only
// its own batch and is replaced: piscina replaces a worker that exits or times out by itself; a worker that
// reports a fault is terminated here (piscina would keep it), and piscina starts a new one in its place. The slab's
// claim word (slab.ts) keeps the old worker's hands off the slab.
import path from 'node:path';
import { Piscina } from 'piscina';
import type { AbortSignalEventEmitter } from 'piscina/dist/abort';
import type { ExecutorFault, SoloShapes } from '../batching/batcher';
import { CLAIM_RELEASE_WAIT_MS, monotonicMs, releaseWorkerSlots, revokeSlab, startedAt, startsView, type TaskStarts } from '../batching/slab';
import type { BatchDone, BatchTask, WorkerInit } from './protocol';

export interface PoolOptions {
  workers: number;
  init: WorkerInit;
  /** Give a batch up (and replace its worker) after this long; 0: never. */
  taskTimeoutMs: number;
  /** The worker entry; tests pass fault-injecting fixtures here. Defaults to the ONNX worker. */
  filename?: string;
  /** How long a failed batch's slab waits for its worker to let go of it before it is set aside (slab.ts). */
  claimReleaseWaitMs?: number;
}

export const ONNX_WORKER = path.join(__dirname, 'onnx-worker.js');

/** The worker running a batch failed (threw, exited or timed out) and is being replaced. */
export class WorkerFault extends Error implements ExecutorFault {
  override readonly name = 'WorkerFault';
  constructor(
    message: string,
    /** The worker still held the batch's slab when it was given up on: the slab must never be reused. */
    readonly slabSetAside = false,
  ) {
    super(message);
  }
}

export class WorkerPool {
  private readonly piscina: Piscina;
  private readonly claims: Int32Array;
  private lastTicket = 0;
  /** Workers this pool is terminating after a fault; while any is, a batch lost to a worker's exit runs again. */
  private terminating = 0;
  /** The deadlines of the batches handed to piscina, under one timer. */
  private readonly watchdog: Watchdog;

  constructor(private readonly options: PoolOptions) {
    this.claims = new Int32Array(options.init.claims);
    this.watchdog = new Watchdog(options.taskTimeoutMs, startsView(options.init.starts));
    this.piscina = new Piscina({
      filename: options.filename ?? ONNX_WORKER,
      minThreads: options.workers,
      maxThreads: options.workers,
      idleTimeout: Infinity,
      concurrentTasksPerWorker: 1,
      // piscina's run and wait time histograms: two records a batch that nothing reads.
      recordTiming: false,
      // The task reaches the worker as a message on its event loop, not through piscina's default Atomics.wait
      // loop (which also makes the main thread wake the worker with a futex call per batch): at one call at a time
      // the round trip was ~9% shorter (h2load -c 1, six interleaved rounds: 478–507 µs against 516–560 µs; one
      // round of six went the other way), and the pool round trip alone ~150 → ~135 µs; the same calls/s at 64
      // in flight (docs/DESIGN.md, "The low-load path").
      atomics: 'disabled',
      workerData: options.init,
    });
    // A failed worker's error also reaches this event; the failure is already reported through its task.
    this.piscina.on('error', () => {});
    // A worker's slot (its id, its GPU) goes to the worker that replaces it. By the event, a crashed worker's thread
    // id already reads -1, and piscina drops it from its threads just after: the slots of the threads no longer
    // among them are freed a turn later (the replacement waits for one as it starts).
    this.piscina.on('workerDestroy', () => setImmediate(() => {
      const alive = new Set(this.piscina.threads.map((thread) => thread.threadId));
      releaseWorkerSlots(options.init.workerSlots, (threadId) => !alive.has(threadId));
    }));
  }

  /**
   * Runs the batch in `slab`; rejects with WorkerFault, after which no worker touches the slab for it (or, with
   * `slabSetAside`, nobody may: a worker died or hung holding it).
   */
  async run(slab: number, rows: number, solo?: SoloShapes): Promise<BatchDone> {
    for (;;) {
      const done = await this.runOnce(slab, rows, solo);
      // A batch handed to a worker that had just reported a fault: it was left untouched, so it runs again.
      if (done.retired) continue;
      if (done.fault !== undefined) {
        void this.replace(done.threadId);
        throw new WorkerFault(`worker failed (${done.fault}); it was replaced`);
      }
      return done;
    }
  }

  private async runOnce(slab: number, rows: number, solo?: SoloShapes): Promise<BatchDone> {
    this.lastTicket = this.lastTicket === 0x7fffffff ? 1 : this.lastTicket + 1;
    const ticket = this.lastTicket;
    Atomics.store(this.claims, slab, ticket);
    const task: BatchTask = solo === undefined ? { slab, rows, ticket } : { slab, rows, ticket, shapes: solo.shapes, byteLengths: solo.byteLengths };
    const timeoutMs = this.options.taskTimeoutMs;
    if (timeoutMs === 0) return this.piscina.run(task).catch((error: unknown) => this.fault(slab, ticket, error, 0));
    const deadline = new TaskDeadline(slab, ticket);
    this.watchdog.start(deadline);
    try {
      return await this.piscina.run(task, { signal: deadline });
    } catch (error) {
      return await this.fault(slab, ticket, error, timeoutMs);
    } finally {
      this.watchdog.end(deadline);
    }
  }

  /**
   * Terminates the worker on thread `threadId`; piscina starts another in its place (minThreads). piscina may have
   * handed that worker its next batch already (it would answer `retired`); the exit fails that batch with "worker
   * exited", and fault() runs it again. The count drops only after piscina's own exit handling and the promise
   * callbacks it starts have run.
   */
  private async replace(threadId: number): Promise<void> {
    const worker = this.piscina.threads.find((thread) => thread.threadId === threadId);
    if (worker === undefined) return;
    this.terminating++;
    worker.once('exit', () => setImmediate(() => this.terminating--));
    await worker.terminate();
  }

  private async fault(slab: number, ticket: number, error: unknown, timeoutMs: number): Promise<BatchDone> {
    const released = await revokeSlab(this.claims, slab, ticket, this.options.claimReleaseWaitMs ?? CLAIM_RELEASE_WAIT_MS);
    if (released && this.terminating > 0 && isWorkerExit(error)) return RUN_AGAIN;
    const message = describeFault(error, timeoutMs);
    if (released) throw new WorkerFault(message);
    throw new WorkerFault(`${message}; it died holding the batch's memory, which is set aside`, true);
  }

  /**
   * Stops every worker. A worker terminated while it is still opening its session (a replacement that piscina has
   * just started) can abort the whole process: onnxruntime-node turns the failure of its interrupted call into a C++
   * exception that nothing catches. So every worker first finishes starting: one empty batch each (a worker takes a
   * task only once started), bounded in time, then the pool is destroyed. `force` (a shutdown past its grace
   * period, where a worker may hang for good) skips the wait.
   */
  async close(force = false): Promise<void> {
    this.watchdog.stop();
    if (force) {
      await this.piscina.destroy();
      return;
    }
    const started = Array.from({ length: this.options.workers }, () => this.piscina.run({ slab: 0, rows: 0, ticket: 0 } satisfies BatchTask));
    let timer: NodeJS.Timeout | undefined;
    const bound = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, CLOSE_WAIT_MS);
    });
    await Promise.race([Promise.allSettled(started), bound]);
    clearTimeout(timer);
    await this.piscina.destroy();
  }
}

/** How long close() waits for starting workers before it destroys the pool anyway. */
const CLOSE_WAIT_MS = 10_000;

/**
 * A batch's timeout, as the abort signal piscina takes (its EventEmitter form): a plain object rather than an
 * AbortController, and no timer of its own (Watchdog). An AbortController and a timer for every batch cost about
 * 30 µs of main thread a batch at one call at a time (docs/DESIGN.md, "The low-load path").
 */
class TaskDeadline implements AbortSignalEventEmitter {
  aborted = false;
  reason: unknown = undefined;
  /** The earliest it can be due (monotonicMs); exact once its worker has begun the batch. */
  due = Infinity;
  private listener: (() => void) | null = null;
  constructor(
    readonly slab: number,
    readonly ticket: number,
  ) {}
  once(_event: 'abort', listener: () => void): void {
    this.listener = listener;
  }
  off(_event: 'abort', listener: () => void): void {
    if (this.listener === listener) this.listener = null;
  }
  // What piscina calls at run time (its types name `off`).
  removeListener(event: 'abort', listener: () => void): void {
    this.off(event, listener);
  }
  /** The batch is over: its listener goes (the watchdog has let go of it already). */
  clear(): void {
    this.listener = null;
  }
  /** Called once at most: the watchdog lets go of a deadline before aborting it or when its batch ends. */
  abort(reason: string): void {
    this.aborted = true;
    this.reason = reason;
    const listener = this.listener;
    this.listener = null;
    listener?.();
  }
}

/**
 * One timer for all of a pool's batches in flight. A batch's clock runs from when its worker begins it (slab.ts,
 * "Starts"), not from the hand-off: one queued in piscina, or handed to a worker that is still starting, is not
 * due yet, and a worker that is starting is never given up on. A batch is handed over due no sooner than a timeout
 * from now; when the timer fires, each batch that might be due is looked at again: one begun a timeout ago or more
 * is aborted, one begun since is due a timeout after it began, and one not begun yet is due no sooner than a timeout
 * from now. The timer is then set for the earliest, or lapses if nothing is in flight.
 */
class Watchdog {
  private readonly running = new Set<TaskDeadline>();
  private timer: NodeJS.Timeout | null = null;
  constructor(
    private readonly timeoutMs: number,
    private readonly starts: TaskStarts,
  ) {}

  start(deadline: TaskDeadline): void {
    deadline.due = monotonicMs() + this.timeoutMs;
    this.running.add(deadline);
    this.timer ??= setTimeout(this.check, this.timeoutMs);
  }

  end(deadline: TaskDeadline): void {
    this.running.delete(deadline);
    deadline.clear();
  }

  stop(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
  }

  private readonly check = (): void => {
    this.timer = null;
    const now = monotonicMs();
    let next = Infinity;
    for (const deadline of this.running) {
      if (deadline.due <= now) {
        const began = startedAt(this.starts, deadline.slab, deadline.ticket);
        deadline.due = (began ?? now) + this.timeoutMs;
        if (deadline.due <= now) {
          this.running.delete(deadline);
          deadline.abort(`WORKER_TIMEOUT_MS (${this.timeoutMs} ms)`);
          continue;
        }
      }
      next = Math.min(next, deadline.due);
    }
    if (next !== Infinity) this.timer = setTimeout(this.check, Math.max(1, Math.ceil(next - now)));
  };
}

/** What a batch lost to a worker this pool terminated comes back as: the batch runs again. */
const RUN_AGAIN: BatchDone = Object.freeze({ computeUs: 0, worker: -1, threadId: -1, retired: true });

const isWorkerExit = (error: unknown) => error instanceof Error && /^worker exited/.test(error.message);

function describeFault(error: unknown, timeoutMs: number): string {
  if (error instanceof Error && error.name === 'AbortError') {
    return `worker did not finish the batch within WORKER_TIMEOUT_MS (${timeoutMs} ms); it was replaced`;
  }
  const reason = error instanceof Error ? error.message : String(error);
  return `worker failed (${reason}); it was replaced`;
}
