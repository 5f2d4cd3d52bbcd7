// Tensors of the Open Inference Protocol (KServe v2) as the client holds them, and their two wire forms: raw bytes
// (raw_input_contents / raw_output_contents: flat, row-major, little-endian; a BYTES element is a 4-byte
// little-endian length, then its bytes) and typed `contents` (InferTensorContents). Pure: no gRPC here.
import { packBytesElements, type Datatype } from '../models/tensor';

export type { Datatype } from '../models/tensor';

/** The array that holds a tensor's elements, by datatype. */
export interface TensorArrays {
  /** 0 or 1 per element. */
  BOOL: Uint8Array;
  UINT8: Uint8Array;
  UINT16: Uint16Array;
  UINT32: Uint32Array;
  UINT64: BigUint64Array;
  INT8: Int8Array;
  INT16: Int16Array;
  INT32: Int32Array;
  INT64: BigInt64Array;
  /** IEEE 754 half-precision bit patterns (see float16Bits / float16Value). */
  FP16: Uint16Array;
  FP32: Float32Array;
  FP64: Float64Array;
  /** One Buffer per element; strings are sent as UTF-8. */
  BYTES: Buffer[];
}

/** An input tensor: `data` holds its elements, flat and row-major; the datatype decides the array's type. */
export type InferInput = {
  [D in Datatype]: {
    name: string;
    datatype: D;
    shape: readonly number[];
    data: D extends 'BYTES' ? ReadonlyArray<string | Uint8Array> : TensorArrays[D];
  };
}[Datatype];

/** An output tensor, decoded: narrow on `datatype` to get `data`'s type. */
export type InferOutput = {
  [D in Datatype]: { name: string; datatype: D; shape: number[]; data: TensorArrays[D] };
}[Datatype];

/** The repeated fields of InferTensorContents, as @grpc/proto-loader reads them (int64 and uint64 as strings). */
export interface TensorContents {
  bool_contents: boolean[];
  int_contents: number[];
  int64_contents: string[];
  uint_contents: number[];
  uint64_contents: string[];
  fp32_contents: number[];
  fp64_contents: number[];
  bytes_contents: Buffer[];
}

type NumericArrayConstructor =
  | Uint8ArrayConstructor
  | Uint16ArrayConstructor
  | Uint32ArrayConstructor
  | BigUint64ArrayConstructor
  | Int8ArrayConstructor
  | Int16ArrayConstructor
  | Int32ArrayConstructor
  | BigInt64ArrayConstructor
  | Float32ArrayConstructor
  | Float64ArrayConstructor;

export interface DatatypeEntry {
  /** Bytes per element on the wire; 0 for BYTES (each element says its own length). */
  bytes: number;
  /** The array that holds the elements; null for BYTES (an array of Buffers). */
  array: NumericArrayConstructor | null;
  /** The InferTensorContents field that carries the elements; null where the protocol has none (FP16: raw only). */
  contents: keyof TensorContents | null;
}

/** Every datatype: its element size, the array that holds it, and its typed-contents field. */
export const DATATYPE_TABLE: Readonly<Record<Datatype, DatatypeEntry>> = {
  BOOL: { bytes: 1, array: Uint8Array, contents: 'bool_contents' },
  UINT8: { bytes: 1, array: Uint8Array, contents: 'uint_contents' },
  UINT16: { bytes: 2, array: Uint16Array, contents: 'uint_contents' },
  UINT32: { bytes: 4, array: Uint32Array, contents: 'uint_contents' },
  UINT64: { bytes: 8, array: BigUint64Array, contents: 'uint64_contents' },
  INT8: { bytes: 1, array: Int8Array, contents: 'int_contents' },
  INT16: { bytes: 2, array: Int16Array, contents: 'int_contents' },
  INT32: { bytes: 4, array: Int32Array, contents: 'int_contents' },
  INT64: { bytes: 8, array: BigInt64Array, contents: 'int64_contents' },
  FP16: { bytes: 2, array: Uint16Array, contents: null },
  FP32: { bytes: 4, array: Float32Array, contents: 'fp32_contents' },
  FP64: { bytes: 8, array: Float64Array, contents: 'fp64_contents' },
  BYTES: { bytes: 0, array: null, contents: 'bytes_contents' },
};

export const isDatatype = (name: string): name is Datatype => Object.prototype.hasOwnProperty.call(DATATYPE_TABLE, name);

/** A tensor the client cannot send or a reply it cannot read: the message names the tensor. */
export class TensorError extends TypeError {
  override readonly name = 'TensorError';
}

/** The platform's byte order: typed arrays are in it, the wire is little-endian. */
const LITTLE_ENDIAN = new Uint8Array(Uint16Array.of(1).buffer)[0] === 1;

