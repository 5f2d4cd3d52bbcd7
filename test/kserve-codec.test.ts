// The v2 inference codec (src/main/kserve/codec.ts) against proto-loader's generic protobufjs codec, the one it
// stands in for: requests decoded field by field the same, for many generated requests and wire forms; every request
// outside the common form left to the generic decoder (each kind its own case); answers read back by protobufjs the
// same as the generic encoder's.
import type * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import protobuf from 'protobufjs';
import { decodeCommonInferRequest, encodeInferResponse, encodeStreamInferResponse, inferRequestDeserializer } from '../src/main/kserve/codec';
import type { ModelInferResponse } from '../src/main/kserve/infer';
import { KSERVE_PROTO_OPTIONS, KSERVE_PROTO_PATH } from '../src/main/kserve/service';
import type { ModelInferRequest } from '../src/main/kserve/tensors';
import { seededRandom } from '../scripts/onnx-writer';

const service = protoLoader.loadSync(KSERVE_PROTO_PATH, KSERVE_PROTO_OPTIONS)['inference.GRPCInferenceService'] as grpc.ServiceDefinition;
const genericDecode = service.ModelInfer.requestDeserialize as (bytes: Buffer) => ModelInferRequest;
const genericEncode = service.ModelInfer.responseSerialize as (value: ModelInferResponse) => Buffer;
const genericStreamEncode = service.ModelStreamInfer.responseSerialize as (value: object) => Buffer;
const decode = inferRequestDeserializer(genericDecode);

const root = new protobuf.Root().loadSync(KSERVE_PROTO_PATH, { keepCase: true });
const Request = root.lookupType('inference.ModelInferRequest');
const Response = root.lookupType('inference.ModelInferResponse');
const StreamResponse = root.lookupType('inference.ModelStreamInferResponse');

const encodeRequest = (value: object) => Buffer.from(Request.encode(Request.fromObject(value)).finish());

const DATATYPES = ['FP32', 'FP16', 'INT64', 'BYTES', 'BOOL', 'UINT8', ''];

/** Generated request fields in the common form: ASCII strings (control characters too), dimensions < 2^49. */
function commonRequest(next: () => number) {
  const int = (n: number) => Math.floor(next() * n);
  const ascii = (max: number) => String.fromCharCode(...Array.from({ length: int(max + 1) }, () => (next() < 0.9 ? 0x20 + int(0x5f) : int(0x80))));
  const dim = () => [0, 1, 17, int(2 ** 31), int(2 ** 48)][int(5)];
  return {
    model_name: ascii(12),
    model_version: next() < 0.5 ? '' : String(int(100)),
    id: ascii(20),
    inputs: Array.from({ length: int(5) }, () => ({ name: ascii(8), datatype: DATATYPES[int(DATATYPES.length)], shape: Array.from({ length: int(5) }, dim) })),
    outputs: Array.from({ length: int(4) }, () => ({ name: ascii(8) })),
    raw_input_contents: Array.from({ length: int(5) }, () => Buffer.from(Array.from({ length: int(65) }, () => int(256)))),
  };
}

type Fields = ReturnType<typeof commonRequest>;

/**
 * The same fields in wire forms protobufjs's encoder does not write but any encoder may: each shape unpacked or split
 * over two packed runs, fields in another order, unknown fields of every wire type in each message, and a
 * model_name sent twice (the last one counts).
 */
function unusualWire(fields: Fields, next: () => number): Buffer {
  const w = protobuf.Writer.create();
  const unknowns = (at: protobuf.Writer) => {
    at.uint32((15 << 3) | 0).uint64(2 ** 40 + 3);
    at.uint32((16 << 3) | 1).fixed64(7);
    at.uint32((17 << 3) | 2).bytes(Buffer.from('ignored'));
    at.uint32((18 << 3) | 5).fixed32(9);
  };
  for (const raw of fields.raw_input_contents) w.uint32((7 << 3) | 2).bytes(raw);
  unknowns(w);
  for (const input of fields.inputs) {
    w.uint32((5 << 3) | 2).fork();
    unknowns(w);
    w.uint32((2 << 3) | 2).string(input.datatype);
    const half = Math.floor(input.shape.length / 2);
    if (next() < 0.5) {
      for (const d of input.shape) w.uint32((3 << 3) | 0).int64(d);
    } else {
      for (const part of [input.shape.slice(0, half), input.shape.slice(half)]) {
        w.uint32((3 << 3) | 2).fork();
        for (const d of part) w.int64(d);
        w.ldelim();
      }
    }
    w.uint32((1 << 3) | 2).string(input.name);
    w.ldelim();
  }
  for (const output of fields.outputs) {
    w.uint32((6 << 3) | 2).fork();
    unknowns(w);
    w.uint32((1 << 3) | 2).string(output.name);
    w.ldelim();
  }
  w.uint32((1 << 3) | 2).string('sent first, then replaced');
  w.uint32((3 << 3) | 2).string(fields.id);
  w.uint32((2 << 3) | 2).string(fields.model_version);
  w.uint32((1 << 3) | 2).string(fields.model_name);
  return Buffer.from(w.finish());
}

