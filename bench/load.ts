// The load generator: closed loop (a fixed number of requests in flight) and open loop (a request rate, constant or
// Poisson), for Predict and StreamPredict, or the Open Inference Protocol's ModelInfer and ModelStreamInfer (v2.ts).
// It sends pre-encoded request bytes and reads only the few response bytes it needs, so that the client spends as
// little of the shared CPU as it can. In open loop, latency counts from the intended send time, so a server that
// stalls cannot hide its tail (no coordinated omission).
import { status } from '@grpc/grpc-js';
import * as hdr from 'hdr-histogram-js';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { Worker } from 'node:worker_threads';
import { frame, frameGzip, GrpcH2Client, type CallEnd } from './h2';
import type { Bursts, TickerMessage, TickerOptions } from './ticker';
import { encodeInferRequests, MODEL_INFER, MODEL_STREAM_INFER, streamAnswerOk } from './v2';
import { WIRE_FIXED32, WIRE_VARINT, WireReader } from './wire';

export type Rpc = 'unary' | 'stream';
/** seed: inference.ModelService (Predict, StreamPredict); v2: GRPCInferenceService (ModelInfer, ModelStreamInfer). */
export type Api = 'seed' | 'v2';

export interface LoadSpec {
  target: string;
  /** Which service's calls to send (default seed). */
  api?: Api;
  rpc: Rpc;
  /** Closed loop: requests in flight (for streams: spread over `streams`). Ignored when `rate` is set. */
  concurrency: number;
  /** Open loop: requests a second; 0 means closed loop. */
  rate: number;
  /** Open loop: exponential gaps (Poisson arrivals) rather than constant ones. */
  poisson: boolean;
  /** Open loop: on/off bursts of arrivals at the same mean rate (bench/ticker.ts). */
  bursts?: Bursts;
  /** StreamPredict calls the load is spread over. */
  streams: number;
  rowsPerRequest: number;
  /** Send every request gzip-compressed (pre-compressed once: this measures the server's side and the bytes). */
  gzip?: boolean;
  /** Row width of the served model (features per row). */
  width: number;
  warmupS: number;
  durationS: number;
  /** The server's process id, when it runs on this machine: its CPU time over the measured seconds is reported. */
  serverPid?: number;
  /** Called about 4 times a second with the fraction done and the running request rate. */
  onProgress?: (fraction: number, requestsPerSecond: number) => void;
}

export interface LoadResult {
  spec: Omit<LoadSpec, 'onProgress'>;
  requests: number;
  seconds: number;
  requestsPerSecond: number;
  rowsPerSecond: number;
  /** Bytes of one request on the wire (gRPC frame included). */
  requestBytes: number;
  latencyMs: { p50: number; p90: number; p99: number; p999: number; max: number; mean: number };
  errors: Record<string, number>;
  /**
   * CPU time (user + system) the server process spent per answer over the measured seconds, in µs, from
   * /proc/<serverPid>/stat; null without serverPid. Counts every answer, failures included, as they cost CPU too.
   */
  serverCpuUsPerRequest: number | null;
  /**
   * Server-side figures, from the answers' fields (batch rows, queue and compute also from unary trailers); absent
   * where the server sends none, as for ModelInfer and ModelStreamInfer. `serverUs`: the answer's latency_ms, the
   * server's own time from receipt of the request to its result, so the client-observed latency minus this is
   * transport, scheduling and the client.
   */
  server: {
    batchRowsMean: number;
    queueUsP50: number;
    queueUsP99: number;
    computeUsP50: number;
    computeUsP99: number;
    serverUsP50: number;
    serverUsP99: number;
  } | null;
}

const PREDICT = '/inference.ModelService/Predict';
const STREAM_PREDICT = '/inference.ModelService/StreamPredict';

/** How one service's calls go on the wire: their paths, their requests, and how an answer's bytes are read. */
interface ApiWire {
  unaryPath: string;
  streamPath: string;
  encode(width: number, rows: number, gzip: boolean): Buffer[];
  /**
   * Reads what the generator needs of one answer into `figures` (see readFigures; zeros where the answer has none);
   * false when the answer reports a failure. Null: nothing to read (a unary call's status is in its trailers).
   */
  unaryAnswer: ((bytes: Buffer, figures: number[]) => boolean) | null;
  streamAnswer: (bytes: Buffer, figures: number[]) => boolean;
}

