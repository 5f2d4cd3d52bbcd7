// config.pbtxt: the protobuf text-format parser (every syntax form, positions, syntax errors) and the typed
// ModelConfig read from it (a realistic config to the exact object, defaults, and each refusal with its file, line
// and field).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { type ModelConfig, ModelConfigError, parseModelConfig } from '../src/models/config';
import { MAX_PBTXT_DEPTH, type PbtxtMessage, PbtxtSyntaxError, type PbtxtValue, parsePbtxt } from '../src/models/pbtxt';
import { instanceWorkers } from '../src/models/instance';

const FILE = 'models/densenet_onnx/config.pbtxt';

/** A tree without positions: `[name, value]` per field, a list's values as an array, identifiers as `{ id }`. */
type Plain = number | string | { id: string } | PlainFields | Plain[];
type PlainFields = Array<[string, Plain]>;

function plain(message: PbtxtMessage): PlainFields {
  return message.fields.map((field) => [field.name, field.list ? field.values.map(plainValue) : plainValue(field.values[0])]);
}

function plainValue(value: PbtxtValue): Plain {
  switch (value.kind) {
    case 'message':
      return plain(value);
    case 'identifier':
      return { id: value.text };
    default:
      return value.value;
  }
}

describe('parsePbtxt: syntax forms', () => {
  const forms: Array<[string, string, PlainFields]> = [
    ['scalars: integers, floats, identifiers, strings', 'a: 1 b: 2.5 c: true d: TYPE_FP32 e: "s"', [
      ['a', 1], ['b', 2.5], ['c', { id: 'true' }], ['d', { id: 'TYPE_FP32' }], ['e', 's'],
    ]],
    ['negative numbers, with or without a space after the sign', 'a: -1 b: - 5 c: -2.5e3 d: -0x10 e: -inf', [
      ['a', -1], ['b', -5], ['c', -2500], ['d', -16], ['e', -Infinity],
    ]],
    ['numbers: hex, exponent, float suffix, leading dot', 'a: 0x1F b: 1e3 c: 1.5f d: .25 e: 0', [
      ['a', 31], ['b', 1000], ['c', 1.5], ['d', 0.25], ['e', 0],
    ]],
    ['message as name { }', 'm { x: 1 }', [['m', [['x', 1]]]]],
    ['message as name: { }', 'm: { x: 1 }', [['m', [['x', 1]]]]],
    ['message as name < >', 'm < x: 1 >', [['m', [['x', 1]]]]],
    ['message as name: < >', 'm: < x: 1 >', [['m', [['x', 1]]]]],
    ['nested and empty messages', 'a { b { c: 1 } d { } }', [['a', [['b', [['c', 1]]], ['d', []]]]]],
    ['a repeated field by repeating it', 'n: 1 n: 2 m { x: 1 } m { x: 2 }', [
      ['n', 1], ['n', 2], ['m', [['x', 1]]], ['m', [['x', 2]]],
    ]],
    ['a list of scalars', 'dims: [1, -1, 3]', [['dims', [1, -1, 3]]]],
    ['an empty list', 'dims: []', [['dims', []]]],
    ['a list of messages, with a colon', 'g: [ { c: 1 }, { c: 2 } ]', [['g', [[['c', 1]], [['c', 2]]]]]],
    ['a list of messages, without a colon, < > elements', 'g [ { c: 1 }, < c: 2 > ]', [['g', [[['c', 1]], [['c', 2]]]]]],
    ['separators , and ; between fields, also in messages', 'a: 1, b: 2; m { x: 1; y: 2, }', [
      ['a', 1], ['b', 2], ['m', [['x', 1], ['y', 2]]],
    ]],
    ['comments to the end of a line, not inside strings', '# head\na: 1 # one\n# b: 2\nc: "# kept" # tail', [
      ['a', 1], ['c', '# kept'],
    ]],
    ['single and double quotes, each holding the other', `a: 'say "hi"' b: "it's"`, [['a', 'say "hi"'], ['b', "it's"]]],
    ['escapes', String.raw`a: "q\"b\\s\'n\nt\tx\x41o\101u\u00e9U\U0001F600"`, [['a', 'q"b\\s\'n\nt\txAoAuéU\u{1F600}']]],
    ['adjacent strings are concatenated', `a: "ab" 'cd'\n  "ef"`, [['a', 'abcdef']]],
    ['UTF-8 written as it is, and as escaped bytes', String.raw`a: "é" b: "\303\251"`, [['a', 'é'], ['b', 'é']]],
    ['a map entry', 'inputs { key: "x" value { dims: 4 } }', [['inputs', [['key', 'x'], ['value', [['dims', 4]]]]]]],
    ['whitespace of every kind, and none', 'a:1\tb\r\n:\f2\vm{x:1}', [['a', 1], ['b', 2], ['m', [['x', 1]]]]],
    ['an empty file', '', []],
    ['only comments', '# nothing here\n', []],
  ];
  for (const [title, text, expected] of forms) {
    it(title, () => assert.deepEqual(plain(parsePbtxt(text, FILE)), expected));
  }

  it('keeps each field\'s and each value\'s 1-based line and column, and whether it was a list', () => {
    const text = 'name: "m"\n\n  input {\n    dims: [ 3,\n      -1 ]\n  }\nflag:true';
    const root = parsePbtxt(text, FILE);
    assert.deepEqual(root, {
      kind: 'message', line: 1, column: 1, fields: [
        { name: 'name', line: 1, column: 1, list: false, values: [{ kind: 'string', line: 1, column: 7, value: 'm', text: '"m"' }] },
        {
          name: 'input', line: 3, column: 3, list: false, values: [{
            kind: 'message', line: 3, column: 9, fields: [{
              name: 'dims', line: 4, column: 5, list: true, values: [
                { kind: 'integer', line: 4, column: 13, value: 3, text: '3' },
                { kind: 'integer', line: 5, column: 7, value: -1, text: '-1' },
              ],
            }],
          }],
        },
        { name: 'flag', line: 7, column: 1, list: false, values: [{ kind: 'identifier', line: 7, column: 6, text: 'true' }] },
      ],
    });
  });

  it('counts lines across CRLF line ends and comments', () => {
    const root = parsePbtxt('# c\r\na: 1\r\n\r\n  b: 2 # x\r\nc: 3', FILE);
    assert.deepEqual(root.fields.map((f) => [f.name, f.line, f.column]), [['a', 2, 1], ['b', 4, 3], ['c', 5, 1]]);
  });

  it(`nests up to MAX_PBTXT_DEPTH (${MAX_PBTXT_DEPTH}) messages`, () => {
    const text = 'a { '.repeat(MAX_PBTXT_DEPTH) + 'x: 1' + ' }'.repeat(MAX_PBTXT_DEPTH);
    let message = parsePbtxt(text, FILE);
    for (let depth = 0; depth < MAX_PBTXT_DEPTH; depth++) message = message.fields[0].values[0] as PbtxtMessage;
    assert.deepEqual(plain(message), [['x', 1]]);
  });

  it('keeps integers beyond 2^53 as written, for the reader to refuse', () => {
    const value = parsePbtxt('a: 9223372036854775807', FILE).fields[0].values[0];
    assert.equal(value.kind, 'integer');
    assert.equal(value.kind === 'integer' && value.text, '9223372036854775807');
  });
});

