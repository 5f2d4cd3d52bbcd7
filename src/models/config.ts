// A model's config.pbtxt (Triton's ModelConfig in protobuf text format), read into a typed, validated ModelConfig.
// tickserve serves the subset an ONNX model on ONNX Runtime uses; everything else, including Triton fields outside
// that subset and misspelt ones, is refused with the file, line and field, never silently ignored: a config that
// Triton would honour and tickserve would not must fail loudly rather than serve differently.
//
// Fields that were not written stay undefined (the caller fills them from the environment and the ONNX file),
// except the lists (empty) and the version policy (latest 1, Triton's default).
import {
  parsePbtxt,
  PbtxtSyntaxError,
  type PbtxtField,
  type PbtxtMessage,
  type PbtxtValue,
  type Position,
} from './pbtxt';
import type { Datatype as DataType } from './tensor';
import { BATCH_DELAYS, type BatchDelay } from '../batching/policy';

/** Triton's v2 datatype names (TYPE_STRING is BYTES): tensor.ts's, one list for the whole server. */
export type { DataType };

export interface TensorConfig {
  name: string;
  dataType: DataType;
  /** Without the batch dimension when max_batch_size > 0; -1: variable. */
  dims: number[];
  /** Inputs only, where written. */
  optional?: boolean;
  /** Where the tensor's `input` / `output` starts in config.pbtxt. */
  line: number;
}

export interface DynamicBatchingConfig {
  /** Ascending. */
  preferredBatchSizes: number[];
  maxQueueDelayUs?: number;
}

export interface InstanceGroupConfig {
  name?: string;
  count?: number;
  /** 'auto': as configured (KIND_AUTO, or kind not written). */
  kind: 'cpu' | 'gpu' | 'auto';
  gpus: number[];
}

export type VersionPolicy =
  | { kind: 'latest'; numVersions: number }
  | { kind: 'all' }
  | { kind: 'specific'; versions: number[] };

export interface WarmupInput {
  dataType: DataType;
  dims: number[];
  /** zero_data, random_data or input_data_file (a file name in the model's warmup/ folder). */
  source: 'zero' | 'random' | { file: string };
}

export interface WarmupSample {
  name: string;
  batchSize: number;
  /** How many times the sample runs: Triton's `count`, where 0 (or not written) means once. */
  count: number;
  inputs: Record<string, WarmupInput>;
}

export interface ModelConfig {
  name?: string;
  platform?: string;
  backend?: string;
  /** 0: the model does not batch. */
  maxBatchSize?: number;
  inputs: TensorConfig[];
  outputs: TensorConfig[];
  dynamicBatching?: DynamicBatchingConfig;
  instanceGroups: InstanceGroupConfig[];
  versionPolicy: VersionPolicy;
  defaultModelFilename?: string;
  warmup: WarmupSample[];
  /** Raw strings; their keys are validated by whoever reads them (batch_delay: here, into batchDelay). */
  parameters: Record<string, string>;
  /** `parameters { key: "batch_delay" value { string_value: "adaptive" | "fixed" } }`; overrides BATCH_DELAY. */
  batchDelay?: BatchDelay;
}

/** The `parameters` key that chooses a model's batch delay policy (BATCH_DELAY for this model). */
export const BATCH_DELAY_PARAMETER = 'batch_delay';

/** A config.pbtxt that cannot be served as written; the message reads `<file>:<line>: <field>: <what is wrong>`. */
export class ModelConfigError extends Error {
  override readonly name = 'ModelConfigError';
  readonly code = 'TICKSERVE_MODEL_CONFIG';
  constructor(
    readonly file: string,
    readonly line: number,
    /** A dotted path from the top (`dynamic_batching.preferred_batch_size`); undefined for a syntax error outside any field. */
    readonly field: string | undefined,
    readonly problem: string,
    options?: ErrorOptions,
  ) {
    super(`${file}:${line}: ${field === undefined ? '' : `${field}: `}${problem}`, options);
  }
}

