// Tensor datatypes and a model's signature, as both APIs and the workers see them. Datatype names are the Open
// Inference Protocol's (FP32, INT64, ...); onnxruntime's names are mapped once here. Imports nothing.

export type Datatype =
  | 'BOOL'
  | 'UINT8'
  | 'UINT16'
  | 'UINT32'
  | 'UINT64'
  | 'INT8'
  | 'INT16'
  | 'INT32'
  | 'INT64'
  | 'FP16'
  | 'FP32'
  | 'FP64'
  | 'BYTES';

/** onnxruntime-node's tensor type for each datatype. */
export const ORT_TYPES: Record<Datatype, string> = {
  BOOL: 'bool',
  UINT8: 'uint8',
  UINT16: 'uint16',
  UINT32: 'uint32',
  UINT64: 'uint64',
  INT8: 'int8',
  INT16: 'int16',
  INT32: 'int32',
  INT64: 'int64',
  FP16: 'float16',
  FP32: 'float32',
  FP64: 'float64',
  BYTES: 'string',
};

const FROM_ORT: Record<string, Datatype> = Object.fromEntries(Object.entries(ORT_TYPES).map(([d, o]) => [o, d as Datatype]));

/** The datatype of an onnxruntime type name; null for one the protocol cannot carry (bfloat16, float8, ...). */
export const datatypeOfOrt = (ortType: string): Datatype | null => FROM_ORT[ortType] ?? null;

/** Bytes per element; BYTES elements have no fixed size (0). */
export const ELEMENT_BYTES: Record<Datatype, number> = {
  BOOL: 1,
  UINT8: 1,
  UINT16: 2,
  UINT32: 4,
  UINT64: 8,
  INT8: 1,
  INT16: 2,
  INT32: 4,
  INT64: 8,
  FP16: 2,
  FP32: 4,
  FP64: 8,
  BYTES: 0,
};

export const DATATYPES = Object.keys(ELEMENT_BYTES) as Datatype[];

export const isDatatype = (name: string): name is Datatype => Object.prototype.hasOwnProperty.call(ELEMENT_BYTES, name);

export interface TensorSpec {
  name: string;
  datatype: Datatype;
  /**
   * The dimensions one request fills: after the batch dimension when the model batches, else the whole shape.
   * -1: variable (the request's shape says).
   */
  dims: readonly number[];
}

/** Everything the APIs and the workers need of a model's tensors. */
export interface Signature {
  inputs: readonly TensorSpec[];
  outputs: readonly TensorSpec[];
  /** True: a leading batch dimension, requests batched along it. False: one request at a time, tensors as sent. */
  batches: boolean;
}

export const elementCount = (dims: readonly number[]) => dims.reduce((a, b) => a * b, 1);

/** Every dimension known: the tensor's bytes per row (per request when not batching) are fixed. */
export const isFixed = (spec: TensorSpec) => spec.datatype !== 'BYTES' && spec.dims.every((d) => d >= 0);

/** Bytes per row (per request when the model does not batch) of a fixed tensor. */
export const rowBytesOf = (spec: TensorSpec) => elementCount(spec.dims) * ELEMENT_BYTES[spec.datatype];

export const formatShape = (shape: readonly (number | string)[]) => `[${shape.join(', ')}]`;

/** BYTES elements in their raw form, as raw_input_contents and raw_output_contents carry them: each a 4-byte
 * little-endian length, then its bytes. */
export function packBytesElements(elements: readonly Uint8Array[]): Buffer {
  const raw = Buffer.allocUnsafe(elements.reduce((sum, e) => sum + 4 + e.length, 0));
  let at = 0;
  for (const element of elements) {
    raw.writeUInt32LE(element.length, at);
    raw.set(element, at + 4);
    at += 4 + element.length;
  }
  return raw;
}
