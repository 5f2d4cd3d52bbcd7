// Timers finer than setTimeout's millisecond, without spinning the event loop. Node's timers round up to whole
// milliseconds, and polling with setImmediate (what the batcher did for waits under 1 ms) keeps a core busy for the
// whole wait. Here one thread per process sleeps in Atomics.wait for the earliest armed delay and posts a message
// when it runs out; the main thread sleeps in the event loop meanwhile. The wake-up costs one message (tens of µs,
// plus the kernel's timer slack, 50 µs by default on Linux): the timer is late by that, never early.
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { MessageChannel, type MessagePort, Worker } from 'node:worker_threads';
import { DELAY_SLOT, GENERATION_SLOT, type FineTimerShared } from './fine-timer-protocol';

interface Pending {
  due: number;
  callback: () => void;
}

/** A timer set through setFine(); what clearFine() takes. */
export type FineTimerHandle = Pending;

class FineTimers {
  private worker: Worker | null = null;
  get thread(): Worker | null {
    return this.worker;
  }
  /** Where the thread's wake-ups arrive; referenced (keeps the process alive, as setTimeout) only while one is due. */
  private port: MessagePort | null = null;
  private readonly generation: Int32Array;
  private readonly delayMs: Float64Array;
  /** Pending timers; a few at most (one per batcher), so an array scanned in full. */
  private pending: Pending[] = [];
  /** The due time (performance.now()) the thread is armed for; Infinity: not armed. */
  private armedDue = Infinity;

  constructor() {
    this.generation = new Int32Array(new SharedArrayBuffer(4));
    this.delayMs = new Float64Array(new SharedArrayBuffer(8));
    this.delayMs[DELAY_SLOT] = -1;
  }

  set(callback: () => void, ms: number): FineTimerHandle {
    const timer = { due: performance.now() + ms, callback };
    this.pending.push(timer);
    this.port?.ref();
    if (timer.due < this.armedDue) this.arm(timer.due);
    return timer;
  }

  clear(handle: FineTimerHandle): void {
    const at = this.pending.indexOf(handle);
    if (at >= 0) this.pending.splice(at, 1);
    if (this.pending.length === 0) this.port?.unref();
    // The thread stays armed: its message finds nothing due and re-arms for what is left (one wasted wake-up).
  }

  private arm(due: number): void {
    this.armedDue = due;
    this.start();
    // Relative, read by the thread as it wakes to this arming: the timer is late by that wake-up, never early.
    this.delayMs[DELAY_SLOT] = Math.max(0, due - performance.now());
    Atomics.add(this.generation, GENERATION_SLOT, 1);
    Atomics.notify(this.generation, GENERATION_SLOT);
  }

  /** Starts the thread (tens of ms) unless it runs: call it ahead of the first wait, or that wait is late by it. */
  start(): void {
    if (this.worker !== null) return;
    // The wake-ups come on a port of their own: a Worker that has posted to its parent port and then blocks for
    // good keeps the process from exiting, even unreferenced (Node 20); a port of our own can be unreferenced.
    const { port1, port2 } = new MessageChannel();
    const shared: FineTimerShared = { control: this.generation.buffer as SharedArrayBuffer, delay: this.delayMs.buffer as SharedArrayBuffer, port: port2 };
    const worker = new Worker(path.join(__dirname, 'fine-timer-thread.js'), { workerData: shared, transferList: [port2] });
    this.worker = worker;
    worker.unref();
    worker.on('error', () => {}); // its exit follows
    worker.on('exit', () => {
      if (this.worker !== worker) return;
      // Should the thread die, the timers it was armed for would never fire: another thread is armed for them.
      this.worker = null;
      this.port?.close();
      this.port = null;
      this.armedDue = Infinity;
      let next = Infinity;
      for (const timer of this.pending) next = Math.min(next, timer.due);
      if (next !== Infinity) this.arm(next);
    });
    port1.on('message', this.onFired);
    if (this.pending.length === 0) port1.unref();
    this.port = port1;
  }

  private readonly onFired = (generation: number): void => {
    if (generation !== Atomics.load(this.generation, GENERATION_SLOT)) return; // re-armed since: a stale wake-up
    this.armedDue = Infinity;
    const now = performance.now();
    let next = Infinity;
    const due: Pending[] = [];
    const left: Pending[] = [];
    for (const timer of this.pending) {
      if (timer.due <= now) due.push(timer);
      else {
        left.push(timer);
        if (timer.due < next) next = timer.due;
      }
    }
    this.pending = left;
    if (next !== Infinity) this.arm(next);
    else this.port?.unref();
    if (due.length > 1) due.sort((a, b) => a.due - b.due); // several fell due in one late wake-up: in due order
    for (const timer of due) timer.callback();
  };
}

let timers: FineTimers | null = null;

/** Starts the timer's thread now, so that the first sub-millisecond wait is not late by its start. */
export function prepareFine(): void {
  timers ??= new FineTimers();
  timers.start();
}

/** Calls `callback` once, `ms` (any fraction of a millisecond) from now. */
export function setFine(callback: () => void, ms: number): FineTimerHandle {
  timers ??= new FineTimers();
  return timers.set(callback, ms);
}

export function clearFine(handle: FineTimerHandle): void {
  timers?.clear(handle);
}

/** The timer's thread, if started: for tests that make it die. */
export function fineTimerThread(): Worker | null {
  return timers?.thread ?? null;
}
