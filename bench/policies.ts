// The batch delay policies side by side (`npm run bench:compare -- --only policies`): BATCH_DELAY=adaptive against
// fixed delays of 0, 100 µs and 1 ms, MAX_BATCH_SIZE=1 and the do-nothing echo server, each a server of its own,
// all running at once and taking turns under the same load: closed loop at 1, 8 and 64 calls in flight (small model),
// 64 in flight on the heavy model, and Poisson arrivals at half the highest rate. Every round starts every server
// afresh, so that no process's own bias lasts longer than a round. Every figure is per round; the
// ratios are taken within a round (the servers of a round ran seconds apart, on a shared machine whose speed drifts
// by more than the differences sought) and their median is reported. Server CPU per call is from /proc, over each
// run's measured window. Two controls tell a policy's difference from the machine's: a second adaptive server on
// each model (an A/A pair: two processes of one build, whose differences are noise alone) wherever a target is
// judged, which gives every verdict its noise band; and the echo server in the open loops (what the load generator
// and the machine alone do to a tail).
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { measureHop, type HopFigures } from './hop';
import { encodeRequests, processCpuMs as cpuMs, runLoad, type LoadResult, type LoadSpec } from './load';
import { latencyPlot, type PlotSeries } from './plot';
import { hasH2load, HEAVY_MODEL, ROOT, runH2load, startTickserve, stopAndWait, waitReady, type Target } from './servers';
import { median, noiseBand, ratiosByRound, verdict } from './stats';

/** One measured run: the load's result and the server's CPU per call over the same window. */
export interface PolicyRun {
  server: string;
  load: string;
  round: number;
  result: LoadResult;
  cpuUsPerCall: number;
}

/** One closed-loop run under h2load (one connection, `concurrency` calls in flight). */
interface H2Run {
  server: string;
  concurrency: number;
  round: number;
  callsPerSecond: number;
  meanUs: number;
  cpuUsPerCall: number;
  failed: number;
}

/** h2load, closed loop, for `durationS` after a 0.5 s warm-up: calls/s, mean round trip and the server's CPU a call. */
function h2Closed(server: Target, concurrency: number, round: number, durationS: number, dir: string): H2Run {
  const body = path.join(dir, `w${server.width}.bin`);
  if (!existsSync(body)) writeFileSync(body, encodeRequests(server.width, 1, 1)[0]);
  const cpuBefore = cpuMs(server.process.pid!);
  const { perSecond: callsPerSecond, succeeded, failed, meanUs } = runH2load([
    '-D', `${Math.round(durationS * 1000)}ms`, '--warm-up-time', '500ms', '-c', '1', '-m', String(concurrency), '-t', '1',
    '-H', 'content-type: application/grpc', '-H', 'te: trailers', '-d', body,
    `http://127.0.0.1:${server.port}/inference.ModelService/Predict`,
  ]);
  const cpu = cpuMs(server.process.pid!) - cpuBefore;
  // The CPU window includes h2load's warm-up half second: counted against the calls of both.
  const calls = succeeded + Math.round(callsPerSecond * 0.5);
  const run = { server: server.name, concurrency, round, callsPerSecond, meanUs, cpuUsPerCall: (cpu * 1000) / Math.max(1, calls), failed };
  process.stderr.write(`h2load c=${concurrency} ${server.name} round ${round}: ${callsPerSecond.toFixed(0)}/s mean ${meanUs.toFixed(0)} µs cpu ${run.cpuUsPerCall.toFixed(0)} µs/call\n`);
  return run;
}

/** `list` rotated by `by`: each round starts with another server, so that none always runs first (or after one). */
const rotate = <T>(list: T[], by: number): T[] => list.map((_, i) => list[(i + by) % list.length]);

export interface PolicyOptions {
  peers: string;
  rounds: number;
  durationS: number;
  /** Where the plot goes (docs/bench). */
  outDir: string;
}

