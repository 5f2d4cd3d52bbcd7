// Writes ONNX models from TypeScript, so that the project makes its own models with no Python and no download.
// The message subset below keeps the field numbers of onnx/onnx.proto3; protobufjs does the encoding.
import protobuf from 'protobufjs';

const ONNX_SUBSET = `
syntax = "proto3";
package onnx;
message ModelProto {
  int64 ir_version = 1;
  string producer_name = 2;
  string producer_version = 3;
  int64 model_version = 5;
  string doc_string = 6;
  GraphProto graph = 7;
  repeated OperatorSetIdProto opset_import = 8;
}
message OperatorSetIdProto { string domain = 1; int64 version = 2; }
message GraphProto {
  repeated NodeProto node = 1;
  string name = 2;
  repeated TensorProto initializer = 5;
  repeated ValueInfoProto input = 11;
  repeated ValueInfoProto output = 12;
}
message NodeProto {
  repeated string input = 1;
  repeated string output = 2;
  string name = 3;
  string op_type = 4;
  repeated AttributeProto attribute = 5;
}
message AttributeProto {
  string name = 1;
  float f = 2;
  int64 i = 3;
  repeated int64 ints = 8;
  int32 type = 20;
}
message TensorProto {
  repeated int64 dims = 1;
  int32 data_type = 2;
  string name = 8;
  bytes raw_data = 9;
  repeated StringStringEntryProto external_data = 13;
  int32 data_location = 14;
}
message StringStringEntryProto { string key = 1; string value = 2; }
message ValueInfoProto { string name = 1; TypeProto type = 2; }
message TypeProto {
  message Tensor { int32 elem_type = 1; TensorShapeProto shape = 2; }
  Tensor tensor_type = 1;
}
message TensorShapeProto {
  message Dimension { int64 dim_value = 1; string dim_param = 2; }
  repeated Dimension dim = 1;
}
`;

const modelType = protobuf.parse(ONNX_SUBSET, { keepCase: true }).root.lookupType('onnx.ModelProto');

/**
 * ONNX's TensorProto.DataType numbers: a value's `elemType`, and the `to` attribute of a Cast node (an integer, so it
 * is written as an INT attribute).
 */
export const ONNX_TYPES = {
  FLOAT: 1,
  UINT8: 2,
  INT8: 3,
  UINT16: 4,
  INT16: 5,
  INT32: 6,
  INT64: 7,
  STRING: 8,
  BOOL: 9,
  FLOAT16: 10,
  DOUBLE: 11,
  UINT32: 12,
  UINT64: 13,
} as const;

export type OnnxType = (typeof ONNX_TYPES)[keyof typeof ONNX_TYPES];

const EXTERNAL = 1; // TensorProto.DataLocation.EXTERNAL
const ATTRIBUTE_FLOAT = 1;
const ATTRIBUTE_INT = 2;
const IR_VERSION = 8;
const OPSET = 17;

/** A graph input or output: its name and shape; a string dimension is symbolic (the batch). */
export interface ValueSpec {
  name: string;
  shape: ReadonlyArray<number | string>;
  /** ONNX's elem_type; FLOAT when absent. Initializers are always FLOAT: cast them where another type is needed. */
  elemType?: OnnxType;
}

export interface NodeSpec {
  op: string;
  inputs: string[];
  outputs: string[];
  /** Integer or float attributes; integers are written as INT, the rest as FLOAT. */
  attributes?: Record<string, number>;
}

export interface InitializerSpec {
  name: string;
  dims: number[];
  values: Float32Array;
  /**
   * Stored outside the model file (ONNX external data): `location` is relative to the model's folder. The writer
   * only refers to it; whoever writes the model writes `values` there (as little-endian float32 bytes).
   */
  externalLocation?: string;
}

export interface GraphSpec {
  name: string;
  inputs: ValueSpec[];
  outputs: ValueSpec[];
  nodes: NodeSpec[];
  initializers: InitializerSpec[];
  doc?: string;
}

function valueInfo(value: ValueSpec) {
  const dim = value.shape.map((d) => (typeof d === 'string' ? { dim_param: d } : { dim_value: d }));
  return { name: value.name, type: { tensor_type: { elem_type: value.elemType ?? ONNX_TYPES.FLOAT, shape: { dim } } } };
}

