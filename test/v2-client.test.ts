// The Open Inference Protocol client (src/client/v2.ts): the datatype table and both wire forms, the JSON forms of
// the command line, the client against a stand-in service on loopback (helpers/v2-echo-server.ts), and the CLI's
// v2 commands as child processes.
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { UsageError } from '../src/client/args';
import { formatModels, parseCommandLine } from '../src/client/cli';
import { TickClient } from '../src/client';
import {
  DATATYPE_TABLE,
  decodeContents,
  decodeRaw,
  encodeContents,
  encodeRaw,
  float16Bits,
  float16Value,
  InferenceClient,
  StreamEndedEarlyError,
  TensorError,
  type Datatype,
  type InferInput,
  type InferOutput,
  type StreamRequest,
} from '../src/client/v2';
import { inputsFromJson, outputToJson } from '../src/client/v2-json';
import { PROTO_PATH } from '../src/main/server';
import { featuresFor, referenceOutputs, SHAPED_MODELS, writeRepository } from './helpers/models';
import { assertClose, startServer, type TestServer } from './helpers/server';
import { BAD_REQUEST_ID, ECHO_MODELS, startEchoServer, type EchoServer } from './helpers/v2-echo-server';

const CLI = path.join(__dirname, '..', 'src', 'client', 'cli.js');
const run = promisify(execFile);

/** One input of each datatype, with values at the edges of its range. */
const SAMPLES: { [D in Datatype]: Extract<InferInput, { datatype: D }> } = {
  BOOL: { name: 'bool', datatype: 'BOOL', shape: [2, 2], data: Uint8Array.of(1, 0, 0, 1) },
  UINT8: { name: 'u8', datatype: 'UINT8', shape: [3], data: Uint8Array.of(0, 1, 255) },
  UINT16: { name: 'u16', datatype: 'UINT16', shape: [3], data: Uint16Array.of(0, 0x0102, 0xffff) },
  UINT32: { name: 'u32', datatype: 'UINT32', shape: [3], data: Uint32Array.of(0, 0x01020304, 0xffffffff) },
  UINT64: { name: 'u64', datatype: 'UINT64', shape: [3], data: BigUint64Array.of(0n, 2n ** 53n + 1n, 2n ** 64n - 1n) },
  INT8: { name: 'i8', datatype: 'INT8', shape: [3], data: Int8Array.of(-128, 0, 127) },
  INT16: { name: 'i16', datatype: 'INT16', shape: [3], data: Int16Array.of(-32768, 1, 32767) },
  INT32: { name: 'i32', datatype: 'INT32', shape: [3], data: Int32Array.of(-(2 ** 31), 1, 2 ** 31 - 1) },
  INT64: { name: 'i64', datatype: 'INT64', shape: [1, 3], data: BigInt64Array.of(-(2n ** 63n), -2n, 2n ** 63n - 1n) },
  FP16: { name: 'f16', datatype: 'FP16', shape: [3], data: Uint16Array.of(0x3c00, 0xc000, 0x7bff) },
  FP32: { name: 'f32', datatype: 'FP32', shape: [2, 2], data: Float32Array.of(1, -0.5, 3.4028234663852886e38, 1.401298464324817e-45) },
  FP64: { name: 'f64', datatype: 'FP64', shape: [2], data: Float64Array.of(Math.PI, -Number.MAX_VALUE) },
  BYTES: { name: 'bytes', datatype: 'BYTES', shape: [3], data: ['', 'héllo', Buffer.from([0, 255, 10])] },
};

const DATATYPES = Object.keys(DATATYPE_TABLE) as Datatype[];

/** The elements of `input` as the decoder returns them: a typed array, or Buffers for BYTES. */
function expectedData(input: InferInput): InferOutput['data'] {
  if (input.datatype !== 'BYTES') return input.data;
  return input.data.map((e) => (typeof e === 'string' ? Buffer.from(e) : Buffer.from(e)));
}

function assertOutputEquals(output: InferOutput, input: InferInput): void {
  assert.equal(output.name, input.name);
  assert.equal(output.datatype, input.datatype);
  assert.deepEqual(output.shape, input.shape);
  assert.equal(output.data.constructor, expectedData(input).constructor, `${input.datatype}: ${output.data.constructor.name}`);
  assert.deepEqual(output.data, expectedData(input), input.datatype);
}

