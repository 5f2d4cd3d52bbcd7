// Every setting tickserve reads, parsed and validated once at startup. Nothing else reads process.env.
import { createPrivateKey, X509Certificate, type KeyObject } from 'node:crypto';
import { accessSync, constants, readFileSync, statSync, type Stats } from 'node:fs';
import { isIP } from 'node:net';
import { availableParallelism } from 'node:os';
import path from 'node:path';
import { inspect } from 'node:util';
import { PROTOCOL_GROUPS, type ProtocolGroup } from './interceptors/restricted';
import { BATCH_DELAYS, type BatchDelay } from '../batching/policy';

/** A setting that cannot be used; the message names the variable, the value and what is allowed. */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';
  readonly code = 'TICKSERVE_CONFIG';
  constructor(
    readonly variable: string,
    readonly value: string,
    readonly allowed: string,
  ) {
    super(`${variable}=${JSON.stringify(value)} is invalid: ${allowed}`);
  }
}

/**
 * A setting that passed validation but could not be used when the server started: its port was taken, its model
 * did not load. Like ConfigError, the message names the variable and the value, and is one line.
 */
export class StartupError extends Error {
  override readonly name = 'StartupError';
  readonly code = 'TICKSERVE_STARTUP';
  constructor(
    readonly variable: string,
    readonly value: string,
    readonly reason: string,
  ) {
    // Causes come from libraries (onnxruntime ends some of its messages with a newline): one line, whatever they say.
    super(`${variable}=${JSON.stringify(value)} cannot be used: ${reason.replace(/\s+/g, ' ').trim()}`);
  }
}

/**
 * The setting at fault when listening on HOST and a port fails: HOST when the address is not this machine's or
 * does not resolve, otherwise the port (in use, or privileged). `reason` is the listen error's message, which
 * carries the errno name (grpc-js reports bind failures as a message only, without a code).
 */
export function listenError(config: Config, portVariable: 'PORT' | 'METRICS_PORT', port: number, reason: string): StartupError {
  if (/EADDRNOTAVAIL|ENOTFOUND|EAI_AGAIN|Name resolution failed/.test(reason)) return new StartupError('HOST', config.host, reason);
  return new StartupError(portVariable, String(port), reason);
}

export type ExecutionProvider = 'cpu' | 'cuda';
export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';

export type ModelControlMode = 'none' | 'poll' | 'explicit';

/**
 * A value that must never reach a log line or an error message: JSON (pino) and util.inspect show "[redacted]";
 * only reveal() gives it.
 */
export class Secret {
  readonly #value: string;
  constructor(value: string) {
    this.#value = value;
  }
  reveal(): string {
    return this.#value;
  }
  toJSON(): string {
    return '[redacted]';
  }
  [inspect.custom](): string {
    return '[redacted]';
  }
}

/** One clause of GRPC_RESTRICTED_PROTOCOL: calls of these groups must carry the header `key` with this value. */
export interface RestrictedClause {
  groups: ProtocolGroup[];
  key: string;
  value: Secret;
}

export const TRACES_SAMPLERS = ['always_on', 'always_off', 'traceidratio', 'parentbased_always_on', 'parentbased_always_off', 'parentbased_traceidratio'] as const;

/** A sampler that OTEL_TRACES_SAMPLER names, with the ratio of the *traceidratio ones (1 where the variable is
 * unset or blank, as in the SDK; unused by the others). */
export interface TracesSampler {
  name: (typeof TRACES_SAMPLERS)[number];
  ratio: number;
}

