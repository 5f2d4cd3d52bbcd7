// The checks every request passes before it may reach the model. A request that fails one is answered with
// INVALID_ARGUMENT or NOT_FOUND and never enters the batcher.
import type { PredictRequest } from './codec';
import { invalidArgument, notFound } from './errors';

export interface ServedModel {
  name: string;
  version: string;
  /** The version as an encoded model_version field, copied into every answer. */
  versionField: Buffer;
  inputWidth: number;
  outputWidth: number;
  /** The largest batch_size a request may carry (MAX_BATCH_SIZE). */
  maxRows: number;
}

/** Returns the request's row count; throws a ServingError naming what is wrong. */
export function admit(request: PredictRequest, model: ServedModel): number {
  if (request.decodeError !== null) throw invalidArgument(`malformed PredictRequest: ${request.decodeError}`);
  if (request.modelVersion !== '' && request.modelVersion !== model.version) {
    throw notFound(`model_version "${request.modelVersion}" is not served; ${model.name} serves version "${model.version}"`);
  }
  if (request.batchSize < 0) throw invalidArgument(`batch_size must be 0 or more, got ${request.batchSize}`);
  if (request.batchSize > model.maxRows) {
    throw invalidArgument(`batch_size ${request.batchSize} exceeds MAX_BATCH_SIZE ${model.maxRows}`);
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
  const bytes = request.featureBytes;
  for (let at = 0; at < count * 4; at += 4) {
    // A float32 is NaN or infinite exactly when its exponent bits are all ones.
    if ((bytes.readUInt32LE(at) & 0x7f800000) === 0x7f800000) {
      throw invalidArgument(`features[${at / 4}] is ${bytes.readFloatLE(at)}: every feature must be a finite number`);
    }
  }
  return rows;
}
