// The purpose-built codec against protobufjs, the codec every ordinary client uses, on the same proto file.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import protobuf from 'protobufjs';
import {
  decodePredictRequest,
  encodeFailure,
  encodeResponse,
  encodeVersionField,
  type PredictRequest,
  type ResponseFields,
} from '../src/main/codec';
import { PROTO_PATH } from '../src/main/server';

const root = protobuf.loadSync(PROTO_PATH);
const Request = root.lookupType('inference.PredictRequest');
const Response = root.lookupType('inference.PredictResponse');

/** The decoded features as numbers (the server itself never needs them as numbers). */
function readFeatures(request: PredictRequest): number[] {
  return Array.from({ length: request.featureCount }, (_, i) => request.featureBytes.readFloatLE(i * 4));
}

const encodeRequest = (fields: object) => Buffer.from(Request.encode(Request.fromObject(fields)).finish());

describe('PredictRequest decoding', () => {
  it('decodes packed features, batch_size and model_version as protobufjs encodes them', () => {
    const features = [0.5, -1.25, 3e-7, 1e9];
    const decoded = decodePredictRequest(encodeRequest({ features, batchSize: 2, modelVersion: 'v7' }));
    assert.equal(decoded.decodeError, null);
    assert.deepEqual(Array.from(readFeatures(decoded)), features.map(Math.fround));
    assert.equal(decoded.featureCount, 4);
    assert.equal(decoded.batchSize, 2);
    assert.equal(decoded.modelVersion, 'v7');
  });

  it('decodes model_name (field 4), which seed clients never set', () => {
    const decoded = decodePredictRequest(encodeRequest({ features: [1], modelName: 'fx-eur', modelVersion: '3' }));
    assert.equal(decoded.decodeError, null);
    assert.equal(decoded.modelName, 'fx-eur');
    assert.equal(decoded.modelVersion, '3');
    assert.equal(decodePredictRequest(encodeRequest({ features: [1] })).modelName, '');
  });

  it('model_name with the wrong wire type is malformed', () => {
    const bytes = Buffer.from([0x0d, 0, 0, 0x80, 0x3f, 0x20, 0x01]); // features [1], then field 4 as a varint
    assert.match(decodePredictRequest(bytes).decodeError ?? '', /field 4 has wire type 0/);
  });

  it('decodes an empty message as no features, batch_size 0, no version', () => {
    const decoded = decodePredictRequest(Buffer.alloc(0));
    assert.deepEqual(decoded, { featureBytes: Buffer.alloc(0), featureCount: 0, batchSize: 0, modelVersion: '', modelName: '', decodeError: null });
  });

  it('keeps a negative batch_size negative (int32 sent as a 10-byte varint)', () => {
    assert.equal(decodePredictRequest(encodeRequest({ features: [1], batchSize: -3 })).batchSize, -3);
  });

  it('accepts unpacked and split features, in order', () => {
    // field 1 unpacked (tag 0x0d, fixed32) twice, then one packed run of two floats
    const bytes = Buffer.alloc(5 + 5 + 2 + 8);
    bytes[0] = 0x0d;
    bytes.writeFloatLE(1.5, 1);
    bytes[5] = 0x0d;
    bytes.writeFloatLE(2.5, 6);
    bytes[10] = 0x0a;
    bytes[11] = 8;
    bytes.writeFloatLE(3.5, 12);
    bytes.writeFloatLE(4.5, 16);
    assert.deepEqual(Array.from(readFeatures(decodePredictRequest(bytes))), [1.5, 2.5, 3.5, 4.5]);
  });

  it('skips fields it does not know', () => {
    const known = encodeRequest({ features: [1, 2], batchSize: 1 });
    const unknown = Buffer.from([0x48, 0x96, 0x01, 0x52, 0x02, 0x68, 0x69]); // field 9 varint, field 10 bytes
    const decoded = decodePredictRequest(Buffer.concat([unknown, known]));
    assert.equal(decoded.decodeError, null);
    assert.deepEqual(Array.from(readFeatures(decoded)), [1, 2]);
  });

  const malformed: Array<[string, Buffer, RegExp]> = [
    ['truncated packed features', Buffer.from([0x0a, 0x08, 0, 0, 0x80, 0x3f]), /past the end/],
    ['packed features not a multiple of 4 bytes', Buffer.from([0x0a, 0x03, 1, 2, 3]), /whole number of floats/],
    ['a truncated varint', Buffer.from([0x10, 0x80]), /truncated varint/],
    ['field 0', Buffer.from([0x00, 0x01]), /field number 0/],
    ['features with the wrong wire type', Buffer.from([0x08, 0x01]), /field 1 has wire type 0/],
    ['an end-group wire type', Buffer.from([0x4c]), /wire type 4/],
  ];
  for (const [name, bytes, message] of malformed) {
    it(`reports ${name} as a decode error, without throwing`, () => {
      const decoded = decodePredictRequest(bytes);
      assert.match(decoded.decodeError ?? '', message);
      assert.equal(decoded.featureCount, 0);
    });
  }
});

describe('PredictResponse encoding', () => {
  const fields: ResponseFields = {
    latencyMs: 0.125,
    versionField: encodeVersionField('1'),
    batchRows: 12,
    queueUs: 80.4,
    computeUs: 300,
    error: null,
  };
  const bytesOf = (values: number[]) => Buffer.from(new Float32Array(values).buffer);

  it('is read back by protobufjs field for field', () => {
    const predictions = bytesOf([0.25, 0.75, -2]);
    const decoded = Response.toObject(Response.decode(encodeResponse(predictions, 0, predictions.length, fields)), { longs: Number });
    assert.deepEqual(decoded, {
      predictions: [0.25, 0.75, -2],
      latencyMs: 0.125,
      modelVersion: '1',
      batchRows: 12,
      queueUs: 80,
      computeUs: 300,
    });
  });

  it('encodes the given byte range of a larger buffer (a slab) only', () => {
    const slab = bytesOf([9, 9, 1, 2, 9]);
    const decoded = Response.decode(encodeResponse(slab, 8, 16, fields)) as unknown as { predictions: number[] };
    assert.deepEqual(decoded.predictions, [1, 2]);
  });

  it('encodes a per-message error and no predictions', () => {
    const bytes = encodeFailure(0.125, encodeVersionField('1'), { code: 3, message: 'wrong feature count: é' });
    const decoded = Response.toObject(Response.decode(bytes));
    assert.deepEqual(decoded, {
      latencyMs: 0.125,
      modelVersion: '1',
      error: { code: 3, message: 'wrong feature count: é' },
    });
  });

  it('writes large payloads with multi-byte lengths', () => {
    const values = Array.from({ length: 5000 }, (_, i) => i);
    const predictions = bytesOf(values);
    const decoded = Response.decode(encodeResponse(predictions, 0, predictions.length, fields)) as unknown as { predictions: number[] };
    assert.deepEqual(decoded.predictions, values);
  });
});
