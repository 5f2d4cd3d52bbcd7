// Deadlines, cancellation, overload, worker faults, graceful drain and bad bytes, against a real server whose
// pool runs the test-only fault-injecting worker (fixtures/fault-worker.ts) over the real ONNX worker.
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { protoPath as healthProtoPath } from 'grpc-health-check';
import assert from 'node:assert/strict';
import { performance } from 'node:perf_hooks';
import { after, before, describe, it } from 'node:test';
import { FAULT, SLOW_MS } from './fixtures/faults';
import { DEFAULT_MODEL_PATH, featuresFor, referenceOutputs } from './helpers/models';
import {
  assertClose,
  expectStatus,
  FAULT_WORKER,
  predict,
  startServer,
  streamAll,
  type PredictReply,
  type TestServer,
} from './helpers/server';

const WIDTH = 17;
const faulty = (fault: number, request = 0) => ({ features: [fault, ...featuresFor(request, 1, WIDTH - 1)] });
const normal = (request: number) => ({ features: featuresFor(request, 1, WIDTH) });


/** Resolves once `condition` holds, checking once per event-loop turn (for server state the test observes). */
async function until(condition: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const start = performance.now();
  while (!condition()) {
    if (performance.now() - start > timeoutMs) throw new Error(`timed out waiting until ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
}

async function expectCorrect(server: TestServer, request: number): Promise<void> {
  const { reply } = await predict(server.client, normal(request));
  assertClose(reply.predictions, await referenceOutputs(DEFAULT_MODEL_PATH, Float32Array.from(normal(request).features), 1));
}

describe('worker faults fail only their batch; the worker is replaced and serving goes on', () => {
  let server: TestServer;
  before(async () => {
    server = await startServer({ WORKER_TIMEOUT_MS: '1000', MAX_BATCH_SIZE: '1' }, { workerFilename: FAULT_WORKER });
  });
  after(() => server.close());

  it('a worker that throws: UNAVAILABLE naming the failure', async () => {
    await expectStatus(predict(server.client, faulty(FAULT.THROW)), grpc.status.UNAVAILABLE, /worker failed \(injected fault\); it was replaced/);
    await expectCorrect(server, 1);
  });

  it('a worker thread that exits mid-batch: UNAVAILABLE', async () => {
    await expectStatus(predict(server.client, faulty(FAULT.EXIT)), grpc.status.UNAVAILABLE, /worker failed .*; it was replaced/);
    await expectCorrect(server, 2);
  });

  it('a worker that hangs: UNAVAILABLE after WORKER_TIMEOUT_MS, and the requests queued behind it are served', async () => {
    const hung = predict(server.client, faulty(FAULT.HANG));
    await until(() => server.server.batcher.inFlightBatches === 1, 'the hanging batch is in flight');
    const behind = Array.from({ length: 10 }, (_, i) => predict(server.client, normal(100 + i)));
    await expectStatus(hung, grpc.status.UNAVAILABLE, /did not finish the batch within WORKER_TIMEOUT_MS \(1000 ms\); it was replaced/);
    const expected = await referenceOutputs(DEFAULT_MODEL_PATH, Float32Array.from(Array.from({ length: 10 }, (_, i) => normal(100 + i).features).flat()), 10);
    (await Promise.all(behind)).forEach(({ reply }, i) => assertClose(reply.predictions, expected.subarray(i * 5, i * 5 + 5), `request ${i}`));
  });

  it('a fault inside a stream fails that message only, in its slot', async () => {
    const replies = await streamAll(server.client, [normal(1), faulty(FAULT.THROW), normal(2)]);
    assert.equal(replies.length, 3);
    assert.equal(replies[0].error, null);
    assert.equal(replies[1].error?.code, grpc.status.UNAVAILABLE);
    assert.match(replies[1].error?.message ?? '', /injected fault/);
    assert.equal(replies[2].error, null);
    assert.equal(replies[2].predictions.length, 5);
  });
});

describe('deadlines and cancellation', () => {
  let server: TestServer;
  before(async () => {
    // One row a batch, one worker: two slow batches occupy both slabs, so the next request must queue. Fixed delay:
    // these tests time a deadline as it passes in the queue; adaptive would refuse such a request as soon as it
    // predicts the slow batches ahead make its deadline impossible (test/adaptive.test.ts covers that).
    server = await startServer({ MAX_BATCH_SIZE: '1', REQUEST_TIMEOUT_MS: '150', BATCH_DELAY: 'fixed' }, { workerFilename: FAULT_WORKER });
  });
  after(() => server.close());

  async function occupyWorkers(): Promise<Array<Promise<unknown>>> {
    const slow = [predict(server.client, faulty(FAULT.SLOW, 1), { deadline: Date.now() + 5000 })];
    await until(() => server.server.batcher.inFlightBatches === 1, 'the first slow batch is in flight');
    slow.push(predict(server.client, faulty(FAULT.SLOW, 2), { deadline: Date.now() + 5000 }));
    await until(() => server.server.batcher.inFlightBatches === 2, 'both slabs are in flight');
    return slow;
  }

  it('a client deadline that passes in the queue: DEADLINE_EXCEEDED at the deadline, not after the busy batches', async () => {
    const slow = await occupyWorkers();
    const sent = performance.now();
    await expectStatus(predict(server.client, normal(3), { deadline: Date.now() + 50 }), grpc.status.DEADLINE_EXCEEDED, /deadline/i);
    assert.ok(performance.now() - sent < SLOW_MS, 'the expired call waited for the busy batches');
    await until(() => server.server.batcher.queuedRowCount === 0, 'the expired request left the queue');
    await Promise.all(slow);
  });

  it('REQUEST_TIMEOUT_MS applies to calls without a deadline: dropped from the queue, never computed', async () => {
    const slow = await occupyWorkers();
    const sent = performance.now();
    await expectStatus(predict(server.client, normal(4)), grpc.status.DEADLINE_EXCEEDED, /deadline exceeded while queued; not computed/);
    const waited = performance.now() - sent;
    assert.ok(waited >= 140 && waited < SLOW_MS + 100, `answered after ${waited.toFixed(0)} ms`);
    await Promise.all(slow);
  });

  it('REQUEST_TIMEOUT_MS on a stream without a deadline counts per message, not from the stream\'s start', async () => {
    const call = server.client.StreamPredict();
    const replies: PredictReply[] = [];
    call.on('data', (reply: PredictReply) => replies.push(reply));
    for (let i = 0; i < 4; i++) {
      call.write(normal(i));
      await new Promise((resolve) => setTimeout(resolve, 100)); // 400 ms in all, past the 150 ms timeout
    }
    // Then one message that must wait behind two slow batches (300 ms) in the queue: past its own 150 ms.
    const slow = await occupyWorkers();
    const sent = performance.now();
    call.write(normal(4));
    await until(() => replies.length === 5, 'the queued message is answered');
    const waited = performance.now() - sent;
    call.end();
    await new Promise((resolve) => call.on('end', resolve));
    for (const reply of replies.slice(0, 4)) assert.equal(reply.error, null, reply.error?.message);
    assert.equal(replies[4].error?.code, grpc.status.DEADLINE_EXCEEDED, 'a stream message outlived REQUEST_TIMEOUT_MS in the queue');
    assert.ok(waited >= 140 && waited < SLOW_MS, `answered after ${waited.toFixed(0)} ms`);
    await Promise.all(slow);
  });

  it('a cancelled call leaves the queue at once', async () => {
    const slow = await occupyWorkers();
    const call = server.client.Predict(normal(5), new grpc.Metadata(), { deadline: Date.now() + 5000 }, () => {});
    await until(() => server.server.batcher.queuedRowCount === 1, 'the call is queued');
    call.cancel();
    await until(() => server.server.batcher.queuedRowCount === 0, 'the cancelled call left the queue', SLOW_MS / 2);
    await Promise.all(slow);
  });
});

describe('overload', () => {
  let server: TestServer;
  before(async () => {
    server = await startServer({ MAX_BATCH_SIZE: '8', MAX_QUEUE_SIZE: '8' });
  });
  after(() => server.close());

  it('a stream past MAX_QUEUE_SIZE waits for room: every message answered, in order, none refused', async () => {
    const count = 5000;
    const replies = await streamAll(server.client, Array.from({ length: count }, (_, i) => normal(i)));
    assert.equal(replies.length, count);
    const refused = replies.filter((r) => r.error !== null);
    assert.deepEqual(refused, []);
    const inputs = Float32Array.from(Array.from({ length: count }, (_, i) => normal(i).features).flat());
    const expected = await referenceOutputs(DEFAULT_MODEL_PATH, inputs, count);
    replies.forEach((r, i) => assertClose(r.predictions, expected.subarray(i * 5, i * 5 + 5), `message ${i}`));
  });

  it('a message over MAX_RECEIVE_MESSAGE_BYTES: RESOURCE_EXHAUSTED', async () => {
    const small = await startServer({ MAX_RECEIVE_MESSAGE_BYTES: '1024' });
    try {
      await expectStatus(predict(small.client, { features: new Array(300).fill(0.5) }), grpc.status.RESOURCE_EXHAUSTED, /1024/);
      const { reply } = await predict(small.client, normal(1));
      assert.equal(reply.predictions.length, 5);
    } finally {
      await small.close();
    }
  });
});

describe('graceful drain', () => {
  it('health NOT_SERVING at once, new calls UNAVAILABLE, in-flight unary and stream answered, streams end OK', async () => {
    const server = await startServer({ MAX_BATCH_SIZE: '1' }, { workerFilename: FAULT_WORKER });
    const healthDefinition = protoLoader.loadSync(healthProtoPath, { keepCase: true, enums: String });
    const Health = ((grpc.loadPackageDefinition(healthDefinition).grpc as grpc.GrpcObject).health as grpc.GrpcObject)
      .v1 as grpc.GrpcObject;
    const health = new (Health.Health as grpc.ServiceClientConstructor)(server.address, grpc.credentials.createInsecure());
    try {
      const statuses: string[] = [];
      const watch = health.Watch({ service: 'inference.ModelService' });
      watch.on('data', (reply: { status: string }) => statuses.push(reply.status));
      watch.on('error', () => {});
      await until(() => statuses.length === 1, 'the first health status');
      assert.equal(statuses[0], 'SERVING');

      const inFlight = predict(server.client, faulty(FAULT.SLOW, 1));
      const streamReplies: PredictReply[] = [];
      const stream = server.client.StreamPredict();
      stream.on('data', (reply: PredictReply) => streamReplies.push(reply));
      const streamStatus = new Promise<grpc.StatusObject>((resolve) => stream.on('status', resolve));
      stream.on('error', () => {});
      stream.write(faulty(FAULT.SLOW, 2));
      await until(() => server.server.batcher.inFlightBatches === 2, 'both slow batches are in flight');

      const closed = server.server.close(5000);
      await until(() => statuses.includes('NOT_SERVING'), 'health says NOT_SERVING');
      assert.ok(server.server.batcher.inFlightBatches > 0, 'health changed only after the in-flight work finished');
      await expectStatus(predict(server.client, normal(1)), grpc.status.UNAVAILABLE, /.+/);

      const { reply } = await inFlight;
      assert.equal(reply.predictions.length, 5);
      assert.equal((await streamStatus).code, grpc.status.OK);
      assert.equal(streamReplies.length, 1);
      assert.equal(streamReplies[0].error, null);
      await closed;
    } finally {
      health.close();
      server.client.close();
      await server.server.close();
    }
  });
});

describe('several workers', () => {
  it('a stream\'s answers keep their order when its batches finish out of order on different workers', async () => {
    const server = await startServer({ MAX_BATCH_SIZE: '1', WORKERS: '2' }, { workerFilename: FAULT_WORKER });
    try {
      const requests = [faulty(FAULT.SLOW, 0), ...Array.from({ length: 6 }, (_, i) => normal(10 + i))];
      const replies = await streamAll(server.client, requests);
      assert.equal(replies.length, requests.length);
      for (const reply of replies) assert.equal(reply.error, null, reply.error?.message);
      // The slow first message finished last, so order was restored, not merely kept.
      assert.ok(replies[0].latency_ms >= SLOW_MS - 10, `the slow message took ${replies[0].latency_ms} ms`);
      assert.ok(replies.slice(1).every((r) => r.latency_ms < replies[0].latency_ms), 'the fast messages did not finish first');
      const expected = await referenceOutputs(
        DEFAULT_MODEL_PATH,
        Float32Array.from(requests.slice(1).flatMap((r) => r.features)),
        requests.length - 1,
      );
      replies.slice(1).forEach((reply, i) => assertClose(reply.predictions, expected.subarray(i * 5, i * 5 + 5), `message ${i + 1}`));
    } finally {
      await server.close();
    }
  });
});

describe('shutdown at the edges', () => {
  it('close() twice: the same drain, both resolve', async () => {
    const server = await startServer();
    const first = server.server.close(1000);
    const second = server.server.close(1000);
    assert.equal(first, second);
    await Promise.all([first, second]);
    server.client.close();
  });

  it('the grace period runs out with requests still queued: every one of them is answered, and close() resolves', async () => {
    const server = await startServer({ MAX_BATCH_SIZE: '1', WORKER_TIMEOUT_MS: '0' }, { workerFilename: FAULT_WORKER });
    try {
      // Both slabs hang for good; three more calls wait in the queue behind them.
      const hung = [predict(server.client, faulty(FAULT.HANG, 1)), predict(server.client, faulty(FAULT.HANG, 2))];
      await until(() => server.server.batcher.inFlightBatches === 2, 'both slabs hang');
      const queued = [3, 4, 5].map((i) => predict(server.client, normal(i)));
      await until(() => server.server.batcher.queuedRowCount === 3, 'three calls are queued');
      const settled = Promise.allSettled([...hung, ...queued]);
      const started = performance.now();
      await server.server.close(200);
      assert.ok(performance.now() - started < 5000, 'close() waited far past the grace period');
      const outcomes = await settled;
      for (const [i, outcome] of outcomes.entries()) {
        assert.equal(outcome.status, 'rejected', `call ${i} was answered OK by a server cut off`);
        if (outcome.status === 'rejected') {
          assert.ok([grpc.status.UNAVAILABLE, grpc.status.CANCELLED].includes((outcome.reason as grpc.ServiceError).code), String(outcome.reason));
        }
      }
    } finally {
      server.client.close();
    }
  });
});
