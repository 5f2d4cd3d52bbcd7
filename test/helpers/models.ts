// Test models, written by the project's own ONNX writer into a temporary folder, and an in-process reference.
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import * as ort from 'onnxruntime-node';
import { encodeModel, mlpGraph, ONNX_TYPES, type GraphSpec, type MlpSpec } from '../../scripts/onnx-writer';

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

/** Writes any graph (the project's ONNX writer) into the temporary model folder; returns its path. */
export function writeGraph(graph: GraphSpec): string {
  dir ??= mkdtempSync(path.join(tmpdir(), 'tickserve-models-'));
  const file = path.join(dir, `${graph.name}.onnx`);
  writeFileSync(file, encodeModel(graph));
  return file;
}

const ONE = { name: 'one', dims: [], values: Float32Array.of(1) };

/**
 * Small float32 models with the shapes that other people's exports have, for the model-contract checks. `x + 1`
 * is the usual body, so that answers can be checked by eye.
 */
export const SHAPED_MODELS = {
  /** The output stacks x and x+1 along the batch axis: [2N, 4] for [N, 4]. Refused: 2 output rows per input row. */
  concatRows: (): GraphSpec => ({
    name: 'concat-rows',
    inputs: [{ name: 'x', shape: ['batch', 4] }],
    outputs: [{ name: 'y', shape: ['rows', 4] }],
    nodes: [
      { op: 'Add', inputs: ['x', 'one'], outputs: ['x1'] },
      { op: 'Concat', inputs: ['x', 'x1'], outputs: ['y'], attributes: { axis: 0 } },
    ],
    initializers: [ONE],
  }),
  /** Flattens the whole batch into one row: [1, 4N] for [N, 4]. Right for one row, wrong for any batch. */
  flattenBatch: (): GraphSpec => ({
    name: 'flatten-batch',
    inputs: [{ name: 'x', shape: ['batch', 4] }],
    outputs: [{ name: 'y', shape: [1, 'values'] }],
    nodes: [
      { op: 'Add', inputs: ['x', 'one'], outputs: ['x1'] },
      { op: 'Flatten', inputs: ['x1'], outputs: ['y'], attributes: { axis: 0 } },
    ],
    initializers: [ONE],
  }),
  /** A fixed batch dimension (`[batch, 4]` with batch a number), as PyTorch exports without dynamic axes. */
  fixedBatch: (batch: number): GraphSpec => ({
    name: `fixed-batch-${batch}`,
    inputs: [{ name: 'x', shape: [batch, 4] }],
    outputs: [{ name: 'y', shape: [batch, 4] }],
    nodes: [{ op: 'Add', inputs: ['x', 'one'], outputs: ['y'] }],
    initializers: [ONE],
  }),
  /** One row in, a declared [3, 4] out. Refused: the output's first dimension is fixed and not 1. */
  fixedOutputRows: (): GraphSpec => ({
    name: 'fixed-output-rows',
    inputs: [{ name: 'x', shape: [1, 4] }],
    outputs: [{ name: 'y', shape: [3, 4] }],
    nodes: [{ op: 'Concat', inputs: ['x', 'x', 'x'], outputs: ['y'], attributes: { axis: 0 } }],
    initializers: [],
  }),
  /** Two outputs: "same" (x) and "plus_one" (x + 1). */
  twoOutputs: (): GraphSpec => ({
    name: 'two-outputs',
    inputs: [{ name: 'x', shape: ['batch', 4] }],
    outputs: [
      { name: 'same', shape: ['batch', 4] },
      { name: 'plus_one', shape: ['batch', 4] },
    ],
    nodes: [
      { op: 'Identity', inputs: ['x'], outputs: ['same'] },
      { op: 'Add', inputs: ['x', 'one'], outputs: ['plus_one'] },
    ],
    initializers: [ONE],
  }),
  /** x + 1 with a variable second dimension, [batch, n]: served one request at a time, each with its own n. */
  variableWidth: (): GraphSpec => ({
    name: 'variable-width',
    inputs: [{ name: 'x', shape: ['batch', 'n'] }],
    outputs: [{ name: 'y', shape: ['batch', 'n'] }],
    nodes: [{ op: 'Add', inputs: ['x', 'one'], outputs: ['y'] }],
    initializers: [ONE],
  }),
  /** x + 1 over rows of `width` floats. */
  wide: (width: number): GraphSpec => ({
    name: `wide-${width}`,
    inputs: [{ name: 'x', shape: ['batch', width] }],
    outputs: [{ name: 'y', shape: ['batch', width] }],
    nodes: [{ op: 'Add', inputs: ['x', 'one'], outputs: ['y'] }],
    initializers: [ONE],
  }),
};

