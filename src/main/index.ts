// Entry point: config -> server -> listen; SIGTERM/SIGINT -> graceful drain -> exit 0.
import { ConfigError, loadConfig, type Config } from './config';
import { createLogger } from './logger';
import { InferenceServer } from './server';
import { Telemetry } from './telemetry';

async function main(): Promise<void> {
  let config: Config;
  try {
    config = loadConfig(process.env);
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    process.stderr.write(`tickserve: ${error.message}\n`);
    process.exit(2);
  }
  const logger = createLogger(config.logLevel);
  const telemetry = new Telemetry(config, logger);
  let server: InferenceServer;
  try {
    server = await InferenceServer.create(config, logger, telemetry);
  } catch (error) {
    logger.fatal({ err: error }, 'startup failed');
    process.stderr.write(`tickserve: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exit(1);
  }
  const port = await server.listen();
  const models = server.models.index();
  logger.info(
    { config: { ...config, port }, models },
    `tickserve serving ${models.map((m) => `${m.model} v${m.version}`).join(', ')} on ${config.host}:${port}`,
  );
  // SIGHUP: read the repository again (new, changed and removed versions), whatever the control mode.
  process.on('SIGHUP', () => {
    logger.info('SIGHUP: rescanning the model repository');
    void server.rescan();
  });

  let stopping = false;
  const stop = (signal: NodeJS.Signals) => {
    if (stopping) return;
    stopping = true;
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
}

void main();
