// The worker pool on its own, over real ONNX workers (the fault-injecting fixture around the real batch handler):
// which failures replace a worker (by thread id), and what happens to a slab whose worker dies or hangs holding it.
import * as grpc from '@grpc/grpc-js';
import assert from 'node:assert/strict';
import { performance } from 'node:perf_hooks';
import { Worker } from 'node:worker_threads';
import { after, before, describe, it } from 'node:test';
import { createClaims, createSlab, createStarts, createWorkerSlots, revokeSlab, SLAB_CLAIMED, slabViews, type SlabLayout } from '../src/batching/slab';
import { rowBytesOf } from '../src/models/tensor';
import { inspectModel } from '../src/workers/model-info';
import { WorkerFault, WorkerPool } from '../src/workers/pool';
import { FAULT, START_DELAY_ENV } from './fixtures/faults';
import { DEFAULT_MODEL_PATH, featuresFor, SHAPED_MODELS, writeGraph } from './helpers/models';
import { expectStatus, FAULT_WORKER, predict, startServer, type TestServer } from './helpers/server';

const WIDTH = 17;

/** A pool of one fixture worker over `modelPath` (a one-input FP32 model), and a way to fill a slab's rows. */
async function poolOver(modelPath: string, slabCount: number, taskTimeoutMs = 0) {
  const { signature } = await inspectModel(modelPath, 'cpu');
  const layout: SlabLayout = {
    maxBatchRows: 4,
    inputRowBytes: signature.inputs.map(rowBytesOf),
    outputRowBytes: signature.outputs.map(rowBytesOf),
  };
  const slabs = Array.from({ length: slabCount }, () => createSlab(layout));
  const workerSlots = createWorkerSlots(1);
  const pool = new WorkerPool({
    workers: 1,
    taskTimeoutMs,
    filename: FAULT_WORKER,
    claimReleaseWaitMs: 100,
    init: {
      modelPath,
      inputs: signature.inputs.map((t) => ({ ...t, dims: [...t.dims] })),
      outputs: signature.outputs.map((t) => ({ ...t, dims: [...t.dims] })),
      batches: signature.batches,
      layout,
      slabs,
      claims: createClaims(slabCount),
      starts: createStarts(slabCount),
      intraOpThreads: 1,
      executionProvider: 'cpu',
      workerSlots,
      deviceIds: [],
      warmup: [],
    },
  });
  const width = layout.inputRowBytes[0] / 4;
  const fill = (slab: number, first: number, rows = 1) => {
    const region = slabViews(slabs[slab], layout).inputs[0];
    featuresFor(slab, rows, width).forEach((v, i) => region.writeFloatLE(v, i * 4));
    region.writeFloatLE(first, 0);
  };
  return { pool, fill, slots: new Int32Array(workerSlots) };
}

describe('worker pool: a worker is replaced exactly when its own code fails', () => {
  it('a handler that throws: WorkerFault, and the next batch runs on a new thread', async () => {
    const { pool, fill, slots } = await poolOver(DEFAULT_MODEL_PATH, 2);
    try {
      fill(0, 0.5);
      const first = await pool.run(0, 1);
      fill(1, FAULT.THROW);
      await assert.rejects(pool.run(1, 1), (error: unknown) => {
        assert.ok(error instanceof WorkerFault);
        assert.match(error.message, /worker failed \(injected fault\); it was replaced/);
        return true;
      });
      const next = await pool.run(0, 1);
      assert.notEqual(next.threadId, first.threadId, 'the worker whose handler threw still runs batches');
      // The replacement takes the failed worker's slot: its id (and, under CUDA, its GPU), within 0..WORKERS-1.
      assert.equal(first.worker, 0);
      assert.equal(next.worker, 0, 'the replacement took a new id');
      assert.deepEqual(Array.from(slots), [next.threadId], 'the failed worker\'s slot was not freed for its replacement');
    } finally {
      await pool.close();
    }
  });

  it('a batch handed to a worker that is still starting: WORKER_TIMEOUT_MS runs from when the worker begins it', async () => {
    // The worker takes 800 ms to start, longer than the 300 ms timeout; piscina hands it the batch at once.
    process.env[START_DELAY_ENV] = '800';
    const made = await poolOver(DEFAULT_MODEL_PATH, 2, 300).finally(() => delete process.env[START_DELAY_ENV]);
    const { pool, fill } = made;
    try {
      fill(0, 0.5);
      const handedAt = performance.now();
      const first = await pool.run(0, 1);
      assert.ok(performance.now() - handedAt >= 700, 'the worker did not start slowly: the test shows nothing');
      assert.equal(first.error, undefined);
      fill(1, 0.5);
      const second = await pool.run(1, 1);
      assert.equal(second.threadId, first.threadId, 'the worker was replaced');
    } finally {
      await pool.close();
    }
  });

  it('a model error on a batch (the wrong output shape): the batch fails, the same thread runs the next one', async () => {
    const { pool, fill } = await poolOver(writeGraph(SHAPED_MODELS.flattenBatch()), 2);
    try {
      fill(0, 1);
      const one = await pool.run(0, 1);
      assert.equal(one.error, undefined);
      fill(1, 1, 2);
      const wrong = await pool.run(1, 2);
      assert.match(wrong.error ?? '', /output "y" has shape \[1, 8\] for a batch of 2 rows; expected \[2, 4\]/);
      const after = await pool.run(0, 1);
      assert.equal(after.threadId, one.threadId, 'a model error replaced the worker');
    } finally {
      await pool.close();
    }
  });

  it('batches queued behind a batch whose handler threw all run, none lost to the replacement', async () => {
    const { pool, fill } = await poolOver(DEFAULT_MODEL_PATH, 6);
    try {
      fill(0, FAULT.THROW);
      for (let slab = 1; slab < 6; slab++) fill(slab, 0.25);
      const outcomes = await Promise.allSettled(Array.from({ length: 6 }, (_, slab) => pool.run(slab, 1)));
      assert.equal(outcomes[0].status, 'rejected');
      for (let slab = 1; slab < 6; slab++) {
        const outcome = outcomes[slab];
        assert.equal(outcome.status, 'fulfilled', `batch ${slab}: ${outcome.status === 'rejected' ? String(outcome.reason) : ''}`);
        if (outcome.status === 'fulfilled') assert.equal(outcome.value.error, undefined);
      }
    } finally {
      await pool.close();
    }
  });
});

