// The piscina worker entry: builds this worker's batch handler (batch-handler.ts) and retires the worker on an
// unexpected fault. This file imports nothing from the main thread's side.
import { workerData } from 'node:worker_threads';
import { retireOnFault, startWorker, type BatchHandler } from './batch-handler';
import type { WorkerInit } from './protocol';

async function start(init: WorkerInit): Promise<BatchHandler> {
  const { handler, identity, starts } = await startWorker(init);
  return retireOnFault(handler, identity, starts);
}

export default start(workerData as WorkerInit);
