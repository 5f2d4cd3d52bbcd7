// A worker's batch handler: one ONNX Runtime session, made once; each task is a batch descriptor (slab index, rows,
// ticket). Used by the worker entry (onnx-worker.ts) and by the test fixtures that wrap it with faults.
import { threadId } from 'node:worker_threads';
import { performance } from 'node:perf_hooks';
import * as ort from 'onnxruntime-node';
import { claimSlab, markStarted, slabViews, startsView, takeWorkerSlot, unclaimSlab, type TaskStarts } from '../batching/slab';
import { ELEMENT_BYTES, ORT_TYPES, packBytesElements, type Datatype } from '../models/tensor';
import { outputShapeError } from './model-info';
import { deviceOf, type BatchDone, type BatchTask, type MessageOutput, type WorkerInit } from './protocol';
import { openSession } from './session';

export type BatchHandler = (task: BatchTask) => Promise<BatchDone>;

/** The running worker's id (taken once at start) and thread, for every answer. */
interface WorkerIdentity {
  worker: number;
  threadId: number;
}

/**
 * Wraps a batch handler so that an unexpected throw (a bug, not a model error: those come back as `error`) retires
 * the worker: the batch is answered with `fault`, the pool terminates this thread and piscina starts a fresh one.
 * A worker whose state is in doubt takes no more batches: until it is gone, any batch it is given is answered
 * `retired`, untouched, and the pool runs it elsewhere.
 */
export function retireOnFault(handler: BatchHandler, identity: WorkerIdentity, starts: TaskStarts): BatchHandler {
  let retired = false;
  return async (task) => {
    // The batch's WORKER_TIMEOUT_MS clock starts here, where the worker takes it (slab.ts, "Starts"). Ticket 0 is
    // the pool's close(), which has no clock and must not overwrite the record of a batch in flight.
    if (task.ticket !== 0) markStarted(starts, task.slab, task.ticket);
    if (retired) return { computeUs: 0, ...identity, retired: true };
    try {
      return await handler(task);
    } catch (error) {
      retired = true;
      return { computeUs: 0, ...identity, fault: error instanceof Error ? error.message : String(error) };
    }
  };
}

type TypedArray =
  | Uint8Array | Int8Array | Uint16Array | Int16Array | Uint32Array | Int32Array
  | BigUint64Array | BigInt64Array | Float32Array | Float64Array;

/** A typed view of `bytes` bytes of `buffer` for onnxruntime, by datatype (BOOL and FP16 as their raw integers). */
function typedView(datatype: Datatype, buffer: ArrayBuffer, bytes: number): TypedArray {
  const count = bytes / ELEMENT_BYTES[datatype];
  switch (datatype) {
    case 'BOOL':
    case 'UINT8':
      return new Uint8Array(buffer, 0, count);
    case 'INT8':
      return new Int8Array(buffer, 0, count);
    case 'UINT16':
    case 'FP16':
      return new Uint16Array(buffer, 0, count);
    case 'INT16':
      return new Int16Array(buffer, 0, count);
    case 'UINT32':
      return new Uint32Array(buffer, 0, count);
    case 'INT32':
      return new Int32Array(buffer, 0, count);
    case 'UINT64':
      return new BigUint64Array(buffer, 0, count);
    case 'INT64':
      return new BigInt64Array(buffer, 0, count);
    case 'FP32':
      return new Float32Array(buffer, 0, count);
    case 'FP64':
      return new Float64Array(buffer, 0, count);
    case 'BYTES':
      throw new Error('BYTES has no typed view');
  }
}

/** A BYTES tensor's raw form (each element: 4-byte little-endian length, then its bytes) -> strings. */
function decodeStrings(raw: Buffer): string[] {
  const strings: string[] = [];
  for (let at = 0; at + 4 <= raw.length; ) {
    const length = raw.readUInt32LE(at);
    strings.push(raw.toString('utf8', at + 4, at + 4 + length));
    at += 4 + length;
  }
  return strings;
}

