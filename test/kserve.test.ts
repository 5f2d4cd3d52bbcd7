// The KServe v2 API (inference.GRPCInferenceService) over a real server and real ONNX models: tensors of several
// inputs and outputs, typed and raw contents, models that do not batch, variable dimensions, every refusal, streams,
// statistics, and repository control in explicit mode.
import * as grpc from '@grpc/grpc-js';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ONNX_TYPES, type GraphSpec } from '../scripts/onnx-writer';
import { decodeRaw } from '../src/client/v2-tensors';
import { featuresFor, narrowTypesGraph, referenceOutputs, stringsGraph, writeRepository, writeVersion } from './helpers/models';
import { f32, readF32, v2Client, type InferReply, type StreamReply, type V2Client } from './helpers/kserve';
import { expectStatus, predict, startServer, type TestServer } from './helpers/server';

const ONE = { name: 'one', dims: [], values: Float32Array.of(1) };

const MODELS: Record<string, GraphSpec> = {
  /** a, b [batch, 3] -> sum = a + b, prod = a * b. */
  pair: {
    name: 'pair',
    inputs: [{ name: 'a', shape: ['batch', 3] }, { name: 'b', shape: ['batch', 3] }],
    outputs: [{ name: 'sum', shape: ['batch', 3] }, { name: 'prod', shape: ['batch', 3] }],
    nodes: [
      { op: 'Add', inputs: ['a', 'b'], outputs: ['sum'] },
      { op: 'Mul', inputs: ['a', 'b'], outputs: ['prod'] },
    ],
    initializers: [],
  },
  /** A scalar gain s [] and x [4] -> y = x * s (max_batch_size 0: tensors as sent). */
  scalar: {
    name: 'scalar',
    inputs: [{ name: 's', shape: [] }, { name: 'x', shape: [4] }],
    outputs: [{ name: 'y', shape: [4] }],
    nodes: [{ op: 'Mul', inputs: ['x', 's'], outputs: ['y'] }],
    initializers: [],
  },
  /** Recurrent-style state [layers 2, batch 1, hidden 3] whose batch axis is not the first: next = state + 1. */
  state: {
    name: 'state',
    inputs: [{ name: 'state', shape: [2, 1, 3] }],
    outputs: [{ name: 'next', shape: [2, 1, 3] }],
    nodes: [{ op: 'Add', inputs: ['state', 'one'], outputs: ['next'] }],
    initializers: [ONE],
  },
  /** A variable non-batch dimension: x [batch, n] -> y = x + 1. */
  ragged: {
    name: 'ragged',
    inputs: [{ name: 'x', shape: ['batch', 'n'] }],
    outputs: [{ name: 'y', shape: ['batch', 'n'] }],
    nodes: [{ op: 'Add', inputs: ['x', 'one'], outputs: ['y'] }],
    initializers: [ONE],
  },
  /** Integers and their decimal strings: x INT64 [batch, 2] -> label BYTES [batch, 2] (a batching model whose output is strings). */
  labels: {
    name: 'labels',
    inputs: [{ name: 'x', shape: ['batch', 2], elemType: ONNX_TYPES.INT64 }],
    outputs: [{ name: 'label', shape: ['batch', 2], elemType: ONNX_TYPES.STRING }],
    nodes: [{ op: 'Cast', inputs: ['x'], outputs: ['label'], attributes: { to: ONNX_TYPES.STRING } }],
    initializers: [],
  },
};

const NO_BATCH = 'max_batch_size: 0';

const fp32 = (name: string, shape: number[]) => ({ name, datatype: 'FP32', shape });
const outputsOf = (reply: InferReply) => Object.fromEntries(reply.outputs.map((o, i) => [o.name, { shape: o.shape.map(Number), data: readF32(reply.raw_output_contents[i]) }]));

