// The shared memory a batch travels in. One slab per batch that may be in flight; each slab is one
// SharedArrayBuffer holding a region per input tensor (maxBatchRows x that input's row bytes) and a region per
// output tensor whose size is known in advance, back to back. Slabs are made once at startup and reused for every
// batch. (An output whose size is not known in advance, a variable dimension or strings, comes back in the task's
// result instead.)
//
// Who owns a slab, at each stage (only the owner reads or writes it):
//   free       main thread, in the batcher's free list
//   filling    main thread: the batcher copies each request's rows into the input regions, back to back
//   computing  the worker that runs the batch: it reads the input rows and writes the output rows; the main
//              thread holds only the slab's index until the worker's task resolves
//   slicing    main thread: each request's output rows are copied out to its answer
//   free       again, as soon as slicing ends
// The hand-offs are piscina's task message (main -> worker) and the task's result (worker -> main); both go
// through postMessage, which orders the memory writes before them.
//
// This module is shared by both sides of the pool; it imports nothing from either.

export interface SlabLayout {
  maxBatchRows: number;
  /** Bytes of one row of each input (of one request's tensor, for a model that does not batch), in model order. */
  inputRowBytes: readonly number[];
  /** Likewise for each output; 0 for an output that is not in the slab (it comes back in the task's result). */
  outputRowBytes: readonly number[];
}

export interface SlabViews {
  /** Each input's region, as bytes. */
  inputs: Buffer[];
  /** Each output's region, as bytes (empty for an output not in the slab). */
  outputs: Buffer[];
}

export function slabBytes(layout: SlabLayout): number {
  let rowBytes = 0;
  for (const bytes of layout.inputRowBytes) rowBytes += bytes;
  for (const bytes of layout.outputRowBytes) rowBytes += bytes;
  return layout.maxBatchRows * rowBytes;
}

export function createSlab(layout: SlabLayout): SharedArrayBuffer {
  return new SharedArrayBuffer(slabBytes(layout));
}

/** Views of a slab's regions; made once per slab per thread, never per batch. */
export function slabViews(slab: SharedArrayBuffer, layout: SlabLayout): SlabViews {
  let offset = 0;
  const region = (rowBytes: number) => {
    const bytes = layout.maxBatchRows * rowBytes;
    const view = Buffer.from(slab, offset, bytes);
    offset += bytes;
    return view;
  };
  const inputs = layout.inputRowBytes.map(region);
  const outputs = layout.outputRowBytes.map(region);
  return { inputs, outputs };
}

// Claims: one Int32 per slab, in a SharedArrayBuffer of its own, that keeps a worker which was given up on (hung,
// timed out) from touching a slab that the main thread has since reused. Before each batch the main thread stores a
// fresh ticket (a positive number) in the slab's claim word and sends the ticket with the task. The worker swaps
// ticket -> SLAB_CLAIMED before it reads the input rows and before it writes the output rows, and swaps back after.
// To give a batch up, the main thread swaps ticket -> SLAB_REVOKED; if the worker holds the claim at that moment
// (a copy of a few microseconds), the main thread waits for it to end, without blocking its event loop, but only
// for so long: a worker that died or hung inside its claim never ends it, and the slab is then set aside for good.
// Once revoked, the worker's swaps fail and it leaves the slab alone, so the slab can be reused at once.
export const SLAB_CLAIMED = -1;
export const SLAB_REVOKED = -2;

/**
 * How long a revoke waits for a worker to end its claim. A claim lasts one copy of a batch's rows (microseconds,
 * milliseconds for the widest models); a claim still held after this long belongs to a worker that died or hung.
 */
export const CLAIM_RELEASE_WAIT_MS = 1000;

export function createClaims(slabCount: number): SharedArrayBuffer {
  return new SharedArrayBuffer(slabCount * Int32Array.BYTES_PER_ELEMENT);
}

/** Worker side: takes the slab for one copy; false if the batch was given up on. */
export function claimSlab(claims: Int32Array, slab: number, ticket: number): boolean {
  return Atomics.compareExchange(claims, slab, ticket, SLAB_CLAIMED) === ticket;
}

/** Worker side: ends a claim taken by claimSlab. */
export function unclaimSlab(claims: Int32Array, slab: number, ticket: number): void {
  Atomics.store(claims, slab, ticket);
  Atomics.notify(claims, slab);
}

// Starts: when a worker began each slab's current batch. WORKER_TIMEOUT_MS runs from there, not from the hand-off:
// a batch can wait in piscina's queue, or in a worker that is still opening its session (piscina hands tasks to its
// first workers before they are ready), and a worker must never be given up on, so terminated, while it starts.
// Per slab, the worker writes the time (on the process's monotonic clock) and then the batch's ticket with an
// Atomics store, which publishes the time with it; the main thread reads the ticket first.
export interface TaskStarts {
  times: Float64Array;
  tickets: Int32Array;
}

