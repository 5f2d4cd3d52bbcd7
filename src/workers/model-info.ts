// What the main thread must know of a model before it lays out slabs: its signature (every input and output, with
// datatype and per-row dims), whether it batches, and how ModelService (one float32 vector each way) can carry it.
// Read once per load from a session of its own, which also proves that the model loads before any worker starts;
// the session is released at once.
//
// A model's declared shapes are checked here and its actual output shapes are checked on every batch
// (batch-handler.ts): a model whose output rows do not line up one-to-one with its input rows would hand one caller's
// rows to another.
import * as ort from 'onnxruntime-node';
import {
  datatypeOfOrt,
  elementCount,
  formatShape,
  isFixed,
  ORT_TYPES,
  type Datatype,
  type Signature,
  type TensorSpec,
} from '../models/tensor';
import type { ExecutionProvider } from './protocol';
import { openSession } from './session';

export { formatShape };

/** How ModelService carries the model: one float32 input row in, one float32 output row out. */
export interface SeedView {
  inputName: string;
  outputName: string;
  /** Index of the served output in the signature's outputs. */
  outputIndex: number;
  inputWidth: number;
  outputWidth: number;
}

export interface ModelInfo {
  signature: Signature;
  /** ModelService's view; a string: why ModelService cannot carry this model (the v2 API can). */
  seed: SeedView | string;
}

/** The model (or the variable that chose from it) cannot be served; names the variable to change. */
export class ModelRefused extends Error {
  override readonly name = 'ModelRefused';
  constructor(
    readonly variable: 'MODEL_PATH' | 'OUTPUT_NAME',
    message: string,
  ) {
    super(message);
  }
}

type Dim = number | string;

/** A dimension the model leaves open: symbolic (a name) or unknown (negative in some exporters' metadata). */
const isDynamic = (dim: Dim) => typeof dim === 'string' || dim < 0;

/** What config.pbtxt says of the model's tensors, checked against the ONNX file before anything else. */
export interface DeclaredSignature {
  /** The config file, for messages. */
  file: string;
  /** 0: the model does not batch; its tensors are passed as sent. */
  maxBatchSize: number;
  inputs: readonly DeclaredTensor[];
  outputs: readonly DeclaredTensor[];
}

export interface DeclaredTensor {
  name: string;
  /** Triton's v2 datatype name (FP32, INT64, ...). */
  dataType: string;
  /** Without the batch dimension when the model batches; -1 for variable. */
  dims: readonly number[];
}

type Meta = ort.InferenceSession.ValueMetadata & { isTensor: true };

function datatypeOf(meta: ort.InferenceSession.ValueMetadata, role: string, modelPath: string): Datatype {
  const datatype = meta.isTensor ? datatypeOfOrt(meta.type) : null;
  if (datatype === null) {
    throw new ModelRefused('MODEL_PATH', `model ${modelPath}: ${role} "${meta.name}" is ${meta.isTensor ? `a ${meta.type} tensor` : 'not a tensor'}, which tickserve cannot carry`);
  }
  return datatype;
}

/** Refuses a config.pbtxt that contradicts the model, naming both shapes (or types). */
function checkDeclared(session: ort.InferenceSession, declared: DeclaredSignature, modelPath: string, batched: boolean): void {
  const refuse = (message: string): never => {
    throw new ModelRefused('MODEL_PATH', `${declared.file} contradicts ${modelPath}: ${message}`);
  };
  for (const [role, tensors, metas] of [
    ['input', declared.inputs, session.inputMetadata],
    ['output', declared.outputs, session.outputMetadata],
  ] as const) {
    for (const tensor of tensors) {
      const meta = metas.find((m) => m.name === tensor.name);
      if (meta === undefined) {
        return refuse(`it declares ${role} "${tensor.name}", but the model's ${role}s are ${metas.map((m) => `"${m.name}"`).join(', ')}`);
      }
      const actual = datatypeOf(meta, role, modelPath);
      if (actual !== tensor.dataType) refuse(`${role} "${tensor.name}" is ${tensor.dataType} in the config, ${actual} in the model`);
      if (!meta.isTensor) continue;
      const shape = meta.shape;
      const declaredShape = batched ? ['batch', ...tensor.dims] : tensor.dims;
      const describe = () => `${role} "${tensor.name}" has dims ${formatShape(tensor.dims)} in the config` +
        `${batched ? ` (batching: shape ${formatShape(declaredShape)})` : ''}, shape ${formatShape(shape)} in the model`;
      if (shape.length !== declaredShape.length) refuse(describe());
      if (batched && !isDynamic(shape[0])) refuse(`${describe()}: max_batch_size > 0 needs a dynamic first dimension`);
      for (let i = batched ? 1 : 0; i < shape.length; i++) {
        const want = declaredShape[i] as number;
        if (want !== -1 && !isDynamic(shape[i]) && shape[i] !== want) refuse(describe());
      }
    }
  }
}

