// The wire codec of Predict and StreamPredict: PredictRequest bytes straight into a Float32Array, and a
// PredictResponse from a Float32Array straight into bytes, with no JS array of numbers in between (what the
// generic protobufjs codec builds, one boxed double per float). Field numbers follow proto/model_service.proto.
//
// Decoding never throws: a malformed message comes back with decodeError set, so that the handler can answer it
// with INVALID_ARGUMENT (grpc-js would answer a throwing deserializer with INTERNAL).
// Floats are copied as little-endian bytes into a Float32Array, which assumes a little-endian host (x86-64, arm64).

export interface PredictRequest {
  features: Float32Array;
  /** As sent: 0 means one row; may be negative (rejected later). */
  batchSize: number;
  modelVersion: string;
  /** Why the bytes are not a PredictRequest; null when they are. */
  decodeError: string | null;
}

export interface ResponseError {
  code: number;
  message: string;
}

export interface PredictResponse {
  predictions: Float32Array;
  latencyMs: number;
  modelVersion: string;
  batchRows: number;
  queueUs: number;
  computeUs: number;
  error: ResponseError | null;
}

const WIRE_VARINT = 0;
const WIRE_FIXED64 = 1;
const WIRE_LENGTH = 2;
const WIRE_FIXED32 = 5;

const EMPTY: Float32Array = new Float32Array(0);
const EMPTY_BUFFER = Buffer.alloc(0);

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
function gatherFeatures(count: number): Float32Array {
  const features = new Float32Array(count);
  const bytes = new Uint8Array(features.buffer);
  let filled = 0;
  pos = 0;
  while (pos < buf.length) {
    const tag = varint32();
    if (tag === (1 << 3) + WIRE_LENGTH) {
      const n = length();
      bytes.set(buf.subarray(pos, pos + n), filled);
      filled += n;
      pos += n;
    } else if (tag === (1 << 3) + WIRE_FIXED32) {
      bytes.set(buf.subarray(pos, pos + 4), filled);
      filled += 4;
      pos += 4;
    } else {
      skip(tag & 7);
    }
  }
  return features;
}

export function decodePredictRequest(bytes: Buffer): PredictRequest {
  buf = bytes;
  pos = 0;
  let batchSize = 0;
  let modelVersion = '';
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
      } else if (field === 0) {
        throw new Malformed('field number 0');
      } else if (field <= 3) {
        throw new Malformed(`field ${field} has wire type ${wireType}`);
      } else {
        skip(wireType);
      }
    }
    let features = EMPTY;
    if (floatCount > 0 && simple) {
      features = new Float32Array(floatCount);
      new Uint8Array(features.buffer).set(buf.subarray(packedStart, packedStart + packedBytes));
    } else if (floatCount > 0) {
      features = gatherFeatures(floatCount);
    }
    return { features, batchSize, modelVersion, decodeError: null };
  } catch (error) {
    if (!(error instanceof Malformed)) throw error;
    return { features: EMPTY, batchSize: 0, modelVersion: '', decodeError: error.message };
  } finally {
    buf = EMPTY_BUFFER; // do not keep the caller's message alive
  }
}

function varintSize(value: number): number {
  let size = 1;
  while (value >= 0x80) {
    value = Math.floor(value / 128);
    size++;
  }
  return size;
}

function writeVarint(out: Buffer, at: number, value: number): number {
  while (value >= 0x80) {
    out[at++] = (value & 0x7f) | 0x80;
    value = Math.floor(value / 128);
  }
  out[at++] = value;
  return at;
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

export function encodePredictResponse(response: PredictResponse): Buffer {
  const predictionBytes = response.predictions.length * 4;
  const versionBytes = Buffer.byteLength(response.modelVersion);
  const queueUs = Math.round(response.queueUs);
  const computeUs = Math.round(response.computeUs);
  const nestedError = response.error === null ? 0 : errorSize(response.error);
  const size =
    (predictionBytes > 0 ? 1 + varintSize(predictionBytes) + predictionBytes : 0) +
    (response.latencyMs !== 0 ? 5 : 0) +
    (versionBytes > 0 ? 1 + varintSize(versionBytes) + versionBytes : 0) +
    uintFieldSize(response.batchRows) +
    uintFieldSize(queueUs) +
    uintFieldSize(computeUs) +
    (response.error === null ? 0 : 1 + varintSize(nestedError) + nestedError);
  const out = Buffer.allocUnsafe(size);
  let at = 0;
  if (predictionBytes > 0) {
    out[at++] = (1 << 3) | WIRE_LENGTH;
    at = writeVarint(out, at, predictionBytes);
    const p = response.predictions;
    out.set(new Uint8Array(p.buffer, p.byteOffset, predictionBytes), at);
    at += predictionBytes;
  }
  if (response.latencyMs !== 0) {
    out[at++] = (2 << 3) | WIRE_FIXED32;
    at = out.writeFloatLE(response.latencyMs, at);
  }
  if (versionBytes > 0) {
    out[at++] = (3 << 3) | WIRE_LENGTH;
    at = writeVarint(out, at, versionBytes);
    at += out.write(response.modelVersion, at);
  }
  at = writeUintField(out, at, (4 << 3) | WIRE_VARINT, response.batchRows);
  at = writeUintField(out, at, (5 << 3) | WIRE_VARINT, queueUs);
  at = writeUintField(out, at, (6 << 3) | WIRE_VARINT, computeUs);
  if (response.error !== null) {
    out[at++] = (7 << 3) | WIRE_LENGTH;
    at = writeVarint(out, at, nestedError);
    at = writeUintField(out, at, (1 << 3) | WIRE_VARINT, response.error.code);
    const messageBytes = Buffer.byteLength(response.error.message);
    if (messageBytes > 0) {
      out[at++] = (2 << 3) | WIRE_LENGTH;
      at = writeVarint(out, at, messageBytes);
      at += out.write(response.error.message, at);
    }
  }
  return out;
}
