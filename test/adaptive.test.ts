// The adaptive batch delay: the controller's online fit, the pure policy's decisions, and the batcher driving a
// worker whose batches take scripted (fake) time, under scripted arrival patterns: idle (dispatch at once), a burst
// (batches fill, never past the bound), deadlines that cannot be met (refused before compute) and early deadlines
// behind later ones (not starved). Nothing sleeps: time is a FakeClock.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Batcher, type BatchExecutor, type BatchFigures, type BatchRequest, type BatchResult } from '../src/batching/batcher';
import { AdaptiveController, COST_WINDOW, MIN_BATCHES } from '../src/batching/controller';
import { decideAdaptive, MIN_WAIT_US, type BatchPolicy, type LoadEstimate } from '../src/batching/policy';
import { createSlab, type SlabLayout } from '../src/batching/slab';
import type { ServingError } from '../src/main/errors';
import { FakeClock } from './helpers/fake-clock';

const DEADLINE_EXCEEDED = 4;

describe('adaptive controller', () => {
  it('fits a batch cost of fixed + per-row µs by least squares, and all of it is fixed with one batch size', () => {
    const single = new AdaptiveController(1);
    for (let i = 0; i < 5; i++) single.onBatch(1, 150, 20);
    assert.equal(single.perRowUs, 0);
    assert.equal(single.fixedUs, 150);
    const controller = new AdaptiveController(1);
    for (let i = 0; i < 40; i++) {
      const rows = 1 + (i % 8);
      controller.onBatch(rows, 100 + 10 * rows, 10 * rows);
    }
    assert.ok(Math.abs(controller.perRowUs - 10) < 2, `perRow ${controller.perRowUs}`);
    assert.ok(Math.abs(controller.fixedUs - 100) < 20, `fixed ${controller.fixedUs}`);
    assert.ok(controller.handOffUs > 50, `hand-off ${controller.handOffUs}`);
  });

  it('forgets batches older than its window: a model that got slower is predicted slower', () => {
    const controller = new AdaptiveController(1);
    for (let i = 0; i < COST_WINDOW; i++) controller.onBatch(1 + (i % 4), 50 + 5 * (1 + (i % 4)), 0);
    for (let i = 0; i < COST_WINDOW; i++) controller.onBatch(1 + (i % 4), 500 + 50 * (1 + (i % 4)), 0);
    assert.ok(Math.abs(controller.predictUs(4) - 700) < 1, `predicted ${controller.predictUs(4)}`);
  });

  it('predicts nothing (so refuses and waits for nothing) until it has seen MIN_BATCHES batches', () => {
    const controller = new AdaptiveController(2);
    for (let i = 0; i < MIN_BATCHES - 1; i++) controller.onBatch(1, 100, 0);
    controller.onArrival(1, 0);
    controller.onArrival(1, 10);
    assert.equal(controller.trained, false);
    assert.equal(controller.predictUs(1), 0);
    assert.equal(controller.loadEstimate(0).arrivalRowsPerUs, 0);
    controller.onBatch(1, 100, 0);
    assert.equal(controller.predictUs(1), 100);
    assert.ok(controller.loadEstimate(0).arrivalRowsPerUs > 0);
    assert.equal(controller.loadEstimate(1).idleWorkers, 1);
    assert.equal(controller.loadEstimate(3).idleWorkers, 0);
  });

  it('follows the arrival rate, per row, up in a burst and down when the feed goes quiet', () => {
    const controller = new AdaptiveController(1);
    let t = 0;
    for (let i = 0; i < 50; i++) controller.onArrival(1, (t += 1000));
    assert.ok(Math.abs(controller.arrivalRowsPerUs - 0.001) < 1e-4, `quiet ${controller.arrivalRowsPerUs}`);
    for (let i = 0; i < 100; i++) controller.onArrival(2, (t += 20));
    assert.ok(controller.arrivalRowsPerUs > 0.08, `burst ${controller.arrivalRowsPerUs}`);
    for (let i = 0; i < 3; i++) controller.onArrival(1, (t += 1_000_000));
    assert.ok(controller.arrivalRowsPerUs < 0.001, `after the burst ${controller.arrivalRowsPerUs}`);
  });
});

