// The memory the fine timer (fine-timer.ts) shares with its thread (fine-timer-thread.ts).
import type { MessagePort } from 'node:worker_threads';

export interface FineTimerShared {
  /** The thread posts the armed generation here when its delay runs out. */
  port: MessagePort;
  /** Int32 slots: the generation, bumped at every arming. */
  control: SharedArrayBuffer;
  /** Float64 slots: the armed delay in ms, or -1 for none. */
  delay: SharedArrayBuffer;
}

export const GENERATION_SLOT = 0;
export const DELAY_SLOT = 0;