/** Reads `text`, the contents of `file` (named in errors), into a ModelConfig, or throws a ModelConfigError. */
export function parseModelConfig(text: string, file: string): ModelConfig {
  let root: PbtxtMessage;
  try {
    root = parsePbtxt(text, file);
  } catch (error) {
    if (!(error instanceof PbtxtSyntaxError)) throw error;
    const problem = `syntax error at column ${error.column}: expected ${error.expected}, found ${error.found}`;
    throw new ModelConfigError(file, error.line, error.field, problem, { cause: error });
  }
  return new ConfigReader(file).modelConfig(root);
}

const DATA_TYPES: Readonly<Record<string, DataType>> = {
  TYPE_BOOL: 'BOOL',
  TYPE_UINT8: 'UINT8',
  TYPE_UINT16: 'UINT16',
  TYPE_UINT32: 'UINT32',
  TYPE_UINT64: 'UINT64',
  TYPE_INT8: 'INT8',
  TYPE_INT16: 'INT16',
  TYPE_INT32: 'INT32',
  TYPE_INT64: 'INT64',
  TYPE_FP16: 'FP16',
  TYPE_FP32: 'FP32',
  TYPE_FP64: 'FP64',
  TYPE_STRING: 'BYTES',
};
const REFUSED_DATA_TYPES: Readonly<Record<string, string>> = {
  TYPE_BF16: 'TYPE_BF16 is not supported: onnxruntime-node has no bfloat16 tensors',
  TYPE_INVALID: 'TYPE_INVALID is not a data type',
};

const KINDS: Readonly<Record<string, InstanceGroupConfig['kind']>> = { KIND_CPU: 'cpu', KIND_GPU: 'gpu', KIND_AUTO: 'auto' };
const REFUSED_KINDS: Readonly<Record<string, string>> = {
  KIND_MODEL: 'KIND_MODEL is not supported: tickserve places every instance itself, on a CPU or a GPU',
};

const BOOLEANS: Readonly<Record<string, boolean>> = {
  true: true, True: true, t: true, 1: true, false: false, False: false, f: false, 0: false,
};

const PLATFORM = 'onnxruntime_onnx';
const BACKEND = 'onnxruntime';
const INT32_MAX = 2 ** 31 - 1;
const UINT32_MAX = 2 ** 32 - 1;

/**
 * What each message may hold: `one` at most once, `many` any number of times (also as lists). `unsupported` are
 * Triton's own fields that tickserve does not serve; they are refused as such rather than as unknown.
 */
interface Shape {
  readonly fields: Readonly<Record<string, 'one' | 'many'>>;
  readonly unsupported?: readonly string[];
}

const MODEL_CONFIG: Shape = {
  fields: {
    name: 'one', platform: 'one', backend: 'one', max_batch_size: 'one', input: 'many', output: 'many',
    dynamic_batching: 'one', instance_group: 'many', version_policy: 'one', default_model_filename: 'one',
    model_warmup: 'many', parameters: 'many',
  },
  unsupported: [
    'runtime', 'batch_input', 'batch_output', 'optimization', 'sequence_batching', 'ensemble_scheduling',
    'cc_model_filenames', 'metric_tags', 'model_operations', 'model_transaction_policy', 'model_repository_agents',
    'response_cache',
  ],
};
const MODEL_INPUT: Shape = {
  fields: { name: 'one', data_type: 'one', dims: 'many', optional: 'one' },
  unsupported: ['format', 'reshape', 'is_shape_tensor', 'allow_ragged_batch', 'is_non_linear_format_io'],
};
const MODEL_OUTPUT: Shape = {
  fields: { name: 'one', data_type: 'one', dims: 'many' },
  unsupported: ['label_filename', 'reshape', 'is_shape_tensor', 'is_non_linear_format_io'],
};
const DYNAMIC_BATCHING: Shape = {
  fields: { preferred_batch_size: 'many', max_queue_delay_microseconds: 'one' },
  unsupported: ['preserve_ordering', 'priority_levels', 'default_priority_level', 'default_queue_policy', 'priority_queue_policy'],
};
const INSTANCE_GROUP: Shape = {
  fields: { name: 'one', count: 'one', kind: 'one', gpus: 'many' },
  unsupported: ['rate_limiter', 'secondary_devices', 'profile', 'passive', 'host_policy'],
};
const VERSION_POLICY: Shape = { fields: { latest: 'one', all: 'one', specific: 'one' } };
const LATEST: Shape = { fields: { num_versions: 'one' } };
const ALL: Shape = { fields: {} };
const SPECIFIC: Shape = { fields: { versions: 'many' } };
const MODEL_WARMUP: Shape = { fields: { name: 'one', batch_size: 'one', inputs: 'many', count: 'one' } };
const WARMUP_INPUT: Shape = {
  fields: { data_type: 'one', dims: 'many', zero_data: 'one', random_data: 'one', input_data_file: 'one' },
};
const MAP_ENTRY: Shape = { fields: { key: 'one', value: 'one' } };
const MODEL_PARAMETER: Shape = { fields: { string_value: 'one' } };