export interface Config {
  host: string;
  port: number;
  /** A Triton-layout model repository; null: serve MODEL_PATH as a repository of one model. */
  modelRepository: string | null;
  modelPath: string;
  modelName: string;
  modelVersion: string;
  /** none: load at startup, rescan on SIGHUP; poll: also rescan every repositoryPollSecs. */
  modelControlMode: ModelControlMode;
  repositoryPollSecs: number;
  /** explicit mode: the models loaded at startup (null: all of them, `*`); the rest wait for RepositoryModelLoad. */
  loadModels: string[] | null;
  /** The model a request without model_name gets; null: the repository's only model. */
  defaultModel: string | null;
  /** The model output to serve; null: the model's only output (a model with several needs it). */
  outputName: string | null;
  /** Rows in the largest batch; also the largest batch_size one request may carry. */
  maxBatchSize: number;
  /**
   * BATCH_DELAY=fixed: how long the oldest queued request waits for company before its batch is dispatched.
   * adaptive (the default): the most it may wait.
   */
  maxQueueDelayUs: number;
  /** adaptive: wait for company only while it pays (up to maxQueueDelayUs); fixed: always wait maxQueueDelayUs. */
  batchDelay: BatchDelay;
  /** Rows the queue may hold; unary calls beyond it are refused with RESOURCE_EXHAUSTED. */
  maxQueueSize: number;
  /** Batch sizes (rows) to dispatch as soon as they can be formed; ascending, each <= maxBatchSize. */
  preferredBatchSizes: number[];
  workers: number;
  /** GPUs visible to the process (CUDA_VISIBLE_DEVICES, else 1): where a KIND_GPU group without gpus places its count. */
  gpus: number;
  ortIntraOpThreads: number;
  /** Give up on a batch, and replace its worker, after this long; 0: never. */
  workerTimeoutMs: number;
  executionProvider: ExecutionProvider;
  maxReceiveMessageBytes: number;
  /** Server-side deadline for calls whose client set none; 0: none. */
  requestTimeoutMs: number;
  shutdownGraceMs: number;
  logLevel: LogLevel;
  /** TLS: both set, or neither (plaintext). */
  tlsCertFile: string | null;
  tlsKeyFile: string | null;
  /** mTLS: clients must present a certificate issued by this CA. */
  tlsClientCaFile: string | null;
  /** Prometheus /metrics port; 0: no endpoint. */
  metricsPort: number;
  /** OTEL_SDK_DISABLED: no OpenTelemetry at all (no interceptor, no metrics, no spans). */
  telemetryDisabled: boolean;
  /** Spans are exported: a trace endpoint or exporter is configured through the OTEL_* variables. */
  tracing: boolean;
  /** OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG, as the OpenTelemetry SDK reads them. */
  tracesSampler: TracesSampler;
  /** A child span per StreamPredict message (off by default: a market feed would flood the backend). */
  streamMessageSpans: boolean;
  /** GRPC_RESTRICTED_PROTOCOL: the groups of RPCs that need a header, each group in at most one clause; empty: all open. */
  restrictedProtocol: RestrictedClause[];
}

/** The root of the installed package (dist/src/main/ -> root), where models/ lives. */
export const PACKAGE_ROOT = path.resolve(__dirname, '..', '..', '..');
export const DEFAULT_MODEL_PATH = path.join(PACKAGE_ROOT, 'models', 'default.onnx');

type Env = Readonly<Record<string, string | undefined>>;

function integer(env: Env, name: string, fallback: number, min: number, max = Number.MAX_SAFE_INTEGER): number {
  const raw = env[name];
  if (raw === undefined || raw.trim() === '') return fallback;
  const value = Number(raw.trim());
  if (!/^[+]?\d+$/.test(raw.trim()) || !Number.isSafeInteger(value) || value < min || value > max) {
    const range = max === Number.MAX_SAFE_INTEGER ? `an integer >= ${min}` : `an integer from ${min} to ${max}`;
    throw new ConfigError(name, raw, range);
  }
  return value;
}

function oneOf<T extends string>(env: Env, name: string, fallback: T, allowed: readonly T[]): T {
  const raw = env[name];
  if (raw === undefined || raw.trim() === '') return fallback;
  const value = raw.trim().toLowerCase() as T;
  if (!allowed.includes(value)) throw new ConfigError(name, raw, `one of ${allowed.join(', ')}`);
  return value;
}

function text(env: Env, name: string, fallback: string, pattern: RegExp, allowed: string): string {
  const raw = env[name];
  if (raw === undefined || raw.trim() === '') return fallback;
  if (!pattern.test(raw.trim())) throw new ConfigError(name, raw, allowed);
  return raw.trim();
}

function preferredSizes(env: Env, maxBatchSize: number): number[] {
  const raw = env.PREFERRED_BATCH_SIZES;
  if (raw === undefined || raw.trim() === '') return [];
  const allowed = `a comma-separated list of distinct integers from 1 to MAX_BATCH_SIZE (${maxBatchSize})`;
  const parts = raw.split(',').map((s) => s.trim());
  const sizes = parts.map(Number);
  const valid = parts.every((p) => /^\d+$/.test(p)) && sizes.every((n) => n >= 1 && n <= maxBatchSize);
  if (!valid || new Set(sizes).size !== sizes.length) throw new ConfigError('PREFERRED_BATCH_SIZES', raw, allowed);
  return sizes.sort((a, b) => a - b);
}

