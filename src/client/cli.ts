// `npm run client -- <command> [options]`: one Predict call, or a CSV feed replayed through StreamPredict
// (inference.ModelService); the model repository, a model's metadata, and one ModelInfer call
// (inference.GRPCInferenceService, the Open Inference Protocol). USAGE says what each command does and prints.
import { status, type ServiceError } from '@grpc/grpc-js';
import * as hdr from 'hdr-histogram-js';
import { accessSync, constants, createReadStream, readFileSync, statSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { RingQueue } from '../batching/queue';
import { integerValue, numberValue, runCli, usageErrors, UsageError } from './args';
import { headerProblem, type Headers } from './channel';
import { StreamEndedEarlyError, TickClient, type PredictInput } from './index';
import { InferenceClient, type InferInput, type ModelIndexEntry } from './v2';
import { inputsFromJson, outputToJson } from './v2-json';

export const USAGE = `usage: npm run client -- <command> [options]

  predict --features 0.1,0.2,... [--model NAME] [--batch-size N] [--model-version V] [--deadline-ms MS]
      One Predict call of N rows (default 1) of features, row-major, with a deadline (default 5000 ms). Prints the
      predictions, one output row a line, comma-separated.

  replay --csv FILE [--rate N] [--model NAME] [--model-version V]
      Streams each CSV row (features only; blank lines skipped; a first line that is not numbers is a header)
      through one StreamPredict call, N rows a second (default 0: as fast as the server takes them). Prints one
      line per row, in input order: its predictions comma-separated, or ERROR <CODE>: <message> (a row that is not
      numbers gets INVALID_ARGUMENT without being sent). A summary goes to stderr: rows, answered, errors, not
      answered, and the latency from each row's send to its answer.

  The Open Inference Protocol (KServe v2, inference.GRPCInferenceService):

  models [--ready] [--deadline-ms MS]
      The model repository: one line per model version, NAME VERSION STATE REASON (--ready: only those ready).

  load NAME [--deadline-ms MS]
  unload NAME [--deadline-ms MS]
      Loads (or reloads) or unloads a model, waiting up to 60000 ms by default. Prints "loaded NAME" or "unloaded NAME".

  metadata NAME [--model-version V] [--deadline-ms MS]
      The model's metadata as JSON: versions, platform, inputs and outputs (name, datatype, shape; -1: variable).

  infer NAME --inputs FILE|- [--model-version V] [--deadline-ms MS]
      One ModelInfer call with the inputs in FILE (-: stdin), as JSON:
        [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}]
      data flat or nested, row-major; "NaN", "Infinity", "-Infinity" as strings; INT64 and UINT64 as numbers or
      decimal strings; BOOL as true/false; BYTES as strings. Prints the outputs as JSON, one array on one line:
      [{"name", "datatype", "shape", "data"}], INT64 and UINT64 as numbers when safe integers, else strings.

  options of every command:
    --target HOST:PORT   the server (default 127.0.0.1:50051; or dns:///NAME:PORT, ipv4:A:P,B:P)
    --header KEY=VALUE   send a gRPC metadata header with every call (repeatable)
    --gzip               compress every message
    -h, --help           this text

  The deadline of every call but load and unload defaults to 5000 ms.

  exit status: 0 done; 1 a call failed, or the stream ended before every row was answered; 2 a bad command line`;

const DEFAULT_TARGET = '127.0.0.1:50051';
const DEFAULT_DEADLINE_MS = 5000;
const DEFAULT_LOAD_DEADLINE_MS = 60_000;

interface Connection {
  target: string;
  gzip: boolean;
  headers: Headers;
}

export type Command =
  | { command: 'help' }
  | ({ command: 'predict'; features: number[]; batchSize: number; modelName: string; modelVersion: string; deadlineMs: number } & Connection)
  | ({ command: 'replay'; csv: string; rate: number; modelName: string; modelVersion: string } & Connection)
  | ({ command: 'models'; readyOnly: boolean; deadlineMs: number } & Connection)
  | ({ command: 'load' | 'unload'; model: string; deadlineMs: number } & Connection)
  | ({ command: 'metadata'; model: string; modelVersion: string; deadlineMs: number } & Connection)
  | ({ command: 'infer'; model: string; modelVersion: string; inputs: InferInput[]; deadlineMs: number } & Connection);

type CommandName = Exclude<Command['command'], 'help'>;

const OPTIONS = {
  target: { type: 'string' },
  header: { type: 'string', multiple: true },
  gzip: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
  features: { type: 'string' },
  'batch-size': { type: 'string' },
  'model-version': { type: 'string' },
  model: { type: 'string' },
  'deadline-ms': { type: 'string' },
  csv: { type: 'string' },
  rate: { type: 'string' },
  ready: { type: 'boolean' },
  inputs: { type: 'string' },
} as const;

const CONNECTION_OPTIONS = ['target', 'header', 'gzip'];

const COMMAND_OPTIONS: Record<CommandName, ReadonlySet<string>> = {
  predict: new Set([...CONNECTION_OPTIONS, 'features', 'batch-size', 'model', 'model-version', 'deadline-ms']),
  replay: new Set([...CONNECTION_OPTIONS, 'csv', 'rate', 'model', 'model-version']),
  models: new Set([...CONNECTION_OPTIONS, 'ready', 'deadline-ms']),
  load: new Set([...CONNECTION_OPTIONS, 'deadline-ms']),
  unload: new Set([...CONNECTION_OPTIONS, 'deadline-ms']),
  metadata: new Set([...CONNECTION_OPTIONS, 'model-version', 'deadline-ms']),
  infer: new Set([...CONNECTION_OPTIONS, 'inputs', 'model-version', 'deadline-ms']),
};

/** The commands that take a model NAME. */
const NAMED = new Set<CommandName>(['load', 'unload', 'metadata', 'infer']);

const COMMANDS = Object.keys(COMMAND_OPTIONS) as CommandName[];
const isCommand = (name: string): name is CommandName => (COMMANDS as string[]).includes(name);
const COMMAND_LIST = `${COMMANDS.slice(0, -1).join(', ')} or ${COMMANDS[COMMANDS.length - 1]}`;

/** The command line, checked whole before anything connects; a UsageError says what is wrong with it. */
export function parseCommandLine(args: string[]): Command {
  const { values, positionals } = usageErrors(() => parseArgs({ args, options: OPTIONS, allowPositionals: true, strict: true }));
  if (values.help) return { command: 'help' };
  const [command, ...rest] = positionals;
  if (command === undefined) throw new UsageError(`no command: ${COMMAND_LIST}`);
  if (!isCommand(command)) throw new UsageError(`unknown command "${command}": ${COMMAND_LIST}`);
  const [model, ...extra] = NAMED.has(command) ? rest : [undefined, ...rest];
  if (NAMED.has(command) && model === undefined) throw new UsageError(`${command} needs a model NAME`);
  if (extra.length > 0) throw new UsageError(`unexpected argument "${extra[0]}"`);
  for (const name of Object.keys(values)) {
    if (!COMMAND_OPTIONS[command].has(name)) throw new UsageError(`--${name} is not an option of ${command}`);
  }
  const connection = { target: values.target ?? DEFAULT_TARGET, gzip: values.gzip ?? false, headers: headerValues(values.header ?? []) };
  const deadline = (fallback: number) => (values['deadline-ms'] === undefined ? fallback : numberValue('deadline-ms', values['deadline-ms'], { above: 0 }));
  switch (command) {
    case 'predict': {
      if (values.features === undefined) throw new UsageError('predict needs --features 0.1,0.2,...');
      const features = parseFeatures(values.features);
      if (features instanceof Error) throw new UsageError(`--features: ${features.message}`);
      return {
        command,
        ...connection,
        features,
        batchSize: values['batch-size'] === undefined ? 1 : integerValue('batch-size', values['batch-size'], 1),
        modelName: values.model ?? '',
        modelVersion: values['model-version'] ?? '',
        deadlineMs: deadline(DEFAULT_DEADLINE_MS),
      };
    }
    case 'replay':
      if (values.csv === undefined) throw new UsageError('replay needs --csv FILE');
      checkReadableFile('csv', values.csv);
      return {
        command,
        ...connection,
        csv: values.csv,
        rate: values.rate === undefined ? 0 : numberValue('rate', values.rate, { atLeast: 0 }),
        modelName: values.model ?? '',
        modelVersion: values['model-version'] ?? '',
      };
    case 'models':
      return { command, ...connection, readyOnly: values.ready ?? false, deadlineMs: deadline(DEFAULT_DEADLINE_MS) };
    case 'load':
    case 'unload':
      return { command, ...connection, model: model!, deadlineMs: deadline(DEFAULT_LOAD_DEADLINE_MS) };
    case 'metadata':
      return { command, ...connection, model: model!, modelVersion: values['model-version'] ?? '', deadlineMs: deadline(DEFAULT_DEADLINE_MS) };
    case 'infer':
      if (values.inputs === undefined) throw new UsageError('infer needs --inputs FILE (or - for stdin)');
      return {
        command,
        ...connection,
        model: model!,
        modelVersion: values['model-version'] ?? '',
        inputs: readInputs(values.inputs),
        deadlineMs: deadline(DEFAULT_DEADLINE_MS),
      };
  }
}

/** The --header KEY=VALUE options as headers; a key given twice, or one gRPC cannot send, is a usage error. */
function headerValues(options: string[]): Headers {
  const headers: Record<string, string> = {};
  for (const option of options) {
    const equals = option.indexOf('=');
    if (equals <= 0) throw new UsageError(`--header "${option}": expected KEY=VALUE`);
    const key = option.slice(0, equals).toLowerCase();
    const value = option.slice(equals + 1);
    const problem = headerProblem(key, value);
    if (problem !== null) throw new UsageError(`--${problem}`);
    if (Object.prototype.hasOwnProperty.call(headers, key)) throw new UsageError(`--header "${key}" given twice`);
    headers[key] = value;
  }
  return headers;
}

function checkReadableFile(option: string, file: string): void {
  try {
    accessSync(file, constants.R_OK);
  } catch (error) {
    throw new UsageError(`--${option} ${file}: cannot read it (${(error as NodeJS.ErrnoException).code})`);
  }
  // A pipe too (`--csv <(zcat feed.csv.gz)`, /dev/stdin): anything that reads as a stream of bytes, not a folder.
  const stats = statSync(file);
  if (!stats.isFile() && !stats.isFIFO() && !stats.isCharacterDevice()) throw new UsageError(`--${option} ${file}: not a file`);
}

/** The inputs in `file` (- for stdin), checked whole. */
function readInputs(file: string): InferInput[] {
  if (file !== '-') checkReadableFile('inputs', file);
  try {
    return inputsFromJson(readFileSync(file === '-' ? 0 : file, 'utf8'));
  } catch (error) {
    throw new UsageError(`--inputs ${file === '-' ? 'stdin' : file}: ${(error as Error).message}`);
  }
}

/** Comma-separated numbers, or an Error naming the first value that is not one. */
function parseFeatures(text: string): number[] | Error {
  const values = text.split(',');
  const numbers = new Array<number>(values.length);
  for (let i = 0; i < values.length; i++) {
    const value = values[i].trim();
    numbers[i] = value === '' ? NaN : Number(value);
    if (!Number.isFinite(numbers[i])) return new Error(`value ${i + 1} ("${value}") is not a number`);
  }
  return numbers;
}

function formatRows(predictions: number[], rows: number): string {
  const width = predictions.length / rows;
  const lines: string[] = [];
  for (let r = 0; r < rows; r++) lines.push(predictions.slice(r * width, (r + 1) * width).join(','));
  return lines.join('\n');
}

/** One data row of a CSV feed: its features, or why it has none. */
type CsvRow = { features: number[] } | { invalid: string };

/** The CSV's data rows, in order: blank lines are skipped, and a first line that is not numbers is a header. */
async function* csvRows(file: string): AsyncGenerator<CsvRow> {
  const lines = createInterface({ input: createReadStream(file), crlfDelay: Infinity });
  let lineNumber = 0;
  for await (const line of lines) {
    lineNumber++;
    if (line.trim() === '') continue;
    const features = parseFeatures(line);
    if (features instanceof Error) {
      if (lineNumber === 1) continue; // the header
      yield { invalid: `${file}:${lineNumber}: ${features.message}` };
    } else {
      yield { features };
    }
  }
}

/**
 * One replay's output: a line per CSV row, in row order. Answers come back in the order their rows were sent; a row
 * that is not numbers is never sent, so its line waits in `rejected` until every row before it has one.
 */
class ReplayOutput {
  /** Rows with their line printed: always the first rows of the feed. */
  printed = 0;
  errors = 0;
  /** Rows read from the CSV so far. */
  rowsRead = 0;
  readonly latencyUs = hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 600_000_000, numberOfSignificantValueDigits: 3 });
  private readonly rejected = new RingQueue<{ row: number; line: string }>(16);
  private readonly out: string[] = [];

  /** The rows of `file` that are numbers, paced at `rate` a second if above 0; the others are set aside here. */
  async *inputs(file: string, rate: number, modelName = '', modelVersion = ''): AsyncGenerator<PredictInput> {
    const started = performance.now();
    let sent = 0;
    for await (const row of csvRows(file)) {
      const index = this.rowsRead++;
      if ('invalid' in row) {
        this.rejected.push({ row: index, line: `ERROR INVALID_ARGUMENT: ${row.invalid}` });
        this.printRejected();
        continue;
      }
      if (rate > 0) {
        const wait = started + (sent * 1000) / rate - performance.now();
        if (wait > 1) await new Promise((resolve) => setTimeout(resolve, wait));
      }
      sent++;
      yield { features: row.features, modelName, modelVersion };
    }
  }

  /** The answer to the oldest row sent and not answered. */
  answer(line: string, isError: boolean, roundTripMs: number): void {
    this.print(line, isError);
    this.latencyUs.recordValue(Math.max(1, Math.round(roundTripMs * 1000)));
    this.printRejected();
    if (this.out.length >= 256) this.flush();
  }

  /** Prints the set-aside rows whose turn has come. */
  private printRejected(): void {
    for (let head = this.rejected.peek(); head?.row === this.printed; head = this.rejected.peek()) {
      this.rejected.shift();
      this.print(head.line, true);
    }
  }

  private print(line: string, isError: boolean): void {
    this.out.push(line);
    this.printed++;
    if (isError) this.errors++;
  }

  flush(): void {
    if (this.out.length > 0) process.stdout.write(`${this.out.join('\n')}\n`);
    this.out.length = 0;
  }

  summary(rows: number): string {
    const h = this.latencyUs;
    const ms = (percentile: number) => (h.getValueAtPercentile(percentile) / 1000).toFixed(3);
    const latency = h.totalCount === 0 ? 'no answers' : `p50 ${ms(50)} ms, p99 ${ms(99)} ms`;
    return `rows ${rows}, answered ${this.printed}, errors ${this.errors}, not answered ${rows - this.printed}; latency send→answer ${latency}`;
  }
}