describe('parsePbtxt: syntax errors name the file, line, column, field and what was expected', () => {
  const errors: Array<[string, string, number, number, string | undefined, string, string]> = [
    // title, text, line, column, field, expected, found
    ['unbalanced brace', 'name: "m"\ninput {\n  name: "x"\n', 4, 1, 'input', "'}' to close the '{' opened on line 2", 'end of file'],
    ['unbalanced angle bracket', 'a < b: 1', 1, 9, 'a', "'>' to close the '<' opened on line 1", 'end of file'],
    ['a brace closed by an angle bracket', 'a { b: 1 >', 1, 10, 'a', "a field name or '}'", "'>'"],
    ['a closing brace with nothing open', 'a: 1\n}', 2, 1, undefined, 'a field name', "'}'"],
    ['an unterminated double-quoted string', 'a: 1\nname: "abc\nb: 2', 2, 7, 'name', 'a closing " before the end of the line', 'end of line'],
    ['an unterminated single-quoted string at the end of the file', "name: 'abc", 1, 7, 'name', "a closing ' before the end of the line", 'end of file'],
    ['a scalar without a colon', 'a 1', 1, 3, 'a', "':' or '{' after the field name", "'1'"],
    ['a colon and no value', 'a:\n}', 2, 1, 'a', 'a value (a number, a quoted string or an identifier)', "'}'"],
    ['a list without commas', 'dims: [1 2]', 1, 10, 'dims', "',' or ']'", "'2'"],
    ['a list with a trailing comma', 'dims: [1, 2,]', 1, 13, 'dims', 'a value (a number, a quoted string or an identifier)', "']'"],
    ['an unclosed list', 'dims: [1, 2', 1, 12, 'dims', "',' or ']'", 'end of file'],
    ['a list of values without a colon', 'dims [1]', 1, 7, 'dims', "'{' (a list of values needs ':' after the field name)", "'1'"],
    ['a list of messages then a value', 'g [{ }, 1]', 1, 9, 'g', "'{' (this list holds messages)", "'1'"],
    ['a list of values then a message', 'g: [1, { }]', 1, 8, 'g', 'a value (this list holds values, not messages)', "'{'"],
    ['a character that is no token', 'a: 1 @', 1, 6, undefined, 'a field name', "'@'"],
    ['a nested field name that is a number', 'm { 1: 2 }', 1, 5, 'm', "a field name or '}'", "'1'"],
    ['an octal-looking integer', 'a: 010', 1, 4, 'a', 'a decimal integer without leading zeros (octal is not supported)', "'010'"],
    ['a number run into letters', 'dims: [3, 224x]', 1, 11, 'dims', 'a number', "'224x'"],
    ['a number with two points', 'a: 1.2.3', 1, 4, 'a', 'a number', "'1.2.3'"],
    ['a sign before a name', 'a: -b', 1, 5, 'a', "a number after '-'", "'b'"],
    ['an unknown escape', String.raw`a: "x\qy"`, 1, 6, 'a', String.raw`an escape (\n \t \\ \" \' \xHH \NNN \uHHHH \UHHHHHHHH)`, String.raw`'\q'`],
    ['a short \\u escape', String.raw`a: "\u12"`, 1, 5, 'a', String.raw`an escape (\n \t \\ \" \' \xHH \NNN \uHHHH \UHHHHHHHH)`, String.raw`'\u12"'`],
    ['escaped bytes that are not UTF-8', String.raw`a: "\xff"`, 1, 4, 'a', 'a string of valid UTF-8', String.raw`"\xff"`],
    ['an error in a nested field names the path', 'a { b { c: } }', 1, 12, 'a.b.c', 'a value (a number, a quoted string or an identifier)', "'}'"],
    ['nesting deeper than MAX_PBTXT_DEPTH', 'a { '.repeat(MAX_PBTXT_DEPTH + 1), 1, 4 * MAX_PBTXT_DEPTH + 3, Array(MAX_PBTXT_DEPTH + 1).fill('a').join('.'), `at most ${MAX_PBTXT_DEPTH} nested messages`, "'{'"],
  ];
  for (const [title, text, line, column, field, expected, found] of errors) {
    it(title, () => {
      assert.throws(() => parsePbtxt(text, FILE), (error: unknown) => {
        assert.ok(error instanceof PbtxtSyntaxError, String(error));
        assert.deepEqual(
          { file: error.file, line: error.line, column: error.column, field: error.field, expected: error.expected, found: error.found },
          { file: FILE, line, column, field, expected, found },
        );
        const where = field === undefined ? '' : `${field}: `;
        assert.equal(error.message, `${FILE}:${line}:${column}: ${where}expected ${expected}, found ${found}`);
        return true;
      });
    });
  }
});

