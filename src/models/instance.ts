// One loaded version of one model: its effective configuration, its own slabs, worker pool and batcher. Versions
// never share a batch. Its life:
//
//   LOADING      inspect the model (and check config.pbtxt against it), lay out slabs, start the workers, warm up
//   READY        the registry routes new requests to it
//   UNLOADING    the registry routes nothing more to it; every request it already took is answered on it (queued
//                and in-flight batches finish), then its workers close and its memory goes
//   UNLOADED     gone; a load that failed never gets past LOADING (the registry records why)
//
// A request is routed and enqueued in one synchronous step (registry.resolve, then batcher.enqueue), so a version
// cannot start unloading between the two: whatever it accepted, it answers.
import { totalmem } from 'node:os';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { Logger } from 'pino';
import { Batcher, type BatchObserver } from '../batching/batcher';
import type { BatchDelay } from '../batching/policy';
import { createClaims, createSlab, createStarts, createWorkerSlots, slabBytes, type SlabLayout } from '../batching/slab';
import { inspectModel, ModelRefused, type DeclaredSignature, type ModelInfo, type SeedView } from '../workers/model-info';
import { WorkerPool } from '../workers/pool';
import type { ExecutionProvider, WarmupSample } from '../workers/protocol';
import { encodeVersionField } from '../main/codec';
import { varintSize } from '../main/wire';
import type { InstanceGroupConfig, ModelConfig } from './config';
import { versionEscape } from './repository';
import { InferenceStatistics } from './statistics';
import { formatShape, isFixed, rowBytesOf, type Signature } from './tensor';

export type VersionState = 'LOADING' | 'READY' | 'UNLOADING' | 'UNLOADED';

/** What the server's environment says for every model; a model's config.pbtxt overrides it. */
export interface ServingDefaults {
  maxBatchSize: number;
  maxQueueDelayUs: number;
  /** BATCH_DELAY; a model's `batch_delay` parameter overrides it. */
  batchDelay: BatchDelay;
  preferredBatchSizes: readonly number[];
  maxQueueSize: number;
  workers: number;
  /** GPUs visible to the process: a KIND_GPU instance_group without gpus puts its count on each. */
  gpus: number;
  ortIntraOpThreads: number;
  workerTimeoutMs: number;
  executionProvider: ExecutionProvider;
  maxReceiveMessageBytes: number;
  /** OUTPUT_NAME: the output to serve of a model with several, when its config does not name one. */
  outputName: string | null;
}

/** Everything needed to load one version. */
export interface VersionSpec {
  model: string;
  version: string;
  /** The ONNX file. */
  file: string;
  /** The model's parsed config.pbtxt and its path; null: auto-complete from the ONNX file and the environment. */
  config: ModelConfig | null;
  configFile: string | null;
  /** What the repository saw of the files; a different fingerprint is a different instance of the version. */
  fingerprint: string;
  /** MODEL_PATH: served on ModelService only, so a model it cannot carry is refused at load. */
  seedOnly?: boolean;
  /** Why the folder cannot be loaded (its model file is missing): its load fails with this, as any failed load. */
  problem?: string;
}

/** The configuration a version actually runs with: config.pbtxt where it speaks, else the environment and the model. */
export interface EffectiveConfig {
  /** 0: the model does not batch (one request at a time, tensors as sent). */
  maxBatchSize: number;
  /** fixed: the wait for company; adaptive: its upper bound. */
  maxQueueDelayUs: number;
  batchDelay: BatchDelay;
  preferredBatchSizes: number[];
  workers: number;
  executionProvider: ExecutionProvider;
  /** GPU per worker (instance_group gpus), by worker index; empty: worker i uses GPU i. */
  deviceIds: number[];
  /** The batch sizes each worker ran once before the version was marked ready. */
  warmupBatchSizes: number[];
}

/** A refusal to load, worded for the model's state and the log; `variable` when an environment variable decides. */
export class LoadError extends Error {
  override readonly name = 'LoadError';
  constructor(
    message: string,
    readonly variable: string | null = null,
  ) {
    super(message);
  }
}

