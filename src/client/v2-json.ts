// Tensors as JSON, for the command line: `[{"name":"x","datatype":"FP32","shape":[1,4],"data":[1,2,3,4]}]` in and
// out. `data` is flat or nested, row-major. Numbers are JSON numbers, with "NaN", "Infinity" and "-Infinity" as
// strings; FP16 as numbers (converted to and from half precision); INT64 and UINT64 as numbers where they are safe
// integers, else decimal strings (both accepted); BOOL as true/false (0/1 accepted); BYTES as UTF-8 strings, an
// element that is not UTF-8 printed as {"base64": "..."}.
import { DATATYPE_TABLE, elementCount, float16Bits, float16Value, isDatatype, type InferInput, type InferOutput } from './v2-tensors';

export interface JsonTensor {
  name: string;
  datatype: string;
  shape: number[];
  data: unknown[];
}

const NON_FINITE: Record<string, number> = { NaN: NaN, Infinity: Infinity, '-Infinity': -Infinity };

/** Integer ranges of the datatypes held in numbers. */
const INTEGER_RANGES: Partial<Record<string, [number, number]>> = {
  UINT8: [0, 0xff],
  UINT16: [0, 0xffff],
  UINT32: [0, 0xffffffff],
  INT8: [-0x80, 0x7f],
  INT16: [-0x8000, 0x7fff],
  INT32: [-0x80000000, 0x7fffffff],
};

const BIG_RANGES: Record<'INT64' | 'UINT64', [bigint, bigint]> = {
  INT64: [-(2n ** 63n), 2n ** 63n - 1n],
  UINT64: [0n, 2n ** 64n - 1n],
};

const DECIMAL_INTEGER = /^-?\d+$/;

/** Inputs read from JSON text; throws an Error that names the input and the element at fault. */
export function inputsFromJson(text: string): InferInput[] {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw new Error(`not JSON (${(error as Error).message})`);
  }
  if (!Array.isArray(parsed) || parsed.length === 0) throw new Error('expected a non-empty array of inputs: [{"name", "datatype", "shape", "data"}]');
  return parsed.map((value, i) => inputFromJson(value, i));
}

function inputFromJson(value: unknown, index: number): InferInput {
  let what = `input ${index + 1}`;
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new Error(`${what}: expected an object {"name", "datatype", "shape", "data"}`);
  const { name, datatype, shape, data } = value as Record<string, unknown>;
  if (typeof name !== 'string' || name === '') throw new Error(`${what}: "name" must be a non-empty string`);
  what = `input ${index + 1} ("${name}")`;
  for (const key of Object.keys(value)) {
    if (!['name', 'datatype', 'shape', 'data'].includes(key)) throw new Error(`${what}: unknown field "${key}"`);
  }
  if (typeof datatype !== 'string' || !isDatatype(datatype)) {
    throw new Error(`${what}: "datatype" must be one of ${Object.keys(DATATYPE_TABLE).join(', ')}, got ${JSON.stringify(datatype)}`);
  }
  if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) throw new Error(`${what}: "shape" must be an array of integers >= 0`);
  if (!Array.isArray(data)) throw new Error(`${what}: "data" must be an array`);
  const elements = data.flat(Infinity) as unknown[];
  const count = elementCount(shape)!;
  if (elements.length !== count) throw new Error(`${what}: shape [${shape.join(', ')}] holds ${count} elements, "data" has ${elements.length}`);
  const element = (i: number, problem: string) => new Error(`${what}: data[${i}] ${JSON.stringify(elements[i])} ${problem}`);

  switch (datatype) {
    case 'BYTES':
      return {
        name,
        datatype,
        shape,
        data: elements.map((e, i) => {
          if (typeof e !== 'string') throw element(i, 'is not a string');
          return e;
        }),
      };
    case 'BOOL':
      return {
        name,
        datatype,
        shape,
        data: Uint8Array.from(elements, (e, i) => {
          if (e === true || e === 1) return 1;
          if (e === false || e === 0) return 0;
          throw element(i, 'is not true, false, 0 or 1');
        }),
      };
    case 'INT64':
    case 'UINT64': {
      const [min, max] = BIG_RANGES[datatype];
      const values = elements.map((e, i) => {
        const big =
          typeof e === 'number' && Number.isSafeInteger(e) ? BigInt(e) : typeof e === 'string' && DECIMAL_INTEGER.test(e) ? BigInt(e) : null;
        if (big === null) throw element(i, 'is not an integer (a safe integer number, or a decimal string)');
        if (big < min || big > max) throw element(i, `is out of ${datatype}'s range`);
        return big;
      });
      return datatype === 'INT64' ? { name, datatype, shape, data: BigInt64Array.from(values) } : { name, datatype, shape, data: BigUint64Array.from(values) };
    }
    case 'FP16':
    case 'FP32':
    case 'FP64': {
      const numbers = elements.map((e, i) => {
        if (typeof e === 'number') return e;
        if (typeof e === 'string' && e in NON_FINITE) return NON_FINITE[e];
        throw element(i, 'is not a number');
      });
      if (datatype === 'FP16') return { name, datatype, shape, data: Uint16Array.from(numbers, float16Bits) };
      return datatype === 'FP32' ? { name, datatype, shape, data: Float32Array.from(numbers) } : { name, datatype, shape, data: Float64Array.from(numbers) };
    }
    default: {
      const [min, max] = INTEGER_RANGES[datatype]!;
      const numbers = elements.map((e, i) => {
        if (typeof e !== 'number' || !Number.isInteger(e)) throw element(i, 'is not an integer');
        if (e < min || e > max) throw element(i, `is out of ${datatype}'s range [${min}, ${max}]`);
        return e;
      });
      const array = DATATYPE_TABLE[datatype].array as Uint8ArrayConstructor; // one of the 8-, 16-, 32-bit arrays
      return { name, datatype, shape, data: array.from(numbers) } as InferInput;
    }
  }
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

function bytesToJson(element: Buffer): string | { base64: string } {
  try {
    return utf8.decode(element);
  } catch {
    return { base64: element.toString('base64') };
  }
}

const numberToJson = (value: number): number | string => (Number.isFinite(value) ? value : String(value));
const bigToJson = (value: bigint): number | string => (value >= BigInt(Number.MIN_SAFE_INTEGER) && value <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(value) : value.toString());

/** An output as JSON. */
export function outputToJson(output: InferOutput): JsonTensor {
  const { name, datatype, shape } = output;
  let data: unknown[];
  switch (output.datatype) {
    case 'BYTES':
      data = output.data.map(bytesToJson);
      break;
    case 'BOOL':
      data = Array.from(output.data, (v) => v !== 0);
      break;
    case 'INT64':
    case 'UINT64':
      data = Array.from(output.data as ArrayLike<bigint>, bigToJson);
      break;
    case 'FP16':
      data = Array.from(output.data, (bits) => numberToJson(float16Value(bits)));
      break;
    default:
      data = Array.from(output.data as ArrayLike<number>, numberToJson);
  }
  return { name, datatype, shape, data };
}