async function countRows(file: string): Promise<number> {
  let rows = 0;
  for await (const _ of csvRows(file)) rows++;
  return rows;
}

async function predict(client: TickClient, command: Extract<Command, { command: 'predict' }>): Promise<number> {
  const answer = await client.predict(
    { features: command.features, batchSize: command.batchSize, modelName: command.modelName, modelVersion: command.modelVersion },
    { deadlineMs: command.deadlineMs },
  );
  process.stdout.write(`${formatRows(answer.predictions, command.batchSize)}\n`);
  return 0;
}

/** Returns 0 once every row has its line; 1, after printing every answer received, if the stream ended first. */
async function replay(client: TickClient, command: Extract<Command, { command: 'replay' }>): Promise<number> {
  const output = new ReplayOutput();
  let failure: unknown = null;
  try {
    for await (const answer of client.stream(output.inputs(command.csv, command.rate, command.modelName, command.modelVersion))) {
      const line = answer.error ? `ERROR ${status[answer.error.code] ?? answer.error.code}: ${answer.error.message}` : answer.predictions.join(',');
      output.answer(line, answer.error !== null, answer.roundTripMs);
    }
  } catch (error) {
    failure = error;
  }
  output.flush();
  // Once the stream has failed, the rows past it were never read: count them from the file.
  const rows = failure === null ? output.rowsRead : await countRows(command.csv);
  if (failure !== null) process.stderr.write(`error: ${describeFailure(failure)}\n`);
  process.stderr.write(`${output.summary(rows)}\n`);
  return failure === null ? 0 : 1;
}

