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
  /** Non-batch input dimensions; their product is inputWidth. */
  inputDims: number[];
  inputWidth: number;
  /** Non-batch output dimensions, as the model answered one row; their product is outputWidth. */
  outputDims: number[];
  outputWidth: number;
  /** False when the input's batch dimension is fixed at 1: every batch is one row. */
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

export async function inspectModel(
  modelPath: string,
  provider: ExecutionProvider,
  outputName: string | null = null,
): Promise<ModelInfo> {
  const session = await openSession(modelPath, provider, 1);
  try {
    if (session.inputMetadata.length !== 1) {
      throw new ModelRefused(
        'MODEL_PATH',
        `model ${modelPath} must have exactly one input (has ${session.inputMetadata.length})`,
      );
    }
    const input = floatTensor(session.inputMetadata[0], 'input', modelPath);
    const output = floatTensor(chooseOutput(session, modelPath, outputName), 'output', modelPath);
    const inputDims = input.shape.slice(1);
    if (input.shape.length < 2 || !inputDims.every((d): d is number => typeof d === 'number' && d > 0)) {
      throw new ModelRefused(
        'MODEL_PATH',
        `model ${modelPath}: input "${input.name}" has shape ${formatShape(input.shape)}; ` +
          'tickserve needs [batch, d1, ...] with every non-batch dimension fixed',
      );
    }
    const batchDim = input.shape[0];
    if (!isDynamic(batchDim) && batchDim !== 1) {
      throw new ModelRefused(
        'MODEL_PATH',
        `model ${modelPath}: input "${input.name}" has shape ${formatShape(input.shape)}, a fixed batch dimension ` +
          `of ${batchDim}; the batch dimension (the first) must be dynamic or 1`,
      );
    }
    const outputBatchDim = output.shape[0];
    if (output.shape.length < 1 || (!isDynamic(outputBatchDim) && outputBatchDim !== 1)) {
      throw new ModelRefused(
        'MODEL_PATH',
        `model ${modelPath}: output "${output.name}" has shape ${formatShape(output.shape)}; its first dimension ` +
          'must be the batch (dynamic or 1), one output row per input row',
      );
    }
    const inputWidth = inputDims.reduce((a, b) => a * b, 1);
    // The output's shape may be symbolic; one probe row settles its non-batch dimensions, and shows at once a model
    // that does not answer one output row per input row.
    const probe = new ort.Tensor('float32', new Float32Array(inputWidth), [1, ...inputDims]);
    const result = (await session.run({ [input.name]: probe }))[output.name];
    const dims = result.dims.slice();
    result.dispose();
    if (dims.length < 1 || dims[0] !== 1) {
      throw new ModelRefused(
        'MODEL_PATH',
        `model ${modelPath}: output "${output.name}" has shape ${formatShape(dims)} for one input row; ` +
          'its first dimension must be the batch (1 here), one output row per input row',
      );
    }
    const outputDims = dims.slice(1);
    const outputWidth = outputDims.reduce((a, b) => a * b, 1);
    if (outputWidth === 0) throw new ModelRefused('MODEL_PATH', `model ${modelPath}: output "${output.name}" is empty for one row`);
    return {
      inputName: input.name,
      outputName: output.name,
      inputDims,
      inputWidth,
      outputDims,
      outputWidth,
      batches: isDynamic(batchDim),
    };
  } finally {
    await session.release();
  }
}

/**
 * Checks one batch's output against the shape the server laid out at startup; null when it matches, else what is
 * wrong. Called on every batch, before any row is copied out: the total count alone cannot tell [2N, w/2] from
 * [N, w], and the first would answer each caller with other callers' rows.
 */
export function outputShapeError(name: string, dims: readonly number[], rows: number, outputDims: readonly number[]): string | null {
  let matches = dims.length === outputDims.length + 1 && dims[0] === rows;
  for (let i = 0; matches && i < outputDims.length; i++) matches = dims[i + 1] === outputDims[i];
  if (matches) return null;
  return `output "${name}" has shape ${formatShape(dims)} for a batch of ${rows} rows; expected ${formatShape([rows, ...outputDims])}`;
}
