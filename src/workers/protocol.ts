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
  layout: SlabLayout;
  slabs: SharedArrayBuffer[];
  intraOpThreads: number;
  executionProvider: ExecutionProvider;
  /** One Int32 that each worker increments once to take its id (and, with CUDA, its GPU). */
  workerIds: SharedArrayBuffer;
}

/** One batch to run: the slab that holds it and how many of its input rows are filled. */
export interface BatchTask {
  slab: number;
  rows: number;
}

/** What a worker sends back once it has written the batch's outputs into the slab. */
export interface BatchDone {
  computeUs: number;
  worker: number;
}
