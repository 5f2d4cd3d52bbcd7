// What a one-row batch's trip through the worker pool costs at one call at a time, in pieces, for the policies
// report's c=1 target: a bare postMessage round trip between two threads (the floor of any hop to another thread),
// onnxruntime's compute for one row in a hot loop on one thread, and the pool's whole round trip (tickserve's
// WorkerPool and ONNX worker over the default model, one batch at a time, no gRPC). The echo server's round trip
// has none of the three in it.
import { performance } from 'node:perf_hooks';
import { Worker } from 'node:worker_threads';
import * as ort from 'onnxruntime-node';
import { createClaims, createSlab, createStarts, createWorkerSlots, slabViews, type SlabLayout } from '../src/batching/slab';
import { DEFAULT_MODEL_PATH } from '../src/main/config';
import { rowBytesOf } from '../src/models/tensor';
import { inspectModel } from '../src/workers/model-info';
import { WorkerPool } from '../src/workers/pool';
import { openSession } from '../src/workers/session';
import { median } from './stats';

export interface HopFigures {
  /** Mean µs of a postMessage to a worker thread and its reply, one at a time. */
  pingPongUs: number;
  /** Mean µs of onnxruntime's run of a one-row batch, back to back on one thread (hot). */
  computeUs: number;
  /** Mean µs of WorkerPool.run for a one-row batch, one at a time: the hand-off both ways plus the worker's run. */
  poolUs: number;
  /** Each run's figures, of which the three above are the medians. */
  each?: { pingPongUs: number[]; computeUs: number[]; poolUs: number[] };
}

/** Mean µs of `step` over `calls` calls one after another, after `calls / 10` unrecorded ones. */
async function meanUs(calls: number, step: () => Promise<unknown>): Promise<number> {
  for (let i = 0; i < calls / 10; i++) await step();
  const started = performance.now();
  for (let i = 0; i < calls; i++) await step();
  return ((performance.now() - started) * 1000) / calls;
}

/** The three figures, each the median of `rounds` runs of `calls` calls, the three interleaved within a round. */
export async function measureHop(calls = 5000, rounds = 3): Promise<HopFigures> {
  const echo = new Worker("require('node:worker_threads').parentPort.on('message', (m) => require('node:worker_threads').parentPort.postMessage(m));", { eval: true });
  const pending: Array<() => void> = [];
  echo.on('message', () => pending.shift()!());
  const pingPong = () => new Promise<void>((resolve) => {
    pending.push(resolve);
    echo.postMessage(0);
  });

  const { signature } = await inspectModel(DEFAULT_MODEL_PATH, 'cpu');
  const width = signature.inputs[0].dims[signature.inputs[0].dims.length - 1];
  const session = await openSession(DEFAULT_MODEL_PATH, 'cpu', 1);
  const feeds = { [session.inputNames[0]]: new ort.Tensor('float32', new Float32Array(width).fill(0.5), [1, width]) };
  const compute = () => session.run(feeds);

  const layout: SlabLayout = { maxBatchRows: 1, inputRowBytes: signature.inputs.map(rowBytesOf), outputRowBytes: signature.outputs.map(rowBytesOf) };
  const slab = createSlab(layout);
  slabViews(slab, layout).inputs[0].fill(0);
  const pool = new WorkerPool({
    workers: 1,
    // WORKER_TIMEOUT_MS's default: the watchdog the servers run.
    taskTimeoutMs: 5000,
    init: {
      modelPath: DEFAULT_MODEL_PATH,
      inputs: signature.inputs.map((t) => ({ ...t, dims: [...t.dims] })),
      outputs: signature.outputs.map((t) => ({ ...t, dims: [...t.dims] })),
      batches: signature.batches,
      layout,
      slabs: [slab],
      claims: createClaims(1),
      starts: createStarts(1),
      intraOpThreads: 1,
      executionProvider: 'cpu',
      workerSlots: createWorkerSlots(1),
      deviceIds: [],
      warmup: [],
    },
  });
  const poolRun = () => pool.run(0, 1);

  const figures: Required<HopFigures>['each'] = { pingPongUs: [], computeUs: [], poolUs: [] };
  try {
    for (let round = 0; round < rounds; round++) {
      figures.pingPongUs.push(await meanUs(calls, pingPong));
      figures.computeUs.push(await meanUs(calls, compute));
      figures.poolUs.push(await meanUs(calls, poolRun));
    }
  } finally {
    await echo.terminate();
    await pool.close();
    await session.release();
  }
  return { pingPongUs: median(figures.pingPongUs), computeUs: median(figures.computeUs), poolUs: median(figures.poolUs), each: figures };
}

if (require.main === module) {
  void measureHop().then((f) => process.stdout.write(`${JSON.stringify(f)}\n`));
}
