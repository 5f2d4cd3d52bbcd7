// Starting the server as a user does: `node dist/src/main/index.js` with environment variables. Every failure to
// start exits 2 with one line on stderr that names the variable and its value, and no stack; once started, only
// the endpoints the configuration asks for listen, and OpenTelemetry names the service.
import assert from 'node:assert/strict';
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { makeCerts, type TestCerts } from './helpers/certs';
import { featuresFor } from './helpers/models';
import { OtlpReceiver } from './helpers/otlp-receiver';
import { freePort, modelClient, predict } from './helpers/server';

const ENTRY = path.join(__dirname, '..', 'src', 'main', 'index.js');

/** No fixed port: gRPC on any free port, and no metrics endpoint unless a test picks its port. */
const BASE_ENV = { PATH: process.env.PATH ?? '', HOST: '127.0.0.1', PORT: '0', METRICS_PORT: '0', WORKERS: '1', LOG_LEVEL: 'warn' };

function spawnServer(env: Record<string, string>): ChildProcessWithoutNullStreams {
  return spawn(process.execPath, [ENTRY], { env: { ...BASE_ENV, ...env } });
}

/** Runs the server to its exit; one that is still running after `limitMs` (it started after all) is killed. */
async function exitOf(env: Record<string, string>, limitMs = 20_000): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawnServer(env);
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk) => (stdout += chunk));
  child.stderr.on('data', (chunk) => (stderr += chunk));
  const limit = setTimeout(() => child.kill('SIGKILL'), limitMs);
  const [code] = await once(child, 'exit');
  clearTimeout(limit);
  return { code, stdout, stderr };
}

async function listening(port = 0): Promise<net.Server> {
  const server = net.createServer();
  server.listen(port, '127.0.0.1');
  await once(server, 'listening');
  return server;
}

interface Started {
  grpcPort: number;
  stop(): Promise<void>;
}

/** Starts the server and resolves once it prints its startup line, which names the port it listens on. */
async function startServer(env: Record<string, string>): Promise<Started> {
  const child = spawnServer({ LOG_LEVEL: 'info', ...env });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk) => (stdout += chunk));
  child.stderr.on('data', (chunk) => (stderr += chunk));
  while (!/"port":\d+/.test(stdout)) {
    if (child.exitCode !== null) throw new Error(`server exited ${child.exitCode}: ${stderr}`);
    await Promise.race([once(child.stdout, 'data'), once(child, 'exit')]);
  }
  return {
    grpcPort: Number(/"port":(\d+)/.exec(stdout)![1]),
    async stop() {
      if (child.exitCode !== null) return;
      child.kill('SIGTERM');
      await once(child, 'exit');
    },
  };
}

interface Fixtures {
  busyPort: number;
  certs: TestCerts;
  notPem: string;
  notOnnx: string;
  empty: string;
}

interface Failure {
  env: Record<string, string>;
  variable: string;
  value: string;
  cause: RegExp;
}

const failures: Array<[string, (f: Fixtures) => Failure]> = [
  ['the gRPC port is in use', (f) => ({ env: { PORT: String(f.busyPort) }, variable: 'PORT', value: String(f.busyPort), cause: /EADDRINUSE/ })],
  ['the metrics port is in use', (f) => ({ env: { METRICS_PORT: String(f.busyPort) }, variable: 'METRICS_PORT', value: String(f.busyPort), cause: /EADDRINUSE/ })],
  ['HOST is not an IPv4 address', () => ({ env: { HOST: '256.1.1.1' }, variable: 'HOST', value: '256.1.1.1', cause: /IPv4/ })],
  // 192.0.2.0/24 is reserved for documentation (RFC 5737): no machine has it.
  ['HOST is not an address of this machine', () => ({ env: { HOST: '192.0.2.1' }, variable: 'HOST', value: '192.0.2.1', cause: /EADDRNOTAVAIL/ })],
  ['TLS_CERT_FILE is not PEM', (f) => ({
    env: { TLS_CERT_FILE: f.notPem, TLS_KEY_FILE: f.certs.serverKey }, variable: 'TLS_CERT_FILE', value: f.notPem, cause: /PEM certificate/,
  })],
  ['TLS_KEY_FILE is not PEM', (f) => ({
    env: { TLS_CERT_FILE: f.certs.serverCert, TLS_KEY_FILE: f.notPem }, variable: 'TLS_KEY_FILE', value: f.notPem, cause: /PEM private key/,
  })],
  ['TLS_KEY_FILE is not the key of TLS_CERT_FILE', (f) => ({
    env: { TLS_CERT_FILE: f.certs.serverCert, TLS_KEY_FILE: f.certs.clientKey }, variable: 'TLS_KEY_FILE', value: f.certs.clientKey, cause: /does not match/,
  })],
  ['TLS_CLIENT_CA_FILE is not PEM', (f) => ({
    env: { TLS_CERT_FILE: f.certs.serverCert, TLS_KEY_FILE: f.certs.serverKey, TLS_CLIENT_CA_FILE: f.notPem },
    variable: 'TLS_CLIENT_CA_FILE', value: f.notPem, cause: /PEM certificate/,
  })],
  ['MODEL_PATH does not exist', (f) => ({
    env: { MODEL_PATH: path.join(path.dirname(f.empty), 'missing.onnx') },
    variable: 'MODEL_PATH', value: path.join(path.dirname(f.empty), 'missing.onnx'), cause: /no file/,
  })],
  ['MODEL_PATH is not ONNX', (f) => ({ env: { MODEL_PATH: f.notOnnx }, variable: 'MODEL_PATH', value: f.notOnnx, cause: /Protobuf parsing failed/ })],
  ['MODEL_PATH is empty', (f) => ({ env: { MODEL_PATH: f.empty }, variable: 'MODEL_PATH', value: f.empty, cause: /is empty/ })],
];

