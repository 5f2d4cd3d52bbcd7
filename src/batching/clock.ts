// The batcher's view of time: a clock to read and the two ways it waits (a timer, and the end of the event-loop
// turn). It is injected so that tests drive time by hand (test/helpers/fake-clock.ts) instead of sleeping; the
// server uses systemClock.
import { performance } from 'node:perf_hooks';

/** What setTimer returns; the batcher only ever hands it back to clearTimer. */
export type TimerHandle = unknown;

export interface BatcherClock {
  /** Milliseconds on the performance.now() scale; the deadlines handed to the batcher are on the same scale. */
  now(): number;
  /** Calls `callback` once, `ms` milliseconds from now (at least 1, as setTimeout does). */
  setTimer(callback: () => void, ms: number): TimerHandle;
  clearTimer(handle: TimerHandle): void;
  /** Calls `callback` once, at the end of this event-loop turn, after the I/O read in it (setImmediate). */
  setImmediate(callback: () => void): void;
}

/** Node's own clock and timers. */
export const systemClock: BatcherClock = {
  now: () => performance.now(),
  setTimer: (callback, ms) => setTimeout(callback, ms),
  clearTimer: (handle) => clearTimeout(handle as NodeJS.Timeout),
  setImmediate: (callback) => {
    setImmediate(callback);
  },
};
