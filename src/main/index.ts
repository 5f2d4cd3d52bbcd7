// Entry point: config -> telemetry -> server -> listen; SIGTERM/SIGINT -> graceful drain -> exit 0.
//
// Every failure to start is a ConfigError (a value that is wrong on its face) or a StartupError (a value that
// turned out unusable: a port in use, a model that does not load); both name the variable and its value, and end
// the process in one place, with one line on stderr and exit status 2.
import * as grpc from '@grpc/grpc-js';
import { format } from 'node:util';
import type { Logger } from 'pino';
import { ConfigError, loadConfig, StartupError, type Config } from './config';
import { createLogger } from './logger';
import { InferenceServer } from './server';
import { Telemetry } from './telemetry';

/**
 * grpc-js writes its own lines to stderr ("E No address added out of total 1 resolved" before a failed bind
 * reaches its callback); through pino they are JSON on stdout like every other log line, and stderr carries only
 * the one line of a failed start.
 */
function routeGrpcLogs(logger: Logger): void {
  const grpcLogger = logger.child({ component: 'grpc-js' });
  grpc.setLogger({
    error: (message?: unknown, ...rest: unknown[]) => grpcLogger.error(format(message, ...rest)),
    info: (message?: unknown, ...rest: unknown[]) => grpcLogger.info(format(message, ...rest)),
    debug: (message?: unknown, ...rest: unknown[]) => grpcLogger.debug(format(message, ...rest)),
  });
}

/**
 * InferenceServer.create fails when the model cannot be served: onnxruntime cannot load it, its inputs are not
 * what tickserve serves, or it fails on a warm-up batch. Under CUDA every failure to open a session reads as
 * CUDA's (the message says how to install its binaries), so the setting named is EXECUTION_PROVIDER.
 */
function modelFailure(config: Config, error: unknown): ConfigError | StartupError {
  // Already named: the variable that decides (MODEL_REPOSITORY, OUTPUT_NAME, MAX_BATCH_SIZE, ...).
  if (error instanceof ConfigError || error instanceof StartupError) return error;
  const reason = error instanceof Error ? error.message : String(error);
  if (config.executionProvider === 'cuda') return new StartupError('EXECUTION_PROVIDER', config.executionProvider, reason);
  return config.modelRepository !== null
    ? new StartupError('MODEL_REPOSITORY', config.modelRepository, reason)
    : new StartupError('MODEL_PATH', config.modelPath, reason);
}

async function main(): Promise<void> {
  const config = loadConfig(process.env);
  const logger = createLogger(config.logLevel);
  routeGrpcLogs(logger);
  // Signals are handled from the start: loading a repository takes seconds, and a SIGHUP (a version just dropped
  // in) or SIGTERM (a rollout) in that time must not kill the process with the signal's default action.
  let server: InferenceServer | null = null;
  let rescanWhenStarted = false;
  let stopping = false;
  process.on('SIGHUP', () => {
    if (config.modelRepository === null) {
      logger.info('SIGHUP: no MODEL_REPOSITORY to rescan (MODEL_PATH serves one fixed model)');
    } else if (config.modelControlMode === 'explicit') {
      logger.info('SIGHUP: nothing to do in MODEL_CONTROL_MODE=explicit (models load and unload through RepositoryModelLoad and RepositoryModelUnload)');
    } else if (server === null) {
      logger.info('SIGHUP while starting: the repository is read again once startup ends');
      rescanWhenStarted = true;
    } else {
      logger.info('SIGHUP: rescanning the model repository');
      void server.rescan();
    }
  });
  const stop = (signal: NodeJS.Signals) => {
    if (stopping) return;
    stopping = true;
    if (server === null) {
      // Nothing accepted yet, nothing to drain.
      logger.info({ signal }, 'stopped while starting');
      process.exit(0);
    }
    logger.info({ signal, graceMs: config.shutdownGraceMs }, 'draining');
    server.close().then(
      () => {
        logger.info('stopped');
        process.exit(0);
      },
      (error: unknown) => {
        logger.error({ err: error }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);

  const telemetry = new Telemetry(config, logger);
  // The metrics port first: it is known to be taken or not before the model spends seconds loading.
  await telemetry.listen();
  const created = await InferenceServer.create(config, logger, telemetry).catch((error: unknown) => {
    throw modelFailure(config, error);
  });
  const port = await created.listen();
  server = created;
  const models = created.models.index();
  logger.info(
    { config: { ...config, port }, models },
    `tickserve serving ${models.map((m) => `${m.model} v${m.version}`).join(', ')} on ${config.host}:${port}`,
  );
  if (rescanWhenStarted) void created.rescan();
}

main().catch((error: unknown) => {
  // Anything else is a bug: it surfaces as an unhandled rejection, with its stack.
  if (!(error instanceof ConfigError || error instanceof StartupError)) throw error;
  process.stderr.write(`tickserve: ${error.message}\n`);
  process.exit(2);
});
