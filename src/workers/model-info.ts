// What the main thread must know of a model before it lays out slabs: its input and output names, row widths and
// whether it batches at all. Read once at start-up from a session of its own, which also proves that the model
// loads before any worker starts; the session is released at once.
//
// A model's declared shapes are checked here and its actual output shape is checked on every batch (onnx-worker.ts):
// a model whose output rows do not line up one-to-one with its input rows would hand one caller's rows to another.
import * as ort from 'onnxruntime-node';
import type { ExecutionProvider } from './protocol';
import { openSession } from './session';

export interface ModelInfo {
  inputName: string;
  outputName: string;
  /** The dimensions one row fills: after the batch dimension when the model batches, else the whole shape. */
  inputDims: number[];
  inputWidth: number;
  /** The output's dimensions for one row, likewise (as the model answered a probe); their product is outputWidth. */
  outputDims: number[];
  outputWidth: number;
  /**
   * True: batches of rows, shape [rows, ...inputDims]. False (a fixed batch dimension of 1, or max_batch_size 0):
   * one request at a time, its tensor exactly inputDims.
   */
  batches: boolean;
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

export const formatShape = (shape: readonly Dim[]) => `[${shape.join(', ')}]`;

function floatTensor(meta: ort.InferenceSession.ValueMetadata, role: string, modelPath: string) {
  if (!meta.isTensor || meta.type !== 'float32') {
    throw new ModelRefused('MODEL_PATH', `model ${modelPath}: its ${role} "${meta.name}" must be a float32 tensor`);
  }
  return meta;
}

/** The output to serve: OUTPUT_NAME when set, else the only one; a model with several needs OUTPUT_NAME. */
function chooseOutput(session: ort.InferenceSession, modelPath: string, outputName: string | null) {
  const outputs = session.outputMetadata;
  const names = outputs.map((o) => `"${o.name}"`).join(', ');
  if (outputName !== null) {
    const chosen = outputs.find((o) => o.name === outputName);
    if (chosen === undefined) {
      throw new ModelRefused('OUTPUT_NAME', `model ${modelPath} has no output "${outputName}"; its outputs are ${names}`);
    }
    return chosen;
  }
  if (outputs.length !== 1) {
    throw new ModelRefused(
      'OUTPUT_NAME',
      `model ${modelPath} has ${outputs.length} outputs (${names}); set OUTPUT_NAME to the one to serve`,
    );
  }
  return outputs[0];
}

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

/** onnxruntime's tensor type names -> the Open Inference Protocol's datatype names. */
const DATATYPES: Record<string, string> = {
  bool: 'BOOL', uint8: 'UINT8', uint16: 'UINT16', uint32: 'UINT32', uint64: 'UINT64', int8: 'INT8', int16: 'INT16',
  int32: 'INT32', int64: 'INT64', float16: 'FP16', float32: 'FP32', float64: 'FP64', string: 'BYTES',
};

export const datatypeOf = (meta: ort.InferenceSession.ValueMetadata) =>
  meta.isTensor ? (DATATYPES[meta.type] ?? meta.type.toUpperCase()) : 'NON_TENSOR';

/** Refuses a config.pbtxt that contradicts the model, naming both shapes (or types). */
function checkDeclared(session: ort.InferenceSession, declared: DeclaredSignature, modelPath: string): void {
  const refuse = (message: string) => {
    throw new ModelRefused('MODEL_PATH', `${declared.file} contradicts ${modelPath}: ${message}`);
  };
  for (const [role, tensors, metas] of [
    ['input', declared.inputs, session.inputMetadata],
    ['output', declared.outputs, session.outputMetadata],
  ] as const) {
    for (const tensor of tensors) {
      const meta = metas.find((m) => m.name === tensor.name);
      if (meta === undefined) {
        refuse(`it declares ${role} "${tensor.name}", but the model's ${role}s are ${metas.map((m) => `"${m.name}"`).join(', ')}`);
        return;
      }
      const actual = datatypeOf(meta);
      if (actual !== tensor.dataType) refuse(`${role} "${tensor.name}" is ${tensor.dataType} in the config, ${actual} in the model`);
      if (!meta.isTensor) continue;
      const shape = meta.shape;
      const batched = declared.maxBatchSize > 0;
      const declaredShape = batched ? ['batch', ...tensor.dims] : tensor.dims;
      const describe = () => `${role} "${tensor.name}" has dims ${formatShape(tensor.dims)} in the config` +
        `${batched ? ` (max_batch_size ${declared.maxBatchSize}: shape ${formatShape(declaredShape)})` : ''}, shape ${formatShape(shape)} in the model`;
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
  /** The output to serve when the model has several (OUTPUT_NAME, or the one output config.pbtxt names). */
  outputName: string | null;
  /** config.pbtxt's view of the tensors; null: everything comes from the ONNX file (Triton's auto-complete). */
  declared?: DeclaredSignature | null;
}

export async function inspectModel(
  modelPath: string,
  provider: ExecutionProvider,
  options: InspectOptions = { outputName: null },
): Promise<ModelInfo> {
  const session = await openSession(modelPath, provider, 1);
  try {
    const declared = options.declared ?? null;
    if (declared !== null) checkDeclared(session, declared, modelPath);
    if (session.inputMetadata.length !== 1) {
      throw new ModelRefused(
        'MODEL_PATH',
        `model ${modelPath} must have exactly one input (has ${session.inputMetadata.length})`,
      );
    }
    const input = floatTensor(session.inputMetadata[0], 'input', modelPath);
    const output = floatTensor(chooseOutput(session, modelPath, options.outputName), 'output', modelPath);
    const declaredInput = declared?.inputs.find((t) => t.name === input.name);
    const batchDim = input.shape[0];
    // Batching: as config.pbtxt says, else a dynamic first dimension. A fixed first dimension of 1 (and
    // max_batch_size 0) means one request at a time, its tensor exactly the model's input shape.
    const batches = declared !== null ? declared.maxBatchSize > 0 : input.shape.length >= 1 && isDynamic(batchDim);
    if (declared === null && input.shape.length >= 1 && !isDynamic(batchDim) && batchDim !== 1) {
      throw new ModelRefused(
        'MODEL_PATH',
        `model ${modelPath}: input "${input.name}" has shape ${formatShape(input.shape)}, a fixed batch dimension ` +
          `of ${batchDim}; the batch dimension (the first) must be dynamic or 1`,
      );
    }
    // The dims a request fills: after the batch dimension when batching, else all of them; config.pbtxt may fix
    // what the model leaves open.
    const modelDims = batches ? input.shape.slice(1) : input.shape;
    const inputDims = modelDims.map((d, i) => (isDynamic(d) ? (declaredInput?.dims[i] ?? d) : d));
    if ((batches && input.shape.length < 2) || !inputDims.every((d): d is number => typeof d === 'number' && d > 0)) {
      throw new ModelRefused(
        'MODEL_PATH',
        `model ${modelPath}: input "${input.name}" has shape ${formatShape(input.shape)}; ModelService needs ` +
          `${batches ? '[batch, d1, ...]' : '[d1, ...]'} with every ${batches ? 'non-batch ' : ''}dimension fixed ` +
          '(by the model or by config.pbtxt)',
      );
    }
    // Without config.pbtxt the first dimension is the batch's, even when fixed at 1: one output row per input row.
    const batchAxis = batches || declared === null;
    const outputBatchDim = output.shape[0];
    if (batchAxis && (output.shape.length < 1 || (!isDynamic(outputBatchDim) && outputBatchDim !== 1))) {
      throw new ModelRefused(
        'MODEL_PATH',
        `model ${modelPath}: output "${output.name}" has shape ${formatShape(output.shape)}; its first dimension ` +
          'must be the batch (dynamic or 1), one output row per input row',
      );
    }
    const inputWidth = inputDims.reduce((a, b) => a * b, 1);
    // The output's shape may be symbolic; one probe row settles its dimensions, and shows at once a model that
    // does not answer one output row per input row.
    const probe = new ort.Tensor('float32', new Float32Array(inputWidth), batches ? [1, ...inputDims] : inputDims);
    const result = (await session.run({ [input.name]: probe }))[output.name];
    const dims = result.dims.slice();
    result.dispose();
    if (batchAxis && (dims.length < 1 || dims[0] !== 1)) {
      throw new ModelRefused(
        'MODEL_PATH',
        `model ${modelPath}: output "${output.name}" has shape ${formatShape(dims)} for one input row; ` +
          'its first dimension must be the batch (1 here), one output row per input row',
      );
    }
    const outputDims = batches ? dims.slice(1) : dims;
    const outputWidth = outputDims.reduce((a, b) => a * b, 1);
    if (outputWidth === 0) throw new ModelRefused('MODEL_PATH', `model ${modelPath}: output "${output.name}" is empty for one row`);
    return { inputName: input.name, outputName: output.name, inputDims, inputWidth, outputDims, outputWidth, batches };
  } finally {
    await session.release();
  }
}

/**
 * Checks one batch's output against the shape the server laid out at startup; null when it matches, else what is
 * wrong. Called on every batch, before any row is copied out: the total count alone cannot tell [2N, w/2] from
 * [N, w], and the first would answer each caller with other callers' rows.
 */
export function outputShapeError(name: string, dims: readonly number[], rows: number, outputDims: readonly number[], batches: boolean): string | null {
  const lead = batches ? 1 : 0;
  let matches = dims.length === outputDims.length + lead && (!batches || dims[0] === rows);
  for (let i = 0; matches && i < outputDims.length; i++) matches = dims[i + lead] === outputDims[i];
  if (matches) return null;
  const expected = batches ? [rows, ...outputDims] : outputDims;
  return `output "${name}" has shape ${formatShape(dims)} for a batch of ${rows} rows; expected ${formatShape(expected)}`;
}
