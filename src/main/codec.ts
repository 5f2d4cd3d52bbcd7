// The wire codec of Predict and StreamPredict. A request's features stay the bytes they arrived as (a view into the
// received message) until the batcher copies them into a slab; an answer is encoded from the slab's output bytes.
// No JS array of numbers in between (the generic protobufjs codec builds one boxed double per float, both ways).
// Field numbers follow proto/model_service.proto.
//
// Decoding never throws: a malformed message comes back with decodeError set, so that the handler can answer it
// with INVALID_ARGUMENT (grpc-js would answer a throwing deserializer with INTERNAL).
// Floats travel as little-endian float32 bytes, as protobuf sends them; the slab's Float32Array views read them
// natively, which assumes a little-endian host (x86-64, arm64).
import { EMPTY_BUFFER, varintSize, WIRE_FIXED32, WIRE_FIXED64, WIRE_LENGTH, WIRE_VARINT, writeVarint } from './wire';

export interface PredictRequest {
  /** The features as little-endian float32 bytes, back to back. */
  featureBytes: Buffer;
  featureCount: number;
  /** As sent: 0 means one row; may be negative (rejected later). */
  batchSize: number;
  modelVersion: string;
  /** Empty: the default model. */
  modelName: string;
  /** Why the bytes are not a PredictRequest; null when they are. */
  decodeError: string | null;
}

export interface ResponseError {
  code: number;
  message: string;
}

/** Everything of a PredictResponse but its predictions, which encodeResponse takes as bytes. */
export interface ResponseFields {
  latencyMs: number;
  /** encodeVersionField(version), made once per served version. */
  versionField: Buffer;
  batchRows: number;
  queueUs: number;
  computeUs: number;
  error: ResponseError | null;
}

// Decoder cursor, module-level so that the hot path allocates no reader object; decoding is synchronous.
let buf: Buffer = EMPTY_BUFFER;
let pos = 0;

class Malformed extends Error {}

function varint32(): number {
  // The low 32 bits of a varint of up to 10 bytes: int32 fields carry negatives as 64-bit two's complement.
  let value = 0;
  for (let shift = 0; shift < 70; shift += 7) {
    if (pos >= buf.length) throw new Malformed('truncated varint');
    const byte = buf[pos++];
    if (shift < 32) value |= (byte & 0x7f) << shift;
    if (byte < 0x80) return value;
  }
  throw new Malformed('varint longer than 10 bytes');
}

function length(): number {
  let value = 0;
  for (let factor = 1; factor < 2 ** 35; factor *= 128) {
    if (pos >= buf.length) throw new Malformed('truncated length');
    const byte = buf[pos++];
    value += (byte & 0x7f) * factor;
    if (byte < 0x80) {
      if (value > buf.length - pos) throw new Malformed('field length past the end of the message');
      return value;
    }
  }
  throw new Malformed('length varint too long');
}

function skip(wireType: number): void {
  switch (wireType) {
    case WIRE_VARINT:
      varint32();
      return;
    case WIRE_FIXED64:
      pos += 8;
      break;
    case WIRE_LENGTH: {
      const n = length(); // read before adding: `pos += length()` would add to the stale pos
      pos += n;
      return;
    }
    case WIRE_FIXED32:
      pos += 4;
      break;
    default:
      throw new Malformed(`unsupported wire type ${wireType}`);
  }
  if (pos > buf.length) throw new Malformed('truncated field');
}

/** Copies the features out of the message; only called for the rare message with unpacked or split features. */
function gatherFeatures(count: number): Buffer {
  const bytes = Buffer.allocUnsafe(count * 4);
  let filled = 0;
  pos = 0;
  while (pos < buf.length) {
    const tag = varint32();
    if (tag === (1 << 3) + WIRE_LENGTH) {
      const n = length();
      buf.copy(bytes, filled, pos, pos + n);
      filled += n;
      pos += n;
    } else if (tag === (1 << 3) + WIRE_FIXED32) {
      buf.copy(bytes, filled, pos, pos + 4);
      filled += 4;
      pos += 4;
    } else {
      skip(tag & 7);
    }
  }
  return bytes;
}