/** The composed decoder gives what the generic one gives, or throws what it throws. */
function assertAsGeneric(bytes: Buffer): void {
  let expected: ModelInferRequest | undefined;
  let failure: Error | undefined;
  try {
    expected = genericDecode(bytes);
  } catch (error) {
    failure = error as Error;
  }
  if (failure !== undefined) assert.throws(() => decode(bytes), (error: Error) => error.message === failure.message);
  else assert.deepStrictEqual(decode(bytes), expected);
}

describe('ModelInferRequest decoding', () => {
  it('reads 2,000 generated requests in the common form field for field as the generic decoder does', () => {
    const next = seededRandom(1);
    for (let i = 0; i < 2000; i++) {
      const bytes = encodeRequest(commonRequest(next));
      const fast = decodeCommonInferRequest(bytes);
      assert.notEqual(fast, null, `request ${i} left to the generic decoder`);
      assert.deepStrictEqual(fast, genericDecode(bytes), `request ${i}`);
    }
  });

  it('reads the same fields in other wire forms (unpacked or split shapes, any order, unknown fields, repeats) alike', () => {
    const next = seededRandom(2);
    for (let i = 0; i < 2000; i++) {
      const bytes = unusualWire(commonRequest(next), next);
      const fast = decodeCommonInferRequest(bytes);
      assert.notEqual(fast, null, `request ${i} left to the generic decoder`);
      assert.deepStrictEqual(fast, genericDecode(bytes), `request ${i}`);
    }
  });

  it('keeps raw_input_contents as views into the message, as the generic decoder does', () => {
    const bytes = encodeRequest({ inputs: [{ name: 'input', datatype: 'FP32', shape: [1, 2] }], raw_input_contents: [Buffer.alloc(8, 1), Buffer.alloc(0)] });
    const request = decodeCommonInferRequest(bytes)!;
    for (const raw of request.raw_input_contents) {
      assert.equal(raw.buffer, bytes.buffer);
      assert.ok(raw.byteOffset >= bytes.byteOffset && raw.byteOffset + raw.length <= bytes.byteOffset + bytes.length);
    }
    assert.deepEqual(request.inputs[0].shape, ['1', '2']);
  });

  it('reads an empty message as the defaults', () => {
    assert.deepStrictEqual(decodeCommonInferRequest(Buffer.alloc(0)), genericDecode(Buffer.alloc(0)));
  });

  // Each of these is outside the common form: the fast path declines it, and the generic decoder reads it (or
  // refuses it) exactly as before.
  const input = { name: 'input', datatype: 'FP32', shape: [1, 17] };
  const raw = [Buffer.alloc(68)];
  const others: Array<[string, () => Buffer]> = [
    ['request parameters (timeout)', () => encodeRequest({ parameters: { timeout: { int64_param: 5000 } }, inputs: [input], raw_input_contents: raw })],
    ['request parameters (sequence_id)', () => encodeRequest({ parameters: { sequence_id: { string_param: 'a' } }, inputs: [input], raw_input_contents: raw })],
    ['input parameters', () => encodeRequest({ inputs: [{ ...input, parameters: { binary_data_size: { int64_param: 68 } } }], raw_input_contents: raw })],
    ['typed contents', () => encodeRequest({ inputs: [{ ...input, contents: { fp32_contents: Array(17).fill(0.5) } }] })],
    ['output parameters', () => encodeRequest({ inputs: [input], outputs: [{ name: 'output', parameters: { classification: { int64_param: 2 } } }], raw_input_contents: raw })],
    ['a non-ASCII model_name', () => encodeRequest({ model_name: 'modèle', inputs: [input], raw_input_contents: raw })],
    ['a non-ASCII input name', () => encodeRequest({ inputs: [{ ...input, name: 'entrée' }], raw_input_contents: raw })],
    ['a non-ASCII output name', () => encodeRequest({ inputs: [input], outputs: [{ name: '出力' }], raw_input_contents: raw })],
    ['an id that is not valid UTF-8 (the generic decoder substitutes U+FFFD)', () => Buffer.from([0x1a, 0x02, 0xff, 0xfe])],
    ['a negative dimension (a 10-byte varint)', () => encodeRequest({ inputs: [{ ...input, shape: [-1, 17] }], raw_input_contents: raw })],
    ['a dimension of 2^53', () => encodeRequest({ inputs: [{ ...input, shape: [2 ** 53, 17] }], raw_input_contents: raw })],
    ['model_name with the varint wire type (an unknown field to the generic decoder)', () => Buffer.from([0x08, 0x05])],
    ['a shape with the fixed32 wire type', () => Buffer.from([0x2a, 0x05, 0x1d, 0x01, 0x00, 0x00, 0x00])],
    ['field number 0', () => Buffer.from([0x00, 0x01])],
    ['an unknown group field', () => Buffer.from([0x83, 0x01, 0x84, 0x01])],
    ['a message cut inside raw_input_contents', () => encodeRequest({ inputs: [input], raw_input_contents: raw }).subarray(0, 40)],
    ['an input whose length runs past the message', () => Buffer.from([0x2a, 0x10, 0x0a, 0x01, 0x61])],
    ['a tensor field whose length runs past its tensor', () => Buffer.from([0x2a, 0x03, 0x0a, 0x05, 0x61, 0x62, 0x63, 0x64, 0x65])],
  ];
  for (const [name, make] of others) {
    it(`${name}: left to the generic decoder`, () => {
      const bytes = make();
      assert.equal(decodeCommonInferRequest(bytes), null);
      assertAsGeneric(bytes);
    });
  }
});

