// `npm run bench:reload -- [options]`: the model repository's live reload, measured against the real server
// (dist/src/main/index.js) in a child process, with a repository of its own in a temporary folder. Two parts, on
// one server, one after the other:
//
// 1. Cycles under load. Each cycle renames a new version folder into the repository and sends SIGHUP; once the
//    server's log says the version is ready, it removes the previous version's folder and sends SIGHUP again; once
//    the log says that version is unloaded, it reads the server's VmRSS, VmHWM, threads and open descriptors from
//    /proc. A closed loop of Predict calls and one StreamPredict call run throughout; every call and message must be
//    answered OK. RSS growth is measured from after the first cycle to after the last.
// 2. Feed latency around a swap. One StreamPredict call fed at a constant rate (open loop, bench/ticker.ts), each
//    message's round trip timed from its intended send time to its answer. For each swap, the p99 of the messages
//    sent in the 5 s centred on the swap (the moment the log says the new version is ready: routing switches then,
//    and the old version's removal and unload follow within it) against the 5 s before those.
//
// With --trace-gc the server runs under node's --trace-gc, and the main thread's heap (committed, and what major
// GCs leave live) is reported beside RSS: RSS alone cannot tell garbage awaiting a major GC from memory kept.
//
// The model's config.pbtxt keeps every version (`version_policy: { all {} }`), so that adding a version and removing
// one are separate repository events, as the cycle is written; with Triton's default (latest 1) the old version would
// be unloaded at the swap itself. The results replace the "## Reload under load" section of docs/BENCHMARKS.md (or
// are appended as it; the rest of the file is left as it is) and go to docs/bench/reload.json.
import { status } from '@grpc/grpc-js';
import { spawn, type ChildProcess } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { integerValue, numberValue, runCli, usageErrors, UsageError } from '../src/client/args';
import { GrpcH2Client } from './h2';
import { encodeRequests, openLoop } from './load';
import { WIRE_LENGTH_DELIMITED, WireReader } from './wire';

const ROOT = path.resolve(__dirname, '..', '..');
const ENTRY = path.join(ROOT, 'dist', 'src', 'main', 'index.js');
const MODEL_FILE = path.join(ROOT, 'models', 'default.onnx');
const MODEL_NAME = 'reload';
/** Features a row of models/default.onnx. */
const WIDTH = 17;

/** Part 1's load: Predict calls kept in flight, and messages kept in flight on its one StreamPredict call. */
const UNARY_IN_FLIGHT = 4;
const STREAM_IN_FLIGHT = 4;
/** Part 1: load before the first cycle (RSS is read once at its end, as the baseline). */
const LOAD_WARMUP_MS = 2000;
/** Part 2: the feed before the first "before" window opens, and the length of each window compared. */
const FEED_WARMUP_MS = 2000;
const WINDOW_MS = 5000;
/**
 * A SIGHUP that arrives while a rescan is running joins that rescan (server.ts), which may already have read the
 * repository; a signal that shows no effect in the log within this long is sent again (and counted).
 */
const RESEND_AFTER_MS = 3000;
const MAX_SIGNALS = 5;
/** Longest a load or an unload may take before the run is called failed. */
const STEP_TIMEOUT_MS = 60_000;

const PREDICT = '/inference.ModelService/Predict';
const STREAM_PREDICT = '/inference.ModelService/StreamPredict';

export const USAGE = `usage: npm run bench:reload -- [options]

  --cycles N    load/unload cycles under load, RSS read after each (default 50; 0: skip this part)
  --swaps N     swaps during which a StreamPredict feed's latency is measured (default 5; 0: skip this part)
  --rate N      the feed's messages a second (default 1000)
  --out FILE    the Markdown report whose "## Reload under load" section is written (default docs/BENCHMARKS.md);
                the JSON goes to bench/reload.json beside it
  --trace-gc    run the server with node's --trace-gc and report its main thread's V8 heap beside RSS (committed
                after each cycle; major GCs, what they left live, their pauses); it only prints, it changes no GC
  -h, --help    this text

  It starts the built server (node dist/src/main/index.js) itself, on a free port, with a temporary repository.
  exit status: 0 measured (whether or not the targets were met: see the report); 1 the run failed; 2 a bad command line`;

export type ReloadCommand =
  | { command: 'help' }
  | { command: 'run'; cycles: number; swaps: number; rate: number; out: string; traceGc: boolean };

const OPTIONS = {
  cycles: { type: 'string', default: '50' },
  swaps: { type: 'string', default: '5' },
  rate: { type: 'string', default: '1000' },
  out: { type: 'string', default: path.join(ROOT, 'docs', 'BENCHMARKS.md') },
  'trace-gc': { type: 'boolean', default: false },
  help: { type: 'boolean', short: 'h', default: false },
} as const;

/** The command line, checked whole before anything starts; a UsageError says what is wrong with it. */
export function parseReloadArgs(args: string[]): ReloadCommand {
  const { values } = usageErrors(() => parseArgs({ args, options: OPTIONS, strict: true }));
  if (values.help) return { command: 'help' };
  const cycles = integerValue('cycles', values.cycles, 0);
  const swaps = integerValue('swaps', values.swaps, 0);
  if (cycles === 0 && swaps === 0) throw new UsageError('--cycles and --swaps are both 0: nothing to measure');
  const rate = numberValue('rate', values.rate, { above: 0 });
  return { command: 'run', cycles, swaps, rate, out: path.resolve(values.out), traceGc: values['trace-gc'] };
}

/**
 * `document` with its level-2 section `heading` (from that line to the next "## " line, or the end) replaced by
 * `section`, or with `section` appended when there is none. Everything else is kept byte for byte.
 */
export function replaceSection(document: string, heading: string, section: string): string {
  const lines = document.split('\n');
  const start = lines.findIndex((line) => line.trimEnd() === heading);
  const body = section.endsWith('\n') ? section : `${section}\n`;
  if (start < 0) return `${document}${document === '' || document.endsWith('\n') ? '' : '\n'}${document === '' ? '' : '\n'}${body}`;
  let end = lines.findIndex((line, i) => i > start && line.startsWith('## '));
  if (end < 0) end = lines.length;
  const before = lines.slice(0, start).join('\n');
  const after = lines.slice(end).join('\n');
  return `${before === '' ? '' : `${before}\n`}${body}${after === '' ? '' : `\n${after}`}`;
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, Math.max(0, ms)));

// ---------------------------------------------------------------------------------------------------------------
// The server, its log and its /proc figures