function flag(env: Env, name: string, fallback: boolean): boolean {
  const raw = env[name];
  if (raw === undefined || raw.trim() === '') return fallback;
  const value = raw.trim().toLowerCase();
  if (value === 'true' || value === '1') return true;
  if (value === 'false' || value === '0') return false;
  throw new ConfigError(name, raw, 'true or false');
}

const OTLP_PROTOCOLS = ['grpc', 'http/protobuf', 'http/json'] as const;
const TRACES_EXPORTERS = ['otlp', 'zipkin', 'console', 'none'];

/** The longest delay Node's timers take (2^31 − 1 ms, about 24.8 days): a longer one would fire after 1 ms. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * The OTEL_* variables are read by the OpenTelemetry SDK itself; here they are only checked, so that a typo
 * fails at startup with the variable's name rather than silently exporting nothing, and used to tell whether
 * spans go anywhere at all.
 */
function tracingConfigured(env: Env): { disabled: boolean; tracing: boolean; sampler: TracesSampler } {
  const disabled = flag(env, 'OTEL_SDK_DISABLED', false);
  for (const name of ['OTEL_EXPORTER_OTLP_PROTOCOL', 'OTEL_EXPORTER_OTLP_TRACES_PROTOCOL']) {
    oneOf(env, name, 'http/protobuf', OTLP_PROTOCOLS);
  }
  const sampler = oneOf(env, 'OTEL_TRACES_SAMPLER', 'parentbased_always_on', TRACES_SAMPLERS);
  const ratioArg = env.OTEL_TRACES_SAMPLER_ARG;
  let ratio = 1;
  if (sampler.endsWith('traceidratio') && ratioArg !== undefined && ratioArg.trim() !== '') {
    ratio = Number(ratioArg);
    if (!Number.isFinite(ratio) || ratio < 0 || ratio > 1) throw new ConfigError('OTEL_TRACES_SAMPLER_ARG', ratioArg, 'a ratio from 0 to 1');
  }
  const exporters = (env.OTEL_TRACES_EXPORTER ?? '').split(',').map((e) => e.trim()).filter((e) => e !== '');
  // The exporters the SDK knows (anything else it only reports to its own diagnostics, which nobody reads).
  for (const exporter of exporters) {
    if (!TRACES_EXPORTERS.includes(exporter)) throw new ConfigError('OTEL_TRACES_EXPORTER', env.OTEL_TRACES_EXPORTER ?? '', `a list of ${TRACES_EXPORTERS.join(', ')}`);
  }
  const endpoint = (env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT ?? env.OTEL_EXPORTER_OTLP_ENDPOINT ?? '').trim() !== '';
  const tracing = !disabled && (exporters.length > 0 ? !exporters.includes('none') : endpoint);
  return { disabled, tracing, sampler: { name: sampler, ratio } };
}

/** HOST: a name, or an IP address that is one (a dotted quad grpc-js would otherwise look up in DNS). */
function host(env: Env): string {
  const value = text(env, 'HOST', '0.0.0.0', /^[\w.:-]+$/, 'a host name or IP address (IPv6 without brackets)');
  if (/^[\d.]+$/.test(value) && isIP(value) !== 4) {
    throw new ConfigError('HOST', env.HOST ?? '', 'an IPv4 address (four numbers from 0 to 255) or a host name');
  }
  if (value.includes(':') && isIP(value) !== 6) throw new ConfigError('HOST', env.HOST ?? '', 'an IPv6 address');
  return value;
}

/**
 * MODEL_PATH, or the bundled model: a file that exists, can be read and is not empty. Whether it is a model only
 * onnxruntime can tell; when it cannot load it, startup fails naming MODEL_PATH too (index.ts).
 */
function modelFile(env: Env): string {
  const value = env.MODEL_PATH?.trim() || DEFAULT_MODEL_PATH;
  const file = path.resolve(value);
  const refuse = (problem: string) => new ConfigError('MODEL_PATH', value, `an ONNX model file; ${problem}`);
  let stat: Stats;
  try {
    stat = statSync(file);
    accessSync(file, constants.R_OK);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw refuse(code === 'ENOENT' ? `there is no file ${file}` : `${file} cannot be read (${code})`);
  }
  if (!stat.isFile()) throw refuse(`${file} is not a file`);
  if (stat.size === 0) throw refuse(`${file} is empty`);
  return file;
}