export function decodePredictRequest(bytes: Buffer): PredictRequest {
  buf = bytes;
  pos = 0;
  let batchSize = 0;
  let modelVersion = '';
  let modelName = '';
  let packedStart = -1;
  let packedBytes = 0;
  let floatCount = 0;
  let simple = true; // all features in one packed field: copy them in one go
  try {
    while (pos < buf.length) {
      const tag = varint32();
      const field = tag >>> 3;
      const wireType = tag & 7;
      if (field === 1 && wireType === WIRE_LENGTH) {
        const n = length();
        if (n % 4 !== 0) throw new Malformed(`packed features of ${n} bytes is not a whole number of floats`);
        if (packedStart >= 0) simple = false;
        packedStart = pos;
        packedBytes = n;
        floatCount += n / 4;
        pos += n;
      } else if (field === 1 && wireType === WIRE_FIXED32) {
        if (pos + 4 > buf.length) throw new Malformed('truncated float');
        simple = false;
        floatCount += 1;
        pos += 4;
      } else if (field === 2 && wireType === WIRE_VARINT) {
        batchSize = varint32() | 0;
      } else if (field === 3 && wireType === WIRE_LENGTH) {
        const n = length();
        modelVersion = buf.toString('utf8', pos, pos + n);
        pos += n;
      } else if (field === 4 && wireType === WIRE_LENGTH) {
        const n = length();
        modelName = buf.toString('utf8', pos, pos + n);
        pos += n;
      } else if (field === 0) {
        throw new Malformed('field number 0');
      } else if (field <= 4) {
        throw new Malformed(`field ${field} has wire type ${wireType}`);
      } else {
        skip(wireType);
      }
    }
    let featureBytes = EMPTY_BUFFER;
    if (floatCount > 0 && simple) featureBytes = buf.subarray(packedStart, packedStart + packedBytes);
    else if (floatCount > 0) featureBytes = gatherFeatures(floatCount);
    return { featureBytes, featureCount: floatCount, batchSize, modelVersion, modelName, decodeError: null };
  } catch (error) {
    if (!(error instanceof Malformed)) throw error;
    return { featureBytes: EMPTY_BUFFER, featureCount: 0, batchSize: 0, modelVersion: '', modelName: '', decodeError: error.message };
  } finally {
    buf = EMPTY_BUFFER; // do not keep the caller's message alive
  }
}

/** Unsigned varint fields are written only when non-zero, as proto3 does. */
function uintFieldSize(value: number): number {
  return value > 0 ? 1 + varintSize(value) : 0;
}

function writeUintField(out: Buffer, at: number, tag: number, value: number): number {
  if (value <= 0) return at;
  out[at++] = tag;
  return writeVarint(out, at, value);
}

function errorSize(error: ResponseError): number {
  const messageBytes = Buffer.byteLength(error.message);
  // code is an int32; status codes are 0..16, so never negative here
  return uintFieldSize(error.code) + (messageBytes > 0 ? 1 + varintSize(messageBytes) + messageBytes : 0);
}

/** Field 3 (model_version), encoded once per served version and copied into every answer. */
export function encodeVersionField(version: string): Buffer {
  const bytes = Buffer.byteLength(version);
  if (bytes === 0) return EMPTY_BUFFER;
  const out = Buffer.allocUnsafe(1 + varintSize(bytes) + bytes);
  out[0] = (3 << 3) | WIRE_LENGTH;
  out.write(version, writeVarint(out, 1, bytes));
  return out;
}

/** A PredictResponse whose predictions are bytes `start` to `end` of `source` (little-endian float32s). */
export function encodeResponse(source: Buffer, start: number, end: number, fields: ResponseFields): Buffer {
  const predictionBytes = end - start;
  const queueUs = Math.round(fields.queueUs);
  const computeUs = Math.round(fields.computeUs);
  const nestedError = fields.error === null ? 0 : errorSize(fields.error);
  const size =
    (predictionBytes > 0 ? 1 + varintSize(predictionBytes) + predictionBytes : 0) +
    (fields.latencyMs !== 0 ? 5 : 0) +
    fields.versionField.length +
    uintFieldSize(fields.batchRows) +
    uintFieldSize(queueUs) +
    uintFieldSize(computeUs) +
    (fields.error === null ? 0 : 1 + varintSize(nestedError) + nestedError);
  const out = Buffer.allocUnsafe(size);
  let at = 0;
  if (predictionBytes > 0) {
    out[at++] = (1 << 3) | WIRE_LENGTH;
    at = writeVarint(out, at, predictionBytes);
    at += source.copy(out, at, start, end);
  }
  if (fields.latencyMs !== 0) {
    out[at++] = (2 << 3) | WIRE_FIXED32;
    at = out.writeFloatLE(fields.latencyMs, at);
  }
  at += fields.versionField.copy(out, at);
  at = writeUintField(out, at, (4 << 3) | WIRE_VARINT, fields.batchRows);
  at = writeUintField(out, at, (5 << 3) | WIRE_VARINT, queueUs);
  at = writeUintField(out, at, (6 << 3) | WIRE_VARINT, computeUs);
  if (fields.error !== null) {
    out[at++] = (7 << 3) | WIRE_LENGTH;
    at = writeVarint(out, at, nestedError);
    at = writeUintField(out, at, (1 << 3) | WIRE_VARINT, fields.error.code);
    const messageBytes = Buffer.byteLength(fields.error.message);
    if (messageBytes > 0) {
      out[at++] = (2 << 3) | WIRE_LENGTH;
      at = writeVarint(out, at, messageBytes);
      at += out.write(fields.error.message, at);
    }
  }
  return out;
}

/** A PredictResponse carrying only an error (a stream message that failed). */
export function encodeFailure(latencyMs: number, versionField: Buffer, error: ResponseError): Buffer {
  return encodeResponse(EMPTY_BUFFER, 0, 0, { latencyMs, versionField, batchRows: 0, queueUs: 0, computeUs: 0, error });
}
