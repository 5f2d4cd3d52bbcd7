// The fine timer's thread (fine-timer.ts): sleeps in Atomics.wait until the main thread arms it, then for the armed
// delay, and posts the armed generation back when the delay runs out. It imports nothing from the main thread.
import { workerData } from 'node:worker_threads';
import { DELAY_SLOT, GENERATION_SLOT, type FineTimerShared } from './fine-timer-protocol';

const { control, delay, port } = workerData as FineTimerShared;
const generation = new Int32Array(control);
const delayMs = new Float64Array(delay);

for (;;) {
  // The generation is read before the delay: the main thread writes the delay first and then bumps the generation,
  // so a delay read here is at least as new as `armed`, and a newer arming makes the wait below return at once
  // ('not-equal') instead of sleeping on a stale delay.
  const armed = Atomics.load(generation, GENERATION_SLOT);
  const ms = delayMs[DELAY_SLOT];
  if (ms < 0) {
    Atomics.wait(generation, GENERATION_SLOT, armed);
  } else if (Atomics.wait(generation, GENERATION_SLOT, armed, ms) === 'timed-out') {
    port.postMessage(armed);
    // Fired: sleep until armed again.
    Atomics.wait(generation, GENERATION_SLOT, armed);
  }
}
