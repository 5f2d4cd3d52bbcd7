// The load generator behind `npm run bench`, against a real server: closed loop, open loop (its worker-thread
// ticker), both RPCs of both APIs (ModelService; the v2 ModelInfer and ModelStreamInfer), failures counted, and the
// server's own figures read back from trailers and answer fields. Then its command line.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import protobuf from 'protobufjs';
import { parseBenchArgs } from '../bench/cli';
import { measureHop } from '../bench/hop';
import { runLoad, type LoadResult, type LoadSpec } from '../bench/load';
import { redrawPolicies, type PolicyResults, type PolicyRun } from '../bench/policies';
import { csv, describeLoad, markdownTable } from '../bench/report';
import { median, noiseBand, verdict } from '../bench/stats';
import { encodeInferRequests, streamAnswerOk } from '../bench/v2';
import { UsageError } from '../src/client/args';
import { KSERVE_PROTO_OPTIONS, KSERVE_PROTO_PATH } from '../src/main/kserve/service';
import { startServer, type TestServer } from './helpers/server';

const CLI = path.join(__dirname, '..', 'bench', 'cli.js');
const run = promisify(execFile);

describe('the bench load generator', () => {
  let server: TestServer;
  before(async () => {
    server = await startServer();
  });
  after(() => server.close());

  const load = (spec: Partial<LoadSpec>): Promise<LoadResult> =>
    runLoad({
      target: server.address,
      rpc: 'unary',
      concurrency: 4,
      rate: 0,
      poisson: false,
      streams: 2,
      rowsPerRequest: 1,
      width: 17,
      warmupS: 0.2,
      durationS: 1,
      ...spec,
    });

  /** The server's own time for a request cannot exceed what its client saw, so neither can its percentiles. */
  function assertServerFigures(result: LoadResult): void {
    const s = result.server;
    assert.ok(s !== null, 'no server figures read back');
    assert.ok(s.batchRowsMean >= 1);
    assert.ok(s.computeUsP50 > 0);
    // The server's time includes the batch's compute: a latency_ms not read back would fail this.
    assert.ok(s.serverUsP50 >= s.computeUsP50, `server p50 ${s.serverUsP50} µs < compute p50 ${s.computeUsP50} µs`);
    assert.ok(s.serverUsP50 <= result.latencyMs.p50 * 1000 * 1.01, `server p50 ${s.serverUsP50} µs > client p50 ${result.latencyMs.p50} ms`);
    assert.ok(s.serverUsP99 <= result.latencyMs.p99 * 1000 * 1.01);
  }

  it('closed loop, unary: every call answered, with percentiles and server figures', async () => {
    const result = await load({ concurrency: 4 });
    assert.deepEqual(result.errors, {});
    assert.ok(result.requests > 50, `only ${result.requests} calls in a second`);
    assert.ok(result.latencyMs.p50 > 0 && result.latencyMs.p50 <= result.latencyMs.p99 && result.latencyMs.p99 <= result.latencyMs.p999);
    assertServerFigures(result);
  });

  it('open loop, unary: sends at the requested rate', async () => {
    const result = await load({ rate: 400 });
    assert.deepEqual(result.errors, {});
    assert.ok(Math.abs(result.requestsPerSecond - 400) < 80, `asked for 400/s, measured ${result.requestsPerSecond.toFixed(0)}/s`);
    assertServerFigures(result);
  });

  it('open loop, stream (Poisson): sends at the requested rate over the streams, answers in order', async () => {
    const result = await load({ rpc: 'stream', rate: 2000, poisson: true });
    assert.deepEqual(result.errors, {});
    assert.ok(Math.abs(result.requestsPerSecond - 2000) < 400, `asked for 2000/s, measured ${result.requestsPerSecond.toFixed(0)}/s`);
    assertServerFigures(result);
  });

  it('ModelInfer, closed loop: every call answered; no server figures (v2 answers carry none); server CPU read', async () => {
    const result = await load({ api: 'v2', concurrency: 4, serverPid: process.pid });
    assert.deepEqual(result.errors, {});
    assert.ok(result.requests > 50, `only ${result.requests} calls in a second`);
    assert.equal(result.server, null);
    // The server runs in this process here, so its CPU includes the client's: only its presence is checked.
    assert.ok(result.serverCpuUsPerRequest !== null && result.serverCpuUsPerRequest > 0);
    assert.match(describeLoad(result), /^ModelInfer c=4 rows=1$/);
  });

  it('ModelStreamInfer, closed loop and open loop: every message answered', async () => {
    const closed = await load({ api: 'v2', rpc: 'stream', concurrency: 16 });
    assert.deepEqual(closed.errors, {});
    assert.ok(closed.requests > 100, `only ${closed.requests} messages in a second`);
    assert.equal(closed.serverCpuUsPerRequest, null);
    const open = await load({ api: 'v2', rpc: 'stream', rate: 1000 });
    assert.deepEqual(open.errors, {});
    assert.ok(Math.abs(open.requestsPerSecond - 1000) < 200, `asked for 1000/s, measured ${open.requestsPerSecond.toFixed(0)}/s`);
  });

  it('counts refused v2 calls by status, and stream messages answered with an error_message', async () => {
    // 16 features where the model takes 17: every request is refused (INVALID_ARGUMENT), none answered OK.
    const unary = await load({ api: 'v2', width: 16, durationS: 0.5 });
    assert.ok((unary.errors.INVALID_ARGUMENT ?? 0) > 10, JSON.stringify(unary.errors));
    assert.deepEqual(Object.keys(unary.errors), ['INVALID_ARGUMENT']);
    assert.equal(unary.requestsPerSecond, 0);
    const stream = await load({ api: 'v2', rpc: 'stream', width: 16, durationS: 0.5 });
    assert.ok((stream.errors.MESSAGE_ERROR ?? 0) > 10, JSON.stringify(stream.errors));
    assert.deepEqual(Object.keys(stream.errors), ['MESSAGE_ERROR']);
    assert.equal(stream.requestsPerSecond, 0);
  });

  it('reports a table and CSV with the server columns', async () => {
    const result = await load({ concurrency: 2, durationS: 0.3 });
    const table = markdownTable([{ name: 'tickserve', result }]).split('\n');
    assert.equal(table.length, 3);
    assert.match(table[0], /server µs p50\/p99/);
    const lines = csv([{ name: 'tickserve', result }]).trim().split('\n');
    const header = lines[0].split(',');
    const row = lines[1].split(',');
    assert.equal(row.length, header.length);
    assert.equal(Number(row[header.indexOf('server_us_p50')]), result.server!.serverUsP50);
  });
});

