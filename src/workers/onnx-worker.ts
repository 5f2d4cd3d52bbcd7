// The piscina worker entry: one ONNX Runtime session per worker, created once; each task is a batch descriptor
// (slab index, rows, ticket). This file imports nothing from the main thread's side.
import { workerData } from 'node:worker_threads';
import { performance } from 'node:perf_hooks';
import * as ort from 'onnxruntime-node';
import { claimSlab, slabViews, unclaimSlab } from '../batching/slab';
import type { BatchDone, BatchTask, WorkerInit } from './protocol';
import { openSession } from './session';

export type BatchHandler = (task: BatchTask) => Promise<BatchDone>;

async function start(init: WorkerInit): Promise<BatchHandler> {
  const worker = Atomics.add(new Int32Array(init.workerIds), 0, 1);
  const session = await openSession(init.modelPath, init.executionProvider, init.intraOpThreads, worker);
  const { layout } = init;
  const slabs = init.slabs.map((slab) => slabViews(slab, layout));
  const claims = new Int32Array(init.claims);
  // onnxruntime-node refuses tensors over SharedArrayBuffer memory ("Invalid argument"), so the batch's rows are
  // copied into this worker-private buffer first (8 KB costs well under a microsecond).
  const privateInput = new Float32Array(layout.maxBatchRows * layout.inputWidth);
  // One feed per batch size, made on first use: the tensor's shape carries the row count.
  const feeds: Array<Record<string, ort.Tensor> | undefined> = [];
  const feedFor = (rows: number): Record<string, ort.Tensor> => {
    let feed = feeds[rows];
    if (feed === undefined) {
      const data = privateInput.subarray(0, rows * layout.inputWidth);
      feed = { [init.inputName]: new ort.Tensor('float32', data, [rows, ...init.inputDims]) };
      feeds[rows] = feed;
    }
    return feed;
  };

  return async ({ slab, rows, ticket }: BatchTask): Promise<BatchDone> => {
    const started = performance.now();
    const { input, output } = slabs[slab];
    if (!claimSlab(claims, slab, ticket)) return { computeUs: 0, worker, revoked: true };
    privateInput.set(input.subarray(0, rows * layout.inputWidth));
    unclaimSlab(claims, slab, ticket);
    let values: Float32Array;
    try {
      const result = (await session.run(feedFor(rows)))[init.outputName];
      values = result.data as Float32Array;
    } catch (error) {
      return { computeUs: 0, worker, error: error instanceof Error ? error.message : String(error) };
    }
    const expected = rows * layout.outputWidth;
    if (values.length !== expected) {
      return { computeUs: 0, worker, error: `model returned ${values.length} values for ${rows} rows, expected ${expected}` };
    }
    if (!claimSlab(claims, slab, ticket)) return { computeUs: 0, worker, revoked: true };
    output.set(values, 0);
    unclaimSlab(claims, slab, ticket);
    return { computeUs: (performance.now() - started) * 1000, worker };
  };
}

export default start(workerData as WorkerInit);
