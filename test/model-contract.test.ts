// Other people's ONNX models: the shapes a model declares are checked at startup, and the shape it answers is checked
// on every batch, so that no caller is ever answered with another caller's rows. Real models run by onnxruntime,
// called through a real server over loopback.
import * as grpc from '@grpc/grpc-js';
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import pino from 'pino';
import { ConfigError, StartupError } from '../src/main/config';
import { InferenceServer } from '../src/main/server';
import { Telemetry } from '../src/main/telemetry';
import { SHAPED_MODELS, writeGraph, writeRepository } from './helpers/models';
import { expectStatus, predict, startServer, testConfig, type TestServer } from './helpers/server';

/** Starting a server over `env` fails with a ConfigError for `variable` whose message matches `message`. */
async function expectRefused(env: Record<string, string>, variable: string, message: RegExp): Promise<void> {
  const config = testConfig(env);
  const logger = pino({ level: 'silent' });
  await assert.rejects(InferenceServer.create(config, logger, new Telemetry(config, logger)), (error: unknown) => {
    assert.ok(error instanceof ConfigError || error instanceof StartupError, `not a ConfigError or StartupError: ${String(error)}`);
    assert.equal(error.variable, variable);
    assert.match(error.message, message);
    return true;
  });
}

const plusOne = (values: number[]) => values.map((v) => v + 1);

describe('model contract: refused at startup', () => {
  it('an output with more rows than the batch (Concat along the batch axis): refused, naming the output and its shape', async () => {
    await expectRefused(
      { MODEL_PATH: writeGraph(SHAPED_MODELS.concatRows()) },
      'MODEL_PATH',
      /output "y" has shape \[2, 4\] for one input row; its first dimension must be the batch/,
    );
  });

  it('an input whose batch dimension is fixed and not 1: refused, naming the input', async () => {
    await expectRefused(
      { MODEL_PATH: writeGraph(SHAPED_MODELS.fixedBatch(4)) },
      'MODEL_PATH',
      /input "x" has shape \[4, 4\], a fixed batch dimension of 4; the batch dimension \(the first\) must be dynamic or 1/,
    );
  });

  it('an output whose declared first dimension is fixed and not 1: refused', async () => {
    await expectRefused(
      { MODEL_PATH: writeGraph(SHAPED_MODELS.fixedOutputRows()) },
      'MODEL_PATH',
      /output "y" has shape \[3, 4\]; its first dimension must be the batch/,
    );
  });

  it('a model with two outputs and no OUTPUT_NAME: refused, listing the outputs', async () => {
    await expectRefused(
      { MODEL_PATH: writeGraph(SHAPED_MODELS.twoOutputs()) },
      'OUTPUT_NAME',
      /has 2 outputs \("same", "plus_one"\); set OUTPUT_NAME to the one to serve/,
    );
  });

  it('OUTPUT_NAME that the model does not have: refused, listing the outputs', async () => {
    await expectRefused(
      { MODEL_PATH: writeGraph(SHAPED_MODELS.twoOutputs()), OUTPUT_NAME: 'plus_two' },
      'OUTPUT_NAME',
      /has no output "plus_two"; its outputs are "same", "plus_one"/,
    );
  });

  it('a row larger than MAX_RECEIVE_MESSAGE_BYTES: refused with the bytes one row needs', async () => {
    await expectRefused(
      { MODEL_PATH: writeGraph(SHAPED_MODELS.wide(2_000_000)) },
      'MAX_RECEIVE_MESSAGE_BYTES',
      /one row of 2000000 floats .* needs at least 8000005 bytes.*raise MAX_RECEIVE_MESSAGE_BYTES to at least 8000005/,
    );
  });

  it('slabs larger than memory allows: refused with rows × widths × 4 bytes × slabs, before any allocation', async () => {
    await expectRefused(
      { MODEL_PATH: writeGraph(SHAPED_MODELS.wide(1_000_000)), MAX_RECEIVE_MESSAGE_BYTES: '8000000', MAX_BATCH_SIZE: '65536', MAX_QUEUE_SIZE: '65536' },
      'MAX_BATCH_SIZE',
      /slab memory = 65536 rows × \(1000000 \+ 1000000\) floats × 4 bytes × 2 slabs \(2 per worker\) = 976\.6 GiB, over the .* lower MAX_BATCH_SIZE or WORKERS/,
    );
  });
});

