// A stand-in inference.GRPCInferenceService on 127.0.0.1:0 for the client's own tests: it answers ModelInfer with its
// inputs as outputs (raw as raw, contents as contents), records each call's metadata, and has a few models that
// misbehave on purpose. Built by grpc-js from the same proto as the client, so every test crosses the real wire.
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import path from 'node:path';

const PROTO_DIR = path.join(__dirname, '..', '..', '..', 'proto');

/** Models with behaviour: every other name echoes. */
export const ECHO_MODELS = {
  /** ModelInfer and ModelMetadata answer NOT_FOUND. */
  missing: 'missing',
  /** ModelReady never answers (for deadlines and cancellation). */
  silent: 'silent',
  /** ModelStreamInfer answers two requests, then ends the call with RESOURCE_EXHAUSTED. */
  quitter: 'quitter',
  /** ModelStreamInfer answers two requests, then ends the call with OK (as a draining server does). */
  drainer: 'drainer',
};

/** A stream request with this id gets an error_message in its slot; the stream goes on. */
export const BAD_REQUEST_ID = 'bad';

interface WireRequest {
  model_name: string;
  model_version: string;
  id: string;
  inputs: Array<{ name: string; datatype: string; shape: string[]; contents: object | null }>;
  outputs: Array<{ name: string }>;
  raw_input_contents: Buffer[];
}

export interface EchoServer {
  address: string;
  /** Each call's method and metadata headers (grpc's own and HTTP/2's left out), in arrival order. */
  calls: Array<{ method: string; headers: Record<string, string> }>;
  /** The last ModelInfer request, as the server decoded it. */
  lastRequest: WireRequest | null;
  close(): Promise<void>;
}

function headersOf(metadata: grpc.Metadata): Record<string, string> {
  const headers: Record<string, string> = {};
  for (const [key, value] of Object.entries(metadata.getMap())) {
    if (!key.startsWith('grpc-') && key !== 'user-agent' && !key.startsWith(':')) headers[key] = String(value);
  }
  return headers;
}

/** The echo: each input back as an output of the same name, datatype and shape, filtered by `outputs` if given. */
function echo(request: WireRequest) {
  const wanted = new Set(request.outputs.map((o) => o.name));
  const keep = request.inputs.map((input) => wanted.size === 0 || wanted.has(input.name));
  const raw = request.raw_input_contents.length > 0;
  return {
    model_name: request.model_name,
    model_version: request.model_version || '1',
    id: request.id,
    outputs: request.inputs
      .filter((_, i) => keep[i])
      .map((input) => ({ name: input.name, datatype: input.datatype, shape: input.shape, ...(raw ? {} : { contents: input.contents }) })),
    raw_output_contents: raw ? request.raw_input_contents.filter((_, i) => keep[i]) : [],
  };
}

const notFound = (name: string) => ({ code: grpc.status.NOT_FOUND, details: `no model "${name}"` });