/** The policies as servers: name and environment. */
const SMALL: Array<[string, Record<string, string>]> = [
  ['MAX_BATCH_SIZE=1', { MAX_BATCH_SIZE: '1', BATCH_DELAY: 'fixed', MAX_QUEUE_DELAY_US: '0' }],
  ['adaptive (bound 100 µs)', { BATCH_DELAY: 'adaptive' }],
  ['fixed 0', { BATCH_DELAY: 'fixed', MAX_QUEUE_DELAY_US: '0' }],
  ['fixed 100 µs', { BATCH_DELAY: 'fixed', MAX_QUEUE_DELAY_US: '100' }],
  ['fixed 1 ms', { BATCH_DELAY: 'fixed', MAX_QUEUE_DELAY_US: '1000' }],
];

const ECHO = 'echo (grpc-js, no model)';

/** The A/A controls: a second server of the adaptive policy, on each model. */
const TWIN = 'adaptive, second process (A/A)';
const HEAVY_TWIN = `heavy ${TWIN}`;

/** The open-loop tail targets' threshold: a p99 within 5% of the best fixed delay's counts as no worse. */
const P99_MARGIN = 1.05;

/** What a report reads of a list of runs: a server's runs under a load (by its key), in round order, and their figures. */
type Run = { server: string; round: number };
interface Figures<R extends Run> {
  of(server: string, key: string | number): R[];
  med(server: string, key: string | number, pick: (r: R) => number): number;
  /** a's figure over b's, a ratio for each round both ran. */
  ratios(a: string, b: string, key: string | number, pick: (r: R) => number): number[];
  /** The median of those ratios. */
  paired(a: string, b: string, key: string | number, pick: (r: R) => number): number;
  /** Of `names`, the one whose median figure is highest (or lowest); the first on a tie. */
  best(names: string[], key: string | number, pick: (r: R) => number, higher: boolean): string;
}

function figures<R extends Run>(runs: R[], keyOf: (r: R) => string | number): Figures<R> {
  const of = (server: string, key: string | number) => runs.filter((r) => r.server === server && keyOf(r) === key).sort((a, b) => a.round - b.round);
  const med = (server: string, key: string | number, pick: (r: R) => number) => median(of(server, key).map(pick));
  const ratios = (a: string, b: string, key: string | number, pick: (r: R) => number) => ratiosByRound(of(a, key), of(b, key), pick);
  return {
    of,
    med,
    ratios,
    paired: (a, b, key, pick) => median(ratios(a, b, key, pick)),
    best: (names, key, pick, higher) => names.reduce((b, n) => ((higher ? med(n, key, pick) > med(b, key, pick) : med(n, key, pick) < med(b, key, pick)) ? n : b)),
  };
}

/** The bursty pattern: on 50 ms, off 50 ms, so twice the mean rate while on. */
const BURSTS = { onMs: 50, offMs: 50 };

/** The report's section heading. */
export const POLICIES_HEADING = '## Batch delay policies';

/** One round's servers: each policy on the small model, the A/A twins, each delay policy on the heavy model, echo. */
interface RoundServers {
  servers: Target[];
  twin: Target;
  heavy: Target[];
  heavyTwin: Target;
  echo: Target | null;
  all: Target[];
}

/** Starts every server afresh (fixed ports: the last round's have exited); the caller waits until each listens. */
function startRound(echoPath: string | null): RoundServers {
  const servers = SMALL.map(([name, env], i) => startTickserve(name, 50201 + i, env, 17));
  const twin = startTickserve(TWIN, 50209, SMALL[1][1], 17);
  const heavy = SMALL.slice(1).map(([name, env], i) => startTickserve(`heavy ${name}`, 50211 + i, { ...env, MODEL_PATH: HEAVY_MODEL }, 256));
  const heavyTwin = startTickserve(HEAVY_TWIN, 50219, { ...SMALL[1][1], MODEL_PATH: HEAVY_MODEL }, 256);
  let echo: Target | null = null;
  if (echoPath !== null) {
    const child = spawn(process.execPath, [echoPath], { env: { ...process.env, NODE_PATH: path.join(ROOT, 'node_modules'), PORT: '50220' }, stdio: 'ignore' });
    echo = { name: ECHO, port: 50220, width: 17, process: child };
  }
  return { servers, twin, heavy, heavyTwin, echo, all: [...(echo ? [echo] : []), ...servers, twin, ...heavy, heavyTwin] };
}

