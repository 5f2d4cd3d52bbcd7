// `npm run bench:compare`: in one run and under the same load, this server (default config), the same server with
// MAX_BATCH_SIZE=1, the do-nothing grpc-js echo server and the seed's Python server (where Debian's python3-grpcio
// and python3-torch are installed), plus the heavy model with and without batching and onnxruntime in-process.
// Where h2load is installed it drives each server too, as an independent load generator. Writes docs/BENCHMARKS.md,
// docs/bench/results.json, results.csv and the plots.
//
//   --quick            shorter runs (about a minute in all), for trying the tool out
//   --peers DIR        the bench peers (default ../shared/bench-peers)
//   --out FILE         the Markdown report (default docs/BENCHMARKS.md)
//   --only policies    only the batch delay policies side by side (bench/policies.ts), into its own section
//   --rounds N         rounds of the policy comparison (default 3) or of the telemetry cost (default 5)
//   --only v2          only the KServe v2 comparison (ModelInfer against Predict, ModelStreamInfer against
//                      StreamPredict, one server, interleaved rounds): replaces its section of the report
//   --only telemetry   only what telemetry costs: measures it, prints it and rewrites that section of the report
//                      (and its rows of the targets table), leaving the rest as it was
//   --only plots       redraws the plots from the last run's results.json
//   --only policies-report  redraws the policies section from the last run's docs/bench/policies.json
import type * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { execFileSync, spawn } from 'node:child_process';
import http from 'node:http';
import net from 'node:net';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import * as ort from 'onnxruntime-node';
import { decodePredictRequest, encodeResponse, encodeVersionField } from '../src/main/codec';
import { encodeInferResponse, encodeStreamInferResponse, inferRequestDeserializer } from '../src/main/kserve/codec';
import { KSERVE_PROTO_OPTIONS, KSERVE_PROTO_PATH } from '../src/main/kserve/service';
import type { ModelInferRequest } from '../src/main/kserve/tensors';
import { INFERENCE_SERVICE } from '../src/main/telemetry';
import { encodeRequests, processCpuMs, runLoad, type Api, type LoadResult, type LoadSpec } from './load';
import { encodeInferRequests } from './v2';
import { latencyPlot, type PlotSeries } from './plot';
import { comparePolicies, POLICIES_HEADING, redrawPolicies } from './policies';
import { RELOAD_HEADING, replaceSection } from './reload';
import { csv, markdownTable, progressBar, rpcName } from './report';
import { hasH2load, HEAVY_MODEL, ROOT, runH2load, startTickserve, stopAndWait, waitReady, type Target } from './servers';
import { median } from './stats';

/** Resident memory now and at its peak so far, in MB (10^6 bytes, as the target is written). */
function rssMB(pid: number): { rss: number; peak: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const field = (key: string) => (Number(new RegExp(`${key}:\\s+(\\d+) kB`).exec(status)?.[1] ?? 0) * 1024) / 1e6;
  return { rss: field('VmRSS'), peak: field('VmHWM') };
}