/** Reverses each `size`-byte element of `bytes` in place (little-endian ↔ big-endian). */
function swapBytes(bytes: Uint8Array, size: number): void {
  if (size === 1) return;
  for (let at = 0; at < bytes.length; at += size) bytes.subarray(at, at + size).reverse();
}

/** The number of elements of `shape`, or null when a dimension is not an integer >= 0. */
export function elementCount(shape: readonly number[]): number | null {
  let count = 1;
  for (const dim of shape) {
    if (!Number.isSafeInteger(dim) || dim < 0) return null;
    count *= dim;
  }
  return count;
}

const describeShape = (shape: readonly number[]) => `[${shape.join(', ')}]`;

/** Throws a TensorError naming `input` unless its datatype, shape and data agree. */
export function checkInput(input: InferInput): void {
  const what = `input "${input.name}"`;
  if (!isDatatype(input.datatype)) throw new TensorError(`${what}: unknown datatype "${String(input.datatype)}"`);
  const count = elementCount(input.shape);
  if (count === null) throw new TensorError(`${what}: shape ${describeShape(input.shape)} must be integers >= 0`);
  const entry = DATATYPE_TABLE[input.datatype];
  if (entry.array === null) {
    if (!Array.isArray(input.data)) throw new TensorError(`${what}: BYTES data must be an array of strings or Buffers`);
    for (let i = 0; i < input.data.length; i++) {
      const element: unknown = input.data[i];
      if (typeof element !== 'string' && !(element instanceof Uint8Array)) throw new TensorError(`${what}: element ${i} is neither a string nor a Buffer`);
    }
  } else if (!(input.data instanceof entry.array)) {
    throw new TensorError(`${what}: ${input.datatype} data must be ${withArticle(entry.array.name)}, got ${describeValue(input.data)}`);
  }
  if (input.data.length !== count) {
    throw new TensorError(`${what}: shape ${describeShape(input.shape)} holds ${count} elements, data has ${input.data.length}`);
  }
  if (input.datatype === 'BOOL') {
    const bad = input.data.findIndex((v) => v > 1);
    if (bad >= 0) throw new TensorError(`${what}: BOOL element ${bad} is ${input.data[bad]}, not 0 or 1`);
  }
}

const withArticle = (noun: string) => `${/^[AEIOU]/.test(noun) ? 'an' : 'a'} ${noun}`;

function describeValue(value: unknown): string {
  if (value === null || typeof value !== 'object') return String(value);
  return withArticle(value.constructor?.name ?? 'Object');
}

const asBuffer = (element: string | Uint8Array) => (typeof element === 'string' ? Buffer.from(element, 'utf8') : element);

/**
 * `input`'s elements as raw bytes. On a little-endian machine a numeric tensor's bytes are a view of its array, not a
 * copy: gRPC serializes the message before the call returns, so the caller may reuse the array afterwards.
 */
export function encodeRaw(input: InferInput): Uint8Array {
  if (input.datatype === 'BYTES') return packBytesElements(input.data.map(asBuffer));
  const data = input.data;
  const view = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  if (LITTLE_ENDIAN) return view;
  const swapped = Uint8Array.from(view);
  swapBytes(swapped, DATATYPE_TABLE[input.datatype].bytes);
  return swapped;
}

/** Decodes one tensor's raw bytes; throws a TensorError naming `name` when they do not fit its shape. */
export function decodeRaw(name: string, datatype: Datatype, shape: readonly number[], raw: Uint8Array): InferOutput['data'] {
  const what = `output "${name}"`;
  const count = elementCount(shape);
  if (count === null) throw new TensorError(`${what}: shape ${describeShape(shape)} must be integers >= 0`);
  const entry = DATATYPE_TABLE[datatype];
  if (entry.array === null) return decodeBytes(what, count, raw);
  if (raw.length !== count * entry.bytes) {
    throw new TensorError(`${what}: ${datatype} shape ${describeShape(shape)} needs ${count * entry.bytes} bytes, got ${raw.length}`);
  }
  // A copy, not a view: the reply's bytes need not be aligned to the element size, and the output owns its array.
  const data = new entry.array(count);
  const bytes = new Uint8Array(data.buffer);
  bytes.set(raw);
  if (!LITTLE_ENDIAN) swapBytes(bytes, entry.bytes);
  return data;
}

