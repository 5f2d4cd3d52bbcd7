import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { decide, type BatchPolicy } from '../src/batching/policy';

const policy: BatchPolicy = { maxBatchRows: 8, maxQueueDelayUs: 500, preferredBatchSizes: [] };

/** A fake clock: requests arrive at given microseconds; the scheduler asks the policy at `now`. */
class FakeClock {
  now = 0;
  private arrivals: Array<{ at: number; rows: number }> = [];
  arrive(rows: number): void {
    this.arrivals.push({ at: this.now, rows });
  }
  advance(us: number): void {
    this.now += us;
  }
  ask(p: BatchPolicy = policy) {
    const queued = this.arrivals.reduce((sum, a) => sum + a.rows, 0);
    const oldest = this.arrivals.length > 0 ? this.now - this.arrivals[0].at : 0;
    return decide(queued, oldest, p);
  }
}

describe('batch policy', () => {
  it('does nothing with an empty queue', () => {
    assert.deepEqual(decide(0, 0, policy), { dispatch: false, waitUs: Infinity });
  });

  it('holds a lone request for the queue delay, then dispatches it', () => {
    const clock = new FakeClock();
    clock.arrive(1);
    assert.deepEqual(clock.ask(), { dispatch: false, waitUs: 500 });
    clock.advance(200);
    assert.deepEqual(clock.ask(), { dispatch: false, waitUs: 300 });
    clock.advance(300);
    assert.deepEqual(clock.ask(), { dispatch: true, rows: 1 });
  });

  it('the wait counts from the oldest request, not the newest', () => {
    const clock = new FakeClock();
    clock.arrive(1);
    clock.advance(400);
    clock.arrive(2);
    assert.deepEqual(clock.ask(), { dispatch: false, waitUs: 100 });
    clock.advance(100);
    assert.deepEqual(clock.ask(), { dispatch: true, rows: 3 });
  });

  it('dispatches a full batch at once, capped at the maximum', () => {
    const clock = new FakeClock();
    clock.arrive(5);
    clock.arrive(5);
    assert.deepEqual(clock.ask(), { dispatch: true, rows: 8 });
  });

  it('dispatches at once with a zero queue delay', () => {
    assert.deepEqual(decide(3, 0, { ...policy, maxQueueDelayUs: 0 }), { dispatch: true, rows: 3 });
  });

  it('dispatches the largest preferred size that can be formed, without waiting', () => {
    const preferred = { ...policy, preferredBatchSizes: [2, 4] };
    assert.deepEqual(decide(1, 0, preferred), { dispatch: false, waitUs: 500 });
    assert.deepEqual(decide(2, 0, preferred), { dispatch: true, rows: 2 });
    assert.deepEqual(decide(3, 0, preferred), { dispatch: true, rows: 2 });
    assert.deepEqual(decide(5, 0, preferred), { dispatch: true, rows: 4 });
    assert.deepEqual(decide(9, 0, preferred), { dispatch: true, rows: 8 });
  });

  it('with preferred sizes unreachable, still dispatches everything when the delay runs out', () => {
    const preferred = { ...policy, preferredBatchSizes: [4] };
    assert.deepEqual(decide(3, 499, preferred), { dispatch: false, waitUs: 1 });
    assert.deepEqual(decide(3, 500, preferred), { dispatch: true, rows: 3 });
  });
});
