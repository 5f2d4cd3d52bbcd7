// What the comparison benches share: starting this server (and waiting until it listens), and running h2load and
// reading its summary.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { GrpcH2Client } from './h2';

export const ROOT = path.resolve(__dirname, '..', '..');
export const ENTRY = path.join(ROOT, 'dist', 'src', 'main', 'index.js');
export const HEAVY_MODEL = path.join(ROOT, 'models', 'heavy.onnx');

/** A server under test: a child process listening on 127.0.0.1:port, fed rows of `width` features. */
export interface Target {
  name: string;
  port: number;
  width: number;
  process: ChildProcess;
}

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));


/** This server on 127.0.0.1:port with `env` over the bench defaults (quiet logs, no metrics port). */
export function startTickserve(name: string, port: number, env: Record<string, string>, width: number): Target {
  const child = spawn(process.execPath, [ENTRY], {
    // METRICS_PORT 0: several servers run at once, and a metrics port in use stops a server from starting.
    env: { ...process.env, HOST: '127.0.0.1', PORT: String(port), LOG_LEVEL: 'warn', METRICS_PORT: '0', ...env },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  return { name, port, width, process: child };
}

/** Stops a server with SIGTERM and waits for it to exit (its telemetry flushes on the way out); SIGKILL after 10 s. */
export function stopAndWait(target: Target): Promise<void> {
  if (target.process.exitCode !== null || target.process.signalCode !== null) return Promise.resolve();
  const exited = new Promise<void>((resolve) => target.process.once('exit', () => resolve()));
  target.process.kill('SIGTERM');
  const kill = setTimeout(() => target.process.kill('SIGKILL'), 10_000);
  return exited.finally(() => clearTimeout(kill));
}

/** Resolves once the target accepts an HTTP/2 connection; throws if it exits first or within `attempts` × 100 ms. */
export async function waitReady(target: Target, attempts = 200): Promise<void> {
  for (let attempt = 0; attempt < attempts; attempt++) {
    if (target.process.exitCode !== null) throw new Error(`${target.name} exited with ${target.process.exitCode}`);
    const client = new GrpcH2Client(`127.0.0.1:${target.port}`);
    const ok = await client.ready.then(() => true, () => false);
    client.close();
    if (ok) return;
    await sleep(100);
  }
  throw new Error(`${target.name} did not listen on ${target.port}`);
}

/** What h2load's summary says: requests a second, requests that succeeded and failed, mean time for a request. */
export interface H2loadSummary {
  perSecond: number;
  succeeded: number;
  failed: number;
  meanUs: number;
}

/** Whether h2load (Debian's nghttp2-client) is installed. */
export function hasH2load(): boolean {
  try {
    execFileSync('h2load', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** Runs h2load with `args` and reads its summary. */
export function runH2load(args: string[]): H2loadSummary {
  const out = execFileSync('h2load', args, { encoding: 'utf8', maxBuffer: 16 * 1024 * 1024 });
  // "time for request:  min  max  mean  sd  +/- sd", in us, ms or s.
  const row = /time for request:\s+\S+\s+\S+\s+([\d.]+)(us|ms|s)/.exec(out);
  return {
    perSecond: Number(/finished in [\d.]+m?s, ([\d.]+) req\/s/.exec(out)?.[1] ?? 0),
    succeeded: Number(/(\d+) succeeded/.exec(out)?.[1] ?? 0),
    failed: Number(/(\d+) failed/.exec(out)?.[1] ?? 0),
    meanUs: row === null ? NaN : Number(row[1]) * (row[2] === 'us' ? 1 : row[2] === 'ms' ? 1000 : 1e6),
  };
}