describe('adaptive policy', () => {
  const policy: BatchPolicy = { maxBatchRows: 64, maxQueueDelayUs: 1000, preferredBatchSizes: [] };
  const load = (over: Partial<LoadEstimate>): LoadEstimate => ({ fixedUs: 100, perRowUs: 2, arrivalRowsPerUs: 0.001, idleWorkers: 1, workerFreeInUs: 0, handOffUs: 60, ...over });

  it('idle worker, light load: dispatches at once (waiting cannot pay)', () => {
    assert.deepEqual(decideAdaptive(1, 0, policy, load({})), { dispatch: true, rows: 1 });
  });

  it('idle worker, fewer rows arrive during a batch\'s fixed cost than are queued (λB ≤ n): dispatches at once', () => {
    assert.deepEqual(decideAdaptive(1, 0, policy, load({ fixedUs: 900, arrivalRowsPerUs: 0.001 })), { dispatch: true, rows: 1 });
    assert.deepEqual(decideAdaptive(30, 0, policy, load({ arrivalRowsPerUs: 0.2 })), { dispatch: true, rows: 30 });
  });

  it('idle worker, more rows due during a batch\'s fixed cost than queued: waits for ⌈λB⌉ rows, cheaper per row', () => {
    // λ = 0.03 rows/µs, B = 100: 3 rows arrive during one batch's fixed cost; with 1 queued, wait for 2 more.
    const decision = decideAdaptive(1, 0, policy, load({ arrivalRowsPerUs: 0.03 }));
    assert.equal(decision.dispatch, false);
    assert.ok(!decision.dispatch && Math.abs(decision.waitUs - 2 / 0.03) < 1e-9);
    // Once they are there, it goes.
    assert.deepEqual(decideAdaptive(3, 67, policy, load({ arrivalRowsPerUs: 0.03 })), { dispatch: true, rows: 3 });
  });

  it('never waits past the bound, and a wait too short to pay is no wait', () => {
    const heavy = load({ fixedUs: 5000, arrivalRowsPerUs: 0.01 });
    assert.deepEqual(decideAdaptive(1, 0, policy, heavy), { dispatch: false, waitUs: 1000 });
    assert.deepEqual(decideAdaptive(1, 600, policy, heavy), { dispatch: false, waitUs: 400 });
    assert.deepEqual(decideAdaptive(1, 1000 - MIN_WAIT_US + 1, policy, heavy), { dispatch: true, rows: 1 });
    assert.deepEqual(decideAdaptive(1, 0, { ...policy, maxQueueDelayUs: 0 }, heavy), { dispatch: true, rows: 1 });
  });

  it('no worker idle: grows until one hand-off before the first busy worker is predicted free, then goes, queued behind it', () => {
    // Free in 500 µs, hand-off 60 µs: hand the batch over in 440 µs.
    assert.deepEqual(decideAdaptive(5, 200, policy, load({ idleWorkers: 0, workerFreeInUs: 500 })), { dispatch: false, waitUs: 440 });
    // Never past the bound (1,000 µs, 200 waited).
    assert.deepEqual(decideAdaptive(5, 200, policy, load({ idleWorkers: 0, workerFreeInUs: 5000 })), { dispatch: false, waitUs: 800 });
    // Within a hand-off of the worker's end (or past a late prediction): now, so that the worker never waits for it.
    assert.deepEqual(decideAdaptive(5, 200, policy, load({ idleWorkers: 0, workerFreeInUs: 70 })), { dispatch: true, rows: 5 });
    assert.deepEqual(decideAdaptive(5, 200, policy, load({ idleWorkers: 0, workerFreeInUs: 0 })), { dispatch: true, rows: 5 });
  });

  it('a full batch or a preferred size goes at once, as under fixed', () => {
    assert.deepEqual(decideAdaptive(70, 0, policy, load({ idleWorkers: 0 })), { dispatch: true, rows: 64 });
    assert.deepEqual(decideAdaptive(9, 0, { ...policy, preferredBatchSizes: [8] }, load({ idleWorkers: 0 })), { dispatch: true, rows: 8 });
  });
});

// The batcher with a worker whose batches take fixedUs + perRowUs × rows of fake time.
const layout: SlabLayout = { maxBatchRows: 16, inputRowBytes: [4], outputRowBytes: [4] };

class TimedExecutor implements BatchExecutor {
  readonly batches: Array<{ rows: number; at: number }> = [];
  constructor(
    private readonly clock: FakeClock,
    private readonly fixedUs: number,
    private readonly perRowUs: number,
  ) {}
  run(_slab: number, rows: number): Promise<BatchResult> {
    this.batches.push({ rows, at: this.clock.now() });
    const us = this.fixedUs + this.perRowUs * rows;
    return new Promise((resolve) => this.clock.setTimer(() => resolve({ computeUs: us * 0.8, worker: 0 }), us / 1000));
  }
}