describe('the datatype table', () => {
  it('has an entry for every datatype, with the element size of its array', () => {
    for (const datatype of DATATYPES) {
      const entry = DATATYPE_TABLE[datatype];
      if (datatype === 'BYTES') assert.deepEqual([entry.bytes, entry.array], [0, null]);
      else assert.equal(entry.array!.BYTES_PER_ELEMENT, entry.bytes, datatype);
      assert.ok(SAMPLES[datatype].data instanceof (entry.array ?? Array), datatype);
    }
  });

  for (const datatype of DATATYPES) {
    it(`${datatype}: encoded raw, then decoded, is the input`, () => {
      const input = SAMPLES[datatype];
      const raw = encodeRaw(input);
      // Decode from an odd offset: the bytes of a reply need not be aligned to the element size.
      const unaligned = new Uint8Array(raw.length + 1).subarray(1);
      unaligned.set(raw);
      assertOutputEquals({ name: input.name, datatype, shape: [...input.shape], data: decodeRaw(input.name, datatype, input.shape, unaligned) } as InferOutput, input);
    });
  }

  for (const datatype of DATATYPES.filter((d) => d !== 'FP16')) {
    it(`${datatype}: encoded as typed contents, then decoded, is the input`, () => {
      const input = SAMPLES[datatype];
      const contents = encodeContents(input);
      assert.deepEqual(Object.keys(contents), [DATATYPE_TABLE[datatype].contents]);
      assert.deepEqual(decodeContents(input.name, datatype, input.shape, contents), expectedData(input));
    });
  }

  it('raw bytes are little-endian', () => {
    const bytes = (input: InferInput) => [...encodeRaw(input)];
    assert.deepEqual(bytes({ name: 'a', datatype: 'FP32', shape: [1], data: Float32Array.of(1) }), [0, 0, 0x80, 0x3f]);
    assert.deepEqual(bytes({ name: 'a', datatype: 'UINT16', shape: [1], data: Uint16Array.of(0x0102) }), [2, 1]);
    assert.deepEqual(bytes({ name: 'a', datatype: 'INT32', shape: [1], data: Int32Array.of(-2) }), [0xfe, 0xff, 0xff, 0xff]);
    assert.deepEqual(bytes({ name: 'a', datatype: 'INT64', shape: [1], data: BigInt64Array.of(0x0102030405060708n) }), [8, 7, 6, 5, 4, 3, 2, 1]);
    assert.deepEqual(bytes({ name: 'a', datatype: 'FP64', shape: [1], data: Float64Array.of(-2) }), [0, 0, 0, 0, 0, 0, 0, 0xc0]);
  });

  it('a numeric tensor is sent from a subarray as exactly its own bytes', () => {
    const whole = Float32Array.of(1, 2, 3, 4);
    const raw = encodeRaw({ name: 'a', datatype: 'FP32', shape: [2], data: whole.subarray(1, 3) });
    assert.deepEqual([...new Float32Array(Uint8Array.from(raw).buffer)], [2, 3]);
  });

  it('BYTES: each element a 4-byte little-endian length, then its bytes; strings as UTF-8', () => {
    const raw = encodeRaw({ name: 's', datatype: 'BYTES', shape: [3], data: ['ab', '', Buffer.from([0xff])] });
    assert.deepEqual([...raw], [2, 0, 0, 0, 0x61, 0x62, 0, 0, 0, 0, 1, 0, 0, 0, 0xff]);
    assert.deepEqual([...encodeRaw({ name: 's', datatype: 'BYTES', shape: [1], data: ['é'] })], [2, 0, 0, 0, 0xc3, 0xa9]);
    const long = 'x'.repeat(300);
    assert.deepEqual([...encodeRaw({ name: 's', datatype: 'BYTES', shape: [1], data: [long] }).subarray(0, 4)], [44, 1, 0, 0]);
  });

  it('an empty tensor encodes to no bytes and decodes to an empty array', () => {
    const input: InferInput = { name: 'e', datatype: 'FP32', shape: [0, 4], data: new Float32Array(0) };
    assert.equal(encodeRaw(input).length, 0);
    assert.deepEqual(decodeRaw('e', 'FP32', [0, 4], new Uint8Array(0)), new Float32Array(0));
  });

  const badReplies: Array<[string, () => unknown, RegExp]> = [
    ['raw bytes short of the shape', () => decodeRaw('y', 'FP32', [2], new Uint8Array(7)), /^output "y": FP32 shape \[2\] needs 8 bytes, got 7$/],
    ['a BYTES length past the end', () => decodeRaw('s', 'BYTES', [1], Uint8Array.of(5, 0, 0, 0, 1)), /^output "s": BYTES element 0 runs past the end \(5 bytes\)$/],
    ['a truncated BYTES length', () => decodeRaw('s', 'BYTES', [2], Uint8Array.of(0, 0, 0, 0, 1, 0)), /^output "s": BYTES element 1 has a truncated length$/],
    ['fewer BYTES elements than the shape', () => decodeRaw('s', 'BYTES', [2], Uint8Array.of(0, 0, 0, 0)), /^output "s": shape holds 2 BYTES elements, got 1$/],
    ['contents short of the shape', () => decodeContents('y', 'INT32', [3], { int_contents: [1, 2] }), /^output "y": shape \[3\] holds 3 elements, contents have 2$/],
    ['FP16 without raw contents', () => decodeContents('h', 'FP16', [1], {}), /^output "h": FP16 came without raw contents$/],
  ];
  for (const [what, decode, message] of badReplies) {
    it(`a reply with ${what}: a TensorError naming the output`, () => {
      assert.throws(decode, (e: unknown) => e instanceof TensorError && message.test(e.message));
    });
  }
});

describe('half precision', () => {
  it('every bit pattern but NaN survives float16Value then float16Bits', () => {
    for (let bits = 0; bits <= 0xffff; bits++) {
      const value = float16Value(bits);
      if (Number.isNaN(value)) assert.equal(float16Bits(value), 0x7e00);
      else assert.equal(float16Bits(value), bits, `0x${bits.toString(16)} (${value})`);
    }
  });

  it('rounds to nearest, ties to even, straight from the double', () => {
    const cases: Array<[number, number]> = [
      [1, 0x3c00],
      [-2, 0xc000],
      [65504, 0x7bff],
      [65519.99, 0x7bff],
      [65520, 0x7c00], // the tie between 65504 and 65536 goes to the even: Infinity
      [1e10, 0x7c00],
      [-Infinity, 0xfc00],
      [-0, 0x8000],
      [2 ** -24, 0x0001],
      [2 ** -25, 0x0000], // the tie between 0 and the smallest subnormal goes to 0
      [3 * 2 ** -25, 0x0002],
      [2 ** -14 - 2 ** -25, 0x0400], // rounds up out of the subnormals into the smallest normal
      [1 + 2 ** -11, 0x3c00], // tie: to the even mantissa
      [1 + 3 * 2 ** -11, 0x3c02],
      [1 + 2 ** -11 + 2 ** -40, 0x3c01], // just past the tie (float32 would have rounded this to the tie)
      [0.1, 0x2e66],
    ];
    for (const [value, bits] of cases) assert.equal(float16Bits(value), bits, `${value}: 0x${float16Bits(value).toString(16)}`);
  });
});