const encodeStrings = (strings: readonly string[]): Uint8Array => packBytesElements(strings.map((s) => Buffer.from(s, 'utf8')));

export async function startWorker(init: WorkerInit): Promise<{ handler: BatchHandler; identity: WorkerIdentity; starts: TaskStarts }> {
  const identity = { worker: takeWorkerSlot(init.workerSlots, threadId), threadId };
  const device = deviceOf(init.deviceIds, identity.worker);
  const session = await openSession(init.modelPath, init.executionProvider, init.intraOpThreads, device);
  const { layout } = init;
  const slabs = init.slabs.map((slab) => slabViews(slab, layout));
  const claims = new Int32Array(init.claims);
  const maxRows = layout.maxBatchRows;
  // onnxruntime-node refuses tensors over SharedArrayBuffer memory ("Invalid argument"), so the batch's rows are
  // copied into worker-private buffers first (8 KB costs well under a microsecond), one per input.
  const privates = init.inputs.map((_, i) => new ArrayBuffer(maxRows * layout.inputRowBytes[i]));
  const privateBytes = privates.map((buffer) => new Uint8Array(buffer));
  const fixed = init.inputs.every((t) => t.datatype !== 'BYTES' && t.dims.every((d) => d >= 0));
  // Fixed inputs: one feed per batch size, made on first use (the tensors' shapes carry the row count).
  const feeds: Array<Record<string, ort.Tensor> | undefined> = [];
  const feedFor = (rows: number): Record<string, ort.Tensor> => {
    let feed = feeds[rows];
    if (feed === undefined) {
      feed = {};
      init.inputs.forEach((tensor, i) => {
        const data = typedView(tensor.datatype, privates[i], rows * layout.inputRowBytes[i]);
        feed![tensor.name] = new ort.Tensor(ORT_TYPES[tensor.datatype] as ort.Tensor.Type, data, init.batches ? [rows, ...tensor.dims] : tensor.dims);
      });
      feeds[rows] = feed;
    }
    return feed;
  };
  // Variable inputs: a feed per batch, from the task's shapes and byte lengths.
  const variableFeed = (shapes: number[][], byteLengths: number[]): Record<string, ort.Tensor> => {
    const feed: Record<string, ort.Tensor> = {};
    init.inputs.forEach((tensor, i) => {
      const type = ORT_TYPES[tensor.datatype] as ort.Tensor.Type;
      feed[tensor.name] = tensor.datatype === 'BYTES'
        ? new ort.Tensor(type, decodeStrings(Buffer.from(privates[i], 0, byteLengths[i])), shapes[i])
        : new ort.Tensor(type, typedView(tensor.datatype, privates[i], byteLengths[i]), shapes[i]);
    });
    return feed;
  };
  const failed = (error: string): BatchDone => ({ computeUs: 0, ...identity, error });
  const revoked: BatchDone = { computeUs: 0, ...identity, revoked: true };

  /** Checks every output's shape; writes slab outputs into the slab (under the claim), returns the others. */
  const deliver = (results: ort.InferenceSession.OnnxValueMapType, slab: number, rows: number, ticket: number): BatchDone | Array<MessageOutput | null> | null => {
    for (const tensor of init.outputs) {
      const result = results[tensor.name];
      const wrongShape = outputShapeError(tensor.name, result.dims, rows, tensor.dims, init.batches);
      if (wrongShape !== null) return failed(wrongShape);
    }
    let messages: Array<MessageOutput | null> | null = null;
    if (!claimSlab(claims, slab, ticket)) return revoked;
    init.outputs.forEach((tensor, i) => {
      const result = results[tensor.name];
      if (layout.outputRowBytes[i] > 0) {
        const data = result.data as TypedArray;
        slabs[slab].outputs[i].set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength), 0);
      } else {
        messages ??= init.outputs.map(() => null);
        const data = tensor.datatype === 'BYTES'
          ? encodeStrings(result.data as string[])
          : Uint8Array.from(new Uint8Array((result.data as TypedArray).buffer, (result.data as TypedArray).byteOffset, (result.data as TypedArray).byteLength));
        messages[i] = { dims: result.dims.slice(), data };
      }
    });
    unclaimSlab(claims, slab, ticket);
    return messages;
  };

  // Warm-up, before the first task: the first run of each batch shape pays onnxruntime's allocations and planning.
  // A model that fails it (an error, or the wrong output shape for a batch size) fails every batch it is given,
  // with the reason, so that its load fails with it.
  let warmupFailure: string | null = null;
  try {
    for (const sample of fixed ? init.warmup : []) {
      for (let n = 0; n < sample.count; n++) {
        init.inputs.forEach((tensor, i) => {
          const rowBytes = layout.inputRowBytes[i];
          const bytes = privateBytes[i].subarray(0, sample.rows * rowBytes);
          const source = sample.inputs[i];
          if (source === 'zero') bytes.fill(0);
          else if (source === 'random') {
            // Random values of the tensor's own type: bytes for integers, [0, 1) for floats.
            if (tensor.datatype === 'FP32') new Float32Array(privates[i], 0, bytes.length / 4).forEach((_, k, a) => (a[k] = Math.random()));
            else if (tensor.datatype === 'FP64') new Float64Array(privates[i], 0, bytes.length / 8).forEach((_, k, a) => (a[k] = Math.random()));
            else if (tensor.datatype === 'BOOL') bytes.forEach((_, k, a) => (a[k] = Math.random() < 0.5 ? 0 : 1));
            else bytes.forEach((_, k, a) => (a[k] = Math.floor(Math.random() * 256)));
          } else for (let r = 0; r < sample.rows; r++) bytes.set(source, r * rowBytes);
        });
        const results = await session.run(feedFor(sample.rows));
        for (const tensor of init.outputs) {
          const wrongShape = outputShapeError(tensor.name, results[tensor.name].dims, sample.rows, tensor.dims, init.batches);
          if (wrongShape !== null) throw new Error(wrongShape);
        }
      }
    }
  } catch (error) {
    warmupFailure = `warm-up failed: ${error instanceof Error ? error.message : String(error)}`;
  }

  const handler = async ({ slab, rows, ticket, shapes, byteLengths }: BatchTask): Promise<BatchDone> => {
    if (warmupFailure !== null) return failed(warmupFailure);
    // An empty batch is a solo model's load check (instance.ts): reaching here, the session is open. There is
    // nothing to run: a model with variable dimensions or strings has no shape to feed but a request's.
    if (rows === 0) return { computeUs: 0, ...identity };
    const started = performance.now();
    const regions = slabs[slab].inputs;
    if (!claimSlab(claims, slab, ticket)) return revoked;
    for (let i = 0; i < regions.length; i++) {
      const length = byteLengths === undefined ? rows * layout.inputRowBytes[i] : byteLengths[i];
      privateBytes[i].set(regions[i].subarray(0, length));
    }
    unclaimSlab(claims, slab, ticket);
    let results: ort.InferenceSession.OnnxValueMapType;
    try {
      results = await session.run(shapes === undefined || byteLengths === undefined ? feedFor(rows) : variableFeed(shapes, byteLengths));
    } catch (error) {
      return failed(error instanceof Error ? error.message : String(error));
    }
    // The shapes, not only the counts: rows must line up one-to-one with the batch's input rows, or one caller's
    // rows would be answered to another.
    const delivered = deliver(results, slab, rows, ticket);
    if (delivered !== null && !Array.isArray(delivered)) return delivered;
    const done: BatchDone = { computeUs: (performance.now() - started) * 1000, ...identity };
    if (delivered !== null) done.outputs = delivered;
    return done;
  };
  return { handler, identity, starts: startsView(init.starts) };
}