/** Batches that may be in flight at once, per worker: one computing, one assembled and waiting to start. */
export const SLABS_PER_WORKER = 2;

/** The share of the machine's (or the container's) memory that one version's batch slabs may take. */
const SLAB_MEMORY_SHARE = 0.5;

const FLOAT_BYTES = 4;

export interface InstanceHooks {
  logger: Logger;
  /** Told of every batch of this version (metrics and spans carry the model and version). */
  observer: BatchObserver;
  /** Worker entry for the pool; tests pass fixtures. */
  workerFilename?: string;
  /** How long a failed batch's slab waits for its worker to let go of it (slab.ts); tests shorten it. */
  claimReleaseWaitMs?: number;
}

export class ModelInstance {
  state: VersionState = 'READY';
  readonly name: string;
  readonly version: string;
  /** The largest batch_size a request may carry, and what sets it (for the refusal's message). */
  readonly maxRows: number;
  readonly maxRowsLimit: string;
  readonly signature: Signature;
  /**
   * A variable dimension or strings among the inputs: each request runs alone, its inputs as sent (the batch task
   * carries their shapes).
   */
  readonly solo: boolean;
  /** The most bytes of each input a solo model's request may carry once unpacked: its slab region. */
  readonly soloInputBytes: number;
  /** How ModelService carries this model; null when it cannot (seedRefusal says why: the v2 API can). */
  readonly seed: SeedView | null;
  readonly seedRefusal: string;
  /** ModelService's row widths, in floats (0 when it cannot carry the model). */
  readonly inputWidth: number;
  readonly outputWidth: number;
  /** The version as an encoded model_version field, copied into every ModelService answer it computes. */
  readonly versionField: Buffer;
  private unloading: Promise<void> | null = null;

  private constructor(
    readonly spec: VersionSpec,
    readonly model: ModelInfo,
    readonly effective: EffectiveConfig,
    readonly batcher: Batcher,
    private readonly pool: WorkerPool,
    /** Counters for ModelStatistics and the Prometheus endpoint alike. */
    readonly stats: InferenceStatistics,
    readonly loadedAt: number,
    layout: SlabLayout,
  ) {
    this.name = spec.model;
    this.version = spec.version;
    this.signature = model.signature;
    this.solo = !model.signature.inputs.every(isFixed);
    this.soloInputBytes = this.solo ? Math.min(...layout.inputRowBytes) : 0;
    this.seed = typeof model.seed === 'string' ? null : model.seed;
    this.seedRefusal = typeof model.seed === 'string' ? model.seed : '';
    this.maxRows = model.signature.batches ? effective.maxBatchSize : 1;
    this.inputWidth = this.seed?.inputWidth ?? 0;
    this.outputWidth = this.seed?.outputWidth ?? 0;
    this.versionField = encodeVersionField(spec.version);
    this.maxRowsLimit = model.signature.batches
      ? `${spec.config?.maxBatchSize !== undefined ? 'max_batch_size' : 'MAX_BATCH_SIZE'} ${this.maxRows}`
      : spec.config?.maxBatchSize === 0
        ? `1, the most this model takes (its config.pbtxt sets max_batch_size 0)`
        : `1, the most this model takes (its input "${model.signature.inputs[0].name}" has a fixed batch dimension of 1)`;
  }

