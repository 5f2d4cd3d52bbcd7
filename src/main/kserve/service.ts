// inference.GRPCInferenceService (proto/grpc_service.proto): the Open Inference Protocol with Triton's extensions,
// on the same gRPC server as ModelService. Inference is in infer.ts; this file binds every RPC: health and metadata,
// the effective model config, statistics, and the repository (load and unload only in explicit mode, as Triton).
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import path from 'node:path';
import type { ModelConfig } from '../../models/config';
import type { ModelInstance } from '../../models/instance';
import type { Initiator } from '../../models/registry';
import type { InferenceStatistics } from '../../models/statistics';
import { deviceOf } from '../../workers/protocol';
import { PACKAGE_ROOT } from '../config';
import { invalidArgument, toServingError, unimplemented } from '../errors';
import type { HandlerContext } from '../handlers/context';
import type { Drainable } from '../stream-session';
import { INFERENCE_SERVICE } from '../telemetry';
import { inferRequestDeserializer } from './codec';
import { modelInferHandler, modelStreamInferHandler } from './infer';
import type { ModelInferRequest } from './tensors';

export const KSERVE_PROTO_PATH = path.join(PACKAGE_ROOT, 'proto', 'grpc_service.proto');

export const KSERVE_PROTO_OPTIONS: protoLoader.Options = {
  keepCase: true,
  longs: String,
  enums: String,
  defaults: true,
  arrays: true,
  oneofs: true,
  includeDirs: [path.join(PACKAGE_ROOT, 'proto')],
};

const { version: PACKAGE_VERSION } = require(path.join(PACKAGE_ROOT, 'package.json')) as { version: string };

/** The Triton extensions served (ServerMetadata). */
export const EXTENSIONS = ['model_repository', 'model_configuration', 'statistics'];

/** What the service needs of the server beyond the handlers' shared context. */
export interface KserveHost {
  /** Listening, not draining, and every model that should be loaded is ready. */
  ready(): boolean;
  /**
   * RepositoryModelLoad and RepositoryModelUnload, with the call that asked (the audit log): refused unless
   * MODEL_CONTROL_MODE=explicit, and for a name that is not a model folder's.
   */
  loadModel(name: string, initiator: Initiator): Promise<void>;
  unloadModel(name: string, initiator: Initiator): Promise<void>;
  /** Every model folder of the repository, loaded or not, with what keeps it from loading if it is not. */
  repositoryModels(): Array<{ name: string; reason: string }>;
}

type Unary<Req, Res> = (call: grpc.ServerUnaryCall<Req, Res>, callback: grpc.sendUnaryData<Res>) => void;

/** The caller of an RPC, for the audit log: its address and, under mTLS, its certificate's subject. */
function initiatorOf(call: grpc.ServerUnaryCall<unknown, unknown>, method: string): Initiator {
  const subject = call.getAuthContext().sslPeerCertificate?.subject;
  return {
    by: 'rpc',
    method: `${INFERENCE_SERVICE}/${method}`,
    peer: call.getPeer(),
    subject: subject === undefined ? null : Object.entries(subject).map(([field, value]) => `${field}=${[value].flat().join('+')}`).join(', '),
  };
}

/** A unary RPC whose body may throw (or reject) a ServingError; reported like every call of the service. */
function unary<Req, Res>(
  context: HandlerContext,
  method: string,
  body: (request: Req, call: grpc.ServerUnaryCall<Req, Res>) => Res | Promise<Res>,
): Unary<Req, Res> {
  const { telemetry } = context;
  return (call, callback) => {
    const started = performance.now();
    const spanContext = telemetry.spanContextOf(call.metadata);
    Promise.resolve()
      .then(() => body(call.request, call))
      .then(
        (response) => {
          callback(null, response);
          // answers 0: tickserve_requests_total counts predictions, not metadata or repository calls.
          telemetry.callEnded(method, grpc.status.OK, performance.now() - started, '', spanContext, 0, INFERENCE_SERVICE);
        },
        (error: unknown) => {
          const failure = toServingError(error, (cause) => telemetry.logUnexpected(method, cause, spanContext, INFERENCE_SERVICE));
          callback({ code: failure.code, details: failure.message });
          telemetry.callEnded(method, failure.code, performance.now() - started, failure.message, spanContext, 0, INFERENCE_SERVICE);
        },
      );
  };
}

const tensorMetadata = (model: ModelInstance, role: 'inputs' | 'outputs') =>
  model.signature[role].map((t) => ({ name: t.name, datatype: t.datatype, shape: model.signature.batches ? [-1, ...t.dims] : [...t.dims] }));

const CONFIG_TYPES: Record<string, string> = { BYTES: 'TYPE_STRING' };
const configType = (datatype: string) => CONFIG_TYPES[datatype] ?? `TYPE_${datatype}`;