export interface InspectOptions {
  /** The output ModelService serves when the model has several (OUTPUT_NAME, or the one config.pbtxt names). */
  outputName: string | null;
  /** config.pbtxt's view of the tensors; null: everything comes from the ONNX file (Triton's auto-complete). */
  declared?: DeclaredSignature | null;
  /** MODEL_PATH: the model is served on ModelService only, so a model it cannot carry is refused outright. */
  requireSeed?: boolean;
}

/** A tensor's per-request dims: after the batch axis when batching, config.pbtxt fixing what the model leaves open. */
function specOf(meta: Meta, datatype: Datatype, batches: boolean, declared: DeclaredTensor | undefined): TensorSpec {
  const modelDims = batches ? meta.shape.slice(1) : meta.shape;
  const dims = modelDims.map((d, i) => {
    if (!isDynamic(d)) return d as number;
    const fixed = declared?.dims[i];
    return fixed !== undefined && fixed > 0 ? fixed : -1;
  });
  return { name: meta.name, datatype, dims };
}

function zeros(spec: TensorSpec, batches: boolean): ort.Tensor {
  const shape = batches ? [1, ...spec.dims] : [...spec.dims];
  const count = elementCount(spec.dims);
  const type = ORT_TYPES[spec.datatype] as ort.Tensor.Type;
  switch (spec.datatype) {
    case 'INT64':
      return new ort.Tensor(type, new BigInt64Array(count), shape);
    case 'UINT64':
      return new ort.Tensor(type, new BigUint64Array(count), shape);
    case 'BOOL':
      return new ort.Tensor(type, new Uint8Array(count), shape);
    case 'FP16':
      return new ort.Tensor(type, new Uint16Array(count), shape);
    case 'BYTES':
      return new ort.Tensor(type, new Array<string>(count).fill(''), shape);
    default: {
      const Arrays = { UINT8: Uint8Array, UINT16: Uint16Array, UINT32: Uint32Array, INT8: Int8Array, INT16: Int16Array, INT32: Int32Array, FP32: Float32Array, FP64: Float64Array };
      return new ort.Tensor(type, new Arrays[spec.datatype as keyof typeof Arrays](count), shape);
    }
  }
}

export async function inspectModel(
  modelPath: string,
  provider: ExecutionProvider,
  options: InspectOptions = { outputName: null },
): Promise<ModelInfo> {
  const session = await openSession(modelPath, provider, 1);
  try {
    const declared = options.declared ?? null;
    const inputs = session.inputMetadata.map((m) => m as Meta);
    // max_batch_size in config.pbtxt decides batching; without it (-1), every input's first dimension dynamic does.
    const autoBatches = inputs.every((m) => m.isTensor && m.shape.length >= 1 && isDynamic(m.shape[0]));
    // Batching: as config.pbtxt says, else every input's first dimension dynamic. Without config.pbtxt a fixed
    // first dimension of 1 is the batch's too (one request at a time, a common PyTorch export); any other fixed
    // first dimension is refused: it cannot be a batch, and the model's inputs need config.pbtxt to say so.
    const autoDecides = declared === null || declared.maxBatchSize < 0;
    const batches = autoDecides ? autoBatches : declared.maxBatchSize > 0;
    if (declared !== null) checkDeclared(session, declared, modelPath, batches);
    const outputs = session.outputMetadata.map((m) => m as Meta);
    const inputTypes = inputs.map((m) => datatypeOf(m, 'input', modelPath));
    const outputTypes = outputs.map((m) => datatypeOf(m, 'output', modelPath));
    if (autoDecides && !batches) {
      for (const input of inputs) {
        if (input.shape.length >= 1 && !isDynamic(input.shape[0]) && input.shape[0] !== 1) {
          throw new ModelRefused(
            'MODEL_PATH',
            `model ${modelPath}: input "${input.name}" has shape ${formatShape(input.shape)}, a fixed batch dimension ` +
              `of ${input.shape[0]}; the batch dimension (the first) must be dynamic or 1 (or give the model a ` +
              'config.pbtxt with max_batch_size: 0 to pass its tensors as sent)',
          );
        }
      }
    }
    // Without config.pbtxt the first dimension is the batch's, even when fixed at 1: one output row per input row.
    const batchAxis = batches || autoDecides;
    for (const output of outputs) {
      const first = output.shape[0];
      if (batchAxis && (output.shape.length < 1 || (!isDynamic(first) && first !== 1))) {
        throw new ModelRefused(
          'MODEL_PATH',
          `model ${modelPath}: output "${output.name}" has shape ${formatShape(output.shape)}; its first dimension ` +
            'must be the batch (dynamic or 1), one output row per input row',
        );
      }
    }
    const inputSpecs = inputs.map((m, i) => specOf(m, inputTypes[i], batches, declared?.inputs.find((t) => t.name === m.name)));
    let outputSpecs = outputs.map((m, i) => specOf(m, outputTypes[i], batches, declared?.outputs.find((t) => t.name === m.name)));
    // With every input fixed, one probe settles the outputs' dims (often symbolic in the file), and shows at once a
    // model that does not answer one output row per input row.
    if (inputSpecs.every(isFixed)) {
      const feeds = Object.fromEntries(inputSpecs.map((spec) => [spec.name, zeros(spec, batches)]));
      const results = await session.run(feeds);
      outputSpecs = outputSpecs.map((spec) => {
        const dims = results[spec.name].dims.slice();
        results[spec.name].dispose();
        if (batchAxis && (dims.length < 1 || dims[0] !== 1)) {
          throw new ModelRefused(
            'MODEL_PATH',
            `model ${modelPath}: output "${spec.name}" has shape ${formatShape(dims)} for one input row; ` +
              'its first dimension must be the batch (1 here), one output row per input row',
          );
        }
        // Probed dims replace only what the file left open: a dimension the file fixes stays as it says.
        const probed = batches ? dims.slice(1) : dims;
        return { ...spec, dims: spec.datatype === 'BYTES' ? spec.dims : probed };
      });
    }
    const signature: Signature = { inputs: inputSpecs, outputs: outputSpecs, batches };
    const seed = seedView(signature, modelPath, options.outputName);
    if (typeof seed === 'string' && (options.requireSeed ?? false)) {
      throw new ModelRefused(/OUTPUT_NAME/.test(seed) ? 'OUTPUT_NAME' : 'MODEL_PATH', seed);
    }
    return { signature, seed };
  } finally {
    await session.release();
  }
}

