// Wire compatibility with a second implementation: test/python/v2_check.py, with stubs that grpc_tools.protoc
// generates from proto/ at run time, calls a real tickserve as Triton's clients do and compares every answer with
// onnxruntime's own outputs, computed here (onnxruntime-node) for the same models and inputs. The script reports one
// result per check; each becomes a test below, and a check that did not run fails as surely as one that failed.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import * as ort from 'onnxruntime-node';
import { PACKAGE_ROOT } from '../src/main/config';
import { EXTENSIONS } from '../src/main/kserve/service';
import { float16Value } from '../src/client/v2-tensors';
import { datatypeOfOrt, ORT_TYPES, type Datatype } from '../src/models/tensor';
import { DEFAULT_MODEL, featuresFor, mixedTypesGraph, narrowTypesGraph, stringsGraph, writeRepository } from './helpers/models';
import { startServer, type TestServer } from './helpers/server';

/** Debian's interpreter: python3-grpcio, python3-grpc-tools and python3-numpy install their modules for it. */
const PYTHON = '/usr/bin/python3';
const SCRIPT = path.join(PACKAGE_ROOT, 'test', 'python', 'v2_check.py');
const INSTALL = 'apt-get install -y python3-grpcio python3-grpc-tools python3-numpy';
const SCRIPT_TIMEOUT_MS = 30_000;
const MAX_BATCH_SIZE = 32;
/** The mixed model's own config.pbtxt says otherwise than MAX_BATCH_SIZE, as a Triton repository's would. */
const MIXED_MAX_BATCH_SIZE = 16;

/** Why the check cannot run here (the skip message), or null when it can. */
function pythonUnavailable(): string | null {
  const probe = spawnSync(PYTHON, ['-c', 'import grpc, grpc_tools.protoc, numpy'], { encoding: 'utf8', timeout: 20_000 });
  if (probe.error !== undefined) return `${PYTHON} cannot be run (${probe.error.message}); install python3 and: ${INSTALL}`;
  if (probe.status !== 0) {
    const reason = probe.stderr.trim().split('\n').pop();
    return `${PYTHON} lacks grpc, grpc_tools or numpy (${reason}); install them: ${INSTALL}`;
  }
  return null;
}

/** The repository's models, and the plan's cases: one per model, named after it. */
const MODELS = ['default', 'mixed', 'narrow', 'strings'];

/** The checks v2_check.py runs, in its order: the report must hold exactly these. */
const CHECKS = [
  'ServerLive',
  'ServerReady',
  'ServerMetadata',
  ...MODELS.flatMap((m) => [`ModelReady ${m}`, `ModelMetadata ${m}`, `ModelConfig ${m}`]),
  ...MODELS.flatMap((c) => [`ModelInfer ${c} raw`, `ModelInfer ${c} typed`, `ModelInfer ${c} gzip`]),
  'ModelInfer requested outputs reversed',
  'ModelInfer requested outputs subset',
  "ModelInfer inputs in another order than the model's",
  "ModelInfer with tritonclient's priority and timeout parameters",
  'ModelStreamInfer',
  'ModelInfer unknown input: INVALID_ARGUMENT',
  'ModelInfer datatype mismatch: INVALID_ARGUMENT',
  'ModelInfer wrong raw byte length: INVALID_ARGUMENT',
  'ModelInfer both encodings: INVALID_ARGUMENT',
  'ModelInfer unknown output: INVALID_ARGUMENT',
  'ModelInfer unknown model: NOT_FOUND',
  'ModelMetadata unknown model: NOT_FOUND',
  'SystemSharedMemoryStatus: UNIMPLEMENTED',
  ...MODELS.map((m) => `ModelStatistics ${m}`),
  'ModelStatistics all models',
  'RepositoryIndex',
];

interface PlanTensor {
  name: string;
  datatype: string;
  shape: number[];
  /** Numbers; for BYTES, strings (UTF-8 on the wire). */
  data: number[] | string[];
}

/** A tensor as ModelMetadata shows it for a batching model: -1 for the batch dimension, then its own. */
const batched = (name: string, datatype: string, ...dims: number[]) => ({ name, datatype, shape: [-1, ...dims] });