describe('the bench\'s v2 wire', () => {
  const root = new protobuf.Root().loadSync(KSERVE_PROTO_PATH, { keepCase: true });
  const request = root.lookupType('inference.ModelInferRequest');
  const streamResponse = root.lookupType('inference.ModelStreamInferResponse');

  it('encodes ModelInferRequests as the proto reads them: FP32 [rows, width] in raw_input_contents, framed', () => {
    const framed = encodeInferRequests(17, 3, 4);
    assert.equal(framed.length, 4);
    for (const [v, bytes] of framed.entries()) {
      assert.equal(bytes[0], 0);
      assert.equal(bytes.readUInt32BE(1), bytes.length - 5);
      const decoded = request.toObject(request.decode(bytes.subarray(5)), { ...KSERVE_PROTO_OPTIONS, longs: Number }) as Record<string, unknown>;
      const raw = (decoded.raw_input_contents as Buffer[])[0];
      assert.deepEqual({ ...decoded, raw_input_contents: [] }, {
        model_name: 'default',
        model_version: '',
        id: '',
        parameters: {},
        inputs: [{ name: 'input', datatype: 'FP32', shape: [3, 17], parameters: {}, contents: null }],
        outputs: [],
        raw_input_contents: [],
      });
      assert.equal(raw.length, 3 * 17 * 4);
      assert.equal(raw.readFloatLE(4 * 5), Math.fround(Math.sin(v * 31.7 + 5 * 0.37)));
    }
  });

  it('reads a stream answer as failed only when its error_message is set', () => {
    const encode = (value: object) => Buffer.from(streamResponse.encode(streamResponse.fromObject(value)).finish());
    const answer = { model_name: 'default', model_version: '1', outputs: [{ name: 'output', datatype: 'FP32', shape: [1, 5] }], raw_output_contents: [Buffer.alloc(20)] };
    assert.equal(streamAnswerOk(encode({ infer_response: answer })), true);
    assert.equal(streamAnswerOk(encode({ error_message: '', infer_response: answer })), true);
    assert.equal(streamAnswerOk(Buffer.alloc(0)), true);
    assert.equal(streamAnswerOk(encode({ error_message: 'input "input": shape [1,16] sent', infer_response: { id: '7' } })), false);
    // Field order on the wire is the encoder's choice: an error after the answer is still read.
    const reordered = Buffer.concat([encode({ infer_response: answer }), encode({ error_message: 'late' })]);
    assert.equal(streamAnswerOk(reordered), false);
  });
});