describe('KServe v2: inference', () => {
  let server: TestServer;
  let client: V2Client;
  before(async () => {
    const root = writeRepository({
      pair: { config: 'max_batch_size: 8\ndynamic_batching { max_queue_delay_microseconds: 30000 }', versions: { '1': MODELS.pair } },
      scalar: { config: NO_BATCH, versions: { '1': MODELS.scalar } },
      state: { config: NO_BATCH, versions: { '1': MODELS.state } },
      ragged: { versions: { '1': MODELS.ragged } },
      narrow: { versions: { '1': narrowTypesGraph() } },
      labels: { config: 'max_batch_size: 8\ndynamic_batching { max_queue_delay_microseconds: 30000 }', versions: { '1': MODELS.labels } },
    });
    server = await startServer({ MODEL_PATH: '', MODEL_REPOSITORY: root });
    client = v2Client(server.address);
  });
  after(async () => {
    client.close();
    await server.close();
  });

  it('ServerLive, ServerReady, ServerMetadata', async () => {
    assert.deepEqual(await client.call('ServerLive', {}), { live: true });
    assert.deepEqual(await client.call('ServerReady', {}), { ready: true });
    const metadata = await client.call<{ name: string; extensions: string[] }>('ServerMetadata', {});
    assert.equal(metadata.name, 'tickserve');
    assert.deepEqual(metadata.extensions, ['model_repository', 'model_configuration', 'statistics']);
  });

  it('ModelMetadata: every tensor with datatype and shape, -1 for the batch dimension and variable ones', async () => {
    const pair = await client.call<{ inputs: unknown[]; outputs: unknown[]; versions: string[] }>('ModelMetadata', { name: 'pair' });
    assert.deepEqual(pair.versions, ['1']);
    assert.deepEqual(pair.inputs, [{ name: 'a', datatype: 'FP32', shape: ['-1', '3'] }, { name: 'b', datatype: 'FP32', shape: ['-1', '3'] }]);
    const ragged = await client.call<{ inputs: unknown[] }>('ModelMetadata', { name: 'ragged' });
    assert.deepEqual(ragged.inputs, [{ name: 'x', datatype: 'FP32', shape: ['-1', '-1'] }]);
    const state = await client.call<{ inputs: unknown[] }>('ModelMetadata', { name: 'state' });
    assert.deepEqual(state.inputs, [{ name: 'state', datatype: 'FP32', shape: ['2', '1', '3'] }], 'a model that does not batch shows its shapes as they are');
  });

  it('ModelConfig: the effective config, with what was auto-completed from the ONNX file', async () => {
    const { config } = await client.call<{ config: Record<string, unknown> }>('ModelConfig', { name: 'ragged' });
    assert.equal(config.max_batch_size, 256, 'MAX_BATCH_SIZE fills what the config does not say');
    assert.deepEqual(config.input, [{ name: 'x', data_type: 'TYPE_FP32', dims: ['-1'], optional: false }]);
    assert.equal(config.platform, 'onnxruntime_onnx');
  });

  it('raw contents in, raw contents out; requested outputs select and order the outputs', async () => {
    const a = [1, 2, 3, 4, 5, 6];
    const b = [10, 20, 30, 40, 50, 60];
    const reply = await client.call<InferReply>('ModelInfer', {
      model_name: 'pair',
      id: 'r1',
      inputs: [fp32('a', [2, 3]), fp32('b', [2, 3])],
      outputs: [{ name: 'prod' }, { name: 'sum' }],
      raw_input_contents: [f32(a), f32(b)],
    });
    assert.equal(reply.id, 'r1');
    assert.equal(reply.model_version, '1');
    assert.deepEqual(reply.outputs.map((o) => o.name), ['prod', 'sum']);
    const out = outputsOf(reply);
    assert.deepEqual(out.prod, { shape: [2, 3], data: a.map((v, i) => v * b[i]) });
    assert.deepEqual(out.sum, { shape: [2, 3], data: a.map((v, i) => v + b[i]) });
    const one = await client.call<InferReply>('ModelInfer', {
      model_name: 'pair',
      inputs: [fp32('a', [1, 3]), fp32('b', [1, 3])],
      outputs: [{ name: 'sum' }],
      raw_input_contents: [f32([1, 1, 1]), f32([2, 2, 2])],
    });
    assert.deepEqual(one.outputs.map((o) => o.name), ['sum']);
  });

  it('typed contents in; answers in raw_output_contents', async () => {
    const reply = await client.call<InferReply>('ModelInfer', {
      model_name: 'pair',
      inputs: [
        { ...fp32('a', [1, 3]), contents: { fp32_contents: [1, 2, 3] } },
        { ...fp32('b', [1, 3]), contents: { fp32_contents: [4, 5, 6] } },
      ],
    });
    assert.deepEqual(outputsOf(reply).sum, { shape: [1, 3], data: [5, 7, 9] });
  });

  it('a scalar input, and a model that does not batch, tensors exactly as sent', async () => {
    const reply = await client.call<InferReply>('ModelInfer', {
      model_name: 'scalar',
      inputs: [fp32('s', []), fp32('x', [4])],
      raw_input_contents: [f32([3]), f32([1, 2, 3, 4])],
    });
    assert.deepEqual(outputsOf(reply).y, { shape: [4], data: [3, 6, 9, 12] });
  });

  it('state tensors whose batch axis is not the first: passed as sent', async () => {
    const reply = await client.call<InferReply>('ModelInfer', { model_name: 'state', inputs: [fp32('state', [2, 1, 3])], raw_input_contents: [f32([0, 1, 2, 3, 4, 5])] });
    assert.deepEqual(outputsOf(reply).next, { shape: [2, 1, 3], data: [1, 2, 3, 4, 5, 6] });
  });

  it('a variable non-batch dimension: each request with its own shape', async () => {
    const [wide, narrow] = await Promise.all([
      client.call<InferReply>('ModelInfer', { model_name: 'ragged', inputs: [fp32('x', [2, 5])], raw_input_contents: [f32([0, 1, 2, 3, 4, 5, 6, 7, 8, 9])] }),
      client.call<InferReply>('ModelInfer', { model_name: 'ragged', inputs: [fp32('x', [1, 3])], raw_input_contents: [f32([7, 8, 9])] }),
    ]);
    assert.deepEqual(outputsOf(wide).y, { shape: [2, 5], data: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10] });
    assert.deepEqual(outputsOf(narrow).y, { shape: [1, 3], data: [8, 9, 10] });
  });

  it('ModelService and v2 requests to the same version share a batch', async () => {
    const root = writeRepository({ m: { config: 'max_batch_size: 8\ndynamic_batching { max_queue_delay_microseconds: 200000 }', versions: { '1': { name: 'm', inputShape: [3], hidden: [4], outputs: 2, softmax: false, seed: 5 } } } });
    const shared = await startServer({ MODEL_PATH: '', MODEL_REPOSITORY: root });
    const v2 = v2Client(shared.address);
    try {
      const features = featuresFor(1, 1, 3);
      const [seed, kserve] = await Promise.all([
        predict(shared.client, { features }),
        v2.call<InferReply>('ModelInfer', { model_name: 'm', inputs: [fp32('input', [1, 3])], raw_input_contents: [f32(features)] }),
      ]);
      assert.equal(seed.trailers['x-batch-rows'], '2', 'the two requests did not share a batch');
      assert.deepEqual(readF32(kserve.raw_output_contents[0]), seed.reply.predictions);
      const expected = await referenceOutputs(path.join(root, 'm', '1', 'model.onnx'), Float32Array.from(features), 1);
      readF32(kserve.raw_output_contents[0]).forEach((v, i) => assert.ok(Math.abs(v - expected[i]) < 1e-5));
    } finally {
      v2.close();
      await shared.close();
    }
  });

  it('a model that runs requests alone takes batches up to its max_batch_size, above MAX_QUEUE_SIZE too, unary and streamed', async () => {
    const root = writeRepository({ ragged: { config: 'max_batch_size: 64', versions: { '1': MODELS.ragged } } });
    const small = await startServer({ MODEL_PATH: '', MODEL_REPOSITORY: root, MAX_BATCH_SIZE: '4', MAX_QUEUE_SIZE: '8' });
    const v2 = v2Client(small.address);
    try {
      const x = Array.from({ length: 20 * 2 }, (_, i) => i);
      const request = { model_name: 'ragged', inputs: [fp32('x', [20, 2])], raw_input_contents: [f32(x)] };
      const reply = await v2.call<InferReply>('ModelInfer', request);
      assert.deepEqual(outputsOf(reply).y, { shape: [20, 2], data: x.map((v) => v + 1) });
      const stream = v2.stream();
      const answered = new Promise<StreamReply>((resolve) => stream.once('data', resolve));
      const ended = new Promise<grpc.StatusObject>((resolve) => stream.on('status', resolve));
      stream.write({ ...request, id: 's1' });
      const streamed = await answered;
      stream.end();
      assert.equal((await ended).code, grpc.status.OK);
      assert.equal(streamed.error_message, '');
      assert.deepEqual(outputsOf(streamed.infer_response!).y.shape, [20, 2]);
    } finally {
      v2.close();
      await small.close();
    }
  });

  it('a request run alone whose typed contents unpack past its input\'s region: RESOURCE_EXHAUSTED naming the input', async () => {
    const root = writeRepository({ strings: { config: 'max_batch_size: 1024', versions: { '1': stringsGraph() } } });
    const limited = await startServer({ MODEL_PATH: '', MODEL_REPOSITORY: root, MAX_RECEIVE_MESSAGE_BYTES: '4096' });
    const v2 = v2Client(limited.address);
    try {
      const send = (rows: number) => v2.call<InferReply>('ModelInfer', {
        model_name: 'strings',
        inputs: [{ name: 's', datatype: 'BYTES', shape: [rows, 2], contents: { bytes_contents: new Array(rows * 2).fill(Buffer.alloc(0)) } }],
      });
      // 1,500 empty strings: ~3,000 bytes on the wire, 6,000 unpacked (a 4-byte length each).
      await expectStatus(send(750), grpc.status.RESOURCE_EXHAUSTED, /input "s": 6000 bytes once unpacked from contents, over the 4096 an input of model "strings" may hold \(MAX_RECEIVE_MESSAGE_BYTES/);
      const fits = await send(500);
      assert.deepEqual(fits.outputs[0].shape.map(Number), [500, 2]);
      assert.equal(fits.raw_output_contents[0].length, 4000);
    } finally {
      v2.close();
      await limited.close();
    }
  });

  describe('every refusal names the tensor, what was expected and what was sent', () => {
    const cases: Array<[string, object, grpc.status, RegExp]> = [
      ['unknown input', { inputs: [fp32('a', [1, 3]), fp32('c', [1, 3])], raw_input_contents: [f32([1, 2, 3]), f32([1, 2, 3])] }, grpc.status.INVALID_ARGUMENT, /unknown input "c": model "pair" takes "a", "b"/],
      ['missing input', { inputs: [fp32('a', [1, 3])], raw_input_contents: [f32([1, 2, 3])] }, grpc.status.INVALID_ARGUMENT, /missing input "b"/],
      ['datatype mismatch', { inputs: [fp32('a', [1, 3]), { name: 'b', datatype: 'INT32', shape: [1, 3] }], raw_input_contents: [f32([1, 2, 3]), f32([1, 2, 3])] }, grpc.status.INVALID_ARGUMENT, /input "b": datatype INT32 sent, the model takes FP32/],
      ['shape of the wrong rank', { inputs: [fp32('a', [3]), fp32('b', [1, 3])], raw_input_contents: [f32([1, 2, 3]), f32([1, 2, 3])] }, grpc.status.INVALID_ARGUMENT, /input "a": shape \[3\] sent, the model takes \[-1, 3\]/],
      ['shape of the wrong size', { inputs: [fp32('a', [1, 4]), fp32('b', [1, 3])], raw_input_contents: [f32([1, 2, 3, 4]), f32([1, 2, 3])] }, grpc.status.INVALID_ARGUMENT, /input "a": shape \[1, 4\] sent, the model takes \[-1, 3\]/],
      ['raw bytes that do not match the shape', { inputs: [fp32('a', [1, 3]), fp32('b', [1, 3])], raw_input_contents: [f32([1, 2]), f32([1, 2, 3])] }, grpc.status.INVALID_ARGUMENT, /input "a": raw_input_contents has 8 bytes; shape \[1, 3\] of FP32 is 12/],
      ['both encodings at once', { inputs: [{ ...fp32('a', [1, 3]), contents: { fp32_contents: [1, 2, 3] } }, fp32('b', [1, 3])], raw_input_contents: [f32([1, 2, 3]), f32([1, 2, 3])] }, grpc.status.INVALID_ARGUMENT, /no input may carry contents too; input "a" does/],
      ['typed contents of the wrong count', { inputs: [{ ...fp32('a', [1, 3]), contents: { fp32_contents: [1, 2] } }, { ...fp32('b', [1, 3]), contents: { fp32_contents: [1, 2, 3] } }] }, grpc.status.INVALID_ARGUMENT, /input "a": fp32_contents holds 2 values; shape \[1, 3\] needs 3/],
      ['a batch over max_batch_size', { inputs: [fp32('a', [9, 3]), fp32('b', [9, 3])], raw_input_contents: [f32(new Array(27).fill(0)), f32(new Array(27).fill(0))] }, grpc.status.INVALID_ARGUMENT, /input "a": batch dimension 9 is over max_batch_size 8/],
      ['inputs with different batch sizes', { inputs: [fp32('a', [1, 3]), fp32('b', [2, 3])], raw_input_contents: [f32([1, 2, 3]), f32([1, 2, 3, 4, 5, 6])] }, grpc.status.INVALID_ARGUMENT, /input "b": batch dimension 2, but another input has 1/],
      ['an unknown requested output', { inputs: [fp32('a', [1, 3]), fp32('b', [1, 3])], outputs: [{ name: 'quotient' }], raw_input_contents: [f32([1, 2, 3]), f32([1, 2, 3])] }, grpc.status.INVALID_ARGUMENT, /unknown output "quotient": model "pair" answers "sum", "prod"/],
      ['a typed value outside a narrow datatype\'s range (int_contents and uint_contents are 32-bit)', {
        model_name: 'narrow',
        inputs: [
          { name: 'b', datatype: 'BOOL', shape: [1, 3], contents: { bool_contents: [true, false, true] } },
          { name: 'u', datatype: 'UINT8', shape: [1, 3], contents: { uint_contents: [1, 256, 3] } },
          { name: 'i', datatype: 'INT32', shape: [1, 3], contents: { int_contents: [1, 2, 3] } },
        ],
      }, grpc.status.INVALID_ARGUMENT, /input "u": uint_contents\[1\] is 256, outside UINT8's range 0 to 255/],
      ['a stateful sequence', { parameters: { sequence_id: { int64_param: '7' } }, inputs: [fp32('a', [1, 3]), fp32('b', [1, 3])], raw_input_contents: [f32([1, 2, 3]), f32([1, 2, 3])] }, grpc.status.INVALID_ARGUMENT, /parameter "sequence_id": stateful sequences are not served yet/],
      ['an unknown model', { model_name: 'nope' }, grpc.status.NOT_FOUND, /model "nope" is not served/],
      ['an unknown version', { model_version: '9' }, grpc.status.NOT_FOUND, /model "pair" has no version "9"/],
    ];
    for (const [name, request, code, message] of cases) {
      it(name, async () => {
        await expectStatus(client.call('ModelInfer', { model_name: 'pair', ...request }), code, message);
      });
    }

    it('the shared-memory, trace and log-settings RPCs: UNIMPLEMENTED with a message', async () => {
      await expectStatus(client.call('SystemSharedMemoryStatus', {}), grpc.status.UNIMPLEMENTED, /system shared memory is not served/);
      await expectStatus(client.call('CudaSharedMemoryRegister', {}), grpc.status.UNIMPLEMENTED, /CUDA shared memory is not served/);
      await expectStatus(client.call('TraceSetting', {}), grpc.status.UNIMPLEMENTED, /OTEL_/);
      await expectStatus(client.call('LogSettings', {}), grpc.status.UNIMPLEMENTED, /LOG_LEVEL/);
    });

    it('Triton\'s timeout parameter is a deadline: a request that cannot be computed in time is DEADLINE_EXCEEDED', async () => {
      await expectStatus(
        client.call('ModelInfer', { model_name: 'pair', parameters: { timeout: { int64_param: '1' } }, inputs: [fp32('a', [1, 3]), fp32('b', [1, 3])], raw_input_contents: [f32([1, 2, 3]), f32([1, 2, 3])] }),
        grpc.status.DEADLINE_EXCEEDED,
        /deadline exceeded while queued/,
      );
    });
  });

  it('ModelStreamInfer: answers in order with ids echoed; a bad request gets error_message and the stream goes on', async () => {
    const stream = client.stream();
    const replies: StreamReply[] = [];
    stream.on('data', (reply: StreamReply) => replies.push(reply));
    const ended = new Promise((resolve) => stream.on('end', resolve));
    const good = (id: string, v: number) => ({ model_name: 'pair', id, inputs: [fp32('a', [1, 3]), fp32('b', [1, 3])], raw_input_contents: [f32([v, v, v]), f32([1, 1, 1])] });
    stream.write(good('m1', 1));
    stream.write({ model_name: 'pair', id: 'm2', inputs: [fp32('a', [1, 3])], raw_input_contents: [f32([1, 2, 3])] });
    stream.write({ model_name: 'nope', id: 'm3' });
    stream.write(good('m4', 4));
    stream.end();
    await ended;
    assert.deepEqual(replies.map((r) => r.infer_response?.id), ['m1', 'm2', 'm3', 'm4']);
    assert.equal(replies[0].error_message, '');
    assert.match(replies[1].error_message, /missing input "b"/);
    assert.match(replies[2].error_message, /model "nope" is not served/);
    assert.deepEqual(outputsOf(replies[3].infer_response!).sum.data, [5, 5, 5]);
  });

  it('a string output of a model that batches: each caller gets its own rows of it, never the batch\'s', async () => {
    const requests = [[1, 2], [30, 40, 50, 60], [700, 800]];
    const replies = await Promise.all(requests.map((values) => client.call<InferReply>('ModelInfer', {
      model_name: 'labels',
      inputs: [{ name: 'x', datatype: 'INT64', shape: [values.length / 2, 2], contents: { int64_contents: values } }],
    })));
    const { model_stats } = await client.call<{ model_stats: Array<{ batch_stats: Array<{ batch_size: string }> }> }>('ModelStatistics', { name: 'labels' });
    assert.ok(model_stats[0].batch_stats.some((b) => Number(b.batch_size) > 2), `the requests did not share a batch: ${JSON.stringify(model_stats[0].batch_stats)}`);
    replies.forEach((reply, i) => {
      const shape = reply.outputs[0].shape.map(Number);
      assert.deepEqual(shape, [requests[i].length / 2, 2], `request ${i}'s label shape`);
      const labels = decodeRaw('label', 'BYTES', shape, reply.raw_output_contents[0]) as Buffer[];
      assert.deepEqual(labels.map(String), requests[i].map(String), `request ${i}'s labels`);
    });
  });

  it('ModelStatistics: counts and nanosecond durations, per batch size', async () => {
    const { model_stats } = await client.call<{ model_stats: Array<Record<string, any>> }>('ModelStatistics', { name: 'pair' });
    const [stats] = model_stats;
    assert.equal(stats.name, 'pair');
    assert.ok(Number(stats.inference_count) >= 4, `inference_count ${stats.inference_count}`);
    assert.ok(Number(stats.execution_count) >= 1);
    assert.ok(Number(stats.inference_stats.success.count) >= 4);
    assert.ok(Number(stats.inference_stats.compute_infer.ns) > 0);
    assert.ok(Number(stats.inference_stats.queue.count) >= Number(stats.inference_stats.success.count));
    assert.ok(stats.batch_stats.length >= 1 && Number(stats.batch_stats[0].compute_infer.count) >= 1);
    assert.ok(Number(stats.last_inference) > Date.now() - 60_000);
  });

  it('repository load and unload are refused unless MODEL_CONTROL_MODE=explicit', async () => {
    await expectStatus(client.call('RepositoryModelUnload', { model_name: 'pair' }), grpc.status.FAILED_PRECONDITION, /MODEL_CONTROL_MODE is none; load and unload need MODEL_CONTROL_MODE=explicit/);
  });
});

describe('KServe v2: repository control in explicit mode', () => {
  let server: TestServer;
  let client: V2Client;
  let root: string;
  const mlp = (seed: number) => ({ name: `m${seed}`, inputShape: [3], hidden: [4], outputs: 2, softmax: false, seed });
  before(async () => {
    root = writeRepository({ a: { versions: { '1': mlp(1) } }, b: { versions: { '1': mlp(2) } } });
    server = await startServer({ MODEL_PATH: '', MODEL_REPOSITORY: root, MODEL_CONTROL_MODE: 'explicit', LOAD_MODELS: 'a' });
    client = v2Client(server.address);
  });
  after(async () => {
    client.close();
    await server.close();
  });

  const index = async () => (await client.call<{ models: Array<{ name: string; version: string; state: string; reason: string }> }>('RepositoryIndex', {})).models;
  const infer = (model: string, id = '') =>
    client.call<InferReply>('ModelInfer', { model_name: model, id, inputs: [fp32('input', [1, 3])], raw_input_contents: [f32([0.1, 0.2, 0.3])] });

  it('only LOAD_MODELS at startup; the index shows the rest of the repository unloaded', async () => {
    assert.deepEqual(await index(), [
      { name: 'a', version: '1', state: 'READY', reason: '' },
      { name: 'b', version: '', state: 'UNAVAILABLE', reason: 'unloaded' },
    ]);
    await expectStatus(infer('b'), grpc.status.NOT_FOUND, /model "b" is not served/);
  });

  it('load, infer, unload', async () => {
    await client.call('RepositoryModelLoad', { model_name: 'b' });
    assert.equal((await infer('b')).model_name, 'b');
    await client.call('RepositoryModelUnload', { model_name: 'b' });
    await expectStatus(infer('b'), grpc.status.NOT_FOUND, /model "b" is not served/);
    assert.deepEqual((await index()).find((m) => m.name === 'b'), { name: 'b', version: '', state: 'UNAVAILABLE', reason: 'unloaded' });
  });

  it('load parameters (a config override, files) are refused, not ignored; unload takes tritonclient\'s unload_dependents', async () => {
    await expectStatus(
      client.call('RepositoryModelLoad', { model_name: 'b', parameters: { config: { string_param: '{"max_batch_size": 2}' } } }),
      grpc.status.INVALID_ARGUMENT,
      /parameter "config": RepositoryModelLoad takes no parameters here; tickserve loads config.pbtxt and the model files from the repository/,
    );
    await expectStatus(
      client.call('RepositoryModelLoad', { model_name: 'b', parameters: { 'file:1/model.onnx': { bytes_param: Buffer.from('not a model') } } }),
      grpc.status.INVALID_ARGUMENT,
      /parameter "file:1\/model.onnx"/,
    );
    assert.deepEqual((await index()).find((m) => m.name === 'b'), { name: 'b', version: '', state: 'UNAVAILABLE', reason: 'unloaded' });
    await client.call('RepositoryModelLoad', { model_name: 'b' });
    await client.call('RepositoryModelUnload', { model_name: 'b', parameters: { unload_dependents: { bool_param: false } } });
    await expectStatus(infer('b'), grpc.status.NOT_FOUND, /model "b" is not served/);
  });

  it('a failed load: the RPC says why, the index shows the reason, and what serves keeps serving', async () => {
    writeVersion(root, 'a', '2', { ...mlp(1), inputShape: [3] });
    rmSync(path.join(root, 'a', '2', 'model.onnx'));
    const broken = path.join(root, 'a', '2', 'model.onnx');
    require('node:fs').writeFileSync(broken, 'not onnx');
    await expectStatus(client.call('RepositoryModelLoad', { model_name: 'a' }), grpc.status.INVALID_ARGUMENT, /model "a" failed to load: version 2: cannot load model/);
    const states = (await index()).filter((m) => m.name === 'a');
    assert.deepEqual(states.map((m) => [m.version, m.state]), [['2', 'UNAVAILABLE'], ['1', 'READY']]);
    assert.equal((await infer('a')).model_version, '1');
    rmSync(path.join(root, 'a', '2'), { recursive: true });
  });

  it('a new version loaded under a stream: every answer OK, in order, switching once', async () => {
    const stream = client.stream();
    const replies: StreamReply[] = [];
    stream.on('data', (reply: StreamReply) => replies.push(reply));
    const ended = new Promise((resolve) => stream.on('end', resolve));
    let sent = 0;
    const feed = setInterval(() => {
      stream.write({ model_name: 'a', id: String(sent++), inputs: [fp32('input', [1, 3])], raw_input_contents: [f32([0.1, 0.2, 0.3])] });
    }, 3);
    writeVersion(root, 'a', '3', mlp(3));
    await client.call('RepositoryModelLoad', { model_name: 'a' });
    await new Promise((resolve) => setTimeout(resolve, 150));
    clearInterval(feed);
    stream.end();
    await ended;
    assert.equal(replies.length, sent);
    assert.ok(replies.every((r, i) => r.error_message === '' && r.infer_response?.id === String(i)));
    const versions = replies.map((r) => r.infer_response!.model_version);
    assert.equal(versions.filter((v, i) => i > 0 && v !== versions[i - 1]).length, 1);
    assert.deepEqual([versions[0], versions.at(-1)], ['1', '3']);
  });

  it('loading a model with nothing to load says why; unloading one not loaded lists only the models that are', async () => {
    writeVersion(root, 'misnamed', '1', mlp(4), 'model.onx');
    try {
      await expectStatus(
        client.call('RepositoryModelLoad', { model_name: 'misnamed' }),
        grpc.status.INVALID_ARGUMENT,
        /model "misnamed" failed to load: version 1: no model\.onnx in .*misnamed\/1$/,
      );
      // Its failed load is its state, but it serves nothing: it is not among the loaded models a refusal lists.
      await expectStatus(client.call('RepositoryModelUnload', { model_name: 'b' }), grpc.status.NOT_FOUND, /model "b" is not loaded; loaded models: "a"$/);
      await client.call('RepositoryModelUnload', { model_name: 'misnamed' });
    } finally {
      rmSync(path.join(root, 'misnamed'), { recursive: true });
    }
  });

  it('loading a model the repository lacks: NOT_FOUND', async () => {
    await expectStatus(client.call('RepositoryModelLoad', { model_name: 'zzz' }), grpc.status.NOT_FOUND, /model "zzz" is not in the repository/);
  });
});
