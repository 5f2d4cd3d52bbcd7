// Control-plane security: GRPC_RESTRICTED_PROTOCOL (every group restricted and open, keys per group, refusal before
// decode, its metric and its startup lines), repository RPCs outside explicit mode, the audit lines of every load and
// unload (startup, RPC with peer and mTLS subject, SIGHUP, poll, shutdown), and the checks that keep a model inside
// its version folder (names, default_model_filename, symbolic links, ONNX external data), against a real server.
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { EventEmitter, once } from 'node:events';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { inspect } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { protoPath as healthProtoPath } from 'grpc-health-check';
import pino, { type Logger } from 'pino';
import { encodeModel, type GraphSpec } from '../scripts/onnx-writer';
import { ConfigError, loadConfig } from '../src/main/config';
import { describeRestrictions, headerMatches, PROTOCOL_GROUPS, RPC_GROUPS } from '../src/main/interceptors/restricted';
import { KSERVE_PROTO_OPTIONS, KSERVE_PROTO_PATH } from '../src/main/kserve/service';
import { InferenceServer, PROTO_PATH } from '../src/main/server';
import { Telemetry } from '../src/main/telemetry';
import { makeCerts, read } from './helpers/certs';
import { OtlpReceiver } from './helpers/otlp-receiver';
import { f32, readF32, type StreamReply } from './helpers/kserve';
import { featuresFor, writeRepository, writeVersion } from './helpers/models';
import { expectStatus, freePort, testConfig } from './helpers/server';

// ---------------------------------------------------------------------------------------------------------------
// Every RPC served, from the protos the server serves, with its kind (unary or streaming).

interface Rpc {
  path: string;
  requestStream: boolean;
  responseStream: boolean;
  serialize(value: object): Buffer;
  deserialize(bytes: Buffer): Record<string, unknown>;
}

const REFLECTION_PROTOS = path.join(path.dirname(require.resolve('@grpc/reflection/package.json')), 'build', 'proto', 'grpc', 'reflection');

function rpcsOf(definition: protoLoader.PackageDefinition): Rpc[] {
  const rpcs: Rpc[] = [];
  for (const entry of Object.values(definition)) {
    for (const method of Object.values(entry as Record<string, unknown>)) {
      const m = method as Partial<grpc.MethodDefinition<object, Record<string, unknown>>>;
      if (typeof m?.path !== 'string') continue;
      rpcs.push({
        path: m.path,
        requestStream: m.requestStream!,
        responseStream: m.responseStream!,
        serialize: m.requestSerialize!,
        deserialize: m.responseDeserialize!,
      });
    }
  }
  return rpcs;
}

const SERVED: Rpc[] = [
  ...rpcsOf(protoLoader.loadSync(PROTO_PATH, { keepCase: true, defaults: true, arrays: true, longs: Number })),
  ...rpcsOf(protoLoader.loadSync(KSERVE_PROTO_PATH, KSERVE_PROTO_OPTIONS)),
  ...rpcsOf(protoLoader.loadSync(healthProtoPath, { keepCase: true })),
  ...rpcsOf(protoLoader.loadSync(path.join(REFLECTION_PROTOS, 'v1', 'reflection.proto'), { keepCase: true })),
  ...rpcsOf(protoLoader.loadSync(path.join(REFLECTION_PROTOS, 'v1alpha', 'reflection.proto'), { keepCase: true })),
];
const rpc = (p: string) => SERVED.find((r) => r.path === p)!;
const groupOfPath = (p: string) => {
  const [service, method] = p.slice(1).split('/');
  return RPC_GROUPS[service][method];
};

const V2 = '/inference.GRPCInferenceService/';
const SEED = '/inference.ModelService/';

// ---------------------------------------------------------------------------------------------------------------
// Calls with any credentials and headers, through a plain grpc.Client.

type Outcome = { code: grpc.status; details: string } | 'data';

const raw = (bytes: Buffer) => bytes;

function metadataOf(headers: Record<string, string>): grpc.Metadata {
  const metadata = new grpc.Metadata();
  for (const [key, value] of Object.entries(headers)) metadata.add(key, value);
  return metadata;
}

/**
 * Calls `r` with an empty message (or `body`, sent as it is) and resolves with its status, or 'data' once a
 * streaming RPC answers (the call is then cancelled).
 */
function attempt(client: grpc.Client, r: Rpc, headers: Record<string, string>, body = Buffer.alloc(0)): Promise<Outcome> {
  const metadata = metadataOf(headers);
  const deadline = Date.now() + 10_000;
  return new Promise((resolve) => {
    const done = (status: grpc.StatusObject) => resolve({ code: status.code, details: status.details });
    if (!r.requestStream && !r.responseStream) {
      const call = client.makeUnaryRequest(r.path, raw, raw, body, metadata, { deadline }, () => {});
      call.on('status', done);
    } else if (!r.requestStream) {
      const call = client.makeServerStreamRequest(r.path, raw, raw, body, metadata, { deadline });
      call.on('data', () => {
        resolve('data');
        call.cancel();
      });
      call.on('error', () => {});
      call.on('status', done);
    } else {
      const call = client.makeBidiStreamRequest(r.path, raw, raw, metadata, { deadline });
      call.on('data', () => {
        resolve('data');
        call.cancel();
      });
      call.on('error', () => {});
      call.on('status', done);
      if (body.length > 0) call.write(body);
      call.end();
    }
  });
}

/** A unary call with the proto's own codec; rejects with the ServiceError. */
function call<T = Record<string, unknown>>(client: grpc.Client, p: string, request: object, headers: Record<string, string> = {}): Promise<T> {
  const r = rpc(p);
  return new Promise((resolve, reject) =>
    client.makeUnaryRequest(r.path, r.serialize, r.deserialize, request, metadataOf(headers), { deadline: Date.now() + 30_000 }, (error, reply) =>
      error ? reject(error) : resolve(reply as T),
    ),
  );
}

