// The Open Inference Protocol's side of the load generator: ModelInfer and ModelStreamInfer requests, encoded once
// with protobufjs from proto/grpc_service.proto (as any client generated from Triton's proto would encode them), and
// the one answer field the generator reads. Requests carry their tensor in raw_input_contents, the form Triton's
// clients send by default.
import path from 'node:path';
import protobuf from 'protobufjs';
import { frame, frameGzip } from './h2';
import { WIRE_LENGTH_DELIMITED, WireReader } from './wire';

export const MODEL_INFER = '/inference.GRPCInferenceService/ModelInfer';
export const MODEL_STREAM_INFER = '/inference.GRPCInferenceService/ModelStreamInfer';

const PROTO_FILE = path.resolve(__dirname, '..', '..', 'proto', 'grpc_service.proto');

let requestType: protobuf.Type | null = null;

/** inference.ModelInferRequest, loaded from the proto once (the bench encodes its requests before it starts). */
function modelInferRequest(): protobuf.Type {
  // Its import (model_config.proto) is found beside it.
  requestType ??= new protobuf.Root().loadSync(PROTO_FILE, { keepCase: true }).lookupType('inference.ModelInferRequest');
  return requestType;
}

/** What a v2 request names: the model and its one FP32 input (models/default.onnx: "input", 17 features). */
export interface V2Target {
  model: string;
  input: string;
}

export const DEFAULT_V2_TARGET: V2Target = { model: 'default', input: 'input' };

/**
 * Distinct framed ModelInferRequests: FP32 input [rows, width] in raw_input_contents, every output answered. The
 * values are the ones encodeRequests (load.ts) puts in its PredictRequests, so both APIs feed the model the same rows.
 */
export function encodeInferRequests(width: number, rows: number, variants = 64, gzip = false, target = DEFAULT_V2_TARGET): Buffer[] {
  const type = modelInferRequest();
  return Array.from({ length: variants }, (_, v) => {
    const values = new Float32Array(rows * width);
    for (let i = 0; i < values.length; i++) values[i] = Math.sin(v * 31.7 + i * 0.37);
    const message = type.fromObject({
      model_name: target.model,
      inputs: [{ name: target.input, datatype: 'FP32', shape: [rows, width] }],
      raw_input_contents: [Buffer.from(values.buffer)],
    });
    const bytes = Buffer.from(type.encode(message).finish());
    return gzip ? frameGzip(bytes) : frame(bytes);
  });
}

const streamAnswerReader = new WireReader();

/**
 * Whether a ModelStreamInferResponse is a success: its error_message (field 1) is absent or empty. A failed request
 * of a stream is answered in its slot with grpc-status still OK, so this field is the only place its failure shows.
 */
export function streamAnswerOk(bytes: Buffer): boolean {
  const reader = streamAnswerReader.reset(bytes);
  while (!reader.done) {
    const tag = reader.varint();
    const wire = tag & 7;
    if (tag >>> 3 === 1 && wire === WIRE_LENGTH_DELIMITED) return reader.varint() === 0;
    if (!reader.skip(wire)) return false;
  }
  return true;
}