const WIRES: Record<Api, ApiWire> = {
  seed: {
    unaryPath: PREDICT,
    streamPath: STREAM_PREDICT,
    encode: (width, rows, gzip) => encodeRequests(width, rows, 64, gzip),
    // Batch rows, queue and compute come from the trailers; the server's own latency only from the answer.
    unaryAnswer: readFigures,
    streamAnswer: readFigures,
  },
  v2: {
    unaryPath: MODEL_INFER,
    streamPath: MODEL_STREAM_INFER,
    encode: (width, rows, gzip) => encodeInferRequests(width, rows, 64, gzip),
    unaryAnswer: null,
    streamAnswer: (bytes) => streamAnswerOk(bytes),
  },
};

/** CPU time a process has used (user + system), in ms, from /proc (clock ticks of 10 ms). */
export function processCpuMs(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(fields[11]) + Number(fields[12])) * 10; // utime, stime: fields 14 and 15 of stat
}

/** Distinct pre-encoded, framed PredictRequests (packed features, batch_size), cycled through by the generator. */
export function encodeRequests(width: number, rows: number, variants = 64, gzip = false): Buffer[] {
  return Array.from({ length: variants }, (_, v) => {
    const floats = rows * width;
    const size = 2 + varintSize(floats * 4) + floats * 4 + (rows > 1 ? 1 + varintSize(rows) : 0);
    const out = Buffer.alloc(size);
    let at = 0;
    out[at++] = 0x0a;
    at = writeVarint(out, at, floats * 4);
    for (let i = 0; i < floats; i++) at = out.writeFloatLE(Math.sin(v * 31.7 + i * 0.37), at);
    if (rows > 1) {
      out[at++] = 0x10;
      at = writeVarint(out, at, rows);
    }
    return gzip ? frameGzip(out.subarray(0, at)) : frame(out.subarray(0, at));
  });
}

function varintSize(value: number): number {
  let size = 1;
  while (value >= 0x80) {
    value >>>= 7;
    size++;
  }
  return size;
}

function writeVarint(out: Buffer, at: number, value: number): number {
  while (value >= 0x80) {
    out[at++] = (value & 0x7f) | 0x80;
    value >>>= 7;
  }
  out[at++] = value;
  return at;
}

class Recorder {
  readonly latency = hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 120_000_000, numberOfSignificantValueDigits: 3 });
  readonly queueUs = hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 120_000_000, numberOfSignificantValueDigits: 2 });
  readonly computeUs = hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 120_000_000, numberOfSignificantValueDigits: 2 });
  readonly serverUs = hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 120_000_000, numberOfSignificantValueDigits: 2 });
  batchRowsSum = 0;
  figures = 0;
  readonly errors: Record<string, number> = {};
  measuring = false;
  done = 0;

  ok(latencyMs: number, batchRows: number, queueUs: number, computeUs: number, serverMs: number): void {
    this.done++;
    if (!this.measuring) return;
    this.latency.recordValue(Math.max(1, Math.round(latencyMs * 1000)));
    if (batchRows > 0) {
      this.batchRowsSum += batchRows;
      this.figures++;
      this.queueUs.recordValue(Math.max(1, queueUs));
      this.computeUs.recordValue(Math.max(1, computeUs));
      this.serverUs.recordValue(Math.max(1, Math.round(serverMs * 1000)));
    }
  }

  error(code: string): void {
    this.done++;
    if (this.measuring) this.errors[code] = (this.errors[code] ?? 0) + 1;
  }
}

const answerReader = new WireReader();

/**
 * Fields 4, 5, 6 (batch_rows, queue_us, compute_us) into `into[0..2]`, field 2 (latency_ms) into `into[3]`, and
 * whether field 7 (error) is absent.
 */
function readFigures(bytes: Buffer, into: number[]): boolean {
  into[0] = into[1] = into[2] = into[3] = 0;
  const reader = answerReader.reset(bytes);
  while (!reader.done) {
    const tag = reader.varint();
    const wire = tag & 7;
    const field = tag >>> 3;
    if (field === 7) return false;
    if (wire === WIRE_VARINT && field >= 4 && field <= 6) into[field - 4] = reader.varint();
    else if (wire === WIRE_FIXED32 && field === 2) {
      into[3] = bytes.readFloatLE(reader.at);
      reader.at += 4;
    } else if (!reader.skip(wire)) return true;
  }
  return true;
}

