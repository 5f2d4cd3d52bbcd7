// A v2 ModelInferRequest checked against the version that serves it, and turned into what the batcher takes: each
// input's bytes in the model's input order (raw contents as they arrived, views into the received message; typed
// contents packed once), the rows along the batch dimension, and the requested outputs. Every check names the
// tensor, what was expected and what was sent; all are INVALID_ARGUMENT.
import type { ModelInstance } from '../../models/instance';
import { ELEMENT_BYTES, elementCount, packBytesElements, formatShape, isDatatype, type Datatype, type TensorSpec } from '../../models/tensor';
import { invalidArgument, resourceExhausted } from '../errors';

/** An InferParameter as proto-loader decodes it (longs as strings). */
export interface InferParameter {
  bool_param?: boolean;
  int64_param?: string;
  string_param?: string;
  double_param?: number;
  uint64_param?: string;
  parameter_choice?: string;
}

export interface InferTensorContents {
  bool_contents: boolean[];
  int_contents: number[];
  int64_contents: string[];
  uint_contents: number[];
  uint64_contents: string[];
  fp32_contents: number[];
  fp64_contents: number[];
  bytes_contents: Buffer[];
}

export interface InferInputTensor {
  name: string;
  datatype: string;
  shape: string[];
  parameters: Record<string, InferParameter>;
  contents: InferTensorContents | null;
}

export interface ModelInferRequest {
  model_name: string;
  model_version: string;
  id: string;
  parameters: Record<string, InferParameter>;
  inputs: InferInputTensor[];
  outputs: Array<{ name: string; parameters: Record<string, InferParameter> }>;
  raw_input_contents: Buffer[];
}

/** What the batcher needs of an admitted request. */
export interface AdmittedInfer {
  /** Each input's bytes, in the model's input order. */
  inputs: Buffer[];
  /** Rows along the batch dimension (1 for a model that does not batch). */
  rows: number;
  /** Each input's shape as sent (for a solo model's worker); null for a fixed-shape model. */
  shapes: number[][] | null;
  /** The outputs to answer, by index into the model's outputs, in the order requested (all when none named). */
  outputs: number[];
  /** Triton's `timeout` parameter, in milliseconds; Infinity when absent. */
  timeoutMs: number;
}

const SEQUENCE_PARAMETERS = ['sequence_id', 'sequence_start', 'sequence_end'];

function parameterNumber(parameter: InferParameter): number {
  const value = parameter.int64_param ?? parameter.uint64_param ?? parameter.double_param;
  return value === undefined ? NaN : Number(value);
}

/** A BYTES tensor's raw form: how many elements it holds, or -1 when the lengths do not add up. */
function countStrings(raw: Buffer): number {
  let count = 0;
  let at = 0;
  while (at < raw.length) {
    if (at + 4 > raw.length) return -1;
    at += 4 + raw.readUInt32LE(at);
    count++;
  }
  return at === raw.length ? count : -1;
}

