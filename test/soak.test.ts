// The soak: rounds of concurrent streams and unary calls with random cancellations, short deadlines and bad
// messages mixed in. Every request must get exactly one answer or one error, the queue must drain to zero, and
// the heap after warm-up must not grow by more than 10%.
import * as grpc from '@grpc/grpc-js';
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { seededRandom } from '../scripts/onnx-writer';
import { DEFAULT_MODEL_PATH, featuresFor, referenceOutputs } from './helpers/models';
import { modelClient, startServer, type ModelServiceClient, type PredictReply } from './helpers/server';

const WIDTH = 17;
const OUTPUTS = 5;
const ROWS = 256; // distinct rows the messages cycle through
const ROUNDS = 6;
const STREAMS = 4;
const MESSAGES = 2000;
// Each round runs on a connection of its own: a client that resets more than 1,000 streams in a burst (a call it
// cancels, or whose deadline passes) is cut off by nghttp2's rapid-reset protection in Node's HTTP/2 server, as any
// Node gRPC server would (README, "Operating notes").
const UNARY = 300;

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;
const heapMiB = () => {
  gc();
  gc();
  return process.memoryUsage().heapUsed / 2 ** 20;
};

type Kind = 'good' | 'short' | 'nan' | 'version';

interface Plan {
  kinds: Kind[];
  /** Cancel the stream once this many answers have arrived (the rest are queued or computing); Infinity: never. */
  cancelAfter: number;
  /** Stream deadline in ms; Infinity: none. */
  deadlineMs: number;
}

const rows = Array.from({ length: ROWS }, (_, i) => featuresFor(i, 1, WIDTH));

function requestFor(kind: Kind, i: number): object {
  const features = rows[i % ROWS];
  switch (kind) {
    case 'good':
      return { features };
    case 'short':
      return { features: features.slice(1) };
    case 'nan':
      return { features: [NaN, ...features.slice(1)] };
    case 'version':
      return { features, model_version: 'nope' };
  }
}

const EXPECTED_CODE: Record<Kind, number> = {
  good: grpc.status.OK,
  short: grpc.status.INVALID_ARGUMENT,
  nan: grpc.status.INVALID_ARGUMENT,
  version: grpc.status.NOT_FOUND,
};

/** Runs one stream to its end; checks each answer against its message; returns how it ended. */
function runStream(client: ModelServiceClient, plan: Plan, reference: Float32Array): Promise<{ code: number; answered: number }> {
  return new Promise((resolve, reject) => {
    const options = plan.deadlineMs === Infinity ? {} : { deadline: Date.now() + plan.deadlineMs };
    const call = client.StreamPredict(options);
    let answered = 0;
    let failure: Error | null = null;
    call.on('data', (reply: PredictReply) => {
      const i = answered++;
      if (answered === plan.cancelAfter) call.cancel();
      try {
        assert.ok(i < plan.kinds.length, 'more answers than messages');
        const kind = plan.kinds[i];
        if (kind === 'good') {
          assert.equal(reply.error, null, `message ${i}: ${reply.error?.message}`);
          const expected = reference.subarray((i % ROWS) * OUTPUTS, (i % ROWS + 1) * OUTPUTS);
          for (let j = 0; j < OUTPUTS; j++) assert.ok(Math.abs(reply.predictions[j] - expected[j]) < 1e-5, `message ${i}`);
        } else {
          // A good message may also fail with the stream's own deadline (DEADLINE_EXCEEDED in its slot).
          assert.equal(reply.error?.code, EXPECTED_CODE[kind], `message ${i} (${kind})`);
        }
      } catch (error) {
        failure ??= error as Error;
      }
    });
    call.on('error', () => {});
    call.on('status', (status: grpc.StatusObject) => {
      if (failure) reject(failure);
      else resolve({ code: status.code, answered });
    });
    let i = 0;
    const write = () => {
      while (i < plan.kinds.length) {
        const ok = call.write(requestFor(plan.kinds[i], i));
        i++;
        if (!ok) return void call.once('drain', write);
      }
      call.end();
    };
    write();
  });
}