/**
 * Open loop: calls `send(intendedAt)` for every arrival as it falls due. The schedule is kept by a worker thread
 * (bench/ticker.ts) that sleeps with sub-millisecond precision, so a request goes out within ~0.1 ms of its time
 * instead of at the main thread's next millisecond timer; any lateness left still counts in its latency.
 */
export function openLoop(rate: number, poisson: boolean, isStopped: () => boolean, send: (intendedAt: number) => void, bursts?: Bursts): void {
  const stop = new Int32Array(new SharedArrayBuffer(4));
  const options: TickerOptions = { rate, poisson, minSleepMs: 0.1, stop, bursts };
  const ticker = new Worker(path.join(__dirname, 'ticker.js'), { workerData: options });
  ticker.unref();
  const origin = performance.timeOrigin;
  ticker.on('message', (due: TickerMessage) => {
    if (isStopped()) {
      Atomics.store(stop, 0, 1);
      Atomics.notify(stop, 0);
      return;
    }
    for (let i = 0; i < due.length; i++) send(due[i] - origin);
  });
}

export async function runLoad(spec: LoadSpec): Promise<LoadResult> {
  const client = new GrpcH2Client(spec.target, spec.gzip ?? false);
  await client.ready;
  const wire = WIRES[spec.api ?? 'seed'];
  const requests = wire.encode(spec.width, spec.rowsPerRequest, spec.gzip ?? false);
  const recorder = new Recorder();
  let stopped = false;
  const isStopped = () => stopped;
  const stop =
    spec.rpc === 'unary' ? unaryLoad(client, spec, wire, requests, recorder, isStopped) : streamLoad(client, spec, wire, requests, recorder, isStopped);
  const cpuNow = () => (spec.serverPid === undefined ? 0 : processCpuMs(spec.serverPid));

  const totalS = spec.warmupS + spec.durationS;
  const started = performance.now();
  let measureStart = 0;
  let measureDone = 0;
  let cpuAtStart = 0;
  await new Promise<void>((resolve) => {
    let lastDone = 0;
    let lastAt = started;
    const tick = setInterval(() => {
      const now = performance.now();
      const elapsedS = (now - started) / 1000;
      if (!recorder.measuring && elapsedS >= spec.warmupS) {
        recorder.measuring = true;
        measureStart = now;
        measureDone = recorder.done;
        cpuAtStart = cpuNow();
      }
      spec.onProgress?.(Math.min(1, elapsedS / totalS), ((recorder.done - lastDone) * 1000) / (now - lastAt));
      lastDone = recorder.done;
      lastAt = now;
      if (elapsedS >= totalS) {
        clearInterval(tick);
        resolve();
      }
    }, 250);
  });
  const seconds = (performance.now() - measureStart) / 1000;
  const completed = recorder.done - measureDone;
  const cpuMs = cpuNow() - cpuAtStart;
  recorder.measuring = false;
  stopped = true;
  await stop();
  client.close();

  const ms = (us: number) => us / 1000;
  const h = recorder.latency;
  const okCount = h.totalCount;
  const { onProgress: _ignored, ...plainSpec } = spec;
  return {
    spec: plainSpec,
    requests: completed,
    seconds,
    requestsPerSecond: okCount / seconds,
    requestBytes: requests[0].length,
    rowsPerSecond: (okCount * spec.rowsPerRequest) / seconds,
    latencyMs: {
      p50: ms(h.getValueAtPercentile(50)),
      p90: ms(h.getValueAtPercentile(90)),
      p99: ms(h.getValueAtPercentile(99)),
      p999: ms(h.getValueAtPercentile(99.9)),
      max: ms(h.maxValue),
      mean: ms(h.mean),
    },
    errors: recorder.errors,
    serverCpuUsPerRequest: spec.serverPid === undefined ? null : (cpuMs * 1000) / Math.max(1, completed),
    server:
      recorder.figures === 0
        ? null
        : {
            batchRowsMean: recorder.batchRowsSum / recorder.figures,
            queueUsP50: recorder.queueUs.getValueAtPercentile(50),
            queueUsP99: recorder.queueUs.getValueAtPercentile(99),
            computeUsP50: recorder.computeUs.getValueAtPercentile(50),
            computeUsP99: recorder.computeUs.getValueAtPercentile(99),
            serverUsP50: recorder.serverUs.getValueAtPercentile(50),
            serverUsP99: recorder.serverUs.getValueAtPercentile(99),
          },
  };
}

