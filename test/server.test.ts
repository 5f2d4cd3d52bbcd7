// The serving core end to end: a real server on 127.0.0.1:0, real ONNX workers, a real grpc-js client.
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { protoPath as healthProtoPath } from 'grpc-health-check';
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import path from 'node:path';
import { DEFAULT_MODEL_PATH, featuresFor, referenceOutputs, WIDE_MODEL, writeModel } from './helpers/models';
import { assertClose, expectStatus, predict, startServer, streamAll, type TestServer } from './helpers/server';

const WIDTH = 17;
const OUTPUTS = 5;


describe('ModelService on the default model', () => {
  let server: TestServer;
  before(async () => {
    server = await startServer({ MAX_BATCH_SIZE: '16', MAX_QUEUE_DELAY_US: '200' });
  });
  after(() => server.close());

  it('answers Predict with what onnxruntime computes in-process on the same row', async () => {
    const features = featuresFor(1, 1, WIDTH);
    const { reply, trailers } = await predict(server.client, { features });
    const expected = await referenceOutputs(DEFAULT_MODEL_PATH, Float32Array.from(features), 1);
    assertClose(reply.predictions, expected);
    assert.equal(reply.model_version, '1');
    assert.ok(reply.latency_ms > 0, 'latency_ms is set');
    assert.ok(Number(trailers['x-batch-rows']) >= 1);
    assert.ok(Number(trailers['x-queue-us']) >= 0);
    assert.ok(Number(trailers['x-compute-us']) > 0);
    assert.equal(reply.batch_rows, Number(trailers['x-batch-rows']));
  });

  it('answers a multi-row request with the same number of rows, row-major', async () => {
    const features = featuresFor(2, 3, WIDTH);
    const { reply } = await predict(server.client, { features, batch_size: 3 });
    assertClose(reply.predictions, await referenceOutputs(DEFAULT_MODEL_PATH, Float32Array.from(features), 3));
    assert.equal(reply.predictions.length, 3 * OUTPUTS);
  });

  it('gives each of many concurrent callers its own rows back, batched together', async () => {
    const callers = 200;
    const inputs = Array.from({ length: callers }, (_, i) => featuresFor(100 + i, 1 + (i % 3), WIDTH));
    const results = await Promise.all(
      inputs.map((features, i) => predict(server.client, { features, batch_size: 1 + (i % 3) })),
    );
    const expected = await referenceOutputs(DEFAULT_MODEL_PATH, Float32Array.from(inputs.flat()), inputs.flat().length / WIDTH);
    let row = 0;
    results.forEach(({ reply }, i) => {
      const rows = 1 + (i % 3);
      assertClose(reply.predictions, expected.subarray(row * OUTPUTS, (row + rows) * OUTPUTS), `caller ${i}`);
      row += rows;
    });
    const largest = Math.max(...results.map((r) => Number(r.trailers['x-batch-rows'])));
    assert.ok(largest > 3, `concurrent callers were never batched together (largest batch ${largest} rows)`);
    assert.ok(largest <= 16, `a batch exceeded MAX_BATCH_SIZE: ${largest}`);
  });

  it('answers a stream of 10,000 messages in order, each correct', async () => {
    const count = 10_000;
    const inputs = Array.from({ length: count }, (_, i) => featuresFor(i, 1, WIDTH));
    const replies = await streamAll(server.client, inputs.map((features) => ({ features })));
    assert.equal(replies.length, count);
    const expected = await referenceOutputs(DEFAULT_MODEL_PATH, Float32Array.from(inputs.flat()), count);
    replies.forEach((reply, i) => {
      assert.equal(reply.error, null, `message ${i} failed`);
      assertClose(reply.predictions, expected.subarray(i * OUTPUTS, (i + 1) * OUTPUTS), `message ${i}`);
    });
    assert.ok(replies.some((r) => r.batch_rows > 1), 'stream messages were never batched');
  });

  it('answers a bad message in a stream in its own slot and goes on', async () => {
    const good = featuresFor(5, 1, WIDTH);
    const replies = await streamAll(server.client, [
      { features: good },
      { features: [1, 2, 3] },
      { features: good, model_version: 'nope' },
      { features: good },
    ]);
    assert.equal(replies.length, 4);
    assert.equal(replies[0].error, null);
    assert.equal(replies[1].error?.code, grpc.status.INVALID_ARGUMENT);
    assert.match(replies[1].error?.message ?? '', /expected 17 .* got 3/);
    assert.equal(replies[1].predictions.length, 0);
    assert.equal(replies[2].error?.code, grpc.status.NOT_FOUND);
    assertClose(replies[3].predictions, replies[0].predictions);
  });

  it('answers the contract HealthCheck', async () => {
    const reply = await new Promise((resolve, reject) =>
      server.client.HealthCheck({}, (error, value) => (error ? reject(error) : resolve(value))),
    );
    assert.deepEqual(reply, { healthy: true, status: 'SERVING' });
  });

  describe('bad input: a clear status, never the model, and the server keeps serving', () => {
    const cases: Array<[string, object, grpc.status, RegExp]> = [
      ['wrong feature count', { features: [1, 2, 3] }, grpc.status.INVALID_ARGUMENT, /expected 17 \(1 row x 17\), got 3/],
      ['empty features', { features: [] }, grpc.status.INVALID_ARGUMENT, /features is empty: expected 17/],
      ['NaN', { features: [...featuresFor(0, 1, 16), NaN] }, grpc.status.INVALID_ARGUMENT, /features\[16\] is NaN/],
      ['Infinity', { features: [Infinity, ...featuresFor(0, 1, 16)] }, grpc.status.INVALID_ARGUMENT, /features\[0\] is Infinity/],
      ['negative batch_size', { features: featuresFor(0, 1, 17), batch_size: -1 }, grpc.status.INVALID_ARGUMENT, /batch_size must be 0 or more, got -1/],
      ['batch_size over MAX_BATCH_SIZE', { features: featuresFor(0, 17, 17), batch_size: 17 }, grpc.status.INVALID_ARGUMENT, /batch_size 17 exceeds MAX_BATCH_SIZE 16/],
      ['rows short of batch_size', { features: featuresFor(0, 1, 17), batch_size: 2 }, grpc.status.INVALID_ARGUMENT, /expected 34 \(2 rows x 17\), got 17/],
      ['unknown model_version', { features: featuresFor(0, 1, 17), model_version: '2' }, grpc.status.NOT_FOUND, /model "default" has no version "2"; ready versions: 1/],
    ];
    for (const [name, request, code, message] of cases) {
      it(name, async () => {
        await expectStatus(predict(server.client, request), code, message);
        const { reply } = await predict(server.client, { features: featuresFor(9, 1, WIDTH) });
        assert.equal(reply.predictions.length, OUTPUTS);
      });
    }

    it('malformed protobuf bytes', async () => {
      const raw = new grpc.Client(server.address, grpc.credentials.createInsecure());
      try {
        const call = new Promise((resolve, reject) =>
          raw.makeUnaryRequest(
            '/inference.ModelService/Predict',
            (bytes: Buffer) => bytes,
            (bytes: Buffer) => bytes,
            Buffer.from([0x0a, 0x40, 0x00]),
            (error, value) => (error ? reject(error) : resolve(value)),
          ),
        );
        await expectStatus(call, grpc.status.INVALID_ARGUMENT, /malformed PredictRequest: field length past the end/);
      } finally {
        raw.close();
      }
    });

    it('a model_version that names the served one is accepted', async () => {
      const { reply } = await predict(server.client, { features: featuresFor(3, 1, WIDTH), model_version: '1' });
      assert.equal(reply.model_version, '1');
    });
  });
});

