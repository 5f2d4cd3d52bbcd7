// Builds the serving stack for a config: model inspection -> slabs -> worker pool -> batcher -> gRPC server with
// ModelService, grpc.health.v1.Health and server reflection. start() listens; close() drains and stops.
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { ReflectionService } from '@grpc/reflection';
import { HealthImplementation, protoPath as healthProtoPath } from 'grpc-health-check';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { Logger } from 'pino';
import { Batcher } from '../batching/batcher';
import { createClaims, createSlab, type SlabLayout } from '../batching/slab';
import { inspectModel, type ModelInfo } from '../workers/model-info';
import { WorkerPool } from '../workers/pool';
import type { ServedModel } from './admission';
import { decodePredictRequest, encodeVersionField } from './codec';
import { listenError, PACKAGE_ROOT, type Config } from './config';
import type { HandlerContext, ServingCounters } from './handlers/context';
import { predictHandler } from './handlers/predict';
import { streamPredictHandler, type StreamSession } from './handlers/stream-predict';
import { Telemetry } from './telemetry';

export const PROTO_PATH = path.join(PACKAGE_ROOT, 'proto', 'model_service.proto');
export const SERVICE_NAME = 'inference.ModelService';

/** Batches that may be in flight at once, per worker: one computing, one assembled and waiting to start. */
const SLABS_PER_WORKER = 2;

const PROTO_OPTIONS: protoLoader.Options = { keepCase: true, longs: Number, enums: String, defaults: true, arrays: true };

function modelServiceDefinition(packageDefinition: protoLoader.PackageDefinition): grpc.ServiceDefinition {
  const generic = packageDefinition[SERVICE_NAME] as grpc.ServiceDefinition;
  // Predict and StreamPredict use the purpose-built codec (codec.ts): handlers answer with encoded bytes, so the
  // response serializer passes them through. HealthCheck keeps the generic codec.
  const codec = {
    requestDeserialize: decodePredictRequest,
    responseSerialize: (encoded: Buffer) => encoded,
  };
  return {
    ...generic,
    Predict: { ...generic.Predict, ...codec },
    StreamPredict: { ...generic.StreamPredict, ...codec },
  };
}

/** Plaintext, TLS (TLS_CERT_FILE + TLS_KEY_FILE), or mTLS (plus TLS_CLIENT_CA_FILE). */
function serverCredentials(config: Config): grpc.ServerCredentials {
  if (config.tlsCertFile === null || config.tlsKeyFile === null) return grpc.ServerCredentials.createInsecure();
  const keyPair = { cert_chain: readFileSync(config.tlsCertFile), private_key: readFileSync(config.tlsKeyFile) };
  const clientCa = config.tlsClientCaFile === null ? null : readFileSync(config.tlsClientCaFile);
  return grpc.ServerCredentials.createSsl(clientCa, [keyPair], clientCa !== null);
}

/**
 * The cause of a failed bindAsync: grpc-js wraps the listen errors of every address it tried,
 * "No address added out of total 1 resolved errors: [listen EADDRINUSE: address already in use 0.0.0.0:50051]".
 */
function bindFailure(error: Error): string {
  return /resolved errors: \[(.+)\]$/.exec(error.message)?.[1] ?? error.message;
}

export interface ServerOptions {
  /** Worker entry for the pool; tests pass fixtures. */
  workerFilename?: string;
}

export class InferenceServer {
  readonly grpcServer: grpc.Server;
  readonly health = new HealthImplementation({ '': 'NOT_SERVING', [SERVICE_NAME]: 'NOT_SERVING' });
  readonly batcher: Batcher;
  private readonly sessions = new Set<StreamSession>();
  readonly counters: ServingCounters = { predictCalls: 0, streamMessagesRead: 0 };
  private serving = false;
  private closing: Promise<void> | null = null;

  private constructor(
    readonly config: Config,
    readonly model: ModelInfo,
    private readonly pool: WorkerPool,
    private readonly logger: Logger,
    readonly telemetry: Telemetry,
    layout: SlabLayout,
    slabs: SharedArrayBuffer[],
  ) {
    this.batcher = new Batcher({
      maxBatchRows: config.maxBatchSize,
      maxQueueDelayUs: config.maxQueueDelayUs,
      preferredBatchSizes: config.preferredBatchSizes,
      maxQueueRows: config.maxQueueSize,
      layout,
      slabs,
      executor: pool,
      observer: telemetry,
    });
    telemetry.bind({
      queuedRows: () => this.batcher.queuedRowCount,
      inFlightBatches: () => this.batcher.inFlightBatches,
      model: {
        name: config.modelName,
        version: config.modelVersion,
        inputWidth: model.inputWidth,
        outputWidth: model.outputWidth,
        executionProvider: config.executionProvider,
        workers: config.workers,
      },
    });
    const served: ServedModel = {
      name: config.modelName,
      version: config.modelVersion,
      versionField: encodeVersionField(config.modelVersion),
      inputWidth: model.inputWidth,
      outputWidth: model.outputWidth,
      maxRows: config.maxBatchSize,
    };
    const context: HandlerContext = {
      batcher: this.batcher,
      model: served,
      requestTimeoutMs: config.requestTimeoutMs,
      logger,
      isDraining: () => this.closing !== null,
      counters: this.counters,
      telemetry,
    };
    const packageDefinition = protoLoader.loadSync([PROTO_PATH, healthProtoPath], PROTO_OPTIONS);
    this.grpcServer = new grpc.Server({
      'grpc.max_receive_message_length': config.maxReceiveMessageBytes,
      // Only while tracing: an interceptor costs every call a layer of grpc-js, and the handlers report their own
      // metrics and failures.
      interceptors: telemetry.tracing ? [telemetry.interceptor] : [],
    });
    this.grpcServer.addService(modelServiceDefinition(packageDefinition), {
      Predict: predictHandler(context),
      StreamPredict: streamPredictHandler(context, this.sessions),
      HealthCheck: (_call: unknown, callback: grpc.sendUnaryData<{ healthy: boolean; status: string }>) => {
        callback(null, { healthy: this.serving, status: this.serving ? 'SERVING' : 'NOT_SERVING' });
      },
    });
    this.health.addToServer(this.grpcServer);
    new ReflectionService(packageDefinition).addToServer(this.grpcServer);
  }