/** A unary call with a short random deadline: exactly one callback, with an expected status. */
function runUnary(client: ModelServiceClient, kind: Kind, i: number, deadlineMs: number): Promise<number> {
  return new Promise((resolve, reject) => {
    let callbacks = 0;
    client.Predict(requestFor(kind, i), new grpc.Metadata(), { deadline: Date.now() + deadlineMs }, (error) => {
      callbacks++;
      if (callbacks > 1) reject(new Error('a unary call was answered twice'));
      const code = error?.code ?? grpc.status.OK;
      const allowed = [EXPECTED_CODE[kind], grpc.status.DEADLINE_EXCEEDED, grpc.status.RESOURCE_EXHAUSTED];
      if (!allowed.includes(code)) reject(new Error(`unary ${kind} answered ${grpc.status[code]}: ${error?.details}`));
      // wait a turn so that a second answer would be seen
      setImmediate(() => resolve(code));
    });
  });
}

describe('soak', () => {
  it('every request gets exactly one answer or error; the queue drains; the heap does not grow', async (t) => {
    const server = await startServer({ MAX_BATCH_SIZE: '16', MAX_QUEUE_SIZE: '64', MAX_QUEUE_DELAY_US: '200' });
    const reference = await referenceOutputs(DEFAULT_MODEL_PATH, Float32Array.from(rows.flat()), ROWS);
    const random = seededRandom(2026);
    const pick = (): Kind => {
      const r = random();
      return r < 0.94 ? 'good' : r < 0.96 ? 'short' : r < 0.98 ? 'nan' : 'version';
    };
    const ended: Record<string, number> = {};
    let warmHeap = 0;
    try {
      for (let round = 0; round < ROUNDS; round++) {
        // Stream 0 is cancelled part-way, stream 1 has a deadline too short for its messages, the rest run out.
        const plans: Plan[] = Array.from({ length: STREAMS }, (_, s) => ({
          kinds: Array.from({ length: MESSAGES }, pick),
          cancelAfter: s === 0 ? 1 + Math.floor(random() * (MESSAGES - 1)) : Infinity,
          deadlineMs: s === 1 ? 100 + Math.floor(random() * 300) : Infinity,
        }));
        const client = modelClient(server.address);
        await new Promise<void>((resolve, reject) =>
          client.waitForReady(Date.now() + 5000, (error) => (error ? reject(error) : resolve())),
        );
        const streams = plans.map((plan) => runStream(client, plan, reference));
        const unary = Array.from({ length: UNARY }, (_, i) => runUnary(client, pick(), i, 1 + Math.floor(random() * 20)));
        const outcomes = await Promise.all(streams);
        await Promise.all(unary);
        client.close();
        outcomes.forEach(({ code, answered }, s) => {
          const plan = plans[s];
          ended[grpc.status[code]] = (ended[grpc.status[code]] ?? 0) + 1;
          if (code === grpc.status.OK) {
            assert.equal(answered, MESSAGES, 'a stream that ended OK answered every message');
          } else {
            assert.ok([grpc.status.CANCELLED, grpc.status.DEADLINE_EXCEEDED].includes(code), grpc.status[code]);
            assert.ok(plan.cancelAfter !== Infinity || plan.deadlineMs !== Infinity, `stream ${s} failed unplanned: ${grpc.status[code]}`);
            assert.ok(answered <= MESSAGES);
          }
        });
        await server.server.batcher.drain();
        assert.equal(server.server.batcher.queuedRowCount, 0);
        assert.equal(server.server.batcher.inFlightBatches, 0);
        if (round === 1) warmHeap = heapMiB();
      }
      const finalHeap = heapMiB();
      t.diagnostic(`streams ended ${JSON.stringify(ended)}; heap ${warmHeap.toFixed(1)} -> ${finalHeap.toFixed(1)} MiB`);
      assert.ok(finalHeap <= warmHeap * 1.1, `heap grew from ${warmHeap.toFixed(1)} to ${finalHeap.toFixed(1)} MiB`);
      assert.ok((ended.OK ?? 0) > 0 && (ended.CANCELLED ?? 0) + (ended.DEADLINE_EXCEEDED ?? 0) > 0, JSON.stringify(ended));
      await new Promise((resolve) => setTimeout(resolve, 50));
      assert.deepEqual(server.server.streamStats(), { open: 0, unanswered: 0 });
    } finally {
      await server.close();
    }
  });
});