describe('error classes', () => {
  const cases: Array<[string, Error & { code: string }, string, string]> = [
    ['PbtxtSyntaxError', new PbtxtSyntaxError('c.pbtxt', 3, 7, 'input.dims', "',' or ']'", "'x'"), 'TICKSERVE_PBTXT_SYNTAX', "c.pbtxt:3:7: input.dims: expected ',' or ']', found 'x'"],
    ['PbtxtSyntaxError outside any field', new PbtxtSyntaxError('c.pbtxt', 1, 1, undefined, 'a field name', "'}'"), 'TICKSERVE_PBTXT_SYNTAX', "c.pbtxt:1:1: expected a field name, found '}'"],
    ['ModelConfigError', new ModelConfigError('c.pbtxt', 4, 'max_batch_size', 'must be >= 0'), 'TICKSERVE_MODEL_CONFIG', 'c.pbtxt:4: max_batch_size: must be >= 0'],
    ['ModelConfigError outside any field', new ModelConfigError('c.pbtxt', 2, undefined, 'syntax error'), 'TICKSERVE_MODEL_CONFIG', 'c.pbtxt:2: syntax error'],
  ];
  for (const [name, error, code, message] of cases) {
    it(`${name}: a stable code, its class name and a message that says where`, () => {
      assert.ok(error instanceof Error);
      assert.equal(error.code, code);
      assert.equal(error.name, name.split(' ')[0]);
      assert.equal(error.message, message);
    });
  }
});

// After the examples in Triton's model_configuration.md (densenet_onnx, instance groups, dynamic batching, version
// policy, warmup) and the ONNX Runtime backend's README (parameters).
const DENSENET = `# An ONNX image classifier served by Triton's ONNX Runtime backend.
name: "densenet_onnx"
platform: "onnxruntime_onnx"
backend: "onnxruntime"
max_batch_size : 8
version_policy: { specific: { versions: [1, 3] } }
default_model_filename: "densenet.onnx"
input [
  {
    name: "data_0"
    data_type: TYPE_FP32
    dims: [ 3, 224, 224 ]
  }
]
input {
  name: "mask"
  data_type: TYPE_BOOL
  dims: [ -1 ]
  optional: true
}
output [
  {
    name: "fc6_1"
    data_type: TYPE_FP32
    dims: [ 1000 ]
  },
  {
    name: "labels"
    data_type: TYPE_STRING
    dims: [ 1 ]
  }
]
instance_group [
  {
    name: "on_gpus"
    count: 2
    kind: KIND_GPU
    gpus: [ 0, 1 ]
  },
  {
    count: 1
    kind: KIND_CPU
  }
]
dynamic_batching {
  preferred_batch_size: [ 8, 4 ]
  max_queue_delay_microseconds: 100
}
model_warmup [
  {
    name: "zeros"
    batch_size: 8
    inputs {
      key: "data_0"
      value: {
        data_type: TYPE_FP32
        dims: [ 3, 224, 224 ]
        zero_data: true
      }
    }
    inputs {
      key: "mask"
      value: { data_type: TYPE_BOOL dims: [ 4 ] random_data: true }
    }
    count: 2
  },
  {
    name: "cat"
    batch_size: 1
    inputs {
      key: "data_0"
      value: { data_type: TYPE_FP32, dims: [ 3, 224, 224 ], input_data_file: "cat.raw" }
    }
  }
]
parameters { key: "intra_op_thread_count" value: { string_value: "1" } }
parameters {
  key: "cudnn_conv_algo_search"
  value: { string_value: "1" }
}
`;