describe('every failure to start exits 2 with one line naming the variable and its value', () => {
  let fixtures: Fixtures;
  let occupied: net.Server;
  before(async () => {
    occupied = await listening();
    const dir = mkdtempSync(path.join(tmpdir(), 'tickserve-startup-'));
    const file = (name: string, content: string) => {
      writeFileSync(path.join(dir, name), content);
      return path.join(dir, name);
    };
    fixtures = {
      busyPort: (occupied.address() as net.AddressInfo).port,
      certs: makeCerts(),
      notPem: file('not.pem', 'not a certificate, not a key\n'),
      notOnnx: file('not.onnx', 'not an ONNX model\n'),
      empty: file('empty.onnx', ''),
    };
  });
  after(() => occupied.close());

  for (const [title, failure] of failures) {
    it(title, async () => {
      const { env, variable, value, cause } = failure(fixtures);
      const { code, stdout, stderr } = await exitOf(env);
      assert.equal(code, 2, stderr);
      const lines = stderr.split('\n').filter((line) => line !== '');
      assert.equal(lines.length, 1, stderr);
      assert.ok(lines[0].startsWith(`tickserve: ${variable}=${JSON.stringify(value)} `), lines[0]);
      assert.match(lines[0], cause);
      assert.doesNotMatch(stderr + stdout, /^\s+at /m, 'a stack trace');
      assert.doesNotMatch(stdout, /"level":60/, 'a fatal log line');
    });
  }
});

describe('npm start, as the README runs it', () => {
  it('SIGTERM to npm stops the server itself (no orphaned node left serving), and npm exits 0', async () => {
    // --ignore-scripts skips prestart's build (the tests run on a built tree); start itself still runs.
    // A process group of its own, so that whatever npm started can be cleaned up whatever happens.
    const npm = spawn('npm', ['start', '--silent', '--ignore-scripts'], { cwd: path.join(__dirname, '..', '..'), env: { ...BASE_ENV, LOG_LEVEL: 'info' }, detached: true });
    let stdout = '';
    npm.stdout.on('data', (chunk) => (stdout += chunk));
    while (!/"port":\d+/.test(stdout)) {
      if (npm.exitCode !== null) throw new Error(`npm start exited ${npm.exitCode}`);
      await Promise.race([once(npm.stdout, 'data'), once(npm, 'exit')]);
    }
    const port = Number(/"port":(\d+)/.exec(stdout)![1]);
    try {
      npm.kill('SIGTERM');
      const [code] = await once(npm, 'exit');
      assert.equal(code, 0, 'npm start did not exit 0 on SIGTERM');
      const socket = net.connect(port, '127.0.0.1');
      const outcome = await new Promise<string>((resolve) => {
        socket.once('connect', () => resolve('connected'));
        socket.once('error', (error: NodeJS.ErrnoException) => resolve(error.code ?? error.message));
      });
      socket.destroy();
      assert.equal(outcome, 'ECONNREFUSED', 'the server still listens after npm start was stopped');
    } finally {
      try {
        process.kill(-npm.pid!, 'SIGKILL'); // an orphaned server, if this test failed
      } catch {
        // nothing left, as it should be
      }
    }
  });
});

describe('once started', () => {
  it('OTEL_SDK_DISABLED=true: nothing listens on METRICS_PORT', async () => {
    const metricsPort = await freePort();
    const server = await startServer({ OTEL_SDK_DISABLED: 'true', METRICS_PORT: String(metricsPort) });
    try {
      const socket = net.connect(metricsPort, '127.0.0.1');
      const [error] = (await once(socket, 'error').catch((e: unknown) => [e])) as [NodeJS.ErrnoException];
      assert.equal(error.code, 'ECONNREFUSED');
    } finally {
      await server.stop();
    }
  });

  it('service.name is "tickserve" by default, in target_info and in the spans\' resource', async () => {
    const receiver = new OtlpReceiver();
    await receiver.start();
    const metricsPort = await freePort();
    const server = await startServer({
      METRICS_PORT: String(metricsPort),
      OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${receiver.httpPort}`,
      OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json',
      OTEL_BSP_SCHEDULE_DELAY: '50',
    });
    const client = modelClient(`127.0.0.1:${server.grpcPort}`);
    try {
      await predict(client, { features: featuresFor(0, 1, 17) });
      const spans = await receiver.waitFor((all) => all.some((s) => s.name === 'inference.ModelService/Predict'));
      assert.equal(spans.find((s) => s.name === 'inference.ModelService/Predict')!.serviceName, 'tickserve');
      const metrics = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
      assert.match(metrics, /^target_info\{[^}]*service_name="tickserve"/m);
    } finally {
      client.close();
      await server.stop();
      await receiver.stop();
    }
  });

  it('OTEL_SERVICE_NAME names the service in target_info', async () => {
    const metricsPort = await freePort();
    const server = await startServer({ METRICS_PORT: String(metricsPort), OTEL_SERVICE_NAME: 'rates-desk' });
    try {
      const metrics = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
      assert.match(metrics, /^target_info\{[^}]*service_name="rates-desk"/m);
    } finally {
      await server.stop();
    }
  });
});
