// One error -> status mapping, with the cause of anything unexpected logged (message, stack, trace id) and never
// sent to the caller.
import * as grpc from '@grpc/grpc-js';
import { TraceFlags } from '@opentelemetry/api';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { describe, it } from 'node:test';
import pino from 'pino';
import { deadlineExceeded, internal, invalidArgument, notFound, resourceExhausted, ServingError, toServingError, unavailable } from '../src/main/errors';
import type { HandlerContext } from '../src/main/handlers/context';
import { predictHandler } from '../src/main/handlers/predict';
import { fileSpanContext, Telemetry } from '../src/main/telemetry';
import { testConfig } from './helpers/server';

describe('toServingError', () => {
  for (const [name, error, code] of [
    ['invalidArgument', invalidArgument('x'), grpc.status.INVALID_ARGUMENT],
    ['notFound', notFound('x'), grpc.status.NOT_FOUND],
    ['resourceExhausted', resourceExhausted('x'), grpc.status.RESOURCE_EXHAUSTED],
    ['unavailable', unavailable('x'), grpc.status.UNAVAILABLE],
    ['deadlineExceeded', deadlineExceeded('x'), grpc.status.DEADLINE_EXCEEDED],
    ['internal', internal('x'), grpc.status.INTERNAL],
  ] as const) {
    it(`${name}: passed through with its code and message, no cause logged`, () => {
      const logged: unknown[] = [];
      const mapped = toServingError(error, (cause) => logged.push(cause));
      assert.equal(mapped, error);
      assert.equal(mapped.code, code);
      assert.deepEqual(logged, []);
    });
  }

  it('anything else: UNKNOWN with a generic message; the cause goes to the log, not the caller', () => {
    const logged: unknown[] = [];
    const cause = new TypeError('secret internals');
    const mapped = toServingError(cause, (c) => logged.push(c));
    assert.ok(mapped instanceof ServingError);
    assert.equal(mapped.code, grpc.status.UNKNOWN);
    assert.equal(mapped.message, 'unexpected server error');
    assert.deepEqual(logged, [cause]);
  });
});

describe('an unexpected error in a handler', () => {
  it('is answered UNKNOWN, and logged with its message, stack and the call\'s trace id', () => {
    const lines: Record<string, unknown>[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _encoding, done) {
        lines.push(JSON.parse(chunk.toString()));
        done();
      },
    });
    const logger = pino({ level: 'info' }, sink);
    const config = testConfig({ OTEL_SDK_DISABLED: 'true' });
    const telemetry = new Telemetry(config, logger);
    const context = {
      batcher: {},
      model: {},
      requestTimeoutMs: 0,
      logger,
      isDraining: () => false,
      counters: { predictCalls: 0, streamMessagesRead: 0 },
      telemetry,
    } as unknown as HandlerContext;
    const metadata = new grpc.Metadata();
    const traceId = '0af7651916cd43dd8448eb211c80319c';
    fileSpanContext(metadata, { traceId, spanId: 'b7ad6b7169203331', traceFlags: TraceFlags.SAMPLED });
    // A request that is not a decoded PredictRequest: admission fails with a TypeError, a bug, not a bad request.
    const call = { request: null, metadata, getDeadline: () => Infinity, once: () => {} };
    let answer: Partial<grpc.StatusObject> | null = null;
    predictHandler(context)(call as never, (error) => (answer = error as Partial<grpc.StatusObject>));
    assert.deepEqual(answer, { code: grpc.status.UNKNOWN, details: 'unexpected server error' });
    const logged = lines.find((line) => line.msg === 'unexpected server error');
    assert.ok(logged, `no "unexpected server error" line in ${JSON.stringify(lines)}`);
    assert.equal(logged.trace_id, traceId);
    const err = logged.err as { type: string; message: string; stack: string };
    assert.equal(err.type, 'TypeError');
    assert.match(err.message, /null/);
    assert.match(err.stack, /at route/);
  });
});