/** A message's fields by name, checked against its Shape; `path` is the message's own (empty at the top). */
class Fields {
  private readonly byName = new Map<string, PbtxtField[]>();

  constructor(
    private readonly reader: ConfigReader,
    readonly path: string,
    message: PbtxtMessage,
    shape: Shape,
  ) {
    for (const field of message.fields) {
      const fieldPath = this.pathOf(field.name);
      if (!Object.hasOwn(shape.fields, field.name)) {
        if (shape.unsupported?.includes(field.name)) {
          reader.fail(field, fieldPath, "not supported by tickserve (Triton's field, outside the subset tickserve serves)");
        }
        const known = Object.keys(shape.fields);
        const expected = known.length === 0 ? 'this message takes none' : `expected one of: ${known.join(', ')}`;
        reader.fail(field, fieldPath, `unknown field (${expected})`);
      }
      const seen = this.byName.get(field.name);
      if (shape.fields[field.name] === 'one') {
        if (seen !== undefined) {
          reader.fail(field, fieldPath, `given twice (first at line ${seen[0].line}); it is not a repeated field`);
        }
        if (field.list) reader.fail(field, fieldPath, 'not a repeated field: give one value, not a list');
      }
      if (seen === undefined) this.byName.set(field.name, [field]);
      else seen.push(field);
    }
  }

  pathOf(name: string): string {
    return this.path === '' ? name : `${this.path}.${name}`;
  }

  /** The field of a non-repeated name, if written. */
  field(name: string): PbtxtField | undefined {
    return this.byName.get(name)?.[0];
  }

  /** The value of a non-repeated field, if written. */
  one(name: string): PbtxtValue | undefined {
    return this.field(name)?.values[0];
  }

  /** Every value of a repeated field, however written (repeated, lists, or both), in order. */
  many(name: string): PbtxtValue[] {
    return (this.byName.get(name) ?? []).flatMap((field) => field.values);
  }

  /**
   * Every message of a repeated field, each with where it starts: the field (`input {`, the line a reader looks
   * for) or, in a list, the element's own brace.
   */
  messages(name: string, shape: Shape): Array<{ at: Position; fields: Fields }> {
    const path = this.pathOf(name);
    return (this.byName.get(name) ?? []).flatMap((field) =>
      field.values.map((value) => ({ at: field.list ? value : field, fields: this.reader.message(value, path, shape) })),
    );
  }

  /** Which of `names` (a oneof) were written, in the order written: the second is the one refused. */
  writtenOf(names: readonly string[]): string[] {
    const written = names.filter((name) => this.byName.has(name));
    const order = (name: string) => [this.field(name)!.line, this.field(name)!.column];
    return written.sort((a, b) => order(a)[0] - order(b)[0] || order(a)[1] - order(b)[1]);
  }

  /** A field that must be written; refused at the message's own position otherwise. */
  required(name: string, at: Position): PbtxtValue {
    const value = this.one(name);
    if (value === undefined) this.reader.fail(at, this.pathOf(name), 'missing (it must be written)');
    return value;
  }

  string(name: string): string | undefined {
    const value = this.one(name);
    return value === undefined ? undefined : this.reader.string(value, this.pathOf(name));
  }

