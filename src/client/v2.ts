// A typed client of the Open Inference Protocol (KServe v2) over gRPC: inference.GRPCInferenceService, as tickserve
// and Triton serve it. Health, metadata, config, statistics, the repository (index, load, unload), ModelInfer, and
// ModelStreamInfer as async-iterable in, async-iterable out.
//
// Tensors go out as raw_input_contents by default (typed `contents` on request) and come back decoded from
// raw_output_contents (or `contents`, from a server that answers that way) into the TypedArray of their datatype:
// v2-tensors.ts holds the table. A failed call rejects with grpc-js's ServiceError, code and details as the server
// sent them; a tensor that cannot be sent, or a reply that cannot be read, with a TensorError naming the tensor.
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import path from 'node:path';
import { bidiStream } from './bidi';
import { channelOptions, checkHeaders, metadataOf, type ChannelSettings, type Headers } from './channel';
import {
  checkInput,
  decodeContents,
  decodeRaw,
  encodeContents,
  encodeRaw,
  isDatatype,
  TensorError,
  type InferInput,
  type InferOutput,
  type TensorContents,
} from './v2-tensors';

export { StreamEndedEarlyError } from './bidi';
export type { Headers, RetryOptions } from './channel';
export * from './v2-tensors';

const PROTO_DIR = path.resolve(__dirname, '..', '..', '..', 'proto');
const SERVICE = 'inference.GRPCInferenceService';

const definition = protoLoader.loadSync('grpc_service.proto', {
  includeDirs: [PROTO_DIR],
  keepCase: true,
  arrays: true,
  longs: String,
  enums: String,
  defaults: true,
});
const GRPCInferenceService = (grpc.loadPackageDefinition(definition).inference as grpc.GrpcObject).GRPCInferenceService as grpc.ServiceClientConstructor;

export interface InferenceClientOptions extends ChannelSettings {
  /** `host:port`, or a grpc target naming many addresses: `dns:///name:port`, `ipv4:a:p,b:p`. */
  target: string;
  /** TLS (grpc.credentials.createSsl(...)), as for TickClient; default insecure. */
  credentials?: grpc.ChannelCredentials;
  /** Deadline of each unary call in ms, loads and unloads aside (default 1000). */
  deadlineMs?: number;
  /** Deadline of each load and unload in ms (default 60000: a load reads, compiles and warms the model). */
  loadDeadlineMs?: number;
  /** Deadline of each stream in ms (default none). */
  streamDeadlineMs?: number;
  /** Sent as gRPC metadata on every call; a call's own `headers` win over these. */
  headers?: Headers;
}

export interface CallOptions {
  /** This call's deadline in ms from now, instead of the client's. */
  deadlineMs?: number;
  /** Sent as gRPC metadata with this call, over the client's headers of the same key. */
  headers?: Headers;
  /** Aborting cancels the call: it rejects with CANCELLED. */
  signal?: AbortSignal;
}

export interface InferOptions extends CallOptions {
  /** The model version; default: the server's choice (the latest ready). */
  version?: string;
  /** Echoed in the response. */
  id?: string;
  /** The outputs to return, by name; default every output. */
  outputs?: readonly string[];
  /** 'raw' (default): raw_input_contents. 'contents': InferTensorContents (no FP16: it has no typed field). */
  encoding?: 'raw' | 'contents';
}

export type StreamOptions = Omit<InferOptions, 'id'>;

/** One request of a stream: its inputs, or its inputs and an id. */
export type StreamRequest = readonly InferInput[] | { inputs: readonly InferInput[]; id?: string };

export interface InferResult {
  modelName: string;
  modelVersion: string;
  id: string;
  outputs: InferOutput[];
}

/** A stream's answer to one request: its result, or (the stream goes on) the server's error message for it. */
export type StreamResult = (InferResult & { error: null }) | { error: string; id: string };

export interface TensorMetadata {
  name: string;
  datatype: string;
  /** -1: variable (the batch dimension of a model that batches). */
  shape: number[];
}

