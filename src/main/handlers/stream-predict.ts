// StreamPredict: every message gets exactly one answer, in the order received, whatever batches and workers
// computed them. A bad message is answered in its own slot (error set, no predictions) and the stream goes on. Each
// message is routed on its own (model_name, model_version): one stream may mix models, and it stays open across
// reloads, its answers switching from the old version to the new exactly once.
//
// Flow control: the session stops reading (call.pause(), so HTTP/2 flow control pushes back on the client) while
//   - STREAM_WINDOW messages of this stream are unanswered, or
//   - a batcher's queue has no room (held slots wait for room rather than fail), or
//   - the client does not read its answers (write() returned false; reading resumes on 'drain').
import { status, type ServerDuplexStream } from '@grpc/grpc-js';
import { SpanStatusCode, type Span, type SpanContext } from '@opentelemetry/api';
import { performance } from 'node:perf_hooks';
import type { BatchFigures, BatchOutputs, BatchRequest } from '../../batching/batcher';
import { RingQueue } from '../../batching/queue';
import type { ModelInstance } from '../../models/instance';
import { admit, route } from '../admission';
import { encodeFailure, encodeResponse, type PredictRequest } from '../codec';
import { toServingError, type ServingError } from '../errors';
import { clientDeadline, requestDeadline, SHUTTING_DOWN, type HandlerContext } from './context';

/** Messages of one stream that may be inside the server (queued, computing or unsent) before it stops reading. */
export const STREAM_WINDOW = 1024;

const NO_BYTES: Buffer = Buffer.alloc(0);
const METHOD = 'StreamPredict';

type Call = ServerDuplexStream<PredictRequest, Buffer>;

class StreamSlot implements BatchRequest {
  enqueuedAt = 0;
  queued = false;
  cancelled = false;
  /** The encoded answer, once there is one; written when every slot before it has been. */
  response: Buffer | null = null;
  readonly spanContext: SpanContext | undefined;
  readonly inputs: readonly Buffer[];
  readonly shapes = null;

  constructor(
    private readonly session: StreamSession,
    /** The version that takes it; null for a message refused before routing. Re-routed while held (see onRoom). */
    public target: ModelInstance | null,
    /** As the message asked, for re-routing a held slot whose version began to unload. */
    readonly request: PredictRequest | null,
    featureBytes: Buffer,
    readonly rows: number,
    readonly deadline: number,
    private readonly receivedAt: number,
    private readonly span: Span | null,
  ) {
    this.spanContext = span?.spanContext() ?? session.spanContext;
    this.inputs = [featureBytes];
  }

  complete(outputs: BatchOutputs, firstRow: number, batch: BatchFigures): void {
    const served = this.target!.seed!.outputIndex;
    const rowBytes = outputs.rowBytes[served];
    const start = firstRow * rowBytes;
    this.response = encodeResponse(outputs.bytes[served], start, start + this.rows * rowBytes, {
      latencyMs: batch.finishedAt - this.receivedAt,
      versionField: this.target!.versionField,
      batchRows: batch.rows,
      queueUs: (batch.dispatchedAt - this.enqueuedAt) * 1000,
      computeUs: batch.computeUs,
      error: null,
    });
    this.session.answered(status.OK);
    this.span?.end();
    this.session.flush();
  }

  fail(error: ServingError): void {
    const latencyMs = performance.now() - this.receivedAt;
    this.response = encodeFailure(latencyMs, this.target?.versionField ?? NO_BYTES, { code: error.code, message: error.message });
    this.session.answered(error.code);
    if (this.span !== null) {
      this.span.setStatus({ code: SpanStatusCode.ERROR, message: error.message });
      this.span.end();
    }
    this.session.flush();
  }
}

class StreamSession {
  /** The client's deadline for the whole stream (Infinity: none; then REQUEST_TIMEOUT_MS applies per message). */
  private readonly clientDeadline: number;
  /** The stream's span; its messages' batches link to it (or to their own message spans). */
  readonly spanContext: SpanContext | undefined;
  private messages = 0;
  private readonly startedAt = performance.now();
  /** Every unanswered message, in arrival order. */
  private readonly slots = new RingQueue<StreamSlot>(64);
  /** Admitted slots waiting for room in the batcher's queue, in arrival order. */
  private readonly held = new RingQueue<StreamSlot>(16);
  private waitingForRoom = false;
  private writeBlocked = false;
  private clientDone = false;
  private closed = false;
  private draining = false;
  private paused = false;

  constructor(
    private readonly call: Call,
    private readonly context: HandlerContext,
    private readonly sessions: Set<StreamSession>,
  ) {
    this.clientDeadline = clientDeadline(call, performance.now());
    this.spanContext = context.telemetry.spanContextOf(call.metadata);
    sessions.add(this);
    call.on('data', this.onData);
    call.on('end', this.onEnd);
    call.on('drain', this.onDrain);
    call.on('cancelled', this.onClosed);
    call.on('error', this.onClosed);
  }

