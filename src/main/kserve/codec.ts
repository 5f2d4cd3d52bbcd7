// The wire codec of ModelInfer and ModelStreamInfer, beside proto-loader's generic protobufjs codec.
// Requests: the form Triton's clients send by default (names, datatypes and shapes, tensors in raw_input_contents,
// no parameters) is read here, raw contents kept as views into the received message (as codec.ts keeps Predict's
// features); anything else (parameters, typed contents, a non-ASCII string, a dimension of 2^49 or more or a
// negative one, a malformed message) goes to the generic decoder, which reads it, or refuses it, exactly as it
// always has. The object built is the one proto-loader's deserializer builds (its options: KSERVE_PROTO_OPTIONS),
// field for field, so admission (tensors.ts) cannot tell the two apart. Answers: every ModelInferResponse the
// handlers build (infer.ts) is encoded here, in field order, as any proto3 encoder would; test/kserve-codec.test.ts
// checks both directions against protobufjs.
// Why: the generic codec builds a protobufjs message object per request and per answer and turns every int64 into a
// Long and back; with it, ModelStreamInfer took 1.7× StreamPredict's server CPU a message (docs/BENCHMARKS.md).
// Field numbers follow proto/grpc_service.proto.
import type { ModelInferResponse } from './infer';
import type { InferInputTensor, ModelInferRequest } from './tensors';
import { EMPTY_BUFFER, varintSize, WIRE_FIXED32, WIRE_FIXED64, WIRE_LENGTH, WIRE_VARINT, writeVarint } from '../wire';

/** Dimensions of up to 7 varint bytes (< 2^49) are read here; longer ones (negatives too) by the generic decoder. */
const MAX_FAST_VARINT_BYTES = 7;

// Decoder cursor, module-level so that the hot path allocates no reader object; decoding is synchronous.
let buf: Buffer = EMPTY_BUFFER;
let pos = 0;

/** The message needs the generic decoder; thrown inside the fast path only, caught at its top. */
class NotCommon extends Error {}
const NOT_COMMON = new NotCommon('not the common form'); // one instance: the fallback builds no stack trace

/** A varint of at most `maxBytes` bytes ending before `end`, as a number. */
function varint(end: number, maxBytes: number): number {
  let value = 0;
  let factor = 1;
  for (let i = 0; i < maxBytes; i++) {
    if (pos >= end) throw NOT_COMMON;
    const byte = buf[pos++];
    value += (byte & 0x7f) * factor;
    if (byte < 0x80) return value;
    factor *= 128;
  }
  throw NOT_COMMON;
}

/** A length-delimited field's length; its bytes must end by `end`. */
function length(end: number): number {
  const n = varint(end, 5);
  if (n > end - pos) throw NOT_COMMON;
  return n;
}

/**
 * A string field, ASCII only: other text is left to the generic decoder, so that its UTF-8 reading (invalid bytes
 * become U+FFFD) stays the one that applies.
 */
function ascii(end: number): string {
  const n = length(end);
  const start = pos;
  pos += n;
  for (let i = start; i < pos; i++) if (buf[i] >= 0x80) throw NOT_COMMON;
  return n === 0 ? '' : buf.toString('latin1', start, pos);
}

/** Steps over a field the proto does not name (the generic decoder keeps it aside, out of the object it builds). */
function skip(wireType: number, end: number): void {
  switch (wireType) {
    case WIRE_VARINT:
      varint(end, 10);
      return;
    case WIRE_FIXED64:
      pos += 8;
      break;
    case WIRE_LENGTH: {
      const n = length(end); // read before adding: `pos += length(end)` would add to the stale pos
      pos += n;
      return;
    }
    case WIRE_FIXED32:
      pos += 4;
      break;
    default:
      throw NOT_COMMON; // groups: left to the generic decoder
  }
  if (pos > end) throw NOT_COMMON;
}

/** A field's tag; field number 0 is left to the generic decoder, whatever it makes of it. */
function tag(end: number): number {
  const t = varint(end, 5);
  if (t >>> 3 === 0) throw NOT_COMMON;
  return t;
}

/** Shape (field 3 of InferInputTensor), packed or not, as proto-loader gives int64s with `longs: String`. */
function shapeInto(shape: string[], wireType: number, end: number): void {
  if (wireType === WIRE_VARINT) {
    shape.push(String(varint(end, MAX_FAST_VARINT_BYTES)));
    return;
  }
  const n = length(end); // read before adding: `pos + length(end)` would add to the stale pos
  const packedEnd = pos + n;
  while (pos < packedEnd) shape.push(String(varint(packedEnd, MAX_FAST_VARINT_BYTES)));
}

