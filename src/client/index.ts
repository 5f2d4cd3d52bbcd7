// A typed TypeScript client for tickserve: Predict, StreamPredict (async-iterable in, async-iterable out, with
// backpressure both ways) and health, over one or more channels.
//
// Spreading load over replicas, two ways:
//   - one target naming many addresses (`dns:///tickserve-headless:50051`, `ipv4:10.0.0.1:50051,10.0.0.2:50051`):
//     one channel whose round_robin load-balancing policy sends each call to the next ready address;
//   - `poolSize` > 1: that many channels (so that many HTTP/2 connections), used round-robin call by call.
// Every call has a deadline unless told otherwise; UNAVAILABLE (refused before anything ran: the server is
// draining, or the address is down) is retried with backoff by grpc's own retry policy, nothing else is.
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { protoPath as healthProtoPath } from 'grpc-health-check';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { RingQueue } from '../batching/queue';
import { bidiStream } from './bidi';
import { channelOptions, checkHeaders, metadataOf, serviceConfig as serviceConfigFor, type Headers, type RetryOptions } from './channel';

export { StreamEndedEarlyError } from './bidi';
export { DEFAULT_RETRY, type Headers, type RetryOptions } from './channel';

const PROTO_PATH = path.resolve(__dirname, '..', '..', '..', 'proto', 'model_service.proto');
/** The services whose calls are retried (UNAVAILABLE only). */
const SERVICES = ['inference.ModelService', 'grpc.health.v1.Health'];

export interface ClientOptions {
  /** `host:port`, or a grpc target naming many addresses: `dns:///name:port`, `ipv4:a:p,b:p`. */
  target: string;
  /** Channels (connections) to use round-robin. Default 1. */
  poolSize?: number;
  /** Deadline of each unary call in ms (default 1000); streams get one only if `streamDeadlineMs` is set. */
  deadlineMs?: number;
  streamDeadlineMs?: number;
  /** gzip every message of every call (for large payloads; see docs/BENCHMARKS.md for where it pays). */
  compression?: 'gzip' | 'none';
  credentials?: grpc.ChannelCredentials;
  /** Retries of UNAVAILABLE only; `false` for none. */
  retry?: RetryOptions | false;
  /** Extra grpc-js channel options. */
  channelOptions?: grpc.ChannelOptions;
  /** Sent as gRPC metadata on every call (keys lower-case; a call's own metadata is added after them). */
  headers?: Headers;
}

export interface PredictInput {
  /** `batchSize` rows of features, row-major. */
  features: ArrayLike<number>;
  batchSize?: number;
  /** The model to run (PredictRequest.model_name); empty: the server's default model. */
  modelName?: string;
  modelVersion?: string;
}

export interface Prediction {
  /** One row of outputs per input row, row-major. */
  predictions: number[];
  /** The server's time, from its receipt of the request to the result. */
  latencyMs: number;
  /**
   * This client's time, from writing the request (the call, for a unary one) to reading its answer: the server's
   * time plus transport and the queues on both sides.
   */
  roundTripMs: number;
  modelVersion: string;
  batchRows: number;
  queueUs: number;
  computeUs: number;
  /** Set on a stream answer whose message failed (the stream goes on); never set on a unary answer. */
  error: { code: grpc.status; message: string } | null;
}

export type ServingStatus = 'UNKNOWN' | 'SERVING' | 'NOT_SERVING' | 'SERVICE_UNKNOWN';

/** A PredictResponse as @grpc/proto-loader decodes it (keepCase, arrays, defaults). */
export interface WireReply {
  predictions: number[];
  latency_ms: number;
  model_version: string;
  batch_rows: number;
  queue_us: number;
  compute_us: number;
  error: { code: number; message: string } | null;
}

const definition = protoLoader.loadSync([PROTO_PATH, healthProtoPath], { keepCase: true, arrays: true, defaults: true, longs: Number, enums: String });
const loaded = grpc.loadPackageDefinition(definition);
const ModelService = (loaded.inference as grpc.GrpcObject).ModelService as grpc.ServiceClientConstructor;
const Health = (((loaded.grpc as grpc.GrpcObject).health as grpc.GrpcObject).v1 as grpc.GrpcObject).Health as grpc.ServiceClientConstructor;

/** The grpc service config of a TickClient: round_robin over the target's addresses, and the retry policy. */
export function serviceConfig(retry: RetryOptions | false): string {
  return serviceConfigFor(retry, SERVICES);
}

function toPrediction(reply: WireReply, roundTripMs: number): Prediction {
  return {
    predictions: reply.predictions,
    latencyMs: reply.latency_ms,
    roundTripMs,
    modelVersion: reply.model_version,
    batchRows: reply.batch_rows,
    queueUs: reply.queue_us,
    computeUs: reply.compute_us,
    error: reply.error && reply.error.code !== 0 ? { code: reply.error.code, message: reply.error.message } : null,
  };
}

