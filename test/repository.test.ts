// The model repository: Triton's layout read and watched, several models and versions served at once, routing by
// model_name and model_version, and reloads (SIGHUP, poll) that lose nothing. Real ONNX models, a real server.
import * as grpc from '@grpc/grpc-js';
import assert from 'node:assert/strict';
import { appendFileSync, copyFileSync, mkdirSync, readFileSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import pino from 'pino';
import { encodeModel, mlpGraph, type MlpSpec } from '../scripts/onnx-writer';
import { TickClient } from '../src/client';
import { ConfigError, StartupError } from '../src/main/config';
import { InferenceServer } from '../src/main/server';
import { Telemetry } from '../src/main/telemetry';
import { keptVersions, RepositoryWatcher, scanRepository } from '../src/models/repository';
import { DEFAULT_MODEL_PATH, featuresFor, referenceOutputs, SHAPED_MODELS, stringsGraph, writeRepository, writeVersion } from './helpers/models';
import { v2Client, type InferReply, type V2Client } from './helpers/kserve';
import { expectStatus, freePort, modelClient, predict, startServer, testConfig, type TestServer } from './helpers/server';

const mlp = (seed: number, width = 6, outputs = 3): MlpSpec => ({
  name: `mlp-${seed}`,
  inputShape: [width],
  hidden: [8],
  outputs,
  softmax: false,
  seed,
});

/** A reference answer of `file` for one row. */
const reference = async (file: string, features: number[]) => Array.from(await referenceOutputs(file, Float32Array.from(features), 1));

function assertNear(actual: ArrayLike<number>, expected: ArrayLike<number>, what: string): void {
  assert.equal(actual.length, expected.length, `${what}: length`);
  for (let i = 0; i < actual.length; i++) assert.ok(Math.abs(actual[i] - expected[i]) < 1e-5, `${what}[${i}]: ${actual[i]} != ${expected[i]}`);
}

/** Resolves once `condition` holds, checking every 10 ms; fails after `timeoutMs`. */
async function until(condition: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const started = Date.now();
  while (!condition()) {
    if (Date.now() - started > timeoutMs) throw new Error(`timed out waiting until ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

describe('repository scanning', () => {
  it('a version folder is loaded only once two scans agree on its files; a half-copied one waits', () => {
    const root = writeRepository({ m: { versions: { '1': mlp(1) } } });
    const watcher = new RepositoryWatcher(root);
    assert.deepEqual(watcher.scan()[0].pending, ['1'], 'loaded on first sight');
    assert.deepEqual(watcher.scan()[0].versions.map((v) => v.version), ['1']);
    // Version 2 arrives in pieces, as a copy would write it.
    const file = path.join(root, 'm', '2', 'model.onnx');
    mkdirSync(path.dirname(file));
    const bytes = encodeModel(mlpGraph(mlp(2)));
    writeFileSync(file, bytes.subarray(0, 100));
    assert.deepEqual(watcher.scan()[0].pending, ['2']);
    appendFileSync(file, bytes.subarray(100));
    assert.deepEqual(watcher.scan()[0].pending, ['2'], 'loaded while it was still being written');
    const settled = watcher.scan()[0];
    assert.deepEqual(settled.pending, []);
    assert.deepEqual(settled.versions.map((v) => v.version), ['2'], 'latest 1 keeps only the newest');
  });

  it('folders that are not versions are ignored, as Triton ignores them; a version without its model file fails once settled', () => {
    const root = writeRepository({ m: { versions: { '1': mlp(1) } } });
    for (const name of ['0', '01', 'v2', 'backup']) mkdirSync(path.join(root, 'm', name));
    mkdirSync(path.join(root, 'm', '3'));
    const watcher = new RepositoryWatcher(root);
    const [first] = watcher.scan();
    assert.deepEqual(first.pending, ['3'], 'waited for while its files may still be changing');
    const [model] = watcher.scan();
    assert.deepEqual(model.pending, []);
    assert.deepEqual(model.versions.map((v) => [v.version, v.problem]), [['3', `no model.onnx in ${path.join(root, 'm', '3')}`]]);
  });

  it('model and version folders may be symbolic links (as Triton follows them)', async () => {
    const real = writeRepository({ m: { versions: { '1': mlp(1) } }, n: { versions: { '2': mlp(2, 4) } } });
    const root = writeRepository({});
    symlinkSync(path.join(real, 'm'), path.join(root, 'm'));
    mkdirSync(path.join(root, 'n'));
    symlinkSync(path.join(real, 'n', '2'), path.join(root, 'n', '2'));
    symlinkSync(path.join(real, 'nowhere'), path.join(root, 'dangling'));
    const watcher = new RepositoryWatcher(root);
    watcher.scan();
    assert.deepEqual(watcher.scan().map((m) => [m.name, m.versions.map((v) => v.version)]), [['m', ['1']], ['n', ['2']]]);
    const server = await startServer({ MODEL_PATH: '', MODEL_REPOSITORY: root });
    try {
      assert.equal((await predict(server.client, { model_name: 'm', features: featuresFor(1, 1, 6) })).reply.model_version, '1');
      assert.equal((await predict(server.client, { model_name: 'n', features: featuresFor(1, 1, 4) })).reply.model_version, '2');
    } finally {
      await server.close();
    }
  });

  it('version policies: latest N, all, specific', () => {
    const policy = (text: string) => ({ versionPolicy: JSON.parse(text) }) as never;
    assert.deepEqual(keptVersions([1, 2, 3], null), [3]);
    assert.deepEqual(keptVersions([1, 3, 2], policy('{"kind":"latest","numVersions":2}')), [3, 2]);
    assert.deepEqual(keptVersions([1, 2, 3], policy('{"kind":"all"}')), [3, 2, 1]);
    assert.deepEqual(keptVersions([1, 2, 3], policy('{"kind":"specific","versions":[1,3,7]}')), [3, 1]);
  });
});

describe('several models and versions', () => {
  let server: TestServer;
  let root: string;
  before(async () => {
    root = writeRepository({
      narrow: { versions: { '1': mlp(11, 6, 3) } },
      wide: { config: 'version_policy: { all {} }\nmax_batch_size: 16', versions: { '1': mlp(21, 10, 2), '2': mlp(22, 10, 2) } },
    });
    server = await startServer({ MODEL_PATH: '', MODEL_REPOSITORY: root, DEFAULT_MODEL: 'narrow' });
  });
  after(() => server.close());

  it('each model answers with its own width, by model_name', async () => {
    const narrow = featuresFor(1, 1, 6);
    const wide = featuresFor(2, 1, 10);
    const [a, b] = await Promise.all([
      predict(server.client, { features: narrow, model_name: 'narrow' }),
      predict(server.client, { features: wide, model_name: 'wide' }),
    ]);
    assertNear(a.reply.predictions, await reference(path.join(root, 'narrow', '1', 'model.onnx'), narrow), 'narrow');
    assertNear(b.reply.predictions, await reference(path.join(root, 'wide', '2', 'model.onnx'), wide), 'wide');
    assert.equal(a.reply.model_version, '1');
    assert.equal(b.reply.model_version, '2', 'an empty model_version is the newest ready version');
  });

  it('model_version picks among the versions the policy keeps', async () => {
    const wide = featuresFor(3, 1, 10);
    const { reply } = await predict(server.client, { features: wide, model_name: 'wide', model_version: '1' });
    assert.equal(reply.model_version, '1');
    assertNear(reply.predictions, await reference(path.join(root, 'wide', '1', 'model.onnx'), wide), 'wide v1');
  });

  it('an empty model_name is DEFAULT_MODEL', async () => {
    const { reply } = await predict(server.client, { features: featuresFor(4, 1, 6) });
    assert.equal(reply.predictions.length, 3);
  });

  it('a model_version it does not serve: NOT_FOUND listing the ready versions', async () => {
    await expectStatus(
      predict(server.client, { features: featuresFor(4, 1, 10), model_name: 'wide', model_version: '3' }),
      grpc.status.NOT_FOUND,
      /model "wide" has no version "3"; ready versions: 2, 1/,
    );
  });

  it('a model_name it does not serve: NOT_FOUND listing the models', async () => {
    await expectStatus(
      predict(server.client, { features: featuresFor(4, 1, 6), model_name: 'nope' }),
      grpc.status.NOT_FOUND,
      /model "nope" is not served; served models: "narrow", "wide"/,
    );
  });

  it('a width checked against the routed model: INVALID_ARGUMENT naming its width', async () => {
    await expectStatus(
      predict(server.client, { features: featuresFor(4, 1, 6), model_name: 'wide' }),
      grpc.status.INVALID_ARGUMENT,
      /expected 10 \(1 row x 10\), got 6/,
    );
  });

  it('each model has a health status of its own', () => {
    const health = server.server.health as unknown as { statusMap: Map<string, string> };
    assert.equal(health.statusMap.get('narrow'), 'SERVING');
    assert.equal(health.statusMap.get('wide'), 'SERVING');
    assert.equal(health.statusMap.get(''), 'SERVING');
  });
});

describe('config.pbtxt overrides the environment; without it, everything comes from the model and the environment', () => {
  it('max_batch_size, dynamic_batching, instance_group, default_model_filename and model_warmup take effect', async () => {
    const root = writeRepository({
      auto: { versions: { '1': mlp(1) } },
      tuned: {
        config: `max_batch_size: 8
default_model_filename: "tuned.onnx"
dynamic_batching { preferred_batch_size: [2, 4] max_queue_delay_microseconds: 700 }
instance_group [{ count: 1 kind: KIND_CPU }]
model_warmup [{ name: "rows" batch_size: 4 count: 2 inputs { key: "input" value { data_type: TYPE_FP32 dims: [6] random_data: true } } }]`,
        versions: {},
      },
    });
    writeVersion(root, 'tuned', '1', mlp(2), 'tuned.onnx');
    const server = await startServer({ MODEL_PATH: '', MODEL_REPOSITORY: root, MAX_BATCH_SIZE: '32', MAX_QUEUE_DELAY_US: '50', WORKERS: '2' });
    try {
      const tuned = server.server.models.resolve('tuned', '').effective;
      assert.deepEqual(
        { maxBatchSize: tuned.maxBatchSize, delay: tuned.maxQueueDelayUs, preferred: tuned.preferredBatchSizes, workers: tuned.workers, warmup: tuned.warmupBatchSizes },
        { maxBatchSize: 8, delay: 700, preferred: [2, 4], workers: 1, warmup: [4] },
      );
      const auto = server.server.models.resolve('auto', '').effective;
      assert.deepEqual(
        { maxBatchSize: auto.maxBatchSize, delay: auto.maxQueueDelayUs, workers: auto.workers, warmup: auto.warmupBatchSizes },
        { maxBatchSize: 32, delay: 50, workers: 2, warmup: [1, 2, 4, 8, 16, 32] },
      );
      const features = featuresFor(1, 1, 6);
      const { reply } = await predict(server.client, { features, model_name: 'tuned' });
      assertNear(reply.predictions, await reference(path.join(root, 'tuned', '1', 'tuned.onnx'), features), 'tuned');
    } finally {
      await server.close();
    }
  });
});

describe('a model ModelService cannot carry', () => {
  it('loads (the v2 API serves it), and ModelService refuses it with FAILED_PRECONDITION naming the model and why', async () => {
    const root = writeRepository({ two: { versions: { '1': SHAPED_MODELS.twoOutputs() } } });
    const server = await startServer({ MODEL_PATH: '', MODEL_REPOSITORY: root });
    try {
      await expectStatus(
        predict(server.client, { features: [1, 2, 3, 4], model_name: 'two' }),
        grpc.status.FAILED_PRECONDITION,
        /ModelService cannot serve model "two": .* has 2 outputs \("same", "plus_one"\); set OUTPUT_NAME/,
      );
    } finally {
      await server.close();
    }
  });

  it('OUTPUT_NAME picks the output ModelService serves in a repository too', async () => {
    const root = writeRepository({ two: { versions: { '1': SHAPED_MODELS.twoOutputs() } } });
    const server = await startServer({ MODEL_PATH: '', MODEL_REPOSITORY: root, OUTPUT_NAME: 'plus_one' });
    try {
      const { reply } = await predict(server.client, { features: [1, 2, 3, 4] });
      assert.deepEqual(reply.predictions, [2, 3, 4, 5]);
    } finally {
      await server.close();
    }
  });
});

const tensorOf = ({ name, datatype, shape }: InferReply['outputs'][number]) => ({ name, datatype, shape: shape.map(Number) });

describe('models that run one request at a time: variable dimensions, strings', () => {
  let server: TestServer;
  let client: V2Client;

  before(async () => {
    const root = writeRepository({
      variable: { versions: { '1': SHAPED_MODELS.variableWidth() } },
      strings: { versions: { '1': stringsGraph() } },
    });
    // Both used to fail their load check: the empty batch that opens each worker's session was fed as if the model
    // had fixed shapes ("dims[1] must be a non-negative integer", "BYTES has no typed view").
    server = await startServer({ MODEL_PATH: '', MODEL_REPOSITORY: root });
    client = v2Client(server.address);
  });

  after(async () => {
    client.close();
    await server.close();
  });

  it('a variable dimension: each request answered with its own shape', async () => {
    for (const [rows, width] of [
      [2, 3],
      [1, 5],
    ]) {
      const x = Float32Array.from(featuresFor(width, rows, width));
      const reply = await client.call<InferReply>('ModelInfer', {
        model_name: 'variable',
        inputs: [{ name: 'x', datatype: 'FP32', shape: [rows, width] }],
        raw_input_contents: [Buffer.from(x.buffer)],
      });
      assert.deepEqual(reply.outputs.map(tensorOf), [{ name: 'y', datatype: 'FP32', shape: [rows, width] }]);
      assert.equal(reply.raw_output_contents[0].length, rows * width * 4);
      const y = Array.from({ length: rows * width }, (_, i) => reply.raw_output_contents[0].readFloatLE(i * 4));
      assertNear(y, x.map((v) => v + 1), `[${rows}, ${width}]`);
    }
  });

  it('strings: BYTES in and out, in the protocol\'s length-prefixed form', async () => {
    const strings = ['tick', '', 'ünïcödé €', 'x'.repeat(300)];
    const raw = Buffer.concat(strings.map((s) => Buffer.from(s)).flatMap((b) => [Buffer.from(Uint32Array.of(b.length).buffer), b]));
    const reply = await client.call<InferReply>('ModelInfer', {
      model_name: 'strings',
      inputs: [{ name: 's', datatype: 'BYTES', shape: [2, 2] }],
      raw_input_contents: [raw],
    });
    assert.deepEqual(reply.outputs.map(tensorOf), [{ name: 'echo', datatype: 'BYTES', shape: [2, 2] }]);
    assert.deepEqual(reply.raw_output_contents, [raw]);
  });
});

describe('latest N keeps what serves until every version it keeps is ready', () => {
  it('a new version still being written, or failing to load, unloads nothing', async () => {
    const root = writeRepository({ m: { config: 'version_policy: { latest { num_versions: 2 } }', versions: { '1': mlp(1), '2': mlp(2) } } });
    const server = await startServer({ MODEL_PATH: '', MODEL_REPOSITORY: root });
    try {
      mkdirSync(path.join(root, 'm', '3'));
      writeFileSync(path.join(root, 'm', '3', 'model.onnx'), 'not a model');
      await server.server.rescan();
      const states = server.server.models.index().map((s) => [s.version, s.state]);
      assert.deepEqual(states, [['3', 'UNAVAILABLE'], ['2', 'READY'], ['1', 'READY']]);
      assert.equal((await predict(server.client, { features: featuresFor(1, 1, 6), model_version: '1' })).reply.model_version, '1');
      writeVersion(root, 'm', '3', mlp(3));
      await server.server.rescan();
      await server.server.models.settled();
      assert.deepEqual(server.server.models.index().map((s) => [s.version, s.state]), [['3', 'READY'], ['2', 'READY']]);
    } finally {
      await server.close();
    }
  });
});

describe('routing without DEFAULT_MODEL', () => {
  it('an empty model_name with several models: NOT_FOUND saying model_name is required', async () => {
    const root = writeRepository({ a: { versions: { '1': mlp(1) } }, b: { versions: { '1': mlp(2) } } });
    const server = await startServer({ MODEL_PATH: '', MODEL_REPOSITORY: root });
    try {
      await expectStatus(
        predict(server.client, { features: featuresFor(1, 1, 6) }),
        grpc.status.NOT_FOUND,
        /model_name is required: this server serves "a", "b" \(DEFAULT_MODEL is not set\)/,
      );
      // The TypeScript client names the model.
      const client = new TickClient({ target: server.address });
      try {
        const features = featuresFor(1, 1, 6);
        const answer = await client.predict({ features, modelName: 'b' });
        assertNear(answer.predictions, await reference(path.join(root, 'b', '1', 'model.onnx'), features), 'b');
      } finally {
        client.close();
      }
    } finally {
      await server.close();
    }
  });
});

describe('startup refusals in a repository', () => {
  async function expectRefused(env: Record<string, string>, variable: string, message: RegExp): Promise<void> {
    const config = testConfig(env);
    const logger = pino({ level: 'silent' });
    await assert.rejects(InferenceServer.create(config, logger, new Telemetry(config, logger)), (error: unknown) => {
      assert.ok(error instanceof ConfigError || error instanceof StartupError, String(error));
      assert.equal(error.variable, variable);
      assert.match(error.message, message);
      return true;
    });
  }

  it('a config.pbtxt field outside the subset: MODEL_REPOSITORY, with the file, line and field', async () => {
    const root = writeRepository({ m: { config: 'max_batch_size: 4\nsequence_batching { }\n', versions: { '1': mlp(1) } } });
    await expectRefused({ MODEL_PATH: '', MODEL_REPOSITORY: root }, 'MODEL_REPOSITORY', /config\.pbtxt:2: sequence_batching/);
  });

  it('a config.pbtxt that contradicts the model: both shapes named', async () => {
    const root = writeRepository({
      m: { config: 'max_batch_size: 4\ninput [{ name: "input" data_type: TYPE_FP32 dims: [7] }]', versions: { '1': mlp(1) } },
    });
    await expectRefused(
      { MODEL_PATH: '', MODEL_REPOSITORY: root },
      'MODEL_REPOSITORY',
      /input "input" has dims \[7\] in the config \(batching: shape \[batch, 7\]\), shape \[batch, 6\] in the model/,
    );
  });


  it('declared tensors are checked even without max_batch_size', async () => {
    const root = writeRepository({ m: { config: 'input [{ name: "nosuch" data_type: TYPE_FP32 dims: [6] }]', versions: { '1': mlp(1) } } });
    await expectRefused({ MODEL_PATH: '', MODEL_REPOSITORY: root }, 'MODEL_REPOSITORY', /it declares input "nosuch", but the model's inputs are "input"/);
    const wide = writeRepository({ m: { config: 'input [{ name: "input" data_type: TYPE_FP32 dims: [18] }]', versions: { '1': mlp(1) } } });
    await expectRefused({ MODEL_PATH: '', MODEL_REPOSITORY: wide }, 'MODEL_REPOSITORY', /input "input" has dims \[18\] in the config/);
  });

  it('an optional input (which tickserve would refuse every request to leave out): the file, line and input', async () => {
    const root = writeRepository({ m: { config: 'max_batch_size: 4\ninput [{ name: "input" data_type: TYPE_FP32 dims: [6] optional: true }]', versions: { '1': mlp(1) } } });
    await expectRefused({ MODEL_PATH: '', MODEL_REPOSITORY: root }, 'MODEL_REPOSITORY', /config\.pbtxt:2: input "input": optional: true is not served \(every request must carry every input\)/);
  });

  it('a repository with no model folder (model files left at its top): refused, saying what the layout is', async () => {
    const root = writeRepository({});
    copyFileSync(DEFAULT_MODEL_PATH, path.join(root, 'tick.onnx'));
    await expectRefused(
      { MODEL_PATH: '', MODEL_REPOSITORY: root },
      'MODEL_REPOSITORY',
      /no model folder in it \(each model is a folder holding numbered version folders: <model>\/1\/model\.onnx\); model files at its top are not read \(tick\.onnx\): serve one with MODEL_PATH/,
    );
    // Poll mode waits for models to be dropped in; until then a call is told that nothing is loaded.
    const polling = await startServer({ MODEL_PATH: '', MODEL_REPOSITORY: root, MODEL_CONTROL_MODE: 'poll' });
    try {
      await expectStatus(predict(polling.client, { features: featuresFor(1, 1, 17) }), grpc.status.NOT_FOUND, /^no model is loaded: this server serves none$/);
    } finally {
      await polling.close();
    }
  });

  it('DEFAULT_MODEL that the repository lacks', async () => {
    const root = writeRepository({ m: { versions: { '1': mlp(1) } } });
    await expectRefused({ MODEL_PATH: '', MODEL_REPOSITORY: root, DEFAULT_MODEL: 'other' }, 'DEFAULT_MODEL', /not a model of the repository \(m\)/);
  });

  it('a model with no version to serve: its file misnamed, no version folder, or a version_policy that keeps none', async () => {
    const misnamed = writeRepository({ a: { versions: { '1': mlp(1) } }, m: { versions: { '1': mlp(1) } } });
    renameSync(path.join(misnamed, 'm', '1', 'model.onnx'), path.join(misnamed, 'm', '1', 'model.onx'));
    await expectRefused({ MODEL_PATH: '', MODEL_REPOSITORY: misnamed }, 'MODEL_REPOSITORY', /model "m" version 1 failed to load: no model\.onnx in .*m\/1$/);
    const empty = writeRepository({ a: { versions: { '1': mlp(1) } } });
    mkdirSync(path.join(empty, 'm'));
    await expectRefused({ MODEL_PATH: '', MODEL_REPOSITORY: empty }, 'MODEL_REPOSITORY', /model "m" has no version to serve: no version folder in .*m \(a folder named by a number, holding model\.onnx\)/);
    const policy = writeRepository({ m: { config: 'version_policy: { specific: { versions: [2] } }', versions: { '1': mlp(1) } } });
    await expectRefused({ MODEL_PATH: '', MODEL_REPOSITORY: policy }, 'MODEL_REPOSITORY', /model "m" has no version to serve: no version folder in .* that its version_policy keeps/);
  });

  it('a model folder that cannot be read fails that model, named, not the whole repository (nor MODEL_PATH)', async () => {
    const root = writeRepository({ a: { versions: { '1': mlp(1) } }, b: { versions: { '1': mlp(2) } } });
    // Folders nested past PATH_MAX (made one level at a time): reading the deepest fails with ENAMETOOLONG, as an
    // unreadable folder fails with EACCES (which root, running these tests, is never refused).
    const cwd = process.cwd();
    process.chdir(path.join(root, 'b', '1'));
    try {
      for (let i = 0; i < 17; i++) {
        mkdirSync('d'.repeat(250));
        process.chdir('d'.repeat(250));
      }
    } finally {
      process.chdir(cwd);
    }
    const scanned = scanRepository(root);
    assert.deepEqual(scanned.map((m) => m.name), ['a', 'b']);
    assert.equal(scanned[0].configError, null);
    assert.match(scanned[1].configError ?? '', /^cannot read model folder .*b: ENAMETOOLONG/);
    await expectRefused({ MODEL_PATH: '', MODEL_REPOSITORY: root }, 'MODEL_REPOSITORY', /model "b": cannot read model folder .*ENAMETOOLONG/);
  });

  it('DEFAULT_MODEL in explicit mode that LOAD_MODELS does not load: says to load it', async () => {
    const root = writeRepository({ m: { versions: { '1': mlp(1) } }, n: { versions: { '1': mlp(2) } } });
    await expectRefused(
      { MODEL_PATH: '', MODEL_REPOSITORY: root, MODEL_CONTROL_MODE: 'explicit', LOAD_MODELS: 'n', DEFAULT_MODEL: 'm' },
      'DEFAULT_MODEL',
      /a model of the repository that is not loaded at startup: name it in LOAD_MODELS too/,
    );
  });

  it('MODEL_PATH and MODEL_REPOSITORY both set', () => {
    const root = writeRepository({ m: { versions: { '1': mlp(1) } } });
    assert.throws(() => testConfig({ MODEL_PATH: '/x.onnx', MODEL_REPOSITORY: root }), /MODEL_REPOSITORY=.* MODEL_PATH is set too/);
  });
});

describe('metrics across a reload of the same version', () => {
  it('a version reloaded in place (its files changed) carries its counters on: tickserve_inference_count_total only grows', async () => {
    const root = writeRepository({ m: { versions: { '1': mlp(1) } } });
    const config = testConfig({ MODEL_PATH: '', MODEL_REPOSITORY: root, METRICS_PORT: String(await freePort()) });
    const logger = pino({ level: 'silent' });
    const telemetry = new Telemetry(config, logger);
    const server = await InferenceServer.create(config, logger, telemetry);
    await telemetry.listen();
    const client = modelClient(`127.0.0.1:${await server.listen()}`);
    const count = async () => {
      const text = await (await fetch(`http://127.0.0.1:${config.metricsPort}/metrics`)).text();
      const line = text.split('\n').find((l) => l.startsWith('tickserve_inference_count_total{') && l.includes('model="m"') && l.includes('version="1"'));
      return line === undefined ? 0 : Number(line.split(' ').pop());
    };
    try {
      for (let i = 0; i < 5; i++) await predict(client, { features: featuresFor(i, 1, 6) });
      assert.equal(await count(), 5);
      // The same version, its file rewritten: loaded again as a new instance, whose own counters start at 0.
      writeVersion(root, 'm', '1', mlp(1));
      const before = [...server.models.instances()][0];
      await server.rescan();
      await server.models.settled();
      assert.notEqual([...server.models.instances()][0], before, 'the version was not reloaded');
      assert.equal(await count(), 5, 'the counter went back with the reload');
      for (let i = 0; i < 3; i++) await predict(client, { features: featuresFor(i, 1, 6) });
      assert.equal(await count(), 8);
    } finally {
      client.close();
      await server.close(2000);
      await telemetry.shutdown();
    }
  });
});