  integer(name: string, min: number, max: number): number | undefined {
    const value = this.one(name);
    return value === undefined ? undefined : this.reader.integer(value, this.pathOf(name), min, max);
  }

  integers(name: string, min: number, max: number): number[] {
    return this.many(name).map((value) => this.reader.integer(value, this.pathOf(name), min, max));
  }

  bool(name: string): boolean | undefined {
    const value = this.one(name);
    return value === undefined ? undefined : this.reader.bool(value, this.pathOf(name));
  }

  message(name: string, shape: Shape): Fields | undefined {
    const value = this.one(name);
    return value === undefined ? undefined : this.reader.message(value, this.pathOf(name), shape);
  }
}

class ConfigReader {
  constructor(private readonly file: string) {}

  fail(at: Position, field: string, problem: string): never {
    throw new ModelConfigError(this.file, at.line, field, problem);
  }

  modelConfig(root: PbtxtMessage): ModelConfig {
    const top = new Fields(this, '', root, MODEL_CONFIG);
    const maxBatchSize = top.integer('max_batch_size', 0, INT32_MAX);
    const filename = top.one('default_model_filename');
    const config: ModelConfig = {
      inputs: this.tensors(top, 'input', MODEL_INPUT),
      outputs: this.tensors(top, 'output', MODEL_OUTPUT),
      instanceGroups: top.messages('instance_group', INSTANCE_GROUP).map(({ fields }) => this.instanceGroup(fields)),
      versionPolicy: this.versionPolicy(top),
      // Dynamic batching and warmup check batch sizes against max_batch_size, wherever that was written.
      warmup: this.warmup(top, maxBatchSize),
      parameters: this.parameters(top),
    };
    setIfWritten(config, 'batchDelay', this.batchDelay(top));
    setIfWritten(config, 'name', top.string('name'));
    setIfWritten(config, 'platform', this.only(top, 'platform', PLATFORM));
    setIfWritten(config, 'backend', this.only(top, 'backend', BACKEND));
    setIfWritten(config, 'maxBatchSize', maxBatchSize);
    setIfWritten(config, 'dynamicBatching', this.dynamicBatching(top, maxBatchSize));
    setIfWritten(config, 'defaultModelFilename', filename && this.fileName(filename, 'default_model_filename'));
    return config;
  }

  /** A platform or backend: tickserve runs ONNX models on ONNX Runtime and nothing else. */
  private only(top: Fields, name: string, allowed: string): string | undefined {
    const value = top.one(name);
    if (value === undefined) return undefined;
    const text = this.string(value, name);
    if (text !== allowed) {
      this.fail(value, name, `${JSON.stringify(text)} is not served; tickserve serves ${JSON.stringify(allowed)} only`);
    }
    return text;
  }

  private tensors(top: Fields, name: 'input' | 'output', shape: Shape): TensorConfig[] {
    const tensors: TensorConfig[] = [];
    const seen = new Map<string, number>();
    for (const { at, fields } of top.messages(name, shape)) {
      const nameValue = fields.required('name', at);
      const tensorName = this.string(nameValue, fields.pathOf('name'));
      if (tensorName === '') this.fail(nameValue, fields.pathOf('name'), 'must not be empty');
      const first = seen.get(tensorName);
      if (first !== undefined) {
        this.fail(nameValue, fields.pathOf('name'), `${JSON.stringify(tensorName)} is already an ${name} (line ${first})`);
      }
      seen.set(tensorName, at.line);
      const tensor: TensorConfig = {
        name: tensorName,
        dataType: this.dataType(fields.required('data_type', at), fields.pathOf('data_type')),
        dims: this.dims(fields, at, { variable: true, required: true }),
        line: at.line,
      };
      setIfWritten(tensor, 'optional', fields.bool('optional'));
      tensors.push(tensor);
    }
    return tensors;
  }

