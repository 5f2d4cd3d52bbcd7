// `node dist/bench/trace-interceptor.js`: what the tracing interceptor costs a call by itself, in nanoseconds of the
// gRPC thread's CPU time (from /proc/self/task/<pid>/schedstat; the span export thread's work is not counted), on a
// stand-in for grpc-js's base call (no network, no handler work), with 256 calls in flight so that what a call
// allocates lives as long as it would while its request waits for a batch (and is paid for in GC as there).
// Each setting runs in a process of its own (the SDK registers global providers); the figures are medians of 7
// blocks of 100,000 calls. The end-to-end cost is in `npm run bench:compare -- --only telemetry`; this isolates the
// interceptor's share from the noise of a shared machine.
//
//   node dist/bench/trace-interceptor.js            every setting, one line each
//   node dist/bench/trace-interceptor.js --one ...  (internal) one setting
import * as grpc from '@grpc/grpc-js';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import pino from 'pino';
import { loadConfig } from '../src/main/config';
import { Telemetry } from '../src/main/telemetry';

const IN_FLIGHT = 256;
const CALLS_PER_BLOCK = 100_000;
const BLOCKS = 7;
const PATH = '/inference.ModelService/Predict';
const OK = { code: grpc.status.OK, details: 'OK', metadata: null };

/** CPU time of this process's main thread, in ns (schedstat's first field). */
const mainThreadNs = () => Number(readFileSync(`/proc/self/task/${process.pid}/schedstat`, 'utf8').split(' ')[0]);

type ServerCall = grpc.ServerInterceptingCallInterface;
type CallListener = Parameters<ServerCall['start']>[0];

/** What grpc-js's BaseServerInterceptingCall does for a unary call, minus the HTTP/2 stream. */
class BaseCall implements ServerCall {
  private listener: CallListener | null = null;
  constructor(private readonly metadata: grpc.Metadata) {}
  start(listener: CallListener): void {
    this.listener = listener;
    listener.onReceiveMetadata(this.metadata);
  }
  startRead(): void {
    this.listener!.onReceiveMessage(Buffer.alloc(0));
    this.listener!.onReceiveHalfClose();
  }
  sendMetadata(): void {}
  sendMessage(_message: unknown, callback: () => void): void {
    callback();
  }
  sendStatus(): void {
    this.listener!.onCancel(); // grpc-js tells the listener once the stream closes, after every call
  }
  getPeer(): string {
    return '127.0.0.1:50000';
  }
  getDeadline(): grpc.Deadline {
    return Infinity;
  }
  getHost(): string {
    return '127.0.0.1';
  }
  getAuthContext(): ReturnType<ServerCall['getAuthContext']> {
    return {};
  }
  getConnectionInfo(): ReturnType<ServerCall['getConnectionInfo']> {
    return {};
  }
  getMetricsRecorder(): ReturnType<ServerCall['getMetricsRecorder']> {
    throw new Error('not used');
  }
}

/** One setting: ns of CPU a call, with the interceptor or without. */
async function measure(sampler: string, ratio: string, traceparent: boolean, intercept: boolean): Promise<number> {
  // In the environment too: the SDK, and the span export thread, read OTEL_* from there themselves.
  Object.assign(process.env, {
    OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:9', // nothing listens: the exporter drops what it gets
    OTEL_TRACES_SAMPLER: sampler,
    OTEL_TRACES_SAMPLER_ARG: ratio,
    METRICS_PORT: '0',
  });
  const config = loadConfig(process.env);
  const telemetry = new Telemetry(config, pino({ level: 'silent' }));
  const interceptors = intercept ? [telemetry.interceptor] : [];
  const descriptor = { path: PATH, requestStream: false, responseStream: false } as grpc.ServerMethodDefinition<unknown, unknown>;
  const finishers: Array<(() => void) | null> = new Array(IN_FLIGHT).fill(null);
  let slot = 0;
  let spans = 0;
  // Callers' traceparents, made beforehand: a caller's header is not the server's work.
  const parents = Array.from({ length: IN_FLIGHT }, (_, i) => `00-${i.toString(16).padStart(8, '0')}4bf92f3577b34da6a3ce929d-00f067aa0ba902b7-01`);
  const oneCall = () => {
    finishers[slot]?.();
    const metadata = new grpc.Metadata();
    metadata.set('user-agent', 'h2load');
    if (traceparent) metadata.set('traceparent', parents[slot]);
    const call: ServerCall = interceptors.reduce<ServerCall>((next, interceptor) => interceptor(descriptor, next), new BaseCall(metadata));
    let received: grpc.Metadata;
    call.start({
      onReceiveMetadata: (m) => {
        received = m;
        call.startRead();
      },
      onReceiveMessage: () => {
        if (telemetry.spanContextOf(received) !== undefined) spans++;
      },
      onReceiveHalfClose: () => {
        finishers[slot] = () => {
          call.sendMessage({}, () => {});
          call.sendStatus(OK);
        };
        slot = (slot + 1) % IN_FLIGHT;
      },
      onCancel: () => {},
    });
  };
  for (let i = 0; i < CALLS_PER_BLOCK; i++) oneCall(); // warm-up
  const blocks: number[] = [];
  for (let block = 0; block < BLOCKS; block++) {
    const before = mainThreadNs();
    for (let i = 0; i < CALLS_PER_BLOCK; i++) oneCall();
    blocks.push((mainThreadNs() - before) / CALLS_PER_BLOCK);
    await new Promise((resolve) => setTimeout(resolve, 20)); // the export thread's receipts
  }
  if (intercept && sampler === 'always_on' && spans === 0) throw new Error('no call was traced');
  await telemetry.shutdown();
  return blocks.sort((a, b) => a - b)[Math.floor(BLOCKS / 2)];
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { one: { type: 'string', multiple: true } } });
  if (values.one) {
    const [sampler, ratio, traceparent, intercept] = values.one;
    const ns = await measure(sampler, ratio, traceparent === 'parent', intercept === 'intercept');
    process.stdout.write(`${ns}\n`);
    process.exit(0); // the export thread's exporter would otherwise retry its unreachable endpoint
  }
  const settings: Array<[string, string, string, string]> = [
    ['no interceptor (tracing off)', 'always_on', '1', 'root'],
    ['no interceptor (tracing off), traceparent sent', 'always_on', '1', 'parent'],
    ['always_off', 'always_off', '1', 'root'],
    ['parentbased_traceidratio 0.01, no traceparent', 'parentbased_traceidratio', '0.01', 'root'],
    ['always_on, no traceparent', 'always_on', '1', 'root'],
    ['parentbased_always_on, sampled traceparent', 'parentbased_always_on', '1', 'parent'],
  ];
  for (const [label, sampler, ratio, parent] of settings) {
    const intercept = label.startsWith('no interceptor') ? 'none' : 'intercept';
    const args = ['--one', sampler, '--one', ratio, '--one', parent, '--one', intercept];
    const ns = Number(execFileSync(process.execPath, [__filename, ...args], { encoding: 'utf8' }).trim());
    console.log(`${label.padEnd(48)} ${ns.toFixed(0).padStart(6)} ns a call`);
  }
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