describe('reload on rescan (SIGHUP)', () => {
  let server: TestServer;
  let root: string;
  before(async () => {
    root = writeRepository({ m: { versions: { '1': mlp(1) } }, gone: { versions: { '1': mlp(5) } } });
    server = await startServer({ MODEL_PATH: '', MODEL_REPOSITORY: root, DEFAULT_MODEL: 'm' });
  });
  after(() => server.close());

  it('a new version is loaded, warmed up and swapped in; the old one unloads once it has answered', async () => {
    writeVersion(root, 'm', '2', mlp(2));
    await server.server.rescan();
    const features = featuresFor(7, 1, 6);
    const { reply } = await predict(server.client, { features });
    assert.equal(reply.model_version, '2');
    assertNear(reply.predictions, await reference(path.join(root, 'm', '2', 'model.onnx'), features), 'v2');
    await server.server.models.settled();
    assert.deepEqual(server.server.models.index().filter((s) => s.model === 'm').map((s) => [s.version, s.state]), [['2', 'READY']]);
  });

  it('a version that fails to load leaves what serves in place, and its state says why', async () => {
    mkdirSync(path.join(root, 'm', '3'));
    writeFileSync(path.join(root, 'm', '3', 'model.onnx'), 'not an onnx model');
    await server.server.rescan();
    const states = server.server.models.index().filter((s) => s.model === 'm');
    assert.deepEqual(states.map((s) => [s.version, s.state]), [['3', 'UNAVAILABLE'], ['2', 'READY']]);
    assert.match(states[0].reason, /cannot load model .*3\/model\.onnx/);
    const { reply } = await predict(server.client, { features: featuresFor(8, 1, 6) });
    assert.equal(reply.model_version, '2');
    await expectStatus(
      predict(server.client, { features: featuresFor(8, 1, 6), model_version: '3' }),
      grpc.status.UNAVAILABLE,
      /model "m" version "3" is not ready: unavailable \(cannot load model/,
    );
    rmSync(path.join(root, 'm', '3'), { recursive: true });
    await server.server.rescan();
  });

  it('a config.pbtxt broken after loading: logged, shown in the index with the reason, and what serves keeps serving', async () => {
    writeFileSync(path.join(root, 'm', 'config.pbtxt'), 'max_batch_size: 16\ndynamic_batching { max_queue_delay_microsecond: 5 }\n');
    await server.server.rescan();
    const states = server.server.models.index().filter((s) => s.model === 'm');
    assert.ok(states.some((s) => s.version === '' && s.state === 'UNAVAILABLE' && /max_queue_delay_microsecond/.test(s.reason)), JSON.stringify(states));
    assert.ok(states.some((s) => s.version === '2' && s.state === 'READY'));
    assert.equal((await predict(server.client, { features: featuresFor(3, 1, 6) })).reply.model_version, '2');
    rmSync(path.join(root, 'm', 'config.pbtxt'));
    await server.server.rescan();
    assert.ok(server.server.models.index().every((s) => s.version !== ''), 'the problem outlived its fix');
  });

  it('a model dropped in with nothing to load: RepositoryIndex says why (its file misnamed)', async () => {
    writeVersion(root, 'typo', '1', mlp(3), 'model.onx');
    await server.server.rescan();
    const v2 = v2Client(server.address);
    try {
      const { models } = await v2.call<{ models: Array<{ name: string; state: string; reason: string }> }>('RepositoryIndex', {});
      const typo = models.find((m) => m.name === 'typo');
      assert.equal(typo?.state, 'UNAVAILABLE');
      assert.match(typo?.reason ?? '', /^no model\.onnx in .*typo\/1$/);
    } finally {
      v2.close();
      rmSync(path.join(root, 'typo'), { recursive: true });
    }
  });

  it('a removed model drains, then unloads; its calls get NOT_FOUND', async () => {
    rmSync(path.join(root, 'gone'), { recursive: true });
    await server.server.rescan();
    await expectStatus(
      predict(server.client, { features: featuresFor(9, 1, 6), model_name: 'gone' }),
      grpc.status.NOT_FOUND,
      /model "gone" is not served; served models: "m"/,
    );
    await server.server.models.settled();
    assert.deepEqual(server.server.models.index().map((s) => s.model), ['m']);
  });
});

/**
 * The headline: a feed at a steady rate runs while version 2 is copied in (poll mode) and version 1 then removed.
 * Every message is answered OK, in order, each with the outputs of the version its model_version names, and the
 * versions go 1...1, 2...2 with exactly one switch.
 */
describe('live reload under a feed (poll mode)', () => {
  let server: TestServer;
  let root: string;
  before(async () => {
    root = writeRepository({ m: { versions: { '1': mlp(1) } } });
    server = await startServer({ MODEL_PATH: '', MODEL_REPOSITORY: root, MODEL_CONTROL_MODE: 'poll', REPOSITORY_POLL_SECS: '1' });
  });
  after(() => server.close());

  /** v2 written elsewhere and renamed in (the atomic way), later v1 removed; resolves when v1 has unloaded. */
  async function rollOut(from: string, to: string, seed: number): Promise<void> {
    const staging = path.join(root, '.staging');
    writeVersion(staging, 'm', to, mlp(seed));
    renameSync(path.join(staging, 'm', to), path.join(root, 'm', to));
    await until(() => server.server.models.index().some((s) => s.version === to && s.state === 'READY'), `version ${to} is ready`);
    rmSync(path.join(root, 'm', from), { recursive: true });
    await until(() => server.server.models.index().every((s) => s.version !== from), `version ${from} has unloaded`);
  }

  it('StreamPredict: every message answered OK, in order, by the version it names, switching exactly once', async () => {
    const call = server.client.StreamPredict();
    const replies: Array<{ model_version: string; predictions: number[]; error: unknown }> = [];
    call.on('data', (reply) => replies.push(reply));
    const ended = new Promise((resolve) => call.on('end', resolve));
    let sent = 0;
    const feed = setInterval(() => call.write({ features: featuresFor(sent++, 1, 6) }), 4);
    await rollOut('1', '2', 2);
    await new Promise((resolve) => setTimeout(resolve, 200));
    clearInterval(feed);
    call.end();
    await ended;
    assert.equal(replies.length, sent);
    const versions = replies.map((r) => r.model_version);
    const switches = versions.filter((v, i) => i > 0 && v !== versions[i - 1]).length;
    assert.equal(switches, 1, 'the versions did not switch exactly once');
    assert.equal(versions[0], '1');
    assert.equal(versions.at(-1), '2');
    const files = { '1': path.join(root, '.staging-v1.onnx'), '2': path.join(root, 'm', '2', 'model.onnx') };
    writeFileSync(files['1'], encodeModel(mlpGraph(mlp(1))));
    const inputs = { '1': [] as number[], '2': [] as number[] };
    for (const [i, reply] of replies.entries()) {
      assert.equal(reply.error, null, `message ${i}`);
      inputs[reply.model_version as '1' | '2'].push(...featuresFor(i, 1, 6));
    }
    for (const version of ['1', '2'] as const) {
      const rows = inputs[version].length / 6;
      const expected = await referenceOutputs(files[version], Float32Array.from(inputs[version]), rows);
      const actual = replies.filter((r) => r.model_version === version).flatMap((r) => r.predictions);
      assertNear(actual, expected, `version ${version}`);
    }
    assert.ok(replies.filter((r) => r.model_version === '1').length > 10 && replies.filter((r) => r.model_version === '2').length > 10);
  });

  it('unary calls at full concurrency: every call answered OK by the version it names; none lost', async () => {
    let stop = false;
    const results: Array<{ version: string; ok: boolean }> = [];
    const worker = async (lane: number) => {
      for (let i = 0; !stop; i++) {
        try {
          const { reply } = await predict(server.client, { features: featuresFor(lane * 100_000 + i, 1, 6) });
          results.push({ version: reply.model_version, ok: reply.predictions.length === 3 });
        } catch (error) {
          results.push({ version: String(error), ok: false });
        }
      }
    };
    const lanes = Array.from({ length: 32 }, (_, lane) => worker(lane));
    await rollOut('2', '3', 3);
    await new Promise((resolve) => setTimeout(resolve, 300)); // calls routed to version 3 once version 2 is gone
    stop = true;
    await Promise.all(lanes);
    assert.ok(results.every((r) => r.ok), `failed: ${results.filter((r) => !r.ok).slice(0, 3).map((r) => r.version).join('; ')}`);
    const counts = { '2': results.filter((r) => r.version === '2').length, '3': results.filter((r) => r.version === '3').length };
    assert.ok(counts['2'] > 0 && counts['3'] > 0, `answers by version: ${JSON.stringify(counts)}`);
  });

  it('a failed load under a feed changes nothing for the feed', async () => {
    const call = server.client.StreamPredict();
    const replies: Array<{ model_version: string; error: unknown }> = [];
    call.on('data', (reply) => replies.push(reply));
    const ended = new Promise((resolve) => call.on('end', resolve));
    let sent = 0;
    const feed = setInterval(() => call.write({ features: featuresFor(sent++, 1, 6) }), 4);
    mkdirSync(path.join(root, 'm', '4'));
    writeFileSync(path.join(root, 'm', '4', 'model.onnx'), 'truncated');
    await until(() => server.server.models.index().some((s) => s.version === '4' && s.state === 'UNAVAILABLE'), 'version 4 failed');
    clearInterval(feed);
    call.end();
    await ended;
    assert.equal(replies.length, sent);
    assert.ok(replies.every((r) => r.error === null && r.model_version === '3'));
  });
});

describe('deploy/model-repository', () => {
  it('its example config.pbtxt serves the embedded model', async () => {
    const root = writeRepository({ 'tick-classifier': { config: readFileSync(path.join(__dirname, '..', '..', 'deploy', 'model-repository', 'tick-classifier', 'config.pbtxt'), 'utf8'), versions: {} } });
    mkdirSync(path.join(root, 'tick-classifier', '1'));
    copyFileSync(DEFAULT_MODEL_PATH, path.join(root, 'tick-classifier', '1', 'model.onnx'));
    const server = await startServer({ MODEL_PATH: '', MODEL_REPOSITORY: root });
    try {
      const { reply } = await predict(server.client, { features: featuresFor(1, 1, 17) });
      assert.equal(reply.predictions.length, 5);
      assert.equal(server.server.models.resolve('', '').effective.maxBatchSize, 256);
    } finally {
      await server.close();
    }
  });
});