/** The effective config of a loaded version, as Triton's ModelConfig: config.pbtxt where it spoke, else auto-completed. */
function effectiveModelConfig(model: ModelInstance) {
  const config: ModelConfig | null = model.spec.config;
  const { effective, signature } = model;
  const policy = config?.versionPolicy ?? { kind: 'latest', numVersions: 1 };
  const warmup = config?.warmup ?? [];
  return {
    name: model.name,
    platform: 'onnxruntime_onnx',
    backend: 'onnxruntime',
    version_policy:
      policy.kind === 'latest' ? { latest: { num_versions: policy.numVersions } } : policy.kind === 'all' ? { all: {} } : { specific: { versions: policy.versions } },
    max_batch_size: effective.maxBatchSize,
    input: signature.inputs.map((t) => ({ name: t.name, data_type: configType(t.datatype), dims: [...t.dims] })),
    output: signature.outputs.map((t) => ({ name: t.name, data_type: configType(t.datatype), dims: [...t.dims] })),
    instance_group: instanceGroups(model.name, effective),
    default_model_filename: path.basename(model.spec.file),
    dynamic_batching: signature.batches
      ? { preferred_batch_size: effective.preferredBatchSizes, max_queue_delay_microseconds: effective.maxQueueDelayUs }
      : undefined,
    parameters: Object.fromEntries(Object.entries(config?.parameters ?? {}).map(([k, v]) => [k, { string_value: v }])),
    model_warmup: warmup.map((w) => ({
      name: w.name,
      batch_size: w.batchSize,
      count: w.count,
      inputs: Object.fromEntries(
        Object.entries(w.inputs).map(([name, input]) => [
          name,
          {
            data_type: configType(input.dataType),
            dims: input.dims,
            ...(input.source === 'zero' ? { zero_data: true } : input.source === 'random' ? { random_data: true } : { input_data_file: input.source.file }),
          },
        ]),
      ),
    })),
  };
}

const duration = (d: { count: number; ns: number }) => ({ count: d.count, ns: Math.round(d.ns) });

function modelStatistics(model: ModelInstance) {
  const stats: InferenceStatistics = model.stats;
  const none = { count: 0, ns: 0 };
  return {
    name: model.name,
    version: model.version,
    last_inference: stats.lastInference,
    inference_count: stats.inferenceCount,
    execution_count: stats.executionCount,
    inference_stats: {
      success: duration(stats.success),
      fail: duration(stats.fail),
      queue: duration(stats.queue),
      // The worker reports one compute time per batch: its input copy and output copy are inside compute_infer.
      compute_input: { count: stats.computeInfer.count, ns: 0 },
      compute_infer: duration(stats.computeInfer),
      compute_output: { count: stats.computeInfer.count, ns: 0 },
      cache_hit: none,
      cache_miss: none,
    },
    batch_stats: stats.batchSizes().map((b) => ({
      batch_size: b.batchSize,
      compute_input: { count: b.computeInfer.count, ns: 0 },
      compute_infer: duration(b.computeInfer),
      compute_output: { count: b.computeInfer.count, ns: 0 },
    })),
  };
}