/** What the client must see of a model: the metadata of its tensors, and its config's batching. */
const served = (maxBatchSize: number, inputs: object[], outputs: object[]) => ({
  platform: 'onnxruntime_onnx',
  max_batch_size: maxBatchSize,
  dynamic_batching: true,
  inputs,
  outputs,
});

interface Check {
  name: string;
  ok: boolean;
  detail: string;
}

/** The typed array that carries each datatype the plan's models take, for onnxruntime-node. */
const FEED_ARRAYS = {
  BOOL: (data: number[]) => Uint8Array.from(data),
  UINT8: (data: number[]) => Uint8Array.from(data),
  INT32: (data: number[]) => Int32Array.from(data),
  INT64: (data: number[]) => BigInt64Array.from(data, BigInt),
  FP32: (data: number[]) => Float32Array.from(data),
  FP64: (data: number[]) => Float64Array.from(data),
  BYTES: (data: string[]) => data,
} satisfies Partial<Record<Datatype, (data: never) => ort.Tensor.DataType>>;

/** onnxruntime's answer to `inputs`: every output, in the model's order, as the plan carries it. */
async function reference(modelFile: string, inputs: PlanTensor[]): Promise<PlanTensor[]> {
  const session = await ort.InferenceSession.create(modelFile);
  try {
    const feeds: Record<string, ort.Tensor> = {};
    for (const t of inputs) {
      const datatype = t.datatype as keyof typeof FEED_ARRAYS;
      const data = (FEED_ARRAYS[datatype] as (data: PlanTensor['data']) => ort.Tensor.DataType)(t.data);
      feeds[t.name] = new ort.Tensor(ORT_TYPES[datatype] as ort.Tensor.Type, data, t.shape);
    }
    const results = await session.run(feeds);
    return session.outputNames.map((name) => {
      const tensor = results[name];
      const datatype = datatypeOfOrt(tensor.type);
      assert.ok(datatype !== null, `output ${name}: ${tensor.type}`);
      const shape = [...tensor.dims];
      if (datatype === 'BYTES') return { name, datatype, shape, data: [...(tensor.data as string[])] };
      // JSON numbers carry these models' values exactly: floats, booleans as 0 and 1, small integers.
      const values = Array.from(tensor.data as ArrayLike<number | bigint>, Number);
      return { name, datatype, shape, data: datatype === 'FP16' ? values.map(float16Value) : values };
    });
  } finally {
    await session.release();
  }
}

const SUITE = 'wire compatibility: a Python gRPC client with stubs generated from proto/';
const unavailable = pythonUnavailable();

