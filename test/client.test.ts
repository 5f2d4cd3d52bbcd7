// The pooled client and the CLI against real servers on loopback.
import * as grpc from '@grpc/grpc-js';
import assert from 'node:assert/strict';
import { execFile, execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { writeFileSync, mkdtempSync } from 'node:fs';
import http2 from 'node:http2';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, afterEach, before, beforeEach, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { gzipSync } from 'node:zlib';
import protobuf from 'protobufjs';
import { StreamEndedEarlyError, TickClient, type PredictInput, type Prediction } from '../src/client';
import { UsageError } from '../src/client/args';
import { parseCommandLine } from '../src/client/cli';
import { PROTO_PATH } from '../src/main/server';
import { DEFAULT_MODEL_PATH, featuresFor, referenceOutputs } from './helpers/models';
import { assertClose, startServer, type TestServer } from './helpers/server';

const CLI = path.join(__dirname, '..', 'src', 'client', 'cli.js');
const run = promisify(execFile);

/** `promise`, or a rejection naming `what` if it has not settled within `ms`: a hang fails the test, not the run. */
function within<T>(ms: number, promise: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

function writeCsv(file: string, lines: string[]): void {
  writeFileSync(file, `${lines.join('\n')}\n`);
}

describe('pooled client over three servers', () => {
  const servers: TestServer[] = [];
  let client: TickClient;
  before(async () => {
    for (let i = 0; i < 3; i++) servers.push(await startServer());
    client = new TickClient({ target: `ipv4:${servers.map((s) => s.address).join(',')}`, deadlineMs: 5000 });
    await client.waitForReady();
  });
  after(async () => {
    client.close();
    await Promise.all(servers.map((s) => s.close()));
  });

  it('spreads calls across all three (round_robin over the addresses)', async () => {
    const before = servers.map((s) => s.server.counters.predictCalls);
    for (let i = 0; i < 60; i++) await client.predict({ features: featuresFor(i, 1, 17) });
    const served = servers.map((s, i) => s.server.counters.predictCalls - before[i]);
    assert.equal(served.reduce((a, b) => a + b, 0), 60);
    for (const n of served) assert.ok(n >= 10, `uneven spread: ${served.join(', ')}`);
  });

  it('keeps working when one server is stopped', async () => {
    await servers[2].server.close(1000);
    const before = servers.map((s) => s.server.counters.predictCalls);
    const answers = [];
    for (let i = 0; i < 40; i++) answers.push(await client.predict({ features: featuresFor(i, 1, 17) }));
    assert.equal(answers.length, 40);
    for (const answer of answers) assert.equal(answer.predictions.length, 5);
    const served = servers.map((s, i) => s.server.counters.predictCalls - before[i]);
    assert.equal(served[2], 0);
    assert.ok(served[0] > 0 && served[1] > 0, served.join(', '));
  });
});

describe('client calls', () => {
  let server: TestServer;
  before(async () => {
    server = await startServer();
  });
  after(() => server.close());

  it('predict: answers what onnxruntime computes, with the server figures', async () => {
    const client = new TickClient({ target: server.address, poolSize: 3 });
    try {
      const features = featuresFor(7, 2, 17);
      const answer = await client.predict({ features, batchSize: 2 });
      assertClose(answer.predictions, await referenceOutputs(DEFAULT_MODEL_PATH, Float32Array.from(features), 2));
      assert.equal(answer.modelVersion, '1');
      assert.ok(answer.batchRows >= 2);
      assert.equal(answer.error, null);
      assert.ok(answer.roundTripMs >= answer.latencyMs, `round trip ${answer.roundTripMs} ms < the server's ${answer.latencyMs} ms`);
      assert.equal(await client.healthCheck('inference.ModelService'), 'SERVING');
    } finally {
      client.close();
    }
  });

  it('predict: a bad request rejects with its status', async () => {
    const client = new TickClient({ target: server.address });
    try {
      await assert.rejects(client.predict({ features: [1, 2] }), (e: grpc.ServiceError) => e.code === grpc.status.INVALID_ARGUMENT);
    } finally {
      client.close();
    }
  });

  it('stream: async-iterable in and out, one answer per input, in order; a bad input answered in its slot', async () => {
    const client = new TickClient({ target: server.address });
    try {
      async function* inputs() {
        for (let i = 0; i < 2000; i++) yield { features: i === 1000 ? [1] : featuresFor(i, 1, 17) };
      }
      const answers = [];
      for await (const answer of client.stream(inputs())) answers.push(answer);
      assert.equal(answers.length, 2000);
      const rows = Array.from({ length: 2000 }, (_, i) => featuresFor(i === 1000 ? 0 : i, 1, 17)).flat();
      const expected = await referenceOutputs(DEFAULT_MODEL_PATH, Float32Array.from(rows), 2000);
      answers.forEach((a, i) => {
        if (i === 1000) assert.equal(a.error?.code, grpc.status.INVALID_ARGUMENT);
        else assertClose(a.predictions, expected.subarray(i * 5, i * 5 + 5), `answer ${i}`);
        // Measured from this input's write: it contains the server's time for it, whatever the inputs before it.
        assert.ok(a.roundTripMs >= a.latencyMs, `answer ${i}: round trip ${a.roundTripMs} ms < the server's ${a.latencyMs} ms`);
      });
    } finally {
      client.close();
    }
  });

  it('stream: breaking out early cancels the call', async () => {
    const client = new TickClient({ target: server.address });
    try {
      function* endless() {
        for (let i = 0; ; i++) yield { features: featuresFor(i, 1, 17) };
      }
      let seen = 0;
      for await (const answer of client.stream(endless())) {
        assert.equal(answer.predictions.length, 5);
        if (++seen === 100) break;
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
      assert.equal(server.server.streamStats().open, 0);
    } finally {
      client.close();
    }
  });

  it('gzip-compressed calls are answered correctly', async () => {
    const client = new TickClient({ target: server.address, compression: 'gzip' });
    try {
      const features = featuresFor(3, 1, 17);
      const answer = await client.predict({ features });
      assertClose(answer.predictions, await referenceOutputs(DEFAULT_MODEL_PATH, Float32Array.from(features), 1));
      const streamed = [];
      for await (const a of client.stream([{ features }, { features }])) streamed.push(a);
      assertClose(streamed[1].predictions, answer.predictions);
    } finally {
      client.close();
    }
  });

  it('the server decompresses a gzip message sent with grpc-encoding: gzip', async () => {
    const Request = protobuf.loadSync(PROTO_PATH).lookupType('inference.PredictRequest');
    const features = featuresFor(4, 1, 17);
    const compressed = gzipSync(Request.encode({ features }).finish());
    const framed = Buffer.alloc(5 + compressed.length);
    framed[0] = 1; // compressed flag
    framed.writeUInt32BE(compressed.length, 1);
    compressed.copy(framed, 5);
    const session = http2.connect(`http://${server.address}`);
    try {
      const stream = session.request({
        ':method': 'POST',
        ':path': '/inference.ModelService/Predict',
        'content-type': 'application/grpc',
        'grpc-encoding': 'gzip',
        te: 'trailers',
      });
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      const trailers = new Promise<http2.IncomingHttpHeaders>((resolve) => stream.on('trailers', resolve));
      stream.end(framed);
      assert.equal((await trailers)['grpc-status'], '0');
      const body = Buffer.concat(chunks);
      const reply = protobuf.loadSync(PROTO_PATH).lookupType('inference.PredictResponse').decode(body.subarray(5)) as unknown as { predictions: number[] };
      assertClose(reply.predictions, await referenceOutputs(DEFAULT_MODEL_PATH, Float32Array.from(features), 1));
    } finally {
      session.close();
    }
  });
});

describe('a server that drains mid-stream', () => {
  let server: TestServer;
  let client: TickClient;
  beforeEach(async () => {
    server = await startServer();
    client = new TickClient({ target: server.address });
  });
  afterEach(async () => {
    client.close();
    await server.close();
  });

  /** Streams `inputs` and drains the server once `closeAfter` answers are in: every answer, and what was thrown. */
  async function drainMidStream(inputs: Iterable<PredictInput> | AsyncIterable<PredictInput>, closeAfter: number) {
    const answers: Prediction[] = [];
    let closing: Promise<void> | undefined;
    const consume = async () => {
      for await (const answer of client.stream(inputs)) {
        answers.push(answer);
        if (answers.length === closeAfter) closing = server.server.close(2000);
      }
    };
    const thrown = await within(5000, consume().then(() => null, (error: unknown) => error), 'the stream did not end after the drain');
    await closing;
    assert.ok(thrown instanceof StreamEndedEarlyError, `the stream ended with ${String(thrown)}`);
    assert.equal(thrown.code, grpc.status.OK);
    assert.equal(thrown.answered, answers.length);
    for (const answer of answers) assert.equal(answer.predictions.length, 5);
    return { answers, thrown };
  }

  it('stream: ends with the server status after every answer while its inputs are still being written', async () => {
    function* endless() {
      for (let i = 0; ; i++) yield { features: featuresFor(i, 1, 17) };
    }
    const { answers, thrown } = await drainMidStream(endless(), 100);
    assert.ok(answers.length >= 100);
    assert.ok(thrown.inputsLeft);
    assert.ok(thrown.sent >= thrown.answered, `${thrown.sent} sent, ${thrown.answered} answered`);
  });

  it('stream: ends when the server drains while its source waits for the next input', async () => {
    async function* stalls() {
      for (let i = 0; i < 50; i++) yield { features: featuresFor(i, 1, 17) };
      await new Promise(() => {}); // a feed with nothing more to say for now
    }
    const { thrown } = await drainMidStream(stalls(), 50);
    assert.deepEqual([thrown.sent, thrown.answered, thrown.inputsLeft], [50, 50, true]);
  });

  it('replay: prints every answer received, counts the rows not answered, and exits 1', async () => {
    const rows = Array.from({ length: 5000 }, (_, i) => featuresFor(i, 1, 17));
    const csvFile = path.join(mkdtempSync(path.join(tmpdir(), 'tickserve-drain-')), 'feed.csv');
    writeCsv(csvFile, rows.map((r) => r.join(',')));
    const child = spawn(process.execPath, [CLI, 'replay', '--target', server.address, '--csv', csvFile, '--rate', '1000']);
    let stdout = '';
    let stderr = '';
    let closing: Promise<void> | undefined;
    child.stdout.on('data', (chunk: Buffer) => {
      stdout += chunk;
      closing ??= server.server.close(2000); // drain once the first answers are printed
    });
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk));
    try {
      const [code] = await within(5000, once(child, 'close'), 'replay did not exit after the drain');
      await closing;
      assert.equal(code, 1, stderr);
      assert.match(stderr, /^error: the server ended the stream with OK after answering \d+ of the \d+ inputs sent/m);
      const summary = /^rows 5000, answered (\d+), errors 0, not answered (\d+); latency send→answer p50 [\d.]+ ms, p99 [\d.]+ ms$/m.exec(stderr);
      assert.ok(summary, stderr);
      const lines = stdout.trimEnd().split('\n');
      assert.equal(Number(summary[1]), lines.length);
      assert.equal(Number(summary[2]), 5000 - lines.length);
      assert.ok(lines.length < 5000);
      const expected = await referenceOutputs(DEFAULT_MODEL_PATH, Float32Array.from(rows.slice(0, lines.length).flat()), lines.length);
      lines.forEach((line, i) => assertClose(line.split(',').map(Number), expected.subarray(i * 5, i * 5 + 5), `line ${i}`));
    } finally {
      child.kill();
    }
  });
});

describe('CLI', () => {
  let server: TestServer;
  let dir: string;
  before(async () => {
    server = await startServer();
    dir = mkdtempSync(path.join(tmpdir(), 'tickserve-cli-'));
  });
  after(() => server.close());

  it('predict prints the predictions', async () => {
    const features = featuresFor(1, 1, 17);
    const { stdout } = await run(process.execPath, [CLI, 'predict', '--target', server.address, '--features', features.join(',')]);
    assertClose(stdout.trim().split(',').map(Number), await referenceOutputs(DEFAULT_MODEL_PATH, Float32Array.from(features), 1));
  });

  it('replay prints exactly one line per CSV row, in order, skipping the header; the summary goes to stderr', async () => {
    const rows = Array.from({ length: 500 }, (_, i) => featuresFor(i, 1, 17));
    const lines = ['f0,f1,f2', ...rows.map((r, i) => (i === 250 ? '1,2,3' : r.join(',')))];
    const csvFile = path.join(dir, 'feed.csv');
    writeFileSync(csvFile, `${lines.join('\n')}\n`);
    const { stdout, stderr } = await run(process.execPath, [CLI, 'replay', '--target', server.address, '--csv', csvFile, '--rate', '5000']);
    const out = stdout.trimEnd().split('\n');
    assert.equal(out.length, 500);
    const expected = await referenceOutputs(DEFAULT_MODEL_PATH, Float32Array.from(rows.flat()), 500);
    out.forEach((line, i) => {
      if (i === 250) assert.match(line, /^ERROR INVALID_ARGUMENT: wrong feature count/);
      else assertClose(line.split(',').map(Number), expected.subarray(i * 5, i * 5 + 5), `line ${i}`);
    });
    assert.match(stderr, /^rows 500, answered 500, errors 1, not answered 0; latency send→answer p50 [\d.]+ ms, p99 [\d.]+ ms$/m);
  });

  it('replay: a row that is not numbers gets its own ERROR line, in its place, and the replay goes on', async () => {
    const rows = Array.from({ length: 4 }, (_, i) => featuresFor(i, 1, 17).join(','));
    const csvFile = path.join(dir, 'not-numbers.csv');
    writeCsv(csvFile, ['f0,f1', rows[0], 'x,1,2', rows[1], rows[2], rows[3], '1,abc']);
    const { stdout, stderr } = await run(process.execPath, [CLI, 'replay', '--target', server.address, '--csv', csvFile]);
    const out = stdout.trimEnd().split('\n');
    assert.equal(out.length, 6);
    assert.equal(out[1], `ERROR INVALID_ARGUMENT: ${csvFile}:3: value 1 ("x") is not a number`);
    assert.equal(out[5], `ERROR INVALID_ARGUMENT: ${csvFile}:7: value 2 ("abc") is not a number`);
    for (const i of [0, 2, 3, 4]) assert.equal(out[i].split(',').length, 5, `line ${i}: ${out[i]}`);
    assert.match(stderr, /^rows 6, answered 6, errors 2, not answered 0; /m);
  });

  it('--help prints the usage and exits 0', async () => {
    const { stdout } = await run(process.execPath, [CLI, '--help']);
    assert.match(stdout, /^usage: npm run client -- <command> \[options\]/);
  });

  const usageErrors: Array<[string[], string]> = [
    [['predict', '--featurs', '1'], "error: Unknown option '--featurs'"],
    [['replay', '--csv', '/nonexistent/feed.csv'], 'error: --csv /nonexistent/feed.csv: cannot read it (ENOENT)'],
  ];
  for (const [args, message] of usageErrors) {
    it(`${args.join(' ')}: exits 2 with the error and the usage`, async () => {
      await assert.rejects(run(process.execPath, [CLI, ...args]), (e: { code: number; stdout: string; stderr: string }) => {
        assert.equal(e.code, 2);
        assert.equal(e.stdout, '');
        assert.ok(e.stderr.startsWith(`${message}\n\nusage: npm run client`), e.stderr);
        return true;
      });
    });
  }
});

describe('client command line', () => {
  let csvFile: string;
  before(() => {
    csvFile = path.join(mkdtempSync(path.join(tmpdir(), 'tickserve-args-')), 'feed.csv');
    writeCsv(csvFile, ['1,2,3']);
  });

  it('--help, -h, and -h after a command ask for the usage', () => {
    for (const args of [['--help'], ['-h'], ['predict', '-h']]) assert.deepEqual(parseCommandLine(args), { command: 'help' });
  });

  it('reads every option of predict and replay, with their defaults', () => {
    assert.deepEqual(parseCommandLine(['predict', '--features', '1,2.5', '--batch-size', '2', '--deadline-ms', '250', '--gzip']), {
      command: 'predict',
      target: '127.0.0.1:50051',
      gzip: true,
      headers: {},
      features: [1, 2.5],
      batchSize: 2,
      modelName: '',
      modelVersion: '',
      deadlineMs: 250,
    });
    assert.deepEqual(parseCommandLine(['replay', '--target', 'h:1', '--csv', csvFile]), {
      command: 'replay',
      target: 'h:1',
      gzip: false,
      headers: {},
      csv: csvFile,
      rate: 0,
      modelName: '',
      modelVersion: '',
    });
  });

  it('--model and --model-version name the model and version on predict and replay', () => {
    const predict = parseCommandLine(['predict', '--features', '1', '--model', 'fx', '--model-version', '3']);
    assert.deepEqual([predict.command, 'modelName' in predict && predict.modelName, 'modelVersion' in predict && predict.modelVersion], ['predict', 'fx', '3']);
    const replay = parseCommandLine(['replay', '--csv', csvFile, '--model', 'rates']);
    assert.deepEqual(['modelName' in replay && replay.modelName], ['rates']);
  });

  it('--csv and --inputs take a pipe as well as a file (a shell\'s <(...), /dev/stdin)', () => {
    const fifo = path.join(mkdtempSync(path.join(tmpdir(), 'tickserve-fifo-')), 'feed');
    execFileSync('mkfifo', [fifo]);
    const replay = parseCommandLine(['replay', '--csv', fifo]);
    assert.equal('csv' in replay && replay.csv, fifo);
  });

  const bad: Array<[string[], RegExp]> = [
    [[], /^no command/],
    [['frobnicate'], /^unknown command "frobnicate"/],
    [['predict', 'extra', '--features', '1'], /^unexpected argument "extra"/],
    [['predict'], /^predict needs --features/],
    [['predict', '--features', '1', '--featurs', '2'], /^Unknown option '--featurs'$/],
    [['predict', '--features', '1', '--batch-size', '-1'], /^Option '--batch-size' argument is ambiguous/],
    [['predict', '--features', '1', '--batch-size=-1'], /^--batch-size must be an integer >= 1, got "-1"$/],
    [['predict', '--features', '1', '--batch-size', '0'], /^--batch-size must be an integer >= 1, got "0"$/],
    [['predict', '--features', '1', '--batch-size', 'abc'], /^--batch-size must be an integer >= 1, got "abc"$/],
    [['predict', '--features', '1', '--batch-size', '1.5'], /^--batch-size must be an integer >= 1, got "1.5"$/],
    [['predict', '--features', '1', '--deadline-ms', 'abc'], /^--deadline-ms must be a number > 0, got "abc"$/],
    [['predict', '--features', '1', '--deadline-ms', '0'], /^--deadline-ms must be a number > 0, got "0"$/],
    [['predict', '--features', '1,x'], /^--features: value 2 \("x"\) is not a number$/],
    [['predict', '--features', '1', '--csv', 'feed.csv'], /^--csv is not an option of predict$/],
    [['replay'], /^replay needs --csv FILE$/],
    [['replay', '--csv', '/nonexistent/feed.csv'], /^--csv \/nonexistent\/feed.csv: cannot read it \(ENOENT\)$/],
    [['replay', '--csv', tmpdir()], /: not a file$/],
    [['replay', '--csv', 'FILE', '--rate', 'abc'], /^--rate must be a number >= 0, got "abc"$/],
    [['replay', '--csv', 'FILE', '--rate=-1'], /^--rate must be a number >= 0, got "-1"$/],
    [['replay', '--csv', 'FILE', '--features', '1'], /^--features is not an option of replay$/],
  ];
  for (const [args, message] of bad) {
    it(`${args.join(' ') || '(no arguments)'}: a usage error`, () => {
      const withFile = args.map((arg) => (arg === 'FILE' ? csvFile : arg));
      assert.throws(() => parseCommandLine(withFile), (error: unknown) => error instanceof UsageError && message.test(error.message));
    });
  }
});
