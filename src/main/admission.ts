// The checks every ModelService request passes before it may reach a model: routed to a ready version by
// model_name and model_version, then checked against that version's row width and batch limit. A request that fails
// one is answered with INVALID_ARGUMENT, NOT_FOUND or UNAVAILABLE and never enters a batcher.
import type { ModelInstance } from '../models/instance';
import type { ModelRegistry } from '../models/registry';
import type { PredictRequest } from './codec';
import { failedPrecondition, invalidArgument } from './errors';

/** What admission reads of a loaded version (a ModelInstance). */
export interface ServedModel {
  name: string;
  inputWidth: number;
  /** The largest batch_size a request may carry (MAX_BATCH_SIZE, or 1 for a model that does not batch). */
  maxRows: number;
  /** maxRows and what sets it, for the refusal's message ("MAX_BATCH_SIZE 256"). */
  maxRowsLimit: string;
}

/**
 * The version that serves the request; throws a ServingError (malformed, NOT_FOUND, UNAVAILABLE, or
 * FAILED_PRECONDITION for a model that ModelService cannot carry).
 */
export function route(request: PredictRequest, models: ModelRegistry): ModelInstance {
  if (request.decodeError !== null) throw invalidArgument(`malformed PredictRequest: ${request.decodeError}`);
  const instance = models.resolve(request.modelName, request.modelVersion);
  if (instance.seed === null) throw failedPrecondition(`ModelService cannot serve model "${instance.name}": ${instance.seedRefusal}`);
  return instance;
}

/** Returns the request's row count; throws a ServingError naming what is wrong. */
export function admit(request: PredictRequest, model: ServedModel): number {
  if (request.batchSize < 0) throw invalidArgument(`batch_size must be 0 or more, got ${request.batchSize}`);
  if (request.batchSize > model.maxRows) {
    throw invalidArgument(`batch_size ${request.batchSize} exceeds ${model.maxRowsLimit}`);
  }
  const rows = request.batchSize === 0 ? 1 : request.batchSize;
  const expected = rows * model.inputWidth;
  const count = request.featureCount;
  if (count === 0) {
    throw invalidArgument(`features is empty: expected ${expected} floats (${rows} x ${model.inputWidth})`);
  }
  if (count !== expected) {
    throw invalidArgument(
      `wrong feature count: expected ${expected} (${rows} row${rows === 1 ? '' : 's'} x ${model.inputWidth}), got ${count}`,
    );
  }
  const bad = firstNonFinite(request.featureBytes, count);
  if (bad >= 0) {
    const value = request.featureBytes.readFloatLE(bad * 4);
    throw invalidArgument(`features[${bad}] is ${value}: every feature must be a finite number`);
  }
  return rows;
}

const EXPONENT = 0x7f800000;

/** The index of the first NaN or infinite float32 (exponent bits all ones), or -1. */
function firstNonFinite(bytes: Buffer, count: number): number {
  if (bytes.byteOffset % 4 === 0) {
    // The usual case: the features sit 4-byte aligned in the message, so they can be read as words in place.
    const words = new Uint32Array(bytes.buffer, bytes.byteOffset, count);
    for (let i = 0; i < count; i++) if ((words[i] & EXPONENT) === EXPONENT) return i;
    return -1;
  }
  for (let i = 0; i < count; i++) if ((bytes.readUInt32LE(i * 4) & EXPONENT) === EXPONENT) return i;
  return -1;
}
