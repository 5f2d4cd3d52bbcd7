// The messages between the main thread and the ONNX workers, in one place.
import type { SlabLayout } from '../batching/slab';
import type { Datatype } from '../models/tensor';

export type ExecutionProvider = 'cpu' | 'cuda';

/** A tensor as the worker feeds or fetches it. */
export interface WorkerTensor {
  name: string;
  datatype: Datatype;
  /** Per request: after the batch dimension when the model batches, else the whole shape; -1 variable. */
  dims: number[];
}

/** Given to every worker once, at start (piscina's workerData). SharedArrayBuffers in it are shared, not copied. */
export interface WorkerInit {
  modelPath: string;
  /** In the model's order; the slab has a region for each, in the same order (layout.inputRowBytes). */
  inputs: WorkerTensor[];
  /** Every output of the model, in its order; layout.outputRowBytes[i] = 0 for one that comes back in BatchDone. */
  outputs: WorkerTensor[];
  /** False: the model does not batch; each task is one request whose tensors are exactly as sent. */
  batches: boolean;
  layout: SlabLayout;
  slabs: SharedArrayBuffer[];
  /** One Int32 claim word per slab (see slab.ts). */
  claims: SharedArrayBuffer;
  /** When each slab's batch began on its worker (slab.ts, createStarts): WORKER_TIMEOUT_MS runs from there. */
  starts: SharedArrayBuffer;
  intraOpThreads: number;
  executionProvider: ExecutionProvider;
  /**
   * One Int32 per worker slot (WORKERS of them): the thread id of the worker in it, 0 while free (slab.ts,
   * createWorkerSlots). A worker takes a free slot as it starts; its index is the worker's id (and, with CUDA, picks
   * its GPU), so a replacement takes the id and GPU of the worker it replaces.
   */
  workerSlots: SharedArrayBuffer;
  /** With CUDA: the GPU of worker i (deviceOf). */
  deviceIds: number[];
  /** Batches each worker runs once, before it takes any task, so that no real request pays a first run. */
  warmup: WarmupSample[];
}

/** A warm-up batch of `rows` rows; per input: zeros, random values, or one row's raw bytes repeated. */
export interface WarmupSample {
  rows: number;
  inputs: Array<'zero' | 'random' | Uint8Array>;
  count: number;
}

/** One batch to run: the slab that holds it and how many rows of its input regions are filled. */
export interface BatchTask {
  slab: number;
  rows: number;
  /** The ticket stored in the slab's claim word for this batch. */
  ticket: number;
  /**
   * Only for a model with variable dimensions: each input's shape for this batch (the batch's requests all share
   * it) and its bytes in the input region. Absent: every input is fixed, [rows, ...dims].
   */
  shapes?: number[][];
  byteLengths?: number[];
}

/** An output that is not in the slab (variable shape or strings): its shape and bytes (BYTES: length-prefixed). */
export interface MessageOutput {
  dims: number[];
  data: Uint8Array;
}

/** What a worker sends back once it has written the batch's outputs into the slab. */
export interface BatchDone {
  computeUs: number;
  worker: number;
  /** The worker's thread, so that the pool can replace this very worker. */
  threadId: number;
  /** Outputs not in the slab, by output index (null for those in the slab); absent when every output is. */
  outputs?: Array<MessageOutput | null>;
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

/** With CUDA, the GPU of worker `worker`: deviceIds[worker % length], or GPU `worker` when none are listed. */
export const deviceOf = (deviceIds: readonly number[], worker: number): number =>
  deviceIds.length > 0 ? deviceIds[worker % deviceIds.length] : worker;