export async function startEchoServer(): Promise<EchoServer> {
  const definition = protoLoader.loadSync('grpc_service.proto', {
    includeDirs: [PROTO_DIR],
    keepCase: true,
    arrays: true,
    longs: String,
    enums: String,
    defaults: true,
  });
  const service = ((grpc.loadPackageDefinition(definition).inference as grpc.GrpcObject).GRPCInferenceService as grpc.ServiceClientConstructor).service;
  const server = new grpc.Server();
  const state: EchoServer = { address: '', calls: [], lastRequest: null, close: async () => {} };
  const record = (method: string, metadata: grpc.Metadata) => state.calls.push({ method, headers: headersOf(metadata) });

  type Unary = grpc.ServerUnaryCall<Record<string, unknown>, object>;
  const unary = (method: string, answer: (request: Record<string, unknown>) => object | grpc.ServiceError | null) =>
    (call: Unary, callback: grpc.sendUnaryData<object>) => {
      record(method, call.metadata);
      const reply = answer(call.request);
      if (reply === null) return; // never answered
      if ('code' in reply) callback(reply as grpc.ServiceError);
      else callback(null, reply);
    };

  server.addService(service, {
    ServerLive: unary('ServerLive', () => ({ live: true })),
    ServerReady: unary('ServerReady', () => ({ ready: true })),
    ModelReady: unary('ModelReady', (r) => (r.name === ECHO_MODELS.silent ? null : { ready: r.name !== ECHO_MODELS.missing })),
    ServerMetadata: unary('ServerMetadata', () => ({ name: 'echo', version: '0.0.1', extensions: ['model_repository'] })),
    ModelMetadata: unary('ModelMetadata', (r) =>
      r.name === ECHO_MODELS.missing
        ? notFound(r.name)
        : {
            name: r.name,
            versions: ['1', '2'],
            platform: 'onnxruntime_onnx',
            inputs: [{ name: 'x', datatype: 'FP32', shape: [-1, 4] }],
            outputs: [{ name: 'y', datatype: 'INT64', shape: ['-1', '3'] }],
          },
    ),
    ModelConfig: unary('ModelConfig', (r) => ({
      config: {
        name: r.name,
        platform: 'onnxruntime_onnx',
        max_batch_size: 8,
        input: [{ name: 'x', data_type: 'TYPE_FP32', dims: [4] }],
        output: [{ name: 'y', data_type: 'TYPE_FP32', dims: [4] }],
        dynamic_batching: { max_queue_delay_microseconds: 100 },
      },
    })),
    ModelStatistics: unary('ModelStatistics', (r) => ({
      model_stats: [{ name: r.name || 'echo', version: r.version || '1', inference_count: '18446744073709551615' }],
    })),
    RepositoryIndex: unary('RepositoryIndex', (r) => ({
      models: [
        { name: 'echo', version: '1', state: 'READY', reason: '' },
        ...(r.ready ? [] : [{ name: 'broken-model', version: '12', state: 'UNAVAILABLE', reason: 'load failed: bad graph' }]),
      ],
    })),
    RepositoryModelLoad: unary('RepositoryModelLoad', (r) => (r.model_name === ECHO_MODELS.missing ? notFound(String(r.model_name)) : {})),
    RepositoryModelUnload: unary('RepositoryModelUnload', () => ({})),
    ModelInfer: (call: grpc.ServerUnaryCall<WireRequest, object>, callback: grpc.sendUnaryData<object>) => {
      record('ModelInfer', call.metadata);
      state.lastRequest = call.request;
      if (call.request.model_name === ECHO_MODELS.missing) callback(notFound(call.request.model_name) as grpc.ServiceError);
      else callback(null, echo(call.request));
    },
    ModelStreamInfer: (call: grpc.ServerDuplexStream<WireRequest, object>) => {
      record('ModelStreamInfer', call.metadata);
      let answered = 0;
      let ended = false;
      call.on('data', (request: WireRequest) => {
        if (ended) return;
        if (answered === 2 && (request.model_name === ECHO_MODELS.quitter || request.model_name === ECHO_MODELS.drainer)) {
          ended = true;
          if (request.model_name === ECHO_MODELS.quitter) call.emit('error', { code: grpc.status.RESOURCE_EXHAUSTED, details: 'enough' });
          else call.end();
          return;
        }
        answered++;
        const reply =
          request.id === BAD_REQUEST_ID ? { error_message: `request "${request.id}" refused`, infer_response: { id: request.id } } : { infer_response: echo(request) };
        // Backpressure, as a real server applies it: stop reading requests while the client is not reading replies.
        if (!call.write(reply)) {
          call.pause();
          call.once('drain', () => call.resume());
        }
      });
      call.on('end', () => {
        if (!ended) call.end();
      });
    },
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (error, bound) => (error ? reject(error) : resolve(bound))),
  );
  state.address = `127.0.0.1:${port}`;
  state.close = () =>
    new Promise<void>((resolve) => {
      server.tryShutdown(() => resolve());
      setTimeout(() => server.forceShutdown(), 500).unref();
    });
  return state;
}