  /** Loads, lays out, starts and warms up one version; throws LoadError (or the worker's failure) on any problem. */
  static async load(spec: VersionSpec, defaults: ServingDefaults, hooks: InstanceHooks): Promise<ModelInstance> {
    if (spec.problem !== undefined) throw new LoadError(spec.problem);
    // A repository version loads only what is inside its folder (MODEL_PATH is the operator's own file, links and all).
    if (spec.seedOnly !== true) {
      const escape = versionEscape(path.dirname(spec.file), spec.file);
      if (escape !== null) throw new LoadError(`refused: ${escape}`);
    }
    const config = spec.config;
    // Triton lets a request leave an optional input out; tickserve would refuse every such request, so it refuses
    // the config instead of taking a promise it does not keep.
    const optional = config?.inputs.find((input) => input.optional === true);
    if (optional !== undefined) {
      throw new LoadError(`${spec.configFile ?? 'config.pbtxt'}:${optional.line}: input "${optional.name}": optional: true is not served (every request must carry every input)`);
    }
    const provider = executionProviderOf(config, defaults);
    const model = await inspect(spec, defaults, provider);
    const effective = effectiveConfig(spec, defaults, model, provider);
    const { signature } = model;
    // A model with a variable dimension (or strings) runs each request alone: its input regions hold one request as
    // sent (as large as a message may be), and its outputs come back in the batch's result.
    const solo = !signature.inputs.every(isFixed);
    const layout: SlabLayout = solo
      ? { maxBatchRows: 1, inputRowBytes: signature.inputs.map(() => defaults.maxReceiveMessageBytes), outputRowBytes: signature.outputs.map(() => 0) }
      : {
          maxBatchRows: Math.max(1, effective.maxBatchSize),
          inputRowBytes: signature.inputs.map(rowBytesOf),
          outputRowBytes: signature.outputs.map((o) => (isFixed(o) ? rowBytesOf(o) : 0)),
        };
    const slabs = allocateSlabs(spec, layout, effective.workers * SLABS_PER_WORKER);
    const pool = new WorkerPool({
      workers: effective.workers,
      taskTimeoutMs: defaults.workerTimeoutMs,
      filename: hooks.workerFilename,
      claimReleaseWaitMs: hooks.claimReleaseWaitMs,
      init: {
        modelPath: spec.file,
        inputs: signature.inputs.map((t) => ({ name: t.name, datatype: t.datatype, dims: [...t.dims] })),
        outputs: signature.outputs.map((t) => ({ name: t.name, datatype: t.datatype, dims: [...t.dims] })),
        batches: signature.batches,
        layout,
        slabs,
        claims: createClaims(slabs.length),
        starts: createStarts(slabs.length),
        intraOpThreads: defaults.ortIntraOpThreads,
        executionProvider: provider,
        deviceIds: effective.deviceIds,
        warmup: solo ? [] : warmupSamples(spec, signature, effective),
        workerSlots: createWorkerSlots(effective.workers),
      },
    });
    try {
      // A batch per slab, all at once (a one-row batch; for a solo model an empty one): every worker has opened its
      // session and run its warm-up (which happens before a worker takes its first task) before the version is
      // marked ready.
      const warmups = await Promise.all(slabs.map((_, slab) => pool.run(slab, solo ? 0 : 1)));
      const failed = warmups.find((done) => done.error !== undefined);
      if (failed?.error !== undefined) {
        const what = failed.error.startsWith('warm-up failed') ? failed.error : `fails on a batch of one row: ${failed.error}`;
        throw new LoadError(`model ${spec.file} ${what}`);
      }
    } catch (error) {
      await pool.close();
      if (error instanceof LoadError) throw error;
      throw new LoadError(`warm-up failed: ${error instanceof Error ? error.message : String(error)}`);
    }
    const stats = new InferenceStatistics(hooks.observer);
    const batcher = new Batcher({
      maxBatchRows: layout.maxBatchRows,
      maxQueueDelayUs: effective.maxQueueDelayUs,
      batchDelay: effective.batchDelay,
      workers: effective.workers,
      preferredBatchSizes: effective.preferredBatchSizes,
      // Never less than the largest request admitted: a solo model's one-request batches hold up to max_batch_size
      // rows (config.pbtxt may set it above MAX_QUEUE_SIZE), and a request that could never be queued would be
      // refused for good, or held for good on a stream.
      maxQueueRows: Math.max(defaults.maxQueueSize, layout.maxBatchRows, signature.batches ? effective.maxBatchSize : 1),
      layout,
      slabs,
      executor: pool,
      observer: stats,
      solo,
      batches: signature.batches,
      outputDims: signature.outputs.map((o) => o.dims),
    });
    return new ModelInstance(spec, model, effective, batcher, pool, stats, Date.now(), layout);
  }

  /** Whether new requests may be routed here. */
  get accepting(): boolean {
    return this.state === 'READY';
  }

