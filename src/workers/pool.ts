// The main-thread side of the worker pool: a fixed-size piscina pool of ONNX workers that run batch descriptors.
// A worker that throws, exits or outlives WORKER_TIMEOUT_MS fails only its own batch; piscina starts a new worker
// in its place, and the slab's claim word (slab.ts) keeps the old one's hands off the slab.
import path from 'node:path';
import { Piscina } from 'piscina';
import { RingQueue } from '../batching/queue';
import { revokeSlab } from '../batching/slab';
import type { BatchDone, BatchTask, WorkerInit } from './protocol';

export interface PoolOptions {
  workers: number;
  init: WorkerInit;
  /** Give a batch up (and replace its worker) after this long; 0: never. */
  taskTimeoutMs: number;
  /** The worker entry; tests pass fault-injecting fixtures here. Defaults to the ONNX worker. */
  filename?: string;
}

export const ONNX_WORKER = path.join(__dirname, 'onnx-worker.js');

/** The worker running a batch failed (threw, exited or timed out) and is being replaced. */
export class WorkerFault extends Error {
  override readonly name = 'WorkerFault';
}

export class WorkerPool {
  private readonly piscina: Piscina;
  private readonly claims: Int32Array;
  private lastTicket = 0;
  /** Batches a worker is running, and those queued in piscina behind them (with clocks not yet started). */
  private running = 0;
  private readonly waiting = new RingQueue<TaskTimeout>(16);

  constructor(private readonly options: PoolOptions) {
    this.claims = new Int32Array(options.init.claims);
    this.piscina = new Piscina({
      filename: options.filename ?? ONNX_WORKER,
      minThreads: options.workers,
      maxThreads: options.workers,
      idleTimeout: Infinity,
      concurrentTasksPerWorker: 1,
      workerData: options.init,
    });
    // A failed worker's error also reaches this event; the failure is already reported through its task.
    this.piscina.on('error', () => {});
  }

  /** Runs the batch in `slab`; rejects with WorkerFault, after which no worker touches the slab for it. */
  async run(slab: number, rows: number): Promise<BatchDone> {
    this.lastTicket = this.lastTicket === 0x7fffffff ? 1 : this.lastTicket + 1;
    const ticket = this.lastTicket;
    Atomics.store(this.claims, slab, ticket);
    const task: BatchTask = { slab, rows, ticket };
    const timeoutMs = this.options.taskTimeoutMs;
    if (timeoutMs === 0) return this.piscina.run(task).catch((error: unknown) => this.fault(slab, ticket, error, 0));
    const timeout = new TaskTimeout(timeoutMs);
    this.startClock(timeout);
    try {
      return await this.piscina.run(task, { signal: timeout.signal });
    } catch (error) {
      return this.fault(slab, ticket, error, timeoutMs);
    } finally {
      timeout.clear();
      this.taskEnded();
    }
  }

  // A batch's clock starts when a worker takes it, not when it is queued: piscina hands tasks to workers in
  // submission order, one each, so the k-th task waiting starts when the k-th running one ends. A batch queued
  // behind a hung one is not failed with it.
  private startClock(timeout: TaskTimeout): void {
    if (this.running < this.options.workers) {
      this.running++;
      timeout.start();
    } else {
      this.waiting.push(timeout);
    }
  }

  private taskEnded(): void {
    const next = this.waiting.shift();
    if (next === undefined) this.running--;
    else next.start();
  }

  private fault(slab: number, ticket: number, error: unknown, timeoutMs: number): never {
    revokeSlab(this.claims, slab, ticket);
    throw new WorkerFault(describeFault(error, timeoutMs));
  }

  async close(): Promise<void> {
    await this.piscina.destroy();
  }
}

/** An AbortSignal that fires `ms` after start(). */
class TaskTimeout {
  private readonly controller = new AbortController();
  private timer: NodeJS.Timeout | null = null;
  constructor(private readonly ms: number) {}
  get signal(): AbortSignal {
    return this.controller.signal;
  }
  start(): void {
    this.timer = setTimeout(() => this.controller.abort(), this.ms);
  }
  clear(): void {
    if (this.timer !== null) clearTimeout(this.timer);
  }
}

function describeFault(error: unknown, timeoutMs: number): string {
  if (error instanceof Error && error.name === 'AbortError') {
    return `worker did not finish the batch within WORKER_TIMEOUT_MS (${timeoutMs} ms); it was replaced`;
  }
  const reason = error instanceof Error ? error.message : String(error);
  return `worker failed (${reason}); it was replaced`;
}