export function addKserveService(server: grpc.Server, context: HandlerContext, sessions: Set<Drainable>, host: KserveHost): protoLoader.PackageDefinition {
  const packageDefinition = protoLoader.loadSync(KSERVE_PROTO_PATH, KSERVE_PROTO_OPTIONS);
  const generic = packageDefinition[INFERENCE_SERVICE] as grpc.ServiceDefinition;
  // Inference requests in the common form take codec.ts, other requests the generic codec, as every other RPC does.
  // Inference answers are encoded by their handlers (codec.ts, from the batch's memory; the stream's in order, with
  // flow control), so those serializers pass the bytes through.
  const decodeInfer = inferRequestDeserializer(generic.ModelInfer.requestDeserialize as (bytes: Buffer) => ModelInferRequest);
  const passThrough = (encoded: Buffer) => encoded;
  const definition: grpc.ServiceDefinition = {
    ...generic,
    ModelInfer: { ...generic.ModelInfer, requestDeserialize: decodeInfer, responseSerialize: passThrough },
    ModelStreamInfer: { ...generic.ModelStreamInfer, requestDeserialize: decodeInfer, responseSerialize: passThrough },
  };
  const { models } = context;
  const ready = (name: string, version: string) => {
    try {
      models.resolve(name, version);
      return true;
    } catch {
      return false;
    }
  };
  const notServed = (what: string) => () => {
    throw unimplemented(`${what} is not served by tickserve (requests carry their tensors in the message)`);
  };
  server.addService(definition, {
    ServerLive: unary(context, 'ServerLive', () => ({ live: true })),
    ServerReady: unary(context, 'ServerReady', () => ({ ready: host.ready() })),
    ModelReady: unary(context, 'ModelReady', (r: { name: string; version: string }) => ({ ready: ready(r.name, r.version) })),
    ServerMetadata: unary(context, 'ServerMetadata', () => ({ name: 'tickserve', version: PACKAGE_VERSION, extensions: EXTENSIONS })),
    ModelMetadata: unary(context, 'ModelMetadata', (r: { name: string; version: string }) => {
      const model = models.resolve(r.name, r.version);
      return {
        name: model.name,
        versions: models.index().filter((s) => s.model === model.name && s.state === 'READY').map((s) => s.version),
        platform: 'onnxruntime_onnx',
        inputs: tensorMetadata(model, 'inputs'),
        outputs: tensorMetadata(model, 'outputs'),
      };
    }),
    ModelInfer: modelInferHandler(context),
    ModelStreamInfer: modelStreamInferHandler(context, sessions),
    ModelConfig: unary(context, 'ModelConfig', (r: { name: string; version: string }) => ({ config: effectiveModelConfig(models.resolve(r.name, r.version)) })),
    ModelStatistics: unary(context, 'ModelStatistics', (r: { name: string; version: string }) => {
      const chosen = r.name === '' ? [...models.instances()] : r.version === '' ? [...models.instances()].filter((i) => i.name === models.resolve(r.name, '').name) : [models.resolve(r.name, r.version)];
      return { model_stats: chosen.map(modelStatistics) };
    }),
    RepositoryIndex: unary(context, 'RepositoryIndex', (r: { ready: boolean }) => {
      const known = models.index();
      const loaded = new Set(known.map((s) => s.model));
      const unloaded = host.repositoryModels().filter((m) => !loaded.has(m.name)).map((m) => ({ model: m.name, version: '', state: 'UNAVAILABLE', reason: m.reason }));
      const all = [...known, ...unloaded].filter((s) => !r.ready || s.state === 'READY').sort((a, b) => a.model.localeCompare(b.model));
      return { models: all.map((s) => ({ name: s.model, version: s.version, state: s.state, reason: s.reason })) };
    }),
    RepositoryModelLoad: unary(context, 'RepositoryModelLoad', async (r: RepositoryRequest, call) => {
      refuseParameters(r, 'RepositoryModelLoad', []);
      await host.loadModel(r.model_name, initiatorOf(call, 'RepositoryModelLoad'));
      return {};
    }),
    RepositoryModelUnload: unary(context, 'RepositoryModelUnload', async (r: RepositoryRequest, call) => {
      // tritonclient always sends unload_dependents; tickserve serves no ensembles, so no model has dependents.
      refuseParameters(r, 'RepositoryModelUnload', ['unload_dependents']);
      await host.unloadModel(r.model_name, initiatorOf(call, 'RepositoryModelUnload'));
      return {};
    }),
    SystemSharedMemoryStatus: unary(context, 'SystemSharedMemoryStatus', notServed('system shared memory')),
    SystemSharedMemoryRegister: unary(context, 'SystemSharedMemoryRegister', notServed('system shared memory')),
    SystemSharedMemoryUnregister: unary(context, 'SystemSharedMemoryUnregister', notServed('system shared memory')),
    CudaSharedMemoryStatus: unary(context, 'CudaSharedMemoryStatus', notServed('CUDA shared memory')),
    CudaSharedMemoryRegister: unary(context, 'CudaSharedMemoryRegister', notServed('CUDA shared memory')),
    CudaSharedMemoryUnregister: unary(context, 'CudaSharedMemoryUnregister', notServed('CUDA shared memory')),
    TraceSetting: unary(context, 'TraceSetting', () => {
      throw unimplemented('trace settings are not served: tracing is configured with the OTEL_* variables at startup');
    }),
    LogSettings: unary(context, 'LogSettings', () => {
      throw unimplemented('log settings are not served: LOG_LEVEL is set at startup');
    }),
  });
  return packageDefinition;
}

interface RepositoryRequest {
  model_name: string;
  parameters?: Record<string, unknown>;
}

/**
 * Triton's load parameters (`config`, an override of config.pbtxt, and `file:<path>`, model files sent with the
 * call) are refused rather than ignored: tickserve loads a model's config and files from the repository only.
 */
function refuseParameters(request: RepositoryRequest, method: string, taken: readonly string[]): void {
  for (const key of Object.keys(request.parameters ?? {})) {
    if (!taken.includes(key)) {
      throw invalidArgument(`parameter "${key}": ${method} takes no parameters here; tickserve loads config.pbtxt and the model files from the repository (change them there)`);
    }
  }
}

/** The instances as Triton lists them: one KIND_CPU group, or under CUDA a KIND_GPU group per GPU with its count. */
function instanceGroups(name: string, effective: ModelInstance['effective']) {
  if (effective.executionProvider !== 'cuda') return [{ name: `${name}_0`, count: effective.workers, kind: 'KIND_CPU', gpus: [] }];
  const perGpu = new Map<number, number>();
  for (let worker = 0; worker < effective.workers; worker++) {
    const gpu = deviceOf(effective.deviceIds, worker);
    perGpu.set(gpu, (perGpu.get(gpu) ?? 0) + 1);
  }
  return [...perGpu].map(([gpu, count], i) => ({ name: `${name}_${i}`, count, kind: 'KIND_GPU', gpus: [gpu] }));
}
