import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { ConfigError, DEFAULT_MODEL_PATH, listenError, loadConfig, StartupError } from '../src/main/config';
import { makeCerts } from './helpers/certs';

const dir = mkdtempSync(path.join(tmpdir(), 'tickserve-config-'));
const emptyFile = path.join(dir, 'empty.onnx');
writeFileSync(emptyFile, '');
const notPem = path.join(dir, 'not.pem');
writeFileSync(notPem, 'neither a certificate nor a key\n');

describe('config', () => {
  it('has working defaults', () => {
    const config = loadConfig({});
    assert.equal(config.port, 50051);
    assert.equal(config.host, '0.0.0.0');
    assert.equal(config.modelPath, DEFAULT_MODEL_PATH);
    assert.equal(config.maxBatchSize, 256);
    assert.equal(config.maxQueueDelayUs, 100);
    assert.equal(config.batchDelay, 'adaptive');
    assert.equal(config.maxQueueSize, 4096);
    assert.deepEqual(config.preferredBatchSizes, []);
    assert.ok(config.workers >= 1);
    assert.equal(config.ortIntraOpThreads, 1);
    assert.equal(config.executionProvider, 'cpu');
    assert.equal(config.maxReceiveMessageBytes, 4 * 1024 * 1024);
    assert.equal(config.workerTimeoutMs, 5000);
    assert.equal(config.tlsCertFile, null);
  });

  it('reads values, sorts preferred sizes, and gives CUDA one worker per visible GPU', () => {
    const config = loadConfig({ PORT: '7000', PREFERRED_BATCH_SIZES: '32, 8,16', EXECUTION_PROVIDER: 'CUDA', CUDA_VISIBLE_DEVICES: '0,1,3' });
    assert.equal(config.port, 7000);
    assert.deepEqual(config.preferredBatchSizes, [8, 16, 32]);
    assert.equal(config.executionProvider, 'cuda');
    assert.equal(config.workers, 3);
  });

  const bad: Array<[string, string, Record<string, string>?]> = [
    ['HOST', 'a b'],
    ['HOST', '256.1.1.1'],
    ['HOST', '10.0.0'],
    ['HOST', 'fe80::zz'],
    ['HOST', '[::1]'],
    ['MODEL_PATH', '/no/such/model.onnx'],
    ['MODEL_PATH', dir],
    ['MODEL_PATH', emptyFile],
    ['PORT', '-1'],
    ['PORT', '1.5'],
    ['MODEL_NAME', 'no spaces'],
    ['MODEL_VERSION', 'v/1'],
    ['MAX_BATCH_SIZE', '0'],
    ['MAX_BATCH_SIZE', '12abc'],
    ['MAX_QUEUE_DELAY_US', 'soon'],
    ['BATCH_DELAY', 'dynamic'],
    ['BATCH_DELAY', '100'],
    ['MAX_QUEUE_SIZE', '0'],
    ['PREFERRED_BATCH_SIZES', '4,4'],
    ['PREFERRED_BATCH_SIZES', '0'],
    ['PREFERRED_BATCH_SIZES', 'a,b'],
    ['WORKERS', '0'],
    ['ORT_INTRA_OP_THREADS', '0'],
    ['WORKER_TIMEOUT_MS', '-1'],
    ['EXECUTION_PROVIDER', 'tpu'],
    ['MAX_RECEIVE_MESSAGE_BYTES', '10'],
    ['REQUEST_TIMEOUT_MS', 'x'],
    ['SHUTDOWN_GRACE_MS', '-5'],
    ['LOG_LEVEL', 'verbose'],
    ['TLS_CERT_FILE', '/no/such/cert.pem', { TLS_KEY_FILE: '/etc/hostname' }],
    ['TLS_KEY_FILE', '/no/such/key.pem', { TLS_CERT_FILE: '/etc/hostname' }],
    ['TLS_CLIENT_CA_FILE', '/no/such/ca.pem'],
    ['METRICS_PORT', '99999'],
    ['METRICS_PORT', '7000', { PORT: '7000' }],
    ['STREAM_MESSAGE_SPANS', 'maybe'],
    ['OTEL_SDK_DISABLED', 'yes please'],
    ['OTEL_EXPORTER_OTLP_PROTOCOL', 'xml'],
    ['OTEL_EXPORTER_OTLP_TRACES_PROTOCOL', 'http'],
    ['OTEL_TRACES_SAMPLER', 'sometimes'],
    ['OTEL_TRACES_SAMPLER_ARG', '1.5', { OTEL_TRACES_SAMPLER: 'traceidratio' }],
    // Set where nothing polls: the operator expects polling and would not get it.
    ['REPOSITORY_POLL_SECS', '5'],
    ['REPOSITORY_POLL_SECS', '5', { MODEL_CONTROL_MODE: 'explicit' }],
    // A typo the SDK would only report to its own diagnostics: tracing on, nothing exported.
    ['OTEL_TRACES_EXPORTER', 'otlpp'],
    ['OTEL_TRACES_EXPORTER', 'otlp,jaeger'],
    // Past Node's longest timer (2^31 - 1 ms), which would fire after 1 ms instead.
    ['SHUTDOWN_GRACE_MS', '3000000000'],
    ['WORKER_TIMEOUT_MS', '2147483648'],
    ['REQUEST_TIMEOUT_MS', '3000000000'],
    // MODEL_PATH's names: a repository's folders name its models and versions.
    ['MODEL_NAME', 'foo', { MODEL_PATH: '', MODEL_REPOSITORY: tmpdir() }],
    ['MODEL_VERSION', '7', { MODEL_PATH: '', MODEL_REPOSITORY: tmpdir() }],
  ];
  it('the longest timer delays and every known traces exporter are taken', () => {
    const config = loadConfig({ SHUTDOWN_GRACE_MS: '2147483647', WORKER_TIMEOUT_MS: '2147483647', OTEL_TRACES_EXPORTER: 'otlp, console,zipkin' });
    assert.equal(config.shutdownGraceMs, 2 ** 31 - 1);
    assert.equal(config.tracing, true);
  });
  it('REPOSITORY_POLL_SECS is taken with MODEL_CONTROL_MODE=poll', () => {
    assert.equal(loadConfig({ MODEL_PATH: '', MODEL_REPOSITORY: tmpdir(), MODEL_CONTROL_MODE: 'poll', REPOSITORY_POLL_SECS: '5' }).repositoryPollSecs, 5);
  });
  it('BATCH_DELAY: adaptive or fixed, in any case', () => {
    assert.equal(loadConfig({ BATCH_DELAY: 'fixed' }).batchDelay, 'fixed');
    assert.equal(loadConfig({ BATCH_DELAY: ' Adaptive ' }).batchDelay, 'adaptive');
  });

  for (const [variable, value, extra] of bad) {
    it(`${variable}=${JSON.stringify(value)} is refused, naming the variable and the value`, () => {
      assert.throws(
        () => loadConfig({ ...extra, [variable]: value }),
        (error: ConfigError) => {
          assert.ok(error instanceof ConfigError);
          assert.equal(error.variable, variable);
          assert.ok(error.message.startsWith(`${variable}=${JSON.stringify(value)} is invalid: `), error.message);
          return true;
        },
      );
    });
  }

  it('tracing is on only when an endpoint or exporter is configured, and off when the SDK is disabled', () => {
    assert.equal(loadConfig({}).tracing, false);
    assert.equal(loadConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318' }).tracing, true);
    assert.equal(loadConfig({ OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://collector:4318/v1/traces' }).tracing, true);
    assert.equal(loadConfig({ OTEL_TRACES_EXPORTER: 'console' }).tracing, true);
    assert.equal(loadConfig({ OTEL_TRACES_EXPORTER: 'none', OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318' }).tracing, false);
    const disabled = loadConfig({ OTEL_SDK_DISABLED: 'true', OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318' });
    assert.equal(disabled.tracing, false);
    assert.equal(disabled.telemetryDisabled, true);
    for (const protocol of ['grpc', 'http/protobuf', 'http/json']) {
      assert.equal(loadConfig({ OTEL_EXPORTER_OTLP_PROTOCOL: protocol }).tracing, false);
    }
  });

  it('the traces sampler: parentbased_always_on by default; the ratio only for the *traceidratio ones, 1 when unset', () => {
    assert.deepEqual(loadConfig({}).tracesSampler, { name: 'parentbased_always_on', ratio: 1 });
    assert.deepEqual(loadConfig({ OTEL_TRACES_SAMPLER: 'always_off' }).tracesSampler, { name: 'always_off', ratio: 1 });
    assert.deepEqual(loadConfig({ OTEL_TRACES_SAMPLER: ' Always_Off ' }).tracesSampler, { name: 'always_off', ratio: 1 });
    assert.deepEqual(loadConfig({ OTEL_TRACES_SAMPLER: 'traceidratio' }).tracesSampler, { name: 'traceidratio', ratio: 1 });
    assert.deepEqual(
      loadConfig({ OTEL_TRACES_SAMPLER: 'parentbased_traceidratio', OTEL_TRACES_SAMPLER_ARG: '0.01' }).tracesSampler,
      { name: 'parentbased_traceidratio', ratio: 0.01 },
    );
    assert.deepEqual(loadConfig({ OTEL_TRACES_SAMPLER: 'traceidratio', OTEL_TRACES_SAMPLER_ARG: ' ' }).tracesSampler, { name: 'traceidratio', ratio: 1 });
    // An argument the sampler takes none of is not its business (the SDK ignores it too).
    assert.deepEqual(loadConfig({ OTEL_TRACES_SAMPLER: 'always_on', OTEL_TRACES_SAMPLER_ARG: 'x' }).tracesSampler, { name: 'always_on', ratio: 1 });
  });

  it('TLS needs both the certificate and the key', () => {
    assert.throws(() => loadConfig({ TLS_CERT_FILE: '/etc/hostname' }), /TLS_KEY_FILE="" is invalid: required when TLS_CERT_FILE is set/);
    assert.throws(() => loadConfig({ TLS_KEY_FILE: '/etc/hostname' }), /TLS_CERT_FILE="" is invalid: required when TLS_KEY_FILE is set/);
  });

  it('mTLS needs TLS', () => {
    assert.throws(() => loadConfig({ TLS_CLIENT_CA_FILE: '/etc/hostname' }), /TLS_CLIENT_CA_FILE="\/etc\/hostname" is invalid: needs TLS_CERT_FILE/);
  });

  it('accepts host names and IP addresses of either family', () => {
    for (const host of ['localhost', 'tickserve-0.tickserve', '127.0.0.1', '0.0.0.0', '::', '::1', 'fe80::1']) {
      assert.equal(loadConfig({ HOST: host }).host, host);
    }
  });

  it('METRICS_PORT may equal PORT when OpenTelemetry is off: nothing listens on it', () => {
    assert.equal(loadConfig({ PORT: '7000', METRICS_PORT: '7000', OTEL_SDK_DISABLED: 'true' }).metricsPort, 7000);
  });
});

describe('TLS files are parsed at startup', () => {
  const certs = makeCerts();
  const refused = (env: Record<string, string>, variable: string, reason: RegExp) =>
    assert.throws(() => loadConfig(env), (error: ConfigError) => {
      assert.ok(error instanceof ConfigError);
      assert.equal(error.variable, variable);
      assert.equal(error.value, env[variable]);
      assert.match(error.message, reason);
      return true;
    });

  it('a certificate, its key and a client CA are accepted', () => {
    const config = loadConfig({ TLS_CERT_FILE: certs.serverCert, TLS_KEY_FILE: certs.serverKey, TLS_CLIENT_CA_FILE: certs.caCert });
    assert.equal(config.tlsCertFile, certs.serverCert);
    assert.equal(config.tlsClientCaFile, certs.caCert);
  });

  it('TLS_CERT_FILE must hold a PEM certificate', () => {
    refused({ TLS_CERT_FILE: notPem, TLS_KEY_FILE: certs.serverKey }, 'TLS_CERT_FILE', /is invalid: a PEM certificate/);
    refused({ TLS_CERT_FILE: certs.serverKey, TLS_KEY_FILE: certs.serverKey }, 'TLS_CERT_FILE', /is invalid: a PEM certificate/);
  });

  it('TLS_KEY_FILE must hold a PEM private key', () => {
    refused({ TLS_CERT_FILE: certs.serverCert, TLS_KEY_FILE: notPem }, 'TLS_KEY_FILE', /is invalid: an unencrypted PEM private key/);
    refused({ TLS_CERT_FILE: certs.serverCert, TLS_KEY_FILE: certs.serverCert }, 'TLS_KEY_FILE', /is invalid: an unencrypted PEM private key/);
  });

  it('TLS_KEY_FILE must be the key of the certificate in TLS_CERT_FILE', () => {
    refused({ TLS_CERT_FILE: certs.serverCert, TLS_KEY_FILE: certs.clientKey }, 'TLS_KEY_FILE', /does not match/);
  });

  it('TLS_CLIENT_CA_FILE must hold a PEM certificate', () => {
    const env = { TLS_CERT_FILE: certs.serverCert, TLS_KEY_FILE: certs.serverKey, TLS_CLIENT_CA_FILE: notPem };
    refused(env, 'TLS_CLIENT_CA_FILE', /is invalid: a PEM certificate/);
  });
});

describe('listenError names the setting a failure to listen is down to', () => {
  const config = loadConfig({ HOST: '10.1.2.3', PORT: '7000', METRICS_PORT: '7001' });
  const cases: Array<[string, 'PORT' | 'METRICS_PORT', number, string, string]> = [
    ['listen EADDRINUSE: address already in use 10.1.2.3:7000', 'PORT', 7000, 'PORT', '7000'],
    ['listen EACCES: permission denied 10.1.2.3:7001', 'METRICS_PORT', 7001, 'METRICS_PORT', '7001'],
    ['listen EADDRNOTAVAIL: address not available 10.1.2.3:7000', 'PORT', 7000, 'HOST', '10.1.2.3'],
    ['getaddrinfo ENOTFOUND tickserve.invalid', 'METRICS_PORT', 7001, 'HOST', '10.1.2.3'],
    ['Name resolution failed for target dns:tickserve.invalid:7000', 'PORT', 7000, 'HOST', '10.1.2.3'],
  ];
  for (const [reason, portVariable, port, variable, value] of cases) {
    it(reason, () => {
      const error = listenError(config, portVariable, port, reason);
      assert.ok(error instanceof StartupError);
      assert.equal(error.variable, variable);
      assert.equal(error.message, `${variable}=${JSON.stringify(value)} cannot be used: ${reason}`);
    });
  }

  it('a StartupError is one line, whatever its cause says', () => {
    assert.equal(new StartupError('MODEL_PATH', 'm.onnx', 'failed:\n  ModelProto does not have a graph.\n').message,
      'MODEL_PATH="m.onnx" cannot be used: failed: ModelProto does not have a graph.');
  });
});
