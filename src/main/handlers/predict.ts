// Unary Predict: admit, enqueue, answer once with the rows and the batch's figures in the trailers.
import { Metadata, status, type sendUnaryData, type ServerUnaryCall } from '@grpc/grpc-js';
import type { SpanContext } from '@opentelemetry/api';
import { performance } from 'node:perf_hooks';
import type { BatchFigures, BatchOutputs, BatchRequest } from '../../batching/batcher';
import type { ModelInstance } from '../../models/instance';
import { admit, route } from '../admission';
import { encodeResponse, type PredictRequest } from '../codec';
import { resourceExhausted, toServingError, unavailable, type ServingError } from '../errors';
import type { Telemetry } from '../telemetry';
import { clientDeadline, requestDeadline, SHUTTING_DOWN, type HandlerContext } from './context';

const METHOD = 'Predict';

class UnaryRequest implements BatchRequest {
  enqueuedAt = 0;
  queued = false;
  cancelled = false;
  readonly inputs: readonly Buffer[];
  readonly shapes = null;

  constructor(
    featureBytes: Buffer,
    readonly rows: number,
    readonly deadline: number,
    private readonly receivedAt: number,
    private readonly model: ModelInstance,
    private readonly callback: sendUnaryData<Buffer>,
    private readonly telemetry: Telemetry,
    readonly spanContext: SpanContext | undefined,
  ) {
    this.inputs = [featureBytes];
  }

  complete(outputs: BatchOutputs, firstRow: number, batch: BatchFigures): void {
    const queueUs = (batch.dispatchedAt - this.enqueuedAt) * 1000;
    const served = this.model.seed!.outputIndex;
    const rowBytes = outputs.rowBytes[served];
    const start = firstRow * rowBytes;
    const trailer = new Metadata();
    trailer.set('x-batch-rows', String(batch.rows));
    trailer.set('x-queue-us', String(Math.round(queueUs)));
    trailer.set('x-compute-us', String(Math.round(batch.computeUs)));
    const response = encodeResponse(outputs.bytes[served], start, start + this.rows * rowBytes, {
      latencyMs: batch.finishedAt - this.receivedAt,
      versionField: this.model.versionField,
      batchRows: batch.rows,
      queueUs,
      computeUs: batch.computeUs,
      error: null,
    });
    this.callback(null, response, trailer);
    this.telemetry.callEnded(METHOD, status.OK, performance.now() - this.receivedAt, '', this.spanContext, 1);
  }

  fail(error: ServingError): void {
    this.callback({ code: error.code, details: error.message });
    this.telemetry.callEnded(METHOD, error.code, performance.now() - this.receivedAt, error.message, this.spanContext, 1);
  }
}

export function predictHandler(context: HandlerContext) {
  const { models, telemetry } = context;
  const refuse = (error: unknown, callback: sendUnaryData<Buffer>, receivedAt: number, spanContext: SpanContext | undefined) => {
    const failure = toServingError(error, (cause) => telemetry.logUnexpected(METHOD, cause, spanContext));
    callback({ code: failure.code, details: failure.message });
    telemetry.callEnded(METHOD, failure.code, performance.now() - receivedAt, failure.message, spanContext, 1);
  };
  return (call: ServerUnaryCall<PredictRequest, Buffer>, callback: sendUnaryData<Buffer>) => {
    const receivedAt = performance.now();
    context.counters.predictCalls++;
    let rows: number;
    let model: ModelInstance;
    try {
      if (context.isDraining()) throw unavailable(SHUTTING_DOWN);
      model = route(call.request, models);
      rows = admit(call.request, model);
    } catch (error) {
      refuse(error, callback, receivedAt, telemetry.spanContextOf(call.metadata));
      return;
    }
    const deadline = requestDeadline(clientDeadline(call, receivedAt), receivedAt, context.requestTimeoutMs);
    const request = new UnaryRequest(
      call.request.featureBytes,
      rows,
      deadline,
      receivedAt,
      model,
      callback,
      telemetry,
      telemetry.spanContextOf(call.metadata),
    );
    // Routed and enqueued in one synchronous step: the version cannot begin to unload in between (instance.ts).
    const batcher = model.batcher;
    if (!batcher.enqueue(request)) {
      refuse(resourceExhausted(`queue full: ${batcher.queuedRowCount} rows queued, MAX_QUEUE_SIZE is ${batcher.maxQueueRows}`), callback, receivedAt, request.spanContext);
      return;
    }
    call.once('cancelled', () => batcher.cancel(request));
  };
}