const expectDenied = (promise: Promise<unknown>, details: RegExp): Promise<void> => expectStatus(promise, grpc.status.PERMISSION_DENIED, details);


// ---------------------------------------------------------------------------------------------------------------
// A real server whose log lines the test reads.

interface LogLine {
  level: number;
  msg: string;
  audit?: boolean;
  [field: string]: unknown;
}

class Logs extends EventEmitter {
  readonly lines: LogLine[] = [];
  readonly logger: Logger = pino({ level: 'debug' }, { write: (chunk: string) => this.add(JSON.parse(chunk) as LogLine) });

  private add(line: LogLine): void {
    this.lines.push(line);
    this.emit('line', line);
  }

  get audit(): LogLine[] {
    return this.lines.filter((l) => l.audit === true);
  }

  /** Resolves with the first line (already written or still to come) that `match` accepts. */
  waitFor(match: (line: LogLine) => boolean, what: string, timeoutMs = 15_000): Promise<LogLine> {
    const found = this.lines.find(match);
    if (found !== undefined) return Promise.resolve(found);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.off('line', listener);
        reject(new Error(`no log line ${what} within ${timeoutMs} ms`));
      }, timeoutMs);
      const listener = (line: LogLine) => {
        if (!match(line)) return;
        clearTimeout(timer);
        this.off('line', listener);
        resolve(line);
      };
      this.on('line', listener);
    });
  }
}

const WARN = 40;

interface Running {
  server: InferenceServer;
  address: string;
  logs: Logs;
  client(credentials?: grpc.ChannelCredentials): grpc.Client;
  close(): Promise<void>;
}

async function start(env: Record<string, string>): Promise<Running> {
  const config = testConfig(env);
  const logs = new Logs();
  const server = await InferenceServer.create(config, logs.logger, new Telemetry(config, logs.logger));
  const port = await server.listen();
  const address = `127.0.0.1:${port}`;
  const clients: grpc.Client[] = [];
  return {
    server,
    address,
    logs,
    client(credentials = grpc.credentials.createInsecure()) {
      const client = new grpc.Client(address, credentials);
      clients.push(client);
      return client;
    },
    async close() {
      for (const client of clients) client.close();
      await server.close(2000);
    },
  };
}

const mlp = (seed: number) => ({ name: `m${seed}`, inputShape: [3], hidden: [4], outputs: 2, softmax: false, seed });

/** One clause per group, each with its own key and value: `k-<group>=v-<group>`. */
const EVERY_GROUP_OWN_KEY = PROTOCOL_GROUPS.map((g) => `${g}:k-${g}=v-${g}`).join(';');
const keyOf = (group: string) => ({ [`k-${group}`]: `v-${group}` });

// ---------------------------------------------------------------------------------------------------------------

describe('GRPC_RESTRICTED_PROTOCOL: the variable', () => {
  const parse = (value: string) => loadConfig({ GRPC_RESTRICTED_PROTOCOL: value }).restrictedProtocol;

  it('is empty when unset', () => {
    assert.deepEqual(loadConfig({}).restrictedProtocol, []);
  });

  it('takes Triton syntax, several clauses, and keeps spaces out of names, keys and values', () => {
    const clauses = parse(' model-repository , statistics : admin-key = s3cret ; inference:infer-key=a=b:c ');
    assert.deepEqual(
      clauses.map((c) => ({ groups: c.groups, key: c.key, value: c.value.reveal() })),
      [
        { groups: ['model-repository', 'statistics'], key: 'admin-key', value: 's3cret' },
        { groups: ['inference'], key: 'infer-key', value: 'a=b:c' },
      ],
    );
  });

  it('never shows the value: in JSON (so in pino lines), in util.inspect, in the config the server logs', () => {
    const config = loadConfig({ GRPC_RESTRICTED_PROTOCOL: 'model-repository:admin-key=hunter2-secret' });
    assert.doesNotMatch(JSON.stringify(config), /hunter2/);
    assert.doesNotMatch(inspect(config, { depth: 10 }), /hunter2/);
    assert.match(JSON.stringify(config.restrictedProtocol), /"value":"\[redacted\]"/);
  });

  // Values are Zq9 (or café): the message must never show them.
  const bad: Array<[string, string, RegExp]> = [
    ['an unknown group', 'models:k=Zq9', /clause 1: unknown group "models"/],
    ['an empty group name', 'health,:k=Zq9', /clause 1 has an empty group name/],
    ['a group in two clauses', 'health:k=Zq9;inference,health:k2=Zq9', /group "health" is in clauses 1 and 2/],
    ['a group twice in one clause', 'health,health:k=Zq9', /group "health" is in clause 1 twice/],
    ['no colon', 'health', /clause 1 has no ':'/],
    ['no equals sign', 'health:key', /clause 1 has no '='/],
    ['an empty key', 'health:=Zq9', /clause 1 has an empty header key/],
    ['an uppercase key', 'health:Admin-Key=Zq9', /header key "Admin-Key" is not a gRPC metadata key/],
    ['a key with a space', 'health:admin key=Zq9', /header key "admin key" is not a gRPC metadata key/],
    ['a grpc- key', 'health:grpc-key=Zq9', /starts with "grpc-", which gRPC reserves/],
    ['a binary key', 'health:key-bin=Zq9', /ends with "-bin"/],
    ['a transport header', 'health:content-type=Zq9', /set by the gRPC transport/],
    ['an empty value', 'health:k=', /clause 1 has an empty header value/],
    ['a value that is not printable ASCII', 'health:k=caf\u00e9', /printable ASCII/],
    ['an empty clause', 'health:k=Zq9;;inference:k=Zq9', /clause 2 is empty/],
  ];
  for (const [what, value, message] of bad) {
    it(`refuses ${what}, naming the variable and what is allowed, never the value`, () => {
      assert.throws(
        () => parse(value),
        (error: unknown) => {
          assert.ok(error instanceof ConfigError);
          assert.equal(error.variable, 'GRPC_RESTRICTED_PROTOCOL');
          assert.match(error.message, /^GRPC_RESTRICTED_PROTOCOL=".*" is invalid: /);
          assert.match(error.message, message);
          assert.match(error.message, /expected <group>\[,<group>\.\.\.\]:<key>=<value>.*groups: health, metadata, inference, shared-memory/);
          assert.ok(!/Zq9|caf\u00e9/.test(error.message), error.message);
          assert.ok(!/Zq9|caf\u00e9/.test(error.value), error.value);
          return true;
        },
      );
    });
  }
});

