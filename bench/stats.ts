// What the comparison benches' verdicts rest on: medians of per-round ratios, and how far two processes of one
// build (an A/A pair) read apart, so that a verdict never claims more than a run on a noisy machine can tell.

/** The median; the mean of the two middle values for an even count. NaN for none. */
export function median(values: number[]): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

/** a's figure over b's for every round both ran, by round number (a round either lacks is left out). */
export function ratiosByRound<R extends { round: number }>(a: R[], b: R[], pick: (r: R) => number): number[] {
  const bs = new Map(b.map((r) => [r.round, r]));
  return a.flatMap((r) => {
    const other = bs.get(r.round);
    return other === undefined ? [] : [pick(r) / pick(other)];
  });
}

/** Student's t, two-sided 95%, by degrees of freedom (1–9); 2.0 beyond (within 10% from 10 on). */
const T_95 = [NaN, 12.71, 4.3, 3.18, 2.78, 2.57, 2.45, 2.36, 2.31, 2.26];

/**
 * How far two processes of one build read apart on a figure, from the A/A pair's per-round ratios: a factor (≥ 1)
 * that the same statistic for two servers can reach by noise alone. The pair's median ratio (a process that runs
 * slower throughout) widened by a 95% interval of a median of n per-round ratios (Student's t for n − 1 degrees of
 * freedom times the median's standard error, 1.25 σ/√n, σ the ratios' log spread). NaN with fewer than two rounds.
 */
export function noiseBand(twinRatios: number[]): number {
  const logs = twinRatios.filter((r) => r > 0 && Number.isFinite(r)).map(Math.log);
  const n = logs.length;
  if (n < 2) return NaN;
  const mean = logs.reduce((a, b) => a + b, 0) / n;
  const sd = Math.sqrt(logs.reduce((a, b) => a + (b - mean) ** 2, 0) / (n - 1));
  const t = T_95[n - 1] ?? 2;
  return Math.exp(Math.abs(median(logs)) + (t * 1.25 * sd) / Math.sqrt(n));
}

/**
 * A target's verdict: a ratio against its threshold, and whether the margin either way is wider than the noise
 * band (noiseBand): "met" and "not met" only when it is; "met, by less than the noise" and "within the noise: not
 * shown either way" when it is not. Without a band (one round) the bare comparison, said to be one.
 */
export function verdict(ratio: number, threshold: number, higherIsBetter: boolean, band: number): string {
  const margin = higherIsBetter ? ratio / threshold : threshold / ratio;
  if (Number.isNaN(margin)) return '**not met** (no figure)';
  if (Number.isNaN(band)) return `${margin >= 1 ? 'met' : '**not met**'} (no A/A band: one round)`;
  const noise = `A/A noise band ×${band.toFixed(2)}`;
  if (margin >= band) return 'met';
  if (margin >= 1) return `met, by less than the noise (${noise})`;
  if (margin > 1 / band) return `**within the noise** (${noise}): not shown either way`;
  return '**not met**';
}