describe('revokeSlab: a bounded wait that never blocks the thread', () => {
  it('no claim held: revoked at once', async () => {
    const claims = new Int32Array(createClaims(1));
    Atomics.store(claims, 0, 7);
    assert.equal(await revokeSlab(claims, 0, 7, 1000), true);
  });

  it('a claim ended by another thread while the main thread waits: revoked, and the event loop ran meanwhile', async () => {
    const claims = new Int32Array(createClaims(1));
    Atomics.store(claims, 0, SLAB_CLAIMED);
    // Another thread holds the claim for 50 ms, then ends it as unclaimSlab does (store the ticket, notify).
    const holder = new Worker(
      `const { workerData } = require('node:worker_threads');
       const claims = new Int32Array(workerData);
       Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 50);
       Atomics.store(claims, 0, 7);
       Atomics.notify(claims, 0);`,
      { eval: true, workerData: claims.buffer },
    );
    let ticks = 0;
    const ticker = setInterval(() => ticks++, 5);
    const started = performance.now();
    const revoked = await revokeSlab(claims, 0, 7, 5000);
    clearInterval(ticker);
    await new Promise((resolve) => holder.once('exit', resolve));
    assert.equal(revoked, true);
    assert.ok(performance.now() - started >= 40, 'returned before the claim was ended');
    assert.ok(ticks > 0, 'the event loop was blocked while waiting');
  });

  it('a claim never ended: gives up after the bound and says so', async () => {
    const claims = new Int32Array(createClaims(1));
    Atomics.store(claims, 0, SLAB_CLAIMED);
    const started = performance.now();
    assert.equal(await revokeSlab(claims, 0, 7, 50), false);
    assert.ok(performance.now() - started >= 45);
    assert.equal(Atomics.load(claims, 0), SLAB_CLAIMED);
  });
});

describe('a worker that dies or hangs holding a slab: the main thread goes on, the slab is set aside', () => {
  let server: TestServer;
  const faulty = (fault: number) => ({ features: [fault, ...featuresFor(0, 1, WIDTH - 1)] });
  before(async () => {
    server = await startServer(
      { WORKER_TIMEOUT_MS: '2000', MAX_BATCH_SIZE: '1', WORKERS: '2' },
      { workerFilename: FAULT_WORKER, claimReleaseWaitMs: 100 },
    );
  });
  after(() => server.close());

  for (const [what, fault, message] of [
    ['dies', FAULT.EXIT_IN_CLAIM, /worker failed \(worker exited with code: 4\); it was replaced; it died holding the batch's memory, which is set aside/],
    ['hangs', FAULT.HANG_IN_CLAIM, /did not finish the batch within WORKER_TIMEOUT_MS \(2000 ms\); it was replaced; it died holding/],
  ] as const) {
    it(`a worker that ${what} inside the claim: UNAVAILABLE, the slab set aside, and the next calls are served`, async () => {
      const before = server.server.batcher.slabsSetAside;
      await expectStatus(predict(server.client, faulty(fault)), grpc.status.UNAVAILABLE, message);
      assert.equal(server.server.batcher.slabsSetAside, before + 1);
      const { reply } = await predict(server.client, { features: featuresFor(1, 1, WIDTH) });
      assert.equal(reply.predictions.length, 5);
    });
  }

  it('with every slab set aside, queued and new calls are answered UNAVAILABLE, not left waiting', async () => {
    // Four slabs (two workers); the two tests above set two aside.
    for (let i = 0; i < 2; i++) {
      await expectStatus(predict(server.client, faulty(FAULT.EXIT_IN_CLAIM)), grpc.status.UNAVAILABLE, /set aside/);
    }
    assert.equal(server.server.batcher.slabsSetAside, 4);
    await expectStatus(
      predict(server.client, { features: featuresFor(2, 1, WIDTH) }),
      grpc.status.UNAVAILABLE,
      /no batch memory left: workers died holding every slab/,
    );
  });
});