describe('the bench command line', () => {
  it('reads the defaults: a closed-loop sweep of unary calls', () => {
    assert.deepEqual(parseBenchArgs([]), {
      command: 'run',
      loads: [1, 4, 16, 64].map((concurrency) => ({ rate: 0, concurrency })),
      spec: { target: '127.0.0.1:50051', api: 'seed', rpc: 'unary', poisson: false, gzip: false, streams: 4, rowsPerRequest: 1, width: 17, warmupS: 1, durationS: 5 },
      json: undefined,
      csv: undefined,
      svg: undefined,
    });
  });

  it('--rate makes it an open loop, one run per rate', () => {
    const command = parseBenchArgs(['--rpc', 'stream', '--rate', '500,2000.5', '--poisson']);
    assert.ok(command.command === 'run');
    assert.deepEqual(command.loads, [{ rate: 500, concurrency: 0 }, { rate: 2000.5, concurrency: 0 }]);
    assert.equal(command.spec.poisson, true);
  });

  it('--api v2 sends ModelInfer or ModelStreamInfer; --server-pid reads that process\'s CPU', () => {
    const command = parseBenchArgs(['--api', 'v2', '--rpc', 'stream', '--server-pid', '1234']);
    assert.ok(command.command === 'run');
    assert.equal(command.spec.api, 'v2');
    assert.equal(command.spec.rpc, 'stream');
    assert.equal(command.spec.serverPid, 1234);
  });

  const bad: Array<[string[], RegExp]> = [
    [['--api', 'kserve'], /^--api must be seed or v2, got "kserve"$/],
    [['--server-pid', '0'], /^--server-pid must be an integer >= 1, got "0"$/],
    [['--concurrency', 'abc'], /^--concurrency must be an integer >= 1, got "abc"$/],
    [['--concurrency', '1,0'], /^--concurrency must be an integer >= 1, got "0"$/],
    [['--concurrency', '4,'], /^--concurrency must be an integer >= 1, got ""$/],
    [['--rate', 'abc'], /^--rate must be a number > 0, got "abc"$/],
    [['--rate', '0'], /^--rate must be a number > 0, got "0"$/],
    [['--rpc', 'bidi'], /^--rpc must be unary or stream, got "bidi"$/],
    [['--streams', '0'], /^--streams must be an integer >= 1, got "0"$/],
    [['--rows', '1.5'], /^--rows must be an integer >= 1, got "1.5"$/],
    [['--width', 'x'], /^--width must be an integer >= 1, got "x"$/],
    [['--duration', '0'], /^--duration must be a number > 0, got "0"$/],
    [['--warmup=-1'], /^--warmup must be a number >= 0, got "-1"$/],
    [['--concurrenc', '4'], /^Unknown option '--concurrenc'$/],
    [['4'], /^Unexpected argument '4'/],
  ];
  for (const [args, message] of bad) {
    it(`${args.join(' ')}: a usage error`, () => {
      assert.throws(() => parseBenchArgs(args), (error: unknown) => error instanceof UsageError && message.test(error.message));
    });
  }

  it('--help prints the usage and exits 0; a bad value exits 2 with the error and the usage', async () => {
    for (const help of ['--help', '-h']) assert.match((await run(process.execPath, [CLI, help])).stdout, /^usage: npm run bench -- \[options\]/);
    await assert.rejects(run(process.execPath, [CLI, '--concurrency', 'abc']), (e: { code: number; stdout: string; stderr: string }) => {
      assert.equal(e.code, 2);
      assert.equal(e.stdout, '');
      assert.ok(e.stderr.startsWith('error: --concurrency must be an integer >= 1, got "abc"\n\nusage: npm run bench'), e.stderr);
      return true;
    });
  });
});