/**
 * Two inputs of different datatypes and two outputs of others: FP32 x [batch, 4] and INT64 k [batch, 1] give FP64
 * y = x · k (exact: a float32 times a small integer fits a double) and INT64 k2 = k + k.
 */
export const mixedTypesGraph = (): GraphSpec => ({
  name: 'mixed-types',
  inputs: [
    { name: 'x', shape: ['batch', 4] },
    { name: 'k', shape: ['batch', 1], elemType: ONNX_TYPES.INT64 },
  ],
  outputs: [
    { name: 'y', shape: ['batch', 4], elemType: ONNX_TYPES.DOUBLE },
    { name: 'k2', shape: ['batch', 1], elemType: ONNX_TYPES.INT64 },
  ],
  nodes: [
    { op: 'Cast', inputs: ['x'], outputs: ['x64'], attributes: { to: ONNX_TYPES.DOUBLE } },
    { op: 'Cast', inputs: ['k'], outputs: ['k64'], attributes: { to: ONNX_TYPES.DOUBLE } },
    { op: 'Mul', inputs: ['x64', 'k64'], outputs: ['y'] },
    { op: 'Add', inputs: ['k', 'k'], outputs: ['k2'] },
  ],
  initializers: [],
});

/**
 * The narrow datatypes: BOOL b, UINT8 u and INT32 i, each [batch, 3], give BOOL nb = not b, INT32 s = u + i and FP16
 * h = s (exact for |s| up to 2048).
 */
export const narrowTypesGraph = (): GraphSpec => ({
  name: 'narrow-types',
  inputs: [
    { name: 'b', shape: ['batch', 3], elemType: ONNX_TYPES.BOOL },
    { name: 'u', shape: ['batch', 3], elemType: ONNX_TYPES.UINT8 },
    { name: 'i', shape: ['batch', 3], elemType: ONNX_TYPES.INT32 },
  ],
  outputs: [
    { name: 'nb', shape: ['batch', 3], elemType: ONNX_TYPES.BOOL },
    { name: 's', shape: ['batch', 3], elemType: ONNX_TYPES.INT32 },
    { name: 'h', shape: ['batch', 3], elemType: ONNX_TYPES.FLOAT16 },
  ],
  nodes: [
    { op: 'Not', inputs: ['b'], outputs: ['nb'] },
    { op: 'Cast', inputs: ['u'], outputs: ['u32'], attributes: { to: ONNX_TYPES.INT32 } },
    { op: 'Add', inputs: ['u32', 'i'], outputs: ['s'] },
    { op: 'Cast', inputs: ['s'], outputs: ['h'], attributes: { to: ONNX_TYPES.FLOAT16 } },
  ],
  initializers: [],
});

/** Strings: BYTES s [batch, 2] answered as it came, BYTES echo = s (the BYTES path through a worker and back). */
export const stringsGraph = (): GraphSpec => ({
  name: 'strings',
  inputs: [{ name: 's', shape: ['batch', 2], elemType: ONNX_TYPES.STRING }],
  outputs: [{ name: 'echo', shape: ['batch', 2], elemType: ONNX_TYPES.STRING }],
  nodes: [{ op: 'Identity', inputs: ['s'], outputs: ['echo'] }],
  initializers: [],
});

/** A model folder of a repository: its config.pbtxt (if any) and its version folders' models. */
export interface RepositoryModel {
  config?: string;
  versions: Record<string, GraphSpec | MlpSpec>;
}

const isGraph = (spec: GraphSpec | MlpSpec): spec is GraphSpec => 'nodes' in spec;

/** Writes one version folder's model.onnx (or `filename`). */
export function writeVersion(root: string, model: string, version: string, spec: GraphSpec | MlpSpec, filename = 'model.onnx'): string {
  const folder = path.join(root, model, version);
  mkdirSync(folder, { recursive: true });
  const file = path.join(folder, filename);
  writeFileSync(file, encodeModel(isGraph(spec) ? spec : mlpGraph(spec)));
  return file;
}

/** A Triton-layout repository in a fresh temporary folder; returns its path. */
export function writeRepository(models: Record<string, RepositoryModel>): string {
  const root = mkdtempSync(path.join(tmpdir(), 'tickserve-repo-'));
  for (const [name, model] of Object.entries(models)) {
    mkdirSync(path.join(root, name), { recursive: true });
    if (model.config !== undefined) writeFileSync(path.join(root, name, 'config.pbtxt'), model.config);
    for (const [version, spec] of Object.entries(model.versions)) writeVersion(root, name, version, spec);
  }
  return root;
}