/** Typed contents -> the tensor's raw little-endian bytes; `elements` of them, or an error naming what came. */
function packContents(tensor: InferInputTensor, datatype: Datatype, elements: number): Buffer {
  const c = tensor.contents!;
  const wrong = (field: string, count: number) =>
    invalidArgument(`input "${tensor.name}": ${field} holds ${count} values; shape ${formatShape(tensor.shape)} needs ${elements}`);
  const pack = <T>(values: T[], field: string, bytes: number, write: (out: Buffer, value: T, at: number) => void) => {
    if (values.length !== elements) throw wrong(field, values.length);
    const out = Buffer.allocUnsafe(elements * bytes);
    for (let i = 0; i < elements; i++) write(out, values[i], i * bytes);
    return out;
  };
  // int_contents and uint_contents are 32-bit on the wire: a narrower datatype's values are checked, not wrapped.
  const narrow = (values: number[], field: string, min: number, max: number) => {
    for (let i = 0; i < values.length; i++) {
      if (values[i] < min || values[i] > max) {
        throw invalidArgument(`input "${tensor.name}": ${field}[${i}] is ${values[i]}, outside ${datatype}'s range ${min} to ${max}`);
      }
    }
    return values;
  };
  switch (datatype) {
    case 'BOOL':
      return pack(c.bool_contents, 'bool_contents', 1, (o, v, at) => o.writeUInt8(v ? 1 : 0, at));
    case 'INT8':
      return pack(narrow(c.int_contents, 'int_contents', -0x80, 0x7f), 'int_contents', 1, (o, v, at) => o.writeInt8(v, at));
    case 'INT16':
      return pack(narrow(c.int_contents, 'int_contents', -0x8000, 0x7fff), 'int_contents', 2, (o, v, at) => o.writeInt16LE(v, at));
    case 'INT32':
      return pack(c.int_contents, 'int_contents', 4, (o, v, at) => o.writeInt32LE(v, at));
    case 'INT64':
      return pack(c.int64_contents, 'int64_contents', 8, (o, v, at) => o.writeBigInt64LE(BigInt(v), at));
    case 'UINT8':
      return pack(narrow(c.uint_contents, 'uint_contents', 0, 0xff), 'uint_contents', 1, (o, v, at) => o.writeUInt8(v, at));
    case 'UINT16':
      return pack(narrow(c.uint_contents, 'uint_contents', 0, 0xffff), 'uint_contents', 2, (o, v, at) => o.writeUInt16LE(v, at));
    case 'UINT32':
      return pack(c.uint_contents, 'uint_contents', 4, (o, v, at) => o.writeUInt32LE(v, at));
    case 'UINT64':
      return pack(c.uint64_contents, 'uint64_contents', 8, (o, v, at) => o.writeBigUInt64LE(BigInt(v), at));
    case 'FP32':
      return pack(c.fp32_contents, 'fp32_contents', 4, (o, v, at) => o.writeFloatLE(v, at));
    case 'FP64':
      return pack(c.fp64_contents, 'fp64_contents', 8, (o, v, at) => o.writeDoubleLE(v, at));
    case 'FP16':
      throw invalidArgument(`input "${tensor.name}": FP16 can only be sent in raw_input_contents`);
    case 'BYTES': {
      if (c.bytes_contents.length !== elements) throw wrong('bytes_contents', c.bytes_contents.length);
      return packBytesElements(c.bytes_contents);
    }
  }
}

/** The shape a model's input takes, as refusals print it: -1 for the batch dimension and variable ones. */
const expectedShape = (spec: TensorSpec, batches: boolean) => (batches ? [-1, ...spec.dims] : [...spec.dims]);

/** Whether `shape` fits `spec`: its rank, and every dimension a safe integer ≥ 0 that equals any fixed one. */
function fitsShape(shape: readonly number[], spec: TensorSpec, batches: boolean): boolean {
  const offset = batches ? 1 : 0;
  if (shape.length !== spec.dims.length + offset) return false;
  for (let i = 0; i < shape.length; i++) {
    const d = shape[i];
    const expected = i < offset ? -1 : spec.dims[i - offset];
    if (!Number.isSafeInteger(d) || d < 0 || (expected >= 0 && d !== expected)) return false;
  }
  return true;
}

/**
 * Checks `request` against `model`; throws a ServingError naming the tensor and what is wrong. This runs for every
 * v2 request, so it loops over the arrays it has rather than building new ones, and composes a refusal's text only
 * when it throws one.
 */