describe('GRPC_RESTRICTED_PROTOCOL: the group table', () => {
  it('puts every RPC the server serves in one group, and lists nothing it does not serve', () => {
    const served = new Set(SERVED.map((r) => r.path));
    const missing = [...served].filter((p) => groupOfPath(p) === undefined);
    assert.deepEqual(missing, []);
    const listed = Object.entries(RPC_GROUPS).flatMap(([service, methods]) => Object.keys(methods).map((m) => `/${service}/${m}`));
    assert.deepEqual(listed.filter((p) => !served.has(p)), []);
    assert.equal(listed.length, served.size);
  });

  it('gives every group an RPC, as Triton groups them', () => {
    for (const group of PROTOCOL_GROUPS) assert.ok(SERVED.some((r) => groupOfPath(r.path) === group), group);
    assert.equal(groupOfPath(`${V2}RepositoryModelLoad`), 'model-repository');
    assert.equal(groupOfPath(`${V2}ModelStreamInfer`), 'inference');
    assert.equal(groupOfPath(`${SEED}Predict`), 'inference');
    assert.equal(groupOfPath(`${SEED}HealthCheck`), 'health');
    assert.equal(groupOfPath('/grpc.health.v1.Health/Watch'), 'health');
    assert.equal(groupOfPath('/grpc.reflection.v1.ServerReflection/ServerReflectionInfo'), 'metadata');
    assert.equal(SERVED.filter((r) => groupOfPath(r.path) === 'shared-memory').length, 6);
  });

  it('compares digests: any length, prefix or empty value is a plain mismatch, never an exception', async () => {
    const { createHash } = await import('node:crypto');
    const digest = createHash('sha256').update('right-value').digest();
    assert.equal(headerMatches('right-value', digest), true);
    for (const wrong of ['', 'r', 'right-valu', 'right-value ', 'right-valuf', 'x'.repeat(10_000)]) assert.equal(headerMatches(wrong, digest), false, wrong);
  });
});

describe('GRPC_RESTRICTED_PROTOCOL: every group restricted, each with its own key', () => {
  let running: Running;
  let client: grpc.Client;
  before(async () => {
    running = await start({ GRPC_RESTRICTED_PROTOCOL: EVERY_GROUP_OWN_KEY });
    client = running.client();
  });
  after(() => running.close());

  for (const r of SERVED) {
    it(`${r.path.slice(1)}: refused without its header, with another group's, with a wrong value; served with its own`, async () => {
      const group = groupOfPath(r.path);
      const other = PROTOCOL_GROUPS.find((g) => g !== group)!;
      const missing = await attempt(client, r, {});
      assert.notEqual(missing, 'data');
      assert.equal((missing as { code: number }).code, grpc.status.PERMISSION_DENIED);
      assert.match((missing as { details: string }).details, new RegExp(`expects the header "k-${group}"`));
      assert.doesNotMatch((missing as { details: string }).details, /v-/);
      const wrongKey = await attempt(client, r, keyOf(other));
      assert.equal((wrongKey as { code: number }).code, grpc.status.PERMISSION_DENIED);
      const wrongValue = await attempt(client, r, { [`k-${group}`]: `v-${other}` });
      assert.equal((wrongValue as { code: number }).code, grpc.status.PERMISSION_DENIED);
      assert.match((wrongValue as { details: string }).details, new RegExp(`the header "k-${group}" does not have the expected value`));
      assert.doesNotMatch((wrongValue as { details: string }).details, /v-/);
      const served = await attempt(client, r, keyOf(group));
      assert.ok(served === 'data' || served.code !== grpc.status.PERMISSION_DENIED, `${r.path}: ${JSON.stringify(served)}`);
    });
  }

  it('answers a right key with the RPC itself (a prediction, health, a model config)', async () => {
    const reply = await call<{ predictions: number[] }>(client, `${SEED}Predict`, { features: featuresFor(1, 1, 17) }, keyOf('inference'));
    assert.equal(reply.predictions.length, 5);
    assert.deepEqual(await call(client, `${V2}ServerLive`, {}, keyOf('health')), { live: true });
    const config = await call<{ config: { name: string } }>(client, `${V2}ModelConfig`, { name: '' }, keyOf('model-config'));
    assert.equal(config.config.name, 'default');
  });

  it('refuses two copies of the header even when one is right', async () => {
    const metadata = metadataOf(keyOf('health'));
    metadata.add('k-health', 'v-wrong');
    const r = rpc(`${V2}ServerLive`);
    const outcome = await new Promise<grpc.StatusObject>((resolve) => {
      client.makeUnaryRequest(r.path, raw, raw, Buffer.alloc(0), metadata, () => {}).on('status', resolve);
    });
    assert.equal(outcome.code, grpc.status.PERMISSION_DENIED);
  });
});

