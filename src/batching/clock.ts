// The batcher's view of time: a clock to read and the two ways it waits (a timer, and the end of the event-loop
// turn). It is injected so that tests drive time by hand (test/helpers/fake-clock.ts) instead of sleeping; the
// server uses systemClock.
import { performance } from 'node:perf_hooks';
import { clearFine, prepareFine, setFine, type FineTimerHandle } from './fine-timer';

/** What setTimer returns; the batcher only ever hands it back to clearTimer. */
export type TimerHandle = unknown;

export interface BatcherClock {
  /** Milliseconds on the performance.now() scale; the deadlines handed to the batcher are on the same scale. */
  now(): number;
  /**
   * Calls `callback` once, `ms` milliseconds from now, fractions included: never early, and late by no more than a
   * wake-up. It must not spin the event loop while it waits.
   */
  setTimer(callback: () => void, ms: number): TimerHandle;
  clearTimer(handle: TimerHandle): void;
  /** Calls `callback` once, at the end of this event-loop turn, after the I/O read in it (setImmediate). */
  setImmediate(callback: () => void): void;
  /** Gets ready for sub-millisecond timers (the system clock starts its timer thread); called once per batcher. */
  prepare?(): void;
}

/** setTimeout waits whole milliseconds (and rounds down); below this, the fine timer's thread waits instead. */
const NODE_TIMER_MIN_MS = 1;

/** A timer of either kind: Node's for whole milliseconds, the fine timer's below. */
type SystemTimer = { fine: true; handle: FineTimerHandle } | { fine: false; handle: NodeJS.Timeout };

/** Node's own clock and timers, with fine-timer.ts for waits under a millisecond. */
export const systemClock: BatcherClock = {
  now: () => performance.now(),
  setTimer: (callback, ms): SystemTimer =>
    ms < NODE_TIMER_MIN_MS ? { fine: true, handle: setFine(callback, ms) } : { fine: false, handle: setTimeout(callback, ms) },
  clearTimer: (timer) => {
    const t = timer as SystemTimer;
    if (t.fine) clearFine(t.handle);
    else clearTimeout(t.handle);
  },
  setImmediate: (callback) => {
    setImmediate(callback);
  },
  prepare: prepareFine,
};
