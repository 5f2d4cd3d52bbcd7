// ModelInfer and ModelStreamInfer: a v2 request is routed to a version, admitted (tensors.ts), and enqueued into
// the same batcher as ModelService's requests to that version (the two APIs share batches). Answers carry
// raw_output_contents, as Triton's do: one entry per requested output, encoded (codec.ts) straight from the batch's
// memory while complete() runs, so the calls' serializers pass the bytes through.
import { status, type sendUnaryData, type ServerUnaryCall } from '@grpc/grpc-js';
import type { SpanContext } from '@opentelemetry/api';
import { performance } from 'node:perf_hooks';
import type { BatchFigures, BatchOutputs, BatchRequest } from '../../batching/batcher';
import type { ModelInstance } from '../../models/instance';
import { elementCount } from '../../models/tensor';
import { resourceExhausted, toServingError, unavailable, type ServingError } from '../errors';
import { clientDeadline, requestDeadline, SHUTTING_DOWN, type HandlerContext } from '../handlers/context';
import { streamHandler, type Drainable, type StreamProtocol } from '../stream-session';
import { INFERENCE_SERVICE } from '../telemetry';
import { encodeInferResponse, encodeStreamInferResponse } from './codec';
import { admitInfer, type AdmittedInfer, type ModelInferRequest } from './tensors';

/** A ModelInferResponse as the handlers build it for codec.ts to encode. */
export interface ModelInferResponse {
  model_name: string;
  model_version: string;
  id: string;
  outputs: Array<{ name: string; datatype: string; shape: number[] }>;
  raw_output_contents: Buffer[];
}

/**
 * The answer to one request: its rows of each requested output, as views into the batch's memory, which is reused
 * once complete() returns (batcher.ts): encode it before then.
 */
export function inferResponse(
  model: ModelInstance,
  id: string,
  requested: readonly number[],
  outputs: BatchOutputs,
  firstRow: number,
  rows: number,
): ModelInferResponse {
  const { signature } = model;
  const response: ModelInferResponse = { model_name: model.name, model_version: model.version, id, outputs: [], raw_output_contents: [] };
  for (const index of requested) {
    const spec = signature.outputs[index];
    const shape = outputs.shapes[index];
    const bytes = outputs.bytes[index];
    if (!signature.batches) {
      // A model that does not batch answers one request per batch: the whole tensor is its own.
      response.outputs.push({ name: spec.name, datatype: spec.datatype, shape: [...shape] });
      response.raw_output_contents.push(bytes);
      continue;
    }
    // This request's rows only. Strings have no fixed row size (a model whose inputs are fixed batches even when an
    // output is BYTES): its rows are found by their elements' lengths.
    const contents = spec.datatype === 'BYTES'
      ? stringRows(bytes, shape, firstRow, rows)
      : bytes.subarray(firstRow * outputs.rowBytes[index], (firstRow + rows) * outputs.rowBytes[index]);
    response.outputs.push({ name: spec.name, datatype: spec.datatype, shape: [rows, ...shape.slice(1)] });
    response.raw_output_contents.push(contents);
  }
  return response;
}

/** Where each row of a batch's BYTES output starts, found once per batch (its buffer), not once per request. */
const rowStarts = new WeakMap<Buffer, Uint32Array>();

/**
 * Rows [firstRow, firstRow + rows) of a BYTES tensor of `shape` in its raw form (each element a 4-byte
 * little-endian length, then its bytes).
 */
function stringRows(bytes: Buffer, shape: readonly number[], firstRow: number, rows: number): Buffer {
  let starts = rowStarts.get(bytes);
  if (starts === undefined) {
    const perRow = elementCount(shape.slice(1));
    starts = new Uint32Array(shape[0] + 1);
    let at = 0;
    for (let row = 0; row < shape[0]; row++) {
      starts[row] = at;
      for (let element = 0; element < perRow; element++) at += 4 + bytes.readUInt32LE(at);
    }
    starts[shape[0]] = at;
    rowStarts.set(bytes, starts);
  }
  return bytes.subarray(starts[firstRow], starts[firstRow + rows]);
}

const METHOD = 'ModelInfer';

class InferRequest implements BatchRequest {
  enqueuedAt = 0;
  queued = false;
  cancelled = false;
  readonly inputs: readonly Buffer[];
  readonly rows: number;
  readonly shapes: number[][] | null;