  /**
   * Takes no more requests; answers every one it took (queued and in-flight batches finish here), then closes its
   * workers. Idempotent.
   */
  unload(): Promise<void> {
    this.unloading ??= (async () => {
      this.state = 'UNLOADING';
      await this.batcher.drain();
      await this.pool.close();
      this.state = 'UNLOADED';
    })();
    return this.unloading;
  }

  /** Shutdown past its grace period: stop the workers whatever is left. */
  async forceClose(): Promise<void> {
    this.state = 'UNLOADING';
    await this.pool.close(true);
    this.state = 'UNLOADED';
  }
}

function executionProviderOf(config: ModelConfig | null, defaults: ServingDefaults): ExecutionProvider {
  const kinds = new Set((config?.instanceGroups ?? []).map((g) => g.kind).filter((k) => k !== 'auto'));
  if (kinds.size > 1) throw new LoadError('instance_group mixes KIND_CPU and KIND_GPU; tickserve runs a version on one kind');
  const [kind] = kinds;
  return kind === 'gpu' ? 'cuda' : kind === 'cpu' ? 'cpu' : defaults.executionProvider;
}

async function inspect(spec: VersionSpec, defaults: ServingDefaults, provider: ExecutionProvider): Promise<ModelInfo> {
  const config = spec.config;
  const declared: DeclaredSignature | null =
    config === null || (config.inputs.length === 0 && config.outputs.length === 0 && config.maxBatchSize === undefined)
      ? null
      : {
          file: spec.configFile ?? 'config.pbtxt',
          // Unset with tensors declared: as Triton, the model's own first dimension decides (see below).
          maxBatchSize: config.maxBatchSize ?? -1,
          inputs: config.inputs,
          outputs: config.outputs,
        };
  // With no max_batch_size in the config (-1), whether the model batches is the ONNX file's to say; the declared
  // tensors are checked all the same (model-info.ts).
  const outputName = config?.outputs.length === 1 ? config.outputs[0].name : defaults.outputName;
  let model: ModelInfo;
  try {
    model = await inspectModel(spec.file, provider, { outputName, declared, requireSeed: spec.seedOnly === true });
  } catch (error) {
    if (error instanceof ModelRefused) throw new LoadError(error.message, error.variable === 'OUTPUT_NAME' ? 'OUTPUT_NAME' : null);
    const message = error instanceof Error ? error.message : String(error);
    // onnxruntime refuses external data whose location is absolute or leaves the model's folder.
    if (/External data path/i.test(message)) {
      throw new LoadError(`refused: model ${spec.file} keeps tensor data outside its version folder (${message.replace(/\s+/g, ' ').trim()})`);
    }
    // onnxruntime without its CUDA binaries: the setting at fault is the provider (or the config's KIND_GPU).
    const cudaMissing = provider === 'cuda' && /cannot use CUDA/.test(message);
    if (cudaMissing && (config?.instanceGroups ?? []).some((g) => g.kind === 'gpu')) {
      throw new LoadError(`${spec.configFile ?? 'config.pbtxt'} asks for instance_group kind KIND_GPU, but ${message.replace(/^EXECUTION_PROVIDER=cuda, but /, '')}`);
    }
    throw new LoadError(message, cudaMissing ? 'EXECUTION_PROVIDER' : null);
  }
  // A request of one row: the features field's tag and length, then the row's floats (for ModelService; a v2
  // request carries the same bytes and more).
  const rowBytes = model.signature.inputs.every(isFixed) ? model.signature.inputs.reduce((n, t) => n + rowBytesOf(t), 0) : 0;
  const oneRowMessage = rowBytes + 1 + varintSize(rowBytes);
  if (oneRowMessage > defaults.maxReceiveMessageBytes) {
    throw new LoadError(
      `a request of one row of ${rowBytes / FLOAT_BYTES} floats (${rowBytes / FLOAT_BYTES} × 4 bytes) needs at least ` +
        `${oneRowMessage} bytes, so every request would be refused; raise MAX_RECEIVE_MESSAGE_BYTES to at least ${oneRowMessage}`,
      'MAX_RECEIVE_MESSAGE_BYTES',
    );
  }
  return model;
}