describe('inputs that cannot be sent', () => {
  const bad: Array<[string, InferInput | object, RegExp]> = [
    ['data of the wrong array type', { name: 'x', datatype: 'FP32', shape: [2], data: Float64Array.of(1, 2) }, /^input "x": FP32 data must be a Float32Array, got a Float64Array$/],
    ['a plain array for a numeric type', { name: 'x', datatype: 'INT32', shape: [2], data: [1, 2] }, /^input "x": INT32 data must be an Int32Array, got an Array$/],
    ['INT64 in numbers', { name: 'x', datatype: 'INT64', shape: [1], data: Int32Array.of(1) }, /^input "x": INT64 data must be a BigInt64Array, got an Int32Array$/],
    ['a shape that does not hold the data', { name: 'x', datatype: 'FP32', shape: [2, 3], data: new Float32Array(5) }, /^input "x": shape \[2, 3\] holds 6 elements, data has 5$/],
    ['a negative dimension', { name: 'x', datatype: 'FP32', shape: [-1, 4], data: new Float32Array(4) }, /^input "x": shape \[-1, 4\] must be integers >= 0$/],
    ['an unknown datatype', { name: 'x', datatype: 'FP8', shape: [1], data: new Uint8Array(1) }, /^input "x": unknown datatype "FP8"$/],
    ['a BOOL that is not 0 or 1', { name: 'b', datatype: 'BOOL', shape: [2], data: Uint8Array.of(1, 2) }, /^input "b": BOOL element 1 is 2, not 0 or 1$/],
    ['BYTES that are not strings or Buffers', { name: 's', datatype: 'BYTES', shape: [2], data: ['a', 3] }, /^input "s": element 1 is neither a string nor a Buffer$/],
  ];
  let server: EchoServer;
  let client: InferenceClient;
  before(async () => {
    server = await startEchoServer();
    client = new InferenceClient({ target: server.address });
  });
  after(async () => {
    client.close();
    await server.close();
  });

  for (const [what, input, message] of bad) {
    it(`${what}: infer rejects with a TensorError, and nothing is sent`, async () => {
      const calls = server.calls.length;
      await assert.rejects(client.infer('echo', [input as InferInput]), (e: unknown) => e instanceof TensorError && message.test(e.message));
      assert.equal(server.calls.length, calls);
    });
  }

  it('FP16 as typed contents: a TensorError (the protocol has no field for it)', async () => {
    await assert.rejects(client.infer('echo', [SAMPLES.FP16], { encoding: 'contents' }), (e: unknown) => e instanceof TensorError && /^input "f16": FP16 has no typed contents field; send it raw$/.test(e.message));
  });
});

