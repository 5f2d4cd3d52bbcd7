// The batcher with an in-process executor that computes like a worker would (reading the slab's input rows,
// writing its output rows), so that assembly, slicing, cancellation and deadlines are observable exactly.
import assert from 'node:assert/strict';
import { performance } from 'node:perf_hooks';
import { describe, it } from 'node:test';
import { Batcher, type BatchExecutor, type BatchFigures, type BatchRequest, type BatchResult } from '../src/batching/batcher';
import { createSlab, slabViews, type SlabLayout } from '../src/batching/slab';
import type { ServingError } from '../src/main/errors';

const layout: SlabLayout = { maxBatchRows: 8, inputWidth: 3, outputWidth: 2 };

/** Output row = [sum of the input row, first input value * 2]. Batches can be held to let requests pile up. */
class RowSumExecutor implements BatchExecutor {
  readonly batches: number[] = [];
  private gate: Promise<void> = Promise.resolve();
  private openGate: () => void = () => {};
  constructor(readonly slabs: SharedArrayBuffer[]) {}
  hold(): void {
    this.gate = new Promise((resolve) => (this.openGate = resolve));
  }
  release(): void {
    this.openGate();
  }
  async run(slab: number, rows: number): Promise<BatchResult> {
    this.batches.push(rows);
    await this.gate;
    const { input, output } = slabViews(this.slabs[slab], layout);
    for (let r = 0; r < rows; r++) {
      const row = input.subarray(r * 3, r * 3 + 3);
      output[r * 2] = row[0] + row[1] + row[2];
      output[r * 2 + 1] = row[0] * 2;
    }
    return { computeUs: 5, worker: 0 };
  }
}

class TestRequest implements BatchRequest {
  enqueuedAt = 0;
  queued = false;
  cancelled = false;
  readonly spanContext = undefined;
  outputs: number[] | null = null;
  error: ServingError | null = null;
  batchRows = 0;
  answers = 0;
  readonly done: Promise<void>;
  readonly featureBytes: Buffer;
  private settle!: () => void;
  constructor(
    features: Float32Array,
    readonly rows: number,
    readonly deadline = Infinity,
  ) {
    this.featureBytes = Buffer.from(features.buffer, features.byteOffset, features.byteLength);
    this.done = new Promise((resolve) => (this.settle = resolve));
  }
  complete(output: Buffer, start: number, end: number, batch: BatchFigures): void {
    this.answers++;
    this.outputs = [];
    for (let at = start; at < end; at += 4) this.outputs.push(output.readFloatLE(at));
    this.batchRows = batch.rows;
    this.settle();
  }
  fail(error: ServingError): void {
    this.answers++;
    this.error = error;
    this.settle();
  }
}

function setup(options: { slabs?: number; maxQueueRows?: number; maxQueueDelayUs?: number } = {}) {
  const slabs = Array.from({ length: options.slabs ?? 1 }, () => createSlab(layout));
  const executor = new RowSumExecutor(slabs);
  const batcher = new Batcher({
    maxBatchRows: layout.maxBatchRows,
    maxQueueDelayUs: options.maxQueueDelayUs ?? 0,
    preferredBatchSizes: [],
    maxQueueRows: options.maxQueueRows ?? 64,
    layout,
    slabs,
    executor,
  });
  return { batcher, executor };
}

const rowsOf = (...rows: number[][]) => new Float32Array(rows.flat());