/** Runs the comparison; returns its section of the report (Markdown). */
export async function comparePolicies(options: PolicyOptions): Promise<string> {
  const loadAverageStart = os.loadavg();
  // The worker hop's pieces first, with nothing else running.
  const hop = await measureHop();
  const echoScript = path.join(options.peers, 'echo-server.cjs');
  const echoPath = existsSync(echoScript) ? echoScript : null;
  const runs: PolicyRun[] = [];
  const h2runs: H2Run[] = [];
  const measure = async (server: Target, load: string, round: number, spec: Partial<LoadSpec>): Promise<PolicyRun> => {
    const warmupS = 0.5;
    let cpuAtStart = NaN;
    const result = await runLoad({
      target: `127.0.0.1:${server.port}`,
      rpc: 'unary',
      concurrency: 1,
      rate: 0,
      poisson: false,
      streams: 4,
      rowsPerRequest: 1,
      width: server.width,
      warmupS,
      durationS: options.durationS,
      ...spec,
      // The tick that starts the measured window reports progress in the same turn: the CPU count starts there.
      onProgress: (fraction) => {
        if (Number.isNaN(cpuAtStart) && fraction >= warmupS / (warmupS + (spec.durationS ?? options.durationS))) cpuAtStart = cpuMs(server.process.pid!);
      },
    });
    const cpuUsPerCall = ((cpuMs(server.process.pid!) - cpuAtStart) * 1000) / Math.max(1, result.requests);
    const run = { server: server.name, load, round, result, cpuUsPerCall };
    process.stderr.write(`${load} ${server.name} round ${round}: ${result.requestsPerSecond.toFixed(0)}/s mean ${(result.latencyMs.mean * 1000).toFixed(0)} µs p99 ${(result.latencyMs.p99 * 1000).toFixed(0)} µs cpu ${cpuUsPerCall.toFixed(0)} µs/call batch ${result.server?.batchRowsMean.toFixed(1) ?? '-'}\n`);
    if (round > 0) runs.push(run);
    return run;
  };
  const h2dir = hasH2load() ? mkdtempSync(path.join(os.tmpdir(), 'policies-')) : null;
  // The open loops' rate: half the highest closed-loop rate any policy reached in the first round.
  let half = 0;
  let current: RoundServers | null = null;
  const stopCurrent = () => current?.all.forEach((s) => s.process.kill('SIGTERM'));
  process.on('exit', stopCurrent);
  try {
    for (let round = 1; round <= options.rounds; round++) {
      // Every round starts every server afresh and warms it up unmeasured (JIT, onnxruntime's first runs): a process
      // keeps a bias of its own for as long as it lives (the A/A pair read up to 15% apart through a whole run in
      // one process each), and fresh ones every round make it a round's noise, which the medians of ratios absorb.
      current = startRound(echoPath);
      const { servers, twin, heavy, heavyTwin, echo, all } = current;
      for (const s of all) await waitReady(s, 300);
      for (const s of all) await measure(s, 'warm-up', 0, { concurrency: 8, durationS: 1 });
      // Where h2load is installed, the closed loops under it first: a load generator in C, whose own cost per call
      // is a fraction of the Node one's, so the servers' differences show in the figures rather than the generator's.
      if (h2dir !== null) {
        for (const concurrency of [1, 64]) {
          for (const s of rotate(concurrency === 1 ? [...(echo ? [echo] : []), ...servers, twin] : [...servers, twin], round)) h2runs.push(h2Closed(s, concurrency, round, options.durationS, h2dir));
        }
        // Heavy model runs are filed as concurrency -64.
        for (const s of rotate([...heavy, heavyTwin], round)) h2runs.push({ ...h2Closed(s, 64, round, options.durationS, h2dir), concurrency: -64 });
      }
      for (const concurrency of LEVELS) {
        const list = concurrency === 8 ? servers : [...(concurrency === 1 && echo ? [echo] : []), ...servers, twin];
        for (const s of rotate(list, round)) await measure(s, `c=${concurrency}`, round, { concurrency });
      }
      for (const s of rotate([...heavy, heavyTwin], round)) await measure(s, 'heavy c=64', round, { concurrency: 64 });
      if (round === 1) {
        const peak = Math.max(...servers.map((s) => runs.find((r) => r.server === s.name && r.load === 'c=64')!.result.requestsPerSecond));
        half = Math.round(peak / 2 / 100) * 100;
      }
      const openLoopServers = [...servers, twin, ...(echo ? [echo] : [])];
      for (const s of rotate(openLoopServers, round)) await measure(s, `poisson ${half}/s`, round, { rate: half, poisson: true, durationS: options.durationS });
      // The same mean rate in on/off bursts: Poisson arrivals at the peak rate for 50 ms, then 50 ms of nothing.
      for (const s of rotate(openLoopServers, round)) await measure(s, `bursts ${half}/s`, round, { rate: half, poisson: true, bursts: BURSTS, durationS: options.durationS });
      await Promise.all(all.map(stopAndWait));
      current = null;
    }
    const results: PolicyResults = {
      runOn: new Date().toISOString().slice(0, 16).replace('T', ' '),
      cores: os.cpus().length,
      loadAverage: { start: loadAverageStart, end: os.loadavg() },
      rounds: options.rounds,
      durationS: options.durationS,
      half,
      echo: echoPath !== null,
      hop,
      runs,
      h2load: h2runs,
    };
    writeFileSync(path.join(options.outDir, 'policies.json'), JSON.stringify(results, null, 2));
    return report(results, options.outDir);
  } finally {
    stopCurrent();
    process.removeListener('exit', stopCurrent);
  }
}

