// Every failure a caller can see is a ServingError carrying its gRPC status; toServingError turns anything else
// into one, in this one place, without leaking internals.
import { status } from '@grpc/grpc-js';

export class ServingError extends Error {
  override readonly name = 'ServingError';
  constructor(
    readonly code: status,
    message: string,
  ) {
    super(message);
  }
}

export const invalidArgument = (message: string) => new ServingError(status.INVALID_ARGUMENT, message);
export const notFound = (message: string) => new ServingError(status.NOT_FOUND, message);
export const resourceExhausted = (message: string) => new ServingError(status.RESOURCE_EXHAUSTED, message);
export const unavailable = (message: string) => new ServingError(status.UNAVAILABLE, message);
export const deadlineExceeded = (message: string) => new ServingError(status.DEADLINE_EXCEEDED, message);
export const internal = (message: string) => new ServingError(status.INTERNAL, message);
export const failedPrecondition = (message: string) => new ServingError(status.FAILED_PRECONDITION, message);
export const unimplemented = (message: string) => new ServingError(status.UNIMPLEMENTED, message);

/**
 * A ServingError as it is; anything unexpected as UNKNOWN with a generic message. The cause is not sent to the
 * caller (it may carry internals), so it is handed to `logCause`, which every caller must supply.
 */
export function toServingError(error: unknown, logCause: (cause: unknown) => void): ServingError {
  if (error instanceof ServingError) return error;
  logCause(error);
  return new ServingError(status.UNKNOWN, 'unexpected server error');
}