/** How ModelService carries the model, or why it cannot (the message names the model and what it has). */
function seedView(signature: Signature, modelPath: string, outputName: string | null): SeedView | string {
  const { inputs, outputs } = signature;
  const names = outputs.map((o) => `"${o.name}"`).join(', ');
  if (inputs.length !== 1) {
    return `model ${modelPath} has ${inputs.length} inputs; ModelService carries one float32 input (use the KServe v2 API)`;
  }
  let outputIndex = 0;
  if (outputName !== null) {
    outputIndex = outputs.findIndex((o) => o.name === outputName);
    if (outputIndex < 0) return `model ${modelPath} has no output "${outputName}"; its outputs are ${names} (OUTPUT_NAME)`;
  } else if (outputs.length !== 1) {
    return `model ${modelPath} has ${outputs.length} outputs (${names}); set OUTPUT_NAME to the one to serve`;
  }
  const [input] = inputs;
  const output = outputs[outputIndex];
  for (const [role, spec] of [['input', input], ['output', output]] as const) {
    if (spec.datatype !== 'FP32') {
      return `model ${modelPath}: its ${role} "${spec.name}" is ${spec.datatype}; ModelService carries float32 only (use the KServe v2 API)`;
    }
  }
  if ((signature.batches && input.dims.length < 1) || !isFixed(input)) {
    return `model ${modelPath}: input "${input.name}" has dims ${formatShape(input.dims)}; ModelService needs every ` +
      `${signature.batches ? 'non-batch ' : ''}dimension fixed (by the model or by config.pbtxt), or use the KServe v2 API`;
  }
  if (!isFixed(output)) {
    return `model ${modelPath}: output "${output.name}" has dims ${formatShape(output.dims)}, not fixed; ModelService needs a fixed row (use the KServe v2 API)`;
  }
  const inputWidth = elementCount(input.dims);
  const outputWidth = elementCount(output.dims);
  if (outputWidth === 0) return `model ${modelPath}: output "${output.name}" is empty for one row`;
  return { inputName: input.name, outputName: output.name, outputIndex, inputWidth, outputWidth };
}

/**
 * Checks one batch's output against the shape the server laid out at load; null when it matches, else what is
 * wrong. Called on every batch, before any row is copied out: the total count alone cannot tell [2N, w/2] from
 * [N, w], and the first would answer each caller with other callers' rows. A -1 in `dims` matches anything.
 */
export function outputShapeError(name: string, actual: readonly number[], rows: number, dims: readonly number[], batches: boolean): string | null {
  const lead = batches ? 1 : 0;
  let matches = actual.length === dims.length + lead && (!batches || actual[0] === rows);
  for (let i = 0; matches && i < dims.length; i++) matches = dims[i] < 0 || actual[i + lead] === dims[i];
  if (matches) return null;
  const expected = batches ? [rows, ...dims] : dims;
  return `output "${name}" has shape ${formatShape(actual)} for a batch of ${rows} rows; expected ${formatShape(expected)}`;
}
