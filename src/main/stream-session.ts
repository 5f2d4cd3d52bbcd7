// One streaming call (StreamPredict or ModelStreamInfer): every message gets exactly one answer, in the order
// received, whatever batches and workers computed them. A bad message is answered in its own slot and the stream
// goes on. Each message is routed on its own (model name and version): one stream may mix models, and it stays open
// across reloads, its answers switching from the old version to the new exactly once. The wire protocol (how a
// message is admitted and how answers are encoded) is the StreamProtocol's; everything else is shared here.
//
// Flow control: the session stops reading (call.pause(), so HTTP/2 flow control pushes back on the client) while
//   - STREAM_WINDOW messages of this stream are unanswered, or
//   - a batcher's queue has no room (held slots wait for room rather than fail), or
//   - the client does not read its answers (write() returned false; reading resumes on 'drain').
import { status, type ServerDuplexStream } from '@grpc/grpc-js';
import { SpanStatusCode, type Span, type SpanContext } from '@opentelemetry/api';
import { performance } from 'node:perf_hooks';
import type { BatchFigures, BatchOutputs, BatchRequest } from '../batching/batcher';
import { RingQueue } from '../batching/queue';
import type { ModelInstance } from '../models/instance';
import { toServingError, type ServingError } from './errors';
import { clientDeadline, requestDeadline, SHUTTING_DOWN, type HandlerContext } from './handlers/context';

/** Messages of one stream that may be inside the server (queued, computing or unsent) before it stops reading. */
export const STREAM_WINDOW = 1024;

/** A message admitted by the protocol: the version that takes it and what its batcher needs. */
export interface Admitted<Extra> {
  target: ModelInstance;
  inputs: readonly Buffer[];
  rows: number;
  shapes: number[][] | null;
  /** The protocol's own per-message state (a v2 request's id and requested outputs). */
  extra: Extra;
  /** A deadline of the message's own (ms from receipt; Triton's `timeout`); Infinity for none. */
  timeoutMs: number;
}

export interface StreamProtocol<Req, Extra> {
  readonly service: string;
  readonly method: string;
  /** Routes and checks one message; throws a ServingError. Called again for a held message whose version left. */
  admit(request: Req, context: HandlerContext): Admitted<Extra>;
  /** The encoded answer of a message computed in `batch` (rows firstRow.. of `outputs`). */
  encodeAnswer(slot: StreamSlot<Req, Extra>, outputs: BatchOutputs, firstRow: number, batch: BatchFigures): Buffer;
  /** The encoded answer of a message that failed. */
  encodeFailure(slot: StreamSlot<Req, Extra>, error: ServingError): Buffer;
}

export class StreamSlot<Req, Extra> implements BatchRequest {
  enqueuedAt = 0;
  queued = false;
  cancelled = false;
  /** The encoded answer, once there is one; written when every slot before it has been. */
  response: Buffer | null = null;
  readonly spanContext: SpanContext | undefined;
  /** The version that takes it; null for a message refused before routing. Re-routed while held (see onRoom). */
  target: ModelInstance | null = null;
  inputs: readonly Buffer[] = [];
  rows = 0;
  shapes: number[][] | null = null;
  extra: Extra | null = null;
  deadline = Infinity;

  constructor(
    private readonly session: StreamSession<Req, Extra>,
    /** As the message arrived, for re-routing a held slot whose version began to unload. */
    readonly request: Req | null,
    readonly receivedAt: number,
    private readonly span: Span | null,
  ) {
    this.spanContext = span?.spanContext() ?? session.spanContext;
  }

  take(admitted: Admitted<Extra>): void {
    this.target = admitted.target;
    this.inputs = admitted.inputs;
    this.rows = admitted.rows;
    this.shapes = admitted.shapes;
    this.extra = admitted.extra;
  }

  complete(outputs: BatchOutputs, firstRow: number, batch: BatchFigures): void {
    this.response = this.session.protocol.encodeAnswer(this, outputs, firstRow, batch);
    this.session.answered(status.OK);
    this.span?.end();
    this.session.flush();
  }

  fail(error: ServingError): void {
    this.response = this.session.protocol.encodeFailure(this, error);
    this.session.answered(error.code);
    if (this.span !== null) {
      this.span.setStatus({ code: SpanStatusCode.ERROR, message: error.message });
      this.span.end();
    }
    this.session.flush();
  }
}