  /** Open StreamPredict calls, and their messages read but not yet answered. */
  streamStats(): { open: number; unanswered: number } {
    let unanswered = 0;
    for (const session of this.sessions) unanswered += session.unanswered;
    return { open: this.sessions.size, unanswered };
  }

  /** Loads the model, starts the workers and warms them up; does not listen yet. */
  static async create(
    config: Config,
    logger: Logger,
    telemetry: Telemetry,
    options: ServerOptions = {},
  ): Promise<InferenceServer> {
    const model = await inspectModel(config.modelPath, config.executionProvider);
    const layout: SlabLayout = {
      maxBatchRows: config.maxBatchSize,
      inputWidth: model.inputWidth,
      outputWidth: model.outputWidth,
    };
    const slabs = Array.from({ length: config.workers * SLABS_PER_WORKER }, () => createSlab(layout));
    const pool = new WorkerPool({
      workers: config.workers,
      taskTimeoutMs: config.workerTimeoutMs,
      filename: options.workerFilename,
      init: {
        modelPath: config.modelPath,
        inputName: model.inputName,
        outputName: model.outputName,
        inputDims: model.inputDims,
        layout,
        slabs,
        claims: createClaims(slabs.length),
        intraOpThreads: config.ortIntraOpThreads,
        executionProvider: config.executionProvider,
        workerIds: new SharedArrayBuffer(4),
      },
    });
    try {
      // One one-row batch per slab, all at once: every worker loads its session before the server says SERVING.
      const warmups = await Promise.all(slabs.map((_, slab) => pool.run(slab, 1)));
      const failed = warmups.find((done) => done.error !== undefined);
      if (failed) throw new Error(`model ${config.modelPath} fails on a batch of one row: ${failed.error}`);
    } catch (error) {
      await pool.close();
      throw error;
    }
    return new InferenceServer(config, model, pool, logger, telemetry, layout, slabs);
  }

  /**
   * Listens on HOST:PORT (port 0: any free port) and reports SERVING; returns the bound port. Rejects with a
   * StartupError naming HOST or PORT when it cannot listen.
   */
  async listen(): Promise<number> {
    const address = `${this.config.host.includes(':') ? `[${this.config.host}]` : this.config.host}:${this.config.port}`;
    const port = await new Promise<number>((resolve, reject) => {
      this.grpcServer.bindAsync(address, serverCredentials(this.config), (error, bound) =>
        error ? reject(listenError(this.config, 'PORT', this.config.port, bindFailure(error))) : resolve(bound),
      );
    });
    this.setServing(true);
    return port;
  }

  private setServing(serving: boolean): void {
    this.serving = serving;
    const status = serving ? 'SERVING' : 'NOT_SERVING';
    this.health.setStatus('', status);
    this.health.setStatus(SERVICE_NAME, status);
  }

  /**
   * Graceful stop: health NOT_SERVING at once, no new calls, every accepted request answered, streams ended
   * with OK, workers closed. After graceMs whatever is left is cut off.
   */
  close(graceMs = this.config.shutdownGraceMs): Promise<void> {
    this.closing ??= this.shutdown(graceMs);
    return this.closing;
  }

  private async shutdown(graceMs: number): Promise<void> {
    this.setServing(false);
    const stopped = new Promise<void>((resolve) => this.grpcServer.tryShutdown(() => resolve()));
    for (const session of this.sessions) session.drain();
    let timer: NodeJS.Timeout | undefined;
    const grace = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), graceMs);
    });
    const outcome = await Promise.race([Promise.all([stopped, this.batcher.drain()]), grace]);
    clearTimeout(timer);
    if (outcome === 'timeout') {
      this.logger.warn({ graceMs, queuedRows: this.batcher.queuedRowCount }, 'grace period over; cutting calls off');
      this.grpcServer.forceShutdown();
    }
    await this.pool.close();
    await this.telemetry.shutdown();
  }
}