describe('InferenceClient against a stand-in service', () => {
  let server: EchoServer;
  let client: InferenceClient;
  before(async () => {
    server = await startEchoServer();
    client = new InferenceClient({ target: server.address, headers: { 'x-desk': 'fx', 'X-Restricted': 'client' } });
  });
  after(async () => {
    client.close();
    await server.close();
  });

  it('infer: every datatype, sent raw, comes back decoded into its array', async () => {
    const inputs = DATATYPES.map((d) => SAMPLES[d]);
    const result = await client.infer('echo', inputs, { version: '3', id: 'req-1' });
    assert.equal(server.lastRequest!.raw_input_contents.length, inputs.length);
    assert.ok(server.lastRequest!.inputs.every((i) => i.contents === null));
    assert.deepEqual([result.modelName, result.modelVersion, result.id], ['echo', '3', 'req-1']);
    assert.equal(result.outputs.length, inputs.length);
    result.outputs.forEach((output, i) => assertOutputEquals(output, inputs[i]));
  });

  it('infer: every datatype but FP16, sent as typed contents, comes back decoded from contents', async () => {
    const inputs = DATATYPES.filter((d) => d !== 'FP16').map((d) => SAMPLES[d]);
    const result = await client.infer('echo', inputs, { encoding: 'contents' });
    assert.equal(server.lastRequest!.raw_input_contents.length, 0);
    result.outputs.forEach((output, i) => assertOutputEquals(output, inputs[i]));
  });

  it('infer: requested outputs are sent by name', async () => {
    const result = await client.infer('echo', [SAMPLES.FP32, SAMPLES.INT64, SAMPLES.BYTES], { outputs: ['bytes', 'f32'] });
    assert.deepEqual(server.lastRequest!.outputs.map((o) => o.name), ['bytes', 'f32']);
    assert.deepEqual(result.outputs.map((o) => o.name), ['f32', 'bytes']);
  });

  it('narrowing an output on its datatype types its data', async () => {
    const [output] = (await client.infer('echo', [SAMPLES.INT64])).outputs;
    assert.equal(output.datatype, 'INT64');
    if (output.datatype === 'INT64') assert.equal(output.data[0] * 2n, -(2n ** 64n)); // data: BigInt64Array
  });

  it('headers: the client\'s on every call, a call\'s own over them, keys lower-cased', async () => {
    assert.equal(await client.serverLive(), true);
    await client.modelReady('echo', '', { headers: { 'x-restricted': 'call', 'x-trace': '7' } });
    const [live, ready] = server.calls.slice(-2);
    assert.deepEqual(live, { method: 'ServerLive', headers: { 'x-desk': 'fx', 'x-restricted': 'client' } });
    assert.deepEqual(ready, { method: 'ModelReady', headers: { 'x-desk': 'fx', 'x-restricted': 'call', 'x-trace': '7' } });
    for await (const _ of client.stream('echo', [[SAMPLES.FP32]])) void _;
    assert.deepEqual(server.calls.at(-1), { method: 'ModelStreamInfer', headers: { 'x-desk': 'fx', 'x-restricted': 'client' } });
  });

  it('headers that gRPC cannot send are refused up front, naming the header', () => {
    const bad: Array<[Record<string, string>, RegExp]> = [
      [{ 'bad key': 'v' }, /^header "bad key": a key is letters, digits/],
      [{ 'grpc-timeout': '1S' }, /^header "grpc-timeout": keys starting grpc- are gRPC's own$/],
      [{ 'x-bin': 'v' }, /^header "x-bin": binary \(-bin\) headers are not supported$/],
      [{ 'x-a': 'caf\u00e9' }, /^header "x-a": the value must be printable ASCII$/],
    ];
    for (const [headers, message] of bad) {
      assert.throws(() => new InferenceClient({ target: server.address, headers }), (e: unknown) => e instanceof TypeError && message.test(e.message));
    }
  });

  it('health, metadata, config, statistics and the repository, typed', async () => {
    assert.equal(await client.serverReady(), true);
    assert.equal(await client.modelReady(ECHO_MODELS.missing), false);
    assert.deepEqual(await client.serverMetadata(), { name: 'echo', version: '0.0.1', extensions: ['model_repository'] });
    assert.deepEqual(await client.modelMetadata('m', '2'), {
      name: 'm',
      versions: ['1', '2'],
      platform: 'onnxruntime_onnx',
      inputs: [{ name: 'x', datatype: 'FP32', shape: [-1, 4] }],
      outputs: [{ name: 'y', datatype: 'INT64', shape: [-1, 3] }],
    });
    const config = await client.modelConfig('m');
    assert.equal(config.max_batch_size, 8);
    assert.deepEqual(config.input, [{ name: 'x', data_type: 'TYPE_FP32', dims: ['4'], optional: false }]);
    assert.equal(config.dynamic_batching?.max_queue_delay_microseconds, '100');
    const [stats] = await client.modelStatistics('m', '1');
    assert.deepEqual([stats.name, stats.version, stats.inference_count], ['m', '1', '18446744073709551615']);
    assert.deepEqual(await client.repositoryIndex(true), [{ name: 'echo', version: '1', state: 'READY', reason: '' }]);
    assert.equal((await client.repositoryIndex()).length, 2);
    await client.load('echo');
    await client.unload('echo');
    assert.deepEqual(server.calls.slice(-2).map((c) => c.method), ['RepositoryModelLoad', 'RepositoryModelUnload']);
  });

  it('a failed call rejects with the ServiceError, code and details as the server sent them', async () => {
    for (const call of [() => client.infer(ECHO_MODELS.missing, [SAMPLES.FP32]), () => client.modelMetadata(ECHO_MODELS.missing), () => client.load(ECHO_MODELS.missing)]) {
      await assert.rejects(call(), (e: grpc.ServiceError) => e.code === grpc.status.NOT_FOUND && e.details === 'no model "missing"');
    }
  });

  it('a deadline passes: DEADLINE_EXCEEDED; an abort: CANCELLED', async () => {
    await assert.rejects(client.modelReady(ECHO_MODELS.silent, '', { deadlineMs: 50 }), (e: grpc.ServiceError) => e.code === grpc.status.DEADLINE_EXCEEDED);
    const controller = new AbortController();
    const pending = client.modelReady(ECHO_MODELS.silent, '', { signal: controller.signal, deadlineMs: 10_000 });
    controller.abort();
    await assert.rejects(pending, (e: grpc.ServiceError) => e.code === grpc.status.CANCELLED);
    await assert.rejects(client.serverLive({ signal: AbortSignal.abort() }), (e: grpc.ServiceError) => e.code === grpc.status.CANCELLED);
  });

  it('stream: one result per request, in order; a refused request gets an error result in its slot and the stream goes on', async () => {
    async function* requests(): AsyncGenerator<StreamRequest> {
      for (let i = 0; i < 2000; i++) {
        const input: InferInput = { name: 'x', datatype: 'INT32', shape: [1, 2], data: Int32Array.of(i, -i) };
        yield i % 2 === 0 ? [input] : { inputs: [input], id: i === 1001 ? BAD_REQUEST_ID : `r${i}` };
      }
    }
    const results = [];
    for await (const result of client.stream('echo', requests())) results.push(result);
    assert.equal(results.length, 2000);
    results.forEach((result, i) => {
      if (i === 1001) {
        assert.deepEqual(result, { error: `request "${BAD_REQUEST_ID}" refused`, id: BAD_REQUEST_ID });
        return;
      }
      assert.equal(result.error, null, `result ${i}`);
      if (result.error !== null) return;
      assert.equal(result.id, i % 2 === 0 ? '' : `r${i}`);
      assert.deepEqual(result.outputs[0].data, Int32Array.of(i, -i), `result ${i}`);
    });
  });

  it('stream: honours write() backpressure, pulling requests only as the call takes them', async () => {
    // 64 KiB requests against a consumer that reads nothing: the writer must stop at 'drain' long before 1000.
    let pulled = 0;
    function* big(): Generator<StreamRequest> {
      for (; pulled < 1000; ) {
        pulled++;
        yield [{ name: 'x', datatype: 'UINT8', shape: [65536], data: new Uint8Array(65536) }];
      }
    }
    const results = client.stream('echo', big());
    const first = await results.next();
    assert.equal(first.done, false);
    // Without backpressure the writer would go on to pull all 1000; with it, pulling stops and stays stopped.
    for (let last = -1, quiet = 0; quiet < 4; quiet = pulled === last ? quiet + 1 : 0) {
      last = pulled;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    assert.ok(pulled < 200, `${pulled} requests pulled while nothing was read`);
    let count = 1;
    for await (const _ of results) count++;
    assert.equal(count, 1000);
  });

  it('stream: ends with the server\'s status after every result received', async () => {
    const results = [];
    const consume = async () => {
      for await (const result of client.stream(ECHO_MODELS.quitter, Array.from({ length: 5 }, () => [SAMPLES.FP32]))) results.push(result);
    };
    await assert.rejects(consume(), (e: grpc.ServiceError) => e.code === grpc.status.RESOURCE_EXHAUSTED && e.details === 'enough');
    assert.equal(results.length, 2);
  });

  it('stream: a request that cannot be sent cancels the call and is thrown', async () => {
    const requests = [[SAMPLES.FP32], [{ ...SAMPLES.FP32, shape: [7] }], [SAMPLES.FP32]];
    const results = [];
    const consume = async () => {
      for await (const result of client.stream('echo', requests)) results.push(result);
    };
    await assert.rejects(consume(), (e: unknown) => e instanceof TensorError && /^input "f32": shape \[7\] holds 7 elements/.test(e.message));
    assert.ok(results.length <= 1);
  });

  it('stream: a server that ends the call with OK before answering every request: StreamEndedEarlyError', async () => {
    const results = [];
    const consume = async () => {
      for await (const result of client.stream(ECHO_MODELS.drainer, Array.from({ length: 5 }, () => [SAMPLES.FP32]))) results.push(result);
    };
    await assert.rejects(consume(), (e: unknown) => {
      assert.ok(e instanceof StreamEndedEarlyError, String(e));
      assert.deepEqual([e.code, e.answered], [grpc.status.OK, 2]);
      assert.ok(e.sent >= 2);
      return true;
    });
    assert.equal(results.length, 2);
  });
});

describe('TickClient headers', () => {
  let server: grpc.Server;
  let address: string;
  const seen: Array<Record<string, string>> = [];
  before(async () => {
    const definition = protoLoader.loadSync(PROTO_PATH, { keepCase: true, defaults: true });
    const service = ((grpc.loadPackageDefinition(definition).inference as grpc.GrpcObject).ModelService as grpc.ServiceClientConstructor).service;
    server = new grpc.Server();
    server.addService(service, {
      Predict: (call: grpc.ServerUnaryCall<object, object>, callback: grpc.sendUnaryData<object>) => {
        seen.push(call.metadata.getMap() as Record<string, string>);
        callback(null, { predictions: [1], model_version: '1' });
      },
    });
    const port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))));
    address = `127.0.0.1:${port}`;
  });
  after(() => server.forceShutdown());

  it('sends the client\'s headers with every call, then the call\'s own metadata', async () => {
    const client = new TickClient({ target: address, headers: { 'x-restricted': 'yes' } });
    try {
      const metadata = new grpc.Metadata();
      metadata.set('x-call', '1');
      await client.predict({ features: [1] }, { metadata });
      assert.equal(seen.at(-1)!['x-restricted'], 'yes');
      assert.equal(seen.at(-1)!['x-call'], '1');
    } finally {
      client.close();
    }
  });
});