function effectiveConfig(spec: VersionSpec, defaults: ServingDefaults, model: ModelInfo, provider: ExecutionProvider): EffectiveConfig {
  const config = spec.config;
  const batches = model.signature.batches;
  const maxBatchSize = batches ? (config?.maxBatchSize ?? defaults.maxBatchSize) : 0;
  if (batches && maxBatchSize === 0) {
    throw new LoadError(`max_batch_size is 0 but the model's inputs have a dynamic batch dimension`);
  }
  const rows = Math.max(1, maxBatchSize);
  const preferred = (config?.dynamicBatching?.preferredBatchSizes ?? defaults.preferredBatchSizes).filter((n) => n <= rows);
  const { workers, deviceIds } = instanceWorkers(config?.instanceGroups ?? [], provider, defaults);
  const warmupBatchSizes = config !== null && config.warmup.length > 0
    ? [...new Set(config.warmup.map((w) => Math.max(1, w.batchSize)))]
    : defaultWarmupSizes(rows, preferred);
  return {
    maxBatchSize,
    maxQueueDelayUs: config?.dynamicBatching?.maxQueueDelayUs ?? defaults.maxQueueDelayUs,
    batchDelay: config?.batchDelay ?? defaults.batchDelay,
    preferredBatchSizes: [...preferred].sort((a, b) => a - b),
    workers: Math.max(1, workers),
    executionProvider: provider,
    deviceIds,
    warmupBatchSizes,
  };
}

/**
 * instance_group as Triton reads it: each group's count (1 when not written) is per GPU on a GPU (each GPU it lists,
 * else each visible one), and the groups add up; `deviceIds` then has each worker's GPU, by worker id. Without
 * instance_group: WORKERS (one per GPU under CUDA, worker i on GPU i).
 */
export function instanceWorkers(
  groups: readonly InstanceGroupConfig[],
  provider: ExecutionProvider,
  defaults: Pick<ServingDefaults, 'workers' | 'gpus'>,
): { workers: number; deviceIds: number[] } {
  if (groups.length === 0) return { workers: defaults.workers, deviceIds: [] };
  let workers = 0;
  const deviceIds: number[] = [];
  for (const group of groups) {
    const count = group.count ?? 1;
    if (provider !== 'cuda') {
      workers += count;
      continue;
    }
    const gpus = group.gpus.length > 0 ? group.gpus : Array.from({ length: defaults.gpus }, (_, gpu) => gpu);
    for (const gpu of gpus) for (let i = 0; i < count; i++) deviceIds.push(gpu);
    workers += count * gpus.length;
  }
  return { workers, deviceIds };
}

/**
 * Without model_warmup: zeros at 1, 2, 4, ... up to the largest batch, the preferred sizes and the largest itself,
 * so that the first real batch of a common size does not pay onnxruntime's first-run cost (its allocations for a
 * shape). Sizes in between cost little once their neighbours have run.
 */
function defaultWarmupSizes(maxRows: number, preferred: readonly number[]): number[] {
  const sizes = new Set<number>([...preferred, maxRows]);
  for (let n = 1; n < maxRows; n *= 2) sizes.add(n);
  return [...sizes].sort((a, b) => a - b);
}

