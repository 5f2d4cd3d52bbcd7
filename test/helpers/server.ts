// A real tickserve on 127.0.0.1:0 and a real grpc-js client built from the proto with the generic codec, so that
// every test also checks wire compatibility with ordinary clients.
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import net from 'node:net';
import path from 'node:path';
import pino from 'pino';
import type { WireReply as PredictReply } from '../../src/client';
import { loadConfig, type Config } from '../../src/main/config';
import { InferenceServer, PROTO_PATH, type ServerOptions } from '../../src/main/server';
import { Telemetry } from '../../src/main/telemetry';

/** The test-only worker entry that injects faults (fixtures/faults.ts). */
export const FAULT_WORKER = path.join(__dirname, '..', 'fixtures', 'fault-worker.js');

export type { WireReply as PredictReply } from '../../src/client';

/** A TCP port on 127.0.0.1 that nothing listens on now, for a server process started with it. */
export async function freePort(): Promise<number> {
  const server = net.createServer().listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as net.AddressInfo;
  server.close();
  await once(server, 'close');
  return port;
}

/** Asserts that `promise` rejects with gRPC status `code` and details matching `message`. */
export function expectStatus(promise: Promise<unknown>, code: grpc.status, message: RegExp): Promise<void> {
  return assert.rejects(promise, (error: grpc.ServiceError) => {
    assert.equal(error.code, code, `status ${grpc.status[error.code]}: ${error.details}`);
    assert.match(error.details, message);
    return true;
  });
}

export interface ModelServiceClient extends grpc.Client {
  Predict(
    request: object,
    metadata: grpc.Metadata,
    options: grpc.CallOptions,
    callback: (error: grpc.ServiceError | null, reply?: PredictReply) => void,
  ): grpc.ClientUnaryCall;
  StreamPredict(options?: grpc.CallOptions): grpc.ClientDuplexStream<object, PredictReply>;
  StreamPredict(metadata: grpc.Metadata, options?: grpc.CallOptions): grpc.ClientDuplexStream<object, PredictReply>;
  HealthCheck(request: object, callback: (error: grpc.ServiceError | null, reply?: { healthy: boolean; status: string }) => void): void;
}

const definition = protoLoader.loadSync(PROTO_PATH, { keepCase: true, arrays: true, defaults: true, longs: Number });
const ModelService = (grpc.loadPackageDefinition(definition).inference as grpc.GrpcObject)
  .ModelService as grpc.ServiceClientConstructor;

export function testConfig(env: Record<string, string> = {}): Config {
  return loadConfig({ HOST: '127.0.0.1', PORT: '0', WORKERS: '1', LOG_LEVEL: 'silent', METRICS_PORT: '0', ...env });
}

export interface TestServer {
  server: InferenceServer;
  address: string;
  client: ModelServiceClient;
  close(): Promise<void>;
}

export function modelClient(address: string, credentials = grpc.credentials.createInsecure(), options: grpc.ClientOptions = {}) {
  return new ModelService(address, credentials, options) as unknown as ModelServiceClient;
}

export async function startServer(env: Record<string, string> = {}, options: ServerOptions = {}): Promise<TestServer> {
  const config = testConfig(env);
  const logger = pino({ level: 'silent' });
  const server = await InferenceServer.create(config, logger, new Telemetry(config, logger), options);
  const port = await server.listen();
  const address = `127.0.0.1:${port}`;
  const client = modelClient(address);
  return {
    server,
    address,
    client,
    async close() {
      client.close();
      await server.close(2000);
    },
  };
}

export interface UnaryResult {
  reply: PredictReply;
  trailers: Record<string, string>;
}

/** Predict, resolving with the reply and trailers, or rejecting with the ServiceError. */
export function predict(client: ModelServiceClient, request: object, options: grpc.CallOptions = {}): Promise<UnaryResult> {
  return new Promise((resolve, reject) => {
    let reply: PredictReply | undefined;
    const call = client.Predict(request, new grpc.Metadata(), options, (error, value) => {
      if (error) reject(error);
      else reply = value;
    });
    call.on('status', (status: grpc.StatusObject) => {
      if (status.code !== grpc.status.OK || reply === undefined) return;
      resolve({ reply, trailers: status.metadata.getMap() as Record<string, string> });
    });
  });
}

export function assertClose(actual: ArrayLike<number>, expected: ArrayLike<number>, message = ''): void {
  if (actual.length !== expected.length) {
    throw new Error(`${message} length ${actual.length} != ${expected.length}`);
  }
  for (let i = 0; i < actual.length; i++) {
    if (Math.abs(actual[i] - expected[i]) > 1e-5) {
      throw new Error(`${message} [${i}]: ${actual[i]} != ${expected[i]}`);
    }
  }
}

/** Streams `requests` through one StreamPredict call, honouring write() backpressure, and collects the answers. */
export function streamAll(client: ModelServiceClient, requests: object[]): Promise<PredictReply[]> {
  return new Promise((resolve, reject) => {
    const replies: PredictReply[] = [];
    const call = client.StreamPredict();
    call.on('data', (reply: PredictReply) => replies.push(reply));
    call.on('error', reject);
    call.on('end', () => resolve(replies));
    let i = 0;
    const write = () => {
      while (i < requests.length) {
        if (!call.write(requests[i++])) {
          call.once('drain', write);
          return;
        }
      }
      call.end();
    };
    write();
  });
}
