// A latency-versus-throughput chart as a self-contained SVG: one line per series through its points in the order
// given (rising load), p99 solid and p50 dashed, latency on a log scale. Small enough to write by hand; no plotting library needed for two axes and a few lines.

export interface PlotPoint {
  throughput: number;
  p50Ms: number;
  p99Ms: number;
}

export interface PlotSeries {
  name: string;
  points: PlotPoint[];
}

const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e', '#8c564b'];
const WIDTH = 900;
const HEIGHT = 440;
const MARGIN = { left: 70, right: 300, top: 40, bottom: 50 };

const escape = (text: string) => text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

function niceTicks(max: number, count = 5): number[] {
  const step = 10 ** Math.floor(Math.log10(max / count));
  const nice = [1, 2, 5, 10].map((m) => m * step).find((s) => max / s <= count) ?? step * 10;
  return Array.from({ length: Math.floor(max / nice) + 1 }, (_, i) => i * nice);
}

export function latencyPlot(title: string, series: PlotSeries[], xLabel = 'throughput (requests/s)'): string {
  const points = series.flatMap((s) => s.points);
  const maxX = Math.max(1, ...points.map((p) => p.throughput)) * 1.05;
  const minY = Math.min(...points.map((p) => p.p50Ms).filter((v) => v > 0), 1);
  const maxY = Math.max(...points.map((p) => p.p99Ms), 1);
  const lo = Math.floor(Math.log10(minY));
  const hi = Math.ceil(Math.log10(maxY));
  const plotW = WIDTH - MARGIN.left - MARGIN.right;
  const plotH = HEIGHT - MARGIN.top - MARGIN.bottom;
  const x = (v: number) => MARGIN.left + (v / maxX) * plotW;
  const y = (ms: number) => MARGIN.top + plotH - ((Math.log10(Math.max(ms, 10 ** lo)) - lo) / Math.max(1, hi - lo)) * plotH;
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${HEIGHT}" font-family="sans-serif" font-size="12">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="${WIDTH / 2 - MARGIN.right / 2}" y="22" text-anchor="middle" font-size="15">${escape(title)}</text>`,
  ];
  for (const tick of niceTicks(maxX)) {
    parts.push(`<line x1="${x(tick)}" x2="${x(tick)}" y1="${MARGIN.top}" y2="${MARGIN.top + plotH}" stroke="#eee"/>`);
    parts.push(`<text x="${x(tick)}" y="${MARGIN.top + plotH + 18}" text-anchor="middle">${tick >= 1000 ? `${tick / 1000}k` : tick}</text>`);
  }
  for (let e = lo; e <= hi; e++) {
    const ms = 10 ** e;
    parts.push(`<line x1="${MARGIN.left}" x2="${MARGIN.left + plotW}" y1="${y(ms)}" y2="${y(ms)}" stroke="#eee"/>`);
    parts.push(`<text x="${MARGIN.left - 8}" y="${y(ms) + 4}" text-anchor="end">${ms >= 1 ? ms : ms.toPrecision(1)} ms</text>`);
  }
  parts.push(
    `<rect x="${MARGIN.left}" y="${MARGIN.top}" width="${plotW}" height="${plotH}" fill="none" stroke="#333"/>`,
    `<text x="${MARGIN.left + plotW / 2}" y="${HEIGHT - 10}" text-anchor="middle">${escape(xLabel)}</text>`,
    `<text transform="translate(16 ${MARGIN.top + plotH / 2}) rotate(-90)" text-anchor="middle">latency (log scale)</text>`,
  );
  series.forEach((s, i) => {
    const color = COLORS[i % COLORS.length];
    // In the order given (a sweep's order): sorting by throughput would zig-zag where more load brought no more.
    const sorted = s.points;
    const line = (pick: (p: PlotPoint) => number) => sorted.map((p) => `${x(p.throughput).toFixed(1)},${y(pick(p)).toFixed(1)}`).join(' ');
    parts.push(`<polyline points="${line((p) => p.p99Ms)}" fill="none" stroke="${color}" stroke-width="2"/>`);
    parts.push(`<polyline points="${line((p) => p.p50Ms)}" fill="none" stroke="${color}" stroke-width="1.5" stroke-dasharray="5 4"/>`);
    for (const p of sorted) parts.push(`<circle cx="${x(p.throughput).toFixed(1)}" cy="${y(p.p99Ms).toFixed(1)}" r="3" fill="${color}"/>`);
    const ly = MARGIN.top + 16 + i * 20;
    parts.push(`<line x1="${WIDTH - MARGIN.right + 14}" x2="${WIDTH - MARGIN.right + 40}" y1="${ly - 4}" y2="${ly - 4}" stroke="${color}" stroke-width="2"/>`);
    parts.push(`<text x="${WIDTH - MARGIN.right + 46}" y="${ly}">${escape(s.name)}</text>`);
  });
  const ly = MARGIN.top + 26 + series.length * 20;
  parts.push(`<text x="${WIDTH - MARGIN.right + 14}" y="${ly}" fill="#555">solid: p99, dashed: p50</text>`);
  parts.push('</svg>');
  return parts.join('\n');
}