describe('parseModelConfig', () => {
  it('reads a realistic config to the exact typed object', () => {
    const expected: ModelConfig = {
      name: 'densenet_onnx',
      platform: 'onnxruntime_onnx',
      backend: 'onnxruntime',
      maxBatchSize: 8,
      versionPolicy: { kind: 'specific', versions: [1, 3] },
      defaultModelFilename: 'densenet.onnx',
      inputs: [
        { name: 'data_0', dataType: 'FP32', dims: [3, 224, 224], line: 9 },
        { name: 'mask', dataType: 'BOOL', dims: [-1], optional: true, line: 15 },
      ],
      outputs: [
        { name: 'fc6_1', dataType: 'FP32', dims: [1000], line: 22 },
        { name: 'labels', dataType: 'BYTES', dims: [1], line: 27 },
      ],
      instanceGroups: [
        { name: 'on_gpus', count: 2, kind: 'gpu', gpus: [0, 1] },
        { count: 1, kind: 'cpu', gpus: [] },
      ],
      dynamicBatching: { preferredBatchSizes: [4, 8], maxQueueDelayUs: 100 },
      warmup: [
        {
          name: 'zeros',
          batchSize: 8,
          count: 2,
          inputs: {
            data_0: { dataType: 'FP32', dims: [3, 224, 224], source: 'zero' },
            mask: { dataType: 'BOOL', dims: [4], source: 'random' },
          },
        },
        {
          name: 'cat',
          batchSize: 1,
          count: 1,
          inputs: { data_0: { dataType: 'FP32', dims: [3, 224, 224], source: { file: 'cat.raw' } } },
        },
      ],
      parameters: { intra_op_thread_count: '1', cudnn_conv_algo_search: '1' },
    };
    assert.deepEqual(parseModelConfig(DENSENET, FILE), expected);
  });

  it('an empty file: empty lists, latest 1, and nothing else set', () => {
    assert.deepEqual(parseModelConfig('# filled in from the environment and the ONNX file\n', FILE), {
      inputs: [],
      outputs: [],
      instanceGroups: [],
      versionPolicy: { kind: 'latest', numVersions: 1 },
      warmup: [],
      parameters: {},
    });
  });

  it('the same config in other syntax forms reads the same', () => {
    const compact = `name: 'densenet_onnx'; platform: "onnxruntime_" "onnx"; backend: "onnxruntime"
      max_batch_size: 8, version_policy < specific < versions: 1 versions: 3 > >
      default_model_filename: "densenet.onnx"
      input: [ { name: "data_0" data_type: TYPE_FP32 dims: 3 dims: [224, 224] }, < name: "mask" data_type: TYPE_BOOL dims: -1 optional: true > ]
      output { name: "fc6_1" data_type: TYPE_FP32 dims: 1000 } output: { name: "labels" data_type: TYPE_STRING dims: [1] }
      instance_group { name: "on_gpus" count: 2 kind: KIND_GPU gpus: 0 gpus: 1 } instance_group { count: 1 kind: KIND_CPU }
      dynamic_batching: { preferred_batch_size: 4 preferred_batch_size: 8 max_queue_delay_microseconds: 100 }
      model_warmup { name: "zeros" batch_size: 8 count: 2
        inputs [ { key: "data_0" value < data_type: TYPE_FP32 dims: [3, 224, 224] zero_data: true > },
                 { key: "mask" value { data_type: TYPE_BOOL dims: 4 random_data: true } } ] }
      model_warmup { name: "cat" batch_size: 1 inputs { key: "data_0" value { data_type: TYPE_FP32 dims: [3, 224, 224] input_data_file: 'cat.raw' } } }
      parameters: [ { key: "intra_op_thread_count" value { string_value: "1" } }, { key: "cudnn_conv_algo_search" value { string_value: "1" } } ]`;
    const strip = (config: ModelConfig) => ({
      ...config,
      inputs: config.inputs.map(({ line: _, ...tensor }) => tensor),
      outputs: config.outputs.map(({ line: _, ...tensor }) => tensor),
    });
    assert.deepEqual(strip(parseModelConfig(compact, FILE)), strip(parseModelConfig(DENSENET, FILE)));
  });

  it('every data type, TYPE_STRING as BYTES', () => {
    const types = ['BOOL', 'UINT8', 'UINT16', 'UINT32', 'UINT64', 'INT8', 'INT16', 'INT32', 'INT64', 'FP16', 'FP32', 'FP64', 'STRING'];
    const text = types.map((t) => `input { name: "${t}" data_type: TYPE_${t} dims: 1 }`).join('\n');
    assert.deepEqual(
      parseModelConfig(text, FILE).inputs.map((input) => input.dataType),
      ['BOOL', 'UINT8', 'UINT16', 'UINT32', 'UINT64', 'INT8', 'INT16', 'INT32', 'INT64', 'FP16', 'FP32', 'FP64', 'BYTES'],
    );
  });

  it('a tensor\'s line is its field\'s, or in a list its element\'s', () => {
    const config = parseModelConfig('input\n{ name: "a" data_type: TYPE_FP32 dims: 1 }\ninput [\n  { name: "b" data_type: TYPE_FP32 dims: 1 },\n  { name: "c" data_type: TYPE_FP32 dims: 1 } ]', FILE);
    assert.deepEqual(config.inputs.map((input) => [input.name, input.line]), [['a', 1], ['b', 4], ['c', 5]]);
  });

  it('max_batch_size 0: the dims are the full shape; optional false is kept', () => {
    const config = parseModelConfig('max_batch_size: 0 input { name: "x" data_type: TYPE_INT64 dims: [1, -1] optional: false }', FILE);
    assert.equal(config.maxBatchSize, 0);
    assert.deepEqual(config.inputs, [{ name: 'x', dataType: 'INT64', dims: [1, -1], optional: false, line: 1 }]);
  });

  it('dynamic batching before max_batch_size, with no preferred sizes and no delay', () => {
    const config = parseModelConfig('dynamic_batching { }\nmax_batch_size: 16', FILE);
    assert.deepEqual(config.dynamicBatching, { preferredBatchSizes: [] });
  });

  it('dynamic batching with max_batch_size not written: sizes are checked by whoever fills it in', () => {
    assert.deepEqual(parseModelConfig('dynamic_batching { preferred_batch_size: 64 }', FILE).dynamicBatching, { preferredBatchSizes: [64] });
  });

  const policies: Array<[string, ModelConfig['versionPolicy']]> = [
    ['version_policy: { latest { num_versions: 2 } }', { kind: 'latest', numVersions: 2 }],
    ['version_policy: { all { } }', { kind: 'all' }],
    ['version_policy: { all: { } }', { kind: 'all' }],
    ['version_policy { specific { versions: 4 } }', { kind: 'specific', versions: [4] }],
    ['version_policy { }', { kind: 'latest', numVersions: 1 }],
  ];
  for (const [text, policy] of policies) {
    it(`${text}: ${JSON.stringify(policy)}`, () => assert.deepEqual(parseModelConfig(text, FILE).versionPolicy, policy));
  }

  const groups: Array<[string, ModelConfig['instanceGroups'][number]]> = [
    ['instance_group { kind: KIND_AUTO }', { kind: 'auto', gpus: [] }],
    ['instance_group { count: 3 }', { count: 3, kind: 'auto', gpus: [] }],
    ['instance_group { kind: KIND_AUTO gpus: [2] }', { kind: 'auto', gpus: [2] }],
    ['instance_group [ { kind: KIND_GPU } ]', { kind: 'gpu', gpus: [] }],
  ];
  for (const [text, group] of groups) {
    it(`${text}: ${JSON.stringify(group)}`, () => assert.deepEqual(parseModelConfig(text, FILE).instanceGroups, [group]));
  }

  it('warmup: count 0 runs once, as in Triton; scalar warmup inputs have no dims', () => {
    const config = parseModelConfig('model_warmup { name: "s" batch_size: 1 count: 0 inputs { key: "x" value { data_type: TYPE_INT32 zero_data: true } } }', FILE);
    assert.deepEqual(config.warmup, [{ name: 's', batchSize: 1, count: 1, inputs: { x: { dataType: 'INT32', dims: [], source: 'zero' } } }]);
  });

  it('parameters: raw strings, an empty value where string_value is not written, keys not judged here', () => {
    const config = parseModelConfig('parameters { key: "a b" value { string_value: "x\\ty" } }\nparameters { key: "EMPTY" value { } }', FILE);
    assert.deepEqual(config.parameters, { 'a b': 'x\ty', EMPTY: '' });
  });

  it('parameters: batch_delay chooses the batch delay policy (BATCH_DELAY for this model), kept among the raw strings', () => {
    const fixed = parseModelConfig('parameters { key: "batch_delay" value { string_value: "fixed" } }', FILE);
    assert.equal(fixed.batchDelay, 'fixed');
    assert.deepEqual(fixed.parameters, { batch_delay: 'fixed' });
    assert.equal(parseModelConfig('parameters { key: "batch_delay" value { string_value: "ADAPTIVE" } }', FILE).batchDelay, 'adaptive');
    assert.equal('batchDelay' in parseModelConfig('name: "m"', FILE), false, 'unwritten: the environment decides');
  });

  it('map keys are kept as own properties, __proto__ included', () => {
    const config = parseModelConfig(
      'parameters { key: "__proto__" value { string_value: "p" } }\n' +
        'model_warmup { name: "s" batch_size: 1 inputs { key: "__proto__" value { data_type: TYPE_FP32 dims: 1 zero_data: true } } }',
      FILE,
    );
    assert.deepEqual(Object.entries(config.parameters), [['__proto__', 'p']]);
    assert.deepEqual(Object.keys(config.warmup[0].inputs), ['__proto__']);
    assert.equal(Object.getPrototypeOf(config.parameters), Object.prototype);
  });

  it('booleans in every form protobuf accepts', () => {
    const text = ['true', 'True', 't', '1', 'false', 'False', 'f', '0']
      .map((b, i) => `input { name: "x${i}" data_type: TYPE_FP32 dims: 1 optional: ${b} }`)
      .join('\n');
    assert.deepEqual(parseModelConfig(text, FILE).inputs.map((input) => input.optional), [true, true, true, true, false, false, false, false]);
  });
});