describe('the policies report\'s verdicts against the A/A noise band', () => {
  it('median: the middle value, or the mean of the two middle ones', () => {
    assert.equal(median([3, 1, 2]), 2);
    assert.equal(median([4, 1, 3, 2]), 2.5);
    assert.ok(Number.isNaN(median([])));
  });

  it('noiseBand: the A/A pair\'s median ratio widened by a 95% interval of a median; none from one round', () => {
    // Identical rounds: no spread, so the band is the median ratio's own distance from 1, either way.
    assert.ok(Math.abs(noiseBand([1.1, 1.1, 1.1]) - 1.1) < 1e-9);
    assert.ok(Math.abs(noiseBand([1 / 1.1, 1 / 1.1]) - 1.1) < 1e-9);
    // Spread around 1, three rounds: exp(t(2 df) × 1.25 × sd / sqrt(3)) of the logs, t = 4.30.
    const sd = Math.sqrt((2 * Math.log(2) ** 2) / 2);
    assert.ok(Math.abs(noiseBand([2, 1, 0.5]) - Math.exp((4.3 * 1.25 * sd) / Math.sqrt(3))) < 1e-9);
    // An offset and a spread add: the same spread around 1.2 gives 1.2 times the band around 1.
    assert.ok(Math.abs(noiseBand([2.4, 1.2, 0.6]) - 1.2 * noiseBand([2, 1, 0.5])) < 1e-9);
    // More rounds, a narrower band for the same spread.
    assert.ok(noiseBand([2, 1, 0.5, 2, 1, 0.5, 1]) < noiseBand([2, 1, 0.5]));
    // A NaN round (a figure missing) is left out rather than poisoning the median.
    assert.ok(Math.abs(noiseBand([1.1, NaN, 1.1, 1.1]) - 1.1) < 1e-9);
    assert.ok(Number.isNaN(noiseBand([1.3])));
    assert.ok(Number.isNaN(noiseBand([])));
  });

  it('verdict: met or not met only beyond the band; nearer the threshold, says the run cannot tell', () => {
    // Higher is better (calls/s at least the best fixed delay's).
    assert.equal(verdict(1.2, 1, true, 1.1), 'met');
    assert.equal(verdict(1.05, 1, true, 1.1), 'met, by less than the noise (A/A noise band ×1.10)');
    assert.equal(verdict(0.95, 1, true, 1.1), '**within the noise** (A/A noise band ×1.10): not shown either way');
    assert.equal(verdict(0.85, 1, true, 1.1), '**not met**');
    // Lower is better (a round trip at most 1.5× the echo server's).
    assert.equal(verdict(1.2, 1.5, false, 1.1), 'met');
    assert.equal(verdict(1.6, 1.5, false, 1.1), '**within the noise** (A/A noise band ×1.10): not shown either way');
    assert.equal(verdict(1.99, 1.5, false, 1.1), '**not met**');
    // No band (one round): the bare comparison, said to be one.
    assert.equal(verdict(0.99, 1, true, NaN), '**not met** (no A/A band: one round)');
    assert.equal(verdict(1, 1, true, NaN), 'met (no A/A band: one round)');
    assert.equal(verdict(NaN, 1, true, 1.1), '**not met** (no figure)');
  });
});

describe('the worker hop\'s pieces (bench/hop.ts)', () => {
  it('measures a thread round trip, onnxruntime\'s run and the pool\'s round trip, each run and their medians', async () => {
    const hop = await measureHop(100, 3);
    for (const name of ['pingPongUs', 'computeUs', 'poolUs'] as const) {
      assert.ok(Number.isFinite(hop[name]) && hop[name] > 0, `${name}: ${hop[name]}`);
      assert.equal(hop.each?.[name].length, 3, `${name}: one figure a run`);
      assert.equal(hop[name], median(hop.each![name]));
    }
  });
});