const START_BYTES = Float64Array.BYTES_PER_ELEMENT + Int32Array.BYTES_PER_ELEMENT;

export function createStarts(slabCount: number): SharedArrayBuffer {
  return new SharedArrayBuffer(slabCount * START_BYTES);
}

export function startsView(buffer: SharedArrayBuffer): TaskStarts {
  const slabCount = buffer.byteLength / START_BYTES;
  return { times: new Float64Array(buffer, 0, slabCount), tickets: new Int32Array(buffer, slabCount * Float64Array.BYTES_PER_ELEMENT, slabCount) };
}

/** Milliseconds on the process's monotonic clock: one clock for every thread (each thread's performance.now() counts from its own start). */
export const monotonicMs = (): number => Number(process.hrtime.bigint()) / 1e6;

/** Worker side: the batch holding `ticket` begins now. */
export function markStarted(starts: TaskStarts, slab: number, ticket: number): void {
  starts.times[slab] = monotonicMs();
  Atomics.store(starts.tickets, slab, ticket);
}

/** Main side: when the batch holding `ticket` began on its worker (monotonicMs), or undefined if it has not. */
export function startedAt(starts: TaskStarts, slab: number, ticket: number): number | undefined {
  return Atomics.load(starts.tickets, slab) === ticket ? starts.times[slab] : undefined;
}

// Worker slots: one Int32 per worker of a pool, holding the thread id of the worker in it (0: free). A starting
// worker takes the first free slot and keeps its index as its id: the id picks its GPU under CUDA, so the worker
// that replaces a failed one (its slot freed by the pool once the old one is gone) runs on the same GPU, and ids
// stay within 0..WORKERS-1.
export function createWorkerSlots(workers: number): SharedArrayBuffer {
  return new SharedArrayBuffer(workers * Int32Array.BYTES_PER_ELEMENT);
}

/** Worker side: takes a free slot for thread `threadId`; its index. */
export function takeWorkerSlot(buffer: SharedArrayBuffer, threadId: number): number {
  const slots = new Int32Array(buffer);
  for (let attempt = 0; ; attempt++) {
    for (let i = 0; i < slots.length; i++) if (Atomics.compareExchange(slots, i, 0, threadId) === 0) return i;
    // Every slot taken: the worker this one replaces is still being let go of (the pool frees its slot as piscina
    // destroys it). Wait a little for that; after a second, share a slot rather than never start.
    if (attempt >= 100) return threadId % slots.length;
    Atomics.wait(slots, 0, slots[0], 10);
  }
}

/** Main side: frees the slots of workers that are gone (`gone(threadId)`). */
export function releaseWorkerSlots(buffer: SharedArrayBuffer, gone: (threadId: number) => boolean): void {
  const slots = new Int32Array(buffer);
  for (let i = 0; i < slots.length; i++) {
    const threadId = Atomics.load(slots, i);
    if (threadId !== 0 && gone(threadId)) Atomics.compareExchange(slots, i, threadId, 0);
  }
  Atomics.notify(slots, 0);
}

// Atomics.waitAsync is in Node since 16; TypeScript declares it only from lib ES2024.
type WaitAsync = (
  array: Int32Array,
  index: number,
  value: number,
  timeoutMs: number,
) => { async: false; value: 'not-equal' | 'timed-out' } | { async: true; value: Promise<'ok' | 'timed-out'> };
const waitAsync = (Atomics as unknown as { waitAsync: WaitAsync }).waitAsync;

/**
 * Main side: gives up on the batch holding `ticket`. Resolves true once no worker will touch the slab for it (it may
 * be reused); false when a worker still held the claim after `waitMs`: that slab must never be used again. Never
 * blocks the thread.
 */
export async function revokeSlab(
  claims: Int32Array,
  slab: number,
  ticket: number,
  waitMs = CLAIM_RELEASE_WAIT_MS,
): Promise<boolean> {
  const giveUpAt = performance.now() + waitMs;
  for (;;) {
    if (Atomics.compareExchange(claims, slab, ticket, SLAB_REVOKED) !== SLAB_CLAIMED) return true;
    const left = giveUpAt - performance.now();
    if (left <= 0) return false;
    const waiting = waitAsync(claims, slab, SLAB_CLAIMED, left);
    if (!waiting.async) continue;
    // A pending waitAsync does not keep Node's event loop alive, and its timeout fires from a task that Node runs
    // only while the loop is alive; this timer keeps it alive until a little after the timeout.
    const keepAlive = setTimeout(() => {}, left + 100);
    await waiting.value;
    clearTimeout(keepAlive);
  }
}
