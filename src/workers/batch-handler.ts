// A worker's batch handler: one ONNX Runtime session, made once; each task is a batch descriptor (slab index, rows,
// ticket). Used by the worker entry (onnx-worker.ts) and by the test fixtures that wrap it with faults.
import { threadId } from 'node:worker_threads';
import { performance } from 'node:perf_hooks';
import * as ort from 'onnxruntime-node';
import { claimSlab, slabViews, unclaimSlab } from '../batching/slab';
import { outputShapeError } from './model-info';
import type { BatchDone, BatchTask, WorkerInit } from './protocol';
import { openSession } from './session';

export type BatchHandler = (task: BatchTask) => Promise<BatchDone>;

/** The running worker's id (taken once at start) and thread, for every answer. */
interface WorkerIdentity {
  worker: number;
  threadId: number;
}

/**
 * Wraps a batch handler so that an unexpected throw (a bug, not a model error: those come back as `error`) retires
 * the worker: the batch is answered with `fault`, the pool terminates this thread and piscina starts a fresh one.
 * A worker whose state is in doubt takes no more batches: until it is gone, any batch it is given is answered
 * `retired`, untouched, and the pool runs it elsewhere.
 */
export function retireOnFault(handler: BatchHandler, identity: WorkerIdentity): BatchHandler {
  let retired = false;
  return async (task) => {
    if (retired) return { computeUs: 0, ...identity, retired: true };
    try {
      return await handler(task);
    } catch (error) {
      retired = true;
      return { computeUs: 0, ...identity, fault: error instanceof Error ? error.message : String(error) };
    }
  };
}

export async function startWorker(init: WorkerInit): Promise<{ handler: BatchHandler; identity: WorkerIdentity }> {
  const identity = { worker: Atomics.add(new Int32Array(init.workerIds), 0, 1), threadId };
  const device = init.deviceIds.length > 0 ? init.deviceIds[identity.worker % init.deviceIds.length] : identity.worker;
  const session = await openSession(init.modelPath, init.executionProvider, init.intraOpThreads, device);
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
      const shape = init.batches ? [rows, ...init.inputDims] : init.inputDims;
      feed = { [init.inputName]: new ort.Tensor('float32', data, shape) };
      feeds[rows] = feed;
    }
    return feed;
  };
  const failed = (error: string): BatchDone => ({ computeUs: 0, ...identity, error });
  const revoked: BatchDone = { computeUs: 0, ...identity, revoked: true };

  // Warm-up, before the first task: the first run of each batch shape pays onnxruntime's allocations and planning.
  // A model that fails it (an error, or the wrong output shape for a batch size) fails every batch it is given,
  // with the reason, so that its load fails with it.
  let warmupFailure: string | null = null;
  try {
    for (const sample of init.warmup) {
      const values = privateInput.subarray(0, sample.rows * layout.inputWidth);
      for (let n = 0; n < sample.count; n++) {
        if (sample.source === 'zero') values.fill(0);
        else if (sample.source === 'random') for (let i = 0; i < values.length; i++) values[i] = Math.random();
        else for (let r = 0; r < sample.rows; r++) values.set(sample.source, r * layout.inputWidth);
        const result = (await session.run(feedFor(sample.rows)))[init.outputName];
        const wrongShape = outputShapeError(init.outputName, result.dims, sample.rows, init.outputDims, init.batches);
        if (wrongShape !== null) throw new Error(wrongShape);
      }
    }
  } catch (error) {
    warmupFailure = `warm-up failed: ${error instanceof Error ? error.message : String(error)}`;
  }

  const handler = async ({ slab, rows, ticket }: BatchTask): Promise<BatchDone> => {
    if (warmupFailure !== null) return failed(warmupFailure);
    const started = performance.now();
    const { input, output } = slabs[slab];
    if (!claimSlab(claims, slab, ticket)) return revoked;
    privateInput.set(input.subarray(0, rows * layout.inputWidth));
    unclaimSlab(claims, slab, ticket);
    let result: ort.Tensor;
    try {
      result = (await session.run(feedFor(rows)))[init.outputName];
    } catch (error) {
      return failed(error instanceof Error ? error.message : String(error));
    }
    // The shape, not only the count: rows must line up one-to-one with the batch's input rows, or one caller's
    // rows would be answered to another.
    const wrongShape = outputShapeError(init.outputName, result.dims, rows, init.outputDims, init.batches);
    if (wrongShape !== null) return failed(wrongShape);
    if (!claimSlab(claims, slab, ticket)) return revoked;
    output.set(result.data as Float32Array, 0);
    unclaimSlab(claims, slab, ticket);
    return { computeUs: (performance.now() - started) * 1000, ...identity };
  };
  return { handler, identity };
}
