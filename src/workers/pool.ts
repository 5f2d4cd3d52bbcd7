// The main-thread side of the worker pool: a fixed-size piscina pool of ONNX workers that run batch descriptors.
import path from 'node:path';
import { Piscina } from 'piscina';
import type { BatchExecutor, BatchResult } from '../batching/batcher';
import type { BatchTask, WorkerInit } from './protocol';

export interface PoolOptions {
  workers: number;
  init: WorkerInit;
  /** The worker entry; tests pass fixtures here. Defaults to the ONNX worker. */
  filename?: string;
}

export const ONNX_WORKER = path.join(__dirname, 'onnx-worker.js');

export class WorkerPool implements BatchExecutor {
  private readonly piscina: Piscina;

  constructor(options: PoolOptions) {
    this.piscina = new Piscina({
      filename: options.filename ?? ONNX_WORKER,
      minThreads: options.workers,
      maxThreads: options.workers,
      idleTimeout: Infinity,
      concurrentTasksPerWorker: 1,
      workerData: options.init,
    });
  }

  get size(): number {
    return this.piscina.threads.length;
  }

  run(slab: number, rows: number): Promise<BatchResult> {
    const task: BatchTask = { slab, rows };
    return this.piscina.run(task);
  }

  async close(): Promise<void> {
    await this.piscina.destroy();
  }
}