export class StreamSession<Req, Extra> {
  /** The client's deadline for the whole stream (Infinity: none; then REQUEST_TIMEOUT_MS applies per message). */
  private readonly clientDeadline: number;
  /** The stream's span; its messages' batches link to it (or to their own message spans). */
  readonly spanContext: SpanContext | undefined;
  private messages = 0;
  private readonly startedAt = performance.now();
  /** Every unanswered message, in arrival order. */
  private readonly slots = new RingQueue<StreamSlot<Req, Extra>>(64);
  /** Admitted slots waiting for room in their batcher's queue, in arrival order. */
  private readonly held = new RingQueue<StreamSlot<Req, Extra>>(16);
  private waitingForRoom = false;
  private writeBlocked = false;
  private clientDone = false;
  private closed = false;
  private draining = false;
  private paused = false;

  constructor(
    private readonly call: ServerDuplexStream<Req, Buffer>,
    private readonly context: HandlerContext,
    private readonly sessions: Set<Drainable>,
    readonly protocol: StreamProtocol<Req, Extra>,
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

  private unexpected = (cause: unknown) =>
    this.context.telemetry.logUnexpected(this.protocol.method, cause, this.spanContext, this.protocol.service);

  private readonly onData = (request: Req): void => {
    this.context.counters.streamMessagesRead++;
    if (this.closed) return;
    const receivedAt = performance.now();
    let slot: StreamSlot<Req, Extra>;
    try {
      const admitted = this.protocol.admit(request, this.context);
      const span = this.context.telemetry.startMessageSpan(this.spanContext, this.messages++);
      slot = new StreamSlot(this, request, receivedAt, span);
      slot.take(admitted);
      const own = admitted.timeoutMs === Infinity ? Infinity : receivedAt + admitted.timeoutMs;
      slot.deadline = Math.min(own, requestDeadline(this.clientDeadline, receivedAt, this.context.requestTimeoutMs));
      this.slots.push(slot);
      if (this.held.length > 0 || !admitted.target.batcher.enqueue(slot)) this.hold(slot);
    } catch (error) {
      slot = new StreamSlot(this, request, receivedAt, null);
      this.slots.push(slot);
      slot.fail(toServingError(error, this.unexpected));
    }
    this.updateFlow();
  };

  private hold(slot: StreamSlot<Req, Extra>): void {
    this.held.push(slot);
    if (!this.waitingForRoom) {
      this.waitingForRoom = true;
      this.held.peek()!.target!.batcher.onceRoom(this.onRoom);
    }
  }

  // Held slots are the tail of the stream (once one is held, every later message is held behind it), so they go
  // to their batchers in order. A held slot whose version began to unload was never accepted by it: it is admitted
  // again as its message asked, which can only move it to a newer version than the slots before it took.
  private readonly onRoom = (): void => {
    this.waitingForRoom = false;
    if (this.closed) return;
    for (let slot = this.held.peek(); slot !== undefined; slot = this.held.peek()) {
      if (!slot.target!.accepting) {
        try {
          slot.take(this.protocol.admit(slot.request!, this.context));
        } catch (error) {
          this.held.shift();
          slot.fail(toServingError(error, this.unexpected));
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
    this.context.telemetry.countAnswer(this.protocol.method, code, this.protocol.service);
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
      this.context.telemetry.callEnded(this.protocol.method, status.OK, performance.now() - this.startedAt, '', this.spanContext, 0, this.protocol.service);
    }
  }

  private readonly onClosed = (): void => {
    if (this.closed) return;
    this.closed = true;
    this.sessions.delete(this);
    const ended = performance.now() - this.startedAt;
    this.context.telemetry.callEnded(
      this.protocol.method,
      status.CANCELLED,
      ended,
      'cancelled by the client or its deadline',
      this.spanContext,
      0,
      this.protocol.service,
    );
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

/** What the server keeps of an open stream, whatever its protocol: to drain it at shutdown, and to count it. */
export interface Drainable {
  drain(): void;
  readonly unanswered: number;
}

/** A streaming handler over `protocol`: refuses new streams while the server drains. */
export function streamHandler<Req, Extra>(context: HandlerContext, sessions: Set<Drainable>, protocol: StreamProtocol<Req, Extra>) {
  return (call: ServerDuplexStream<Req, Buffer>): void => {
    if (context.isDraining()) {
      call.emit('error', { code: status.UNAVAILABLE, details: SHUTTING_DOWN });
      return;
    }
    new StreamSession(call, context, sessions, protocol);
  };
}