describe('GRPC_RESTRICTED_PROTOCOL: unset, every group open', () => {
  let running: Running;
  let client: grpc.Client;
  before(async () => {
    running = await start({});
    client = running.client();
  });
  after(() => running.close());

  for (const r of SERVED) {
    it(`${r.path.slice(1)}: served with no header`, async () => {
      const outcome = await attempt(client, r, {});
      assert.ok(outcome === 'data' || outcome.code !== grpc.status.PERMISSION_DENIED, `${r.path}: ${JSON.stringify(outcome)}`);
    });
  }
});

describe('GRPC_RESTRICTED_PROTOCOL: some groups restricted, the others open', () => {
  let running: Running;
  let client: grpc.Client;
  const admin = { 'admin-key': 'admin-value' };
  const desk = { 'desk-key': 'desk-value' };
  before(async () => {
    running = await start({ GRPC_RESTRICTED_PROTOCOL: 'model-repository,statistics,model-config:admin-key=admin-value;inference:desk-key=desk-value' });
    client = running.client();
  });
  after(() => running.close());

  it('leaves the open groups open (health, metadata, shared-memory, trace, logging)', async () => {
    for (const r of SERVED.filter((s) => ['health', 'metadata', 'shared-memory', 'trace', 'logging'].includes(groupOfPath(s.path)))) {
      const outcome = await attempt(client, r, {});
      assert.ok(outcome === 'data' || outcome.code !== grpc.status.PERMISSION_DENIED, `${r.path}: ${JSON.stringify(outcome)}`);
    }
  });

  it('takes each group\'s own key and refuses the other clause\'s', async () => {
    await expectDenied(call(client, `${V2}ModelStatistics`, {}, desk), /expects the header "admin-key"/);
    await call(client, `${V2}ModelStatistics`, {}, admin);
    await expectDenied(call(client, `${SEED}Predict`, { features: featuresFor(1, 1, 17) }, admin), /expects the header "desk-key"/);
    await call(client, `${SEED}Predict`, { features: featuresFor(1, 1, 17) }, desk);
    await call(client, `${V2}RepositoryIndex`, {}, admin);
  });

  it('guards a stream: refused at once without the key, served with it', async () => {
    const r = rpc(`${SEED}StreamPredict`);
    const refused = client.makeBidiStreamRequest(r.path, r.serialize, r.deserialize, new grpc.Metadata());
    refused.on('error', () => {});
    const status = await new Promise<grpc.StatusObject>((resolve) => refused.on('status', resolve));
    assert.equal(status.code, grpc.status.PERMISSION_DENIED);
    const stream = client.makeBidiStreamRequest(r.path, r.serialize, r.deserialize, metadataOf(desk));
    const replies: unknown[] = [];
    stream.on('data', (reply) => replies.push(reply));
    for (let i = 0; i < 3; i++) stream.write({ features: featuresFor(i, 1, 17) });
    stream.end();
    const [ok] = (await once(stream, 'status')) as [grpc.StatusObject];
    assert.equal(ok.code, grpc.status.OK, ok.details);
    assert.equal(replies.length, 3);
  });

  it('refuses before the message is decoded or admitted: a malformed body, and one over the size limit, get PERMISSION_DENIED', async () => {
    const malformed = Buffer.from([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f]); // a field whose length runs past the message
    const oversized = Buffer.alloc(5 * 1024 * 1024 + 7, 0x0d); // over MAX_RECEIVE_MESSAGE_BYTES (4 MiB)
    const handled = running.server.counters.predictCalls;
    for (const p of [`${SEED}Predict`, `${V2}ModelInfer`]) {
      for (const body of [malformed, oversized]) {
        const refused = await attempt(client, rpc(p), {}, body);
        assert.equal((refused as { code: number }).code, grpc.status.PERMISSION_DENIED, `${p}: ${JSON.stringify(refused)}`);
      }
    }
    // No refused call reached a handler.
    assert.equal(running.server.counters.predictCalls, handled);
    // The same bytes with the key are read, and refused for what they are.
    for (const p of [`${SEED}Predict`, `${V2}ModelInfer`]) {
      const decoded = await attempt(client, rpc(p), desk, malformed);
      assert.ok(decoded !== 'data' && [grpc.status.INVALID_ARGUMENT, grpc.status.INTERNAL].includes(decoded.code), `${p}: ${JSON.stringify(decoded)}`);
      const tooBig = await attempt(client, rpc(p), desk, oversized);
      assert.equal((tooBig as { code: number }).code, grpc.status.RESOURCE_EXHAUSTED, `${p}: ${JSON.stringify(tooBig)}`);
    }
  });

  it('logs refusals with the peer (warn for model-repository), never the value', async () => {
    await expectDenied(call(client, `${V2}RepositoryModelUnload`, { model_name: 'default' }, { 'admin-key': 'guess' }), /does not have the expected value/);
    const line = await running.logs.waitFor((l) => l.msg === 'call refused: restricted protocol' && l.method === 'inference.GRPCInferenceService/RepositoryModelUnload', 'for the refusal');
    assert.equal(line.level, WARN);
    assert.equal(line.group, 'model-repository');
    assert.equal(line.reason, 'mismatch');
    assert.match(String(line.peer), /^127\.0\.0\.1:\d+$/);
    assert.ok(!JSON.stringify(running.logs.lines).includes('admin-value'));
    assert.ok(!JSON.stringify(running.logs.lines).includes('desk-value'));
  });
});

