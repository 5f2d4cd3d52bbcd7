// `npm run client -- <command> [options]`
//   predict --target HOST:PORT --features 0.1,0.2,... [--batch-size N] [--model-version V] [--gzip]
//       prints the predictions, one row per line, comma-separated
//   replay --target HOST:PORT --csv FILE [--rate N] [--gzip]
//       streams each CSV row (features only; a header line is skipped) through StreamPredict and prints one line
//       per row, in input order: its predictions comma-separated, or `ERROR <CODE>: <message>`. A summary (rows,
//       errors, p50/p99 latency) goes to stderr. --rate N paces the feed at N rows a second, as recorded.
import { status, type ServiceError } from '@grpc/grpc-js';
import * as hdr from 'hdr-histogram-js';
import { createReadStream } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { TickClient, type PredictInput } from './index';

const USAGE = `usage:
  npm run client -- predict --target HOST:PORT --features 0.1,0.2,... [--batch-size N] [--model-version V] [--gzip]
  npm run client -- replay --target HOST:PORT --csv FILE [--rate N] [--gzip]`;

class UsageError extends Error {}

function parseFeatures(text: string, where: string): number[] {
  const values = text.split(',').map((v) => v.trim());
  const numbers = values.map(Number);
  const bad = values.findIndex((v, i) => v === '' || !Number.isFinite(numbers[i]));
  if (bad >= 0) throw new UsageError(`${where}: value ${bad + 1} ("${values[bad]}") is not a number`);
  return numbers;
}

function formatRows(predictions: number[], rows: number): string {
  const width = predictions.length / Math.max(1, rows);
  const lines: string[] = [];
  for (let r = 0; r < rows; r++) lines.push(predictions.slice(r * width, (r + 1) * width).join(','));
  return lines.join('\n');
}

/** The CSV's rows as stream inputs, paced at `rate` a second if given; a first line that is not numbers is a header. */
async function* csvRows(file: string, rate: number, sentAt: number[]): AsyncGenerator<PredictInput> {
  const lines = createInterface({ input: createReadStream(file), crlfDelay: Infinity });
  let lineNumber = 0;
  const started = performance.now();
  let row = 0;
  for await (const line of lines) {
    lineNumber++;
    if (line.trim() === '') continue;
    const fields = line.split(',');
    if (lineNumber === 1 && fields.some((f) => f.trim() === '' || !Number.isFinite(Number(f)))) continue; // header
    if (rate > 0) {
      const due = started + (row * 1000) / rate;
      const wait = due - performance.now();
      if (wait > 1) await new Promise((resolve) => setTimeout(resolve, wait));
    }
    row++;
    sentAt.push(performance.now());
    yield { features: parseFeatures(line, `${file}:${lineNumber}`) };
  }
}

async function predict(client: TickClient, values: Record<string, string | boolean | undefined>): Promise<void> {
  if (typeof values.features !== 'string') throw new UsageError('predict needs --features 0.1,0.2,...');
  const batchSize = values['batch-size'] === undefined ? 0 : Number(values['batch-size']);
  const answer = await client.predict({
    features: parseFeatures(values.features, '--features'),
    batchSize,
    modelVersion: typeof values['model-version'] === 'string' ? values['model-version'] : '',
  });
  process.stdout.write(`${formatRows(answer.predictions, Math.max(1, batchSize))}\n`);
}

async function replay(client: TickClient, values: Record<string, string | boolean | undefined>): Promise<void> {
  if (typeof values.csv !== 'string') throw new UsageError('replay needs --csv FILE');
  const rate = values.rate === undefined ? 0 : Number(values.rate);
  if (!(rate >= 0)) throw new UsageError(`--rate must be a number of rows a second, got ${values.rate}`);
  const latency = hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 600_000_000, numberOfSignificantValueDigits: 3 });
  const sentAt: number[] = [];
  let rows = 0;
  let errors = 0;
  const out: string[] = [];
  const flush = () => {
    if (out.length > 0) process.stdout.write(`${out.join('\n')}\n`);
    out.length = 0;
  };
  for await (const answer of client.stream(csvRows(values.csv, rate, sentAt))) {
    latency.recordValue(Math.max(1, Math.round((performance.now() - sentAt[rows]) * 1000)));
    rows++;
    if (answer.error) {
      errors++;
      out.push(`ERROR ${status[answer.error.code] ?? answer.error.code}: ${answer.error.message}`);
    } else {
      out.push(answer.predictions.join(','));
    }
    if (out.length >= 256) flush();
  }
  flush();
  const ms = (percentile: number) => (latency.getValueAtPercentile(percentile) / 1000).toFixed(3);
  process.stderr.write(`rows ${rows}, errors ${errors}, latency p50 ${ms(50)} ms, p99 ${ms(99)} ms\n`);
}

async function main(): Promise<number> {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      target: { type: 'string', default: '127.0.0.1:50051' },
      features: { type: 'string' },
      'batch-size': { type: 'string' },
      'model-version': { type: 'string' },
      csv: { type: 'string' },
      rate: { type: 'string' },
      gzip: { type: 'boolean', default: false },
      'deadline-ms': { type: 'string' },
    },
  });
  const command = positionals[0];
  if (command !== 'predict' && command !== 'replay') throw new UsageError(command ? `unknown command "${command}"` : 'no command');
  const client = new TickClient({
    target: values.target!,
    compression: values.gzip ? 'gzip' : 'none',
    deadlineMs: values['deadline-ms'] === undefined ? 5000 : Number(values['deadline-ms']),
  });
  try {
    if (command === 'predict') await predict(client, values);
    else await replay(client, values);
    return 0;
  } finally {
    client.close();
  }
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    if (error instanceof UsageError) process.stderr.write(`${error.message}\n${USAGE}\n`);
    else if ((error as ServiceError).code !== undefined) {
      const e = error as ServiceError;
      process.stderr.write(`${status[e.code]}: ${e.details}\n`);
    } else process.stderr.write(`${error instanceof Error ? error.message : String(error)}\n`);
    process.exit(error instanceof UsageError ? 2 : 1);
  },
);
