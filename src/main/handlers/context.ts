// What the RPC handlers share: the model registry (each request is routed to a version, which owns its batcher) and
// the per-call limits.
import type { ServerSurfaceCall } from '@grpc/grpc-js/build/src/server-call';
import type { Logger } from 'pino';
import type { ModelRegistry } from '../../models/registry';
import type { Telemetry } from '../telemetry';

export interface HandlerContext {
  models: ModelRegistry;
  /** Server-side deadline for calls whose client set none; 0: none. */
  requestTimeoutMs: number;
  logger: Logger;
  /** True once shutdown has begun: new calls are refused with UNAVAILABLE. */
  isDraining(): boolean;
  counters: ServingCounters;
  telemetry: Telemetry;
}

/** Running totals kept by the handlers. */
export interface ServingCounters {
  predictCalls: number;
  streamMessagesRead: number;
}

export const SHUTTING_DOWN = 'server is shutting down; retry on another replica';

/** The client's deadline for the call on the performance.now() clock; Infinity when it set none. */
export function clientDeadline(call: ServerSurfaceCall, now: number): number {
  const deadline = call.getDeadline();
  const epochMs = deadline instanceof Date ? deadline.getTime() : deadline;
  return Number.isFinite(epochMs) ? now + (epochMs - Date.now()) : Infinity;
}

/**
 * A request's deadline: the client's when it set one, else REQUEST_TIMEOUT_MS from the request's receipt (for a
 * stream: from each message's), else none.
 */
export function requestDeadline(clientDeadlineAt: number, receivedAt: number, requestTimeoutMs: number): number {
  if (clientDeadlineAt !== Infinity) return clientDeadlineAt;
  return requestTimeoutMs > 0 ? receivedAt + requestTimeoutMs : Infinity;
}