  /** dims: each >= 1, or -1 (variable) where allowed. */
  private dims(fields: Fields, at: Position, options: { variable: boolean; required: boolean }): number[] {
    const path = fields.pathOf('dims');
    const values = fields.many('dims');
    if (options.required && values.length === 0) {
      const written = fields.field('dims');
      if (written === undefined) this.fail(at, path, 'missing (it must be written; -1 marks a variable dimension)');
      this.fail(written, path, 'an empty list: a tensor has at least one dimension (-1 marks a variable one)');
    }
    return values.map((value) => {
      const dim = this.integer(value, path, -1, Number.MAX_SAFE_INTEGER);
      if (dim === 0 || (dim === -1 && !options.variable)) {
        this.fail(value, path, options.variable
          ? `${dim} is not a dimension: each must be >= 1, or -1 for a variable one`
          : `${dim} is not a dimension: each must be >= 1 (a warmup sample has a concrete shape)`);
      }
      return dim;
    });
  }

  private dynamicBatching(top: Fields, maxBatchSize: number | undefined): DynamicBatchingConfig | undefined {
    const value = top.one('dynamic_batching');
    if (value === undefined) return undefined;
    const fields = this.message(value, 'dynamic_batching', DYNAMIC_BATCHING);
    if (maxBatchSize === 0) {
      const line = top.field('max_batch_size')!.line;
      const problem = `needs max_batch_size > 0 (max_batch_size: 0 at line ${line} means the model does not batch)`;
      this.fail(value, 'dynamic_batching', problem);
    }
    const path = fields.pathOf('preferred_batch_size');
    const sizes: number[] = [];
    for (const size of fields.many('preferred_batch_size')) {
      const n = this.integer(size, path, 1, INT32_MAX);
      if (maxBatchSize !== undefined && n > maxBatchSize) {
        this.fail(size, path, `${n} is larger than max_batch_size (${maxBatchSize})`);
      }
      if (sizes.includes(n)) this.fail(size, path, `${n} is given twice`);
      sizes.push(n);
    }
    const batching: DynamicBatchingConfig = { preferredBatchSizes: sizes.sort((a, b) => a - b) };
    const delay = fields.integer('max_queue_delay_microseconds', 0, Number.MAX_SAFE_INTEGER);
    setIfWritten(batching, 'maxQueueDelayUs', delay);
    return batching;
  }

  private instanceGroup(fields: Fields): InstanceGroupConfig {
    const group: InstanceGroupConfig = { kind: 'auto', gpus: fields.integers('gpus', 0, INT32_MAX) };
    setIfWritten(group, 'name', fields.string('name'));
    setIfWritten(group, 'count', fields.integer('count', 1, INT32_MAX));
    const kind = fields.one('kind');
    if (kind !== undefined) group.kind = this.enumValue(kind, fields.pathOf('kind'), KINDS, REFUSED_KINDS);
    if (group.kind === 'cpu' && group.gpus.length > 0) {
      const problem = 'given with kind KIND_CPU; GPUs are for KIND_GPU or KIND_AUTO';
      this.fail(fields.field('gpus')!, fields.pathOf('gpus'), problem);
    }
    return group;
  }

  private versionPolicy(top: Fields): VersionPolicy {
    const policy = top.message('version_policy', VERSION_POLICY);
    if (policy === undefined) return { kind: 'latest', numVersions: 1 };
    this.oneOf(policy, ['latest', 'all', 'specific']);
    const all = policy.message('all', ALL);
    if (all !== undefined) return { kind: 'all' };
    const specific = policy.message('specific', SPECIFIC);
    if (specific !== undefined) {
      const path = specific.pathOf('versions');
      const values = specific.many('versions');
      const versions = values.map((value) => this.integer(value, path, 1, Number.MAX_SAFE_INTEGER));
      if (versions.length === 0) this.fail(policy.field('specific')!, path, 'missing (specific needs at least one version)');
      versions.forEach((version, i) => {
        if (versions.indexOf(version) !== i) this.fail(values[i], path, `${version} is given twice`);
      });
      return { kind: 'specific', versions };
    }
    const latest = policy.message('latest', LATEST);
    if (latest !== undefined) {
      const at = policy.one('latest')!;
      const path = latest.pathOf('num_versions');
      return { kind: 'latest', numVersions: this.integer(latest.required('num_versions', at), path, 1, UINT32_MAX) };
    }
    // `version_policy {}`: Triton's default too.
    return { kind: 'latest', numVersions: 1 };
  }