function readableFile(env: Env, name: string): string | null {
  const raw = env[name];
  if (raw === undefined || raw.trim() === '') return null;
  const file = path.resolve(raw.trim());
  try {
    accessSync(file, constants.R_OK);
  } catch {
    throw new ConfigError(name, raw, 'a readable file');
  }
  return file;
}

function modelList(env: Env, name: string): string[] | null {
  const raw = env[name];
  if (raw === undefined || raw.trim() === '') return [];
  if (raw.trim() === '*') return null;
  const names = raw.split(',').map((n) => n.trim());
  if (names.some((n) => !/^[A-Za-z0-9_][\w.-]*$/.test(n))) {
    throw new ConfigError(name, raw, 'comma-separated model names (letters, digits, _ . -), or * for every model');
  }
  return names;
}

function readableFolder(env: Env, name: string): string | null {
  const raw = env[name];
  if (raw === undefined || raw.trim() === '') return null;
  const folder = path.resolve(raw.trim());
  try {
    accessSync(folder, constants.R_OK | constants.X_OK);
    if (!statSync(folder).isDirectory()) throw new Error('not a folder');
  } catch {
    throw new ConfigError(name, raw, 'a readable folder');
  }
  return folder;
}

/** The first certificate in a PEM file (a chain or a CA bundle may hold more). */
function pemCertificate(env: Env, name: string, file: string): X509Certificate {
  const pem = readFileSync(file);
  // X509Certificate also takes DER, which the TLS stack (and so grpc-js) would refuse: PEM is required.
  if (!pem.includes('-----BEGIN CERTIFICATE-----')) throw new ConfigError(name, env[name] ?? file, 'a PEM certificate; this file holds none');
  try {
    return new X509Certificate(pem);
  } catch (error) {
    throw new ConfigError(name, env[name] ?? file, `a PEM certificate; this one does not parse (${(error as Error).message})`);
  }
}

function pemPrivateKey(env: Env, name: string, file: string): KeyObject {
  try {
    return createPrivateKey(readFileSync(file));
  } catch (error) {
    throw new ConfigError(name, env[name] ?? file, `an unencrypted PEM private key; this file is not one (${(error as Error).message})`);
  }
}

/** Parses the TLS files now, so that a wrong file fails here with its variable rather than in the TLS stack at bind. */
function checkTlsFiles(env: Env, config: Config): void {
  if (config.tlsCertFile === null || config.tlsKeyFile === null) return;
  const certificate = pemCertificate(env, 'TLS_CERT_FILE', config.tlsCertFile);
  const key = pemPrivateKey(env, 'TLS_KEY_FILE', config.tlsKeyFile);
  if (!certificate.checkPrivateKey(key)) {
    throw new ConfigError('TLS_KEY_FILE', env.TLS_KEY_FILE ?? '', 'the private key of the certificate in TLS_CERT_FILE; this key does not match it');
  }
  if (config.tlsClientCaFile !== null) pemCertificate(env, 'TLS_CLIENT_CA_FILE', config.tlsClientCaFile);
}

/** Headers that the gRPC transport sets itself: a client cannot choose their values. */
const TRANSPORT_HEADERS = new Set(['content-type', 'te', 'user-agent', 'host']);

/**
 * GRPC_RESTRICTED_PROTOCOL, Triton's --grpc-restricted-protocol: `<group>[,<group>...]:<key>=<value>`, clauses
 * separated by `;` so that groups can take different keys. The key is a lowercase text metadata key; the value
 * printable ASCII (gRPC's text metadata) without `;`, spaces at its ends dropped. A problem names the clause, never
 * the value.
 */
