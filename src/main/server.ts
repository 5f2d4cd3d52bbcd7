// Builds the serving stack for a config: the model registry (each loaded version with its own workers, slabs and
// batcher) and the gRPC server with ModelService, inference.GRPCInferenceService (KServe v2), grpc.health.v1.Health
// and server reflection, behind GRPC_RESTRICTED_PROTOCOL's interceptor when it is set. listen() listens;
// rescan() reloads the repository (SIGHUP, and every REPOSITORY_POLL_SECS in poll mode); close() drains and stops.
// Every load and unload, whoever asked, is written as an audit line (audit: true).
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { ReflectionService } from '@grpc/reflection';
import { HealthImplementation, protoPath as healthProtoPath } from 'grpc-health-check';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import type { Logger } from 'pino';
import type { Batcher } from '../batching/batcher';
import { LoadError, type ServingDefaults, type VersionSpec } from '../models/instance';
import { ModelRegistry, type DesiredModel, type Initiator, type VersionEvent } from '../models/registry';
import { modelNameProblem, modelProblem, noVersionReason, RepositoryWatcher, scanRepository } from '../models/repository';
import { decodePredictRequest } from './codec';
import { failedPrecondition, invalidArgument, notFound, ServingError } from './errors';
import { listenError, PACKAGE_ROOT, StartupError, type Config } from './config';
import type { HandlerContext, ServingCounters } from './handlers/context';
import { predictHandler } from './handlers/predict';
import { streamPredictHandler } from './handlers/stream-predict';
import type { Drainable } from './stream-session';
import { collectGarbage } from './gc';
import { addKserveService } from './kserve/service';
import { describeRestrictions, restrictedProtocolInterceptor } from './interceptors/restricted';
import { Telemetry } from './telemetry';

export const PROTO_PATH = path.join(PACKAGE_ROOT, 'proto', 'model_service.proto');
export const SERVICE_NAME = 'inference.ModelService';

/** Between the two scans that must agree before a version is loaded at startup and on SIGHUP (see repository.ts). */
const SETTLE_MS = 250;

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

function servingDefaults(config: Config): ServingDefaults {
  return {
    maxBatchSize: config.maxBatchSize,
    maxQueueDelayUs: config.maxQueueDelayUs,
    batchDelay: config.batchDelay,
    preferredBatchSizes: config.preferredBatchSizes,
    maxQueueSize: config.maxQueueSize,
    workers: config.workers,
    gpus: config.gpus,
    ortIntraOpThreads: config.ortIntraOpThreads,
    workerTimeoutMs: config.workerTimeoutMs,
    executionProvider: config.executionProvider,
    maxReceiveMessageBytes: config.maxReceiveMessageBytes,
    outputName: config.outputName,
  };
}