// Skipped as a test, not as a suite: a skipped suite counts nothing in the run's summary, a skipped test does.
if (unavailable !== null) it(SUITE, { skip: unavailable }, () => {});
else describe(SUITE, () => {
  let server: TestServer;
  let work: string;
  let repository: string;
  let checks: Check[] = [];
  let failure = '';

  before(async () => {
    repository = writeRepository({
      default: { versions: { 1: DEFAULT_MODEL } },
      mixed: { config: `max_batch_size: ${MIXED_MAX_BATCH_SIZE}\n`, versions: { 1: mixedTypesGraph() } },
      narrow: { versions: { 1: narrowTypesGraph() } },
      strings: { versions: { 1: stringsGraph() } },
    });
    const modelFile = (name: string) => path.join(repository, name, '1', 'model.onnx');
    const rows = 3;
    const defaultInputs: PlanTensor[] = [{ name: 'input', datatype: 'FP32', shape: [rows, 17], data: featuresFor(1, rows, 17) }];
    const mixedInputs: PlanTensor[] = [
      { name: 'x', datatype: 'FP32', shape: [rows, 4], data: featuresFor(2, rows, 4) },
      { name: 'k', datatype: 'INT64', shape: [rows, 1], data: [3, -2, 7] },
    ];
    const narrowInputs: PlanTensor[] = [
      { name: 'b', datatype: 'BOOL', shape: [rows, 3], data: [1, 0, 1, 0, 0, 1, 1, 1, 0] },
      { name: 'u', datatype: 'UINT8', shape: [rows, 3], data: [0, 1, 255, 128, 7, 200, 3, 64, 99] },
      { name: 'i', datatype: 'INT32', shape: [rows, 3], data: [-5, 1, 1000, -128, 0, -2000, 40, -64, 1] },
    ];
    // Empty, multi-byte UTF-8 and long strings: each is its 4-byte length and its bytes on the wire.
    const strings = ['tick', '', 'ünïcödé €', 'a b', 'x'.repeat(300), '0'];
    const stringsInputs: PlanTensor[] = [{ name: 's', datatype: 'BYTES', shape: [rows, 2], data: strings }];
    const plan = {
      server: { name: 'tickserve', extensions: EXTENSIONS },
      models: {
        default: served(MAX_BATCH_SIZE, [batched('input', 'FP32', 17)], [batched('output', 'FP32', 5)]),
        mixed: served(
          MIXED_MAX_BATCH_SIZE,
          [batched('x', 'FP32', 4), batched('k', 'INT64', 1)],
          [batched('y', 'FP64', 4), batched('k2', 'INT64', 1)],
        ),
        narrow: served(
          MAX_BATCH_SIZE,
          [batched('b', 'BOOL', 3), batched('u', 'UINT8', 3), batched('i', 'INT32', 3)],
          [batched('nb', 'BOOL', 3), batched('s', 'INT32', 3), batched('h', 'FP16', 3)],
        ),
        strings: served(MAX_BATCH_SIZE, [batched('s', 'BYTES', 2)], [batched('echo', 'BYTES', 2)]),
      },
      cases: [
        { id: 'default', model: 'default', inputs: defaultInputs, outputs: await reference(modelFile('default'), defaultInputs) },
        { id: 'mixed', model: 'mixed', inputs: mixedInputs, outputs: await reference(modelFile('mixed'), mixedInputs) },
        { id: 'narrow', model: 'narrow', inputs: narrowInputs, outputs: await reference(modelFile('narrow'), narrowInputs) },
        { id: 'strings', model: 'strings', inputs: stringsInputs, outputs: await reference(modelFile('strings'), stringsInputs) },
      ],
      stream_cases: ['default', 'mixed'],
      mixed_case: 'mixed',
    };
    work = mkdtempSync(path.join(tmpdir(), 'tickserve-wire-'));
    const planFile = path.join(work, 'plan.json');
    writeFileSync(planFile, JSON.stringify(plan));
    server = await startServer({ MODEL_PATH: '', MODEL_REPOSITORY: repository, MAX_BATCH_SIZE: String(MAX_BATCH_SIZE) });

    // Asynchronously: the server answering the script runs on this thread.
    const child = spawn(PYTHON, [SCRIPT, server.address, planFile], { stdio: ['ignore', 'pipe', 'pipe'], timeout: SCRIPT_TIMEOUT_MS });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve, reject) => {
      child.once('error', reject);
      child.once('close', (c, s) => resolve([c, s]));
    });
    // 0: every check passed; 1: some failed (the report says which). Anything else: the script itself failed.
    if (code === 0 || code === 1) checks = (JSON.parse(stdout) as { checks: Check[] }).checks;
    else failure = `v2_check.py exited ${code ?? signal}: ${stderr.trim() || stdout.trim()}`;
  });

  after(async () => {
    await server?.close();
    if (work !== undefined) rmSync(work, { recursive: true, force: true });
    if (repository !== undefined) rmSync(repository, { recursive: true, force: true });
  });

  it('runs every check, in order', () => {
    assert.equal(failure, '');
    assert.deepEqual(
      checks.map((c) => c.name),
      CHECKS,
    );
  });

  for (const name of CHECKS) {
    it(name, () => {
      assert.equal(failure, '');
      const check = checks.find((c) => c.name === name);
      assert.ok(check !== undefined, `v2_check.py did not report "${name}"`);
      assert.ok(check.ok, check.detail);
    });
  }
});