function toWire(input: PredictInput) {
  return {
    features: Array.from(input.features),
    batch_size: input.batchSize ?? 0,
    model_version: input.modelVersion ?? '',
    model_name: input.modelName ?? '',
  };
}

export class TickClient {
  private readonly channels: grpc.Client[];
  private readonly health: grpc.Client;
  private next = 0;
  private readonly deadlineMs: number;
  private readonly streamDeadlineMs: number | undefined;
  private readonly headers: Headers;

  constructor(options: ClientOptions) {
    const credentials = options.credentials ?? grpc.credentials.createInsecure();
    this.headers = options.headers ?? {};
    checkHeaders(this.headers);
    const channelSettings = channelOptions(options, SERVICES);
    const poolSize = Math.max(1, options.poolSize ?? 1);
    // Distinct channel options keep grpc-js from sharing one connection between the pool's channels.
    this.channels = Array.from({ length: poolSize }, (_, i) =>
      new ModelService(options.target, credentials, { ...channelSettings, 'tickserve.pool_index': i }),
    );
    this.health = new Health(options.target, credentials, channelSettings);
    this.deadlineMs = options.deadlineMs ?? 1000;
    this.streamDeadlineMs = options.streamDeadlineMs;
  }

  private channel(): grpc.Client & Record<string, Function> {
    const channel = this.channels[this.next];
    this.next = (this.next + 1) % this.channels.length;
    return channel as grpc.Client & Record<string, Function>;
  }

  /** One prediction; rejects with the call's grpc.ServiceError (code, details) on failure. */
  predict(input: PredictInput, options: { deadlineMs?: number; metadata?: grpc.Metadata } = {}): Promise<Prediction> {
    const deadline = Date.now() + (options.deadlineMs ?? this.deadlineMs);
    const calledAt = performance.now();
    return new Promise((resolve, reject) => {
      this.channel().Predict(toWire(input), metadataOf(this.headers, {}, options.metadata), { deadline }, (error: grpc.ServiceError | null, reply: WireReply) =>
        error ? reject(error) : resolve(toPrediction(reply, performance.now() - calledAt)),
      );
    });
  }

  /**
   * Streams `inputs` through one StreamPredict call and yields one answer per input, in order. Backpressure: inputs
   * are pulled only while the server keeps up (write() returning false waits for 'drain'), and answers are read
   * only as fast as the caller consumes them. Breaking out of the loop cancels the call.
   *
   * The stream ends when the server ends the call. A status other than OK is thrown as the call's ServiceError; an
   * OK before every input was answered (the server drains on shutdown: it answers what it has read, then ends) is
   * thrown as a StreamEndedEarlyError. Either comes after every answer received has been yielded.
   */
  async *stream(inputs: AsyncIterable<PredictInput> | Iterable<PredictInput>, options: { metadata?: grpc.Metadata } = {}): AsyncGenerator<Prediction> {
    const callOptions = this.streamDeadlineMs === undefined ? {} : { deadline: Date.now() + this.streamDeadlineMs };
    const call = this.channel().StreamPredict(metadataOf(this.headers, {}, options.metadata), callOptions) as grpc.ClientDuplexStream<object, WireReply>;
    // When each unanswered input was written; answers come in input order, so the head is the next one answered.
    const writtenAt = new RingQueue<number>(64);
    const encode = (input: PredictInput) => {
      writtenAt.push(performance.now());
      return toWire(input);
    };
    for await (const reply of bidiStream(call, inputs, encode)) yield toPrediction(reply, performance.now() - writtenAt.shift()!);
  }

  /** grpc.health.v1 Check: the serving status of `service` ("" for the whole server). */
  healthCheck(service = '', deadlineMs = this.deadlineMs): Promise<ServingStatus> {
    return new Promise((resolve, reject) => {
      (this.health as grpc.Client & Record<string, Function>).Check({ service }, metadataOf(this.headers), { deadline: Date.now() + deadlineMs }, (error: grpc.ServiceError | null, reply: { status: ServingStatus }) =>
        error ? reject(error) : resolve(reply.status),
      );
    });
  }

  /** Resolves once every channel is connected, or rejects after `timeoutMs`. */
  async waitForReady(timeoutMs = 5000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    await Promise.all(this.channels.map((c) => new Promise<void>((resolve, reject) => c.waitForReady(deadline, (e) => (e ? reject(e) : resolve())))));
  }

  close(): void {
    for (const channel of this.channels) channel.close();
    this.health.close();
  }
}