function inputTensor(end: number): InferInputTensor {
  const tensor: InferInputTensor = { name: '', datatype: '', shape: [], parameters: {}, contents: null };
  while (pos < end) {
    const t = tag(end);
    const field = t >>> 3;
    const wireType = t & 7;
    if (field === 1 && wireType === WIRE_LENGTH) tensor.name = ascii(end);
    else if (field === 2 && wireType === WIRE_LENGTH) tensor.datatype = ascii(end);
    else if (field === 3 && (wireType === WIRE_LENGTH || wireType === WIRE_VARINT)) shapeInto(tensor.shape, wireType, end);
    else if (field <= 5) throw NOT_COMMON; // parameters, contents, or a known field with another wire type
    else skip(wireType, end);
  }
  return tensor;
}

function requestedOutput(end: number): ModelInferRequest['outputs'][number] {
  const output: ModelInferRequest['outputs'][number] = { name: '', parameters: {} };
  while (pos < end) {
    const t = tag(end);
    const field = t >>> 3;
    const wireType = t & 7;
    if (field === 1 && wireType === WIRE_LENGTH) output.name = ascii(end);
    else if (field <= 2) throw NOT_COMMON; // parameters, or name with another wire type
    else skip(wireType, end);
  }
  return output;
}

/**
 * A ModelInferRequest in the common form, as proto-loader's deserializer would give it; null for any other message
 * (then the generic decoder reads it). raw_input_contents are views into `bytes`, as the generic decoder's are.
 */
export function decodeCommonInferRequest(bytes: Buffer): ModelInferRequest | null {
  buf = bytes;
  pos = 0;
  const end = bytes.length;
  try {
    const request: ModelInferRequest = { model_name: '', model_version: '', id: '', parameters: {}, inputs: [], outputs: [], raw_input_contents: [] };
    while (pos < end) {
      const t = tag(end);
      const field = t >>> 3;
      const wireType = t & 7;
      if (wireType === WIRE_LENGTH && field >= 1 && field <= 7 && field !== 4) {
        if (field === 1) request.model_name = ascii(end);
        else if (field === 2) request.model_version = ascii(end);
        else if (field === 3) request.id = ascii(end);
        else {
          const n = length(end);
          const fieldEnd = pos + n;
          if (field === 5) request.inputs.push(inputTensor(fieldEnd));
          else if (field === 6) request.outputs.push(requestedOutput(fieldEnd));
          else request.raw_input_contents.push(bytes.subarray(pos, fieldEnd));
          pos = fieldEnd;
        }
      } else if (field <= 7) {
        throw NOT_COMMON; // parameters, or a known field with another wire type
      } else {
        skip(wireType, end);
      }
    }
    return request;
  } catch (error) {
    if (error === NOT_COMMON) return null;
    throw error;
  } finally {
    buf = EMPTY_BUFFER; // do not keep the caller's message alive
  }
}

/** ModelInfer's and ModelStreamInfer's request deserializer: the common form here, anything else by `generic`. */
export function inferRequestDeserializer(generic: (bytes: Buffer) => ModelInferRequest): (bytes: Buffer) => ModelInferRequest {
  return (bytes) => decodeCommonInferRequest(bytes) ?? generic(bytes);
}

// ---------------------------------------------------------------------------------------------------------------
// Answers

/** An int64 dimension's varint size: 10 bytes for a negative one (two's complement), as protobuf writes int64s. */
function int64Size(value: number): number {
  return value < 0 ? 10 : varintSize(value);
}

function writeInt64(out: Buffer, at: number, value: number): number {
  if (value >= 0) return writeVarint(out, at, value);
  let bits = BigInt.asUintN(64, BigInt(value));
  for (let i = 0; i < 9; i++) {
    out[at++] = Number(bits & 0x7fn) | 0x80;
    bits >>= 7n;
  }
  out[at++] = Number(bits);
  return at;
}

/**
 * A string's UTF-8 length. Names, datatypes and versions are short ASCII: counted here, in JS, rather than by
 * Buffer.byteLength's call into C++, which costs more than the loop for strings this short.
 */
function utf8Length(value: string): number {
  for (let i = 0; i < value.length; i++) if (value.charCodeAt(i) >= 0x80) return Buffer.byteLength(value);
  return value.length;
}