describe('tensors as JSON (the CLI\'s infer)', () => {
  it('reads every datatype, flat or nested', () => {
    const inputs = inputsFromJson(
      JSON.stringify([
        { name: 'f', datatype: 'FP32', shape: [2, 2], data: [[1, 2], [3, 'NaN']] },
        { name: 'd', datatype: 'FP64', shape: [2], data: [0.1, '-Infinity'] },
        { name: 'h', datatype: 'FP16', shape: [2], data: [1, 65504] },
        { name: 'i', datatype: 'INT8', shape: [2], data: [-128, 127] },
        { name: 'u', datatype: 'UINT32', shape: [1], data: [4294967295] },
        { name: 'l', datatype: 'INT64', shape: [3], data: [-5, '9223372036854775807', '-9223372036854775808'] },
        { name: 'ul', datatype: 'UINT64', shape: [1], data: ['18446744073709551615'] },
        { name: 'b', datatype: 'BOOL', shape: [3], data: [true, false, 1] },
        { name: 's', datatype: 'BYTES', shape: [2], data: ['a', 'é'] },
      ]),
    );
    assert.deepEqual(inputs.map((i) => [i.name, i.datatype, i.shape]), [
      ['f', 'FP32', [2, 2]],
      ['d', 'FP64', [2]],
      ['h', 'FP16', [2]],
      ['i', 'INT8', [2]],
      ['u', 'UINT32', [1]],
      ['l', 'INT64', [3]],
      ['ul', 'UINT64', [1]],
      ['b', 'BOOL', [3]],
      ['s', 'BYTES', [2]],
    ]);
    assert.deepEqual(inputs[0].data, Float32Array.of(1, 2, 3, NaN));
    assert.deepEqual(inputs[1].data, Float64Array.of(0.1, -Infinity));
    assert.deepEqual(inputs[2].data, Uint16Array.of(0x3c00, 0x7bff));
    assert.deepEqual(inputs[3].data, Int8Array.of(-128, 127));
    assert.deepEqual(inputs[4].data, Uint32Array.of(4294967295));
    assert.deepEqual(inputs[5].data, BigInt64Array.of(-5n, 2n ** 63n - 1n, -(2n ** 63n)));
    assert.deepEqual(inputs[6].data, BigUint64Array.of(2n ** 64n - 1n));
    assert.deepEqual(inputs[7].data, Uint8Array.of(1, 0, 1));
    assert.deepEqual(inputs[8].data, ['a', 'é']);
  });

  const bad: Array<[string, string, RegExp]> = [
    ['not JSON', '[{', /^not JSON/],
    ['not an array', '{}', /^expected a non-empty array of inputs/],
    ['an empty array', '[]', /^expected a non-empty array of inputs/],
    ['no name', '[{"datatype":"FP32","shape":[1],"data":[1]}]', /^input 1: "name" must be a non-empty string$/],
    ['an unknown datatype', '[{"name":"x","datatype":"FLOAT","shape":[1],"data":[1]}]', /^input 1 \("x"\): "datatype" must be one of BOOL, .*, got "FLOAT"$/],
    ['an unknown field', '[{"name":"x","datatype":"FP32","shape":[1],"data":[1],"contents":[]}]', /^input 1 \("x"\): unknown field "contents"$/],
    ['a bad shape', '[{"name":"x","datatype":"FP32","shape":[-1],"data":[1]}]', /^input 1 \("x"\): "shape" must be an array of integers >= 0$/],
    ['too few elements', '[{"name":"x","datatype":"FP32","shape":[2],"data":[1]}]', /^input 1 \("x"\): shape \[2\] holds 2 elements, "data" has 1$/],
    ['a string for FP32', '[{"name":"x","datatype":"FP32","shape":[1],"data":["1"]}]', /^input 1 \("x"\): data\[0\] "1" is not a number$/],
    ['INT8 out of range', '[{"name":"x","datatype":"INT8","shape":[1],"data":[128]}]', /^input 1 \("x"\): data\[0\] 128 is out of INT8's range \[-128, 127\]$/],
    ['a fraction for INT32', '[{"name":"x","datatype":"INT32","shape":[1],"data":[1.5]}]', /^input 1 \("x"\): data\[0\] 1.5 is not an integer$/],
    ['an unsafe INT64 number', '[{"name":"x","datatype":"INT64","shape":[1],"data":[9007199254740993]}]', /^input 1 \("x"\): data\[0\] 9007199254740992 is not an integer/],
    ['UINT64 below 0', '[{"name":"x","datatype":"UINT64","shape":[1],"data":["-1"]}]', /^input 1 \("x"\): data\[0\] "-1" is out of UINT64's range$/],
    ['a BOOL of 2', '[{"name":"x","datatype":"BOOL","shape":[1],"data":[2]}]', /^input 1 \("x"\): data\[0\] 2 is not true, false, 0 or 1$/],
    ['a number for BYTES', '[{"name":"x","datatype":"BYTES","shape":[1],"data":[1]}]', /^input 1 \("x"\): data\[0\] 1 is not a string$/],
  ];
  for (const [what, text, message] of bad) {
    it(`${what}: an error naming the input and the element`, () => {
      assert.throws(() => inputsFromJson(text), (e: Error) => message.test(e.message));
    });
  }

  it('writes INT64 as numbers when safe, else strings; BOOL as booleans; non-finite numbers and non-UTF-8 BYTES as strings', () => {
    const json = (output: InferOutput) => outputToJson(output).data;
    assert.deepEqual(json({ name: 'l', datatype: 'INT64', shape: [3], data: BigInt64Array.of(-5n, 2n ** 53n - 1n, 2n ** 53n) }), [-5, 9007199254740991, '9007199254740992']);
    assert.deepEqual(json({ name: 'u', datatype: 'UINT64', shape: [1], data: BigUint64Array.of(2n ** 64n - 1n) }), ['18446744073709551615']);
    assert.deepEqual(json({ name: 'b', datatype: 'BOOL', shape: [2], data: Uint8Array.of(1, 0) }), [true, false]);
    assert.deepEqual(json({ name: 'f', datatype: 'FP32', shape: [4], data: Float32Array.of(0.5, NaN, Infinity, -Infinity) }), [0.5, 'NaN', 'Infinity', '-Infinity']);
    assert.deepEqual(json({ name: 'h', datatype: 'FP16', shape: [2], data: Uint16Array.of(0x3c00, 0x7c00) }), [1, 'Infinity']);
    assert.deepEqual(json({ name: 's', datatype: 'BYTES', shape: [2], data: [Buffer.from('é'), Buffer.from([0xff])] }), ['é', { base64: '/w==' }]);
    assert.deepEqual(outputToJson({ name: 'y', datatype: 'INT8', shape: [1, 1], data: Int8Array.of(-1) }), { name: 'y', datatype: 'INT8', shape: [1, 1], data: [-1] });
  });
});

describe('v2 command line', () => {
  let dir: string;
  let inputsFile: string;
  before(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'tickserve-v2-args-'));
    inputsFile = path.join(dir, 'inputs.json');
    writeFileSync(inputsFile, '[{"name":"x","datatype":"FP32","shape":[1,2],"data":[1,2]}]');
  });

  it('reads every option of the v2 commands, with their defaults', () => {
    const connection = { target: '127.0.0.1:50051', gzip: false, headers: {} };
    assert.deepEqual(parseCommandLine(['models']), { command: 'models', ...connection, readyOnly: false, deadlineMs: 5000 });
    assert.deepEqual(parseCommandLine(['models', '--ready', '--deadline-ms', '100']), { command: 'models', ...connection, readyOnly: true, deadlineMs: 100 });
    assert.deepEqual(parseCommandLine(['load', 'm']), { command: 'load', ...connection, model: 'm', deadlineMs: 60000 });
    assert.deepEqual(parseCommandLine(['unload', 'm', '--target', 'h:1']), { command: 'unload', ...connection, target: 'h:1', model: 'm', deadlineMs: 60000 });
    assert.deepEqual(parseCommandLine(['metadata', 'm', '--model-version', '2']), { command: 'metadata', ...connection, model: 'm', modelVersion: '2', deadlineMs: 5000 });
    assert.deepEqual(parseCommandLine(['infer', 'm', '--inputs', inputsFile, '--gzip']), {
      command: 'infer',
      ...connection,
      gzip: true,
      model: 'm',
      modelVersion: '',
      inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 2], data: Float32Array.of(1, 2) }],
      deadlineMs: 5000,
    });
  });

  it('--header KEY=VALUE, repeatable, on every command; keys lower-cased, values may hold =', () => {
    const headers = { 'x-a': '1', 'x-b': 'k=v' };
    const args = ['--header', 'X-A=1', '--header', 'x-b=k=v'];
    for (const command of [['models'], ['load', 'm'], ['unload', 'm'], ['metadata', 'm'], ['infer', 'm', '--inputs', inputsFile], ['predict', '--features', '1']]) {
      assert.deepEqual((parseCommandLine([...command, ...args]) as { headers: object }).headers, headers, command[0]);
    }
    assert.deepEqual((parseCommandLine(['replay', '--csv', inputsFile, '--header', 'x-empty=']) as { headers: object }).headers, { 'x-empty': '' });
  });

  const bad: Array<[string[], RegExp]> = [
    [['frobnicate'], /^unknown command "frobnicate": predict, replay, models, load, unload, metadata or infer$/],
    [['load'], /^load needs a model NAME$/],
    [['unload', '--target', 'h:1'], /^unload needs a model NAME$/],
    [['metadata'], /^metadata needs a model NAME$/],
    [['infer', '--inputs', 'FILE'], /^infer needs a model NAME$/],
    [['load', 'a', 'b'], /^unexpected argument "b"$/],
    [['models', 'extra'], /^unexpected argument "extra"$/],
    [['infer', 'm'], /^infer needs --inputs FILE \(or - for stdin\)$/],
    [['infer', 'm', '--inputs', '/nonexistent/in.json'], /^--inputs \/nonexistent\/in.json: cannot read it \(ENOENT\)$/],
    [['infer', 'm', '--inputs', 'BAD'], /^--inputs .*bad.json: input 1 \("x"\): shape \[2\] holds 2 elements, "data" has 1$/],
    [['models', '--ready=x'], /^Option '--ready' does not take an argument/],
    [['models', '--inputs', 'FILE'], /^--inputs is not an option of models$/],
    [['load', 'm', '--model-version', '1'], /^--model-version is not an option of load$/],
    [['metadata', 'm', '--features', '1'], /^--features is not an option of metadata$/],
    [['replay', '--csv', 'FILE', '--deadline-ms', '1'], /^--deadline-ms is not an option of replay$/],
    [['models', '--deadline-ms', '0'], /^--deadline-ms must be a number > 0, got "0"$/],
    [['models', '--header', 'novalue'], /^--header "novalue": expected KEY=VALUE$/],
    [['models', '--header', '=v'], /^--header "=v": expected KEY=VALUE$/],
    [['models', '--header', 'a b=1'], /^--header "a b": a key is letters, digits/],
    [['models', '--header', 'grpc-timeout=1S'], /^--header "grpc-timeout": keys starting grpc- are gRPC's own$/],
    [['models', '--header', 'x-a=1', '--header', 'X-A=2'], /^--header "x-a" given twice$/],
  ];
  for (const [args, message] of bad) {
    it(`${args.join(' ')}: a usage error`, () => {
      const badFile = path.join(dir, 'bad.json');
      writeFileSync(badFile, '[{"name":"x","datatype":"FP32","shape":[2],"data":[1]}]');
      const withFiles = args.map((arg) => (arg === 'FILE' ? inputsFile : arg === 'BAD' ? badFile : arg));
      assert.throws(() => parseCommandLine(withFiles), (error: unknown) => error instanceof UsageError && message.test(error.message));
    });
  }

  it('formats the repository index as a table, columns lined up', () => {
    const table = formatModels([
      { name: 'fx', version: '1', state: 'READY', reason: '' },
      { name: 'broken-model', version: '12', state: 'UNAVAILABLE', reason: 'load failed' },
    ]);
    assert.equal(
      table,
      ['NAME          VERSION  STATE        REASON', 'fx            1        READY', 'broken-model  12       UNAVAILABLE  load failed'].join('\n'),
    );
    assert.equal(formatModels([]), 'NAME  VERSION  STATE  REASON');
  });
});