/** One JSON line of the server's log, with the time (bench clock, ms) it was read. */
interface LogLine {
  at: number;
  level: number;
  msg: string;
  model?: string;
  version?: string;
  seconds?: number;
  [field: string]: unknown;
}

/**
 * One GC of one of the server's V8 isolates, from a --trace-gc line such as
 * `[pid:0x5a3c] 15387 ms: Mark-Compact 45.3 (78.1) -> 18.9 (71.8) MB, 33.90 / 0.02 ms  (+ 36.4 ms in 34 steps ...`:
 * its kind (Scavenge: the young generation; Mark-Compact: a major GC, the whole heap), the heap's objects before and
 * after and the heap committed after (in parentheses), in MiB as V8 prints them, and the main pause in ms
 * (incremental marking steps before a Mark-Compact's pause not counted).
 */
export interface GcEvent {
  at: number;
  isolate: string;
  kind: string;
  beforeMiB: number;
  afterMiB: number;
  committedMiB: number;
  pauseMs: number;
}

const GC_LINE = /^\[\d+:(0x[0-9a-f]+)\]\s+[\d.]+ ms: ([A-Za-z-]+(?: \(reduce\))?) ([\d.]+) \(([\d.]+)\) -> ([\d.]+) \(([\d.]+)\) MB, ([\d.]+)/;

/** The GC a --trace-gc line reports; null for any other line. */
export function parseGcLine(text: string, at: number): GcEvent | null {
  const m = GC_LINE.exec(text);
  if (m === null) return null;
  return { at, isolate: m[1], kind: m[2], beforeMiB: Number(m[3]), afterMiB: Number(m[5]), committedMiB: Number(m[6]), pauseMs: Number(m[7]) };
}

const isMajor = (gc: GcEvent) => gc.kind.startsWith('Mark-Compact');
const MIB_IN_MB = 2 ** 20 / 1e6;

/** What one rescan did: its first SIGHUP (bench clock), the log line it waited for, and the signals it took. */
interface RescanOutcome {
  signalledAt: number;
  line: LogLine;
  signals: number;
}

class ServerProcess {
  readonly lines: LogLine[] = [];
  /** GCs of every isolate (main thread and workers), when the server runs with --trace-gc. */
  private readonly gcs: GcEvent[] = [];
  /** Per isolate, the first and last --trace-gc line seen (bench clock). */
  private readonly isolateSpan = new Map<string, { first: number; last: number }>();
  private readonly stderr: string[] = [];
  private waiters: Array<() => void> = [];
  readonly exited: Promise<number | null>;