describe('repository RPCs outside explicit mode', () => {
  for (const mode of ['none', 'poll']) {
    it(`MODEL_CONTROL_MODE=${mode}: RepositoryModelLoad and Unload get FAILED_PRECONDITION even with the key; without it, PERMISSION_DENIED`, async () => {
      const root = writeRepository({ a: { versions: { '1': mlp(1) } } });
      const running = await start({ MODEL_PATH: '', MODEL_REPOSITORY: root, MODEL_CONTROL_MODE: mode, GRPC_RESTRICTED_PROTOCOL: 'model-repository:admin-key=v' });
      try {
        const client = running.client();
        for (const method of ['RepositoryModelLoad', 'RepositoryModelUnload']) {
          await expectDenied(call(client, `${V2}${method}`, { model_name: 'a' }), /expects the header "admin-key"/);
          await expectStatus(call(client, `${V2}${method}`, { model_name: 'a' }, { 'admin-key': 'v' }), grpc.status.FAILED_PRECONDITION, new RegExp(`MODEL_CONTROL_MODE is ${mode}; load and unload need MODEL_CONTROL_MODE=explicit`));
        }
        const index = await call<{ models: Array<{ name: string; state: string }> }>(client, `${V2}RepositoryIndex`, {}, { 'admin-key': 'v' });
        assert.deepEqual(index.models.map((m) => [m.name, m.state]), [['a', 'READY']]);
        const refused = running.logs.audit.filter((l) => l.outcome === 'refused');
        assert.equal(refused.length, 2);
        assert.match(refused[0].msg, /^audit: load a refused: model control is disabled/);
      } finally {
        await running.close();
      }
    });
  }

  it('without a repository (MODEL_PATH): FAILED_PRECONDITION', async () => {
    const running = await start({});
    try {
      await expectStatus(call(running.client(), `${V2}RepositoryModelLoad`, { model_name: 'default' }), grpc.status.FAILED_PRECONDITION, /MODEL_CONTROL_MODE is none/);
    } finally {
      await running.close();
    }
  });
});

describe('the startup log says what is restricted', () => {
  const config = (value: string) => loadConfig({ GRPC_RESTRICTED_PROTOCOL: value }).restrictedProtocol;

  it('names the restricted groups with their header (never the value) and the open ones', () => {
    const { info, warning } = describeRestrictions(config('model-repository,statistics:admin-key=s3cret;inference:desk-key=d3sk'), 'explicit');
    assert.equal(
      info,
      'restricted protocol: model-repository, statistics need the header "admin-key"; inference needs the header "desk-key"; ' +
        'open to anyone who reaches the port: health, metadata, shared-memory, model-config, trace, logging',
    );
    assert.equal(warning, null);
  });

  it('says when nothing is restricted', () => {
    assert.match(describeRestrictions([], 'none').info, /^GRPC_RESTRICTED_PROTOCOL is not set: every RPC group is open/);
  });

  it('warns in explicit and poll mode with model-repository open, not in none mode nor when it is restricted', () => {
    assert.match(describeRestrictions([], 'explicit').warning ?? '', /MODEL_CONTROL_MODE=explicit and the model-repository group is open: anyone who reaches the port can load and unload models/);
    assert.match(describeRestrictions(config('inference:k=v'), 'poll').warning ?? '', /MODEL_CONTROL_MODE=poll and the model-repository group is open/);
    assert.equal(describeRestrictions([], 'none').warning, null);
    assert.equal(describeRestrictions(config('model-repository:k=v'), 'poll').warning, null);
  });

  it('a server in explicit mode with model-repository open logs the groups and warns once', async () => {
    const root = writeRepository({ a: { versions: { '1': mlp(1) } } });
    const running = await start({ MODEL_PATH: '', MODEL_REPOSITORY: root, MODEL_CONTROL_MODE: 'explicit', GRPC_RESTRICTED_PROTOCOL: 'inference:desk-key=d3sk' });
    await running.close();
    const lines = running.logs.lines;
    assert.equal(lines.filter((l) => /^restricted protocol: inference needs the header "desk-key"/.test(l.msg)).length, 1);
    assert.equal(lines.filter((l) => /the model-repository group is open/.test(l.msg) && l.level === WARN).length, 1);
    assert.ok(!JSON.stringify(lines).includes('d3sk'));
  });
});

