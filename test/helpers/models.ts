// Test models, written by the project's own ONNX writer into a temporary folder, and an in-process reference.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import * as ort from 'onnxruntime-node';
import { encodeModel, mlpGraph, type MlpSpec } from '../../scripts/onnx-writer';

export { DEFAULT_MODEL } from '../../scripts/make-models';
export { DEFAULT_MODEL_PATH } from '../../src/main/config';

/** A model whose input is [batch, 4, 8] (row width 32) and output [batch, 3]: not the default's widths. */
export const WIDE_MODEL: MlpSpec = {
  name: 'wide',
  inputShape: [4, 8],
  hidden: [16],
  outputs: 3,
  softmax: false,
  seed: 7,
};

let dir: string | undefined;

export function writeModel(spec: MlpSpec): string {
  dir ??= mkdtempSync(path.join(tmpdir(), 'tickserve-models-'));
  const file = path.join(dir, `${spec.name}.onnx`);
  writeFileSync(file, encodeModel(mlpGraph(spec)));
  return file;
}

/** Runs `rows` rows through onnxruntime in this process: what the server must answer. */
export async function referenceOutputs(modelPath: string, features: Float32Array, rows: number): Promise<Float32Array> {
  const session = await ort.InferenceSession.create(modelPath);
  try {
    const meta = session.inputMetadata[0];
    const dims = (meta.isTensor ? meta.shape.slice(1) : []) as number[];
    const feeds = { [session.inputNames[0]]: new ort.Tensor('float32', Float32Array.from(features), [rows, ...dims]) };
    const out = await session.run(feeds);
    return Float32Array.from(out[session.outputNames[0]].data as Float32Array);
  } finally {
    await session.release();
  }
}

/** Deterministic features: row r of request i differs from every other row. */
export function featuresFor(request: number, rows: number, width: number): number[] {
  const values: number[] = [];
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < width; c++) values.push(Math.fround(Math.sin(request * 7.1 + r * 3.3 + c * 0.37)));
  }
  return values;
}