describe('v2 CLI, as a child process', () => {
  let server: EchoServer;
  before(async () => {
    server = await startEchoServer();
  });
  after(() => server.close());

  /** Runs the CLI with `stdin` piped in; resolves with the exit code and both outputs. */
  async function cli(args: string[], stdin = ''): Promise<{ code: number | null; stdout: string; stderr: string }> {
    const child = spawn(process.execPath, [CLI, ...args]);
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk));
    child.stdin.end(stdin);
    const [code] = await once(child, 'close');
    return { code, stdout, stderr };
  }

  it('--help lists the v2 commands and --header, and exits 0', async () => {
    const { stdout } = await run(process.execPath, [CLI, '--help']);
    for (const command of ['models [--ready]', 'load NAME', 'unload NAME', 'metadata NAME', 'infer NAME --inputs FILE|-', '--header KEY=VALUE']) {
      assert.ok(stdout.includes(command), command);
    }
    assert.equal((await cli(['infer', '-h'])).code, 0);
  });

  const usageErrors: Array<[string[], string]> = [
    [['load'], 'error: load needs a model NAME'],
    [['infer', 'm', '--inputs', '-'], 'error: --inputs stdin: not JSON'],
    [['models', '--header', 'novalue'], 'error: --header "novalue": expected KEY=VALUE'],
    [['metadata', 'm', '--csv', 'x'], 'error: --csv is not an option of metadata'],
  ];
  for (const [args, message] of usageErrors) {
    it(`${args.join(' ')}: exits 2 with the error and the usage`, async () => {
      const { code, stdout, stderr } = await cli(args, '[{');
      assert.equal(code, 2);
      assert.equal(stdout, '');
      assert.ok(stderr.startsWith(message), stderr);
      assert.ok(stderr.includes('\n\nusage: npm run client'), stderr);
    });
  }

  it('models prints the repository index as a table', async () => {
    const { code, stdout } = await cli(['models', '--target', server.address]);
    assert.equal(code, 0);
    assert.equal(stdout, 'NAME          VERSION  STATE        REASON\necho          1        READY\nbroken-model  12       UNAVAILABLE  load failed: bad graph\n');
  });

  it('infer reads the inputs from stdin and prints the outputs as JSON; --header reaches the server', async () => {
    const inputs = [
      { name: 'x', datatype: 'FP32', shape: [1, 4], data: [1, 2, 3, 4.5] },
      { name: 'n', datatype: 'INT64', shape: [2], data: [1, '9007199254740993'] },
    ];
    const { code, stdout, stderr } = await cli(['infer', 'echo', '--target', server.address, '--inputs', '-', '--header', 'x-restricted=yes'], JSON.stringify(inputs));
    assert.equal(code, 0, stderr);
    assert.deepEqual(JSON.parse(stdout), [inputs[0], { ...inputs[1], data: [1, '9007199254740993'] }]);
    assert.equal(server.calls.at(-1)!.headers['x-restricted'], 'yes');
  });

  it('load, unload and metadata', async () => {
    assert.deepEqual(await cli(['load', 'echo', '--target', server.address]), { code: 0, stdout: 'loaded echo\n', stderr: '' });
    assert.deepEqual(await cli(['unload', 'echo', '--target', server.address]), { code: 0, stdout: 'unloaded echo\n', stderr: '' });
    const { code, stdout } = await cli(['metadata', 'echo', '--target', server.address, '--model-version', '2']);
    assert.equal(code, 0);
    assert.deepEqual(JSON.parse(stdout).inputs, [{ name: 'x', datatype: 'FP32', shape: [-1, 4] }]);
  });

  it('a failed call exits 1 with CODE: details', async () => {
    assert.deepEqual(await cli(['metadata', ECHO_MODELS.missing, '--target', server.address]), { code: 1, stdout: '', stderr: 'error: NOT_FOUND: no model "missing"\n' });
  });
});