describe('audit lines: every load and unload, whoever asked', () => {
  let root: string;
  let running: Running;
  let client: grpc.Client;
  before(async () => {
    root = writeRepository({ a: { versions: { '1': mlp(1) } }, b: { versions: { '1': mlp(2) } } });
    running = await start({ MODEL_PATH: '', MODEL_REPOSITORY: root, MODEL_CONTROL_MODE: 'explicit', LOAD_MODELS: 'a', GRPC_RESTRICTED_PROTOCOL: 'model-repository:admin-key=v' });
    client = running.client();
  });
  after(() => running?.close());
  const admin = { 'admin-key': 'v' };
  const lastAudit = () => running.logs.audit.at(-1)!;

  it('startup: the models loaded at startup', () => {
    const [line] = running.logs.audit;
    assert.deepEqual(
      { action: line.action, model: line.model, version: line.version, outcome: line.outcome, reason: line.reason, initiator: line.initiator },
      { action: 'load', model: 'a', version: '1', outcome: 'success', reason: '', initiator: 'startup' },
    );
    assert.equal(line.msg, 'audit: load a version 1 succeeded (by startup)');
  });

  it('an RPC load and unload: the method and the peer address (no subject without mTLS)', async () => {
    await call(client, `${V2}RepositoryModelLoad`, { model_name: 'b' }, admin);
    const load = lastAudit();
    assert.equal(load.action, 'load');
    assert.equal(load.model, 'b');
    assert.equal(load.version, '1');
    assert.equal(load.outcome, 'success');
    assert.equal(load.initiator, 'rpc');
    assert.equal(load.method, 'inference.GRPCInferenceService/RepositoryModelLoad');
    assert.match(String(load.peer), /^127\.0\.0\.1:\d+$/);
    assert.equal(load.client_subject, null);
    await call(client, `${V2}RepositoryModelUnload`, { model_name: 'b' }, admin);
    const unload = lastAudit();
    assert.deepEqual([unload.action, unload.model, unload.version, unload.outcome, unload.reason, unload.initiator], ['unload', 'b', '1', 'success', 'unloaded on request', 'rpc']);
    assert.match(unload.msg, /^audit: unload b version 1 succeeded: unloaded on request \(by inference\.GRPCInferenceService\/RepositoryModelUnload from 127\.0\.0\.1:\d+\)$/);
  });

  it('a failed load: the reason', async () => {
    mkdirSync(path.join(root, 'b', '2'));
    writeFileSync(path.join(root, 'b', '2', 'model.onnx'), 'not onnx');
    await expectStatus(call(client, `${V2}RepositoryModelLoad`, { model_name: 'b' }, admin), grpc.status.INVALID_ARGUMENT, /failed to load: version 2/);
    const failed = running.logs.audit.find((l) => l.model === 'b' && l.version === '2')!;
    assert.equal(failed.outcome, 'failure');
    assert.match(String(failed.reason), /cannot load model|protobuf|parse/i);
    assert.equal(failed.level, WARN);
    rmSync(path.join(root, 'b', '2'), { recursive: true });
  });

  it('requests refused before any load: not in the repository, not loaded, not a model name', async () => {
    await expectStatus(call(client, `${V2}RepositoryModelLoad`, { model_name: 'zzz' }, admin), grpc.status.NOT_FOUND, /not in the repository/);
    assert.deepEqual([lastAudit().action, lastAudit().model, lastAudit().outcome], ['load', 'zzz', 'refused']);
    await expectStatus(call(client, `${V2}RepositoryModelUnload`, { model_name: 'zzz' }, admin), grpc.status.NOT_FOUND, /is not loaded/);
    assert.deepEqual([lastAudit().action, lastAudit().model, lastAudit().outcome], ['unload', 'zzz', 'refused']);
  });

  it('shutdown: every loaded version', async () => {
    await running.close();
    const last = lastAudit();
    assert.deepEqual([last.action, last.model, last.version, last.outcome, last.initiator], ['unload', 'a', '1', 'success', 'shutdown']);
  });
});

describe('audit lines: SIGHUP and poll', () => {
  it('a rescan asked for by SIGHUP loads and unloads under its name', async () => {
    const root = writeRepository({ a: { versions: { '1': mlp(1) } }, b: { versions: { '1': mlp(2) } } });
    const running = await start({ MODEL_PATH: '', MODEL_REPOSITORY: root });
    try {
      writeVersion(root, 'a', '2', mlp(3));
      rmSync(path.join(root, 'b'), { recursive: true });
      await running.server.rescan();
      await running.server.models.settled();
      const lines = running.logs.audit.filter((l) => l.initiator === 'SIGHUP').map((l) => `${l.action} ${l.model} ${l.version} ${l.outcome}: ${l.reason}`);
      assert.deepEqual(lines.sort(), [
        'load a 2 success: ',
        'unload a 1 success: no longer kept by the version policy',
        'unload b 1 success: no longer in the repository',
      ]);
    } finally {
      await running.close();
    }
  });

  it('poll mode\'s timer loads under its name', async () => {
    const root = writeRepository({ a: { versions: { '1': mlp(1) } } });
    const running = await start({ MODEL_PATH: '', MODEL_REPOSITORY: root, MODEL_CONTROL_MODE: 'poll', REPOSITORY_POLL_SECS: '1' });
    try {
      writeVersion(root, 'a', '2', mlp(3));
      const line = await running.logs.waitFor((l) => l.audit === true && l.initiator === 'poll' && l.action === 'load', 'for a poll load');
      assert.deepEqual([line.model, line.version, line.outcome], ['a', '2', 'success']);
    } finally {
      await running.close();
    }
  });
});

describe('audit lines under mutual TLS: the client certificate\'s subject', () => {
  it('names the subject of the certificate that asked', async () => {
    const certs = makeCerts();
    const root = writeRepository({ a: { versions: { '1': mlp(1) } }, b: { versions: { '1': mlp(2) } } });
    const running = await start({
      MODEL_PATH: '',
      MODEL_REPOSITORY: root,
      MODEL_CONTROL_MODE: 'explicit',
      LOAD_MODELS: 'a',
      TLS_CERT_FILE: certs.serverCert,
      TLS_KEY_FILE: certs.serverKey,
      TLS_CLIENT_CA_FILE: certs.caCert,
    });
    try {
      const client = running.client(grpc.credentials.createSsl(read(certs.caCert), read(certs.clientKey), read(certs.clientCert)));
      await call(client, `${V2}RepositoryModelLoad`, { model_name: 'b' }, {});
      const line = running.logs.audit.find((l) => l.model === 'b')!;
      assert.equal(line.client_subject, 'CN=client');
      assert.match(line.msg, /\(by inference\.GRPCInferenceService\/RepositoryModelLoad from 127\.0\.0\.1:\d+ \(CN=client\)\)$/);
    } finally {
      await running.close();
    }
  });
});

// ---------------------------------------------------------------------------------------------------------------
// Models load only from inside the repository.

const ONE = Float32Array.of(1);

/** y = x + one over [batch, 4], with `one` kept in the file `location` (relative to the model's folder). */
const externalModel = (location: string): GraphSpec => ({
  name: 'external',
  inputs: [{ name: 'x', shape: ['batch', 4] }],
  outputs: [{ name: 'y', shape: ['batch', 4] }],
  nodes: [{ op: 'Add', inputs: ['x', 'one'], outputs: ['y'] }],
  initializers: [{ name: 'one', dims: [], values: ONE, externalLocation: location }],
});

