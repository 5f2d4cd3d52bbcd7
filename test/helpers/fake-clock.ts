// A BatcherClock whose time moves only when a test says so. Timers fire, and end-of-turn callbacks (setImmediate)
// run, inside advance(), in the order Node would run them; promise callbacks are flushed between each, so that an
// executor's answer and what the batcher does with it happen within the same advance().
import type { BatcherClock, TimerHandle } from '../../src/batching/clock';

interface FakeTimer {
  readonly due: number;
  /** Order of setting, to fire timers that fall due together in that order, as Node does. */
  readonly order: number;
  readonly callback: () => void;
}

/**
 * Event-loop turns run at one instant before a callback that keeps queuing itself again is taken to be polling
 * for time to pass; the rest waits for the next advance(). (The batcher no longer polls: a test can assert so.)
 */
const TURNS_PER_INSTANT = 100;

/** Promise hops flushed after each callback: more than any chain in the batcher and its test executors. */
const MICROTASK_HOPS = 50;

export async function flushMicrotasks(): Promise<void> {
  for (let i = 0; i < MICROTASK_HOPS; i++) await Promise.resolve();
}

export class FakeClock implements BatcherClock {
  private time: number;
  private timers: FakeTimer[] = [];
  private immediates: Array<() => void> = [];
  private timersSet = 0;

  constructor(start = 0) {
    this.time = start;
  }

  now(): number {
    return this.time;
  }

  setTimer(callback: () => void, ms: number): TimerHandle {
    // As the system clock: any fraction of a millisecond (its fine timer), never less than no time at all.
    const timer: FakeTimer = { due: this.time + Math.max(0, ms), order: this.timersSet++, callback };
    this.timers.push(timer);
    return timer;
  }

  clearTimer(handle: TimerHandle): void {
    this.timers = this.timers.filter((timer) => timer !== handle);
  }

  setImmediate(callback: () => void): void {
    this.immediates.push(callback);
  }

  /** Timers set and not yet fired or cleared. */
  get pendingTimers(): number {
    return this.timers.length;
  }

  /** End-of-turn callbacks queued and not yet run. */
  get pendingImmediates(): number {
    return this.immediates.length;
  }

  /**
   * Ends the current turn, then moves time forward by `ms`, stopping at each timer that falls due on the way (in
   * due order) to fire it and run the turns that follow; at the end the time is exactly `ms` later. advance(0)
   * just lets the current instant's turns run.
   */
  async advance(ms: number): Promise<void> {
    if (!(ms >= 0)) throw new RangeError(`advance(${ms}): time only moves forward`);
    const until = this.time + ms;
    await this.runTurns();
    for (let timer = this.nextTimerBy(until); timer !== undefined; timer = this.nextTimerBy(until)) {
      this.timers.splice(this.timers.indexOf(timer), 1);
      this.time = timer.due;
      timer.callback();
      await this.runTurns();
    }
    this.time = until;
    await this.runTurns();
  }

  private nextTimerBy(until: number): FakeTimer | undefined {
    let next: FakeTimer | undefined;
    for (const timer of this.timers) {
      if (timer.due > until) continue;
      if (next === undefined || timer.due < next.due || (timer.due === next.due && timer.order < next.order)) next = timer;
    }
    return next;
  }

  /**
   * Runs event-loop turns at this instant: each runs the end-of-turn callbacks queued before it (those they queue
   * run in the next turn, as in Node), flushing promise callbacks after each.
   */
  private async runTurns(): Promise<void> {
    await flushMicrotasks();
    for (let turn = 0; turn < TURNS_PER_INSTANT && this.immediates.length > 0; turn++) {
      const due = this.immediates;
      this.immediates = [];
      for (const callback of due) {
        callback();
        await flushMicrotasks();
      }
    }
  }
}
