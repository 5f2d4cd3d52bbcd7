// GRPC_RESTRICTED_PROTOCOL, as Triton's --grpc-restricted-protocol: whole groups of RPCs answer only calls that
// carry a header key with the right value. Every RPC the server serves is in exactly one group (RPC_GROUPS, the one
// table; the README shows it). The check is a grpc-js server interceptor that reads the request headers and, for a
// call without the header or with another value, answers PERMISSION_DENIED at once: the handler never starts, so the
// request message is never read from the stream, decoded or admitted to a queue.
import * as grpc from '@grpc/grpc-js';
import { metrics, type Attributes } from '@opentelemetry/api';
import { createHash, timingSafeEqual } from 'node:crypto';
import type { Logger } from 'pino';
import type { ModelControlMode, RestrictedClause } from '../config';

/** Triton's group names, in the order its documentation lists them. */
export const PROTOCOL_GROUPS = [
  'health',
  'metadata',
  'inference',
  'shared-memory',
  'model-config',
  'model-repository',
  'statistics',
  'trace',
  'logging',
] as const;

export type ProtocolGroup = (typeof PROTOCOL_GROUPS)[number];

const V2 = 'inference.GRPCInferenceService';
const SEED = 'inference.ModelService';

/** Every RPC served on the port, by service, in its group (Triton's table, with tickserve's own services added). */
export const RPC_GROUPS: Readonly<Record<string, Readonly<Record<string, ProtocolGroup>>>> = {
  [V2]: {
    ServerLive: 'health',
    ServerReady: 'health',
    ModelReady: 'health',
    ServerMetadata: 'metadata',
    ModelMetadata: 'metadata',
    ModelInfer: 'inference',
    ModelStreamInfer: 'inference',
    ModelConfig: 'model-config',
    ModelStatistics: 'statistics',
    RepositoryIndex: 'model-repository',
    RepositoryModelLoad: 'model-repository',
    RepositoryModelUnload: 'model-repository',
    SystemSharedMemoryStatus: 'shared-memory',
    SystemSharedMemoryRegister: 'shared-memory',
    SystemSharedMemoryUnregister: 'shared-memory',
    CudaSharedMemoryStatus: 'shared-memory',
    CudaSharedMemoryRegister: 'shared-memory',
    CudaSharedMemoryUnregister: 'shared-memory',
    TraceSetting: 'trace',
    LogSettings: 'logging',
  },
  [SEED]: {
    Predict: 'inference',
    StreamPredict: 'inference',
    HealthCheck: 'health',
  },
  'grpc.health.v1.Health': {
    Check: 'health',
    Watch: 'health',
    List: 'health',
  },
  // Reflection describes the services and their messages: metadata, as ServerMetadata and ModelMetadata are.
  'grpc.reflection.v1.ServerReflection': { ServerReflectionInfo: 'metadata' },
  'grpc.reflection.v1alpha.ServerReflection': { ServerReflectionInfo: 'metadata' },
};

/** The group of a gRPC path ("/service/method"); undefined for a path the table lacks. */
export function groupOf(path: string): ProtocolGroup | undefined {
  const slash = path.lastIndexOf('/');
  return RPC_GROUPS[path.slice(1, slash)]?.[path.slice(slash + 1)];
}

/**
 * Whether `received` is the expected value, in the same time whatever it is: both sides are compared as SHA-256
 * digests, so neither a prefix that matches nor a length that differs changes how long the comparison takes.
 */
export function headerMatches(received: string, expectedDigest: Buffer): boolean {
  return timingSafeEqual(createHash('sha256').update(received, 'utf8').digest(), expectedDigest);
}

type Refusal = 'missing' | 'mismatch';

/** What a guarded path needs, made once per path at startup. */
interface Guard {
  group: ProtocolGroup;
  key: string;
  digest: Buffer;
  /** PERMISSION_DENIED details: they name the header, never its value. */
  details: Record<Refusal, string>;
  attributes: Record<Refusal, Attributes>;
}

/** The reason a path the table lacks is refused (fail closed: a new RPC must be given a group). */
const UNKNOWN_PATH = 'unknown';

/**
 * The interceptor for `clauses`, or null when nothing is restricted (then no interceptor is installed and calls
 * pay nothing). Refusals are counted (tickserve.restricted.refusals, by group and reason) and logged with the
 * caller's address: at warn for the model-repository group, whose calls load and unload models, else at debug.
 */