describe('batcher', () => {
  it('batches requests of one event-loop turn together and slices each its own rows', async () => {
    const { batcher, executor } = setup();
    const a = new TestRequest(rowsOf([1, 2, 3]), 1);
    const b = new TestRequest(rowsOf([10, 20, 30], [4, 5, 6]), 2);
    const c = new TestRequest(rowsOf([100, 0, 0]), 1);
    for (const r of [a, b, c]) assert.equal(batcher.enqueue(r), true);
    await Promise.all([a.done, b.done, c.done]);
    assert.deepEqual(executor.batches, [4]);
    assert.deepEqual(a.outputs, [6, 2]);
    assert.deepEqual(b.outputs, [60, 20, 15, 8]);
    assert.deepEqual(c.outputs, [100, 200]);
    assert.equal(b.batchRows, 4);
    assert.equal(batcher.queuedRowCount, 0);
  });

  it('never exceeds the maximum batch rows and never splits a request', async () => {
    const { batcher, executor } = setup();
    const requests = [3, 3, 3, 2].map((rows, i) => new TestRequest(new Float32Array(rows * 3).fill(i), rows));
    for (const r of requests) batcher.enqueue(r);
    await Promise.all(requests.map((r) => r.done));
    assert.deepEqual(executor.batches, [6, 5]);
    requests.forEach((r, i) => assert.deepEqual(r.outputs, new Array(r.rows).fill([i * 3, i * 2]).flat()));
  });

  it('gathers requests while every slab is busy, then sends them as one batch', async () => {
    const { batcher, executor } = setup();
    executor.hold();
    const first = new TestRequest(rowsOf([1, 1, 1]), 1);
    batcher.enqueue(first);
    await new Promise((resolve) => setImmediate(resolve));
    const later = Array.from({ length: 5 }, (_, i) => new TestRequest(rowsOf([i, 0, 0]), 1));
    for (const r of later) batcher.enqueue(r);
    await new Promise((resolve) => setImmediate(resolve));
    assert.deepEqual(executor.batches, [1]);
    executor.release();
    await Promise.all(later.map((r) => r.done));
    assert.deepEqual(executor.batches, [1, 5]);
  });

  it('refuses requests beyond the queue limit without taking them', () => {
    const { batcher } = setup({ maxQueueRows: 4 });
    assert.equal(batcher.enqueue(new TestRequest(new Float32Array(9), 3)), true);
    const refused = new TestRequest(new Float32Array(6), 2);
    assert.equal(batcher.enqueue(refused), false);
    assert.equal(refused.queued, false);
    assert.equal(batcher.queuedRowCount, 3);
  });

  it('drops a cancelled request before compute, without an answer, and frees its queue room at once', async () => {
    const { batcher, executor } = setup();
    executor.hold();
    const busy = new TestRequest(rowsOf([0, 0, 0]), 1);
    batcher.enqueue(busy);
    await new Promise((resolve) => setImmediate(resolve));
    const cancelled = new TestRequest(rowsOf([1, 1, 1]), 1);
    const kept = new TestRequest(rowsOf([2, 2, 2]), 1);
    batcher.enqueue(cancelled);
    batcher.enqueue(kept);
    batcher.cancel(cancelled);
    assert.equal(batcher.queuedRowCount, 1);
    executor.release();
    await kept.done;
    await batcher.drain();
    assert.deepEqual(executor.batches, [1, 1]);
    assert.equal(cancelled.answers, 0);
    assert.deepEqual(kept.outputs, [6, 4]);
  });

  it('fails an expired request with DEADLINE_EXCEEDED and never computes it', async () => {
    const { batcher, executor } = setup();
    executor.hold();
    batcher.enqueue(new TestRequest(rowsOf([0, 0, 0]), 1));
    await new Promise((resolve) => setImmediate(resolve));
    const expired = new TestRequest(rowsOf([1, 1, 1]), 1, performance.now() + 1);
    batcher.enqueue(expired);
    await new Promise((resolve) => setTimeout(resolve, 5));
    executor.release();
    await expired.done;
    assert.equal(expired.error?.code, 4 /* DEADLINE_EXCEEDED */);
    assert.equal(expired.answers, 1);
    await batcher.drain();
    assert.deepEqual(executor.batches, [1]);
  });

  it('waits the queue delay for company before dispatching a partial batch', async () => {
    const { batcher, executor } = setup({ maxQueueDelayUs: 20_000 });
    const a = new TestRequest(rowsOf([1, 0, 0]), 1);
    batcher.enqueue(a);
    await new Promise((resolve) => setTimeout(resolve, 5));
    assert.deepEqual(executor.batches, [], 'dispatched before the queue delay');
    const b = new TestRequest(rowsOf([2, 0, 0]), 1);
    batcher.enqueue(b);
    await Promise.all([a.done, b.done]);
    assert.deepEqual(executor.batches, [2]);
  });

  const failures: Array<[string, (run: BatchExecutor['run']) => BatchExecutor['run'], number, RegExp]> = [
    ['the worker failed (UNAVAILABLE)', () => () => Promise.reject(new Error('worker exited')), 14, /worker exited/],
    [
      'the model failed (INTERNAL)',
      (run) => async (slab, rows) => ({ ...(await run(slab, rows)), error: 'bad shape' }),
      13,
      /model failed on this batch: bad shape/,
    ],
  ];
  for (const [name, fault, code, message] of failures) {
    it(`answers every request of a batch whose ${name} with its status, and keeps going`, async () => {
      const { batcher, executor } = setup();
      const run = executor.run.bind(executor);
      const faulty = fault(run);
      let calls = 0;
      executor.run = (slab, rows) => (calls++ === 0 ? faulty(slab, rows) : run(slab, rows));
      const failed = [new TestRequest(rowsOf([1, 1, 1]), 1), new TestRequest(rowsOf([2, 2, 2]), 1)];
      for (const r of failed) batcher.enqueue(r);
      await Promise.all(failed.map((r) => r.done));
      for (const r of failed) {
        assert.equal(r.error?.code, code);
        assert.match(r.error?.message ?? '', message);
        assert.equal(r.answers, 1);
      }
      const next = new TestRequest(rowsOf([3, 3, 3]), 1);
      batcher.enqueue(next);
      await next.done;
      assert.deepEqual(next.outputs, [9, 6]);
    });
  }
});