/**
 * One worker behind a pool that works as piscina does with one task a worker: a batch handed over while the worker
 * is busy waits on the main thread, and is posted to the worker when the result before it arrives there. A posted
 * batch reaches the worker HAND_OFF ms later, takes 100 + 10 µs a row, and its result is back HAND_OFF ms after.
 */
const HAND_OFF = 0.04;

class PiscinaLikeWorker implements BatchExecutor {
  readonly batches: Array<{ start: number; end: number; rows: number }> = [];
  private readonly waiting: Array<() => void> = [];
  private busy = false;
  constructor(private readonly clock: FakeClock) {}

  run(_slab: number, rows: number): Promise<BatchResult> {
    return new Promise((resolve) => {
      const post = () => {
        this.busy = true;
        const start = this.clock.now() + HAND_OFF;
        const end = start + (100 + 10 * rows) / 1000;
        this.batches.push({ start, end, rows });
        this.clock.setTimer(() => {
          this.busy = false;
          resolve({ computeUs: (end - start) * 1000, worker: 0 });
          this.waiting.shift()?.();
        }, end + HAND_OFF - this.clock.now());
      };
      if (this.busy) this.waiting.push(post);
      else post();
    });
  }
}

/** An adaptive batcher with two slabs over one PiscinaLikeWorker. */
function behindOneWorker() {
  const clock = new FakeClock();
  const worker = new PiscinaLikeWorker(clock);
  const batcher = new Batcher({
    maxBatchRows: layout.maxBatchRows, maxQueueDelayUs: 1000, preferredBatchSizes: [], maxQueueRows: 100_000, layout,
    slabs: [createSlab(layout), createSlab(layout)], executor: worker, clock, batchDelay: 'adaptive', workers: 1,
  });
  return { clock, worker, batcher };
}

class Call implements BatchRequest {
  enqueuedAt = 0;
  queued = false;
  cancelled = false;
  readonly spanContext = undefined;
  readonly inputs = [Buffer.alloc(4)];
  readonly shapes = null;
  readonly rows = 1;
  answeredAt = NaN;
  error: ServingError | null = null;
  batchRows = 0;
  constructor(
    private readonly clock: FakeClock,
    readonly deadline = Infinity,
  ) {}
  complete(_outputs: unknown, _firstRow: number, batch: BatchFigures): void {
    this.answeredAt = this.clock.now();
    this.batchRows = batch.rows;
  }
  fail(error: ServingError): void {
    this.answeredAt = this.clock.now();
    this.error = error;
  }
}

function setup(batchDelay: 'adaptive' | 'fixed', maxQueueDelayUs = 1000) {
  const clock = new FakeClock();
  const executor = new TimedExecutor(clock, 100, 10);
  const slabs = [createSlab(layout), createSlab(layout)];
  const batcher = new Batcher({
    maxBatchRows: layout.maxBatchRows,
    maxQueueDelayUs,
    preferredBatchSizes: [],
    maxQueueRows: 1024,
    layout,
    slabs,
    executor,
    clock,
    batchDelay,
    workers: 1,
  });
  /** One call every `gapMs` for `count` calls; resolves once the last is sent, and time is left there. */
  const arrivals = async (count: number, gapMs: number, deadlineMs = Infinity): Promise<Call[]> => {
    const calls: Call[] = [];
    for (let i = 0; i < count; i++) {
      const call = new Call(clock, clock.now() + deadlineMs);
      assert.equal(batcher.enqueue(call), true);
      calls.push(call);
      await clock.advance(gapMs);
    }
    return calls;
  };
  /** Batches of 1 to 8 rows, 2 ms apart, twice over: the fit learns 100 + 10 µs a row exactly. */
  const train = async (): Promise<void> => {
    for (let i = 0; i < 16; i++) {
      for (let r = 0; r <= i % 8; r++) batcher.enqueue(new Call(clock));
      await clock.advance(2);
    }
    assert.ok(Math.abs(batcher.adaptive!.predictUs(16) - 260) < 1e-6, `trained to ${batcher.adaptive!.predictUs(16)}`);
  };
  return { clock, executor, batcher, arrivals, train };
}