/** Writes a version whose `one` is external data at `location`, and the data itself where `dataAt` says. */
function writeExternal(root: string, model: string, version: string, location: string, dataAt = path.resolve(root, model, version, location)): void {
  const folder = path.join(root, model, version);
  mkdirSync(folder, { recursive: true });
  writeFileSync(path.join(folder, 'model.onnx'), encodeModel(externalModel(location)));
  mkdirSync(path.dirname(dataAt), { recursive: true });
  writeFileSync(dataAt, Buffer.from(ONE.buffer));
}

const fp32 = (name: string, shape: number[]) => ({ name, datatype: 'FP32', shape });

describe('models load only from inside the repository', () => {
  let root: string;
  let outside: string;
  let running: Running;
  let client: grpc.Client;
  const index = async () =>
    (await call<{ models: Array<{ name: string; version: string; state: string; reason: string }> }>(client, `${V2}RepositoryIndex`, {})).models;
  before(async () => {
    root = writeRepository({ a: { versions: { '1': mlp(1) } } });
    outside = mkdtempSync(path.join(tmpdir(), 'tickserve-outside-'));
    running = await start({ MODEL_PATH: '', MODEL_REPOSITORY: root, MODEL_CONTROL_MODE: 'explicit', LOAD_MODELS: 'a' });
    client = running.client();
  });
  after(() => running.close());

  for (const name of ['../a', 'a/1', 'a\\1', '..', 'a..b', '/etc']) {
    it(`refuses the model name ${JSON.stringify(name)} (load and unload)`, async () => {
      for (const method of ['RepositoryModelLoad', 'RepositoryModelUnload']) {
        await expectStatus(call(client, `${V2}${method}`, { model_name: name }), grpc.status.INVALID_ARGUMENT, /is refused: it contains (a path separator|"\.\.")/);
      }
    });
  }

  it('refuses default_model_filename with a path in it, saying why', async () => {
    mkdirSync(path.join(root, 'escape', '1'), { recursive: true });
    writeFileSync(path.join(root, 'escape', 'config.pbtxt'), 'default_model_filename: "../../a/1/model.onnx"\n');
    await expectStatus(call(client, `${V2}RepositoryModelLoad`, { model_name: 'escape' }), grpc.status.INVALID_ARGUMENT, /model "escape" cannot be loaded: .*default_model_filename.*is not a plain file name/);
  });

  it('refuses a model file that is a symbolic link out of its version folder', async () => {
    writeVersion(outside, 'elsewhere', '1', mlp(4));
    mkdirSync(path.join(root, 'linked', '1'), { recursive: true });
    symlinkSync(path.join(outside, 'elsewhere', '1', 'model.onnx'), path.join(root, 'linked', '1', 'model.onnx'));
    await expectStatus(call(client, `${V2}RepositoryModelLoad`, { model_name: 'linked' }), grpc.status.INVALID_ARGUMENT, /failed to load: version 1: refused: the model file .* resolves to .*, outside its version folder/);
    const state = (await index()).find((m) => m.name === 'linked')!;
    assert.equal(state.state, 'UNAVAILABLE');
    assert.match(state.reason, /outside its version folder/);
  });

  it('refuses external data reached through a symbolic link out of the folder', async () => {
    writeExternal(root, 'linkdata', '1', 'weights/one.bin', path.join(outside, 'one.bin'));
    rmSync(path.join(root, 'linkdata', '1', 'weights'), { recursive: true, force: true });
    symlinkSync(outside, path.join(root, 'linkdata', '1', 'weights'));
    await expectStatus(call(client, `${V2}RepositoryModelLoad`, { model_name: 'linkdata' }), grpc.status.INVALID_ARGUMENT, /refused: weights in .* is a symbolic link to .*, outside the version folder/);
  });

  it('serves external data inside the version folder (a subfolder too)', async () => {
    writeExternal(root, 'inside', '1', 'weights/one.bin');
    await call(client, `${V2}RepositoryModelLoad`, { model_name: 'inside' });
    const reply = await call<{ raw_output_contents: Buffer[] }>(client, `${V2}ModelInfer`, {
      model_name: 'inside',
      inputs: [fp32('x', [1, 4])],
      raw_input_contents: [f32([1, 2, 3, 4])],
    });
    assert.deepEqual(readF32(reply.raw_output_contents[0]), [2, 3, 4, 5]);
  });

  it('refuses an absolute external data location', async () => {
    writeExternal(root, 'absolute', '1', path.join(outside, 'abs.bin'));
    await expectStatus(call(client, `${V2}RepositoryModelLoad`, { model_name: 'absolute' }), grpc.status.INVALID_ARGUMENT, /refused: model .* keeps tensor data outside its version folder/);
  });

  it('external data outside the folder fails to load cleanly, its state says why, and a live stream to another model runs untouched', async () => {
    writeExternal(root, 'outside', '1', '../../outside.bin');
    const r = rpc(`${V2}ModelStreamInfer`);
    const stream = client.makeBidiStreamRequest(r.path, r.serialize, (bytes: Buffer) => r.deserialize(bytes) as unknown as StreamReply, new grpc.Metadata());
    const replies: StreamReply[] = [];
    let waiting: (() => void) | null = null;
    stream.on('data', (reply: StreamReply) => {
      replies.push(reply);
      waiting?.();
    });
    const status = once(stream, 'status');
    let sent = 0;
    const roundTrip = async () => {
      const answered = new Promise<void>((resolve) => (waiting = resolve));
      stream.write({ model_name: 'a', id: String(sent++), inputs: [fp32('input', [1, 3])], raw_input_contents: [f32([0.1, 0.2, 0.3])] });
      await answered;
    };
    await roundTrip();
    let settled = false;
    const load = call(client, `${V2}RepositoryModelLoad`, { model_name: 'outside' }).finally(() => (settled = true));
    load.catch(() => {});
    while (!settled) await roundTrip();
    await expectStatus(load, grpc.status.INVALID_ARGUMENT, /model "outside" failed to load: version 1: refused: model .* keeps tensor data outside its version folder \(.*External data path.*\)/);
    await roundTrip();
    stream.end();
    const [ended] = (await status) as [grpc.StatusObject];
    assert.equal(ended.code, grpc.status.OK);
    assert.equal(replies.length, sent);
    assert.ok(replies.every((reply, i) => reply.error_message === '' && reply.infer_response?.id === String(i)), JSON.stringify(replies.find((x) => x.error_message !== '')));
    const state = (await index()).find((m) => m.name === 'outside')!;
    assert.equal(state.state, 'UNAVAILABLE');
    assert.match(state.reason, /keeps tensor data outside its version folder/);
    assert.deepEqual((await index()).find((m) => m.name === 'a'), { name: 'a', version: '1', state: 'READY', reason: '' });
    const audit = running.logs.audit.find((l) => l.model === 'outside')!;
    assert.equal(audit.outcome, 'failure');
  });
});

