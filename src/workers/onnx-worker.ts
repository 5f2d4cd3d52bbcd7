// The piscina worker entry: one ONNX Runtime session per worker, created once; each task is a batch descriptor
// (slab index, rows). This file imports nothing from the main thread's side.
import { workerData } from 'node:worker_threads';
import { performance } from 'node:perf_hooks';
import * as ort from 'onnxruntime-node';
import { slabViews } from '../batching/slab';
import type { BatchDone, BatchTask, WorkerInit } from './protocol';
import { openSession } from './session';

async function start(init: WorkerInit): Promise<(task: BatchTask) => Promise<BatchDone>> {
  const worker = Atomics.add(new Int32Array(init.workerIds), 0, 1);
  const session = await openSession(init.modelPath, init.executionProvider, init.intraOpThreads, worker);
  const { layout } = init;
  const slabs = init.slabs.map((slab) => slabViews(slab, layout));
  // onnxruntime-node refuses tensors over SharedArrayBuffer memory ("Invalid argument"), so the batch's rows are
  // copied into this worker-private buffer first (8 KB costs well under a microsecond).
  const privateInput = new Float32Array(layout.maxBatchRows * layout.inputWidth);
  // One tensor per batch size, made on first use: the tensor shape carries the row count.
  const inputs: Array<Record<string, ort.Tensor> | undefined> = [];
  const feedsFor = (rows: number): Record<string, ort.Tensor> => {
    let feeds = inputs[rows];
    if (feeds === undefined) {
      const data = privateInput.subarray(0, rows * layout.inputWidth);
      feeds = { [init.inputName]: new ort.Tensor('float32', data, [rows, ...init.inputDims]) };
      inputs[rows] = feeds;
    }
    return feeds;
  };

  return async ({ slab, rows }: BatchTask): Promise<BatchDone> => {
    const started = performance.now();
    const { input, output } = slabs[slab];
    privateInput.set(input.subarray(0, rows * layout.inputWidth));
    const results = await session.run(feedsFor(rows));
    const result = results[init.outputName];
    const values = result.data as Float32Array;
    const expected = rows * layout.outputWidth;
    if (values.length !== expected) {
      throw new Error(`model returned ${values.length} output values for ${rows} rows, expected ${expected}`);
    }
    output.set(values, 0);
    result.dispose();
    return { computeUs: (performance.now() - started) * 1000, worker };
  };
}

export default start(workerData as WorkerInit);
