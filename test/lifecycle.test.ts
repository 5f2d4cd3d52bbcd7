// The server as a user runs it: `node dist/src/main/index.js` with environment variables, stopped by a signal.
import * as grpc from '@grpc/grpc-js';
import assert from 'node:assert/strict';
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { once } from 'node:events';
import path from 'node:path';
import { describe, it } from 'node:test';
import { featuresFor } from './helpers/models';
import { predict, type ModelServiceClient } from './helpers/server';
import * as protoLoader from '@grpc/proto-loader';
import { PROTO_PATH } from '../src/main/server';

const ENTRY = path.join(__dirname, '..', 'src', 'main', 'index.js');

/** No metrics endpoint: its default port, 9464, may be held by another run, and that fails startup. */
function run(env: Record<string, string>): ChildProcessWithoutNullStreams {
  return spawn(process.execPath, [ENTRY], { env: { PATH: process.env.PATH ?? '', METRICS_PORT: '0', ...env } });
}

async function exitOf(child: ChildProcessWithoutNullStreams): Promise<{ code: number | null; stderr: string; stdout: string }> {
  let stderr = '';
  let stdout = '';
  child.stderr.on('data', (chunk) => (stderr += chunk));
  child.stdout.on('data', (chunk) => (stdout += chunk));
  const [code] = await once(child, 'exit');
  return { code, stderr, stdout };
}

/** Waits for the startup log line and returns the port it names. */
function portOf(child: ChildProcessWithoutNullStreams): Promise<number> {
  return new Promise((resolve, reject) => {
    let out = '';
    const onData = (chunk: Buffer) => {
      out += chunk;
      const match = /"port":(\d+)/.exec(out);
      if (!match) return;
      child.stdout.off('data', onData);
      resolve(Number(match[1]));
    };
    child.stdout.on('data', onData);
    child.once('exit', () => reject(new Error(`server exited before listening: ${out}`)));
  });
}

// Failures that only starting can find (a port in use, a model that does not load, files that are not PEM) are in
// startup.test.ts.
describe('configuration errors exit 2, naming the variable, the value and what is allowed', () => {
  const cases: Array<[Record<string, string>, RegExp]> = [
    [{ MAX_BATCH_SIZE: 'lots' }, /MAX_BATCH_SIZE="lots" is invalid: an integer from 1 to 65536/],
    [{ MAX_QUEUE_DELAY_US: '-5' }, /MAX_QUEUE_DELAY_US="-5" is invalid/],
    [{ PORT: '70000' }, /PORT="70000" is invalid: an integer from 0 to 65535/],
    [{ WORKERS: '0' }, /WORKERS="0" is invalid/],
    [{ EXECUTION_PROVIDER: 'tpu' }, /EXECUTION_PROVIDER="tpu" is invalid: one of cpu, cuda/],
    [{ PREFERRED_BATCH_SIZES: '4,128', MAX_BATCH_SIZE: '64' }, /PREFERRED_BATCH_SIZES="4,128" is invalid: .*MAX_BATCH_SIZE \(64\)/],
    [{ MAX_QUEUE_SIZE: '8', MAX_BATCH_SIZE: '64' }, /MAX_QUEUE_SIZE="8" is invalid: at least MAX_BATCH_SIZE \(64\) rows/],
    [{ LOG_LEVEL: 'loud' }, /LOG_LEVEL="loud" is invalid/],
  ];
  for (const [env, message] of cases) {
    it(Object.keys(env).join(' + '), async () => {
      const { code, stderr } = await exitOf(run(env));
      assert.equal(code, 2);
      assert.match(stderr, message);
    });
  }

  it('EXECUTION_PROVIDER=cuda without the CUDA binaries fails startup with how to install them', async () => {
    const { code, stderr } = await exitOf(run({ EXECUTION_PROVIDER: 'cuda', PORT: '0' }));
    assert.equal(code, 2);
    assert.match(stderr, /^tickserve: EXECUTION_PROVIDER="cuda" cannot be used: .*onnxruntime-node cannot use CUDA/m);
    assert.match(stderr, /ONNXRUNTIME_NODE_INSTALL=cuda12/);
  });
});

describe('signals', () => {
  const definition = protoLoader.loadSync(PROTO_PATH, { keepCase: true, arrays: true });
  const ModelService = (grpc.loadPackageDefinition(definition).inference as grpc.GrpcObject)
    .ModelService as grpc.ServiceClientConstructor;

  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    it(`${signal}: every accepted call is answered, then the process exits 0`, async () => {
      const child = run({ HOST: '127.0.0.1', PORT: '0', MAX_QUEUE_DELAY_US: '2000', LOG_LEVEL: 'info' });
      const exited = exitOf(child);
      const port = await portOf(child);
      const client = new ModelService(`127.0.0.1:${port}`, grpc.credentials.createInsecure()) as unknown as ModelServiceClient;
      try {
        await predict(client, { features: featuresFor(0, 1, 17) }); // connected and warm
        const calls = Array.from({ length: 50 }, (_, i) => predict(client, { features: featuresFor(i, 1, 17) }));
        // The signal goes once the calls are on the wire; they are queued for up to 2 ms when it lands.
        await new Promise((resolve) => setImmediate(resolve));
        child.kill(signal);
        const answers = await Promise.allSettled(calls);
        const failed = answers.filter((a) => a.status === 'rejected') as PromiseRejectedResult[];
        // A call the server had not accepted before it stopped listening may be refused (UNAVAILABLE); none may
        // be lost or cut off mid-way.
        for (const f of failed) assert.equal((f.reason as grpc.ServiceError).code, grpc.status.UNAVAILABLE);
        assert.ok(answers.length - failed.length > 0, 'no call was answered');
        const { code, stdout } = await exited;
        assert.equal(code, 0);
        assert.match(stdout, /"msg":"draining"/);
        assert.match(stdout, /"msg":"stopped"/);
      } finally {
        client.close();
        child.kill('SIGKILL');
      }
    });
  }
});