describe('parseModelConfig refuses, naming the file, line and field', () => {
  const tensor = 'name: "x" data_type: TYPE_FP32 dims: 1';
  const refusals: Array<[string, string, number, string | undefined, string]> = [
    // title, config.pbtxt, line, field, what the message says is wrong (its end)
    ['an unknown top-level field', 'name: "m"\nmax_batch: 8', 2, 'max_batch', 'unknown field (expected one of: name, platform, backend, max_batch_size, input, output, dynamic_batching, instance_group, version_policy, default_model_filename, model_warmup, parameters)'],
    ['an unknown nested field', `input {\n  ${tensor}\n  shape: [1]\n}`, 3, 'input.shape', 'unknown field (expected one of: name, data_type, dims, optional)'],
    ['a misspelt field in dynamic_batching', 'dynamic_batching {\n  max_queue_delay_microsecond: 100\n}', 2, 'dynamic_batching.max_queue_delay_microsecond', 'unknown field (expected one of: preferred_batch_size, max_queue_delay_microseconds)'],
    ['optional on an output', `output { ${tensor} optional: true }`, 1, 'output.optional', 'unknown field (expected one of: name, data_type, dims)'],
    ['a field inside all { }', 'version_policy { all { num_versions: 1 } }', 1, 'version_policy.all.num_versions', 'unknown field (this message takes none)'],
    ['a non-repeated field given twice', 'max_batch_size: 8\nname: "m"\nmax_batch_size: 16', 3, 'max_batch_size', 'given twice (first at line 1); it is not a repeated field'],
    ['a nested non-repeated field given twice', `input {\n  ${tensor}\n  name: "y"\n}`, 3, 'input.name', 'given twice (first at line 2); it is not a repeated field'],
    ['dynamic_batching given twice', 'max_batch_size: 8\ndynamic_batching { }\ndynamic_batching { }', 3, 'dynamic_batching', 'given twice (first at line 2); it is not a repeated field'],
    ['a list for a non-repeated field', 'max_batch_size: [8]', 1, 'max_batch_size', 'not a repeated field: give one value, not a list'],
    ['a string for an integer', 'max_batch_size: "8"', 1, 'max_batch_size', 'expected an integer, found the string "8"'],
    ['a float for an integer', 'max_batch_size: 8.0', 1, 'max_batch_size', 'expected an integer, found 8.0'],
    ['an integer for a string', 'name: 3', 1, 'name', 'expected a quoted string, found 3'],
    ['an identifier for a string', 'name: densenet', 1, 'name', 'expected a quoted string, found densenet'],
    ['a message for a scalar', 'name { }', 1, 'name', 'expected a quoted string, found a message { ... }'],
    ['a scalar for a message', 'input: 3', 1, 'input', 'expected a message { ... }, found 3'],
    ['a quoted enum', `input { name: "x" data_type: "TYPE_FP32" dims: 1 }`, 1, 'input.data_type', 'expected one of TYPE_BOOL, TYPE_UINT8, TYPE_UINT16, TYPE_UINT32, TYPE_UINT64, TYPE_INT8, TYPE_INT16, TYPE_INT32, TYPE_INT64, TYPE_FP16, TYPE_FP32, TYPE_FP64, TYPE_STRING, found the string "TYPE_FP32"'],
    ['a bad enum', 'input {\n  name: "x"\n  data_type: TYPE_FLOAT32\n  dims: 1\n}', 3, 'input.data_type', 'expected one of TYPE_BOOL, TYPE_UINT8, TYPE_UINT16, TYPE_UINT32, TYPE_UINT64, TYPE_INT8, TYPE_INT16, TYPE_INT32, TYPE_INT64, TYPE_FP16, TYPE_FP32, TYPE_FP64, TYPE_STRING, found TYPE_FLOAT32'],
    ['an enum as its number', 'input { name: "x" data_type: 11 dims: 1 }', 1, 'input.data_type', 'found 11'],
    ['TYPE_BF16', 'output {\n  name: "y"\n  data_type: TYPE_BF16\n  dims: 1\n}', 3, 'output.data_type', 'TYPE_BF16 is not supported: onnxruntime-node has no bfloat16 tensors'],
    ['TYPE_INVALID', 'input { name: "x" data_type: TYPE_INVALID dims: 1 }', 1, 'input.data_type', 'TYPE_INVALID is not a data type'],
    ['a bad boolean', `input { ${tensor} optional: yes }`, 1, 'input.optional', 'expected true or false, found yes'],
    ['KIND_MODEL', 'instance_group [\n  { count: 1 kind: KIND_MODEL }\n]', 2, 'instance_group.kind', 'KIND_MODEL is not supported: tickserve places every instance itself, on a CPU or a GPU'],
    ['a bad instance kind', 'instance_group { kind: KIND_TPU }', 1, 'instance_group.kind', 'expected one of KIND_CPU, KIND_GPU, KIND_AUTO, found KIND_TPU'],
    ['instance count 0', 'instance_group { count: 0 }', 1, 'instance_group.count', '0 is out of range: it must be from 1 to 2147483647'],
    ['GPUs with KIND_CPU', 'instance_group {\n  kind: KIND_CPU\n  gpus: [0]\n}', 3, 'instance_group.gpus', 'given with kind KIND_CPU; GPUs are for KIND_GPU or KIND_AUTO'],
    ['a negative GPU', 'instance_group { gpus: -1 }', 1, 'instance_group.gpus', '-1 is out of range: it must be from 0 to 2147483647'],
    ['instance_group rate_limiter', 'instance_group { rate_limiter { priority: 1 } }', 1, 'instance_group.rate_limiter', "not supported by tickserve (Triton's field, outside the subset tickserve serves)"],
    ['sequence_batching', 'name: "m"\nsequence_batching {\n  max_sequence_idle_microseconds: 5000000\n}', 2, 'sequence_batching', "not supported by tickserve (Triton's field, outside the subset tickserve serves)"],
    ['ensemble_scheduling', 'ensemble_scheduling { step [ ] }', 1, 'ensemble_scheduling', "not supported by tickserve (Triton's field, outside the subset tickserve serves)"],
    ['optimization', 'optimization { execution_accelerators { gpu_execution_accelerator : [ { name : "tensorrt" } ] } }', 1, 'optimization', "not supported by tickserve (Triton's field, outside the subset tickserve serves)"],
    ['response_cache', 'response_cache { enable: true }', 1, 'response_cache', "not supported by tickserve (Triton's field, outside the subset tickserve serves)"],
    ['input reshape', `input { ${tensor} reshape: { shape: [ ] } }`, 1, 'input.reshape', "not supported by tickserve (Triton's field, outside the subset tickserve serves)"],
    ['preserve_ordering', 'max_batch_size: 8\ndynamic_batching {\n  preserve_ordering: true\n}', 3, 'dynamic_batching.preserve_ordering', "not supported by tickserve (Triton's field, outside the subset tickserve serves)"],
    ['priority_levels', 'dynamic_batching { priority_levels: 2 }', 1, 'dynamic_batching.priority_levels', "not supported by tickserve (Triton's field, outside the subset tickserve serves)"],
    ['default_priority_level', 'dynamic_batching { default_priority_level: 1 }', 1, 'dynamic_batching.default_priority_level', "not supported by tickserve (Triton's field, outside the subset tickserve serves)"],
    ['platform tensorrt_plan', 'name: "m"\nplatform: "tensorrt_plan"', 2, 'platform', '"tensorrt_plan" is not served; tickserve serves "onnxruntime_onnx" only'],
    ['backend python', 'backend: "python"', 1, 'backend', '"python" is not served; tickserve serves "onnxruntime" only'],
    ['default_model_filename ../x.onnx', 'default_model_filename: "../x.onnx"', 1, 'default_model_filename', `"../x.onnx" is not a plain file name (no '/', '\\' or '..', not empty)`],
    ['default_model_filename with a slash', 'default_model_filename: "sub/model.onnx"', 1, 'default_model_filename', `"sub/model.onnx" is not a plain file name (no '/', '\\' or '..', not empty)`],
    ['default_model_filename with a backslash', String.raw`default_model_filename: "sub\\model.onnx"`, 1, 'default_model_filename', `"sub\\\\model.onnx" is not a plain file name (no '/', '\\' or '..', not empty)`],
    ['default_model_filename ..', 'default_model_filename: ".."', 1, 'default_model_filename', `".." is not a plain file name (no '/', '\\' or '..', not empty)`],
    ['default_model_filename empty', 'default_model_filename: ""', 1, 'default_model_filename', `"" is not a plain file name (no '/', '\\' or '..', not empty)`],
    ['max_batch_size negative', 'max_batch_size: -1', 1, 'max_batch_size', '-1 is out of range: it must be from 0 to 2147483647'],
    ['max_batch_size beyond int32', 'max_batch_size: 2147483648', 1, 'max_batch_size', '2147483648 is out of range: it must be from 0 to 2147483647'],
    ['an integer beyond 2^53', 'dynamic_batching { max_queue_delay_microseconds: 9007199254740993 }', 1, 'dynamic_batching.max_queue_delay_microseconds', '9007199254740993 is out of range: it must be >= 0'],
    ['dims 0', 'input {\n  name: "x"\n  data_type: TYPE_FP32\n  dims: [ 3,\n    0 ]\n}', 5, 'input.dims', '0 is not a dimension: each must be >= 1, or -1 for a variable one'],
    ['dims -2', `output { name: "y" data_type: TYPE_FP32 dims: -2 }`, 1, 'output.dims', '-2 is out of range: it must be >= -1'],
    ['dims missing', 'input {\n  name: "x"\n  data_type: TYPE_FP32\n}', 1, 'input.dims', 'missing (it must be written; -1 marks a variable dimension)'],
    ['dims an empty list', 'input {\n  name: "x"\n  data_type: TYPE_FP32\n  dims: [ ]\n}', 4, 'input.dims', 'an empty list: a tensor has at least one dimension (-1 marks a variable one)'],
    ['an input without a name', 'input { data_type: TYPE_FP32 dims: 1 }', 1, 'input.name', 'missing (it must be written)'],
    ['an input with an empty name', 'input { name: "" data_type: TYPE_FP32 dims: 1 }', 1, 'input.name', 'must not be empty'],
    ['an output without a data_type', 'output [\n  { name: "y" dims: 1 }\n]', 2, 'output.data_type', 'missing (it must be written)'],
    ['two inputs with one name', `input { ${tensor} }\ninput { ${tensor} }`, 2, 'input.name', '"x" is already an input (line 1)'],
    ['a preferred size over max_batch_size', 'max_batch_size: 8\ndynamic_batching {\n  preferred_batch_size: [ 4, 16 ]\n}', 3, 'dynamic_batching.preferred_batch_size', '16 is larger than max_batch_size (8)'],
    ['a preferred size over max_batch_size written after it', 'dynamic_batching { preferred_batch_size: 16 }\nmax_batch_size: 8', 1, 'dynamic_batching.preferred_batch_size', '16 is larger than max_batch_size (8)'],
    ['a preferred size of 0', 'max_batch_size: 8 dynamic_batching { preferred_batch_size: 0 }', 1, 'dynamic_batching.preferred_batch_size', '0 is out of range: it must be from 1 to 2147483647'],
    ['a preferred size given twice', 'max_batch_size: 8 dynamic_batching { preferred_batch_size: [4, 4] }', 1, 'dynamic_batching.preferred_batch_size', '4 is given twice'],
    ['dynamic_batching with max_batch_size 0', 'max_batch_size: 0\n\ndynamic_batching { }', 3, 'dynamic_batching', 'needs max_batch_size > 0 (max_batch_size: 0 at line 1 means the model does not batch)'],
    ['two version policies', 'version_policy {\n  all { }\n  latest { num_versions: 1 }\n}', 3, 'version_policy.latest', 'only one of latest, all, specific may be given (all is at line 2)'],
    ['latest without num_versions', 'version_policy { latest { } }', 1, 'version_policy.latest.num_versions', 'missing (it must be written)'],
    ['latest 0 versions', 'version_policy { latest { num_versions: 0 } }', 1, 'version_policy.latest.num_versions', '0 is out of range: it must be from 1 to 4294967295'],
    ['specific with no versions', 'version_policy {\n  specific { }\n}', 2, 'version_policy.specific.versions', 'missing (specific needs at least one version)'],
    ['specific version 0', 'version_policy { specific { versions: [1, 0] } }', 1, 'version_policy.specific.versions', '0 is out of range: it must be >= 1'],
    ['specific version given twice', 'version_policy { specific { versions: [1, 2] versions: 1 } }', 1, 'version_policy.specific.versions', '1 is given twice'],
    ['a warmup sample without a name', 'model_warmup { batch_size: 1 }', 1, 'model_warmup.name', 'missing (it must be written)'],
    ['a warmup sample without batch_size', 'model_warmup {\n  name: "s"\n}', 1, 'model_warmup.batch_size', 'missing (it must be written)'],
    ['a warmup batch of 0', 'model_warmup { name: "s" batch_size: 0 }', 1, 'model_warmup.batch_size', '0 is out of range: it must be from 1 to 4294967295'],
    ['a warmup batch over max_batch_size', 'max_batch_size: 4\nmodel_warmup { name: "s" batch_size: 8 }', 2, 'model_warmup.batch_size', '8 is larger than max_batch_size (4)'],
    ['a warmup input without data', 'model_warmup { name: "s" batch_size: 1\n  inputs { key: "x" value {\n    data_type: TYPE_FP32 } } }', 2, 'model_warmup.inputs.value', 'needs one of zero_data, random_data, input_data_file'],
    ['a warmup input with two sources', 'model_warmup { name: "s" batch_size: 1 inputs { key: "x" value {\n  data_type: TYPE_FP32 zero_data: true\n  random_data: true } } }', 3, 'model_warmup.inputs.value.random_data', 'only one of zero_data, random_data, input_data_file may be given (zero_data is at line 2)'],
    ['zero_data: false', 'model_warmup { name: "s" batch_size: 1 inputs { key: "x" value { data_type: TYPE_FP32 zero_data: false } } }', 1, 'model_warmup.inputs.value.zero_data', 'must be true where given (it chooses the data)'],
    ['a warmup file outside warmup/', 'model_warmup { name: "s" batch_size: 1 inputs { key: "x" value { data_type: TYPE_FP32 input_data_file: "../../etc/passwd" } } }', 1, 'model_warmup.inputs.value.input_data_file', `"../../etc/passwd" is not a plain file name (no '/', '\\' or '..', not empty)`],
    ['a variable warmup dimension', 'model_warmup { name: "s" batch_size: 1 inputs { key: "x" value { data_type: TYPE_FP32 dims: [-1] zero_data: true } } }', 1, 'model_warmup.inputs.value.dims', '-1 is not a dimension: each must be >= 1 (a warmup sample has a concrete shape)'],
    ['a warmup input without a data_type', 'model_warmup { name: "s" batch_size: 1 inputs { key: "x" value { zero_data: true } } }', 1, 'model_warmup.inputs.value.data_type', 'missing (it must be written)'],
    ['a warmup input given twice', 'model_warmup { name: "s" batch_size: 1\n  inputs { key: "x" value { data_type: TYPE_FP32 zero_data: true } }\n  inputs { key: "x" value { data_type: TYPE_FP32 zero_data: true } } }', 3, 'model_warmup.inputs.key', '"x" is given twice (first at line 2)'],
    ['a map entry without a key', 'parameters { value { string_value: "1" } }', 1, 'parameters.key', 'missing (it must be written)'],
    ['a map entry without a value', 'parameters {\n  key: "k"\n}', 1, 'parameters.value', 'missing (it must be written)'],
    ['a parameter given twice', 'parameters { key: "k" value { string_value: "1" } }\nparameters { key: "k" value { string_value: "2" } }', 2, 'parameters.key', '"k" is given twice (first at line 1)'],
    ['a parameter that is not a string', 'parameters { key: "k" value { string_value: 1 } }', 1, 'parameters.value.string_value', 'expected a quoted string, found 1'],
    ['a batch_delay that is neither policy', 'name: "m"\nparameters { key: "batch_delay" value { string_value: "soon" } }', 2, 'parameters.value.string_value', 'batch_delay must be one of adaptive, fixed, found "soon"'],
    ['a batch_delay without a value', 'parameters {\n  key: "batch_delay"\n  value { }\n}', 3, 'parameters.value.string_value', 'batch_delay needs a value: one of adaptive, fixed'],
    ['a parameter of another kind', 'parameters { key: "k" value { int_value: 1 } }', 1, 'parameters.value.int_value', 'unknown field (expected one of: string_value)'],
    ['a syntax error: an unbalanced brace', 'name: "m"\ninput {\n  name: "x"\n  data_type: TYPE_FP32\n', 5, 'input', "syntax error at column 1: expected '}' to close the '{' opened on line 2, found end of file"],
    ['a syntax error: an unterminated string', 'name: "m"\nplatform: "onnxruntime_onnx\nmax_batch_size: 8', 2, 'platform', 'syntax error at column 11: expected a closing " before the end of the line, found end of line'],
    ['a syntax error outside any field', 'name: "m"\n}', 2, undefined, "syntax error at column 1: expected a field name, found '}'"],
  ];
  for (const [title, text, line, field, problem] of refusals) {
    it(title, () => {
      assert.throws(() => parseModelConfig(text, FILE), (error: unknown) => {
        assert.ok(error instanceof ModelConfigError, String(error));
        assert.equal(error.code, 'TICKSERVE_MODEL_CONFIG');
        assert.deepEqual({ file: error.file, line: error.line, field: error.field }, { file: FILE, line, field });
        const where = field === undefined ? '' : `${field}: `;
        assert.ok(error.message.startsWith(`${FILE}:${line}: ${where}`), error.message);
        assert.ok(error.message.endsWith(problem), `${error.message}\ndoes not end with\n${problem}`);
        return true;
      });
    });
  }

  it('a syntax error keeps the parser\'s error, with its column, as the cause', () => {
    assert.throws(() => parseModelConfig('a: "x', FILE), (error: unknown) => {
      assert.ok(error instanceof ModelConfigError);
      assert.ok(error.cause instanceof PbtxtSyntaxError);
      assert.equal(error.cause.column, 4);
      return true;
    });
  });
});