export interface ModelMetadata {
  name: string;
  versions: string[];
  platform: string;
  inputs: TensorMetadata[];
  outputs: TensorMetadata[];
}

export interface ServerMetadata {
  name: string;
  version: string;
  extensions: string[];
}

/** One row of the repository index; state is READY, UNAVAILABLE, LOADING or UNLOADING. */
export interface ModelIndexEntry {
  name: string;
  version: string;
  state: string;
  reason: string;
}

// The messages below are as @grpc/proto-loader reads them: int64 and uint64 as decimal strings, enums as names.

export interface StatisticDuration {
  count: string;
  ns: string;
}

export interface ModelStatistics {
  name: string;
  version: string;
  /** Milliseconds since the epoch. */
  last_inference: string;
  inference_count: string;
  execution_count: string;
  inference_stats: Record<
    'success' | 'fail' | 'queue' | 'compute_input' | 'compute_infer' | 'compute_output' | 'cache_hit' | 'cache_miss',
    StatisticDuration | null
  > | null;
  batch_stats: Array<{
    batch_size: string;
    compute_input: StatisticDuration | null;
    compute_infer: StatisticDuration | null;
    compute_output: StatisticDuration | null;
  }>;
}

/** model_config.proto's ModelConfig, the subset tickserve serves (data types as TYPE_FP32, ...). */
export interface ModelConfig {
  name: string;
  platform: string;
  backend: string;
  version_policy: { latest?: { num_versions: number } | null; all?: object | null; specific?: { versions: string[] } | null } | null;
  max_batch_size: number;
  input: Array<{ name: string; data_type: string; dims: string[]; optional: boolean }>;
  output: Array<{ name: string; data_type: string; dims: string[] }>;
  instance_group: Array<{ name: string; count: number; gpus: number[]; kind: string }>;
  default_model_filename: string;
  dynamic_batching: { preferred_batch_size: number[]; max_queue_delay_microseconds: string } | null;
  parameters: Record<string, { string_value: string }>;
  model_warmup: Array<{ name: string; batch_size: number; count: number; inputs: Record<string, object> }>;
}

interface WireOutputTensor {
  name: string;
  datatype: string;
  shape: string[];
  contents: Partial<TensorContents> | null;
}

interface WireInferResponse {
  model_name: string;
  model_version: string;
  id: string;
  outputs: WireOutputTensor[];
  raw_output_contents: Buffer[];
}

interface WireStreamResponse {
  error_message: string;
  infer_response: WireInferResponse | null;
}

type Callback<Reply> = (error: grpc.ServiceError | null, reply: Reply) => void;
type UnaryMethod = (request: object, metadata: grpc.Metadata, options: grpc.CallOptions, callback: Callback<never>) => grpc.ClientUnaryCall;

/** A ModelInferRequest for `inputs`; throws a TensorError naming the first input that cannot be sent. */
function inferRequest(model: string, inputs: readonly InferInput[], options: Omit<InferOptions, keyof CallOptions>): object {
  for (const input of inputs) checkInput(input);
  const raw = (options.encoding ?? 'raw') === 'raw';
  return {
    model_name: model,
    model_version: options.version ?? '',
    id: options.id ?? '',
    inputs: inputs.map((input) => ({
      name: input.name,
      datatype: input.datatype,
      shape: input.shape,
      ...(raw ? {} : { contents: encodeContents(input) }),
    })),
    outputs: (options.outputs ?? []).map((name) => ({ name })),
    raw_input_contents: raw ? inputs.map(encodeRaw) : [],
  };
}

const NO_BYTES = new Uint8Array(0);