/** Everything a report is drawn from, saved as docs/bench/policies.json (`--only policies-report` redraws it). */
export interface PolicyResults {
  /** When the run ended, UTC, "YYYY-MM-DD HH:MM". */
  runOn: string;
  cores: number;
  loadAverage: { start: number[]; end: number[] };
  rounds: number;
  durationS: number;
  /** The open loops' rate, calls/s. */
  half: number;
  /** Whether the echo server ran. */
  echo: boolean;
  hop: HopFigures;
  runs: PolicyRun[];
  h2load: H2Run[];
}

/** Closed-loop concurrencies under the Node generator. */
const LEVELS = [1, 8, 64];

/** The report from a saved run (docs/bench/policies.json), without measuring anything; the plot is redrawn too. */
export function redrawPolicies(outDir: string): string {
  return report(JSON.parse(readFileSync(path.join(outDir, 'policies.json'), 'utf8')) as PolicyResults, outDir);
}

function report(results: PolicyResults, outDir: string): string {
  const { runs, h2load: h2runs, half, hop } = results;
  const named = (name: string) => ({ name });
  const servers = SMALL.map(([name]) => named(name));
  const twin = named(TWIN);
  const heavy = SMALL.slice(1).map(([name]) => named(`heavy ${name}`));
  const heavyTwin = named(HEAVY_TWIN);
  const echo = results.echo ? named(ECHO) : null;
  const node = figures(runs, (r) => r.load);
  const h2 = figures(h2runs, (r) => r.concurrency);
  const { of, med, ratios, paired } = node;
  const rate = (r: PolicyRun) => r.result.requestsPerSecond;
  const mean = (r: PolicyRun) => r.result.latencyMs.mean;
  const p99 = (r: PolicyRun) => r.result.latencyMs.p99;
  const cpu = (r: PolicyRun) => r.cpuUsPerCall;
  /** The server's own p99, receipt to result (the answers' latency_ms): none of the generator's queueing in it. */
  const serverP99 = (r: PolicyRun) => r.result.server?.serverUsP99 ?? NaN;
  const calls = (r: H2Run) => r.callsPerSecond;
  const roundTrip = (r: H2Run) => r.meanUs;
  const h2cpu = (r: H2Run) => r.cpuUsPerCall;
  const table = (load: string, list: Array<{ name: string }>, baseline: string) => [
    `| server | calls/s (each round) | calls/s vs ${baseline} | mean µs | p99 µs | p99 µs each round | server's own p99 µs | CPU µs a call | CPU vs ${baseline} | batch rows |`,
    '|---|---|---|---|---|---|---|---|---|---|',
    ...list.map((s) => {
      const rounds = of(s.name, load);
      const echoed = s.name.startsWith('echo');
      return `| ${s.name} | ${rounds.map((r) => rate(r).toFixed(0)).join(', ')} | ${paired(s.name, baseline, load, rate).toFixed(2)}× | ${(med(s.name, load, mean) * 1000).toFixed(0)} | ${(med(s.name, load, p99) * 1000).toFixed(0)} | ${rounds.map((r) => (p99(r) * 1000).toFixed(0)).join(', ')} | ${echoed ? '-' : med(s.name, load, serverP99).toFixed(0)} | ${med(s.name, load, cpu).toFixed(0)} | ${echoed ? '-' : `${paired(s.name, baseline, load, cpu).toFixed(2)}×`} | ${rounds[0]?.result.server ? med(s.name, load, (r) => r.result.server?.batchRowsMean ?? 0).toFixed(1) : '-'} |`;
    }),
  ];
  const h2table = (concurrency: number, list: Array<{ name: string }>, baseline: string) => [
    `| server | calls/s (each round) | calls/s vs ${baseline} | mean round trip µs | CPU µs a call | CPU vs ${baseline} | failed |`,
    '|---|---|---|---|---|---|---|',
    ...list.map((sv) => {
      const rounds = h2.of(sv.name, concurrency);
      return `| ${sv.name} | ${rounds.map((r) => calls(r).toFixed(0)).join(', ')} | ${h2.paired(sv.name, baseline, concurrency, calls).toFixed(2)}× | ${h2.med(sv.name, concurrency, roundTrip).toFixed(0)} | ${h2.med(sv.name, concurrency, h2cpu).toFixed(0)} | ${h2.paired(sv.name, baseline, concurrency, h2cpu).toFixed(2)}× | ${rounds.reduce((n, r) => n + r.failed, 0)} |`;
    }),
  ];
  const [batchOne, adaptive] = [servers[0].name, servers[1].name];
  const fixedNames = servers.slice(2).map((s) => s.name);
  const lines: string[] = [];
  lines.push('| target | measured | |', '|---|---|---|');
  /** A target line: the ratio, its threshold, and the A/A pair's per-round ratios of the same figure for the band. */
  const target = (label: string, ratio: number, threshold: number, higherIsBetter: boolean, twinRatios: number[], detail = '') => {
    const aa = twinRatios.length > 0 ? `A/A pair each round ${twinRatios.map((r) => r.toFixed(2)).join(', ')}` : '';
    const notes = [detail, aa].filter((note) => note !== '').join('; ');
    lines.push(`| ${label} | ${ratio.toFixed(2)}×${notes ? ` (${notes})` : ''} | ${verdict(ratio, threshold, higherIsBetter, noiseBand(twinRatios))} |`);
  };
  /** Adaptive (the first of `names`) against the fastest of the others, judged against its A/A twin. */
  const saturation = <R extends Run>(f: Figures<R>, key: string | number, names: string[], twinName: string, pick: (r: R) => number, label: string) => {
    const best = f.best(names.slice(1), key, pick, true);
    target(`${label}: adaptive ≥ the best fixed delay (${best.replace(/^heavy /, '')})`, f.paired(names[0], best, key, pick), 1, true, f.ratios(names[0], twinName, key, pick));
  };
  target('c=1: adaptive ≥ 0.98× the calls/s of MAX_BATCH_SIZE=1', paired(adaptive, batchOne, 'c=1', rate), 0.98, true, ratios(adaptive, twin.name, 'c=1', rate));
  target('c=1: adaptive no more CPU a call than MAX_BATCH_SIZE=1 (≤ 1.02×)', paired(adaptive, batchOne, 'c=1', cpu), 1.02, false, ratios(adaptive, twin.name, 'c=1', cpu));
  if (echo) {
    target("c=1: mean round trip ≤ 1.5× the echo server's", paired(adaptive, echo.name, 'c=1', mean), 1.5, false, ratios(adaptive, twin.name, 'c=1', mean), `MAX_BATCH_SIZE=1 ${paired(batchOne, echo.name, 'c=1', mean).toFixed(2)}×`);
  }
  saturation(node, 'c=64', [adaptive, ...fixedNames], twin.name, rate, 'saturation, small model (c=64)');
  saturation(node, 'heavy c=64', heavy.map((s) => s.name), heavyTwin.name, rate, 'saturation, heavy model (c=64)');
  // The echo server's round trip at one call at a time: h2load's where it ran, else the Node generator's.
  const echoUs = echo === null ? NaN : h2runs.length > 0 ? h2.med(echo.name, 1, roundTrip) : med(echo.name, 'c=1', mean) * 1000;
  // The same targets under h2load, where it ran (heavy model runs are filed as concurrency -64).
  if (h2runs.length > 0) {
    target('h2load c=1: adaptive ≥ 0.98× the calls/s of MAX_BATCH_SIZE=1', h2.paired(adaptive, batchOne, 1, calls), 0.98, true, h2.ratios(adaptive, twin.name, 1, calls));
    target('h2load c=1: adaptive no more CPU a call than MAX_BATCH_SIZE=1 (≤ 1.02×)', h2.paired(adaptive, batchOne, 1, h2cpu), 1.02, false, h2.ratios(adaptive, twin.name, 1, h2cpu));
    if (echo) {
      target("h2load c=1: mean round trip ≤ 1.5× the echo server's", h2.paired(adaptive, echo.name, 1, roundTrip), 1.5, false, h2.ratios(adaptive, twin.name, 1, roundTrip),
        `${h2.med(adaptive, 1, roundTrip).toFixed(0)} vs ${echoUs.toFixed(0)} µs; MAX_BATCH_SIZE=1 ${h2.paired(batchOne, echo.name, 1, roundTrip).toFixed(2)}×`);
    }
    saturation(h2, 64, [adaptive, ...fixedNames], twin.name, calls, 'h2load saturation, small model (c=64)');
    saturation(h2, -64, heavy.map((h) => h.name), heavyTwin.name, calls, 'h2load saturation, heavy model (c=64)');
  }
  // What the round-trip target leaves for everything tickserve does that the echo server does not, against the
  // worker hop alone (bench/hop.ts, measured in this process before the first round's servers started).
  if (echo !== null) {
    lines.push(`| c=1 budget: 1.5× the echo server's round trip (${echoUs.toFixed(0)} µs${h2runs.length > 0 ? ', h2load' : ''}) leaves ${(echoUs / 2).toFixed(0)} µs over it | the worker pool's round trip alone, one-row batches one at a time, no gRPC: ${hop.poolUs.toFixed(0)} µs${hop.each === undefined ? '' : ` (each run: ${hop.each.poolUs.map((v) => v.toFixed(0)).join(', ')})`} (inside it, onnxruntime's run, hot: ${hop.computeUs.toFixed(0)} µs; a bare postMessage round trip between two threads: ${hop.pingPongUs.toFixed(0)} µs) | the hop alone: ${((100 * hop.poolUs) / (echoUs / 2)).toFixed(0)}% of the budget |`);
  }
  const h2sections = h2runs.length === 0 ? ['h2load is not installed: the closed loops ran under the Node generator only.', ''] : [
    '### Closed loop under h2load (one connection, c calls in flight)',
    '',
    `h2load -c 1 -m c -D ${results.durationS}s --warm-up-time 500ms, one-row Predict calls. CPU a call counts the warm-up's calls too.`,
    '',
    '#### c=1, small model',
    '',
    ...h2table(1, [...(echo ? [echo] : []), ...servers, twin], batchOne),
    '',
    '#### c=64, small model',
    '',
    ...h2table(64, [...servers, twin], batchOne),
    '',
    '#### c=64, heavy model',
    '',
    ...h2table(-64, [...heavy, heavyTwin], heavy[1].name),
    '',
  ];
  const poisson = `poisson ${half}/s`;
  const bursts = `bursts ${half}/s`;
  for (const [load, label] of [[poisson, `Poisson at half the peak (${half}/s)`], [bursts, `on/off bursts, ${half}/s mean (${2 * half}/s for 50 ms, then 50 ms off)`]]) {
    const bestP99 = node.best(fixedNames, load, p99, false);
    const echoP99 = echo ? `; the echo server's own p99 ${(med(echo.name, load, p99) * 1000).toFixed(0)} µs` : '';
    target(`${label}: adaptive p99 ≤ the best fixed delay's (${bestP99}; ≤ 1.05×)`, paired(adaptive, bestP99, load, p99), P99_MARGIN, false, ratios(adaptive, twin.name, load, p99),
      `${(med(adaptive, load, p99) * 1000).toFixed(0)} vs ${(med(bestP99, load, p99) * 1000).toFixed(0)} µs${echoP99}`);
    const bestServer = node.best(fixedNames, load, serverP99, false);
    target(`${label}, the server's own p99 (receipt to result): adaptive ≤ the best fixed delay's (${bestServer}; ≤ 1.05×)`, paired(adaptive, bestServer, load, serverP99), P99_MARGIN, false,
      ratios(adaptive, twin.name, load, serverP99), `${med(adaptive, load, serverP99).toFixed(0)} vs ${med(bestServer, load, serverP99).toFixed(0)} µs`);
  }

  const series: PlotSeries[] = servers.map((s) => ({
    name: s.name,
    points: LEVELS.map((c) => ({ throughput: med(s.name, `c=${c}`, rate), p50Ms: med(s.name, `c=${c}`, (r) => r.result.latencyMs.p50), p99Ms: med(s.name, `c=${c}`, p99) })),
  }));
  writeFileSync(path.join(outDir, 'policies.svg'), latencyPlot('Predict, small model: latency vs load by batch delay policy (closed loop c = 1, 8, 64)', series, 'calls/s'));

  return [
    POLICIES_HEADING,
    '',
    `Generated by \`npm run bench:compare -- --only policies\`: ${results.rounds} interleaved rounds, ${results.durationS} s a run after an unrecorded`,
    'warm-up; every server of a round is a fresh process (a process keeps a bias of its own as long as it lives), all',
    'of them run at once and they take turns (each round starting with another). Ratios are within a',
    'round, median over rounds. The load generator (bench/load.ts, one Node process, open-loop arrivals timed by a',
    'sleeping thread) shares the cores with the servers: read the ratios, not the absolute numbers. CPU a call: the',
    'server process\'s user + system time, all its threads (/proc, 10 ms ticks), over the measured window.',
    `Controls: "${TWIN}" is a second server of the adaptive policy (two processes of one build: what differs between`,
    'them is noise); the echo server runs the open loops too (what the generator and the machine alone do to a tail).',
    'Every target is judged against that noise: its A/A band (the pair\'s median ratio of the same figure, widened by',
    'a 95% interval of a median of per-round ratios) is how far two identical servers read apart here. A ratio',
    'on the right side of its threshold by more than the band is "met", on the wrong side by more "not met"; nearer',
    'than that, "met, by less than the noise" or "within the noise: not shown either way". The best fixed delay is',
    'picked from the same rounds it is judged on, which flatters it: the comparisons lean against adaptive.',
    `Run on ${results.runOn} UTC, ${results.cores} cores, load average (1/5/15 min) ${results.loadAverage.start.map((v) => v.toFixed(2)).join(' / ')} at the start and ${results.loadAverage.end.map((v) => v.toFixed(2)).join(' / ')} at the end.`,
    '',
    ...lines,
    '',
    ...h2sections,
    '### Closed loop under the Node generator',
    '',
    ...LEVELS.flatMap((c) => [`#### c=${c}, small model`, '', ...table(`c=${c}`, c === 8 ? servers : [...(c === 1 && echo ? [echo] : []), ...servers, twin], batchOne), '']),
    '#### c=64, heavy model',
    '',
    ...table('heavy c=64', [...heavy, heavyTwin], heavy[1].name),
    '',
    `### Open loop, Poisson at ${half} calls/s (half the highest closed-loop rate of the first round), small model`,
    '',
    ...table(poisson, [...servers, twin, ...(echo ? [echo] : [])], batchOne),
    '',
    `### Open loop, on/off bursts at ${half} calls/s on average (Poisson at ${2 * half}/s for 50 ms, then 50 ms off), small model`,
    '',
    ...table(bursts, [...servers, twin, ...(echo ? [echo] : [])], batchOne),
    '',
    '![latency vs load by policy](bench/policies.svg)',
    '',
    'Raw runs: [bench/policies.json](bench/policies.json).',
    '',
  ].join('\n');
}