function attribute(name: string, value: number) {
  return Number.isInteger(value)
    ? { name, i: value, type: ATTRIBUTE_INT }
    : { name, f: value, type: ATTRIBUTE_FLOAT };
}

/** Encodes a graph as an ONNX ModelProto: float32 unless a value's `elemType` says otherwise. */
export function encodeModel(graph: GraphSpec): Uint8Array {
  const model = {
    ir_version: IR_VERSION,
    producer_name: 'tickserve',
    producer_version: '0.1.0',
    model_version: 1,
    doc_string: graph.doc ?? '',
    opset_import: [{ domain: '', version: OPSET }],
    graph: {
      name: graph.name,
      input: graph.inputs.map(valueInfo),
      output: graph.outputs.map(valueInfo),
      initializer: graph.initializers.map((t) => ({
        name: t.name,
        dims: t.dims,
        data_type: ONNX_TYPES.FLOAT,
        ...(t.externalLocation === undefined
          ? { raw_data: new Uint8Array(t.values.buffer, t.values.byteOffset, t.values.byteLength) }
          : {
              data_location: EXTERNAL,
              external_data: [
                { key: 'location', value: t.externalLocation },
                { key: 'length', value: String(t.values.byteLength) },
              ],
            }),
      })),
      node: graph.nodes.map((n, i) => ({
        name: `${n.op.toLowerCase()}_${i}`,
        op_type: n.op,
        input: n.inputs,
        output: n.outputs,
        attribute: Object.entries(n.attributes ?? {}).map(([k, v]) => attribute(k, v)),
      })),
    },
  };
  const err = modelType.verify(model);
  if (err) throw new Error(`invalid ONNX model: ${err}`);
  return modelType.encode(modelType.fromObject(model)).finish();
}

/** mulberry32: a small seeded generator, so that a model's weights are the same on every machine. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export interface MlpSpec {
  name: string;
  /** Non-batch input dimensions; their product is the row width. */
  inputShape: number[];
  hidden: number[];
  outputs: number;
  /** Ends with a softmax, so each output row is a probability distribution. */
  softmax: boolean;
  seed: number;
  doc?: string;
}

/** A seeded multilayer perceptron: Flatten (for inputs of rank > 2), then Gemm + Relu layers. */
export function mlpGraph(spec: MlpSpec): GraphSpec {
  const random = seededRandom(spec.seed);
  const width = spec.inputShape.reduce((a, b) => a * b, 1);
  const nodes: NodeSpec[] = [];
  const initializers: InitializerSpec[] = [];
  let current = 'input';
  if (spec.inputShape.length > 1) {
    nodes.push({ op: 'Flatten', inputs: [current], outputs: ['flat'], attributes: { axis: 1 } });
    current = 'flat';
  }
  const widths = [width, ...spec.hidden, spec.outputs];
  for (let layer = 0; layer + 1 < widths.length; layer++) {
    const fanIn = widths[layer];
    const fanOut = widths[layer + 1];
    const limit = Math.sqrt(6 / (fanIn + fanOut)); // Glorot uniform
    const weights = new Float32Array(fanOut * fanIn).map(() => (random() * 2 - 1) * limit);
    const bias = new Float32Array(fanOut).map(() => (random() * 2 - 1) * 0.1);
    initializers.push({ name: `w${layer}`, dims: [fanOut, fanIn], values: weights });
    initializers.push({ name: `b${layer}`, dims: [fanOut], values: bias });
    const last = layer + 2 === widths.length;
    const gemmOut = last && !spec.softmax ? 'output' : `gemm${layer}`;
    nodes.push({ op: 'Gemm', inputs: [current, `w${layer}`, `b${layer}`], outputs: [gemmOut], attributes: { transB: 1 } });
    current = gemmOut;
    if (!last) {
      nodes.push({ op: 'Relu', inputs: [current], outputs: [`relu${layer}`] });
      current = `relu${layer}`;
    } else if (spec.softmax) {
      nodes.push({ op: 'Softmax', inputs: [current], outputs: ['output'], attributes: { axis: -1 } });
    }
  }
  return {
    name: spec.name,
    doc: spec.doc,
    inputs: [{ name: 'input', shape: ['batch', ...spec.inputShape] }],
    outputs: [{ name: 'output', shape: ['batch', spec.outputs] }],
    nodes,
    initializers,
  };
}