function hasSeedPython(): boolean {
  try {
    execFileSync('/usr/bin/python3', ['-c', 'import grpc, torch, grpc_tools'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

interface H2loadResult {
  target: string;
  rpc: string;
  messagesPerSecond: number;
  succeeded: number;
  failed: number;
  /** CPU time the server process spent per message answered (user + system), in µs. */
  cpuUsPerMessage: number;
  /** Messages a second in each round, where there were several (messagesPerSecond is their median). */
  rounds?: number[];
}

/** Rounds of the h2load comparison. */
const H2LOAD_ROUNDS = 3;
/** Rounds of the telemetry cost: its differences are smaller than the machine's swings, so more of them. */
const TELEMETRY_ROUNDS = 5;

/** The round with the median throughput, carrying every round's throughput. */
function medianRun(results: H2loadResult[]): H2loadResult {
  const sorted = [...results].sort((a, b) => a.messagesPerSecond - b.messagesPerSecond);
  return { ...sorted[Math.floor(sorted.length / 2)], rounds: results.map((r) => r.messagesPerSecond) };
}

const cpuMs = processCpuMs;

/** h2load against one server: unary with -c 8 -m 32, or streams of 100 messages each. */
function h2load(target: Target, rpc: 'unary' | 'stream', quick: boolean): H2loadResult {
  const dir = mkdtempDir();
  const body = path.join(dir, `${target.name}-${rpc}.bin`);
  const perStream = 100;
  writeFileSync(body, rpc === 'unary' ? encodeRequests(target.width, 1, 1)[0] : Buffer.concat(encodeRequests(target.width, 1, perStream)));
  const isSeed = target.name.startsWith('seed') || target.name.includes('heavy MAX_BATCH_SIZE=1');
  const n = rpc === 'unary' ? (quick || isSeed ? 10_000 : 60_000) : quick || isSeed ? 200 : 2000;
  const method = rpc === 'unary' ? 'Predict' : 'StreamPredict';
  const concurrency = rpc === 'unary' ? ['-c', '8', '-m', '32'] : ['-c', '4', '-m', '8'];
  const cpuBefore = cpuMs(target.process.pid!);
  const { perSecond, succeeded, failed } = runH2load([
    '-n', String(n), ...concurrency, '-t', '1', '-H', 'content-type: application/grpc', '-H', 'te: trailers',
    '-d', body, `http://127.0.0.1:${target.port}/inference.ModelService/${method}`,
  ]);
  const messages = succeeded * (rpc === 'unary' ? 1 : perStream);
  const cpuUsPerMessage = ((cpuMs(target.process.pid!) - cpuBefore) * 1000) / Math.max(1, messages);
  return { target: target.name, rpc, messagesPerSecond: perSecond * (rpc === 'unary' ? 1 : perStream), succeeded, failed, cpuUsPerMessage };
}

interface Measured {
  /** Messages a second, each round. */
  unary: number[];
  stream: number[];
  /** Server CPU µs per message, each round. */
  unaryCpu: number[];
  streamCpu: number[];
}

interface TelemetryCost extends Measured {
  variant: string;
  /**
   * What this variant is compared with, round by round: the mean of the two tracing-off processes' runs (the two
   * tracing-off ones are compared with each other: the A/A control).
   */
  baseline: Measured;
  /** Calls answered (unary calls plus streams), warm-up included. */
  rpcs: number;
  /** What its OTLP sink received, after the server shut down and flushed; null: not exporting. */
  exported: SinkStats | null;
}

interface SinkStats {
  requests: number;
  bytes: number;
  spans: number;
  /** SERVER spans of Predict and StreamPredict calls (the rest are batch spans, and any health checks'). */
  callSpans: number;
}

interface Sink {
  port: number;
  stats(): Promise<SinkStats>;
  stop(): void;
}

/** An OTLP/HTTP receiver in its own process (bench/otlp-sink.ts), so that it answers while h2load runs. */
async function startSink(): Promise<Sink> {
  const child = spawn(process.execPath, [path.join(__dirname, 'otlp-sink.js')], { stdio: ['ignore', 'pipe', 'inherit'] });
  const port = await new Promise<number>((resolve, reject) => {
    child.stdout!.once('data', (line: Buffer) => resolve(Number(line.toString().trim())));
    child.once('exit', (code) => reject(new Error(`the OTLP sink exited with ${code}`)));
  });
  const stats = () =>
    new Promise<SinkStats>((resolve, reject) => {
      // A connection each time: a kept-alive one that the receiver closes as it is reused fails with 'socket hang up'.
      http.get({ host: '127.0.0.1', port, path: '/stats', agent: false }, (res) => {
        let body = '';
        res.on('data', (chunk) => (body += chunk));
        res.on('end', () => resolve(JSON.parse(body) as SinkStats));
      }).on('error', reject);
    });
  return { port, stats, stop: () => child.kill('SIGTERM') };
}

/** The telemetry variants, in the order of the report; the targets compare them by index. */
const DISABLED = 0;
const TRACING_OFF = 1;
const TRACED_ALL = 2;
const TRACED_ONE_PERCENT = 3;
const NOTHING_SAMPLED = 4;
const CONTROL = 5;

/**
 * What telemetry costs: the same server with OpenTelemetry disabled, with its default (metrics on, no trace
 * endpoint), and with tracing on: every call traced, 1% of them (the advice for high rates), and none (sampler
 * always_off: what tracing costs a call it does not keep). Each traced server exports over OTLP/HTTP to its own
 * receiver process, which counts what it gets. The variants take turns, round by round, driven by h2load.
 */
async function telemetryCost(quick: boolean, rounds: number): Promise<TelemetryCost[]> {
  const sinks = [await startSink(), await startSink(), await startSink()];
  const traced = (sink: Sink, sampler: Record<string, string>) => ({
    ...sampler,
    OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${sink.port}`,
    OTEL_EXPORTER_OTLP_PROTOCOL: 'http/protobuf',
  });
  const variants: Array<[string, Record<string, string>, Sink | null]> = [
    ['OTEL_SDK_DISABLED=true', { OTEL_SDK_DISABLED: 'true', METRICS_PORT: '0' }, null],
    ['tracing off (metrics, no trace endpoint)', { METRICS_PORT: '50179' }, null],
    ['tracing 100% (always_on) + OTLP export', { METRICS_PORT: '50180', ...traced(sinks[0], { OTEL_TRACES_SAMPLER: 'always_on' }) }, sinks[0]],
    ['tracing 1% (parentbased_traceidratio 0.01) + OTLP export', {
      METRICS_PORT: '50181',
      ...traced(sinks[1], { OTEL_TRACES_SAMPLER: 'parentbased_traceidratio', OTEL_TRACES_SAMPLER_ARG: '0.01' }),
    }, sinks[1]],
    // Tracing on but nothing sampled: what every call pays for the interceptor and the sampling decision alone.
    ['tracing on, sampler always_off', { METRICS_PORT: '50182', ...traced(sinks[2], { OTEL_TRACES_SAMPLER: 'always_off' }) }, sinks[2]],
    // The A/A control: tracing off again, in a process of its own.
    ['tracing off, second process (control)', { METRICS_PORT: '50183' }, null],
  ];
  // Every round starts every variant afresh: a server process carries a bias of its own for as long as it lives
  // (where its threads landed, its heap's layout, what its JIT made of the warm-up), seen here as ±10–20% between
  // two processes of the same configuration. Fresh processes each round make that bias a per-round error, which the
  // median over rounds averages out, instead of a fixed one. The A/A control (a second tracing-off process) shows
  // what is left: its ratio to tracing off is the noise floor of every other ratio.
  const measured = (): Measured => ({ unary: [], stream: [], unaryCpu: [], streamCpu: [] });
  const costs: TelemetryCost[] = variants.map(([name]) => ({ variant: name, ...measured(), baseline: measured(), rpcs: 0, exported: null }));
  let targets: Target[] = [];
  try {
    const run = (t: Target, i: number, rpc: 'unary' | 'stream', short: boolean) => {
      const result = h2load(t, rpc, short);
      costs[i].rpcs += result.succeeded;
      return result;
    };
    // A traced server goes on exporting for a moment after its load ends, and its receiver on receiving: the next
    // run waits until the receiver's count stands still, so that it does not pay for the one before.
    const drained = async (sink: Sink | null) => {
      if (sink === null) return;
      let last = -1;
      for (let waited = 0; waited < 10_000; waited += 250) {
        const { spans } = await sink.stats();
        if (spans === last) return;
        last = spans;
        await new Promise((resolve) => setTimeout(resolve, 250));
      }
    };
    for (let round = 0; round < (quick ? 1 : rounds); round++) {
      targets = variants.map(([name, env], i) => startTickserve(name, 50171 + i, env, 17));
      for (const t of targets) await waitReady(t);
      // A short unmeasured run first: each new process pays for its JIT warm-up.
      targets.forEach((t, i) => {
        process.stderr.write(`h2load telemetry cost: ${t.name}, round ${round + 1}, warm-up\n`);
        run(t, i, 'unary', true);
        run(t, i, 'stream', true);
      });
      // Each round starts one variant later than the one before: a variant's place in the round (after which
      // neighbour, how long after the round began) is not the same every time.
      for (let k = 0; k < targets.length; k++) {
        const i = (k + round) % targets.length;
        process.stderr.write(`h2load telemetry cost: ${targets[i].name}, round ${round + 1}\n`);
        for (const rpc of ['unary', 'stream'] as const) {
          const result = run(targets[i], i, rpc, quick);
          costs[i][rpc].push(result.messagesPerSecond);
          costs[i][rpc === 'unary' ? 'unaryCpu' : 'streamCpu'].push(result.cpuUsPerMessage);
          await drained(variants[i][2]);
        }
      }
      // Stopped before the next round starts: each flushes its spans to its receiver on the way out.
      await Promise.all(targets.map(stopAndWait));
    }
    for (const [i, [, , sink]] of variants.entries()) if (sink !== null) costs[i].exported = await sink.stats();
    // The baseline: the two tracing-off processes, averaged round by round, so that neither one's luck in a round
    // is the yardstick alone; each of the two is compared with the other.
    const off = costs[TRACING_OFF];
    const control = costs[CONTROL];
    const mean = (a: number[], b: number[]) => a.map((v, r) => (v + b[r]) / 2);
    const both: Measured = {
      unary: mean(off.unary, control.unary),
      stream: mean(off.stream, control.stream),
      unaryCpu: mean(off.unaryCpu, control.unaryCpu),
      streamCpu: mean(off.streamCpu, control.streamCpu),
    };
    for (const cost of costs) cost.baseline = both;
    off.baseline = control;
    control.baseline = off;
    return costs;
  } finally {
    targets.forEach((t) => t.process.kill('SIGTERM'));
    for (const sink of sinks) sink.stop();
  }
}

/** The median over rounds of a/b, each round's a over the same round's b. */
const pairedMedian = (top: number[], bottom: number[]) => median(top.map((value, round) => value / bottom[round]));

/** A variant's throughput and CPU ratios to tracing off, round by round, as medians (1: as cheap as tracing off). */
function ratiosToOff(c: TelemetryCost, rpc: 'unary' | 'stream'): { throughput: number; cpu: number } {
  const cpu = rpc === 'unary' ? 'unaryCpu' : 'streamCpu';
  return { throughput: pairedMedian(c[rpc], c.baseline[rpc]), cpu: pairedMedian(c.baseline[cpu], c[cpu]) };
}

/**
 * The rows of the targets table on telemetry. Throughput on this shared machine swings run to run; the server's
 * CPU time per message is steadier, and the throughput a CPU-bound server can reach goes as its inverse. Both are
 * shown, as paired medians; a target is met when both meet it, and the row says which one fell short.
 */
function telemetryTargets(costs: TelemetryCost[]): string[] {
  if (costs.length === 0) return [];
  const line = (rpc: 'unary' | 'stream', name: string, c: TelemetryCost, atLeast: number, inverted = false) => {
    const cpu = rpc === 'unary' ? 'unaryCpu' : 'streamCpu';
    const to = ratiosToOff(c, rpc);
    // Tracing off against OpenTelemetry disabled: the disabled variant's ratios, turned over.
    const [throughput, cpuRatio] = inverted ? [1 / to.throughput, 1 / to.cpu] : [to.throughput, to.cpu];
    const [mine, theirs] = inverted ? [median(c.baseline[cpu]), median(c[cpu])] : [median(c[cpu]), median(c.baseline[cpu])];
    const verdict = throughput >= atLeast && cpuRatio >= atLeast
      ? 'met'
      : cpuRatio >= atLeast
        ? 'met by CPU a message; **not met** by throughput'
        : throughput >= atLeast
          ? 'met by throughput; **not met** by CPU a message'
          : '**not met**';
    return `| ${rpc}: ${name} | ${throughput.toFixed(2)}× throughput; CPU a message ${mine.toFixed(1)} vs ${theirs.toFixed(1)} µs: ${cpuRatio.toFixed(2)}× | ${verdict} |`;
  };
  const [disabled, all, onePercent, none] = [costs[DISABLED], costs[TRACED_ALL], costs[TRACED_ONE_PERCENT], costs[NOTHING_SAMPLED]];
  return [
    line('unary', 'tracing off within 2% of OpenTelemetry disabled', disabled, 0.98, true),
    line('unary', 'tracing 1% (parentbased_traceidratio 0.01) + export ≥ 0.95× tracing off', onePercent, 0.95),
    line('unary', 'tracing on, sampler always_off ≥ 0.97× tracing off', none, 0.97),
    line('unary', 'tracing 100% + export ≥ 0.85× tracing off', all, 0.85),
    line('stream', 'tracing off within 2% of OpenTelemetry disabled', disabled, 0.98, true),
    line('stream', 'tracing 100% + export ≥ 0.85× tracing off', all, 0.85),
  ];
}

/** The report's section on telemetry: every variant's rounds, throughput and CPU beside each other, and the spans
 * its receiver got. */
function telemetrySection(costs: TelemetryCost[], quick: boolean, rounds: number, measured: string): string[] {
  if (costs.length === 0) return [];
  const figures = (c: TelemetryCost, rpc: 'unary' | 'stream') => {
    const cpu = rpc === 'unary' ? 'unaryCpu' : 'streamCpu';
    const to = ratiosToOff(c, rpc);
    return `${c[rpc].map((v) => v.toFixed(0)).join(', ')} | ${median(c[rpc]).toFixed(0)} | ${to.throughput.toFixed(2)}× | ${median(c[cpu]).toFixed(1)} | ${to.cpu.toFixed(2)}×`;
  };
  const spans = (c: TelemetryCost) =>
    c.exported === null ? '-' : `${c.exported.callSpans} / ${c.rpcs} (${((100 * c.exported.callSpans) / Math.max(1, c.rpcs)).toFixed(2)}%); ${c.exported.spans} in all`;
  const control = { unary: ratiosToOff(costs[CONTROL], 'unary'), stream: ratiosToOff(costs[CONTROL], 'stream') };
  return [
    '## What telemetry costs',
    '',
    measured,
    '',
    `The same server six ways, taking turns for ${quick ? 'one round' : `${rounds} rounds`} under h2load (as above). Every round starts every server`,
    'afresh and warms it up unmeasured (a process keeps a bias of its own for as long as it lives; fresh ones make it a',
    'per-round error that the median averages out), each round starting one variant later than the one before. Tracing:',
    '`OTEL_TRACES_SAMPLER=always_on` (every call), `parentbased_traceidratio` with `OTEL_TRACES_SAMPLER_ARG=0.01` (h2load',
    'sends no traceparent, so 1% of the calls, by trace id), or `always_off` (tracing on, nothing kept), each exporting',
    'over OTLP/HTTP protobuf to its own receiver process; after each traced run the next waits until its receiver\'s',
    'span count stands still (the exporter finishing, and the receiver, cost the next run nothing). Ratios are to',
    'tracing off, here the mean of two tracing-off processes in the same round (each of the two is compared with the',
    'other), taken round by round (they ran minutes apart at most), and their median is shown: throughput, and the',
    'inverse ratio of the server\'s CPU time',
    '(user + system, all its threads, from /proc) per message answered. On this shared machine a round\'s ratio swings',
    'by ±25% (other jobs come and go between two runs), so differences of a few percent are below what one run shows;',
    '`node dist/bench/trace-interceptor.js` measures the tracing interceptor\'s own CPU a call without that noise',
    '(docs/DESIGN.md). The receiver counts the SERVER spans of Predict and StreamPredict calls it got, after the',
    'server\'s shutdown flush, beside the calls and streams made (warm-up included): 100% must be every one, 1% about',
    'one in a hundred. "In all" adds the batch spans.',
    '',
    `The A/A control is tracing off again in a second process: its ratios to the first (unary ${control.unary.throughput.toFixed(2)}× throughput,`,
    `${control.unary.cpu.toFixed(2)}× CPU; stream ${control.stream.throughput.toFixed(2)}×, ${control.stream.cpu.toFixed(2)}×) are what two identical servers measure apart in this run: the noise floor of`,
    'every other ratio.',
    '',
    '| variant | Predict calls/s, each round | median | ratio to tracing off | CPU µs a call | CPU ratio | StreamPredict messages/s, each round | median | ratio to tracing off | CPU µs a message | CPU ratio | call spans received / calls and streams |',
    '|---|---|---|---|---|---|---|---|---|---|---|---|',
    ...costs.map((c) => `| ${c.variant} | ${figures(c, 'unary')} | ${figures(c, 'stream')} | ${spans(c)} |`),
    '',
  ];
}

/** "Measured by … on …", with the load average around the run: other jobs share this machine. */
function measuredLine(command: string, loadBefore: number[], started: number): string {
  const load = (l: number[]) => l.map((v) => v.toFixed(2)).join(' / ');
  return `Measured by \`${command}\` on ${new Date(started).toISOString().slice(0, 16).replace('T', ' ')} UTC in ${((Date.now() - started) / 60_000).toFixed(1)} min; load average (1/5/15 min) ${load(loadBefore)} at the start and ${load(os.loadavg())} at the end, on ${os.cpus().length} cores shared with other jobs.`;
}

/** The closed-loop sweeps of the small-model servers (width 17, one row), one line per server, in sweep order. */
function writePlots(outDir: string, results: Array<{ name: string; result: LoadResult }>): void {
  for (const rpc of ['unary', 'stream'] as const) {
    const sweepOf = (name: string) =>
      results.filter((r) => r.name === name && r.result.spec.rpc === rpc && r.result.spec.rate === 0 && r.result.spec.width === 17 && r.result.spec.rowsPerRequest === 1 && !r.result.spec.gzip);
    const names = [...new Set(results.map((r) => r.name))].filter((name) => sweepOf(name).length > 1);
    const series: PlotSeries[] = names.map((name) => ({
      name,
      points: sweepOf(name).map(({ result: r }) => ({ throughput: r.requestsPerSecond, p50Ms: r.latencyMs.p50, p99Ms: r.latencyMs.p99 })),
    }));
    const title = rpc === 'unary' ? 'Predict: latency vs throughput (closed loop)' : 'StreamPredict: latency vs throughput (closed loop)';
    writeFileSync(path.join(outDir, `${rpc}.svg`), latencyPlot(title, series, rpc === 'unary' ? 'calls/s' : 'messages/s'));
  }
}

let tmp: string | undefined;
function mkdtempDir(): string {
  tmp ??= execFileSync('mktemp', ['-d'], { encoding: 'utf8' }).trim();
  return tmp;
}

/** Rows a second onnxruntime reaches in this process at `rows` rows a run, with one intra-op thread like a worker. */
async function inProcessRowsPerSecond(modelPath: string, rows: number, seconds: number): Promise<number> {
  const session = await ort.InferenceSession.create(modelPath, { intraOpNumThreads: 1, interOpNumThreads: 1 });
  const meta = session.inputMetadata[0];
  const dims = (meta.isTensor ? meta.shape.slice(1) : []) as number[];
  const width = dims.reduce((a, b) => a * b, 1);
  const input = new ort.Tensor('float32', Float32Array.from({ length: rows * width }, (_, i) => Math.sin(i)), [rows, ...dims]);
  const feeds = { [session.inputNames[0]]: input };
  for (let i = 0; i < 20; i++) await session.run(feeds);
  let runs = 0;
  const started = performance.now();
  while (performance.now() - started < seconds * 1000) {
    await session.run(feeds);
    runs++;
  }
  const elapsed = (performance.now() - started) / 1000;
  await session.release();
  return (runs * rows) / elapsed;
}

/** The server's own p99 (receipt to result) with its queue and compute parts, from the answers' fields. */
function serverP99(result: LoadResult): string {
  const s = result.server;
  if (s === null) return 'no server figures';
  return `server's own p99 ${(s.serverUsP99 / 1000).toFixed(3)} ms (queue p99 ${s.queueUsP99} µs, compute p99 ${s.computeUsP99} µs)`;
}

function ratio(a: number, b: number): string {
  return b > 0 ? `${(a / b).toFixed(2)}×` : 'n/a';
}

// ---------------------------------------------------------------------------------------------------------------
// KServe v2 against ModelService (`--only v2`)

const V2_HEADING = '## KServe v2 against ModelService';
/**
 * Measured rounds of the v2 comparison (after one unmeasured warm-up round), and the seconds measured in each run.
 * Many short rounds rather than a few long ones: the two runs of a pair are then seconds apart, closer in time than
 * most swings of this shared machine's load, and a round that one hits is one of nine.
 */
const V2_ROUNDS = 9;
const V2_QUICK_ROUNDS = 3;
const V2_DURATION_S = 3;
/** Unary calls in flight; stream messages in flight, spread over V2_STREAMS calls (a window of 64 each). */
const V2_UNARY_CONCURRENCY = 64;
const V2_STREAM_CONCURRENCY = 256;
const V2_STREAMS = 4;
/** The issue's targets: v2's calls/s (messages/s) at least this fraction of ModelService's, in the same run. */
const V2_TARGET = 0.9;
/** Calls of each codec step timed, for each API (in CODEC_BATCHES batches). */
const CODEC_MESSAGES = 200_000;

type Pair = Record<Api, LoadResult>;

interface V2Round {
  /** The API that ran first in this round's pairs; the other went first in the next round. */
  first: Api;
  unary: Pair;
  stream: Pair;
}

/** ns a message for one codec step: ModelService's codec, v2's generic protobufjs codec, and v2's as served. */
interface CodecTiming {
  what: string;
  seedNs: number;
  genericNs: number;
  servedNs: number;
}

interface V2Comparison {
  startedAt: string;
  seconds: number;
  quick: boolean;
  loadAverageStart: number[];
  loadAverageEnd: number[];
  warmupS: number;
  durationS: number;
  rounds: V2Round[];
  codec: CodecTiming[];
}

/** A TCP port nothing listens on now (several agents run benchmarks on this machine; fixed ports collide). */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address() as net.AddressInfo;
      probe.close(() => resolve(port));
    });
  });
}

/** Batches each codec step is timed in, the codecs' batches taking turns. */
const CODEC_BATCHES = 10;

/**
 * Nanoseconds a call takes, for each of `bodies`, timed in batches of `count / CODEC_BATCHES` calls that take turns,
 * after an unmeasured batch each (JIT warm-up). Each figure is the fastest batch's: on this shared machine another
 * process can only make a batch slower, so the fastest is the one least disturbed.
 */
function nsPerCall(count: number, bodies: Array<(i: number) => unknown>): number[] {
  const perBatch = Math.ceil(count / CODEC_BATCHES);
  let kept = 0;
  const batch = (body: (i: number) => unknown) => {
    const started = process.hrtime.bigint();
    for (let i = 0; i < perBatch; i++) if (body(i) !== undefined) kept++;
    return Number(process.hrtime.bigint() - started) / perBatch;
  };
  bodies.forEach(batch);
  const fastest = bodies.map(() => Infinity);
  for (let b = 0; b < CODEC_BATCHES; b++) bodies.forEach((body, i) => (fastest[i] = Math.min(fastest[i], batch(body))));
  if (kept < 0) console.log(kept); // keeps the results observable, so that no call is optimised away
  return fastest;
}

/**
 * What each API's wire codec costs the server per message, in this process: ModelService's (src/main/codec.ts),
 * GRPCInferenceService's as served (src/main/kserve/codec.ts, which hands what it does not read to the generic one),
 * and proto-loader's generic protobufjs codec that v2 used before, on the bench's own requests and on answers of the
 * server's shape (5 float32 predictions, version "1"). The v2 answer is built the way infer.ts builds it, so that its
 * object building is counted too.
 */
function codecTimings(quick: boolean): CodecTiming[] {
  const generic = protoLoader.loadSync(KSERVE_PROTO_PATH, KSERVE_PROTO_OPTIONS)[INFERENCE_SERVICE] as grpc.ServiceDefinition;
  const count = quick ? CODEC_MESSAGES / 10 : CODEC_MESSAGES;
  const unframe = (framed: Buffer[]) => framed.map((f) => f.subarray(5));
  const seedRequests = unframe(encodeRequests(17, 1, 64));
  const v2Requests = unframe(encodeInferRequests(17, 1, 64));
  const predictions = Buffer.from(Float32Array.from([0.1, 0.2, 0.3, 0.2, 0.2]).buffer);
  const versionField = encodeVersionField('1');
  const fields = { latencyMs: 0.4, versionField, batchRows: 12, queueUs: 80, computeUs: 120, error: null };
  const inferResponse = () => ({
    model_name: 'default',
    model_version: '1',
    id: '',
    outputs: [{ name: 'output', datatype: 'FP32', shape: [1, 5] }],
    raw_output_contents: [Buffer.from(predictions)],
  });
  const genericDecode = generic.ModelInfer.requestDeserialize as (bytes: Buffer) => ModelInferRequest;
  const servedDecode = inferRequestDeserializer(genericDecode);
  const seedEncode = () => encodeResponse(predictions, 0, predictions.length, fields);
  const step = (what: string, bodies: Array<(i: number) => unknown>): CodecTiming => {
    const [seedNs, genericNs, servedNs] = nsPerCall(count, bodies);
    return { what, seedNs, genericNs, servedNs };
  };
  return [
    step('request decode (PredictRequest; ModelInferRequest)', [
      (i) => decodePredictRequest(seedRequests[i & 63]),
      (i) => genericDecode(v2Requests[i & 63]),
      (i) => servedDecode(v2Requests[i & 63]),
    ]),
    step('unary answer encode (PredictResponse; ModelInferResponse, built as infer.ts builds it)', [
      seedEncode,
      () => generic.ModelInfer.responseSerialize(inferResponse()),
      () => encodeInferResponse(inferResponse()),
    ]),
    step('stream answer encode (PredictResponse; ModelStreamInferResponse, likewise)', [
      seedEncode,
      () => generic.ModelStreamInfer.responseSerialize({ error_message: '', infer_response: inferResponse() }),
      () => encodeStreamInferResponse({ error_message: '', infer_response: inferResponse() }),
    ]),
  ];
}

/**
 * One tickserve (default config) driven by the bench's generator with both APIs in turn: Predict then ModelInfer
 * (or the other way round, alternating by round) at the same concurrency, then StreamPredict and ModelStreamInfer
 * at the same window. Interleaving puts both APIs of a pair under the same disturbances of this shared machine, so
 * the ratio is taken within each round and the median of those is the figure reported.
 */
async function v2Comparison(quick: boolean): Promise<V2Comparison> {
  const startedAt = new Date();
  const loadAverageStart = os.loadavg();
  const durationS = quick ? 1.5 : V2_DURATION_S;
  const warmupS = quick ? 0.5 : 1;
  const server = startTickserve('tickserve', await freePort(), {}, 17);
  process.on('exit', () => server.process.kill('SIGTERM'));
  try {
    await waitReady(server);
    const run = (api: Api, rpc: 'unary' | 'stream', label: string, short: boolean): Promise<LoadResult> => {
      const spec: LoadSpec = {
        target: `127.0.0.1:${server.port}`,
        api,
        rpc,
        concurrency: rpc === 'unary' ? V2_UNARY_CONCURRENCY : V2_STREAM_CONCURRENCY,
        rate: 0,
        poisson: false,
        streams: V2_STREAMS,
        rowsPerRequest: 1,
        width: 17,
        warmupS: short ? 0.5 : warmupS,
        durationS: short ? 1 : durationS,
        serverPid: server.process.pid!,
      };
      return runLoad({ ...spec, onProgress: progressBar(`${rpcName(spec)} ${label}`) });
    };
    const pair = async (rpc: 'unary' | 'stream', first: Api, label: string, short: boolean): Promise<Pair> => {
      const second: Api = first === 'seed' ? 'v2' : 'seed';
      const a = await run(first, rpc, label, short);
      const b = await run(second, rpc, label, short);
      return { [first]: a, [second]: b } as Pair;
    };
    // A round unmeasured first: the first calls of each kind pay for the server's JIT warm-up.
    await pair('unary', 'seed', 'warm-up', true);
    await pair('stream', 'seed', 'warm-up', true);
    const rounds: V2Round[] = [];
    const count = quick ? V2_QUICK_ROUNDS : V2_ROUNDS;
    for (let round = 0; round < count; round++) {
      const first: Api = round % 2 === 0 ? 'seed' : 'v2';
      const label = `round ${round + 1} of ${count}`;
      const unary = await pair('unary', first, label, false);
      const stream = await pair('stream', first, label, false);
      rounds.push({ first, unary, stream });
    }
    await stopAndWait(server);
    process.stderr.write('codec timings\n');
    const codec = codecTimings(quick);
    return {
      startedAt: startedAt.toISOString(),
      seconds: (Date.now() - startedAt.getTime()) / 1000,
      quick,
      loadAverageStart,
      loadAverageEnd: os.loadavg(),
      warmupS,
      durationS,
      rounds,
      codec,
    };
  } finally {
    server.process.kill('SIGTERM');
  }
}

const errorCount = (r: LoadResult) => Object.values(r.errors).reduce((a, b) => a + b, 0);
const errorText = (r: LoadResult) => Object.entries(r.errors).map(([code, n]) => `${code}: ${n}`).join(', ') || '0';

function v2Markdown(c: V2Comparison): string {
  const loads = (l: number[]) => l.map((v) => v.toFixed(2)).join(' / ');
  const cpus = os.cpus();
  const command = `npm run bench:compare -- --only v2${c.quick ? ' --quick' : ''}`;
  const check = (ok: boolean) => (ok ? 'met' : '**not met**');
  const sections = (['unary', 'stream'] as const).map((rpc) => {
    const pairs = c.rounds.map((r) => r[rpc]);
    const throughput = pairs.map((p) => p.v2.requestsPerSecond / p.seed.requestsPerSecond);
    const cpu = pairs.map((p) => (p.v2.serverCpuUsPerRequest ?? NaN) / (p.seed.serverCpuUsPerRequest ?? NaN));
    const errors = pairs.reduce((n, p) => n + errorCount(p.v2) + errorCount(p.seed), 0);
    const names = rpc === 'unary' ? { seed: 'Predict', v2: 'ModelInfer', unit: 'calls/s' } : { seed: 'StreamPredict', v2: 'ModelStreamInfer', unit: 'messages/s' };
    return { rpc, pairs, throughput, cpu, errors, names };
  });
  const lines = [
    V2_HEADING,
    '',
    `Generated by \`${command}\` on ${c.startedAt.slice(0, 16).replace('T', ' ')} UTC; the run took ${(c.seconds / 60).toFixed(1)} min.`,
    `Machine: ${cpus.length} × ${cpus[0]?.model ?? 'unknown CPU'}, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB, ${os.type()} ${os.release()}, Node ${process.version};`,
    `load average (1/5/15 min) ${loads(c.loadAverageStart)} at the start and ${loads(c.loadAverageEnd)} at the end. The machine was shared:`,
    'other agents\' tests and benchmarks used its two cores during the run, and the load generator runs on them too,',
    'so absolute figures swing from round to round; read the ratios, which are taken within each round.',
    '',
    'One tickserve process with the default config (`MODEL_PATH` unset: models/default.onnx, 17 features → 5 classes,',
    'served as model "default"), serving both APIs on one port, driven by the bench\'s generator (`bench/load.ts` over',
    'raw HTTP/2, `npm run bench -- --api seed|v2`). Requests are encoded once before the run: PredictRequests as',
    'packed features; ModelInferRequests with protobufjs from proto/grpc_service.proto, model "default", one FP32',
    'input "input" of shape [1, 17] in raw_input_contents, no outputs named (all answered). A call counts as failed',
    'on a grpc-status other than OK, a stream message on a non-empty error_message (ModelStreamInfer) or an error',
    `field (StreamPredict). Unary: ${V2_UNARY_CONCURRENCY} calls in flight; streams: ${V2_STREAMS} calls with ${V2_STREAM_CONCURRENCY / V2_STREAMS} messages in flight each.`,
    `Each run: ${c.warmupS} s warm-up, ${c.durationS} s measured. After a warm-up round, ${c.rounds.length} rounds; in each, the two APIs of a pair`,
    'run back to back, ModelService first in odd rounds and v2 first in even ones. Server CPU is the server process\'s',
    'user + system time (/proc/<pid>/stat) over the measured seconds, per answer. p50/p99 are at the client (v2',
    'answers carry no server timings).',
    '',
    '| target | median of the rounds\' ratios | each round | server CPU an answer, v2 / seed (median) | |',
    '|---|---|---|---|---|',
    ...sections.map(({ throughput, cpu, names }) => {
      const m = median(throughput);
      return `| ${names.v2} ≥ ${V2_TARGET}× ${names.seed}'s ${names.unit} | ${m.toFixed(2)}× | ${throughput.map((v) => `${v.toFixed(2)}×`).join(', ')} | ${median(cpu).toFixed(2)}× | ${check(m >= V2_TARGET)} |`;
    }),
    '',
  ];
  for (const { pairs, throughput, cpu, names, errors } of sections) {
    lines.push(
      `| round | first | ${names.seed} ${names.unit} | p50 / p99 ms | CPU µs | ${names.v2} ${names.unit} | p50 / p99 ms | CPU µs | v2 / seed ${names.unit} | v2 / seed CPU | errors |`,
      '|---|---|---|---|---|---|---|---|---|---|---|',
      ...pairs.map((p, i) => {
        const cells = (r: LoadResult) => [r.requestsPerSecond.toFixed(0), `${r.latencyMs.p50.toFixed(3)} / ${r.latencyMs.p99.toFixed(3)}`, (r.serverCpuUsPerRequest ?? NaN).toFixed(1)];
        const errorCell = errorCount(p.seed) + errorCount(p.v2) === 0 ? '0' : `${names.seed} ${errorText(p.seed)}; ${names.v2} ${errorText(p.v2)}`;
        return `| ${i + 1} | ${c.rounds[i].first === 'seed' ? names.seed : names.v2} | ${cells(p.seed).join(' | ')} | ${cells(p.v2).join(' | ')} | ${throughput[i].toFixed(2)}× | ${cpu[i].toFixed(2)}× | ${errorCell} |`;
      }),
      (() => {
        const med = (api: Api) => {
          const runs = pairs.map((p) => p[api]);
          return [
            median(runs.map((r) => r.requestsPerSecond)).toFixed(0),
            `${median(runs.map((r) => r.latencyMs.p50)).toFixed(3)} / ${median(runs.map((r) => r.latencyMs.p99)).toFixed(3)}`,
            median(runs.map((r) => r.serverCpuUsPerRequest ?? NaN)).toFixed(1),
          ];
        };
        return `| median | | ${med('seed').join(' | ')} | ${med('v2').join(' | ')} | ${median(throughput).toFixed(2)}× | ${median(cpu).toFixed(2)}× | ${errors} |`;
      })(),
      '',
    );
  }
  lines.push(
    'What the wire codecs cost the server per message, timed in the bench\'s process after the rounds, on the bench\'s',
    'requests and on answers of the server\'s shape (5 float32s): ModelService\'s codec (src/main/codec.ts); v2\'s as',
    'served (src/main/kserve/codec.ts, which reads the common form of request itself and hands any other to the',
    'generic codec); and proto-loader\'s generic protobufjs codec, which v2 used for every message before.',
    `${(c.quick ? CODEC_MESSAGES / 10 : CODEC_MESSAGES).toLocaleString('en')} calls of each in ${CODEC_BATCHES} batches, the codecs' batches taking turns; each figure is the fastest batch's mean`,
    '(the least disturbed by the machine\'s other work).',
    '',
    '| codec step | ModelService ns | v2 as served ns | v2 generic protobufjs ns |',
    '|---|---|---|---|',
    ...c.codec.map((t) => `| ${t.what} | ${t.seedNs.toFixed(0)} | ${t.servedNs.toFixed(0)} | ${t.genericNs.toFixed(0)} |`),
    '',
  );
  return lines.join('\n');
}

/** Telemetry rows of the targets table: the ones telemetryTargets() writes. */
const TELEMETRY_TARGET_ROW = /^\| (?:unary|stream): tracing .*\n/gm;
/** The telemetry section, up to the next section or the raw results line. */
const TELEMETRY_SECTION = /## What telemetry costs\n[\s\S]*?(?=\n## |\nRaw results: |$)/;

/** A report with its telemetry rows and section replaced (or added: rows before the RSS target, the section
 * before the raw results), the rest kept as it was. */
function spliceTelemetry(report: string, targets: string[], section: string[]): string {
  const rows = targets.map((row) => `${row}\n`).join('');
  const at = report.search(TELEMETRY_TARGET_ROW);
  let out = report.replace(TELEMETRY_TARGET_ROW, '');
  out = at >= 0 ? out.slice(0, at) + rows + out.slice(at) : out.replace(/^\| RSS under load/m, (m) => rows + m);
  const text = section.join('\n').trimEnd();
  return TELEMETRY_SECTION.test(out) ? out.replace(TELEMETRY_SECTION, text) : out.replace(/\nRaw results: /, `\n${text}\n\nRaw results: `);
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      quick: { type: 'boolean', default: false },
      peers: { type: 'string', default: path.resolve(ROOT, '..', 'shared', 'bench-peers') },
      out: { type: 'string', default: path.join(ROOT, 'docs', 'BENCHMARKS.md') },
      only: { type: 'string', default: '' },
      rounds: { type: 'string', default: '' },
    },
  });
  // --rounds: the policies' (default 3) or the telemetry cost's (default TELEMETRY_ROUNDS).
  const rounds = values.rounds ? Number(values.rounds) : undefined;
  if (rounds !== undefined && !(Number.isInteger(rounds) && rounds >= 1)) throw new Error(`--rounds ${values.rounds}: a whole number of rounds, 1 or more`);
  const telemetryRounds = rounds ?? TELEMETRY_ROUNDS;
  if (values.only === 'policies' || values.only === 'policies-report') {
    // policies-report: the section again from the last run's policies.json, without measuring anything.
    const outDir = path.join(path.dirname(values.out!), 'bench');
    mkdirSync(outDir, { recursive: true });
    const markdown = values.only === 'policies'
      ? await comparePolicies({ peers: values.peers!, rounds: rounds ?? 3, durationS: values.quick ? 1.5 : 2, outDir })
      : redrawPolicies(outDir);
    const previous = existsSync(values.out!) ? readFileSync(values.out!, 'utf8') : '# Benchmarks\n';
    writeFileSync(values.out!, replaceSection(previous, POLICIES_HEADING, markdown));
    console.log(markdown);
    return;
  }
  if (values.only === 'plots') {
    // Redraw the plots from the last run's results.json, without measuring anything.
    const outDir = path.join(path.dirname(values.out!), 'bench');
    const saved = JSON.parse(readFileSync(path.join(outDir, 'results.json'), 'utf8')) as { results: Array<{ name: string; result: LoadResult }> };
    writePlots(outDir, saved.results);
    return;
  }
  if (values.only === 'v2') {
    const comparison = await v2Comparison(values.quick!);
    const section = v2Markdown(comparison);
    const existing = existsSync(values.out!) ? readFileSync(values.out!, 'utf8') : '';
    writeFileSync(values.out!, replaceSection(existing, V2_HEADING, section));
    process.stdout.write(`${section}\nwrote ${path.relative(process.cwd(), values.out!)} (section "${V2_HEADING.slice(3)}")\n`);
    return;
  }
  if (values.only !== '' && values.only !== 'telemetry') throw new Error(`--only must be policies, policies-report, v2, telemetry or plots, got "${values.only}"`);
  if (values.only === 'telemetry') {
    if (!hasH2load()) throw new Error('the telemetry cost needs h2load (Debian nghttp2-client)');
    const started = Date.now();
    const loadBefore = os.loadavg();
    const costs = await telemetryCost(values.quick!, telemetryRounds);
    const command = `npm run bench:compare -- --only telemetry${values.quick ? ' --quick' : ''}${telemetryRounds !== TELEMETRY_ROUNDS ? ` --rounds ${telemetryRounds}` : ''}`;
    const targets = telemetryTargets(costs);
    const section = telemetrySection(costs, values.quick!, telemetryRounds, measuredLine(command, loadBefore, started));
    console.log([...targets, '', ...section].join('\n'));
    if (existsSync(values.out!)) {
      writeFileSync(values.out!, spliceTelemetry(readFileSync(values.out!, 'utf8'), targets, section));
      console.log(`\nrewrote the telemetry section and targets of ${path.relative(process.cwd(), values.out!)}`);
    }
    return;
  }
  const quick = values.quick!;
  const startedAt = Date.now();
  const loadAtStart = os.loadavg();
  const durationS = quick ? 1.5 : 4;
  const warmupS = quick ? 0.5 : 1;
  const outDir = path.join(path.dirname(values.out!), 'bench');
  mkdirSync(outDir, { recursive: true });

  const targets: Target[] = [];
  const notes: string[] = [];
  const stopAll = () => targets.forEach((t) => t.process.kill('SIGTERM'));
  process.on('exit', stopAll);
  process.on('SIGINT', () => process.exit(130));

  const tickserve = startTickserve('tickserve', 50151, {}, 17);
  const batchOne = startTickserve('tickserve MAX_BATCH_SIZE=1', 50152, { MAX_BATCH_SIZE: '1' }, 17);
  targets.push(tickserve, batchOne);
  const echoPath = path.join(values.peers!, 'echo-server.cjs');
  if (existsSync(echoPath)) {
    const child = spawn(process.execPath, [echoPath], {
      env: { ...process.env, NODE_PATH: path.join(ROOT, 'node_modules'), PORT: '50161' },
      stdio: 'ignore',
    });
    targets.push({ name: 'echo (grpc-js, no model)', port: 50161, width: 17, process: child });
  } else notes.push(`The echo peer was not found at ${echoPath}; it was not measured.`);
  const seedPath = path.join(values.peers!, 'seed_server.py');
  if (existsSync(seedPath) && hasSeedPython()) {
    const child = spawn('/usr/bin/python3', [seedPath, '--port', '50162', '--dims', '17,48,48,5'], { stdio: 'ignore' });
    targets.push({ name: 'seed (Python, grpcio + torch)', port: 50162, width: 17, process: child });
  } else notes.push('The seed Python server needs Debian\'s python3-grpcio, python3-grpc-tools and python3-torch; it was not measured.');
  const heavy = startTickserve('tickserve heavy', 50153, { MODEL_PATH: HEAVY_MODEL }, 256);
  const heavyOne = startTickserve('tickserve heavy MAX_BATCH_SIZE=1', 50154, { MODEL_PATH: HEAVY_MODEL, MAX_BATCH_SIZE: '1' }, 256);
  targets.push(heavy, heavyOne);
  for (const t of targets) await waitReady(t);
  const small = targets.filter((t) => t.width === 17);

  const results: Array<{ name: string; result: LoadResult }> = [];
  const measure = async (target: Target, spec: Partial<LoadSpec> & Pick<LoadSpec, 'rpc'>): Promise<LoadResult> => {
    const full: LoadSpec = {
      target: `127.0.0.1:${target.port}`,
      concurrency: 1,
      rate: 0,
      poisson: false,
      streams: 4,
      rowsPerRequest: 1,
      width: target.width,
      warmupS,
      durationS,
      ...spec,
    };
    const label = `${target.name} ${full.rpc} ${full.rate > 0 ? `rate=${full.rate}` : `c=${full.concurrency}`}`;
    const result = await runLoad({ ...full, onProgress: progressBar(label) });
    results.push({ name: target.name, result });
    return result;
  };

  // 1. Unary and stream concurrency sweeps on the small model, the targets taking turns at each point.
  const unaryLevels = quick ? [1, 16, 64] : [1, 4, 16, 64, 128];
  const streamLevels = quick ? [16, 256] : [16, 64, 256, 1024];
  const sweep: Record<string, { unary: LoadResult[]; stream: LoadResult[] }> = {};
  for (const t of small) sweep[t.name] = { unary: [], stream: [] };
  for (const concurrency of unaryLevels) for (const t of small) sweep[t.name].unary.push(await measure(t, { rpc: 'unary', concurrency }));
  for (const concurrency of streamLevels) for (const t of small) sweep[t.name].stream.push(await measure(t, { rpc: 'stream', concurrency }));
  const peak = (name: string, rpc: 'unary' | 'stream') => Math.max(0, ...(sweep[name]?.[rpc] ?? []).map((r) => r.requestsPerSecond));

  // 2. Open loop (Poisson) at half of tickserve's highest unary rate, and, for every small-model server, at one
  // common rate that the slowest of them sustains: the tail a user sees at a comfortable load.
  const halfRate = Math.round(peak(tickserve.name, 'unary') / 2);
  const openLoop = await measure(tickserve, { rpc: 'unary', rate: halfRate, poisson: true, durationS: durationS * 2 });
  const halfStreamRate = Math.round(peak(tickserve.name, 'stream') / 2);
  const openStream = await measure(tickserve, { rpc: 'stream', rate: halfStreamRate, poisson: true, durationS: durationS * 2 });
  const commonRate = Math.round(Math.min(1000, ...small.map((t) => peak(t.name, 'unary') / 2)) / 100) * 100;
  const openCommon: Record<string, LoadResult> = {};
  for (const t of small) openCommon[t.name] = await measure(t, { rpc: 'unary', rate: commonRate, poisson: true, durationS: durationS * 2 });
  const rss = rssMB(tickserve.process.pid!);

  // 3. The heavy model. One row a request, batching on and off (MAX_BATCH_SIZE=1 admits no more). Then requests of
  // 16 rows, so that the main thread is not the limit, against onnxruntime in-process at the batch size reached.
  const heavyOn = await measure(heavy, { rpc: 'unary', concurrency: 64 });
  const heavyOff = await measure(heavyOne, { rpc: 'unary', concurrency: 64 });
  const heavyBound = await measure(heavy, { rpc: 'unary', concurrency: 16, rowsPerRequest: 16 });
  const heavyBatch = Math.max(1, Math.round(heavyBound.server?.batchRowsMean ?? 1));
  const inProcess = await inProcessRowsPerSecond(HEAVY_MODEL, heavyBatch, durationS);

  // 4. gzip: where it pays and where it costs (small and large requests, same load).
  const gzipRuns: Array<{ rows: number; gzip: boolean; result: LoadResult }> = [];
  for (const rows of [1, 64]) {
    for (const gzip of [false, true]) {
      gzipRuns.push({ rows, gzip, result: await measure(tickserve, { rpc: 'unary', concurrency: 16, rowsPerRequest: rows, gzip }) });
    }
  }

  // 5. h2load, where installed, against the small-model servers and the heavy pair: an unrecorded warm-up round,
  // then rounds that take turns server by server; each figure is the median of its rounds. One run each swung
  // ±10% between runs on this shared machine, enough to flip a 0.9× target either way.
  const h2: H2loadResult[] = [];
  if (hasH2load()) {
    const runs: Array<[Target, 'unary' | 'stream']> = [];
    for (const rpc of ['unary', 'stream'] as const) for (const t of [...small, heavy, heavyOne]) {
      if (rpc === 'stream' && t.width !== 17) continue;
      runs.push([t, rpc]);
    }
    const rounds = quick ? 1 : H2LOAD_ROUNDS;
    const byRun: H2loadResult[][] = runs.map(() => []);
    for (let round = -1; round < rounds; round++) {
      runs.forEach(([t, rpc], i) => {
        process.stderr.write(`h2load ${t.name} ${rpc}, ${round < 0 ? 'warm-up' : `round ${round + 1} of ${rounds}`}\n`);
        const result = h2load(t, rpc, quick || round < 0);
        if (round >= 0) byRun[i].push(result);
      });
    }
    for (const results of byRun) h2.push(medianRun(results));
  } else notes.push('h2load (Debian nghttp2-client) is not installed; the independent load generator was not run.');
  // The peak again once h2load has had 256 unary calls in flight at a time (VmHWM only grows).
  const rssWithH2load = rssMB(tickserve.process.pid!);
  stopAll();

  // 6. What telemetry costs (h2load only: the cheaper generator shows the server's own cost best).
  const costs = hasH2load() ? await telemetryCost(quick, TELEMETRY_ROUNDS) : [];
  if (!costs.length) notes.push('The telemetry cost needs h2load; it was not measured.');

  // Plots, data, report.
  writePlots(outDir, results);
  writeFileSync(path.join(outDir, 'results.json'), JSON.stringify({ results, h2load: h2, inProcess, rss, rssWithH2load, halfRate }, null, 2));
  writeFileSync(path.join(outDir, 'results.csv'), csv(results));

  const echo = small.find((t) => t.name.startsWith('echo'));
  const seed = small.find((t) => t.name.startsWith('seed'));
  const h2Of = (name: string | undefined, rpc: string) => h2.find((r) => r.target === name && r.rpc === rpc)?.messagesPerSecond ?? 0;
  const p99At = (name: string, level: number) => sweep[name]?.unary[unaryLevels.indexOf(level)]?.latencyMs.p99 ?? NaN;
  const check = (ok: boolean) => (ok ? 'met' : '**not met**');
  const targetsTable = [
    '| target | measured | |',
    '|---|---|---|',
    echo ? `| unary ≥ 0.9× echo (bench tool, peak of sweep) | ${ratio(peak(tickserve.name, 'unary'), peak(echo.name, 'unary'))} | ${check(peak(tickserve.name, 'unary') >= 0.9 * peak(echo.name, 'unary'))} |` : '',
    echo && h2.length ? `| unary ≥ 0.9× echo (h2load) | ${ratio(h2Of(tickserve.name, 'unary'), h2Of(echo.name, 'unary'))} | ${check(h2Of(tickserve.name, 'unary') >= 0.9 * h2Of(echo.name, 'unary'))} |` : '',
    echo ? `| stream ≥ 0.9× echo (bench tool, peak of sweep) | ${ratio(peak(tickserve.name, 'stream'), peak(echo.name, 'stream'))} | ${check(peak(tickserve.name, 'stream') >= 0.9 * peak(echo.name, 'stream'))} |` : '',
    echo && h2.length ? `| stream ≥ 0.9× echo (h2load) | ${ratio(h2Of(tickserve.name, 'stream'), h2Of(echo.name, 'stream'))} | ${check(h2Of(tickserve.name, 'stream') >= 0.9 * h2Of(echo.name, 'stream'))} |` : '',
    seed ? `| unary ≥ 10× seed | ${ratio(peak(tickserve.name, 'unary'), peak(seed.name, 'unary'))} | ${check(peak(tickserve.name, 'unary') >= 10 * peak(seed.name, 'unary'))} |` : '',
    seed ? `| stream ≥ 30× seed | ${ratio(peak(tickserve.name, 'stream'), peak(seed.name, 'stream'))} | ${check(peak(tickserve.name, 'stream') >= 30 * peak(seed.name, 'stream'))} |` : '',
    seed && h2.length ? `| unary ≥ 10× seed (h2load) | ${ratio(h2Of(tickserve.name, 'unary'), h2Of(seed.name, 'unary'))} | ${check(h2Of(tickserve.name, 'unary') >= 10 * h2Of(seed.name, 'unary'))} |` : '',
    seed && h2.length ? `| stream ≥ 30× seed (h2load) | ${ratio(h2Of(tickserve.name, 'stream'), h2Of(seed.name, 'stream'))} | ${check(h2Of(tickserve.name, 'stream') >= 30 * h2Of(seed.name, 'stream'))} |` : '',
    seed ? `| p99 ≥ 10× lower than seed (unary, closed loop c=64) | ${p99At(tickserve.name, 64).toFixed(3)} ms vs ${p99At(seed.name, 64).toFixed(3)} ms: ${ratio(p99At(seed.name, 64), p99At(tickserve.name, 64))} | ${check(p99At(seed.name, 64) >= 10 * p99At(tickserve.name, 64))} |` : '',
    seed ? `| p99 ≥ 10× lower than seed (unary, open loop ${commonRate}/s) | ${openCommon[tickserve.name].latencyMs.p99.toFixed(3)} ms vs ${openCommon[seed.name].latencyMs.p99.toFixed(3)} ms: ${ratio(openCommon[seed.name].latencyMs.p99, openCommon[tickserve.name].latencyMs.p99)} | ${check(openCommon[seed.name].latencyMs.p99 >= 10 * openCommon[tickserve.name].latencyMs.p99)} |` : '',
    `| heavy model: batching ≥ 4× MAX_BATCH_SIZE=1 (bench tool, c=64) | ${ratio(heavyOn.rowsPerSecond, heavyOff.rowsPerSecond)} (${heavyOn.rowsPerSecond.toFixed(0)} vs ${heavyOff.rowsPerSecond.toFixed(0)} rows/s) | ${check(heavyOn.rowsPerSecond >= 4 * heavyOff.rowsPerSecond)} |`,
    h2.length ? `| heavy model: batching ≥ 4× MAX_BATCH_SIZE=1 (h2load) | ${ratio(h2Of(heavy.name, 'unary'), h2Of(heavyOne.name, 'unary'))} (${h2Of(heavy.name, 'unary').toFixed(0)} vs ${h2Of(heavyOne.name, 'unary').toFixed(0)} rows/s) | ${check(h2Of(heavy.name, 'unary') >= 4 * h2Of(heavyOne.name, 'unary'))} |` : '',
    `| heavy model: ≥ 0.8× onnxruntime in-process at the same batch size (${heavyBatch} rows, 1 thread; 16-row requests) | ${ratio(heavyBound.rowsPerSecond, inProcess)} (${heavyBound.rowsPerSecond.toFixed(0)} vs ${inProcess.toFixed(0)} rows/s) | ${check(heavyBound.rowsPerSecond >= 0.8 * inProcess)} |`,
    `| StreamPredict p99 ≤ 2 ms at half the highest stream rate (${halfStreamRate}/s, Poisson) | ${openStream.latencyMs.p99.toFixed(3)} ms at the client; ${serverP99(openStream)} | ${check(openStream.latencyMs.p99 <= 2)} |`,
    `| p99 ≤ 2 ms at half the highest unary rate (${halfRate}/s, Poisson) | ${openLoop.latencyMs.p99.toFixed(3)} ms at the client; ${serverP99(openLoop)}${echo ? `; echo at ${commonRate}/s: ${openCommon[echo.name].latencyMs.p99.toFixed(3)} ms` : ''} | ${check(openLoop.latencyMs.p99 <= 2)} |`,
    ...telemetryTargets(costs),
    `| RSS under load ≤ 300 MB | ${rss.peak.toFixed(0)} MB peak through the bench tool's runs (${rss.rss.toFixed(0)} MB after them)${h2.length ? `; ${rssWithH2load.peak.toFixed(0)} MB peak once h2load had run too` : ''} | ${check(Math.max(rss.peak, rssWithH2load.peak) <= 300)} |`,
  ].filter((line) => line !== '');

  const cpus = os.cpus();
  const report = [
    '# Benchmarks',
    '',
    `Generated by \`npm run bench:compare${quick ? ' -- --quick' : ''}\` on ${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC.`,
    `Machine: ${cpus.length} × ${cpus[0]?.model ?? 'unknown CPU'}, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB, ${os.type()} ${os.release()}, Node ${process.version}.`,
    'All servers ran side by side in one run and took turns under the same load; the load generator shares the two',
    'cores with them, so absolute numbers are low and drift from run to run (this machine is shared): read the ratios.',
    'On two cores the client, tickserve\'s gRPC thread and its ONNX worker contend for CPU; the latency tails below',
    'are largely that contention, as the echo server, which does no work at all, shows at the same load.',
    '',
    '## Targets',
    '',
    ...targetsTable,
    '',
    '## Predict and StreamPredict, small model (17 features → 5 classes), closed loop',
    '',
    'Load: `bench/load.ts` over raw HTTP/2 (`npm run bench`); c = requests in flight (streams: spread over 4 calls).',
    'Server figures (batch rows, queue, compute) come from the trailers (Predict) or response fields (StreamPredict);',
    '"server µs" is the answer\'s latency_ms, the server\'s own time from receipt of a request to its result. Queue and',
    'compute leave out the hand-offs between the gRPC thread and the worker (a piscina round trip is ~40–60 µs at p50',
    'here) and the decode; where the client\'s p99 is far above the server\'s, the tail is outside the server.',
    '',
    markdownTable(results.filter((r) => small.some((t) => t.name === r.name) && r.result.spec.rate === 0)),
    '',
    '![Predict latency vs throughput](bench/unary.svg)',
    '',
    '![StreamPredict latency vs throughput](bench/stream.svg)',
    '',
    '## Open loop at half the highest rate',
    '',
    'Poisson arrivals; latency counts from each request\'s intended send time. A worker thread keeps the schedule',
    'with sub-millisecond sleeps (bench/ticker.ts), so requests go out within ~0.1 ms of their time; with the main',
    'thread\'s 1 ms timers they went out up to a tick late, which added ~0.8 ms to the echo server\'s p50 at 1000/s.',
    'The generator is a Node process: at 4,000 calls/s its scavenges take 3–7 ms every ~150 ms (`--trace-gc`), and',
    'requests in flight or due during one wait for it. That lands in the tail of every server here alike; the',
    'server\'s own queue and compute percentiles, from the response fields, are in the table.',
    '',
    markdownTable([
      { name: tickserve.name, result: openLoop },
      { name: tickserve.name, result: openStream },
      ...small.map((t) => ({ name: t.name, result: openCommon[t.name] })),
    ]),
    '',
    '## Heavy model (256 features, 3 × 1024 hidden, ~4.5 MFLOP a row)',
    '',
    markdownTable([{ name: heavy.name, result: heavyOn }, { name: heavyOne.name, result: heavyOff }, { name: heavy.name, result: heavyBound }]),
    '',
    `onnxruntime in-process, ${heavyBatch} rows a run, 1 intra-op thread: ${inProcess.toFixed(0)} rows/s.`,
    '',
    ...(h2.length
      ? [
          '## h2load (independent load generator)',
          '',
          'Predict (every server): `h2load -c 8 -m 32 -t 1`; StreamPredict (small model): streams of 100 messages, `-c 4 -m 8 -t 1`.',
          `After a warm-up round, ${quick ? 'one round' : `${H2LOAD_ROUNDS} rounds`} in which the servers take turns; messages/s is the median round (the`,
          'targets above use it), server CPU a message is from that round.',
          '',
          '| target | rpc | messages/s (median) | each round | server CPU µs a message | succeeded | failed |',
          '|---|---|---|---|---|---|---|',
          ...h2.map((r) => `| ${r.target} | ${r.rpc} | ${r.messagesPerSecond.toFixed(0)} | ${(r.rounds ?? [r.messagesPerSecond]).map((v) => v.toFixed(0)).join(', ')} | ${r.cpuUsPerMessage.toFixed(1)} | ${r.succeeded} | ${r.failed} |`),
          '',
        ]
      : []),
    '## gzip',
    '',
    'Predict, c=16, requests sent gzip-compressed (pre-compressed once, so the client\'s own compression is not',
    'counted) or not. Features are float32s, which compress poorly.',
    '',
    '| rows a request | request bytes, plain | gzip | calls/s plain | gzip | rows/s plain | gzip |',
    '|---|---|---|---|---|---|---|',
    ...[1, 64].map((rows) => {
      const plain = gzipRuns.find((g) => g.rows === rows && !g.gzip)!.result;
      const zipped = gzipRuns.find((g) => g.rows === rows && g.gzip)!.result;
      return `| ${rows} | ${plain.requestBytes} | ${zipped.requestBytes} | ${plain.requestsPerSecond.toFixed(0)} | ${zipped.requestsPerSecond.toFixed(0)} | ${plain.rowsPerSecond.toFixed(0)} | ${zipped.rowsPerSecond.toFixed(0)} |`;
    }),
    '',
    ...telemetrySection(costs, quick, TELEMETRY_ROUNDS, measuredLine(`npm run bench:compare${quick ? ' -- --quick' : ''}`, loadAtStart, startedAt)),
    ...(notes.length ? ['## Not measured', '', ...notes.map((n) => `- ${n}`), ''] : []),
    'Raw results: [bench/results.json](bench/results.json), [bench/results.csv](bench/results.csv).',
    '',
  ].join('\n');
  // Sections written by other runs into the same file (`--only v2`'s, bench:reload's) are kept as they are.
  const previous = existsSync(values.out!) ? readFileSync(values.out!, 'utf8') : '';
  const kept = [V2_HEADING, RELOAD_HEADING, POLICIES_HEADING]
    .map((heading) => new RegExp(`\\n${heading}\\n[\\s\\S]*?(?=\\n## |$)`).exec(previous)?.[0] ?? '')
    .join('');
  writeFileSync(values.out!, report.trimEnd() + '\n' + kept);
  console.log(targetsTable.join('\n'));
  console.log(`\nwrote ${path.relative(process.cwd(), values.out!)}`);
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
