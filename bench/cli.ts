// `npm run bench -- [options]`: load one server and report throughput, latency percentiles, errors by status and
// the server-side breakdown; a concurrency sweep (closed loop) or a request rate (open loop).
//
//   --target HOST:PORT       server (default 127.0.0.1:50051)
//   --rpc unary|stream       Predict or StreamPredict (default unary)
//   --concurrency 1,8,32     closed loop: requests in flight, one run per value (default 1,4,16,64)
//   --rate N[,N...]          open loop: requests a second, one run per value (overrides --concurrency)
//   --poisson                open loop with exponential gaps (default: constant)
//   --streams N              StreamPredict calls the load is spread over (default 4)
//   --rows N                 rows per request (default 1)
//   --width N                features per row of the served model (default 17, the default model)
//   --duration S --warmup S  seconds measured, and seconds of warm-up before (default 5 and 1)
//   --gzip                   send requests gzip-compressed
//   --json FILE --csv FILE --svg FILE   write the results, and a latency-vs-throughput plot
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { runLoad, type LoadResult, type Rpc } from './load';
import { latencyPlot } from './plot';
import { csv, describeLoad, markdownTable, progressBar } from './report';

const list = (text: string) => text.split(',').map(Number).filter((n) => n > 0);

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      target: { type: 'string', default: '127.0.0.1:50051' },
      rpc: { type: 'string', default: 'unary' },
      concurrency: { type: 'string', default: '1,4,16,64' },
      rate: { type: 'string', default: '' },
      poisson: { type: 'boolean', default: false },
      gzip: { type: 'boolean', default: false },
      streams: { type: 'string', default: '4' },
      rows: { type: 'string', default: '1' },
      width: { type: 'string', default: '17' },
      duration: { type: 'string', default: '5' },
      warmup: { type: 'string', default: '1' },
      json: { type: 'string' },
      csv: { type: 'string' },
      svg: { type: 'string' },
    },
  });
  if (values.rpc !== 'unary' && values.rpc !== 'stream') throw new Error(`--rpc must be unary or stream, got ${values.rpc}`);
  const rates = list(values.rate!);
  const loads = rates.length > 0 ? rates.map((rate) => ({ rate, concurrency: 0 })) : list(values.concurrency!).map((concurrency) => ({ rate: 0, concurrency }));
  const results: Array<{ name: string; result: LoadResult }> = [];
  for (const load of loads) {
    const spec = {
      target: values.target!,
      rpc: values.rpc as Rpc,
      ...load,
      poisson: values.poisson!,
      gzip: values.gzip!,
      streams: Number(values.streams),
      rowsPerRequest: Number(values.rows),
      width: Number(values.width),
      warmupS: Number(values.warmup),
      durationS: Number(values.duration),
    };
    const label = load.rate > 0 ? `${spec.rpc} rate=${load.rate}` : `${spec.rpc} c=${load.concurrency}`;
    const result = await runLoad({ ...spec, onProgress: progressBar(label) });
    results.push({ name: values.target!, result });
  }
  console.log(markdownTable(results));
  if (values.json) writeFileSync(values.json, JSON.stringify(results, null, 2));
  if (values.csv) writeFileSync(values.csv, csv(results));
  if (values.svg) {
    const points = results.map(({ result }) => ({ throughput: result.requestsPerSecond, p50Ms: result.latencyMs.p50, p99Ms: result.latencyMs.p99 }));
    writeFileSync(values.svg, latencyPlot(`${values.target} ${describeLoad(results[0].result).split(' ')[0]}`, [{ name: values.target!, points }]));
  }
}

main().catch((error) => {
  console.error(error instanceof Error ? error.message : error);
  process.exit(1);
});
