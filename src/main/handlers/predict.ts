// Unary Predict: admit, enqueue, answer once with the rows and the batch's figures in the trailers.
import { Metadata, type sendUnaryData, type ServerUnaryCall } from '@grpc/grpc-js';
import { performance } from 'node:perf_hooks';
import type { BatchRequest } from '../../batching/batcher';
import { admit } from '../admission';
import type { PredictRequest, PredictResponse } from '../codec';
import { resourceExhausted, toServingError, unavailable, type ServingError } from '../errors';
import { deadlineOf, SHUTTING_DOWN, type HandlerContext } from './context';

class UnaryRequest implements BatchRequest {
  enqueuedAt = 0;
  queued = false;
  cancelled = false;

  constructor(
    readonly features: Float32Array,
    readonly rows: number,
    readonly deadline: number,
    private readonly receivedAt: number,
    private readonly modelVersion: string,
    private readonly callback: sendUnaryData<PredictResponse>,
  ) {}

  complete(outputs: Float32Array, batchRows: number, queueUs: number, computeUs: number): void {
    const trailer = new Metadata();
    trailer.set('x-batch-rows', String(batchRows));
    trailer.set('x-queue-us', String(Math.round(queueUs)));
    trailer.set('x-compute-us', String(Math.round(computeUs)));
    const response: PredictResponse = {
      predictions: outputs.slice(), // outputs is a view into a slab that is reused once we return
      latencyMs: performance.now() - this.receivedAt,
      modelVersion: this.modelVersion,
      batchRows,
      queueUs,
      computeUs,
      error: null,
    };
    this.callback(null, response, trailer);
  }

  fail(error: ServingError): void {
    this.callback({ code: error.code, details: error.message });
  }
}

export function predictHandler(context: HandlerContext) {
  const { batcher, model } = context;
  return (call: ServerUnaryCall<PredictRequest, PredictResponse>, callback: sendUnaryData<PredictResponse>) => {
    const receivedAt = performance.now();
    let rows: number;
    try {
      if (context.isDraining()) throw unavailable(SHUTTING_DOWN);
      rows = admit(call.request, model);
    } catch (error) {
      const failure = toServingError(error);
      callback({ code: failure.code, details: failure.message });
      return;
    }
    const deadline = deadlineOf(call, receivedAt, context.requestTimeoutMs);
    const request = new UnaryRequest(call.request.features, rows, deadline, receivedAt, model.version, callback);
    if (!batcher.enqueue(request)) {
      const failure = resourceExhausted(
        `queue full: ${batcher.queuedRowCount} rows queued, MAX_QUEUE_SIZE is ${context.batcher.maxQueueRows}`,
      );
      callback({ code: failure.code, details: failure.message });
      return;
    }
    call.once('cancelled', () => batcher.cancel(request));
  };
}
