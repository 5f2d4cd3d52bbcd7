// `npm run bench -- [options]`: load one server and report throughput, latency percentiles, errors by status and
// the server-side breakdown; a concurrency sweep (closed loop) or a request rate (open loop). USAGE lists the options.
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { integerValue, listValue, numberValue, runCli, usageErrors, UsageError } from '../src/client/args';
import { runLoad, type LoadResult, type LoadSpec } from './load';
import { latencyPlot } from './plot';
import { csv, describeLoad, markdownTable, progressBar, rpcName } from './report';

export const USAGE = `usage: npm run bench -- [options]

  --target HOST:PORT       server (default 127.0.0.1:50051)
  --api seed|v2            seed: inference.ModelService (Predict, StreamPredict); v2: the Open Inference Protocol's
                           ModelInfer, ModelStreamInfer (FP32 input "input" [rows, width] in raw_input_contents,
                           model "default") (default seed)
  --rpc unary|stream       a unary call (Predict, ModelInfer) or a stream (StreamPredict, ModelStreamInfer) (default unary)
  --concurrency 1,8,32     closed loop: requests in flight, one run per value (default 1,4,16,64)
  --rate N[,N...]          open loop: requests a second, one run per value (overrides --concurrency)
  --poisson                open loop with exponential gaps (default: constant)
  --streams N              streams the load is spread over (default 4)
  --rows N                 rows per request (default 1)
  --width N                features per row of the served model (default 17, the default model)
  --duration S --warmup S  seconds measured, and seconds of warm-up before (default 5 and 1)
  --gzip                   send requests gzip-compressed
  --server-pid PID         the server's process, on this machine: report its CPU µs per answer (from /proc)
  --json FILE --csv FILE --svg FILE   write the results, and a latency-vs-throughput plot
  -h, --help               this text

  exit status: 0 done; 1 a run failed; 2 a bad command line`;

/** What to run: the loads in order (one result each), the spec they share, and where to write the results. */
export type BenchCommand =
  | { command: 'help' }
  | {
      command: 'run';
      loads: Array<{ rate: number; concurrency: number }>;
      spec: Omit<LoadSpec, 'rate' | 'concurrency' | 'onProgress'>;
      json?: string;
      csv?: string;
      svg?: string;
    };

const OPTIONS = {
  target: { type: 'string', default: '127.0.0.1:50051' },
  api: { type: 'string', default: 'seed' },
  rpc: { type: 'string', default: 'unary' },
  concurrency: { type: 'string', default: '1,4,16,64' },
  rate: { type: 'string' },
  poisson: { type: 'boolean', default: false },
  gzip: { type: 'boolean', default: false },
  streams: { type: 'string', default: '4' },
  rows: { type: 'string', default: '1' },
  width: { type: 'string', default: '17' },
  duration: { type: 'string', default: '5' },
  warmup: { type: 'string', default: '1' },
  'server-pid': { type: 'string' },
  json: { type: 'string' },
  csv: { type: 'string' },
  svg: { type: 'string' },
  help: { type: 'boolean', short: 'h', default: false },
} as const;

/** The command line, checked whole before anything connects; a UsageError says what is wrong with it. */
export function parseBenchArgs(args: string[]): BenchCommand {
  const { values } = usageErrors(() => parseArgs({ args, options: OPTIONS, strict: true }));
  if (values.help) return { command: 'help' };
  const { api, rpc } = values;
  if (api !== 'seed' && api !== 'v2') throw new UsageError(`--api must be seed or v2, got "${api}"`);
  if (rpc !== 'unary' && rpc !== 'stream') throw new UsageError(`--rpc must be unary or stream, got "${rpc}"`);
  const loads =
    values.rate !== undefined
      ? listValue('rate', values.rate, (name, text) => numberValue(name, text, { above: 0 })).map((rate) => ({ rate, concurrency: 0 }))
      : listValue('concurrency', values.concurrency, (name, text) => integerValue(name, text, 1)).map((concurrency) => ({ rate: 0, concurrency }));
  return {
    command: 'run',
    loads,
    spec: {
      target: values.target,
      api,
      rpc,
      poisson: values.poisson,
      gzip: values.gzip,
      streams: integerValue('streams', values.streams, 1),
      rowsPerRequest: integerValue('rows', values.rows, 1),
      width: integerValue('width', values.width, 1),
      warmupS: numberValue('warmup', values.warmup, { atLeast: 0 }),
      durationS: numberValue('duration', values.duration, { above: 0 }),
      ...(values['server-pid'] !== undefined ? { serverPid: integerValue('server-pid', values['server-pid'], 1) } : {}),
    },
    json: values.json,
    csv: values.csv,
    svg: values.svg,
  };
}

async function main(args: string[]): Promise<number> {
  const command = parseBenchArgs(args);
  if (command.command === 'help') {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  const { spec } = command;
  const results: Array<{ name: string; result: LoadResult }> = [];
  for (const load of command.loads) {
    const label = load.rate > 0 ? `${rpcName(spec)} rate=${load.rate}` : `${rpcName(spec)} c=${load.concurrency}`;
    const result = await runLoad({ ...spec, ...load, onProgress: progressBar(label) });
    results.push({ name: spec.target, result });
  }
  console.log(markdownTable(results));
  for (const { result } of results) {
    if (result.serverCpuUsPerRequest !== null) console.log(`${describeLoad(result)}: server CPU ${result.serverCpuUsPerRequest.toFixed(1)} µs an answer`);
  }
  if (command.json) writeFileSync(command.json, JSON.stringify(results, null, 2));
  if (command.csv) writeFileSync(command.csv, csv(results));
  if (command.svg) {
    const points = results.map(({ result }) => ({ throughput: result.requestsPerSecond, p50Ms: result.latencyMs.p50, p99Ms: result.latencyMs.p99 }));
    writeFileSync(command.svg, latencyPlot(`${spec.target} ${describeLoad(results[0].result).split(' ')[0]}`, [{ name: spec.target, points }]));
  }
  return 0;
}

if (require.main === module) runCli(USAGE, () => main(process.argv.slice(2)));
