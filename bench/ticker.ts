// The open loop's clock, in a worker thread. The main thread's timers wake at millisecond boundaries, so a request
// due at t went out up to ~1 ms late, and that lateness (counted in its latency, which runs from the intended time)
// was the largest part of every open-loop latency below a few milliseconds. This thread sleeps in Atomics.wait,
// which takes fractional milliseconds, and posts each batch of due arrival times to the main thread, whose event
// loop wakes for the message at once. Sleeping is not spinning: it costs the cores the server needs nothing.
import { parentPort, workerData } from 'node:worker_threads';
import { performance } from 'node:perf_hooks';

export interface TickerOptions {
  /** Arrivals a second. */
  rate: number;
  /** Exponential gaps (Poisson) rather than constant ones. */
  poisson: boolean;
  /** Shortest sleep, in ms: at high rates arrivals go out in groups this far apart at most, not one message each. */
  minSleepMs: number;
  /** A flag word the main thread sets to 1 to stop the ticker. */
  stop: Int32Array;
  /**
   * On/off bursts: arrivals only during `onMs` out of every `onMs + offMs`, at the rate that keeps the mean `rate`
   * (so `(onMs + offMs) / onMs` times it while on), none while off.
   */
  bursts?: Bursts;
}

export interface Bursts {
  onMs: number;
  offMs: number;
}

/** Arrival times are posted as absolute ms (`performance.timeOrigin` differs between threads). */
export type TickerMessage = Float64Array;

function run({ rate, poisson, minSleepMs, stop, bursts }: TickerOptions): void {
  // Arrivals are drawn on a clock that runs only while a burst is on (all the time without bursts), at the rate
  // while on, and placed on the real clock: on-time v falls in burst floor(v / onMs), onMs + offMs apart.
  const gap = bursts === undefined ? 1000 / rate : (1000 / rate) * (bursts.onMs / (bursts.onMs + bursts.offMs));
  const real = bursts === undefined
    ? (v: number) => v
    : (v: number) => Math.floor(v / bursts.onMs) * (bursts.onMs + bursts.offMs) + (v % bursts.onMs);
  const origin = performance.timeOrigin;
  const start = performance.now();
  let virtual = 0;
  let next = start;
  const due: number[] = [];
  while (Atomics.load(stop, 0) === 0) {
    const now = performance.now();
    while (next <= now) {
      due.push(origin + next);
      virtual += poisson ? -Math.log(1 - Math.random()) * gap : gap;
      next = start + real(virtual);
    }
    if (due.length > 0) {
      parentPort!.postMessage(Float64Array.from(due));
      due.length = 0;
    }
    Atomics.wait(stop, 0, 0, Math.max(minSleepMs, next - performance.now()));
  }
}

run(workerData as TickerOptions);