describe('InferenceClient against tickserve', () => {
  /** FP32 [batch, 4, 8] in, [batch, 3] out: an MLP that onnxruntime can check. */
  const FX = { name: 'fx', inputShape: [4, 8], hidden: [16], outputs: 3, softmax: false, seed: 11 };
  let server: TestServer;
  let client: InferenceClient;
  let root: string;
  const fxPath = () => path.join(root, 'fx', '1', 'model.onnx');
  const fxInput = (request: number, rows: number): InferInput => ({
    name: 'input',
    datatype: 'FP32',
    shape: [rows, 4, 8],
    data: Float32Array.from(featuresFor(request, rows, 32)),
  });

  before(async () => {
    root = writeRepository({ fx: { versions: { '1': FX } }, 'two-outputs': { versions: { '1': SHAPED_MODELS.twoOutputs() } } });
    server = await startServer({ MODEL_PATH: '', MODEL_REPOSITORY: root, MODEL_CONTROL_MODE: 'explicit', LOAD_MODELS: 'fx', DEFAULT_MODEL: 'fx' });
    client = new InferenceClient({ target: server.address, deadlineMs: 5000, headers: { 'x-desk': 'fx' } });
  });
  after(async () => {
    client.close();
    await server.close();
  });

  it('health and server metadata', async () => {
    assert.equal(await client.serverLive(), true);
    assert.equal(await client.serverReady(), true);
    assert.equal(await client.modelReady('fx'), true);
    assert.equal(await client.modelReady('fx', '2'), false);
    const metadata = await client.serverMetadata();
    assert.equal(metadata.name, 'tickserve');
    assert.ok(metadata.extensions.includes('model_repository'), metadata.extensions.join(', '));
  });

  it('infer: an FP32 batch answers what onnxruntime computes, sent raw or as typed contents', async () => {
    const input = fxInput(3, 2);
    const expected = await referenceOutputs(fxPath(), input.data as Float32Array, 2);
    for (const encoding of ['raw', 'contents'] as const) {
      const result = await client.infer('fx', [input], { id: `req-${encoding}`, encoding });
      assert.deepEqual([result.modelName, result.modelVersion, result.id], ['fx', '1', `req-${encoding}`]);
      assert.equal(result.outputs.length, 1);
      const [output] = result.outputs;
      assert.deepEqual([output.name, output.datatype, output.shape], ['output', 'FP32', [2, 3]]);
      assert.ok(output.data instanceof Float32Array);
      assertClose(output.data as Float32Array, expected, encoding);
    }
  });

  it('modelMetadata: the batch dimension as -1', async () => {
    assert.deepEqual(await client.modelMetadata('fx'), {
      name: 'fx',
      versions: ['1'],
      platform: 'onnxruntime_onnx',
      inputs: [{ name: 'input', datatype: 'FP32', shape: [-1, 4, 8] }],
      outputs: [{ name: 'output', datatype: 'FP32', shape: [-1, 3] }],
    });
    await assert.rejects(client.modelMetadata('nope'), (e: grpc.ServiceError) => e.code === grpc.status.NOT_FOUND && /nope/.test(e.details));
  });

  it('modelConfig and modelStatistics', async () => {
    const config = await client.modelConfig('fx');
    assert.equal(config.name, 'fx');
    assert.deepEqual(config.input.map((i) => [i.name, i.data_type, i.dims]), [['input', 'TYPE_FP32', ['4', '8']]]);
    await client.infer('fx', [fxInput(1, 1)]);
    const [stats] = await client.modelStatistics('fx', '1');
    assert.deepEqual([stats.name, stats.version], ['fx', '1']);
    assert.ok(Number(stats.inference_count) >= 1, stats.inference_count);
  });

  it('repositoryIndex, load and unload', async () => {
    const states = async (readyOnly = false) => (await client.repositoryIndex(readyOnly)).map((m) => `${m.name}:${m.version}:${m.state}`);
    assert.deepEqual(await states(), ['fx:1:READY', 'two-outputs::UNAVAILABLE']);
    assert.deepEqual(await states(true), ['fx:1:READY']);
    await client.load('two-outputs');
    assert.deepEqual(await states(true), ['fx:1:READY', 'two-outputs:1:READY']);
    const x = Float32Array.of(1, 2, 3, 4);
    const result = await client.infer('two-outputs', [{ name: 'x', datatype: 'FP32', shape: [1, 4], data: x }], { outputs: ['plus_one', 'same'] });
    assert.deepEqual(result.outputs.map((o) => [o.name, o.shape, Array.from(o.data as Float32Array)]), [
      ['plus_one', [1, 4], [2, 3, 4, 5]],
      ['same', [1, 4], [1, 2, 3, 4]],
    ]);
    await client.unload('two-outputs');
    assert.equal(await client.modelReady('two-outputs'), false);
    await assert.rejects(
      client.load('not-in-the-repository'),
      (e: grpc.ServiceError) => e.code === grpc.status.NOT_FOUND && /^model "not-in-the-repository" is not in the repository/.test(e.details),
    );
  });

  it('a request the server refuses rejects with its INVALID_ARGUMENT, details passed through', async () => {
    await assert.rejects(
      client.infer('fx', [{ name: 'input', datatype: 'FP32', shape: [1, 32], data: new Float32Array(32) }]),
      (e: grpc.ServiceError) => e.code === grpc.status.INVALID_ARGUMENT && e.details === 'input "input": shape [1, 32] sent, the model takes [-1, 4, 8] (-1: any)',
    );
  });

  it('stream: results in order, each what onnxruntime computes; a bad request in the middle gets an error result in its slot', async () => {
    const count = 300;
    const bad = 150;
    const requests = function* (): Generator<StreamRequest> {
      for (let i = 0; i < count; i++) {
        const input = i === bad ? { ...fxInput(i, 1), shape: [1, 3, 8], data: new Float32Array(24) } : fxInput(i, 1);
        yield { inputs: [input as InferInput], id: `r${i}` };
      }
    };
    const results = [];
    for await (const result of client.stream('fx', requests())) results.push(result);
    assert.equal(results.length, count);
    const rows = Float32Array.from(Array.from({ length: count }, (_, i) => featuresFor(i, 1, 32)).flat());
    const expected = await referenceOutputs(fxPath(), rows, count);
    results.forEach((result, i) => {
      if (i === bad) {
        assert.equal(result.error, 'input "input": shape [1, 3, 8] sent, the model takes [-1, 4, 8] (-1: any)');
        assert.equal(result.id, `r${bad}`);
        return;
      }
      if (result.error !== null) assert.fail(`result ${i}: ${result.error}`);
      assert.equal(result.id, `r${i}`);
      assertClose(result.outputs[0].data as Float32Array, expected.subarray(i * 3, i * 3 + 3), `result ${i}`);
    });
  });

  it('the CLI: models, metadata and infer', async () => {
    const { stdout: table } = await run(process.execPath, [CLI, 'models', '--target', server.address, '--ready']);
    assert.equal(table, 'NAME  VERSION  STATE  REASON\nfx    1        READY\n');
    const { stdout: metadata } = await run(process.execPath, [CLI, 'metadata', 'fx', '--target', server.address]);
    assert.deepEqual(JSON.parse(metadata).outputs, [{ name: 'output', datatype: 'FP32', shape: [-1, 3] }]);
    const input = fxInput(9, 1);
    const file = path.join(mkdtempSync(path.join(tmpdir(), 'tickserve-v2-cli-')), 'inputs.json');
    writeFileSync(file, JSON.stringify([{ name: 'input', datatype: 'FP32', shape: [1, 4, 8], data: Array.from(input.data as Float32Array) }]));
    const { stdout } = await run(process.execPath, [CLI, 'infer', 'fx', '--inputs', file, '--target', server.address, '--header', 'x-desk=fx']);
    const [output] = JSON.parse(stdout) as Array<{ name: string; datatype: string; shape: number[]; data: number[] }>;
    assert.deepEqual([output.name, output.datatype, output.shape], ['output', 'FP32', [1, 3]]);
    assertClose(output.data, await referenceOutputs(fxPath(), input.data as Float32Array, 1));
  });
});
