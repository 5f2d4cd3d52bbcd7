// What both clients (TickClient for inference.ModelService, InferenceClient for inference.GRPCInferenceService)
// set on their channels and calls: the service config (round_robin, retries of UNAVAILABLE), keepalive, compression,
// and the headers sent as gRPC metadata on every call.
import * as grpc from '@grpc/grpc-js';

export interface RetryOptions {
  /** Attempts in all, the first included (grpc caps this at 5). */
  maxAttempts: number;
  initialBackoffMs: number;
  maxBackoffMs: number;
  backoffMultiplier: number;
}

export const DEFAULT_RETRY: RetryOptions = { maxAttempts: 3, initialBackoffMs: 20, maxBackoffMs: 500, backoffMultiplier: 2 };

/** The grpc service config: round_robin over the target's addresses, and the retry policy for `services`. */
export function serviceConfig(retry: RetryOptions | false, services: readonly string[]): string {
  const seconds = (ms: number) => `${(ms / 1000).toFixed(3)}s`;
  return JSON.stringify({
    loadBalancingConfig: [{ round_robin: {} }],
    methodConfig: retry
      ? [{
          name: services.map((service) => ({ service })),
          retryPolicy: {
            maxAttempts: retry.maxAttempts,
            initialBackoff: seconds(retry.initialBackoffMs),
            maxBackoff: seconds(retry.maxBackoffMs),
            backoffMultiplier: retry.backoffMultiplier,
            retryableStatusCodes: ['UNAVAILABLE'],
          },
        }]
      : [],
  });
}

export interface ChannelSettings {
  retry?: RetryOptions | false;
  compression?: 'gzip' | 'none';
  channelOptions?: grpc.ChannelOptions;
}

/** The channel options of a client of `services`. */
export function channelOptions(settings: ChannelSettings, services: readonly string[]): grpc.ChannelOptions {
  return {
    'grpc.service_config': serviceConfig(settings.retry ?? DEFAULT_RETRY, services),
    'grpc.enable_retries': settings.retry === false ? 0 : 1,
    // Keep connections through idle market hours: ping every 30 s when idle, give up after 10 s without an
    // answer, and do not drop to IDLE (which would reconnect, slowly, on the first call of the morning).
    'grpc.keepalive_time_ms': 30_000,
    'grpc.keepalive_timeout_ms': 10_000,
    'grpc.keepalive_permit_without_calls': 1,
    'grpc.client_idle_timeout_ms': 24 * 3600 * 1000,
    ...(settings.compression === 'gzip' ? { 'grpc.default_compression_algorithm': 2, 'grpc.default_compression_level': 2 } : {}),
    ...settings.channelOptions,
  };
}

/** Headers sent as gRPC metadata: lower-case keys (any case is accepted and lowered), printable ASCII values. */
export type Headers = Readonly<Record<string, string>>;

const HEADER_KEY = /^[0-9a-z_.-]+$/;
const HEADER_VALUE = /^[ -~]*$/;

/** Why `key: value` cannot be sent as a header, or null when it can. */
export function headerProblem(key: string, value: string): string | null {
  const lower = key.toLowerCase();
  if (!HEADER_KEY.test(lower)) return `header "${key}": a key is letters, digits, '_', '.' and '-'`;
  if (lower.startsWith('grpc-')) return `header "${key}": keys starting grpc- are gRPC's own`;
  if (lower.endsWith('-bin')) return `header "${key}": binary (-bin) headers are not supported`;
  if (typeof value !== 'string' || !HEADER_VALUE.test(value)) return `header "${key}": the value must be printable ASCII`;
  return null;
}

/** Throws a TypeError naming the first header that cannot be sent. */
export function checkHeaders(headers: Headers): void {
  for (const [key, value] of Object.entries(headers)) {
    const problem = headerProblem(key, value);
    if (problem !== null) throw new TypeError(problem);
  }
}

/** Fresh metadata holding `base`, then `extra` (whose keys win), and `more` (grpc.Metadata, added last). */
export function metadataOf(base: Headers, extra: Headers = {}, more?: grpc.Metadata): grpc.Metadata {
  const metadata = new grpc.Metadata();
  for (const [key, value] of Object.entries(base)) metadata.set(key, value);
  for (const [key, value] of Object.entries(extra)) metadata.set(key, value);
  if (more !== undefined) metadata.merge(more);
  return metadata;
}