  constructor(
    private readonly model: ModelInstance,
    private readonly admitted: AdmittedInfer,
    private readonly id: string,
    readonly deadline: number,
    private readonly receivedAt: number,
    private readonly callback: sendUnaryData<Buffer>,
    private readonly context: HandlerContext,
    readonly spanContext: SpanContext | undefined,
  ) {
    this.inputs = admitted.inputs;
    this.rows = admitted.rows;
    this.shapes = admitted.shapes;
  }

  complete(outputs: BatchOutputs, firstRow: number, _batch: BatchFigures): void {
    this.callback(null, encodeInferResponse(inferResponse(this.model, this.id, this.admitted.outputs, outputs, firstRow, this.rows)));
    this.context.telemetry.callEnded(METHOD, status.OK, performance.now() - this.receivedAt, '', this.spanContext, 1, INFERENCE_SERVICE);
  }

  fail(error: ServingError): void {
    this.callback({ code: error.code, details: error.message });
    this.context.telemetry.callEnded(METHOD, error.code, performance.now() - this.receivedAt, error.message, this.spanContext, 1, INFERENCE_SERVICE);
  }
}

export function modelInferHandler(context: HandlerContext) {
  const { models, telemetry } = context;
  return (call: ServerUnaryCall<ModelInferRequest, Buffer>, callback: sendUnaryData<Buffer>) => {
    const receivedAt = performance.now();
    const spanContext = telemetry.spanContextOf(call.metadata);
    const refuse = (error: unknown) => {
      const failure = toServingError(error, (cause) => telemetry.logUnexpected(METHOD, cause, spanContext, INFERENCE_SERVICE));
      callback({ code: failure.code, details: failure.message });
      telemetry.callEnded(METHOD, failure.code, performance.now() - receivedAt, failure.message, spanContext, 1, INFERENCE_SERVICE);
    };
    let model: ModelInstance;
    let admitted: AdmittedInfer;
    try {
      if (context.isDraining()) throw unavailable(SHUTTING_DOWN);
      model = models.resolve(call.request.model_name, call.request.model_version);
      admitted = admitInfer(call.request, model);
    } catch (error) {
      refuse(error);
      return;
    }
    const own = admitted.timeoutMs === Infinity ? Infinity : receivedAt + admitted.timeoutMs;
    const deadline = Math.min(own, requestDeadline(clientDeadline(call, receivedAt), receivedAt, context.requestTimeoutMs));
    const request = new InferRequest(model, admitted, call.request.id, deadline, receivedAt, callback, context, spanContext);
    // Routed and enqueued in one synchronous step: the version cannot begin to unload in between (instance.ts).
    const batcher = model.batcher;
    if (!batcher.enqueue(request)) {
      refuse(resourceExhausted(`queue full: ${batcher.queuedRowCount} rows queued, MAX_QUEUE_SIZE is ${batcher.maxQueueRows}`));
      return;
    }
    call.once('cancelled', () => batcher.cancel(request));
  };
}

interface StreamExtra {
  id: string;
  outputs: number[];
}

/**
 * ModelStreamInfer, Triton's semantics: answers in the order received with `id` echoed; a failed request gets
 * `error_message` and the stream stays open.
 */
export function modelStreamInferHandler(context: HandlerContext, sessions: Set<Drainable>) {
  const protocol: StreamProtocol<ModelInferRequest, StreamExtra> = {
    service: INFERENCE_SERVICE,
    method: 'ModelStreamInfer',
    admit(request, ctx) {
      const target = ctx.models.resolve(request.model_name, request.model_version);
      const admitted = admitInfer(request, target);
      return {
        target,
        inputs: admitted.inputs,
        rows: admitted.rows,
        shapes: admitted.shapes,
        extra: { id: request.id, outputs: admitted.outputs },
        timeoutMs: admitted.timeoutMs,
      };
    },
    encodeAnswer(slot, outputs, firstRow) {
      const extra = slot.extra!;
      return encodeStreamInferResponse({ error_message: '', infer_response: inferResponse(slot.target!, extra.id, extra.outputs, outputs, firstRow, slot.rows) });
    },
    encodeFailure(slot, error) {
      const request = slot.request;
      const infer: ModelInferResponse = {
        model_name: request?.model_name ?? '',
        model_version: slot.target?.version ?? request?.model_version ?? '',
        id: request?.id ?? '',
        outputs: [],
        raw_output_contents: [],
      };
      return encodeStreamInferResponse({ error_message: error.message, infer_response: infer });
    },
  };
  return streamHandler(context, sessions, protocol);
}