export function restrictedProtocolInterceptor(clauses: readonly RestrictedClause[], logger: Logger): grpc.ServerInterceptor | null {
  if (clauses.length === 0) return null;
  const refusals = metrics.getMeter('tickserve').createCounter('tickserve.restricted.refusals', {
    description: 'Calls refused with PERMISSION_DENIED by GRPC_RESTRICTED_PROTOCOL, by group and reason (missing, mismatch)',
  });
  const byGroup = new Map<ProtocolGroup, { key: string; digest: Buffer }>();
  for (const clause of clauses) {
    const digest = createHash('sha256').update(clause.value.reveal(), 'utf8').digest();
    for (const group of clause.groups) byGroup.set(group, { key: clause.key, digest });
  }
  // By path, made once: null for an open group.
  const guards = new Map<string, Guard | null>();
  for (const [service, methods] of Object.entries(RPC_GROUPS)) {
    for (const [method, group] of Object.entries(methods)) {
      const rule = byGroup.get(group);
      const fullMethod = `${service}/${method}`;
      guards.set(
        `/${fullMethod}`,
        rule === undefined
          ? null
          : {
              group,
              ...rule,
              details: {
                missing: `${fullMethod} is restricted (group ${group}): it expects the header "${rule.key}"`,
                mismatch: `${fullMethod} is restricted (group ${group}): the header "${rule.key}" does not have the expected value`,
              },
              attributes: {
                missing: Object.freeze({ group, reason: 'missing' }),
                mismatch: Object.freeze({ group, reason: 'mismatch' }),
              },
            },
      );
    }
  }

  const refuse = (call: grpc.ServerInterceptingCall, path: string, group: string, reason: string, details: string, attributes: Attributes) => {
    refusals.add(1, attributes);
    const entry = { method: path.slice(1), group, reason, peer: call.getPeer() };
    if (group === 'model-repository' || group === UNKNOWN_PATH) logger.warn({ ...entry, audit: true }, 'call refused: restricted protocol');
    else logger.debug(entry, 'call refused: restricted protocol');
    call.sendStatus({ code: grpc.status.PERMISSION_DENIED, details });
  };

  return (descriptor, call) => {
    const path = descriptor.path;
    const guard = guards.get(path);
    // An open group: the call itself, unwrapped. grpc-js uses only the ServerInterceptingCallInterface of what an
    // interceptor returns, so a call of an open group pays no extra layer.
    if (guard === null) return call as grpc.ServerInterceptingCall;
    const intercepting: grpc.ServerInterceptingCall = new grpc.ServerInterceptingCall(call, {
      start: (next) => {
        next({
          // Runs before the handler has asked for the first message: refused here, its bytes stay unread.
          onReceiveMetadata: (metadata, nextMetadata) => {
            if (guard === undefined) {
              const attributes = { group: UNKNOWN_PATH, reason: 'unknown-method' };
              refuse(intercepting, path, UNKNOWN_PATH, 'unknown-method', `${path.slice(1)} is in no protocol group, so it is refused while GRPC_RESTRICTED_PROTOCOL is set`, attributes);
              return;
            }
            const values = metadata.get(guard.key);
            // One value only: two copies of the header are not a way to try two values at once.
            const reason: Refusal | null =
              values.length === 0 ? 'missing' : values.length === 1 && typeof values[0] === 'string' && headerMatches(values[0], guard.digest) ? null : 'mismatch';
            if (reason === null) nextMetadata(metadata);
            else refuse(intercepting, path, guard.group, reason, guard.details[reason], guard.attributes[reason]);
          },
        });
      },
    });
    return intercepting;
  };
}

/**
 * The startup lines about the restricted protocol: which groups need which header (never the value) and which are
 * open; and a warning when the repository can be changed through the API (explicit mode) or read through it (poll
 * mode) by anyone who reaches the port.
 */
export function describeRestrictions(clauses: readonly RestrictedClause[], controlMode: ModelControlMode): { info: string; warning: string | null } {
  const restricted = new Map<ProtocolGroup, string>();
  for (const clause of clauses) for (const group of clause.groups) restricted.set(group, clause.key);
  const open = PROTOCOL_GROUPS.filter((g) => !restricted.has(g));
  const info =
    restricted.size === 0
      ? `GRPC_RESTRICTED_PROTOCOL is not set: every RPC group is open to anyone who reaches the port (${open.join(', ')})`
      : `restricted protocol: ${clauses.map((c) => `${c.groups.join(', ')} need${c.groups.length === 1 ? 's' : ''} the header "${c.key}"`).join('; ')}` +
        `; open to anyone who reaches the port: ${open.length > 0 ? open.join(', ') : 'none'}`;
  let warning: string | null = null;
  if (!restricted.has('model-repository') && controlMode !== 'none') {
    warning =
      controlMode === 'explicit'
        ? 'MODEL_CONTROL_MODE=explicit and the model-repository group is open: anyone who reaches the port can load and unload models (RepositoryModelLoad loads code the server runs); restrict it with GRPC_RESTRICTED_PROTOCOL=model-repository:<key>=<value>'
        : 'MODEL_CONTROL_MODE=poll and the model-repository group is open: anyone who reaches the port can list the repository (RepositoryIndex); restrict it with GRPC_RESTRICTED_PROTOCOL=model-repository:<key>=<value>';
  }
  return { info, warning };
}