  private constructor(private readonly child: ChildProcess) {
    let partial = '';
    child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
      const at = performance.now();
      const parts = (partial + chunk).split('\n');
      partial = parts.pop()!;
      for (const text of parts) if (text !== '') this.push(text, at);
    });
    child.stderr!.setEncoding('utf8').on('data', (chunk: string) => this.stderr.push(chunk));
    this.exited = new Promise((resolve) => child.once('exit', (code) => resolve(code)));
    child.once('exit', () => this.wake());
  }

  static start(repository: string, traceGc: boolean): ServerProcess {
    const child = spawn(process.execPath, [...(traceGc ? ['--trace-gc'] : []), ENTRY], {
      env: {
        ...process.env,
        HOST: '127.0.0.1',
        PORT: '0',
        MODEL_REPOSITORY: repository,
        MODEL_PATH: '',
        MODEL_CONTROL_MODE: 'none',
        DEFAULT_MODEL: '',
        LOG_LEVEL: 'info',
        // As the image runs it (Dockerfile): glibc's per-thread malloc arenas, one more for each worker thread a
        // reload starts, fragment; two arenas keep resident memory flat across reloads (6.0% over 50 cycles against
        // 11.5% with glibc's default, in two runs of this bench on the shared machine).
        MALLOC_ARENA_MAX: process.env.MALLOC_ARENA_MAX ?? '2',
        METRICS_PORT: '0',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const server = new ServerProcess(child);
    // A bench that dies must not leave its server behind.
    process.once('exit', () => child.kill('SIGKILL'));
    return server;
  }

  get pid(): number {
    return this.child.pid!;
  }

  /**
   * The main thread's GCs: those of the isolate traced over the longest span (a worker's isolate lives only as long
   * as its version).
   */
  mainThreadGcs(): GcEvent[] {
    let main = '';
    let longest = -1;
    for (const [isolate, { first, last }] of this.isolateSpan) {
      if (last - first > longest) [main, longest] = [isolate, last - first];
    }
    return this.gcs.filter((gc) => gc.isolate === main);
  }

  private push(text: string, at: number): void {
    let line: LogLine;
    try {
      line = { ...(JSON.parse(text) as LogLine), at };
    } catch {
      line = { at, level: 30, msg: text };
      const isolate = /^\[\d+:(0x[0-9a-f]+)\]/.exec(text)?.[1];
      if (isolate !== undefined) {
        const span = this.isolateSpan.get(isolate);
        if (span === undefined) this.isolateSpan.set(isolate, { first: at, last: at });
        else span.last = at;
        const gc = parseGcLine(text, at);
        if (gc !== null) this.gcs.push(gc);
      }
    }
    this.lines.push(line);
    this.wake();
  }

  private wake(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const wake of waiters) wake();
  }

  /** The first line from index `from` on that matches; null after `timeoutMs`. Throws if the server exits. */
  async waitFor(from: number, match: (line: LogLine) => boolean, timeoutMs: number): Promise<LogLine | null> {
    const deadline = performance.now() + timeoutMs;
    for (let i = from; ; ) {
      for (; i < this.lines.length; i++) if (match(this.lines[i])) return this.lines[i];
      if (this.child.exitCode !== null || this.child.signalCode !== null) {
        throw new Error(`the server exited (${this.child.exitCode ?? this.child.signalCode}): ${this.stderr.join('').trim()}`);
      }
      const left = deadline - performance.now();
      if (left <= 0) return null;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  /** Waits for the startup line ("tickserve serving ...") and returns the port it bound. */
  async listening(): Promise<number> {
    const line = await this.waitFor(0, (l) => l.msg.startsWith('tickserve serving'), STEP_TIMEOUT_MS);
    if (line === null) throw new Error(`the server did not start: ${this.stderr.join('').trim()}`);
    return (line.config as { port: number }).port;
  }

  /**
   * SIGHUP, then waits for `done`. The signal is sent again while nothing of this rescan (`started`) shows in the
   * log within RESEND_AFTER_MS. A failed load of the model ends the run.
   */
  async rescan(started: Expected, done: Expected): Promise<RescanOutcome> {
    const from = this.lines.length;
    const failed = (l: LogLine) => l.level >= 50 && l.model === MODEL_NAME;
    const signalledAt = performance.now();
    let signals = 0;
    for (;;) {
      if (signals === MAX_SIGNALS) throw new Error(`${MAX_SIGNALS} SIGHUPs and no rescan shows in the server's log`);
      this.child.kill('SIGHUP');
      signals++;
      if ((await this.waitFor(from, (l) => started.test(l) || done.test(l) || failed(l), RESEND_AFTER_MS)) !== null) break;
    }
    const line = await this.waitFor(from, (l) => done.test(l) || failed(l), STEP_TIMEOUT_MS);
    if (line === null) throw new Error(`no "${done.label}" in the server's log within ${STEP_TIMEOUT_MS / 1000} s`);
    if (failed(line)) throw new Error(`the server logged: ${line.msg}`);
    return { signalledAt, line, signals };
  }

  /** SIGTERM (graceful drain), and the exit status. */
  async stop(): Promise<number | null> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGTERM');
    return this.exited;
  }
}

/** A log line waited for (registry.ts writes them), and how to name it when it does not come. */
interface Expected {
  label: string;
  test(line: LogLine): boolean;
}

const ofVersion = (l: LogLine, version: number) => l.model === MODEL_NAME && l.version === String(version);
const loading = (v: number): Expected => ({ label: `loading model ${MODEL_NAME} version ${v}`, test: (l) => ofVersion(l, v) && l.msg.startsWith('loading model') });
const ready = (v: number): Expected => ({ label: `model ${MODEL_NAME} version ${v} is ready`, test: (l) => ofVersion(l, v) && l.msg.includes(' is ready') });
const unloading = (v: number): Expected => ({ label: `unloading model ${MODEL_NAME} version ${v}`, test: (l) => ofVersion(l, v) && l.msg.startsWith('unloading model') });
const unloaded = (v: number): Expected => ({ label: `model ${MODEL_NAME} version ${v} unloaded`, test: (l) => ofVersion(l, v) && l.msg.endsWith(' unloaded') });

/** The server process's memory and what it holds open, from /proc. MB are 10^6 bytes, as in bench:compare. */
interface ProcSample {
  rssMB: number;
  /** VmHWM: the peak RSS so far. */
  hwmMB: number;
  threads: number;
  fds: number;
}

function procSample(pid: number): ProcSample {
  const text = readFileSync(`/proc/${pid}/status`, 'utf8');
  const field = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+)`, 'm').exec(text)?.[1] ?? NaN);
  return {
    rssMB: (field('VmRSS') * 1024) / 1e6,
    hwmMB: (field('VmHWM') * 1024) / 1e6,
    threads: field('Threads'),
    fds: readdirSync(`/proc/${pid}/fd`).length,
  };
}

// ---------------------------------------------------------------------------------------------------------------
// The repository

/** A Triton-layout repository of one model in a temporary folder; versions are written beside it and renamed in. */
class Repository {
  readonly root: string;
  private readonly staging: string;
  private readonly modelDir: string;

  constructor(readonly tmp: string) {
    this.root = path.join(tmp, 'repository');
    this.staging = path.join(tmp, 'staging');
    this.modelDir = path.join(this.root, MODEL_NAME);
    mkdirSync(this.modelDir, { recursive: true });
    mkdirSync(this.staging);
    writeFileSync(path.join(this.modelDir, 'config.pbtxt'), 'version_policy: { all {} }\n');
  }

  /** Writes the version in the staging folder, then renames it in: the server never sees a half-written folder. */
  add(version: number): void {
    const dir = path.join(this.staging, String(version));
    mkdirSync(dir);
    copyFileSync(MODEL_FILE, path.join(dir, 'model.onnx'));
    renameSync(dir, path.join(this.modelDir, String(version)));
  }

  remove(version: number): void {
    rmSync(path.join(this.modelDir, String(version)), { recursive: true, force: true });
  }
}

/** One reload: version `version` added and swapped in, version `version - 1` removed and unloaded. */
interface Swap {
  version: number;
  /** Bench clock (ms): the first SIGHUP after the new folder was renamed in; the ready line; the unloaded line. */
  signalledAt: number;
  readyAt: number;
  unloadedAt: number;
  /** The server's own figures from its log: load and warm-up, and drain and close, in seconds. */
  loadS: number;
  unloadS: number;
  /** SIGHUPs sent in all (2 when none was lost to a running rescan). */
  signals: number;
}

async function swap(server: ServerProcess, repository: Repository, version: number): Promise<Swap> {
  repository.add(version);
  const load = await server.rescan(loading(version), ready(version));
  repository.remove(version - 1);
  const unload = await server.rescan(unloading(version - 1), unloaded(version - 1));
  return {
    version,
    signalledAt: load.signalledAt,
    readyAt: load.line.at,
    unloadedAt: unload.line.at,
    loadS: load.line.seconds ?? NaN,
    unloadS: unload.line.seconds ?? NaN,
    signals: load.signals + unload.signals,
  };
}

// ---------------------------------------------------------------------------------------------------------------
// Load

const answerReader = new WireReader();

/** The answer's model_version (field 3) as a number; -1 when its error field (7) is set; 0 when it has no version. */
function answerVersion(bytes: Buffer): number {
  const reader = answerReader.reset(bytes);
  let version = 0;
  while (!reader.done) {
    const tag = reader.varint();
    const field = tag >>> 3;
    const wire = tag & 7;
    if (field === 7) return -1;
    if (field === 3 && wire === WIRE_LENGTH_DELIMITED) {
      const length = reader.varint();
      // Versions are folder names of digits: read them in place rather than decode a string for every answer.
      for (let i = 0; i < length; i++) version = version * 10 + (bytes[reader.at + i] - 0x30);
      reader.at += length;
    } else if (!reader.skip(wire)) break;
  }
  return version;
}

const statusName = (code: number) => (code === -1 ? 'BROKEN_STREAM' : (status[code] ?? String(code)));

interface LoadCounts {
  unaryOk: number;
  /** Predict calls that did not end OK, by status. */
  unaryFailed: Record<string, number>;
  streamOk: number;
  /** StreamPredict messages answered with the error field set. */
  streamMessageErrors: number;
  /** Messages sent on the stream and never answered. */
  streamUnanswered: number;
  /** The stream's final status. */
  streamStatus: string;
  /** Answers on the stream from a lower version than the answer before: the switch should happen once, forward. */
  streamVersionRegressions: number;
  /** Answers (Predict and StreamPredict) by the version that computed them. */
  answersByVersion: Record<string, number>;
}

/**
 * Part 1's load: UNARY_IN_FLIGHT Predict calls kept in flight (each answer sends the next) and one StreamPredict call
 * with STREAM_IN_FLIGHT messages kept in flight, none naming a version, so that each goes to the newest ready one.
 */
class SteadyLoad {
  private readonly counts: LoadCounts = {
    unaryOk: 0,
    unaryFailed: {},
    streamOk: 0,
    streamMessageErrors: 0,
    streamUnanswered: 0,
    streamStatus: 'open',
    streamVersionRegressions: 0,
    answersByVersion: {},
  };
  private stopped = false;
  private unaryInFlight = 0;
  private onUnaryIdle: (() => void) | null = null;
  private next = 0;
  private streamSent = 0;
  private streamAnswered = 0;
  private lastStreamVersion = 0;
  private readonly stream: ReturnType<GrpcH2Client['open']>;
  private readonly streamEnded: Promise<void>;

  constructor(
    private readonly client: GrpcH2Client,
    private readonly requests: Buffer[],
  ) {
    let resolveEnded: () => void = () => {};
    this.streamEnded = new Promise((resolve) => (resolveEnded = resolve));
    this.stream = client.open(
      STREAM_PREDICT,
      (bytes) => {
        this.streamAnswered++;
        const version = answerVersion(bytes);
        if (version < 0) this.counts.streamMessageErrors++;
        else {
          this.counts.streamOk++;
          this.count(version);
          if (version < this.lastStreamVersion) this.counts.streamVersionRegressions++;
          this.lastStreamVersion = version;
        }
        if (!this.stopped) this.sendStream();
      },
      ({ code }) => {
        this.counts.streamStatus = statusName(code);
        resolveEnded();
      },
    );
    for (let i = 0; i < STREAM_IN_FLIGHT; i++) this.sendStream();
    for (let i = 0; i < UNARY_IN_FLIGHT; i++) this.sendUnary();
  }

  private count(version: number): void {
    this.counts.answersByVersion[version] = (this.counts.answersByVersion[version] ?? 0) + 1;
  }

  private sendStream(): void {
    this.streamSent++;
    this.stream.write(this.requests[this.next++ % this.requests.length]);
  }

  private sendUnary(): void {
    this.unaryInFlight++;
    let version = 0;
    const call = this.client.open(
      PREDICT,
      (bytes) => (version = answerVersion(bytes)),
      ({ code }) => {
        this.unaryInFlight--;
        if (code === status.OK) {
          this.counts.unaryOk++;
          this.count(version);
        } else {
          const name = statusName(code);
          this.counts.unaryFailed[name] = (this.counts.unaryFailed[name] ?? 0) + 1;
        }
        if (!this.stopped) this.sendUnary();
        else if (this.unaryInFlight === 0) this.onUnaryIdle?.();
      },
    );
    call.end(this.requests[this.next++ % this.requests.length]);
  }

  /** Sends nothing more, waits for every answer and the stream's end, and returns the counts. */
  async stop(): Promise<LoadCounts> {
    this.stopped = true;
    const unaryDone = this.unaryInFlight === 0 ? Promise.resolve() : new Promise<void>((resolve) => (this.onUnaryIdle = resolve));
    this.stream.end();
    await Promise.all([unaryDone, this.streamEnded]);
    this.counts.streamUnanswered = this.streamSent - this.streamAnswered;
    return this.counts;
  }
}

/**
 * Part 2's feed: one StreamPredict call, a message every 1/rate s (a worker-thread ticker keeps the schedule). Its
 * answers come in order, so the i-th answer is the i-th message's; its latency runs from the message's intended send
 * time, so a stall of the server or of this process shows instead of delaying the sends that would measure it.
 */
class Feed {
  /** By message: the intended send time (bench clock, ms, ascending) and the round trip (ms). */
  readonly sentAt: number[] = [];
  readonly latencyMs: number[] = [];
  errors = 0;
  versionRegressions = 0;
  streamStatus = 'open';
  private lastVersion = 0;
  private stopped = false;
  private next = 0;
  private readonly call: ReturnType<GrpcH2Client['open']>;
  private readonly ended: Promise<void>;

  constructor(client: GrpcH2Client, requests: Buffer[], rate: number) {
    let resolveEnded: () => void = () => {};
    this.ended = new Promise((resolve) => (resolveEnded = resolve));
    this.call = client.open(
      STREAM_PREDICT,
      (bytes) => {
        const i = this.latencyMs.length;
        this.latencyMs.push(performance.now() - this.sentAt[i]);
        const version = answerVersion(bytes);
        if (version < 0) this.errors++;
        else {
          if (version < this.lastVersion) this.versionRegressions++;
          this.lastVersion = version;
        }
      },
      ({ code }) => {
        this.streamStatus = statusName(code);
        resolveEnded();
      },
    );
    openLoop(rate, false, () => this.stopped, (intendedAt) => {
      this.sentAt.push(intendedAt);
      this.call.write(requests[this.next++ % requests.length]);
    });
  }

  get unanswered(): number {
    return this.sentAt.length - this.latencyMs.length;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.call.end();
    await this.ended;
  }

  /** Round trips of the answered messages intended to be sent in [from, to). */
  window(from: number, to: number): WindowStats {
    const lo = lowerBound(this.sentAt, from);
    const hi = Math.min(lowerBound(this.sentAt, to), this.latencyMs.length);
    const values = this.latencyMs.slice(lo, Math.max(lo, hi)).sort((a, b) => a - b);
    const rank = (p: number) => (values.length === 0 ? NaN : values[Math.max(0, Math.ceil(p * values.length) - 1)]);
    return { messages: values.length, p50: rank(0.5), p99: rank(0.99), max: values.length === 0 ? NaN : values[values.length - 1] };
  }
}

interface WindowStats {
  messages: number;
  /** Nearest-rank percentiles, ms. */
  p50: number;
  p99: number;
  max: number;
}

/** The first index whose value is >= `value` in an ascending array. */
function lowerBound(sorted: readonly number[], value: number): number {
  let lo = 0;
  let hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (sorted[mid] < value) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

// ---------------------------------------------------------------------------------------------------------------
// The two parts

interface Cycle extends Omit<Swap, 'signalledAt' | 'readyAt' | 'unloadedAt'>, ProcSample {
  cycle: number;
  /** From renaming the folder in to the unloaded line, s. */
  wallS: number;
  /** When /proc was read (ms since the bench started). */
  sampledAt: number;
  /**
   * With --trace-gc: the main thread's V8 heap committed as of its last GC before the sample (MB), and RSS less it:
   * roughly everything else (native memory: onnxruntime, the workers, buffers).
   */
  mainHeapMB: number | null;
  rssLessMainHeapMB: number | null;
}

interface Growth {
  fromMB: number;
  toMB: number;
  growthPct: number;
}

const growth = (fromMB: number, toMB: number): Growth => ({ fromMB, toMB, growthPct: ((toMB - fromMB) / fromMB) * 100 });

/** A main-thread major GC during part 1, with the cycle it fell in (0: the load's warm-up before cycle 1). */
type CycleGc = GcEvent & { cycle: number };

interface CyclesResult {
  /** ms since the bench started: the load's start, and the last cycle's end. */
  startedAt: number;
  endedAt: number;
  baseline: ProcSample;
  cycles: Cycle[];
  load: LoadCounts;
  rss: { baselineMB: number; firstMB: number; lastMB: number; maxMB: number; growthPct: number; slopeMBPerCycle: number };
  /** With --trace-gc: the main thread's major GCs, and the growth of RSS less its heap (as `rss`, first to last). */
  majorGcs: CycleGc[] | null;
  rssLessMainHeap: { firstMB: number; lastMB: number; maxMB: number; growthPct: number } | null;
  /**
   * With --trace-gc: growth from after the first cycle in which the main thread ran a major GC to after the last
   * cycle, once the sawtooth has been through a whole tooth; null when no cycle before the last had one.
   */
  sinceFirstMajorGc: { cycle: number; rss: Growth; rssLessMainHeap: Growth } | null;
  seconds: number;
}

async function runCycles(server: ServerProcess, repository: Repository, target: string, count: number, firstVersion: number): Promise<CyclesResult> {
  const client = new GrpcH2Client(target);
  await client.ready;
  const loadStarted = performance.now();
  const load = new SteadyLoad(client, encodeRequests(WIDTH, 1));
  await sleep(LOAD_WARMUP_MS);
  const baseline = procSample(server.pid);
  const started = performance.now();
  const cycles: Cycle[] = [];
  for (let i = 0; i < count; i++) {
    const cycleStarted = performance.now();
    const { signalledAt: _s, readyAt: _r, unloadedAt, ...done } = await swap(server, repository, firstVersion + i);
    const sample = procSample(server.pid);
    const sampledAt = performance.now();
    cycles.push({ cycle: i + 1, ...done, ...sample, wallS: (unloadedAt - cycleStarted) / 1000, sampledAt, mainHeapMB: null, rssLessMainHeapMB: null });
    process.stderr.write(
      `cycle ${i + 1}/${count}: version ${done.version}, load ${done.loadS.toFixed(2)} s, RSS ${sample.rssMB.toFixed(1)} MB, ${sample.threads} threads, ${sample.fds} fds\n`,
    );
  }
  const seconds = (performance.now() - started) / 1000;
  const counts = await load.stop();
  client.close();
  const rss = cycles.map((c) => c.rssMB);
  const first = rss[0];
  const last = rss[rss.length - 1];
  return {
    startedAt: loadStarted,
    endedAt: cycles[cycles.length - 1].sampledAt,
    baseline,
    cycles,
    load: counts,
    rss: {
      baselineMB: baseline.rssMB,
      firstMB: first,
      lastMB: last,
      maxMB: Math.max(...rss),
      growthPct: ((last - first) / first) * 100,
      slopeMBPerCycle: slope(rss),
    },
    majorGcs: null,
    rssLessMainHeap: null,
    sinceFirstMajorGc: null,
    seconds,
  };
}

/** The least-squares slope of `values` against their index. */
function slope(values: readonly number[]): number {
  const n = values.length;
  if (n < 2) return 0;
  const meanX = (n - 1) / 2;
  const meanY = values.reduce((a, b) => a + b, 0) / n;
  let num = 0;
  let den = 0;
  values.forEach((y, x) => {
    num += (x - meanX) * (y - meanY);
    den += (x - meanX) ** 2;
  });
  return num / den;
}

/** Places the main thread's GCs (--trace-gc) in part 1's cycles and part 2's windows. */
function placeGcs(gcs: readonly GcEvent[], cycles: CyclesResult | null, swaps: SwapsResult | null): void {
  const major = gcs.filter(isMajor);
  if (cycles !== null) {
    const during = major.filter((gc) => gc.at >= cycles.startedAt && gc.at <= cycles.endedAt);
    cycles.majorGcs = during.map((gc) => ({ ...gc, cycle: cycles.cycles.find((c) => c.sampledAt >= gc.at)?.cycle ?? 0 }));
    for (const c of cycles.cycles) {
      const last = gcs[lowerBound(gcs.map((gc) => gc.at), c.sampledAt) - 1];
      if (last === undefined) continue;
      c.mainHeapMB = last.committedMiB * MIB_IN_MB;
      c.rssLessMainHeapMB = c.rssMB - c.mainHeapMB;
    }
    const rest = cycles.cycles.map((c) => c.rssLessMainHeapMB).filter((v): v is number => v !== null);
    if (rest.length > 0) {
      const [first, last] = [rest[0], rest[rest.length - 1]];
      cycles.rssLessMainHeap = { firstMB: first, lastMB: last, maxMB: Math.max(...rest), growthPct: ((last - first) / first) * 100 };
    }
    const from = cycles.cycles.find((c) => cycles.majorGcs!.some((gc) => gc.cycle === c.cycle));
    const to = cycles.cycles[cycles.cycles.length - 1];
    if (from !== undefined && from !== to && from.rssLessMainHeapMB !== null && to.rssLessMainHeapMB !== null) {
      cycles.sinceFirstMajorGc = {
        cycle: from.cycle,
        rss: growth(from.rssMB, to.rssMB),
        rssLessMainHeap: growth(from.rssLessMainHeapMB, to.rssLessMainHeapMB),
      };
    }
  }
  for (const w of swaps?.swaps ?? []) {
    const inWindow = (from: number) => major.filter((gc) => gc.at >= from && gc.at < from + WINDOW_MS);
    const [before, around] = [inWindow(w.beforeFrom), inWindow(w.aroundFrom)];
    w.majorGcs = { before: before.length, around: around.length, longestPauseMs: Math.max(0, ...[...before, ...around].map((gc) => gc.pauseMs)) };
  }
}

interface SwapLatency {
  swap: number;
  version: number;
  loadS: number;
  unloadS: number;
  signals: number;
  /**
   * Messages sent in the WINDOW_MS centred on the ready line ("around"); in the WINDOW_MS before that (or before the
   * SIGHUP, if the load took longer than half a window): no window overlaps another or a reload; from SIGHUP to the
   * unloaded line.
   */
  before: WindowStats;
  around: WindowStats;
  reload: WindowStats;
  /** around.p99 / before.p99. */
  ratio: number;
  /** Where "before" and "around" begin (ms since the bench started); each is WINDOW_MS long. */
  beforeFrom: number;
  aroundFrom: number;
  /** With --trace-gc: the main thread's major GCs in each window, and the longest pause among them (ms). */
  majorGcs: { before: number; around: number; longestPauseMs: number } | null;
}

interface SwapsResult {
  rate: number;
  swaps: SwapLatency[];
  medianRatio: number;
  messages: number;
  unanswered: number;
  errors: number;
  versionRegressions: number;
  streamStatus: string;
  seconds: number;
}

async function runSwaps(server: ServerProcess, repository: Repository, target: string, count: number, rate: number, firstVersion: number): Promise<SwapsResult> {
  const client = new GrpcH2Client(target);
  await client.ready;
  const started = performance.now();
  const feed = new Feed(client, encodeRequests(WIDTH, 1), rate);
  // Nothing of a reload may fall in a "before" window: it ends at the SIGHUP (or where "around" begins, if that is
  // earlier) and begins after the previous swap's windows have closed.
  let quietFrom = started + FEED_WARMUP_MS;
  const done: Swap[] = [];
  for (let i = 0; i < count; i++) {
    await sleep(quietFrom + WINDOW_MS + WINDOW_MS / 2 - performance.now());
    const s = await swap(server, repository, firstVersion + i);
    done.push(s);
    quietFrom = Math.max(s.readyAt + WINDOW_MS / 2, s.unloadedAt);
    process.stderr.write(`swap ${i + 1}/${count}: version ${s.version}, load ${s.loadS.toFixed(2)} s\n`);
  }
  await sleep(quietFrom + 100 - performance.now());
  await feed.stop();
  client.close();
  const swaps = done.map((s, i): SwapLatency => {
    const aroundFrom = s.readyAt - WINDOW_MS / 2;
    const beforeTo = Math.min(s.signalledAt, aroundFrom);
    const before = feed.window(beforeTo - WINDOW_MS, beforeTo);
    const around = feed.window(aroundFrom, aroundFrom + WINDOW_MS);
    return {
      swap: i + 1,
      version: s.version,
      loadS: s.loadS,
      unloadS: s.unloadS,
      signals: s.signals,
      before,
      around,
      reload: feed.window(s.signalledAt, s.unloadedAt),
      ratio: around.p99 / before.p99,
      beforeFrom: beforeTo - WINDOW_MS,
      aroundFrom,
      majorGcs: null,
    };
  });
  const ratios = swaps.map((s) => s.ratio).sort((a, b) => a - b);
  return {
    rate,
    swaps,
    medianRatio: ratios.length % 2 === 1 ? ratios[(ratios.length - 1) / 2] : (ratios[ratios.length / 2 - 1] + ratios[ratios.length / 2]) / 2,
    messages: feed.sentAt.length,
    unanswered: feed.unanswered,
    errors: feed.errors,
    versionRegressions: feed.versionRegressions,
    streamStatus: feed.streamStatus,
    seconds: (performance.now() - started) / 1000,
  };
}

// ---------------------------------------------------------------------------------------------------------------
// The report

interface Machine {
  cpus: number;
  cpuModel: string;
  memoryGiB: number;
  os: string;
  node: string;
  loadAverageStart: number[];
  loadAverageEnd: number[];
}

interface ReloadResults {
  command: string;
  startedAt: string;
  seconds: number;
  machine: Machine;
  server: { workers: unknown; traceGc: boolean; exitCode: number | null; warnings: string[] };
  cycles: CyclesResult | null;
  swaps: SwapsResult | null;
}

export const RELOAD_HEADING = '## Reload under load';
const RSS_TARGET_PCT = 10;
const RATIO_TARGET = 2;

const fixed = (value: number, digits = 2) => (Number.isFinite(value) ? value.toFixed(digits) : '-');
const check = (ok: boolean) => (ok ? 'met' : '**not met**');
const loads = (l: number[]) => l.map((v) => v.toFixed(2)).join(' / ');

function failuresOf(load: LoadCounts): number {
  return Object.values(load.unaryFailed).reduce((a, b) => a + b, 0) + load.streamMessageErrors + load.streamUnanswered + (load.streamStatus === 'OK' ? 0 : 1);
}

function markdown(r: ReloadResults): string {
  const { machine: m, cycles: c, swaps: s } = r;
  const traced = r.server.traceGc;
  const lines = [
    RELOAD_HEADING,
    '',
    `Generated by \`${r.command}\` on ${r.startedAt.slice(0, 16).replace('T', ' ')} UTC; the run took ${(r.seconds / 60).toFixed(1)} min.`,
    `Machine: ${m.cpus} × ${m.cpuModel}, ${m.memoryGiB.toFixed(0)} GiB, ${m.os}, Node ${m.node}; load average (1/5/15 min)`,
    `${loads(m.loadAverageStart)} at the start and ${loads(m.loadAverageEnd)} at the end. The machine was shared: other jobs`,
    '(test runs of other work) used its two cores during the run, and the load generator runs on them too.',
    '',
    `The server is \`node ${traced ? '--trace-gc ' : ''}dist/src/main/index.js\`, started by the bench on a free port with \`MODEL_REPOSITORY\` a`,
    `temporary folder holding one model, "${MODEL_NAME}" (models/default.onnx, 17 floats in, 5 out), whose config.pbtxt is`,
    '`version_policy: { all {} }`, with `LOG_LEVEL=info`, `METRICS_PORT=0` and the defaults otherwise' +
      ` (${JSON.stringify(r.server.workers)} worker a version).`,
    'A version is added by copying the model into a staging folder and renaming it into the repository, and removed by',
    'deleting its folder; each change is followed by SIGHUP (two scans 250 ms apart), and the bench reads "ready" and',
    '"unloaded" from the server\'s JSON log. With `all {}` adding and removing are separate repository events; with the',
    'default policy (latest 1) the old version would go at the swap itself.' +
      (traced ? ' `--trace-gc` makes V8 print a line for each GC; it changes no GC decision.' : ''),
    '',
    '| target | measured | |',
    '|---|---|---|',
  ];
  if (c !== null) {
    const failures = failuresOf(c.load);
    lines.push(
      `| RSS growth ≤ ${RSS_TARGET_PCT}% from after the first cycle to after the last (${c.cycles.length} cycles) | ${fixed(c.rss.growthPct, 1)}% (${fixed(c.rss.firstMB, 1)} → ${fixed(c.rss.lastMB, 1)} MB; max ${fixed(c.rss.maxMB, 1)} MB) | ${check(c.rss.growthPct <= RSS_TARGET_PCT)} |`,
      `| no failed call under load across the cycles | ${failures} failed of ${c.load.unaryOk + c.load.streamOk + failures} | ${check(failures === 0)} |`,
    );
  }
  if (s !== null) {
    lines.push(
      `| feed p99 in the ${WINDOW_MS / 1000} s around a swap ≤ ${RATIO_TARGET}× the ${WINDOW_MS / 1000} s before (median of ${s.swaps.length}) | ${fixed(s.medianRatio)}× (each: ${s.swaps.map((w) => `${fixed(w.ratio)}×`).join(', ')}) | ${check(s.medianRatio <= RATIO_TARGET)} |`,
    );
  }
  lines.push('');
  if (c !== null) {
    const l = c.load;
    const versions = Object.keys(l.answersByVersion).length;
    const every = Math.max(1, Math.round(c.cycles.length / 10));
    const shown = c.cycles.filter((x, i) => i === 0 || x.cycle % every === 0 || i === c.cycles.length - 1);
    lines.push(
      '### Load/unload cycles under load',
      '',
      `${c.cycles.length} cycles in ${fixed(c.seconds, 1)} s. A cycle: version n renamed in, SIGHUP, wait for "version n is ready";`,
      'version n−1\'s folder removed, SIGHUP, wait for "version n−1 unloaded"; then the server\'s VmRSS (resident memory),',
      'VmHWM (its peak so far), threads and open file descriptors are read from /proc/<pid>. RSS covers the whole process,',
      'the ONNX worker threads included. Throughout, a closed loop of Predict calls' +
        ` (${UNARY_IN_FLIGHT} in flight) and one StreamPredict call (${STREAM_IN_FLIGHT}`,
      'messages in flight), none naming a version, so that each goes to the newest ready one.',
      '',
      `RSS before the first cycle (after ${LOAD_WARMUP_MS / 1000} s of load): ${fixed(c.rss.baselineMB, 1)} MB, ${c.baseline.threads} threads, ${c.baseline.fds} fds.`,
      `After cycle 1: ${fixed(c.rss.firstMB, 1)} MB; after cycle ${c.cycles.length}: ${fixed(c.rss.lastMB, 1)} MB; max ${fixed(c.rss.maxMB, 1)} MB;`,
      `growth ${fixed(c.rss.growthPct, 1)}%; least-squares slope over the cycles ${fixed(c.rss.slopeMBPerCycle, 3)} MB a cycle.`,
      '',
      `| cycle | version | RSS MB | VmHWM MB |${traced ? ' main heap MB | RSS less main heap MB |' : ''} threads | fds | load s (server) | unload s (server) | cycle s | SIGHUPs |`,
      `|---|---|---|---|${traced ? '---|---|' : ''}---|---|---|---|---|---|`,
      ...shown.map(
        (x) =>
          `| ${x.cycle} | ${x.version} | ${fixed(x.rssMB, 1)} | ${fixed(x.hwmMB, 1)} |${traced ? ` ${fixed(x.mainHeapMB ?? NaN, 1)} | ${fixed(x.rssLessMainHeapMB ?? NaN, 1)} |` : ''} ${x.threads} | ${x.fds} | ${fixed(x.loadS, 3)} | ${fixed(x.unloadS, 3)} | ${fixed(x.wallS)} | ${x.signals} |`,
      ),
      '',
      `Every cycle is in [bench/reload.json](bench/reload.json). Load: Predict ${l.unaryOk} OK` +
        `${Object.keys(l.unaryFailed).length > 0 ? `, failed ${Object.entries(l.unaryFailed).map(([k, v]) => `${k}: ${v}`).join(', ')}` : ', none failed'};`,
      `StreamPredict ${l.streamOk} messages OK, ${l.streamMessageErrors} answered with an error, ${l.streamUnanswered} unanswered, the call ended`,
      `${l.streamStatus}, and its answers' version never went backwards${l.streamVersionRegressions > 0 ? ` except ${l.streamVersionRegressions} times` : ''}.` +
        ` ${versions} versions answered calls (of ${c.cycles.length + 1} served in turn).`,
      '',
    );
    if (c.majorGcs !== null) {
      const gcs = c.majorGcs;
      const rest = c.rssLessMainHeap;
      lines.push(
        'With `--trace-gc`: "main heap" is the main thread\'s V8 heap as committed after its last GC before the sample',
        '(scavenges happen every few hundred ms under this load), and "RSS less main heap" the rest of the process, roughly',
        'its native memory (node, onnxruntime and its sessions, the worker threads and their heaps, buffers). From after',
        `cycle 1 to after cycle ${c.cycles.length} RSS less main heap went ${rest === null ? '-' : `${fixed(rest.firstMB, 1)} → ${fixed(rest.lastMB, 1)} MB (${fixed(rest.growthPct, 1)}%; max ${fixed(rest.maxMB, 1)} MB)`}.`,
        `The main thread's major GCs (Mark-Compact) from the start of the load to the last cycle: heap in use before → left`,
        'live after (committed after), in MiB as V8 prints them, and the main pause:',
        gcs.length === 0
          ? 'none.'
          : gcs.map((gc) => `${gc.cycle === 0 ? 'during the warm-up' : `cycle ${gc.cycle}`}: ${fixed(gc.beforeMiB, 1)} → ${fixed(gc.afterMiB, 1)} (${fixed(gc.committedMiB, 1)}), ${fixed(gc.pauseMs, 1)} ms`).join('; ') + '.',
        '',
      );
      const since = c.sinceFirstMajorGc;
      if (since !== null) {
        lines.push(
          `From after cycle ${since.cycle}, the first with a major GC, to after cycle ${c.cycles.length}: RSS ${fixed(since.rss.fromMB, 1)} → ${fixed(since.rss.toMB, 1)} MB`,
          `(${fixed(since.rss.growthPct, 1)}%), RSS less main heap ${fixed(since.rssLessMainHeap.fromMB, 1)} → ${fixed(since.rssLessMainHeap.toMB, 1)} MB (${fixed(since.rssLessMainHeap.growthPct, 1)}%).`,
          '',
        );
      }
    }
    lines.push(
      'Reading the RSS figure. Two things grow between the main thread\'s major GCs, and neither is kept: the main',
      'thread\'s V8 heap, with what the load leaves behind in the old generation, and native memory of each retired',
      'version\'s worker thread, which is freed only when the main thread\'s JS objects for it (piscina\'s Worker and its',
      'ports) are collected, by a major GC that only the JS heap\'s growth prompts (V8 does not see that memory). When',
      'this bench was written, ModelInstance.load + unload in a loop, without gRPC or load, grew RSS by about 0.9 MB a',
      'cycle (93 → 139 MB over 50 cycles, most of it in the malloc heap) and stayed flat (95 → 101 MB) with a forced',
      'gc() after each unload (`node --expose-gc`); a heap snapshot of the server after 50 cycles without load held only',
      'the serving version\'s instance, pool and workers. So RSS rises between major GCs, by an amount that depends on the',
      'load and the reload rate, and whether the first and last cycles here straddle one decides much of the growth figure.',
      '',
    );
  }
  if (s !== null) {
    const gcColumn = traced ? ' major GCs before / around (longest pause ms) |' : '';
    lines.push(
      '### Feed latency around a swap',
      '',
      `One StreamPredict call fed ${s.rate} messages a second at a constant rate (a worker-thread ticker keeps the schedule),`,
      'with nothing else loading the server. A message\'s round trip runs from its intended send time to its answer',
      '(answers come in order). For each swap (the same cycle as above: add, SIGHUP, ready, remove, SIGHUP, unloaded),',
      `"around" is the messages sent in the ${WINDOW_MS / 1000} s centred on the moment the "ready" line arrived (routing switches then;`,
      'the load began a few hundred ms before, and the removal and the old version\'s unload follow within it), "before"',
      `those sent in the ${WINDOW_MS / 1000} s before "around" (before the first SIGHUP, had the load taken longer), and "reload" those`,
      'sent from the SIGHUP to the "unloaded" line. A swap begins only once the previous one\'s windows have closed and',
      '7.5 s have passed, so that windows do not overlap and no reload falls in a "before" window. p50 and p99 are',
      'nearest-rank, in ms.',
      '',
      `| swap | version | load s (server) | before p50 / p99 | around p50 / p99 | around max | p99 ratio | reload p99 (messages) | messages before / around |${gcColumn}`,
      `|---|---|---|---|---|---|---|---|---|${traced ? '---|' : ''}`,
      ...s.swaps.map(
        (w) =>
          `| ${w.swap} | ${w.version} | ${fixed(w.loadS, 3)} | ${fixed(w.before.p50, 3)} / ${fixed(w.before.p99, 3)} | ${fixed(w.around.p50, 3)} / ${fixed(w.around.p99, 3)} | ${fixed(w.around.max, 3)} | ${fixed(w.ratio)}× | ${fixed(w.reload.p99, 3)} (${w.reload.messages}) | ${w.before.messages} / ${w.around.messages} |` +
          (w.majorGcs !== null ? ` ${w.majorGcs.before} / ${w.majorGcs.around}${w.majorGcs.before + w.majorGcs.around > 0 ? ` (${fixed(w.majorGcs.longestPauseMs, 1)})` : ''} |` : ''),
      ),
      '',
      `Median p99 ratio ${fixed(s.medianRatio)}×. The feed sent ${s.messages} messages in ${fixed(s.seconds, 1)} s: ${s.unanswered} unanswered,`,
      `${s.errors} answered with an error; its answers' version never went backwards${s.versionRegressions > 0 ? ` except ${s.versionRegressions} times` : ''}; the call ended ${s.streamStatus}.`,
      '',
    );
  }
  const warnings = r.server.warnings;
  lines.push(
    `Server: exited ${r.server.exitCode} after SIGTERM; ${warnings.length === 0 ? 'no warning or error in its log' : `${warnings.length} warnings or errors in its log: ${[...new Set(warnings)].slice(0, 5).map((w) => `"${w}"`).join('; ')}`}.`,
    '',
  );
  return lines.join('\n');
}