function restrictedProtocol(env: Env): RestrictedClause[] {
  const name = 'GRPC_RESTRICTED_PROTOCOL';
  const raw = env[name];
  if (raw === undefined || raw.trim() === '') return [];
  // The value is a secret: the error shows the variable with every value replaced.
  const shown = raw.replace(/=[^;]*/g, '=…');
  const refuse = (problem: string) =>
    new ConfigError(name, shown, `${problem}; expected <group>[,<group>...]:<key>=<value>, clauses separated by ';', groups: ${PROTOCOL_GROUPS.join(', ')}`);
  const seen = new Map<string, number>();
  return raw.split(';').map((text, index) => {
    const clause = text.trim();
    const which = `clause ${index + 1}`;
    if (clause === '') throw refuse(`${which} is empty`);
    const colon = clause.indexOf(':');
    if (colon < 0) throw refuse(`${which} has no ':' between its groups and its header`);
    const groups = clause.slice(0, colon).split(',').map((g) => g.trim());
    const header = clause.slice(colon + 1);
    const equals = header.indexOf('=');
    if (equals < 0) throw refuse(`${which} has no '=' between its header key and value`);
    const key = header.slice(0, equals).trim();
    const value = header.slice(equals + 1).trim();
    for (const group of groups) {
      if (group === '') throw refuse(`${which} has an empty group name`);
      if (!(PROTOCOL_GROUPS as readonly string[]).includes(group)) throw refuse(`${which}: unknown group "${group}"`);
      const earlier = seen.get(group);
      if (earlier !== undefined) {
        throw refuse(`group "${group}" is in ${earlier === index + 1 ? `${which} twice` : `clauses ${earlier} and ${index + 1}`}; a group takes one header`);
      }
      seen.set(group, index + 1);
    }
    if (key === '') throw refuse(`${which} has an empty header key`);
    if (!/^[0-9a-z_.-]+$/.test(key)) throw refuse(`${which}: header key "${key}" is not a gRPC metadata key (lowercase letters, digits, - _ .)`);
    if (key.startsWith('grpc-')) throw refuse(`${which}: header key "${key}" starts with "grpc-", which gRPC reserves`);
    if (key.endsWith('-bin')) throw refuse(`${which}: header key "${key}" ends with "-bin", a binary header; the key must carry text`);
    if (TRANSPORT_HEADERS.has(key)) throw refuse(`${which}: header key "${key}" is set by the gRPC transport, not by the caller`);
    if (value === '') throw refuse(`${which} has an empty header value`);
    if (!/^[ -~]+$/.test(value)) throw refuse(`${which}: the header value must be printable ASCII (gRPC text metadata)`);
    return { groups: groups as ProtocolGroup[], key, value: new Secret(value) };
  });
}

function defaultWorkers(provider: ExecutionProvider, gpus: number): number {
  return provider === 'cuda' ? gpus : Math.max(1, availableParallelism() - 1);
}