/** A ModelInferResponse decoded; throws a TensorError naming the first output that cannot be read. */
function inferResult(reply: WireInferResponse): InferResult {
  const raw = reply.raw_output_contents;
  if (raw.length > 0 && raw.length !== reply.outputs.length) {
    throw new TensorError(`the reply has ${reply.outputs.length} outputs and ${raw.length} raw_output_contents`);
  }
  const outputs = reply.outputs.map((output, i): InferOutput => {
    const { name, datatype } = output;
    if (!isDatatype(datatype)) throw new TensorError(`output "${name}": unknown datatype "${datatype}"`);
    const shape = output.shape.map(Number);
    const data = raw.length > 0 ? decodeRaw(name, datatype, shape, raw[i] ?? NO_BYTES) : decodeContents(name, datatype, shape, output.contents ?? {});
    return { name, datatype, shape, data } as InferOutput;
  });
  return { modelName: reply.model_name, modelVersion: reply.model_version, id: reply.id, outputs };
}

function streamResult(reply: WireStreamResponse): StreamResult {
  if (reply.error_message !== '') return { error: reply.error_message, id: reply.infer_response?.id ?? '' };
  if (reply.infer_response === null) throw new TensorError('a stream reply has neither an error_message nor an infer_response');
  return { ...inferResult(reply.infer_response), error: null };
}

const tensorMetadata = (t: { name: string; datatype: string; shape: string[] }): TensorMetadata => ({
  name: t.name,
  datatype: t.datatype,
  shape: t.shape.map(Number),
});

/** Cancels `call` when `signal` aborts (at once if it has); returns what stops listening. */
function cancelOnAbort(call: { cancel(): void }, signal: AbortSignal | undefined): () => void {
  if (signal === undefined) return () => {};
  if (signal.aborted) {
    call.cancel();
    return () => {};
  }
  const cancel = () => call.cancel();
  signal.addEventListener('abort', cancel, { once: true });
  return () => signal.removeEventListener('abort', cancel);
}

export class InferenceClient {
  private readonly client: grpc.Client & Record<string, Function>;
  private readonly headers: Headers;
  private readonly deadlineMs: number;
  private readonly loadDeadlineMs: number;
  private readonly streamDeadlineMs: number | undefined;

  constructor(options: InferenceClientOptions) {
    this.headers = options.headers ?? {};
    checkHeaders(this.headers);
    const credentials = options.credentials ?? grpc.credentials.createInsecure();
    this.client = new GRPCInferenceService(options.target, credentials, channelOptions(options, [SERVICE])) as grpc.Client & Record<string, Function>;
    this.deadlineMs = options.deadlineMs ?? 1000;
    this.loadDeadlineMs = options.loadDeadlineMs ?? 60_000;
    this.streamDeadlineMs = options.streamDeadlineMs;
  }

  private metadata(headers: Headers | undefined): grpc.Metadata {
    if (headers !== undefined) checkHeaders(headers);
    return metadataOf(this.headers, headers);
  }

  private unary<Reply>(method: string, request: object, options: CallOptions, deadlineMs = this.deadlineMs): Promise<Reply> {
    return new Promise((resolve, reject) => {
      const deadline = Date.now() + (options.deadlineMs ?? deadlineMs);
      let stopListening = () => {};
      const call = (this.client[method] as UnaryMethod).call(this.client, request, this.metadata(options.headers), { deadline }, (error: grpc.ServiceError | null, reply: Reply) => {
        stopListening();
        if (error) reject(error);
        else resolve(reply);
      });
      stopListening = cancelOnAbort(call, options.signal);
    });
  }

  async serverLive(options: CallOptions = {}): Promise<boolean> {
    return (await this.unary<{ live: boolean }>('ServerLive', {}, options)).live;
  }

  async serverReady(options: CallOptions = {}): Promise<boolean> {
    return (await this.unary<{ ready: boolean }>('ServerReady', {}, options)).ready;
  }

  async modelReady(name: string, version = '', options: CallOptions = {}): Promise<boolean> {
    return (await this.unary<{ ready: boolean }>('ModelReady', { name, version }, options)).ready;
  }