/** A string field's size, 0 when empty (proto3 leaves empty strings out). `bytes`: its UTF-8 length. */
function stringFieldSize(bytes: number): number {
  return bytes === 0 ? 0 : 1 + varintSize(bytes) + bytes;
}

function writeStringField(out: Buffer, at: number, tagByte: number, value: string, bytes: number): number {
  if (bytes === 0) return at;
  out[at++] = tagByte;
  at = writeVarint(out, at, bytes);
  if (bytes !== value.length) return at + out.write(value, at, bytes, 'utf8');
  for (let i = 0; i < bytes; i++) out[at++] = value.charCodeAt(i); // ASCII: one byte a character
  return at;
}

type OutputTensor = ModelInferResponse['outputs'][number];

/** An InferOutputTensor's encoded length (name, datatype, packed shape), given its strings' UTF-8 lengths. */
function outputBodySize(output: OutputTensor, nameBytes: number, datatypeBytes: number): number {
  const shape = shapeBytes(output.shape);
  return stringFieldSize(nameBytes) + stringFieldSize(datatypeBytes) + (output.shape.length > 0 ? 1 + varintSize(shape) + shape : 0);
}

function shapeBytes(shape: readonly number[]): number {
  let n = 0;
  for (let i = 0; i < shape.length; i++) n += int64Size(shape[i]);
  return n;
}

function inferResponseSize(r: ModelInferResponse): number {
  let size = stringFieldSize(utf8Length(r.model_name)) + stringFieldSize(utf8Length(r.model_version)) + stringFieldSize(utf8Length(r.id));
  for (const output of r.outputs) {
    const body = outputBodySize(output, utf8Length(output.name), utf8Length(output.datatype));
    size += 1 + varintSize(body) + body;
  }
  for (const raw of r.raw_output_contents) size += 1 + varintSize(raw.length) + raw.length;
  return size;
}

/** Writes a ModelInferResponse's fields in field order at `at`; `out` has inferResponseSize(r) bytes there. */
function writeInferResponse(out: Buffer, at: number, r: ModelInferResponse): number {
  at = writeStringField(out, at, (1 << 3) | WIRE_LENGTH, r.model_name, utf8Length(r.model_name));
  at = writeStringField(out, at, (2 << 3) | WIRE_LENGTH, r.model_version, utf8Length(r.model_version));
  at = writeStringField(out, at, (3 << 3) | WIRE_LENGTH, r.id, utf8Length(r.id));
  for (const output of r.outputs) {
    const nameBytes = utf8Length(output.name);
    const datatypeBytes = utf8Length(output.datatype);
    out[at++] = (5 << 3) | WIRE_LENGTH;
    at = writeVarint(out, at, outputBodySize(output, nameBytes, datatypeBytes));
    at = writeStringField(out, at, (1 << 3) | WIRE_LENGTH, output.name, nameBytes);
    at = writeStringField(out, at, (2 << 3) | WIRE_LENGTH, output.datatype, datatypeBytes);
    if (output.shape.length > 0) {
      out[at++] = (3 << 3) | WIRE_LENGTH; // packed, as proto3 writes repeated scalars
      at = writeVarint(out, at, shapeBytes(output.shape));
      for (const d of output.shape) at = writeInt64(out, at, d);
    }
  }
  for (const raw of r.raw_output_contents) {
    out[at++] = (6 << 3) | WIRE_LENGTH; // every entry, empty ones too: they pair with outputs by position
    at = writeVarint(out, at, raw.length);
    out.set(raw, at);
    at += raw.length;
  }
  return at;
}

/** ModelInfer's answer. */
export function encodeInferResponse(response: ModelInferResponse): Buffer {
  const out = Buffer.allocUnsafe(inferResponseSize(response));
  writeInferResponse(out, 0, response);
  return out;
}

/** One ModelStreamInfer answer: a result, or error_message with what is known of the request. */
export function encodeStreamInferResponse(response: { error_message: string; infer_response: ModelInferResponse | null }): Buffer {
  const errorBytes = utf8Length(response.error_message);
  const infer = response.infer_response;
  const inferSize = infer === null ? 0 : inferResponseSize(infer);
  const out = Buffer.allocUnsafe(stringFieldSize(errorBytes) + (infer === null ? 0 : 1 + varintSize(inferSize) + inferSize));
  let at = writeStringField(out, 0, (1 << 3) | WIRE_LENGTH, response.error_message, errorBytes);
  if (infer !== null) {
    out[at++] = (2 << 3) | WIRE_LENGTH;
    at = writeVarint(out, at, inferSize);
    writeInferResponse(out, at, infer);
  }
  return out;
}