const statusName = (code: number) => (code === -1 ? 'BROKEN_STREAM' : (status[code] ?? String(code)));

/** Starts the load; returns a function that waits for the requests still in flight. */
function unaryLoad(
  client: GrpcH2Client,
  spec: LoadSpec,
  wire: ApiWire,
  requests: Buffer[],
  recorder: Recorder,
  isStopped: () => boolean,
): () => Promise<void> {
  let inFlight = 0;
  let sent = 0;
  let onIdle: (() => void) | null = null;
  const send = (intendedAt: number, closedLoop: boolean) => {
    inFlight++;
    const request = requests[sent++ % requests.length];
    const answer = [0, 0, 0, 0];
    const read = wire.unaryAnswer;
    const onAnswer = read === null ? ignoreAnswer : (bytes: Buffer) => read(bytes, answer);
    const onEnd = ({ code, trailers }: CallEnd) => {
      inFlight--;
      if (code !== 0) recorder.error(statusName(code));
      else {
        const figure = (key: string) => Number(trailers[key] ?? 0);
        recorder.ok(performance.now() - intendedAt, figure('x-batch-rows'), figure('x-queue-us'), figure('x-compute-us'), answer[3]);
      }
      if (closedLoop && !isStopped()) send(performance.now(), true);
      else if (inFlight === 0 && onIdle) onIdle();
    };
    client.open(wire.unaryPath, onAnswer, onEnd).end(request);
  };

  if (spec.rate > 0) {
    openLoop(spec.rate, spec.poisson, isStopped, (intendedAt) => send(intendedAt, false), spec.bursts);
  } else {
    for (let i = 0; i < spec.concurrency; i++) send(performance.now(), true);
  }
  return () => (inFlight === 0 ? Promise.resolve() : new Promise<void>((resolve) => (onIdle = resolve)));
}

const ignoreAnswer = () => {};

/** One StreamPredict or ModelStreamInfer call of the load: answers come back in order, so its send times form a FIFO. */
class StreamDriver {
  private readonly sentAt: number[] = [];
  private head = 0;
  private next: number;
  readonly ended: Promise<void>;
  private readonly call: ReturnType<GrpcH2Client['open']>;

  constructor(
    client: GrpcH2Client,
    wire: ApiWire,
    offset: number,
    private readonly requests: Buffer[],
    recorder: Recorder,
    closedLoop: () => boolean,
  ) {
    this.next = offset;
    const figures = [0, 0, 0, 0];
    let resolveEnded: () => void = () => {};
    this.ended = new Promise<void>((resolve) => (resolveEnded = resolve));
    const onMessage = (bytes: Buffer) => {
      const intendedAt = this.sentAt[this.head++];
      if (this.head > 4096) {
        this.sentAt.splice(0, this.head);
        this.head = 0;
      }
      if (wire.streamAnswer(bytes, figures)) recorder.ok(performance.now() - intendedAt, figures[0], figures[1], figures[2], figures[3]);
      else recorder.error('MESSAGE_ERROR');
      if (closedLoop()) this.send(performance.now());
    };
    this.call = client.open(wire.streamPath, onMessage, ({ code }) => {
      if (code !== 0) recorder.error(statusName(code));
      resolveEnded();
    });
  }

  send(intendedAt: number): void {
    this.sentAt.push(intendedAt);
    this.call.write(this.requests[this.next++ % this.requests.length]);
  }

  end(): Promise<void> {
    this.call.end();
    return this.ended;
  }
}

function streamLoad(
  client: GrpcH2Client,
  spec: LoadSpec,
  wire: ApiWire,
  requests: Buffer[],
  recorder: Recorder,
  isStopped: () => boolean,
): () => Promise<void> {
  const closedLoop = () => spec.rate === 0 && !isStopped();
  const drivers = Array.from({ length: spec.streams }, (_, s) => new StreamDriver(client, wire, s, requests, recorder, closedLoop));
  if (spec.rate > 0) {
    let turn = 0;
    openLoop(spec.rate, spec.poisson, isStopped, (intendedAt) => drivers[turn++ % drivers.length].send(intendedAt), spec.bursts);
  } else {
    const window = Math.max(1, Math.ceil(spec.concurrency / spec.streams));
    for (const driver of drivers) for (let i = 0; i < window; i++) driver.send(performance.now());
  }
  return async () => {
    await Promise.all(drivers.map((driver) => driver.end()));
  };
}