describe('batcher, adaptive delay', () => {
  it('idle: a quiet feed is dispatched at once, answered in the batch time alone (fixed waits its delay on every call)', async () => {
    for (const policy of ['adaptive', 'fixed'] as const) {
      const { clock, arrivals } = setup(policy);
      const calls = await arrivals(30, 5);
      await clock.advance(5);
      const latencies = calls.slice(MIN_BATCHES + 2).map((c) => c.answeredAt - c.enqueuedAt);
      const expected = policy === 'adaptive' ? 0.11 : 1.11; // 100 + 10 µs of batch, and fixed's 1000 µs of delay
      for (const latency of latencies) assert.ok(Math.abs(latency - expected) < 1e-9, `${policy}: ${latency} ms, not ${expected}`);
      assert.equal(clock.pendingImmediates, 0, `${policy}: polling`);
    }
  });

  it('burst: batches fill while the worker cannot keep up one row at a time, and no call waits past the bound', async () => {
    const { clock, executor, arrivals } = setup('adaptive', 500);
    await arrivals(20, 2); // quiet: trains the cost fit, every batch one row
    assert.ok(executor.batches.every((b) => b.rows === 1));
    const before = executor.batches.length;
    // A burst: a call every 20 µs (0.05 rows/µs). One-row batches (110 µs) would need 5.5 workers.
    const burst = await arrivals(400, 0.02);
    await clock.advance(5);
    const sizes = executor.batches.slice(before).map((b) => b.rows);
    const mean = sizes.reduce((a, b) => a + b, 0) / sizes.length;
    // λ = 0.05 rows/µs, B = 100 µs: batches of ⌈λB⌉ = 5 rows at least.
    assert.ok(mean >= 5, `mean batch in the burst ${mean.toFixed(1)} rows: ${sizes.join(' ')}`);
    for (const call of burst) {
      assert.equal(call.error, null);
      // Queue wait (up to the 500 µs bound, or a busy worker's batch) plus its own batch (≤ 100 + 16 × 10 µs).
      assert.ok(call.answeredAt - call.enqueuedAt <= 0.5 + 0.26 + 0.26 + 1e-9, `answered in ${call.answeredAt - call.enqueuedAt} ms`);
    }
    // Quiet again: back to one call a batch, at once.
    const after = await arrivals(40, 5);
    for (const call of after.slice(-10)) assert.ok(Math.abs(call.answeredAt - call.enqueuedAt - 0.11) < 1e-9, `${call.answeredAt - call.enqueuedAt}`);
  });

  it('busy worker: the next batch is ready when the worker frees, which waits for nothing but the two hand-offs', async () => {
    const { clock, worker, batcher } = behindOneWorker();
    for (let i = 0; i < 20; i++) {
      batcher.enqueue(new Call(clock));
      await clock.advance(2);
    }
    const before = worker.batches.length;
    // A call every 25 µs for 40 ms: one-row batches would need 4.4 workers; batches of ~8 rows keep one just busy.
    for (let i = 0; i < 1600; i++) {
      batcher.enqueue(new Call(clock));
      await clock.advance(0.025);
    }
    await clock.advance(5);
    const busy = worker.batches.slice(before + 5, -5);
    const gaps = busy.slice(1).map((b, i) => (b.start - busy[i].end) * 1000);
    // Between two batches the worker waits for its result's trip back and the next batch's trip in, 80 µs, and no
    // more: the next batch is handed over by then, waiting in the pool for the result.
    const longer = gaps.filter((g) => g > 2 * HAND_OFF * 1000 + 1e-6);
    assert.ok(longer.length <= gaps.length / 20, `the worker waited longer than the hand-offs between ${longer.length} of ${gaps.length} batches: ${longer.slice(0, 8).map((g) => g.toFixed(0)).join(' ')} µs`);
    const mean = busy.reduce((n, b) => n + b.rows, 0) / busy.length;
    assert.ok(mean >= 4, `batches of ${mean.toFixed(1)} rows`);
  });

  it('overload: a batch queued behind a running one is costed from when the worker is free for it, not from its dispatch', async () => {
    const { clock, worker, batcher } = behindOneWorker();
    // A call every 5 µs for 10 ms, four times what one worker can take: every batch is full (16 rows) and handed
    // over while the one before it runs, so it waits a whole batch in the pool. What a batch costs once the worker
    // is free for it: 40 + 260 + 40 µs; from its dispatch, about twice that.
    for (let i = 0; i < 2000; i++) {
      batcher.enqueue(new Call(clock));
      await clock.advance(0.005);
    }
    assert.ok(worker.batches.slice(-20).every((b) => b.rows === 16));
    const predicted = batcher.adaptive!.predictUs(16);
    assert.ok(Math.abs(predicted - 340) < 17, `a full batch predicted at ${predicted.toFixed(0)} µs, not 340`);
    await clock.advance(100);
  });

  it('a deadline that cannot be met is refused with DEADLINE_EXCEEDED at once, before it costs compute', async () => {
    const { clock, executor, batcher, train } = setup('adaptive');
    await train(); // trained: a one-row batch takes 110 µs
    const runs = executor.batches.length;
    const tooSoon = new Call(clock, clock.now() + 0.08); // 80 µs: the batch alone takes 110
    const inTime = new Call(clock, clock.now() + 0.2);
    batcher.enqueue(tooSoon);
    batcher.enqueue(inTime);
    await clock.advance(0);
    assert.equal(tooSoon.error?.code, DEADLINE_EXCEEDED);
    assert.match(tooSoon.error?.message ?? '', /cannot be met/);
    assert.equal(tooSoon.answeredAt, tooSoon.enqueuedAt, 'not refused at once');
    await clock.advance(1);
    assert.equal(inTime.error, null);
    assert.equal(executor.batches.length, runs + 1);
    assert.equal(executor.batches[runs].rows, 1, 'the refused call was computed');
  });

  it('a deadline that the busy worker makes impossible is refused while queued, not at its deadline', async () => {
    const { clock, executor, batcher, train } = setup('adaptive');
    await train();
    // A batch of 16 rows: the worker is busy for 260 µs.
    for (let i = 0; i < 16; i++) batcher.enqueue(new Call(clock));
    await clock.advance(0);
    const late = new Call(clock, clock.now() + 0.3); // 300 µs: 260 of waiting + 110 of its own batch do not fit
    batcher.enqueue(late);
    await clock.advance(0);
    assert.equal(late.error?.code, DEADLINE_EXCEEDED);
    assert.ok(late.answeredAt < late.deadline - 0.2, `refused at ${late.answeredAt}, deadline ${late.deadline}`);
    await clock.advance(1);
    assert.ok(executor.batches.every((b) => b.rows <= 16));
  });

  it('a batch stops growing before a later row would make it miss the deadline of a call in it', async () => {
    const { clock, executor, batcher, train } = setup('adaptive', 0);
    await train();
    const runs = executor.batches.length;
    const urgent = new Call(clock, clock.now() + 0.16); // 160 µs: 100 + 10 × rows fits 5 rows, not 16
    batcher.enqueue(urgent);
    for (let i = 0; i < 15; i++) batcher.enqueue(new Call(clock));
    await clock.advance(2);
    assert.equal(urgent.error, null);
    assert.ok(urgent.answeredAt <= urgent.deadline, `answered ${urgent.answeredAt}, deadline ${urgent.deadline}`);
    assert.equal(executor.batches[runs].rows, 6, 'first batch size');
  });

  it('an early deadline behind later ones is not starved: it rides in the next batch, ahead of its turn', async () => {
    const { clock, executor, batcher, train } = setup('adaptive', 0);
    await train();
    const runs = executor.batches.length;
    // Busy worker; then 40 calls without deadlines, then one due in 700 µs. In turn it would ride in the third
    // batch after the busy one (each of 16 rows, 260 µs): ~1,040 µs.
    batcher.enqueue(new Call(clock));
    await clock.advance(0);
    const ahead = Array.from({ length: 40 }, () => new Call(clock));
    for (const call of ahead) batcher.enqueue(call);
    const early = new Call(clock, clock.now() + 0.7);
    batcher.enqueue(early);
    await clock.advance(5);
    assert.equal(early.error, null, `refused: ${early.error?.message}`);
    assert.ok(early.answeredAt <= early.deadline, `answered ${early.answeredAt}, deadline ${early.deadline}`);
    assert.ok(ahead.every((c) => c.error === null));
    assert.deepEqual(executor.batches.slice(runs).map((b) => b.rows).reduce((a, b) => a + b, 0), 42);
  });

  it('fixed: refuses nothing early (its deadline is only checked as it passes)', async () => {
    const { clock, batcher, arrivals } = setup('fixed', 0);
    await arrivals(20, 1);
    const tooSoon = new Call(clock, clock.now() + 0.08);
    batcher.enqueue(tooSoon);
    await clock.advance(1);
    assert.equal(tooSoon.error, null, 'fixed predicted a miss');
  });
});
