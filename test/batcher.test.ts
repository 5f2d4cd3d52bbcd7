// The batcher with an in-process executor that computes like a worker would (reading the slab's input rows,
// writing its output rows), so that assembly, slicing, cancellation and deadlines are observable exactly. Time is a
// FakeClock: nothing here sleeps; each step of time, and each end of an event-loop turn, is a clock.advance().
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  Batcher,
  type BatchExecutor,
  type BatchFigures,
  type BatchOutputs,
  type BatchObserver,
  type BatchRequest,
  type BatchResult,
  type ExecutorFault,
} from '../src/batching/batcher';
import { createSlab, slabViews, type SlabLayout } from '../src/batching/slab';
import type { BatchDelay } from '../src/batching/policy';
import type { ServingError } from '../src/main/errors';
import { FakeClock } from './helpers/fake-clock';

const layout: SlabLayout = { maxBatchRows: 8, inputRowBytes: [3 * 4], outputRowBytes: [2 * 4] };

const DEADLINE_EXCEEDED = 4;
const INTERNAL = 13;
const UNAVAILABLE = 14;

interface HeldRun {
  readonly slab: number;
  readonly rows: number;
  readonly resolve: (result: BatchResult) => void;
}

/**
 * Output row = [sum of the input row, first input value * 2], computed when the batch's promise settles. Batches
 * can be held (their promises stay pending) to keep slabs busy while requests pile up.
 */
class RowSumExecutor implements BatchExecutor {
  /** Rows of each batch run, in order. */
  readonly batches: number[] = [];
  /** The slab of each batch run, in order. */
  readonly slabsUsed: number[] = [];
  private held: HeldRun[] | null = null;
  constructor(readonly slabs: SharedArrayBuffer[]) {}
  /** Batches run from now on wait for release(). */
  hold(): void {
    this.held ??= [];
  }
  /** Computes the held batches (their answers arrive as promise callbacks) and runs later ones at once. */
  release(): void {
    const held = this.held ?? [];
    this.held = null;
    for (const run of held) this.compute(run);
  }
  run(slab: number, rows: number): Promise<BatchResult> {
    this.batches.push(rows);
    this.slabsUsed.push(slab);
    return new Promise((resolve) => {
      const run = { slab, rows, resolve };
      if (this.held !== null) this.held.push(run);
      else this.compute(run);
    });
  }
  private compute({ slab, rows, resolve }: HeldRun): void {
    const views = slabViews(this.slabs[slab], layout);
    const input = new Float32Array(views.inputs[0].buffer, views.inputs[0].byteOffset, 8 * 3);
    const output = new Float32Array(views.outputs[0].buffer, views.outputs[0].byteOffset, 8 * 2);
    for (let r = 0; r < rows; r++) {
      const row = input.subarray(r * 3, r * 3 + 3);
      output[r * 2] = row[0] + row[1] + row[2];
      output[r * 2 + 1] = row[0] * 2;
    }
    resolve({ computeUs: 5, worker: 0 });
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
  /** complete() and fail() calls together: exactly one is due to every request not cancelled. */
  answers = 0;
  /** The clock when the last answer came. */
  answeredAt = NaN;
  readonly inputs: readonly Buffer[];
  readonly shapes = null;
  constructor(
    private readonly clock: FakeClock,
    features: Float32Array,
    readonly rows: number,
    readonly deadline = Infinity,
  ) {
    this.inputs = [Buffer.from(features.buffer, features.byteOffset, features.byteLength)];
  }
  complete(outputs: BatchOutputs, firstRow: number, batch: BatchFigures): void {
    this.answers++;
    this.answeredAt = this.clock.now();
    this.outputs = [];
    const start = firstRow * outputs.rowBytes[0];
    const end = start + this.rows * outputs.rowBytes[0];
    for (let at = start; at < end; at += 4) this.outputs.push(outputs.bytes[0].readFloatLE(at));
    this.batchRows = batch.rows;
  }
  fail(error: ServingError): void {
    this.answers++;
    this.answeredAt = this.clock.now();
    this.error = error;
  }
}

/** A caller whose complete() throws (a bug on its side): it gets fail() instead, and is counted apart. */
class ThrowingRequest extends TestRequest {
  completeCalls = 0;
  failures: ServingError[] = [];
  override complete(): void {
    this.completeCalls++;
    throw new Error('socket gone');
  }
  override fail(error: ServingError): void {
    this.failures.push(error);
    super.fail(error);
  }
}

interface SetupOptions {
  slabs?: number;
  maxQueueRows?: number;
  maxQueueDelayUs?: number;
  observer?: BatchObserver;
  batchDelay?: BatchDelay;
  workers?: number;
}

function setup(options: SetupOptions = {}) {
  const clock = new FakeClock();
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
    observer: options.observer,
    clock,
    batchDelay: options.batchDelay ?? 'fixed',
    workers: options.workers,
  });
  /** A request of the given rows (3 floats each), with an optional deadline on the fake clock. */
  const request = (rows: number[][], deadline?: number) => new TestRequest(clock, rowsOf(rows), rows.length, deadline);
  return { batcher, executor, clock, request };
}