// ---------------------------------------------------------------------------------------------------------------
// As a user runs it: its own process, the startup lines, the metric, SIGHUP, and a bad value.

const ENTRY = path.join(__dirname, '..', 'src', 'main', 'index.js');

describe('the server process', () => {
  const secret = 'pr0cess-s3cret';

  it('logs the restricted groups, never the value; counts refusals by group; audits a SIGHUP reload; traces what it lets through', async () => {
    const root = writeRepository({ a: { versions: { '1': mlp(1) } } });
    const metricsPort = await freePort();
    // Tracing on: the tracing interceptor runs behind the restricted protocol's.
    const receiver = new OtlpReceiver();
    await receiver.start();
    const child = spawn(process.execPath, [ENTRY], {
      env: {
        PATH: process.env.PATH ?? '',
        HOST: '127.0.0.1',
        PORT: '0',
        METRICS_PORT: String(metricsPort),
        WORKERS: '1',
        MODEL_REPOSITORY: root,
        GRPC_RESTRICTED_PROTOCOL: `model-repository,statistics:admin-key=${secret}`,
        OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${receiver.httpPort}`,
        OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json',
        OTEL_BSP_SCHEDULE_DELAY: '50',
      },
    });
    let stdout = '';
    child.stdout.on('data', (chunk) => (stdout += chunk));
    try {
      while (!/"port":(\d+)/.test(stdout)) {
        if (child.exitCode !== null) throw new Error(`server exited: ${stdout}`);
        await once(child.stdout, 'data');
      }
      assert.match(stdout, /"msg":"restricted protocol: model-repository, statistics need the header \\"admin-key\\"; open to anyone who reaches the port: health, metadata, inference, shared-memory, model-config, trace, logging"/);
      assert.doesNotMatch(stdout, /model-repository group is open/);
      const client = new grpc.Client(`127.0.0.1:${/"port":(\d+)/.exec(stdout)![1]}`, grpc.credentials.createInsecure());
      try {
        await expectDenied(call(client, `${V2}RepositoryIndex`, {}), /admin-key/);
        await expectDenied(call(client, `${V2}RepositoryIndex`, {}), /admin-key/);
        await expectDenied(call(client, `${V2}ModelStatistics`, {}, { 'admin-key': 'nope' }), /expected value/);
        await call(client, `${V2}ModelStatistics`, {}, { 'admin-key': secret });
      } finally {
        client.close();
      }
      // The call let through has its span; the refused ones end before any.
      const spans = await receiver.waitFor((all) => all.some((s) => s.name === 'inference.GRPCInferenceService/ModelStatistics'));
      assert.equal(spans.filter((s) => s.name === 'inference.GRPCInferenceService/ModelStatistics').length, 1);
      assert.equal(spans.filter((s) => s.name === 'inference.GRPCInferenceService/RepositoryIndex').length, 0);
      const metrics = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
      assert.match(metrics, /tickserve_restricted_refusals_total\{group="model-repository",reason="missing"[^}]*\} 2\b/);
      assert.match(metrics, /tickserve_restricted_refusals_total\{group="statistics",reason="mismatch"[^}]*\} 1\b/);
      writeVersion(root, 'a', '2', mlp(2));
      child.kill('SIGHUP');
      while (!/"audit":true[^\n]*"initiator":"SIGHUP"/.test(stdout)) await once(child.stdout, 'data');
      assert.match(stdout, /"msg":"audit: load a version 2 succeeded \(by SIGHUP\)"/);
      assert.ok(!stdout.includes(secret), 'the value appears in the log');
    } finally {
      child.kill('SIGTERM');
      if (child.exitCode === null) await once(child, 'exit');
      await receiver.stop();
    }
    assert.match(stdout, /"msg":"audit: unload a version 2 succeeded: the server is shutting down \(by shutdown\)"/);
  });

  it('exits 2 on a bad value with one line naming the variable, not the value', async () => {
    const child = spawn(process.execPath, [ENTRY], {
      env: { PATH: process.env.PATH ?? '', HOST: '127.0.0.1', PORT: '0', METRICS_PORT: '0', GRPC_RESTRICTED_PROTOCOL: `model-repository:Admin-Key=${secret}` },
    });
    let stderr = '';
    child.stderr.on('data', (chunk) => (stderr += chunk));
    const [code] = await once(child, 'exit');
    assert.equal(code, 2);
    assert.match(stderr, /^tickserve: GRPC_RESTRICTED_PROTOCOL="model-repository:Admin-Key=…" is invalid: clause 1: header key "Admin-Key" is not a gRPC metadata key/);
    assert.equal(stderr.trim().split('\n').length, 1);
    assert.ok(!stderr.includes(secret));
  });
});