/** Reads and validates the whole configuration; throws ConfigError on the first bad value. */
export function loadConfig(env: Env = process.env): Config {
  const executionProvider = oneOf<ExecutionProvider>(env, 'EXECUTION_PROVIDER', 'cpu', ['cpu', 'cuda']);
  const maxBatchSize = integer(env, 'MAX_BATCH_SIZE', 256, 1, 65_536);
  const modelRepository = readableFolder(env, 'MODEL_REPOSITORY');
  if (modelRepository !== null && (env.MODEL_PATH ?? '').trim() !== '') {
    throw new ConfigError('MODEL_REPOSITORY', env.MODEL_REPOSITORY ?? '', 'MODEL_PATH is set too: serve either one model file or a repository, not both');
  }
  for (const name of ['MODEL_NAME', 'MODEL_VERSION']) {
    if (modelRepository !== null && (env[name] ?? '').trim() !== '') {
      throw new ConfigError(name, env[name] ?? '', 'only with MODEL_PATH (a repository\'s folders name its models and versions)');
    }
  }
  // With a repository, MODEL_PATH is not used (its default only names the single model, never loaded).
  const modelPath = modelRepository !== null ? DEFAULT_MODEL_PATH : modelFile(env);
  // CUDA_VISIBLE_DEVICES counts the GPUs a process may use; one worker each.
  const otel = tracingConfigured(env);
  const gpus = (env.CUDA_VISIBLE_DEVICES ?? '0').split(',').filter((d) => d.trim() !== '').length || 1;
  const config: Config = {
    host: host(env),
    port: integer(env, 'PORT', 50051, 0, 65_535),
    modelRepository,
    modelPath,
    modelControlMode: oneOf<ModelControlMode>(env, 'MODEL_CONTROL_MODE', 'none', ['none', 'poll', 'explicit']),
    loadModels: modelList(env, 'LOAD_MODELS'),
    repositoryPollSecs: integer(env, 'REPOSITORY_POLL_SECS', 15, 1, 86_400),
    defaultModel: text(env, 'DEFAULT_MODEL', '', /^[A-Za-z0-9_][\w.-]*$/, 'a model name: letters, digits, _ . -') || null,
    modelName: text(env, 'MODEL_NAME', path.basename(modelPath, '.onnx'), /^[\w.-]+$/, 'letters, digits, _ . -'),
    modelVersion: text(env, 'MODEL_VERSION', '1', /^[\w.-]+$/, 'letters, digits, _ . -'),
    outputName: env.OUTPUT_NAME === undefined || env.OUTPUT_NAME.trim() === '' ? null : env.OUTPUT_NAME.trim(),
    maxBatchSize,
    maxQueueDelayUs: integer(env, 'MAX_QUEUE_DELAY_US', 100, 0, 10_000_000),
    batchDelay: oneOf<BatchDelay>(env, 'BATCH_DELAY', 'adaptive', BATCH_DELAYS),
    maxQueueSize: integer(env, 'MAX_QUEUE_SIZE', 4096, 1),
    preferredBatchSizes: preferredSizes(env, maxBatchSize),
    workers: integer(env, 'WORKERS', defaultWorkers(executionProvider, gpus), 1, 1024),
    gpus,
    ortIntraOpThreads: integer(env, 'ORT_INTRA_OP_THREADS', 1, 1, 1024),
    workerTimeoutMs: integer(env, 'WORKER_TIMEOUT_MS', 5000, 0, MAX_TIMER_MS),
    executionProvider,
    maxReceiveMessageBytes: integer(env, 'MAX_RECEIVE_MESSAGE_BYTES', 4 * 1024 * 1024, 64, 2 ** 31 - 1),
    requestTimeoutMs: integer(env, 'REQUEST_TIMEOUT_MS', 0, 0, MAX_TIMER_MS),
    shutdownGraceMs: integer(env, 'SHUTDOWN_GRACE_MS', 10_000, 0, MAX_TIMER_MS),
    logLevel: oneOf<LogLevel>(env, 'LOG_LEVEL', 'info', ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']),
    tlsCertFile: readableFile(env, 'TLS_CERT_FILE'),
    tlsKeyFile: readableFile(env, 'TLS_KEY_FILE'),
    tlsClientCaFile: readableFile(env, 'TLS_CLIENT_CA_FILE'),
    metricsPort: integer(env, 'METRICS_PORT', 9464, 0, 65_535),
    telemetryDisabled: otel.disabled,
    tracing: otel.tracing,
    tracesSampler: otel.sampler,
    streamMessageSpans: flag(env, 'STREAM_MESSAGE_SPANS', false),
    restrictedProtocol: restrictedProtocol(env),
  };
  if ((config.tlsCertFile === null) !== (config.tlsKeyFile === null)) {
    const [set, unset] = config.tlsCertFile === null ? ['TLS_KEY_FILE', 'TLS_CERT_FILE'] : ['TLS_CERT_FILE', 'TLS_KEY_FILE'];
    throw new ConfigError(unset, env[unset] ?? '', `required when ${set} is set: TLS needs both a certificate and its key`);
  }
  if (config.tlsClientCaFile !== null && config.tlsCertFile === null) {
    throw new ConfigError('TLS_CLIENT_CA_FILE', env.TLS_CLIENT_CA_FILE ?? '', 'needs TLS_CERT_FILE and TLS_KEY_FILE (mTLS is on top of TLS)');
  }
  checkTlsFiles(env, config);
  if (!config.telemetryDisabled && config.metricsPort !== 0 && config.metricsPort === config.port) {
    throw new ConfigError('METRICS_PORT', String(config.metricsPort), 'a port other than PORT, or 0 for no metrics endpoint');
  }
  if (config.modelControlMode !== 'poll' && (env.REPOSITORY_POLL_SECS ?? '').trim() !== '') {
    throw new ConfigError('REPOSITORY_POLL_SECS', env.REPOSITORY_POLL_SECS ?? '', 'only with MODEL_CONTROL_MODE=poll (nothing polls the repository in the other modes)');
  }
  if (config.modelControlMode !== 'explicit' && (env.LOAD_MODELS ?? '').trim() !== '') {
    throw new ConfigError('LOAD_MODELS', env.LOAD_MODELS ?? '', 'only with MODEL_CONTROL_MODE=explicit (the other modes load every model)');
  }
  if (config.modelControlMode !== 'none' && config.modelRepository === null) {
    throw new ConfigError('MODEL_CONTROL_MODE', config.modelControlMode, 'needs MODEL_REPOSITORY (MODEL_PATH serves one fixed model)');
  }
  if (config.maxQueueSize < config.maxBatchSize) {
    throw new ConfigError('MAX_QUEUE_SIZE', String(config.maxQueueSize), `at least MAX_BATCH_SIZE (${maxBatchSize}) rows`);
  }
  return config;
}