describe('the policies report, drawn from a saved run (--only policies-report)', () => {
  const SMALL = ['MAX_BATCH_SIZE=1', 'adaptive (bound 100 µs)', 'fixed 0', 'fixed 100 µs', 'fixed 1 ms'];
  const TWIN = 'adaptive, second process (A/A)';
  /** A run whose only figures the report reads: calls/s, latencies, the server's own p99 and CPU a call. */
  const run = (server: string, load: string, round: number, callsPerSecond: number): PolicyRun => ({
    server,
    load,
    round,
    cpuUsPerCall: 1e6 / callsPerSecond,
    result: {
      requestsPerSecond: callsPerSecond,
      latencyMs: { p50: 1000 / callsPerSecond, p90: 1, p99: 2000 / callsPerSecond, p999: 1, max: 1, mean: 1000 / callsPerSecond },
      server: server.startsWith('echo') ? null : { batchRowsMean: 1, queueUsP50: 0, queueUsP99: 0, computeUsP50: 0, computeUsP99: 0, serverUsP50: 0, serverUsP99: 2e6 / callsPerSecond },
    } as unknown as LoadResult,
  });

  it('pairs rounds by number, judges each target against the A/A band and writes the plot', () => {
    // Three rounds. Adaptive 1,000 calls/s (at c=64 1,000, 1,100 and 900, so that pairing the wrong rounds shows); its
    // twin 1,000, 1,010 and 990; MAX_BATCH_SIZE=1 800 (adaptive 1.25×: met beyond the band); the fixed delays 1,010
    // at c=64 (adaptive 0.99× in the median round: within the noise).
    const runs: PolicyRun[] = [];
    const twinRates = [1000, 1010, 990];
    for (const round of [3, 1, 2]) {
      for (const load of ['c=1', 'c=8', 'c=64', 'poisson 500/s', 'bursts 500/s']) {
        const adaptive = load === 'c=64' ? [1000, 1100, 900][round - 1] : 1000;
        for (const name of SMALL) runs.push(run(name, load, round, name === SMALL[0] ? 800 : name === SMALL[1] ? adaptive : load === 'c=64' ? 1010 : 900));
        // The twin's second round at c=64 is missing: that round is left out of its pairs, not misaligned.
        if (load !== 'c=8' && !(load === 'c=64' && round === 2)) runs.push(run(TWIN, load, round, twinRates[round - 1]));
        if (load === 'c=1') runs.push(run('echo (grpc-js, no model)', load, round, 2000));
      }
      for (const name of SMALL.slice(1)) runs.push(run(`heavy ${name}`, 'heavy c=64', round, 500));
      runs.push(run(`heavy ${TWIN}`, 'heavy c=64', round, 500));
    }
    const dir = mkdtempSync(path.join(os.tmpdir(), 'policies-report-'));
    const results: PolicyResults = {
      runOn: '2026-11-27 07:00', cores: 2, loadAverage: { start: [1, 1, 1], end: [2, 2, 2] }, rounds: 3, durationS: 2, half: 500, echo: true,
      hop: { pingPongUs: 30, computeUs: 25, poolUs: 120, each: { pingPongUs: [30, 31, 29], computeUs: [25, 25, 25], poolUs: [110, 120, 130] } },
      runs,
      h2load: [],
    };
    writeFileSync(path.join(dir, 'policies.json'), JSON.stringify(results));
    const lines = redrawPolicies(dir).split('\n');
    const line = (start: string) => lines.find((l) => l.startsWith(`| ${start}`)) ?? assert.fail(`no line "${start}"`);
    // Rounds were saved out of order: paired by number, the twin's ratios read in round order.
    assert.equal(line('c=1: adaptive ≥ 0.98×'), '| c=1: adaptive ≥ 0.98× the calls/s of MAX_BATCH_SIZE=1 | 1.25× (A/A pair each round 1.00, 0.99, 1.01) | met |');
    // Rounds 1 and 3 only: 1,000/1,000 and 900/990 (by position, round 2's 1,100 would be set against round 3's 990).
    // Band: the two log ratios' median 0.048 plus t(1 df) 12.71 × 1.25 × their sd 0.067 / √2, e^0.805 = 2.24.
    assert.match(line('saturation, small model'), /\| 0\.99× \(A\/A pair each round 1\.00, 0\.91\) \| \*\*within the noise\*\* \(A\/A noise band ×2\.2[34]\): not shown either way \|$/);
    // Half the echo server's 500 µs round trip is the budget; the hop's median (120 µs) is 48% of it, each run listed.
    assert.match(line('c=1 budget'), /leaves 250 µs over it .*: 120 µs \(each run: 110, 120, 130\).* the hop alone: 48% of the budget \|$/);
    assert.match(line("c=1: mean round trip ≤ 1.5× the echo server's"), /\| 2\.00× .*\| \*\*not met\*\* \|$/);
    assert.ok(existsSync(path.join(dir, 'policies.svg')), 'the plot was not drawn');
  });
});