function describeFailure(error: unknown): string {
  if (error instanceof StreamEndedEarlyError) return error.message;
  const e = error as Partial<ServiceError>;
  if (typeof e.code === 'number' && typeof e.details === 'string') return `${status[e.code] ?? e.code}: ${e.details}`;
  return error instanceof Error ? error.message : String(error);
}

type V2Command = Extract<Command, { command: 'models' | 'load' | 'unload' | 'metadata' | 'infer' }>;

/** The repository index as a table: a header, then a line per model version, columns padded to line up. */
export function formatModels(models: readonly ModelIndexEntry[]): string {
  const rows = [['NAME', 'VERSION', 'STATE', 'REASON'], ...models.map((m) => [m.name, m.version, m.state, m.reason])];
  const widths = rows[0].map((_, column) => Math.max(...rows.map((row) => row[column].length)));
  return rows.map((row) => row.map((cell, column) => cell.padEnd(widths[column])).join('  ').trimEnd()).join('\n');
}

async function runV2(client: InferenceClient, command: V2Command): Promise<number> {
  const call = { deadlineMs: command.deadlineMs };
  switch (command.command) {
    case 'models':
      process.stdout.write(`${formatModels(await client.repositoryIndex(command.readyOnly, call))}\n`);
      break;
    case 'load':
      await client.load(command.model, call);
      process.stdout.write(`loaded ${command.model}\n`);
      break;
    case 'unload':
      await client.unload(command.model, call);
      process.stdout.write(`unloaded ${command.model}\n`);
      break;
    case 'metadata':
      process.stdout.write(`${JSON.stringify(await client.modelMetadata(command.model, command.modelVersion, call), null, 2)}\n`);
      break;
    case 'infer': {
      const result = await client.infer(command.model, command.inputs, { ...call, version: command.modelVersion });
      process.stdout.write(`${JSON.stringify(result.outputs.map(outputToJson))}\n`);
      break;
    }
  }
  return 0;
}

async function main(args: string[]): Promise<number> {
  const command = parseCommandLine(args);
  if (command.command === 'help') {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  const settings = { target: command.target, compression: command.gzip ? 'gzip' : 'none', headers: command.headers } as const;
  if (command.command !== 'predict' && command.command !== 'replay') {
    const client = new InferenceClient(settings);
    try {
      return await runV2(client, command);
    } finally {
      client.close();
    }
  }
  const client = new TickClient({ ...settings, deadlineMs: command.command === 'predict' ? command.deadlineMs : DEFAULT_DEADLINE_MS });
  try {
    return command.command === 'predict' ? await predict(client, command) : await replay(client, command);
  } finally {
    client.close();
  }
}

if (require.main === module) runCli(USAGE, () => main(process.argv.slice(2)), describeFailure);