  /** Shutdown: read nothing more, answer what was read, then end the stream with OK. */
  drain(): void {
    this.draining = true;
    this.clientDone = true;
    this.updateFlow();
    this.endIfDone();
  }

  /** Messages read and not yet answered (queued, computing, or waiting for the slots before them). */
  get unanswered(): number {
    return this.slots.length;
  }

  private readonly onData = (request: PredictRequest): void => {
    this.context.counters.streamMessagesRead++;
    if (this.closed) return;
    const receivedAt = performance.now();
    let slot: StreamSlot;
    try {
      const target = route(request, this.context.models);
      const rows = admit(request, target);
      const span = this.context.telemetry.startMessageSpan(this.spanContext, this.messages++);
      const deadline = requestDeadline(this.clientDeadline, receivedAt, this.context.requestTimeoutMs);
      slot = new StreamSlot(this, target, request, request.featureBytes, rows, deadline, receivedAt, span);
      this.slots.push(slot);
      if (this.held.length > 0 || !target.batcher.enqueue(slot)) this.hold(slot);
    } catch (error) {
      slot = new StreamSlot(this, null, null, NO_BYTES, 0, Infinity, receivedAt, null);
      this.slots.push(slot);
      slot.fail(toServingError(error, (cause) => this.context.telemetry.logUnexpected(METHOD, cause, this.spanContext)));
    }
    this.updateFlow();
  };

  private hold(slot: StreamSlot): void {
    this.held.push(slot);
    if (!this.waitingForRoom) {
      this.waitingForRoom = true;
      this.held.peek()!.target!.batcher.onceRoom(this.onRoom);
    }
  }

  // Held slots are the tail of the stream (once one is held, every later message is held behind it), so they go
  // to their batchers in order. A held slot whose version began to unload was never accepted by it: it is routed
  // again as its message asked, which can only move it to a newer version than the slots before it took.
  private readonly onRoom = (): void => {
    this.waitingForRoom = false;
    if (this.closed) return;
    for (let slot = this.held.peek(); slot !== undefined; slot = this.held.peek()) {
      if (!slot.target!.accepting) {
        try {
          slot.target = route(slot.request!, this.context.models);
        } catch (error) {
          this.held.shift();
          slot.fail(toServingError(error, (cause) => this.context.telemetry.logUnexpected(METHOD, cause, this.spanContext)));
          continue;
        }
      }
      if (!slot.target!.batcher.enqueue(slot)) {
        this.waitingForRoom = true;
        slot.target!.batcher.onceRoom(this.onRoom);
        break;
      }
      this.held.shift();
    }
    this.updateFlow();
  };

  answered(code: status): void {
    this.context.telemetry.countAnswer(METHOD, code);
  }

  /** Writes every answered slot at the head of the stream, in order. */
  flush(): void {
    for (let slot = this.slots.peek(); slot?.response != null; slot = this.slots.peek()) {
      this.slots.shift();
      if (!this.closed && !this.call.write(slot.response)) this.writeBlocked = true;
    }
    this.updateFlow();
    this.endIfDone();
  }

  private readonly onDrain = (): void => {
    this.writeBlocked = false;
    this.updateFlow();
  };

  private readonly onEnd = (): void => {
    this.clientDone = true;
    this.endIfDone();
  };

  private endIfDone(): void {
    if (this.clientDone && !this.closed && this.slots.length === 0) {
      this.closed = true;
      this.sessions.delete(this);
      this.call.end();
      this.context.telemetry.callEnded(METHOD, status.OK, performance.now() - this.startedAt, '', this.spanContext);
    }
  }

  private readonly onClosed = (): void => {
    if (this.closed) return;
    this.closed = true;
    this.sessions.delete(this);
    const ended = performance.now() - this.startedAt;
    this.context.telemetry.callEnded(METHOD, status.CANCELLED, ended, 'cancelled by the client or its deadline', this.spanContext);
    for (let slot = this.slots.shift(); slot !== undefined; slot = this.slots.shift()) slot.target?.batcher.cancel(slot);
    while (this.held.shift() !== undefined);
  };

  private updateFlow(): void {
    const stop =
      this.draining || this.writeBlocked || this.held.length > 0 || this.slots.length >= STREAM_WINDOW;
    if (stop && !this.paused && !this.closed) {
      this.paused = true;
      this.call.pause();
    } else if (!stop && this.paused) {
      this.paused = false;
      this.call.resume();
    }
  }
}

export function streamPredictHandler(context: HandlerContext, sessions: Set<StreamSession>) {
  return (call: Call): void => {
    if (context.isDraining()) {
      call.emit('error', { code: status.UNAVAILABLE, details: SHUTTING_DOWN });
      return;
    }
    new StreamSession(call, context, sessions);
  };
}

export type { StreamSession };