/** The warm-up batches every worker runs once before it takes work: model_warmup's samples, else zeros. */
function warmupSamples(spec: VersionSpec, signature: Signature, effective: EffectiveConfig): WarmupSample[] {
  const config = spec.config;
  if (config === null || config.warmup.length === 0) {
    return effective.warmupBatchSizes.map((rows) => ({ rows, inputs: signature.inputs.map(() => 'zero' as const), count: 1 }));
  }
  return config.warmup.map((sample) => {
    const rows = Math.max(1, sample.batchSize);
    const named = Object.keys(sample.inputs);
    const missing = signature.inputs.find((t) => sample.inputs[t.name] === undefined);
    const unknown = named.find((name) => !signature.inputs.some((t) => t.name === name));
    if (missing !== undefined || unknown !== undefined) {
      throw new LoadError(
        `model_warmup "${sample.name}" must give exactly the model's inputs (${signature.inputs.map((t) => `"${t.name}"`).join(', ')})` +
          `${unknown !== undefined ? `; it names "${unknown}"` : `; "${missing!.name}" is missing`}`,
      );
    }
    if (rows > Math.max(1, effective.maxBatchSize)) {
      throw new LoadError(`model_warmup "${sample.name}": batch_size ${rows} is over max_batch_size ${effective.maxBatchSize}`);
    }
    const inputs = signature.inputs.map((tensor) => {
      const input = sample.inputs[tensor.name];
      if (input.dataType !== tensor.datatype) {
        throw new LoadError(`model_warmup "${sample.name}": input "${tensor.name}" is ${tensor.datatype}, not ${input.dataType}`);
      }
      if (formatShape(input.dims) !== formatShape(tensor.dims)) {
        throw new LoadError(`model_warmup "${sample.name}": input "${tensor.name}" has dims ${formatShape(input.dims)}; the model's are ${formatShape(tensor.dims)}`);
      }
      if (input.source === 'zero' || input.source === 'random') return input.source;
      // As Triton: input_data_file is read from the model's warmup/ folder, raw little-endian values for one row.
      const file = path.join(path.dirname(path.dirname(spec.file)), 'warmup', input.source.file);
      let bytes: Buffer;
      try {
        bytes = readFileSync(file);
      } catch (error) {
        throw new LoadError(`model_warmup "${sample.name}": cannot read ${file} (${error instanceof Error ? error.message : String(error)})`);
      }
      if (bytes.length !== rowBytesOf(tensor)) {
        throw new LoadError(`model_warmup "${sample.name}": ${file} holds ${bytes.length} bytes; one row of "${tensor.name}" is ${rowBytesOf(tensor)}`);
      }
      return new Uint8Array(bytes);
    });
    return { rows, inputs, count: Math.max(1, sample.count) };
  });
}

/** One slab per batch that may be in flight, made once; refused with the numbers when they cannot fit. */
function allocateSlabs(spec: VersionSpec, layout: SlabLayout, count: number): SharedArrayBuffer[] {
  const bytes = slabBytes(layout) * count;
  const constrained = process.constrainedMemory?.() ?? 0;
  const memory = constrained > 0 ? Math.min(constrained, totalmem()) : totalmem();
  const budget = Math.floor(memory * SLAB_MEMORY_SHARE);
  const sum = (list: readonly number[]) => list.reduce((a, b) => a + b, 0);
  const [inputBytes, outputBytes] = [sum(layout.inputRowBytes), sum(layout.outputRowBytes)];
  const row = inputBytes % 4 === 0 && outputBytes % 4 === 0
    ? `(${inputBytes / 4} + ${outputBytes / 4}) floats × 4 bytes`
    : `(${inputBytes} + ${outputBytes}) bytes`;
  const describe = () =>
    `slab memory = ${layout.maxBatchRows} rows × ${row} × ${count} slabs (${SLABS_PER_WORKER} per worker) = ${formatBytes(bytes)}`;
  const fromConfig = spec.config?.maxBatchSize !== undefined;
  const variable = layout.maxBatchRows > 1 && !fromConfig ? 'MAX_BATCH_SIZE' : layout.maxBatchRows > 1 ? null : 'WORKERS';
  const lower = layout.maxBatchRows > 1 ? `lower ${fromConfig ? 'max_batch_size' : 'MAX_BATCH_SIZE'} or WORKERS` : 'lower WORKERS';
  if (bytes > budget) {
    throw new LoadError(
      `${describe()}, over the ${formatBytes(budget)} the slabs may take (half of ${formatBytes(memory)} of memory); ${lower}`,
      variable,
    );
  }
  try {
    return Array.from({ length: count }, () => createSlab(layout));
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    throw new LoadError(`${describe()}, which could not be allocated (${reason}); ${lower}`, variable);
  }
}

const formatBytes = (bytes: number) =>
  bytes >= 2 ** 30 ? `${(bytes / 2 ** 30).toFixed(1)} GiB` : bytes >= 2 ** 20 ? `${(bytes / 2 ** 20).toFixed(1)} MiB` : `${bytes} bytes`;