  serverMetadata(options: CallOptions = {}): Promise<ServerMetadata> {
    return this.unary<ServerMetadata>('ServerMetadata', {}, options);
  }

  async modelMetadata(name: string, version = '', options: CallOptions = {}): Promise<ModelMetadata> {
    type Wire = Omit<ModelMetadata, 'inputs' | 'outputs'> & Record<'inputs' | 'outputs', Array<{ name: string; datatype: string; shape: string[] }>>;
    const reply = await this.unary<Wire>('ModelMetadata', { name, version }, options);
    return { name: reply.name, versions: reply.versions, platform: reply.platform, inputs: reply.inputs.map(tensorMetadata), outputs: reply.outputs.map(tensorMetadata) };
  }

  async modelConfig(name: string, version = '', options: CallOptions = {}): Promise<ModelConfig> {
    return (await this.unary<{ config: ModelConfig }>('ModelConfig', { name, version }, options)).config;
  }

  /** Every model's statistics, or `name`'s (every version, or `version`'s). */
  async modelStatistics(name = '', version = '', options: CallOptions = {}): Promise<ModelStatistics[]> {
    return (await this.unary<{ model_stats: ModelStatistics[] }>('ModelStatistics', { name, version }, options)).model_stats;
  }

  /** Every model version the repository holds, or (readyOnly) those ready. */
  async repositoryIndex(readyOnly = false, options: CallOptions = {}): Promise<ModelIndexEntry[]> {
    return (await this.unary<{ models: ModelIndexEntry[] }>('RepositoryIndex', { repository_name: '', ready: readyOnly }, options)).models;
  }

  async load(name: string, options: CallOptions = {}): Promise<void> {
    await this.unary('RepositoryModelLoad', { repository_name: '', model_name: name }, options, this.loadDeadlineMs);
  }

  async unload(name: string, options: CallOptions = {}): Promise<void> {
    await this.unary('RepositoryModelUnload', { repository_name: '', model_name: name }, options, this.loadDeadlineMs);
  }

  /** One ModelInfer call. */
  async infer(name: string, inputs: readonly InferInput[], options: InferOptions = {}): Promise<InferResult> {
    const request = inferRequest(name, inputs, options);
    return inferResult(await this.unary<WireInferResponse>('ModelInfer', request, options));
  }

  /**
   * Streams `requests` through one ModelStreamInfer call and yields one result per request, in order: a request the
   * server refused yields `{ error }` in its slot and the stream goes on. Backpressure both ways, cancellation on
   * break or abort, and the end of the stream as in TickClient.stream: a status other than OK is thrown as the
   * call's ServiceError, an OK before every request was answered as a StreamEndedEarlyError, after every result
   * received. A request that cannot be sent (a TensorError) cancels the call and is thrown.
   */
  async *stream(name: string, requests: AsyncIterable<StreamRequest> | Iterable<StreamRequest>, options: StreamOptions = {}): AsyncGenerator<StreamResult> {
    const deadlineMs = options.deadlineMs ?? this.streamDeadlineMs;
    const callOptions = deadlineMs === undefined ? {} : { deadline: Date.now() + deadlineMs };
    const call = this.client.ModelStreamInfer(this.metadata(options.headers), callOptions) as grpc.ClientDuplexStream<object, WireStreamResponse>;
    const stopListening = cancelOnAbort(call, options.signal);
    const encode = (request: StreamRequest) =>
      'inputs' in request ? inferRequest(name, request.inputs, { ...options, id: request.id }) : inferRequest(name, request, options);
    try {
      for await (const reply of bidiStream(call, requests, encode)) yield streamResult(reply);
    } finally {
      stopListening();
    }
  }

  /** Resolves once the channel is connected, or rejects after `timeoutMs`. */
  waitForReady(timeoutMs = 5000): Promise<void> {
    return new Promise((resolve, reject) => this.client.waitForReady(Date.now() + timeoutMs, (error) => (error ? reject(error) : resolve())));
  }

  close(): void {
    this.client.close();
  }
}