/** MODEL_PATH served as a repository of one model, one version. */
function singleModel(config: Config): DesiredModel[] {
  const spec: VersionSpec = {
    model: config.modelName,
    version: config.modelVersion,
    file: config.modelPath,
    config: null,
    configFile: null,
    fingerprint: config.modelPath,
    seedOnly: true,
  };
  return [{ name: config.modelName, versions: [spec], pending: [], problem: null }];
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

const STARTUP: Initiator = Object.freeze({ by: 'startup' });
const POLL: Initiator = Object.freeze({ by: 'poll' });
const SIGHUP: Initiator = Object.freeze({ by: 'SIGHUP' });

/** One load or unload as the audit log has it; `refused`: an RPC's request refused before any version was touched. */
interface AuditEntry {
  action: 'load' | 'unload';
  model: string;
  /** Empty for a refused request (no version was chosen). */
  version: string;
  outcome: 'success' | 'failure' | 'refused';
  reason: string;
  initiator: Initiator;
}

/**
 * Writes one audit line: JSON fields (audit: true, action, model, version, outcome, reason, initiator, and for an
 * RPC its method, peer and client_subject) and a message a person can read.
 */
function writeAudit(logger: Logger, entry: AuditEntry): void {
  const { initiator } = entry;
  const caller =
    initiator.by === 'rpc'
      ? { method: initiator.method, peer: initiator.peer, client_subject: initiator.subject }
      : {};
  const by = initiator.by === 'rpc' ? `${initiator.method} from ${initiator.peer}${initiator.subject === null ? '' : ` (${initiator.subject})`}` : initiator.by;
  const what = `${entry.action} ${entry.model}${entry.version === '' ? '' : ` version ${entry.version}`}`;
  const line = `audit: ${what} ${entry.outcome === 'success' ? 'succeeded' : entry.outcome === 'failure' ? 'failed' : 'refused'}${entry.reason === '' ? '' : `: ${entry.reason}`} (by ${by})`;
  const fields = { audit: true, action: entry.action, model: entry.model, version: entry.version, outcome: entry.outcome, reason: entry.reason, initiator: initiator.by, ...caller };
  if (entry.outcome === 'success') logger.info(fields, line);
  else logger.warn(fields, line);
}

/**
 * The cause of a failed bindAsync: grpc-js wraps the listen errors of every address it tried,
 * "No address added out of total 1 resolved errors: [listen EADDRINUSE: address already in use 0.0.0.0:50051]".
 */
function bindFailure(error: Error): string {
  return /resolved errors: \[(.+)\]$/.exec(error.message)?.[1] ?? error.message;
}

export interface ServerOptions {
  /** Worker entry for the pools; tests pass fixtures. */
  workerFilename?: string;
  /** How long a failed batch's slab waits for its worker to let go of it (slab.ts); tests shorten it. */
  claimReleaseWaitMs?: number;
}

export class InferenceServer {
  readonly grpcServer: grpc.Server;
  readonly health = new HealthImplementation({ '': 'NOT_SERVING', [SERVICE_NAME]: 'NOT_SERVING' });
  readonly models: ModelRegistry;
  private readonly sessions = new Set<Drainable>();
  readonly counters: ServingCounters = { predictCalls: 0, streamMessagesRead: 0 };
  private readonly watcher: RepositoryWatcher | null;
  private pollTimer: NodeJS.Timeout | null = null;
  private rescanning: Promise<void> | null = null;
  /** Who asked for a rescan while one ran (it runs again after); null when nobody did. */
  private rescanAgain: Initiator | null = null;
  /** Model names given a health status of their own so far (a removed model's turns NOT_SERVING). */
  private readonly healthNames = new Set<string>();
  private serving = false;
  private closing: Promise<void> | null = null;

  private constructor(
    readonly config: Config,
    private readonly logger: Logger,
    readonly telemetry: Telemetry,
    options: ServerOptions,
  ) {
    this.watcher = config.modelRepository === null ? null : new RepositoryWatcher(config.modelRepository);
    this.models = new ModelRegistry(
      servingDefaults(config),
      config.defaultModel,
      (model, version) => ({
        logger,
        observer: telemetry.observerFor(model, version),
        workerFilename: options.workerFilename,
        claimReleaseWaitMs: options.claimReleaseWaitMs,
      }),
      {
        loaded: (event) => {
          telemetry.modelLoaded(event.model, event.version, event.outcome, event.seconds);
          this.audit('load', event);
        },
        unloaded: (event) => {
          telemetry.modelUnloaded(event.model, event.version, event.stats);
          this.audit('unload', event);
          // The retired workers' native memory goes only with their handles (gc.ts); not while shutting down.
          if (this.closing === null) setImmediate(collectGarbage);
        },
        changed: () => this.updateHealth(),
      },
      logger,
    );
    telemetry.bind({ versions: () => this.versionInfo() });
    const context: HandlerContext = {
      models: this.models,
      requestTimeoutMs: config.requestTimeoutMs,
      logger,
      isDraining: () => this.closing !== null,
      counters: this.counters,
      telemetry,
    };
    const packageDefinition = protoLoader.loadSync([PROTO_PATH, healthProtoPath], PROTO_OPTIONS);
    // The first interceptor sees a call's headers first: a call the restricted protocol refuses ends there, before
    // any span, metric or handler (it has its own metric). Each only when needed: an interceptor costs every call a
    // layer of grpc-js; tracing's only while tracing (the handlers report their own metrics and failures).
    const restricted = restrictedProtocolInterceptor(config.restrictedProtocol, logger);
    this.grpcServer = new grpc.Server({
      'grpc.max_receive_message_length': config.maxReceiveMessageBytes,
      interceptors: [...(restricted === null ? [] : [restricted]), ...(telemetry.tracing ? [telemetry.interceptor] : [])],
    });
    this.grpcServer.addService(modelServiceDefinition(packageDefinition), {
      Predict: predictHandler(context),
      StreamPredict: streamPredictHandler(context, this.sessions),
      HealthCheck: (_call: unknown, callback: grpc.sendUnaryData<{ healthy: boolean; status: string }>) => {
        const healthy = this.serving && this.models.allReady;
        callback(null, { healthy, status: healthy ? 'SERVING' : 'NOT_SERVING' });
      },
    });
    const kserve = addKserveService(this.grpcServer, context, this.sessions, {
      ready: () => this.serving && this.closing === null && this.models.allReady,
      loadModel: (name, initiator) => this.loadModel(name, initiator),
      unloadModel: (name, initiator) => this.unloadModel(name, initiator),
      repositoryModels: () => this.repositoryModels(),
    });
    this.health.addToServer(this.grpcServer);
    new ReflectionService({ ...packageDefinition, ...kserve }).addToServer(this.grpcServer);
  }

  private *versionInfo() {
    for (const instance of this.models.instances()) {
      yield {
        name: instance.name,
        version: instance.version,
        inputWidth: instance.inputWidth,
        outputWidth: instance.outputWidth,
        executionProvider: instance.effective.executionProvider,
        workers: instance.effective.workers,
        queuedRows: () => instance.batcher.queuedRowCount,
        inFlightBatches: () => instance.batcher.inFlightBatches,
        stats: instance.stats,
      };
    }
  }

  /** The batcher of the default model's newest ready version (single-model servers and their tests). */
  get batcher(): Batcher {
    return this.models.resolve('', '').batcher;
  }

  /** Open StreamPredict calls, and their messages read but not yet answered. */
  streamStats(): { open: number; unanswered: number } {
    let unanswered = 0;
    for (const session of this.sessions) unanswered += session.unanswered;
    return { open: this.sessions.size, unanswered };
  }

  /**
   * Loads every model (MODEL_PATH, or the repository), starts their workers and warms them up; does not listen yet.
   * A model that cannot be loaded at startup is a ConfigError naming the variable that decides it.
   */
  static async create(
    config: Config,
    logger: Logger,
    telemetry: Telemetry,
    options: ServerOptions = {},
  ): Promise<InferenceServer> {
    const server = new InferenceServer(config, logger, telemetry, options);
    const restrictions = describeRestrictions(config.restrictedProtocol, config.modelControlMode);
    logger.info({ restrictedGroups: config.restrictedProtocol.flatMap((c) => c.groups) }, restrictions.info);
    if (restrictions.warning !== null) logger.warn(restrictions.warning);
    try {
      if (server.watcher === null) {
        await server.models.apply(singleModel(config), STARTUP);
      } else if (config.modelControlMode === 'explicit') {
        server.watcher.scan();
        await sleep(SETTLE_MS);
        const wanted = config.loadModels;
        const scanned = server.watcher.scan();
        const missing = (wanted ?? []).filter((name) => !scanned.some((m) => m.name === name));
        if (missing.length > 0) {
          throw new StartupError('LOAD_MODELS', wanted!.join(','), `not in the repository: ${missing.join(', ')}`);
        }
        const chosen = scanned.filter((m) => wanted === null || wanted.includes(m.name));
        await server.models.apply(chosen, STARTUP, 'models');
        server.refuseStartupFailures(chosen.map((m) => m.name));
      } else {
        server.watcher.scan();
        await sleep(SETTLE_MS);
        const scanned = server.watcher.scan();
        if (scanned.length === 0) server.noModelFolders(logger);
        await server.models.apply(scanned, STARTUP);
        server.refuseStartupFailures(scanned.map((m) => m.name));
      }
      if (server.watcher === null) server.refuseStartupFailures([]);
    } catch (error) {
      await server.models.close();
      throw error;
    }
    for (const instance of server.models.instances()) {
      if (!instance.signature.batches) {
        logger.info(
          { model: instance.name, version: instance.version },
          `model ${instance.name} version ${instance.version} does not batch (${instance.maxRowsLimit.replace(/^1, the most this model takes /, '')}): each request runs alone, batch_size at most 1`,
        );
      }
    }
    if (config.modelControlMode === 'poll' && server.watcher !== null) {
      server.pollTimer = setInterval(() => void server.rescan(POLL), config.repositoryPollSecs * 1000);
      server.pollTimer.unref();
    }
    return server;
  }

  /**
   * At startup nothing may fail to load: a StartupError (exit 2) naming what to change: MODEL_REPOSITORY and the
   * model, or in MODEL_PATH mode the variable that decides (MODEL_PATH, OUTPUT_NAME, MAX_BATCH_SIZE, ...).
   */
  private refuseStartupFailures(wanted: readonly string[]): void {
    const failed = this.models.index().find((s) => s.state === 'UNAVAILABLE');
    const broken = this.models.problems()[0];
    if (failed === undefined && broken === undefined) {
      // A model of the repository that has nothing to load (no version folder, its file misnamed, a version_policy
      // that keeps none) fails nothing, and would sit unready for good without a word.
      const ready = new Set(this.models.index().filter((s) => s.state === 'READY').map((s) => s.model));
      const idle = wanted.find((name) => !ready.has(name));
      if (idle !== undefined && this.config.modelRepository !== null) {
        const model = scanRepository(this.config.modelRepository).find((m) => m.name === idle);
        throw new StartupError('MODEL_REPOSITORY', this.config.modelRepository, `model "${idle}" has no version to serve: ${model === undefined ? 'its folder is gone' : noVersionReason(model)}`);
      }
      const fallback = this.config.defaultModel;
      if (fallback !== null && !this.models.modelNames().includes(fallback)) {
        const unloaded = this.config.modelControlMode === 'explicit' && this.repositoryModels().some((m) => m.name === fallback);
        throw new StartupError('DEFAULT_MODEL', fallback, unloaded
          ? 'a model of the repository that is not loaded at startup: name it in LOAD_MODELS too'
          : `not a model of the repository (${this.models.modelNames().join(', ') || 'none'})`);
      }
      return;
    }
    if (this.config.modelRepository !== null) {
      const reason = failed === undefined
        ? broken
        : failed.version === ''
          ? `model "${failed.model}": ${failed.reason}`
          : `model "${failed.model}" version ${failed.version} failed to load: ${failed.reason}`;
      throw new StartupError('MODEL_REPOSITORY', this.config.modelRepository, reason);
    }
    const error = this.models.failure(failed!.model, failed!.version);
    const variable = error instanceof LoadError && error.variable !== null ? error.variable : 'MODEL_PATH';
    const values: Record<string, string> = {
      MODEL_PATH: this.config.modelPath,
      EXECUTION_PROVIDER: this.config.executionProvider,
      OUTPUT_NAME: this.config.outputName ?? '',
      MAX_RECEIVE_MESSAGE_BYTES: String(this.config.maxReceiveMessageBytes),
      MAX_BATCH_SIZE: String(this.config.maxBatchSize),
      WORKERS: String(this.config.workers),
    };
    throw new StartupError(variable, values[variable] ?? '', failed!.reason);
  }

  /** The registry's report of one version's load or unload, as an audit line. */
  private audit(action: 'load' | 'unload', event: VersionEvent): void {
    writeAudit(this.logger, { action, model: event.model, version: event.version, outcome: event.outcome, reason: event.reason, initiator: event.initiator });
  }

  /**
   * The checks every repository RPC passes before it touches a model: explicit mode (as Triton), a repository, and
   * a name that is a model folder's (no path separator, no ".."). A refusal is audited and thrown.
   */
  private checkModelControl(action: 'load' | 'unload', name: string, initiator: Initiator): void {
    let refusal: ServingError | null = null;
    const mode = this.config.modelControlMode;
    if (mode !== 'explicit') {
      const repository = this.config.modelRepository === null ? ' and a MODEL_REPOSITORY' : '';
      refusal = failedPrecondition(`model control is disabled: MODEL_CONTROL_MODE is ${mode}; load and unload need MODEL_CONTROL_MODE=explicit${repository}`);
    } else if (this.watcher === null) {
      refusal = failedPrecondition('no MODEL_REPOSITORY: this server serves one fixed model (MODEL_PATH)');
    } else if (name === '') {
      refusal = invalidArgument('model_name is empty');
    } else {
      const problem = modelNameProblem(name);
      if (problem !== null) refusal = invalidArgument(problem);
    }
    if (refusal !== null) this.refuse(action, name, refusal, initiator);
  }

  private refuse(action: 'load' | 'unload', name: string, refusal: ServingError, initiator: Initiator): never {
    writeAudit(this.logger, { action, model: name, version: '', outcome: 'refused', reason: refusal.message, initiator });
    throw refusal;
  }

  /**
   * Explicit mode's RepositoryModelLoad: reads the model's folder (two scans that must agree, as for every load)
   * and loads or reloads it, swapping in new versions with nothing lost. Resolves once it is ready; rejects with a
   * ServingError saying why when it is not in the repository or no version of it could be loaded. Each version's
   * load is audited by the registry's report; a request refused before any load, here.
   */
  async loadModel(name: string, initiator: Initiator): Promise<void> {
    this.checkModelControl('load', name, initiator);
    const watcher = this.watcher!;
    watcher.scan();
    await sleep(SETTLE_MS);
    const model = watcher.scan().find((m) => m.name === name);
    if (model === undefined) this.refuse('load', name, notFound(`model "${name}" is not in the repository`), initiator);
    if (model.problem !== null) this.refuse('load', name, invalidArgument(`model "${name}" cannot be loaded: ${model.problem}`), initiator);
    if (model.versions.length === 0) {
      const scanned = scanRepository(watcher.root).find((m) => m.name === name);
      const why = scanned === undefined ? 'its folder is gone' : noVersionReason(scanned);
      this.refuse('load', name, invalidArgument(`model "${name}" has no version to load: ${why}`), initiator);
    }
    await this.models.apply([model], initiator, 'models');
    // A version that failed leaves what served in place, but the caller asked for it: say so.
    const wanted = new Set(model.versions.map((v) => v.version));
    const failed = this.models.index().filter((s) => s.model === name && s.state === 'UNAVAILABLE' && wanted.has(s.version));
    if (failed.length > 0 || !this.models.isReady(name)) {
      const reasons = failed.map((s) => `version ${s.version}: ${s.reason}`);
      throw invalidArgument(`model "${name}" failed to load: ${reasons.join('; ') || 'no version is ready'}`);
    }
  }

  /**
   * Explicit mode's RepositoryModelUnload: every version stops taking requests, answers what it took, closes. Each
   * version's unload is audited by the registry's report; a request refused before any unload, here.
   */
  async unloadModel(name: string, initiator: Initiator): Promise<void> {
    this.checkModelControl('unload', name, initiator);
    try {
      await this.models.unloadModel(name, initiator);
    } catch (error) {
      if (error instanceof ServingError) this.refuse('unload', name, error, initiator);
      throw error;
    }
  }

  /**
   * A repository with no model folder serves nothing. With MODEL_CONTROL_MODE=none that is for good: exit 2. In poll
   * mode models may be dropped in later: a warning. Either way the line says what the layout is, and points at model
   * files left loose at the top, the usual mistake.
   */
  private noModelFolders(logger: Logger): void {
    const root = this.config.modelRepository!;
    const loose = readdirSync(root).filter((name) => name.endsWith('.onnx'));
    const why =
      `no model folder in it (each model is a folder holding numbered version folders: <model>/1/model.onnx)` +
      (loose.length > 0 ? `; model files at its top are not read (${loose.slice(0, 3).join(', ')}${loose.length > 3 ? ', ...' : ''}): serve one with MODEL_PATH, or move it to <model>/1/model.onnx` : '');
    if (this.config.modelControlMode === 'none') throw new StartupError('MODEL_REPOSITORY', root, why);
    logger.warn(`MODEL_REPOSITORY ${root}: ${why}; polling for models`);
  }

  /** Every model folder of the repository by name (for RepositoryIndex, loaded or not); empty without one. */
  repositoryModels(): Array<{ name: string; reason: string }> {
    if (this.watcher === null) return [];
    // What keeps a model that is not loaded from loading: in explicit mode, that nobody asked (or its problem, if it
    // has one); in the other modes, which load everything they can, why it has nothing to load.
    const explicit = this.config.modelControlMode === 'explicit';
    return scanRepository(this.watcher.root).map((m) => ({ name: m.name, reason: explicit ? modelProblem(m) ?? 'unloaded' : noVersionReason(m) }));
  }

  /**
   * Reads the repository again and brings what is loaded to it (SIGHUP; poll mode's timer, without the settle wait
   * since its consecutive polls are the two scans). Failed loads are logged, counted and shown in the models' state;
   * what serves keeps serving. Rescans do not overlap; a rescan asked for during one is reported as its asker's.
   */
  rescan(initiator: Initiator = SIGHUP): Promise<void> {
    const settle = initiator.by !== 'poll';
    const watcher = this.watcher;
    // Explicit mode: only the repository RPCs load and unload.
    if (watcher === null || this.closing !== null || this.config.modelControlMode === 'explicit') return Promise.resolve();
    // A rescan asked for while one runs may be about a change that one has already read past: run once more after.
    if (this.rescanning !== null) {
      this.rescanAgain = initiator;
      return this.rescanning;
    }
    this.rescanning = (async () => {
      let asker: Initiator | null = initiator;
      do {
        this.rescanAgain = null;
        try {
          if (settle) {
            watcher.scan();
            await sleep(SETTLE_MS);
          }
          await this.models.apply(watcher.scan(), asker);
        } catch (error) {
          this.logger.error({ err: error }, 'repository rescan failed');
        }
        asker = this.rescanAgain;
      } while (asker !== null && this.closing === null);
      this.rescanning = null;
    })();
    return this.rescanning;
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
    this.updateHealth();
  }

  /**
   * "" and inference.ModelService: SERVING while listening and every model that should be loaded has a ready
   * version. Each model's own name: SERVING while it has a ready version.
   */
  private updateHealth(): void {
    const status = this.serving && this.models.allReady ? 'SERVING' : 'NOT_SERVING';
    this.health.setStatus('', status);
    this.health.setStatus(SERVICE_NAME, status);
    for (const name of this.models.modelNames()) this.healthNames.add(name);
    for (const name of this.healthNames) {
      this.health.setStatus(name, this.serving && this.models.isReady(name) ? 'SERVING' : 'NOT_SERVING');
    }
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
    if (this.pollTimer !== null) clearInterval(this.pollTimer);
    this.setServing(false);
    const stopped = new Promise<void>((resolve) => this.grpcServer.tryShutdown(() => resolve()));
    for (const session of this.sessions) session.drain();
    let timer: NodeJS.Timeout | undefined;
    const grace = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), graceMs);
    });
    const outcome = await Promise.race([Promise.all([stopped, this.models.close()]), grace]);
    clearTimeout(timer);
    if (outcome === 'timeout') {
      let queuedRows = 0;
      for (const instance of this.models.instances()) queuedRows += instance.batcher.queuedRowCount;
      this.logger.warn({ graceMs, queuedRows }, 'grace period over; cutting calls off');
      this.grpcServer.forceShutdown();
      await this.models.forceClose();
    }
    await this.telemetry.shutdown();
  }
}
