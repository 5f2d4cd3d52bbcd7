// A plain grpc-js client of inference.GRPCInferenceService built from proto/grpc_service.proto with the generic
// codec, as any client generated from Triton's proto would be, for the v2 tests.
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { KSERVE_PROTO_OPTIONS, KSERVE_PROTO_PATH } from '../../src/main/kserve/service';

const definition = protoLoader.loadSync(KSERVE_PROTO_PATH, KSERVE_PROTO_OPTIONS);
const Service = (grpc.loadPackageDefinition(definition).inference as grpc.GrpcObject).GRPCInferenceService as grpc.ServiceClientConstructor;

export interface V2Client {
  call<T = Record<string, unknown>>(method: string, request: object): Promise<T>;
  stream(): grpc.ClientDuplexStream<object, StreamReply>;
  close(): void;
}

export interface InferReply {
  model_name: string;
  model_version: string;
  id: string;
  outputs: Array<{ name: string; datatype: string; shape: string[] }>;
  raw_output_contents: Buffer[];
}

export interface StreamReply {
  error_message: string;
  infer_response: InferReply | null;
}

export function v2Client(address: string): V2Client {
  const client = new Service(address, grpc.credentials.createInsecure()) as grpc.Client & Record<string, Function>;
  return {
    call: (method, request) =>
      new Promise((resolve, reject) => client[method](request, (error: grpc.ServiceError | null, reply: unknown) => (error ? reject(error) : resolve(reply as never)))),
    stream: () => client.ModelStreamInfer() as grpc.ClientDuplexStream<object, StreamReply>,
    close: () => client.close(),
  };
}

/** Float32 values as raw little-endian bytes. */
export const f32 = (values: number[]) => Buffer.from(Float32Array.from(values).buffer);

/** Raw little-endian float32 bytes as numbers. */
export const readF32 = (bytes: Buffer) => Array.from({ length: bytes.length / 4 }, (_, i) => bytes.readFloatLE(i * 4));