const rowsOf = (rows: number[][]) => new Float32Array(rows.flat());

/** Whether drain() has resolved, read after each clock.advance(). */
function watchDrain(batcher: Batcher): { readonly drained: boolean } {
  const state = { drained: false };
  void batcher.drain().then(() => (state.drained = true));
  return state;
}

describe('batcher', () => {
  it('batches requests of one event-loop turn together and slices each its own rows', async () => {
    const { batcher, executor, clock, request } = setup();
    const a = request([[1, 2, 3]]);
    const b = request([
      [10, 20, 30],
      [4, 5, 6],
    ]);
    const c = request([[100, 0, 0]]);
    for (const r of [a, b, c]) assert.equal(batcher.enqueue(r), true);
    assert.deepEqual(executor.batches, [], 'dispatched before the end of the turn');
    await clock.advance(0);
    assert.deepEqual(executor.batches, [4]);
    assert.deepEqual(a.outputs, [6, 2]);
    assert.deepEqual(b.outputs, [60, 20, 15, 8]);
    assert.deepEqual(c.outputs, [100, 200]);
    assert.equal(b.batchRows, 4);
    for (const r of [a, b, c]) assert.equal(r.answers, 1);
    assert.equal(batcher.queuedRowCount, 0);
    assert.equal(batcher.inFlightBatches, 0);
  });

  it('never exceeds the maximum batch rows and never splits a request', async () => {
    const { batcher, executor, clock } = setup();
    const requests = [3, 3, 3, 2].map((rows, i) => new TestRequest(clock, new Float32Array(rows * 3).fill(i), rows));
    for (const r of requests) batcher.enqueue(r);
    await clock.advance(0);
    assert.deepEqual(executor.batches, [6, 5]);
    requests.forEach((r, i) => assert.deepEqual(r.outputs, new Array(r.rows).fill([i * 3, i * 2]).flat()));
  });

  it('gathers requests while every slab is busy, then sends them as one batch', async () => {
    const { batcher, executor, clock, request } = setup();
    executor.hold();
    const first = request([[1, 1, 1]]);
    batcher.enqueue(first);
    await clock.advance(0);
    const later = Array.from({ length: 5 }, (_, i) => request([[i, 0, 0]]));
    for (const r of later) batcher.enqueue(r);
    await clock.advance(0);
    assert.deepEqual(executor.batches, [1]);
    assert.equal(batcher.queuedRowCount, 5);
    executor.release();
    await clock.advance(0);
    assert.deepEqual(executor.batches, [1, 5]);
    later.forEach((r, i) => assert.deepEqual(r.outputs, [i, i * 2]));
    assert.equal(first.answers, 1);
  });

  it('refuses requests beyond the queue limit without taking them', () => {
    const { batcher, clock } = setup({ maxQueueRows: 4 });
    assert.equal(batcher.enqueue(new TestRequest(clock, new Float32Array(9), 3)), true);
    const refused = new TestRequest(clock, new Float32Array(6), 2);
    assert.equal(batcher.enqueue(refused), false);
    assert.equal(refused.queued, false);
    assert.equal(batcher.queuedRowCount, 3);
  });

  it('drops a cancelled request before compute, without an answer, and frees its queue room at once', async () => {
    const { batcher, executor, clock, request } = setup();
    executor.hold();
    batcher.enqueue(request([[0, 0, 0]]));
    await clock.advance(0);
    const cancelled = request([[1, 1, 1]]);
    const kept = request([[2, 2, 2]]);
    batcher.enqueue(cancelled);
    batcher.enqueue(kept);
    batcher.cancel(cancelled);
    assert.equal(batcher.queuedRowCount, 1);
    executor.release();
    const drain = watchDrain(batcher);
    await clock.advance(0);
    assert.equal(drain.drained, true);
    assert.deepEqual(executor.batches, [1, 1]);
    assert.equal(cancelled.answers, 0);
    assert.deepEqual(kept.outputs, [6, 4]);
  });

  it('fails an expired request with DEADLINE_EXCEEDED at its deadline and never computes it', async () => {
    const { batcher, executor, clock, request } = setup();
    executor.hold();
    batcher.enqueue(request([[0, 0, 0]]));
    await clock.advance(0);
    const expired = request([[1, 1, 1]], clock.now() + 1);
    batcher.enqueue(expired);
    await clock.advance(0.5);
    assert.equal(expired.answers, 0, 'answered before its deadline');
    await clock.advance(0.5);
    assert.equal(expired.error?.code, DEADLINE_EXCEEDED);
    assert.equal(expired.answers, 1);
    assert.equal(expired.answeredAt, 1);
    executor.release();
    const drain = watchDrain(batcher);
    await clock.advance(0);
    assert.equal(drain.drained, true);
    assert.deepEqual(executor.batches, [1]);
  });

  it('waits the queue delay for company before dispatching a partial batch', async () => {
    const { batcher, executor, clock, request } = setup({ maxQueueDelayUs: 20_000 });
    const a = request([[1, 0, 0]]);
    batcher.enqueue(a);
    await clock.advance(5);
    assert.deepEqual(executor.batches, [], 'dispatched before the queue delay');
    const b = request([[2, 0, 0]]);
    batcher.enqueue(b);
    await clock.advance(14);
    assert.deepEqual(executor.batches, [], 'dispatched before the queue delay');
    await clock.advance(1);
    assert.deepEqual(executor.batches, [2]);
    assert.deepEqual(a.outputs, [1, 2]);
    assert.deepEqual(b.outputs, [2, 4]);
    assert.equal(a.answeredAt, 20);
  });

  it('waits a queue delay under a millisecond on one timer, without polling, and dispatches once it has passed', async () => {
    const { batcher, executor, clock, request } = setup({ maxQueueDelayUs: 500 });
    const a = request([[1, 0, 0]]);
    batcher.enqueue(a);
    await clock.advance(0.4);
    assert.deepEqual(executor.batches, [], 'dispatched before the queue delay');
    assert.equal(clock.pendingTimers, 1, 'no timer for the sub-millisecond wait');
    assert.equal(clock.pendingImmediates, 0, 'polling the event loop while it waits');
    await clock.advance(0.1);
    assert.deepEqual(executor.batches, [1]);
    assert.deepEqual(a.outputs, [1, 2]);
    assert.equal(clock.pendingImmediates + clock.pendingTimers, 0, 'something left to run with nothing queued');
  });

  const failures: Array<[string, (run: BatchExecutor['run']) => BatchExecutor['run'], number, RegExp]> = [
    ['the worker failed (UNAVAILABLE)', () => () => Promise.reject(new Error('worker exited')), UNAVAILABLE, /worker exited/],
    [
      'the model failed (INTERNAL)',
      (run) => async (slab, rows) => ({ ...(await run(slab, rows)), error: 'bad shape' }),
      INTERNAL,
      /model failed on this batch: bad shape/,
    ],
  ];
  for (const [name, fault, code, message] of failures) {
    it(`answers every request of a batch whose ${name} with its status, and keeps going`, async () => {
      const { batcher, executor, clock, request } = setup();
      const run = executor.run.bind(executor);
      const faulty = fault(run);
      let calls = 0;
      executor.run = (slab, rows) => (calls++ === 0 ? faulty(slab, rows) : run(slab, rows));
      const failed = [request([[1, 1, 1]]), request([[2, 2, 2]])];
      for (const r of failed) batcher.enqueue(r);
      await clock.advance(0);
      for (const r of failed) {
        assert.equal(r.error?.code, code);
        assert.match(r.error?.message ?? '', message);
        assert.equal(r.answers, 1);
      }
      const next = request([[3, 3, 3]]);
      batcher.enqueue(next);
      await clock.advance(0);
      assert.deepEqual(next.outputs, [9, 6]);
      assert.equal(batcher.inFlightBatches, 0);
    });
  }

  it('gives no answer to a request cancelled while its batch is in flight; the others get theirs, the slab is freed and drain() resolves', async () => {
    const { batcher, executor, clock, request } = setup();
    executor.hold();
    const before = request([[1, 1, 1]]);
    const cancelled = request([[2, 2, 2]]);
    const after = request([[3, 0, 0]]);
    for (const r of [before, cancelled, after]) batcher.enqueue(r);
    await clock.advance(0);
    assert.deepEqual(executor.batches, [3]);
    assert.equal(batcher.inFlightBatches, 1);
    batcher.cancel(cancelled);
    assert.equal(batcher.queuedRowCount, 0, 'a request in flight is not queued: cancelling it frees no queue room');
    const drain = watchDrain(batcher);
    await clock.advance(0);
    assert.equal(drain.drained, false, 'drained with a batch in flight');
    executor.release();
    await clock.advance(0);
    assert.equal(cancelled.answers, 0);
    assert.deepEqual(before.outputs, [3, 2]);
    assert.deepEqual(after.outputs, [3, 6]);
    assert.equal(before.answers, 1);
    assert.equal(after.answers, 1);
    assert.equal(batcher.inFlightBatches, 0);
    assert.equal(drain.drained, true);
    // The one slab is free again: the next request is computed in it.
    const next = request([[4, 0, 0]]);
    batcher.enqueue(next);
    await clock.advance(0);
    assert.deepEqual(next.outputs, [4, 8]);
    assert.deepEqual(executor.slabsUsed, [0, 0]);
  });

  it("answers a batch's other requests when one's complete() throws, and fails that one once with INTERNAL", async () => {
    const { batcher, executor, clock, request } = setup();
    const before = request([[1, 1, 1]]);
    const thrower = new ThrowingRequest(clock, rowsOf([[2, 2, 2]]), 1);
    const after = request([[3, 0, 0]]);
    for (const r of [before, thrower, after]) batcher.enqueue(r);
    const drain = watchDrain(batcher);
    await clock.advance(0);
    assert.deepEqual(executor.batches, [3]);
    assert.deepEqual(before.outputs, [3, 2]);
    assert.deepEqual(after.outputs, [3, 6]);
    assert.equal(before.answers, 1);
    assert.equal(after.answers, 1);
    assert.equal(thrower.completeCalls, 1);
    assert.equal(thrower.failures.length, 1);
    assert.equal(thrower.failures[0].code, INTERNAL);
    assert.match(thrower.failures[0].message, /answering failed: socket gone/);
    assert.equal(batcher.inFlightBatches, 0);
    assert.equal(drain.drained, true);
  });

  it('answers a request that expires behind requests with later deadlines at its deadline while every slab is busy, and never computes it', async () => {
    const { batcher, executor, clock, request } = setup({ slabs: 2 });
    executor.hold();
    batcher.enqueue(request([[0, 0, 0]]));
    await clock.advance(0);
    batcher.enqueue(request([[0, 0, 0]]));
    await clock.advance(0);
    assert.equal(batcher.inFlightBatches, 2);
    const first = request([[1, 0, 0]], 50);
    const early = request([[9, 9, 9]], 10);
    const last = request([[3, 0, 0]], 50);
    for (const r of [first, early, last]) batcher.enqueue(r);
    await clock.advance(9.5);
    assert.equal(early.answers, 0, 'answered before its deadline');
    await clock.advance(0.5);
    assert.equal(early.error?.code, DEADLINE_EXCEEDED);
    assert.equal(early.answeredAt, 10);
    assert.equal(batcher.queuedRowCount, 2);
    assert.equal(first.answers + last.answers, 0);
    await clock.advance(10);
    executor.release();
    await clock.advance(0);
    assert.deepEqual(executor.batches, [1, 1, 2], 'the expired request was computed');
    assert.deepEqual(first.outputs, [1, 2]);
    assert.deepEqual(last.outputs, [3, 6]);
    assert.equal(early.answers, 1);
  });

  it('never reuses a slab a failed worker may still hold, and refuses queued work once every slab is set aside', async () => {
    const setAside: Array<[number, number]> = [];
    const observer: BatchObserver = {
      onBatch: () => {},
      onSlabSetAside: (count, total) => setAside.push([count, total]),
    };
    const { batcher, executor, clock, request } = setup({ slabs: 2, observer });
    const run = executor.run.bind(executor);
    const faultySlabs = new Set<number>();
    const fault: ExecutorFault = Object.assign(new Error('worker hung holding its slab'), { slabSetAside: true });
    executor.run = (slab, rows) => {
      if (!faultySlabs.has(slab)) return run(slab, rows);
      executor.slabsUsed.push(slab);
      return Promise.reject(fault);
    };
    // Slab 0 fails first: set aside, its request answered UNAVAILABLE.
    faultySlabs.add(0);
    const lost = request([[1, 1, 1]]);
    batcher.enqueue(lost);
    await clock.advance(0);
    assert.deepEqual(executor.slabsUsed, [0]);
    assert.equal(lost.error?.code, UNAVAILABLE);
    assert.equal(batcher.slabsSetAside, 1);
    assert.equal(batcher.inFlightBatches, 0);
    assert.deepEqual(setAside, [[1, 2]]);
    // Work goes on in the other slab only.
    const served = [request([[2, 0, 0]]), request([[3, 0, 0]])];
    for (const r of served) {
      batcher.enqueue(r);
      await clock.advance(0);
    }
    assert.deepEqual(executor.slabsUsed, [0, 1, 1]);
    assert.deepEqual(served[0].outputs, [2, 4]);
    assert.deepEqual(served[1].outputs, [3, 6]);
    // Slab 1 fails too: nothing can compute any more, and what is queued is refused rather than left waiting.
    faultySlabs.add(1);
    const lastRun = request([[4, 0, 0]]);
    batcher.enqueue(lastRun);
    await clock.advance(0);
    assert.equal(lastRun.error?.code, UNAVAILABLE);
    assert.equal(batcher.slabsSetAside, 2);
    assert.deepEqual(setAside, [
      [1, 2],
      [2, 2],
    ]);
    const refused = request([[6, 0, 0]]);
    batcher.enqueue(refused);
    const drain = watchDrain(batcher);
    await clock.advance(0);
    assert.equal(refused.error?.code, UNAVAILABLE);
    assert.match(refused.error?.message ?? '', /no batch memory left/);
    assert.deepEqual(executor.slabsUsed, [0, 1, 1, 1], 'a set-aside slab was used again');
    assert.equal(drain.drained, true);
    assert.equal(batcher.queuedRowCount, 0);
  });
});