  private warmup(top: Fields, maxBatchSize: number | undefined): WarmupSample[] {
    return top.messages('model_warmup', MODEL_WARMUP).map(({ at, fields }) => {
      const name = this.string(fields.required('name', at), fields.pathOf('name'));
      const batchValue = fields.required('batch_size', at);
      const batchSize = this.integer(batchValue, fields.pathOf('batch_size'), 1, UINT32_MAX);
      if (maxBatchSize !== undefined && maxBatchSize > 0 && batchSize > maxBatchSize) {
        this.fail(batchValue, fields.pathOf('batch_size'), `${batchSize} is larger than max_batch_size (${maxBatchSize})`);
      }
      const count = fields.integer('count', 0, UINT32_MAX) ?? 0;
      const inputs: Record<string, WarmupInput> = {};
      for (const { key, value } of this.mapEntries(fields, 'inputs')) {
        setEntry(inputs, key, this.warmupInput(value, fields.pathOf('inputs.value')));
      }
      return { name, batchSize, count: Math.max(count, 1), inputs };
    });
  }

  private warmupInput(value: PbtxtValue, path: string): WarmupInput {
    const fields = this.message(value, path, WARMUP_INPUT);
    const at: Position = value;
    const source = this.oneOf(fields, ['zero_data', 'random_data', 'input_data_file']);
    if (source === undefined) this.fail(at, path, 'needs one of zero_data, random_data, input_data_file');
    let data: WarmupInput['source'];
    if (source === 'input_data_file') {
      data = { file: this.fileName(fields.one(source)!, fields.pathOf(source)) };
    } else {
      if (fields.bool(source) !== true) {
        this.fail(fields.one(source)!, fields.pathOf(source), 'must be true where given (it chooses the data)');
      }
      data = source === 'zero_data' ? 'zero' : 'random';
    }
    return {
      dataType: this.dataType(fields.required('data_type', at), fields.pathOf('data_type')),
      dims: this.dims(fields, at, { variable: false, required: false }),
      source: data,
    };
  }

  private parameters(top: Fields): Record<string, string> {
    const parameters: Record<string, string> = {};
    for (const { key, value } of this.mapEntries(top, 'parameters')) {
      const path = top.pathOf('parameters.value');
      setEntry(parameters, key, this.message(value, path, MODEL_PARAMETER).string('string_value') ?? '');
    }
    return parameters;
  }

  /** The batch_delay parameter, checked where it was written: adaptive or fixed. */
  private batchDelay(top: Fields): BatchDelay | undefined {
    for (const { key, value } of this.mapEntries(top, 'parameters')) {
      if (key !== BATCH_DELAY_PARAMETER) continue;
      const fields = this.message(value, top.pathOf('parameters.value'), MODEL_PARAMETER);
      const written = fields.one('string_value');
      const path = fields.pathOf('string_value');
      if (written === undefined) this.fail(value, path, `${BATCH_DELAY_PARAMETER} needs a value: one of ${BATCH_DELAYS.join(', ')}`);
      const text = this.string(written, path);
      const delay = BATCH_DELAYS.find((d) => d === text.trim().toLowerCase());
      if (delay === undefined) this.fail(written, path, `${BATCH_DELAY_PARAMETER} must be one of ${BATCH_DELAYS.join(', ')}, found ${JSON.stringify(text)}`);
      return delay;
    }
    return undefined;
  }

  /** A oneof: the field written, if any; a second one is refused where it was written. */
  private oneOf(fields: Fields, names: readonly string[]): string | undefined {
    const written = fields.writtenOf(names);
    if (written.length > 1) {
      const [first, second] = written;
      const problem = `only one of ${names.join(', ')} may be given (${first} is at line ${fields.field(first)!.line})`;
      this.fail(fields.field(second)!, fields.pathOf(second), problem);
    }
    return written[0];
  }