/** Generated answers: strings of any kind, shapes with zero, large and (though the server has none) negative dims. */
function response(next: () => number): ModelInferResponse {
  const int = (n: number) => Math.floor(next() * n);
  const text = (max: number) => Array.from({ length: int(max + 1) }, () => ['a', 'Z', '0', '_', 'é', '出', '😀', ' '][int(8)]).join('');
  const dim = () => [0, 1, 5, int(2 ** 31), int(2 ** 50), -1][int(6)];
  const outputs = Array.from({ length: int(5) }, () => ({ name: text(8), datatype: DATATYPES[int(DATATYPES.length)], shape: Array.from({ length: int(5) }, dim) }));
  return {
    model_name: text(10),
    model_version: next() < 0.3 ? '' : String(int(1000)),
    id: text(12),
    outputs,
    raw_output_contents: outputs.map(() => Buffer.from(Array.from({ length: int(41) }, () => int(256)))),
  };
}

const readBack = (type: protobuf.Type, bytes: Buffer) => type.toObject(type.decode(bytes), KSERVE_PROTO_OPTIONS);

describe('ModelInferResponse encoding', () => {
  it('writes 2,000 generated answers that protobufjs reads back as it reads the generic encoder\'s', () => {
    const next = seededRandom(3);
    for (let i = 0; i < 2000; i++) {
      const answer = response(next);
      assert.deepStrictEqual(readBack(Response, encodeInferResponse(answer)), readBack(Response, genericEncode(answer)), `answer ${i}`);
    }
  });

  it('writes ModelStreamInferResponses alike: results, failures with what is known, and an error alone', () => {
    const next = seededRandom(4);
    for (let i = 0; i < 1000; i++) {
      const failed = next() < 0.5;
      const value = { error_message: failed ? `input "x": shape [${i}] sent, the model takes [-1,17] — é` : '', infer_response: next() < 0.1 ? null : response(next) };
      assert.deepStrictEqual(readBack(StreamResponse, encodeStreamInferResponse(value)), readBack(StreamResponse, genericStreamEncode(value)), `answer ${i}`);
    }
  });

  it('writes an answer of the server\'s shape with the values it holds', () => {
    const predictions = Buffer.from(Float32Array.from([0.1, 0.2, 0.7]).buffer);
    const answer = { model_name: 'default', model_version: '1', id: 'r-1', outputs: [{ name: 'output', datatype: 'FP32', shape: [1, 3] }], raw_output_contents: [predictions] };
    assert.deepStrictEqual(readBack(Response, encodeInferResponse(answer)), {
      model_name: 'default',
      model_version: '1',
      id: 'r-1',
      parameters: {},
      outputs: [{ name: 'output', datatype: 'FP32', shape: ['1', '3'], parameters: {}, contents: null }],
      raw_output_contents: [predictions],
    });
  });
});