// ---------------------------------------------------------------------------------------------------------------

async function main(args: string[]): Promise<number> {
  const command = parseReloadArgs(args);
  if (command.command === 'help') {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  if (!existsSync(ENTRY) || !existsSync(MODEL_FILE)) throw new Error(`${ENTRY} or ${MODEL_FILE} is missing: run npm run build first`);
  const startedAt = new Date().toISOString();
  const loadAverageStart = os.loadavg();
  const started = performance.now();
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'tickserve-reload-'));
  const repository = new Repository(tmp);
  repository.add(1);
  const server = ServerProcess.start(repository.root, command.traceGc);
  let results: ReloadResults;
  try {
    const port = await server.listening();
    const target = `127.0.0.1:${port}`;
    const first = await server.waitFor(0, ready(1).test, STEP_TIMEOUT_MS);
    const cycles = command.cycles > 0 ? await runCycles(server, repository, target, command.cycles, 2) : null;
    const swaps = command.swaps > 0 ? await runSwaps(server, repository, target, command.swaps, command.rate, command.cycles + 2) : null;
    const exitCode = await server.stop();
    if (command.traceGc) placeGcs(server.mainThreadGcs(), cycles, swaps);
    const cpus = os.cpus();
    results = {
      command: args.length > 0 ? `npm run bench:reload -- ${args.join(' ')}` : 'npm run bench:reload',
      startedAt,
      seconds: (performance.now() - started) / 1000,
      machine: {
        cpus: cpus.length,
        cpuModel: cpus[0]?.model ?? 'unknown CPU',
        memoryGiB: os.totalmem() / 2 ** 30,
        os: `${os.type()} ${os.release()}`,
        node: process.version,
        loadAverageStart,
        loadAverageEnd: os.loadavg(),
      },
      server: {
        workers: (first?.effective as { workers?: number } | undefined)?.workers ?? null,
        traceGc: command.traceGc,
        exitCode,
        warnings: server.lines.filter((l) => l.level >= 40).map((l) => l.msg),
      },
      cycles,
      swaps,
    };
  } finally {
    await server.stop();
    rmSync(tmp, { recursive: true, force: true });
  }
  const section = markdown(results);
  const existing = existsSync(command.out) ? readFileSync(command.out, 'utf8') : '';
  writeFileSync(command.out, replaceSection(existing, RELOAD_HEADING, section));
  const json = path.join(path.dirname(command.out), 'bench', 'reload.json');
  mkdirSync(path.dirname(json), { recursive: true });
  writeFileSync(json, `${JSON.stringify(results, null, 2)}\n`);
  process.stdout.write(`${section}\nwrote ${path.relative(process.cwd(), command.out)} (section "${RELOAD_HEADING.slice(3)}") and ${path.relative(process.cwd(), json)}\n`);
  return 0;
}

if (require.main === module) runCli(USAGE, () => main(process.argv.slice(2)));