describe('model contract: a model that answers the wrong shape for a batch', () => {
  it('is refused at startup by its warm-up, which runs every batch size it will see (here [1, 8] for 2 rows)', async () => {
    await expectRefused(
      { MODEL_PATH: writeGraph(SHAPED_MODELS.flattenBatch()), MAX_BATCH_SIZE: '8' },
      'MODEL_PATH',
      /warm-up failed: output "y" has shape \[1, 8\] for a batch of 2 rows; expected \[2, 4\]/,
    );
  });

  describe('warmed up only for one row (model_warmup), so the wrong shape first shows on a real batch', () => {
    let server: TestServer;
    before(async () => {
      const repository = writeRepository({
        flat: {
          config: `max_batch_size: 8
dynamic_batching { max_queue_delay_microseconds: 20000 }
model_warmup [{ name: "one row" batch_size: 1 inputs { key: "x" value { data_type: TYPE_FP32 dims: [4] zero_data: true } } }]`,
          versions: { '1': SHAPED_MODELS.flattenBatch() },
        },
      });
      server = await startServer({ MODEL_PATH: '', MODEL_REPOSITORY: repository });
    });
    after(() => server.close());

    it('one row (the shape it was probed with) is answered', async () => {
      const { reply } = await predict(server.client, { features: [1, 2, 3, 4] });
      assert.deepEqual(reply.predictions, [2, 3, 4, 5]);
    });

    it('a batch whose output is [1, 8] for 2 rows: INTERNAL naming the output, the expected and the actual shape; no row answered', async () => {
      await expectStatus(
        predict(server.client, { features: [1, 2, 3, 4, 5, 6, 7, 8], batch_size: 2 }),
        grpc.status.INTERNAL,
        /output "y" has shape \[1, 8\] for a batch of 2 rows; expected \[2, 4\]/,
      );
    });

    it('callers batched together all fail, and the server goes on serving single rows', async () => {
      const calls = Array.from({ length: 8 }, (_, i) => predict(server.client, { features: [i, i, i, i] }).then(
        ({ reply, trailers }) => ({ ok: true as const, reply, rows: Number(trailers['x-batch-rows']) }),
        (error: grpc.ServiceError) => ({ ok: false as const, error }),
      ));
      const outcomes = await Promise.all(calls);
      assert.ok(outcomes.some((o) => !o.ok), 'no call shared a batch: the check was never exercised');
      for (const [i, outcome] of outcomes.entries()) {
        // A call that rode alone is answered correctly; one that shared a batch is never answered OK.
        if (outcome.ok) {
          assert.equal(outcome.rows, 1, `call ${i} was answered OK from a batch of ${outcome.rows} rows`);
          assert.deepEqual(outcome.reply.predictions, plusOne([i, i, i, i]));
        } else {
          assert.equal(outcome.error.code, grpc.status.INTERNAL);
          assert.match(outcome.error.details, /output "y" has shape \[1, \d+\] for a batch of \d+ rows/);
        }
      }
      const { reply } = await predict(server.client, { features: [0, 0, 0, 0] });
      assert.deepEqual(reply.predictions, [1, 1, 1, 1]);
    });
  });
});

describe('model contract: an input with a fixed batch dimension of 1 is served unbatched', () => {
  let server: TestServer;
  before(async () => {
    server = await startServer({ MODEL_PATH: writeGraph(SHAPED_MODELS.fixedBatch(1)), MAX_QUEUE_DELAY_US: '5000' });
  });
  after(() => server.close());

  it('50 concurrent calls are all answered, each alone in its batch', async () => {
    const results = await Promise.all(Array.from({ length: 50 }, (_, i) => predict(server.client, { features: [i, 0, 0, i] })));
    results.forEach(({ reply, trailers }, i) => {
      assert.deepEqual(reply.predictions, plusOne([i, 0, 0, i]), `call ${i}`);
      assert.equal(trailers['x-batch-rows'], '1', `call ${i}`);
    });
  });

  it('batch_size 2: INVALID_ARGUMENT saying the model takes one row', async () => {
    await expectStatus(
      predict(server.client, { features: [1, 2, 3, 4, 5, 6, 7, 8], batch_size: 2 }),
      grpc.status.INVALID_ARGUMENT,
      /batch_size 2 exceeds 1, the most this model takes \(its input "x" has a fixed batch dimension of 1\)/,
    );
  });
});

describe('model contract: OUTPUT_NAME chooses the output', () => {
  let server: TestServer;
  before(async () => {
    server = await startServer({ MODEL_PATH: writeGraph(SHAPED_MODELS.twoOutputs()), OUTPUT_NAME: 'plus_one' });
  });
  after(() => server.close());

  it('the named output is served, not the first', async () => {
    const { reply } = await predict(server.client, { features: [1, 2, 3, 4] });
    assert.deepEqual(reply.predictions, [2, 3, 4, 5]);
  });
});