export function admitInfer(request: ModelInferRequest, model: ModelInstance): AdmittedInfer {
  const { parameters } = request;
  for (const name of SEQUENCE_PARAMETERS) {
    if (parameters[name] !== undefined) {
      throw invalidArgument(`parameter "${name}": stateful sequences are not served yet (model "${model.name}" has no sequence batcher)`);
    }
  }
  let timeoutMs = Infinity;
  const timeout = parameters.timeout;
  if (timeout !== undefined) {
    const us = parameterNumber(timeout);
    if (!Number.isFinite(us) || us < 0) throw invalidArgument('parameter "timeout" must be a number of microseconds, 0 or more');
    if (us > 0) timeoutMs = us / 1000;
  }
  const { signature } = model;
  const specs = signature.inputs;
  const sent = request.inputs;
  const raw = request.raw_input_contents;
  if (raw.length > 0) {
    for (const tensor of sent) {
      if (tensor.contents !== null) throw invalidArgument(`raw_input_contents is used, so no input may carry contents too; input "${tensor.name}" does`);
    }
    if (raw.length !== sent.length) {
      throw invalidArgument(`raw_input_contents has ${raw.length} entries for ${sent.length} inputs; one per input, in order`);
    }
  }
  const byName = new Map<string, number>();
  for (let i = 0; i < sent.length; i++) {
    if (byName.has(sent[i].name)) throw invalidArgument(`input "${sent[i].name}" is given twice`);
    byName.set(sent[i].name, i);
  }
  const expectedNames = () => specs.map((t) => `"${t.name}"`).join(', ');
  for (const tensor of sent) {
    let known = false;
    for (const spec of specs) if (spec.name === tensor.name) known = true;
    if (!known) throw invalidArgument(`unknown input "${tensor.name}": model "${model.name}" takes ${expectedNames()}`);
  }
  const inputs: Buffer[] = [];
  const shapes: number[][] = [];
  let rows = -1;
  for (const spec of specs) {
    const at = byName.get(spec.name);
    if (at === undefined) throw invalidArgument(`missing input "${spec.name}": model "${model.name}" takes ${expectedNames()}`);
    const tensor = sent[at];
    if (!isDatatype(tensor.datatype) || tensor.datatype !== spec.datatype) {
      throw invalidArgument(`input "${spec.name}": datatype ${tensor.datatype || '(empty)'} sent, the model takes ${spec.datatype}`);
    }
    const shape = tensor.shape.map(Number);
    const describe = () =>
      `input "${spec.name}": shape ${formatShape(shape)} sent, the model takes ${formatShape(expectedShape(spec, signature.batches))} (-1: any)`;
    if (!fitsShape(shape, spec, signature.batches)) throw invalidArgument(describe());
    if (signature.batches) {
      const batch = shape[0];
      if (batch < 1) throw invalidArgument(`${describe()}: the batch dimension must be at least 1`);
      if (batch > model.maxRows) throw invalidArgument(`input "${spec.name}": batch dimension ${batch} is over ${model.maxRowsLimit}`);
      if (rows >= 0 && batch !== rows) throw invalidArgument(`input "${spec.name}": batch dimension ${batch}, but another input has ${rows}; every input has the same`);
      rows = batch;
    }
    const elements = elementCount(shape);
    let bytes: Buffer;
    if (raw.length > 0) {
      bytes = raw[at];
      if (spec.datatype === 'BYTES') {
        const count = countStrings(bytes);
        if (count !== elements) {
          throw invalidArgument(`input "${spec.name}": raw_input_contents holds ${count < 0 ? 'malformed strings (4-byte lengths that do not add up)' : `${count} strings`}; shape ${formatShape(shape)} needs ${elements}`);
        }
      } else if (bytes.length !== elements * ELEMENT_BYTES[spec.datatype]) {
        throw invalidArgument(
          `input "${spec.name}": raw_input_contents has ${bytes.length} bytes; shape ${formatShape(shape)} of ${spec.datatype} is ` +
            `${elements * ELEMENT_BYTES[spec.datatype]} (${elements} × ${ELEMENT_BYTES[spec.datatype]})`,
        );
      }
    } else {
      if (tensor.contents === null) throw invalidArgument(`input "${spec.name}" has no data: neither contents nor raw_input_contents`);
      bytes = packContents(tensor, spec.datatype, elements);
      // Typed contents can unpack to more than the message's size (an int64 of 1 wire byte takes 8; a string, 4
      // more for its length): a request run alone must fit its input's region, which is as large as a message.
      if (model.solo && bytes.length > model.soloInputBytes) {
        throw resourceExhausted(
          `input "${spec.name}": ${bytes.length} bytes once unpacked from contents, over the ${model.soloInputBytes} an input of ` +
            `model "${model.name}" may hold (MAX_RECEIVE_MESSAGE_BYTES, as large as a message)`,
        );
      }
    }
    inputs.push(bytes);
    shapes.push(shape);
  }
  const outputs: number[] = [];
  if (request.outputs.length === 0) for (let i = 0; i < signature.outputs.length; i++) outputs.push(i);
  for (const requested of request.outputs) {
    let index = -1;
    for (let i = 0; i < signature.outputs.length && index < 0; i++) if (signature.outputs[i].name === requested.name) index = i;
    if (index < 0) {
      throw invalidArgument(`unknown output "${requested.name}": model "${model.name}" answers ${signature.outputs.map((o) => `"${o.name}"`).join(', ')}`);
    }
    outputs.push(index);
  }
  return { inputs, rows: signature.batches ? rows : 1, shapes: model.solo ? shapes : null, outputs, timeoutMs };
}