/** BYTES elements, each a view of `raw`. */
function decodeBytes(what: string, count: number, raw: Uint8Array): Buffer[] {
  const source = Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength);
  const elements: Buffer[] = [];
  let at = 0;
  while (at < source.length) {
    if (at + 4 > source.length) throw new TensorError(`${what}: BYTES element ${elements.length} has a truncated length`);
    const length = source.readUInt32LE(at);
    if (at + 4 + length > source.length) throw new TensorError(`${what}: BYTES element ${elements.length} runs past the end (${length} bytes)`);
    elements.push(source.subarray(at + 4, at + 4 + length));
    at += 4 + length;
  }
  if (elements.length !== count) throw new TensorError(`${what}: shape holds ${count} BYTES elements, got ${elements.length}`);
  return elements;
}

/** `input`'s elements in its InferTensorContents field; FP16 has none (send it raw). */
export function encodeContents(input: InferInput): Partial<TensorContents> {
  const field = DATATYPE_TABLE[input.datatype].contents;
  if (field === null) throw new TensorError(`input "${input.name}": ${input.datatype} has no typed contents field; send it raw`);
  switch (input.datatype) {
    case 'BYTES':
      return { bytes_contents: input.data.map((e) => Buffer.from(asBuffer(e))) };
    case 'BOOL':
      return { bool_contents: Array.from(input.data, (v) => v !== 0) };
    case 'INT64':
    case 'UINT64':
      // Decimal strings: protobufjs reads them as 64-bit integers without going through a double.
      return { [field]: Array.from(input.data as BigInt64Array | BigUint64Array, (v) => v.toString()) };
    default:
      return { [field]: Array.from(input.data as ArrayLike<number>) };
  }
}

/** Decodes one tensor's typed contents; throws a TensorError naming `name` when they do not fit its shape. */
export function decodeContents(name: string, datatype: Datatype, shape: readonly number[], contents: Partial<TensorContents>): InferOutput['data'] {
  const what = `output "${name}"`;
  const count = elementCount(shape);
  if (count === null) throw new TensorError(`${what}: shape ${describeShape(shape)} must be integers >= 0`);
  const entry = DATATYPE_TABLE[datatype];
  if (entry.contents === null) throw new TensorError(`${what}: ${datatype} came without raw contents`);
  const values = (contents[entry.contents] ?? []) as ArrayLike<unknown>;
  if (values.length !== count) throw new TensorError(`${what}: shape ${describeShape(shape)} holds ${count} elements, contents have ${values.length}`);
  switch (datatype) {
    case 'BYTES':
      return Array.from(values as Buffer[], (e) => Buffer.from(e));
    case 'BOOL':
      return Uint8Array.from(values as boolean[], (v) => (v ? 1 : 0));
    case 'INT64':
      return BigInt64Array.from(values as string[], (v) => BigInt(v));
    case 'UINT64':
      return BigUint64Array.from(values as string[], (v) => BigInt(v));
    default:
      return (entry.array as Exclude<NumericArrayConstructor, BigInt64ArrayConstructor | BigUint64ArrayConstructor>).from(values as number[]);
  }
}

/**
 * The IEEE 754 half-precision bit pattern nearest `value` (ties to even), straight from the double so that there is
 * no double rounding through float32. Beyond the largest half (65504) it is ±Infinity; NaN is the quiet NaN 0x7e00.
 */
export function float16Bits(value: number): number {
  if (Number.isNaN(value)) return 0x7e00;
  const sign = value < 0 || Object.is(value, -0) ? 0x8000 : 0;
  const magnitude = Math.abs(value);
  if (magnitude === Infinity) return sign | 0x7c00;
  if (magnitude < 2 ** -14) return sign | roundHalfEven(magnitude * 2 ** 24); // subnormal: 1024 rounds up to the smallest normal
  let exponent = Math.floor(Math.log2(magnitude));
  if (2 ** exponent > magnitude) exponent--; // log2 can be off by one next to a power of two
  else if (2 ** (exponent + 1) <= magnitude) exponent++;
  let mantissa = roundHalfEven((magnitude / 2 ** exponent - 1) * 1024);
  if (mantissa === 1024) {
    mantissa = 0;
    exponent++;
  }
  if (exponent > 15) return sign | 0x7c00;
  return sign | ((exponent + 15) << 10) | mantissa;
}

function roundHalfEven(x: number): number {
  const floor = Math.floor(x);
  const fraction = x - floor;
  if (fraction !== 0.5) return fraction < 0.5 ? floor : floor + 1;
  return floor % 2 === 0 ? floor : floor + 1;
}

/** The number a half-precision bit pattern stands for. */
export function float16Value(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exponent = (bits >> 10) & 0x1f;
  const mantissa = bits & 0x3ff;
  if (exponent === 0) return sign * mantissa * 2 ** -24;
  if (exponent === 31) return mantissa === 0 ? sign * Infinity : NaN;
  return sign * (1 + mantissa / 1024) * 2 ** (exponent - 15);
}
