// Results as a table for people, and as JSON and CSV for tools.
import type { LoadResult, LoadSpec } from './load';

const fixed = (value: number, digits = 2) => (Number.isFinite(value) ? value.toFixed(digits) : '-');

/** "unary" or "stream" for ModelService's calls (as the tables have always said), the method's name for v2's. */
export function rpcName(spec: Pick<LoadSpec, 'api' | 'rpc'>): string {
  if (spec.api !== 'v2') return spec.rpc;
  return spec.rpc === 'unary' ? 'ModelInfer' : 'ModelStreamInfer';
}

export function describeLoad(r: LoadResult): string {
  const load = r.spec.rate > 0 ? `${r.spec.poisson ? 'poisson' : 'constant'} ${r.spec.rate}/s` : `c=${r.spec.concurrency}`;
  return `${rpcName(r.spec)} ${load} rows=${r.spec.rowsPerRequest}`;
}

const COLUMNS = ['target', 'load', 'req/s', 'rows/s', 'p50 ms', 'p90 ms', 'p99 ms', 'p99.9 ms', 'errors', 'batch rows', 'queue µs p50/p99', 'compute µs p50/p99', 'server µs p50/p99'];

function row(name: string, r: LoadResult): string[] {
  const errors = Object.entries(r.errors).map(([code, n]) => `${code}:${n}`).join(' ') || '0';
  const s = r.server;
  return [
    name,
    describeLoad(r),
    fixed(r.requestsPerSecond, 0),
    fixed(r.rowsPerSecond, 0),
    fixed(r.latencyMs.p50, 3),
    fixed(r.latencyMs.p90, 3),
    fixed(r.latencyMs.p99, 3),
    fixed(r.latencyMs.p999, 3),
    errors,
    s ? fixed(s.batchRowsMean, 1) : '-',
    s ? `${s.queueUsP50}/${s.queueUsP99}` : '-',
    s ? `${s.computeUsP50}/${s.computeUsP99}` : '-',
    s ? `${s.serverUsP50}/${s.serverUsP99}` : '-',
  ];
}

/** A Markdown table (also readable in a terminal). */
export function markdownTable(results: Array<{ name: string; result: LoadResult }>): string {
  const lines = [`| ${COLUMNS.join(' | ')} |`, `|${COLUMNS.map(() => '---').join('|')}|`];
  for (const { name, result } of results) lines.push(`| ${row(name, result).join(' | ')} |`);
  return lines.join('\n');
}

export function csv(results: Array<{ name: string; result: LoadResult }>): string {
  const header = ['target', 'rpc', 'concurrency', 'rate', 'poisson', 'rows', 'requests', 'seconds', 'req_per_s', 'rows_per_s', 'p50_ms', 'p90_ms', 'p99_ms', 'p999_ms', 'max_ms', 'errors', 'batch_rows_mean', 'queue_us_p50', 'queue_us_p99', 'compute_us_p50', 'compute_us_p99', 'server_us_p50', 'server_us_p99'];
  const lines = [header.join(',')];
  for (const { name, result: r } of results) {
    const s = r.server;
    lines.push(
      [
        name, r.spec.rpc, r.spec.concurrency, r.spec.rate, r.spec.poisson, r.spec.rowsPerRequest, r.requests, fixed(r.seconds, 3),
        fixed(r.requestsPerSecond, 1), fixed(r.rowsPerSecond, 1), r.latencyMs.p50, r.latencyMs.p90, r.latencyMs.p99, r.latencyMs.p999, r.latencyMs.max,
        Object.values(r.errors).reduce((a, b) => a + b, 0), s?.batchRowsMean ?? '', s?.queueUsP50 ?? '', s?.queueUsP99 ?? '', s?.computeUsP50 ?? '', s?.computeUsP99 ?? '', s?.serverUsP50 ?? '', s?.serverUsP99 ?? '',
      ].join(','),
    );
  }
  return lines.join('\n') + '\n';
}

/** A one-line progress bar on stderr, redrawn in place on a terminal. */
export function progressBar(label: string): (fraction: number, rate: number) => void {
  const tty = process.stderr.isTTY;
  let lastPrinted = -1;
  return (fraction, rate) => {
    const width = 24;
    const filled = Math.round(fraction * width);
    const line = `[${'#'.repeat(filled)}${'-'.repeat(width - filled)}] ${(fraction * 100).toFixed(0).padStart(3)}% ${label} ${rate.toFixed(0)} req/s`;
    if (tty) process.stderr.write(`\r${line}\x1b[K${fraction >= 1 ? '\n' : ''}`);
    else if (Math.floor(fraction * 4) !== lastPrinted) {
      lastPrinted = Math.floor(fraction * 4);
      process.stderr.write(`${line}\n`);
    }
  };
}
