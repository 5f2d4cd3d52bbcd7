// The messages between the main thread and the ONNX workers, in one place.
import type { SlabLayout } from '../batching/slab';

export type ExecutionProvider = 'cpu' | 'cuda';

/** Given to every worker once, at start (piscina's workerData). SharedArrayBuffers in it are shared, not copied. */
export interface WorkerInit {
  modelPath: string;
  inputName: string;
  outputName: string;
  /** The model input's non-batch dimensions; their product is layout.inputWidth. */
  inputDims: number[];
  /** The served output's dimensions for one row; every batch's output must be [rows, ...outputDims]. */
  outputDims: number[];
  /** False: the model does not batch; each task is one request whose tensors are exactly inputDims / outputDims. */
  batches: boolean;
  layout: SlabLayout;
  slabs: SharedArrayBuffer[];
  /** One Int32 claim word per slab (see slab.ts). */
  claims: SharedArrayBuffer;
  intraOpThreads: number;
  executionProvider: ExecutionProvider;
  /** One Int32 that each worker increments once to take its id (and, with CUDA, its GPU). */
  workerIds: SharedArrayBuffer;
  /** With CUDA: the GPU of worker i is deviceIds[i % length]; empty: GPU i. */
  deviceIds: number[];
  /** Batches each worker runs once, before it takes any task, so that no real request pays a first run. */
  warmup: WarmupSample[];
}

/** A warm-up batch of `rows` rows: zeros, uniform random numbers in [0, 1), or one row repeated. */
export interface WarmupSample {
  rows: number;
  source: 'zero' | 'random' | Float32Array;
  count: number;
}

/** One batch to run: the slab that holds it and how many of its input rows are filled. */
export interface BatchTask {
  slab: number;
  rows: number;
  /** The ticket stored in the slab's claim word for this batch. */
  ticket: number;
}

/** What a worker sends back once it has written the batch's outputs into the slab. */
export interface BatchDone {
  computeUs: number;
  worker: number;
  /** The worker's thread, so that the pool can replace this very worker. */
  threadId: number;
  /**
   * Set when the model failed on this batch, or answered it with the wrong shape (the worker itself is fine and
   * keeps serving); no outputs were written.
   */
  error?: string;
  /** Set when the batch was given up on before the worker finished: it left the slab alone. */
  revoked?: boolean;
  /**
   * Set when the worker's own code failed unexpectedly on this batch: no outputs were written, and the worker takes
   * no more batches (it answers `retired` to any it is given) until the pool replaces it.
   */
  fault?: string;
  /** Set when a worker that reported a fault was given another batch: it left the batch untouched; run it again. */
  retired?: boolean;
}
