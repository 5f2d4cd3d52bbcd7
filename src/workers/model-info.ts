// What the main thread must know of a model before it lays out slabs: its input and output names and row widths.
// Read once at start-up from a session of its own, which also proves that the model loads before any worker
// starts; the session is released at once.
import * as ort from 'onnxruntime-node';
import type { ExecutionProvider } from './protocol';
import { openSession } from './session';

export interface ModelInfo {
  inputName: string;
  outputName: string;
  /** Non-batch input dimensions; their product is inputWidth. */
  inputDims: number[];
  inputWidth: number;
  outputWidth: number;
}

function floatTensor(meta: ort.InferenceSession.ValueMetadata, role: string, modelPath: string) {
  if (!meta.isTensor || meta.type !== 'float32') {
    throw new Error(`model ${modelPath}: its ${role} "${meta.name}" must be a float32 tensor`);
  }
  return meta;
}

export async function inspectModel(modelPath: string, provider: ExecutionProvider): Promise<ModelInfo> {
  const session = await openSession(modelPath, provider, 1);
  try {
    if (session.inputMetadata.length !== 1 || session.outputMetadata.length < 1) {
      throw new Error(
        `model ${modelPath} must have exactly one input and at least one output ` +
          `(has ${session.inputMetadata.length} inputs, ${session.outputMetadata.length} outputs)`,
      );
    }
    const input = floatTensor(session.inputMetadata[0], 'input', modelPath);
    const output = floatTensor(session.outputMetadata[0], 'output', modelPath);
    const inputDims = input.shape.slice(1);
    if (input.shape.length < 2 || !inputDims.every((d): d is number => typeof d === 'number' && d > 0)) {
      throw new Error(
        `model ${modelPath}: input "${input.name}" has shape [${input.shape.join(', ')}]; ` +
          'tickserve needs [batch, d1, ...] with every non-batch dimension fixed',
      );
    }
    const inputWidth = inputDims.reduce((a, b) => a * b, 1);
    // The output's shape may be symbolic; one probe row settles its width.
    const probe = new ort.Tensor('float32', new Float32Array(inputWidth), [1, ...inputDims]);
    const result = (await session.run({ [input.name]: probe }))[output.name];
    const outputWidth = result.data.length;
    result.dispose();
    if (outputWidth === 0) throw new Error(`model ${modelPath}: output "${output.name}" is empty for one row`);
    return { inputName: input.name, outputName: output.name, inputDims, inputWidth, outputWidth };
  } finally {
    await session.release();
  }
}