describe('ModelService on a model of another input shape', () => {
  let server: TestServer;
  let modelPath: string;
  before(async () => {
    modelPath = writeModel(WIDE_MODEL);
    server = await startServer({ MODEL_PATH: modelPath, MODEL_VERSION: 'wide-3' });
  });
  after(() => server.close());

  it('takes its row width from the model input [batch, 4, 8] and answers its 3 outputs a row', async () => {
    const features = featuresFor(4, 2, 32);
    const { reply } = await predict(server.client, { features, batch_size: 2 });
    assertClose(reply.predictions, await referenceOutputs(modelPath, Float32Array.from(features), 2));
    assert.equal(reply.predictions.length, 6);
    assert.equal(reply.model_version, 'wide-3');
  });

  it('says the expected count for this model', async () => {
    await expectStatus(
      predict(server.client, { features: featuresFor(0, 1, 17) }),
      grpc.status.INVALID_ARGUMENT,
      /expected 32 \(1 row x 32\), got 17/,
    );
  });
});

describe('queue limit', () => {
  it('refuses unary calls beyond MAX_QUEUE_SIZE with RESOURCE_EXHAUSTED and answers every call once', async () => {
    const server = await startServer({ MAX_BATCH_SIZE: '1', MAX_QUEUE_SIZE: '1' });
    try {
      const calls = Array.from({ length: 300 }, (_, i) =>
        predict(server.client, { features: featuresFor(i, 1, WIDTH) }).then(
          () => 'ok',
          (error: grpc.ServiceError) => {
            assert.equal(error.code, grpc.status.RESOURCE_EXHAUSTED, error.details);
            assert.match(error.details, /queue full: .* MAX_QUEUE_SIZE is 1/);
            return 'refused';
          },
        ),
      );
      const outcomes = await Promise.all(calls);
      assert.equal(outcomes.length, 300);
      assert.ok(outcomes.includes('refused'), 'no call was refused');
      assert.ok(outcomes.includes('ok'), 'no call was served');
    } finally {
      await server.close();
    }
  });
});