describe('instance_group counts as Triton counts them', () => {
  const groups = (text: string) => parseModelConfig(text, 'config.pbtxt').instanceGroups ?? [];
  const defaults = { workers: 3, gpus: 2 };

  it('without instance_group: WORKERS', () => {
    assert.deepEqual(instanceWorkers([], 'cpu', defaults), { workers: 3, deviceIds: [] });
  });

  it('a group without count is one instance (not WORKERS); groups add up', () => {
    assert.deepEqual(instanceWorkers(groups('instance_group [{ kind: KIND_CPU }]'), 'cpu', defaults).workers, 1);
    assert.deepEqual(instanceWorkers(groups('instance_group [{ count: 2 }, { kind: KIND_CPU }]'), 'cpu', defaults).workers, 3);
  });

  it('on GPUs the count is per GPU: each listed one, else each visible one; each worker\'s GPU by its id', () => {
    assert.deepEqual(instanceWorkers(groups('instance_group [{ count: 2 kind: KIND_GPU gpus: [0, 1] }]'), 'cuda', defaults), { workers: 4, deviceIds: [0, 0, 1, 1] });
    assert.deepEqual(
      instanceWorkers(groups('instance_group [{ count: 1 kind: KIND_GPU gpus: [0] }, { count: 3 kind: KIND_GPU gpus: [1] }]'), 'cuda', defaults),
      { workers: 4, deviceIds: [0, 1, 1, 1] },
    );
    assert.deepEqual(instanceWorkers(groups('instance_group [{ kind: KIND_GPU }]'), 'cuda', defaults), { workers: 2, deviceIds: [0, 1] });
  });
});