  /** A map field, written as repeated `name { key: "k" value { ... } }`: each key once, each entry with a value. */
  private mapEntries(parent: Fields, name: string): Array<{ key: string; value: PbtxtValue }> {
    const entries: Array<{ key: string; value: PbtxtValue }> = [];
    const seen = new Map<string, number>();
    for (const { at, fields } of parent.messages(name, MAP_ENTRY)) {
      const keyValue = fields.required('key', at);
      const key = this.string(keyValue, fields.pathOf('key'));
      const first = seen.get(key);
      if (first !== undefined) {
        this.fail(keyValue, fields.pathOf('key'), `${JSON.stringify(key)} is given twice (first at line ${first})`);
      }
      seen.set(key, keyValue.line);
      entries.push({ key, value: fields.required('value', at) });
    }
    return entries;
  }

  /** A plain file name inside the model's folder: no path, so a config cannot reach outside it. */
  private fileName(value: PbtxtValue, path: string): string {
    const name = this.string(value, path);
    if (name === '' || name.includes('/') || name.includes('\\') || name.includes('..')) {
      this.fail(value, path, `${JSON.stringify(name)} is not a plain file name (no '/', '\\' or '..', not empty)`);
    }
    return name;
  }

  private dataType(value: PbtxtValue, path: string): DataType {
    return this.enumValue(value, path, DATA_TYPES, REFUSED_DATA_TYPES);
  }

  private enumValue<T>(
    value: PbtxtValue,
    path: string,
    allowed: Readonly<Record<string, T>>,
    refused: Readonly<Record<string, string>>,
  ): T {
    const names = Object.keys(allowed).join(', ');
    if (value.kind !== 'identifier') this.fail(value, path, `expected one of ${names}, found ${describe(value)}`);
    if (Object.hasOwn(refused, value.text)) this.fail(value, path, refused[value.text]);
    if (!Object.hasOwn(allowed, value.text)) this.fail(value, path, `expected one of ${names}, found ${value.text}`);
    return allowed[value.text];
  }

  string(value: PbtxtValue, path: string): string {
    if (value.kind !== 'string') this.fail(value, path, `expected a quoted string, found ${describe(value)}`);
    return value.value;
  }

  integer(value: PbtxtValue, path: string, min: number, max: number): number {
    if (value.kind !== 'integer') this.fail(value, path, `expected an integer, found ${describe(value)}`);
    const n = value.value;
    if (!Number.isSafeInteger(n) || n < min || n > max) {
      const range = max === Number.MAX_SAFE_INTEGER ? `>= ${min}` : `from ${min} to ${max}`;
      this.fail(value, path, `${value.text} is out of range: it must be ${range}`);
    }
    return n;
  }

  bool(value: PbtxtValue, path: string): boolean {
    // The spellings protobuf's own text parser accepts.
    if ((value.kind === 'identifier' || value.kind === 'integer') && Object.hasOwn(BOOLEANS, value.text)) {
      return BOOLEANS[value.text];
    }
    return this.fail(value, path, `expected true or false, found ${describe(value)}`);
  }

  message(value: PbtxtValue, path: string, shape: Shape): Fields {
    if (value.kind !== 'message') this.fail(value, path, `expected a message { ... }, found ${describe(value)}`);
    return new Fields(this, path, value, shape);
  }
}

/**
 * A map entry as an own property whatever its key: `record[key] = v` would drop a key `__proto__` silently (it
 * would try to set the prototype instead).
 */
function setEntry<T>(record: Record<string, T>, key: string, value: T): void {
  Object.defineProperty(record, key, { value, enumerable: true, writable: true, configurable: true });
}

/** An optional property is set only where the field was written, so a config lists what its file says. */
function setIfWritten<T extends object, K extends keyof T>(target: T, key: K, value: T[K] | undefined): void {
  if (value !== undefined) target[key] = value;
}

function describe(value: PbtxtValue): string {
  switch (value.kind) {
    case 'message':
      return 'a message { ... }';
    case 'string':
      return `the string ${value.text}`;
    default:
      return value.text;
  }
}