describe('standard services', () => {
  let server: TestServer;
  before(async () => {
    server = await startServer();
  });
  after(() => server.close());

  const healthDefinition = protoLoader.loadSync(healthProtoPath, { keepCase: true, enums: String });
  const Health = (grpc.loadPackageDefinition(healthDefinition).grpc as grpc.GrpcObject).health as grpc.GrpcObject;
  const HealthClient = (Health.v1 as grpc.GrpcObject).Health as grpc.ServiceClientConstructor;

  it('grpc.health.v1 Check is SERVING for "" and inference.ModelService, NOT_FOUND for others', async () => {
    const health = new HealthClient(server.address, grpc.credentials.createInsecure());
    const check = (service: string) =>
      new Promise<{ status: string }>((resolve, reject) =>
        health.Check({ service }, (error: grpc.ServiceError | null, reply: { status: string }) =>
          error ? reject(error) : resolve(reply),
        ),
      );
    try {
      assert.equal((await check('')).status, 'SERVING');
      assert.equal((await check('inference.ModelService')).status, 'SERVING');
      await assert.rejects(check('other.Service'), (e: grpc.ServiceError) => e.code === grpc.status.NOT_FOUND);
    } finally {
      health.close();
    }
  });

  it('server reflection lists the services', async () => {
    const reflectionProto = path.join(
      path.dirname(require.resolve('@grpc/reflection/package.json')),
      'build/proto/grpc/reflection/v1/reflection.proto',
    );
    const definition = protoLoader.loadSync(reflectionProto, { keepCase: true });
    const reflection = (grpc.loadPackageDefinition(definition).grpc as grpc.GrpcObject).reflection as grpc.GrpcObject;
    const Client = (reflection.v1 as grpc.GrpcObject).ServerReflection as grpc.ServiceClientConstructor;
    const client = new Client(server.address, grpc.credentials.createInsecure());
    try {
      const names = await new Promise<string[]>((resolve, reject) => {
        const call = client.ServerReflectionInfo();
        call.on('data', (reply: { list_services_response: { service: Array<{ name: string }> } }) => {
          resolve(reply.list_services_response.service.map((s) => s.name));
          call.end();
        });
        call.on('error', reject);
        call.write({ list_services: '' });
      });
      assert.ok(names.includes('inference.ModelService'), names.join(','));
      assert.ok(names.includes('grpc.health.v1.Health'), names.join(','));
    } finally {
      client.close();
    }
  });
});
