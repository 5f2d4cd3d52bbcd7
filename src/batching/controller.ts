// The adaptive controller: what one model version's batches cost and how fast its requests arrive, learned online
// from what the batcher sees, for the adaptive policy (policy.ts decideAdaptive) and for refusing early a request
// whose deadline cannot be met. One per batcher, so per model version and per worker kind (a version runs on one
// execution provider). Times are microseconds; the batcher passes its clock's readings in, so that the controller
// itself holds no clock and tests script it exactly.
import type { LoadEstimate } from './policy';

/** Batches the cost fit looks back over: enough to average out the machine's noise, few enough to follow a change. */
export const COST_WINDOW = 64;

/** Batches seen before predictions are trusted (to wait for company, or to refuse a request early). */
export const MIN_BATCHES = 8;

/** Weight of each new arrival gap in the running mean: about the last 16 arrivals count. */
const ARRIVAL_WEIGHT = 1 / 16;

/**
 * The longest gap between arrivals that counts in full: after a quiet minute, a burst's rate shows within tens of
 * arrivals instead of hundreds.
 */
const MAX_GAP_US = 10_000;

export class AdaptiveController {
  // The last COST_WINDOW batches (rows, µs from dispatch to result), in a ring, with running sums for the fit.
  private readonly rows = new Float64Array(COST_WINDOW);
  private readonly costs = new Float64Array(COST_WINDOW);
  private next = 0;
  private count = 0;
  private sumR = 0;
  private sumRR = 0;
  private sumY = 0;
  private sumRY = 0;
  /** Batches observed in all; predictions wait for MIN_BATCHES. */
  private seen = 0;
  private fixed = 0;
  private perRow = 0;
  /** Mean µs between arrivals, per row; Infinity until two arrivals. */
  private gapPerRowUs = Infinity;
  private lastArrivalUs = NaN;
  /** Running mean of the hand-off: a batch's time from dispatch to result less the worker's own compute time. */
  private handOff = 0;
  private readonly estimate: LoadEstimate = { fixedUs: 0, perRowUs: 0, arrivalRowsPerUs: 0, idleWorkers: 0, workerFreeInUs: 0, handOffUs: 0 };

  constructor(private readonly workers: number) {}

  /** A request of `rows` rows arrived at `nowUs`. */
  onArrival(rows: number, nowUs: number): void {
    if (this.lastArrivalUs === this.lastArrivalUs) {
      const gap = Math.min(MAX_GAP_US, Math.max(0, nowUs - this.lastArrivalUs)) / rows;
      this.gapPerRowUs = this.gapPerRowUs === Infinity ? gap : this.gapPerRowUs + (gap - this.gapPerRowUs) * ARRIVAL_WEIGHT;
    }
    this.lastArrivalUs = nowUs;
  }

  /** A batch of `rows` rows took `totalUs` from dispatch to its result, `computeUs` of it in the worker. */
  onBatch(rows: number, totalUs: number, computeUs: number): void {
    if (!(rows > 0 && totalUs >= 0)) return;
    if (this.count === COST_WINDOW) {
      const r = this.rows[this.next];
      const y = this.costs[this.next];
      this.sumR -= r;
      this.sumRR -= r * r;
      this.sumY -= y;
      this.sumRY -= r * y;
    } else this.count++;
    this.rows[this.next] = rows;
    this.costs[this.next] = totalUs;
    this.next = (this.next + 1) % COST_WINDOW;
    this.sumR += rows;
    this.sumRR += rows * rows;
    this.sumY += totalUs;
    this.sumRY += rows * totalUs;
    this.seen++;
    this.handOff += (Math.max(0, totalUs - computeUs) - this.handOff) / Math.min(this.seen, 16);
    this.fit();
  }

  /** Least squares of cost = perRow·rows + fixed over the window; with one batch size only, all of it is fixed. */
  private fit(): void {
    const n = this.count;
    const meanR = this.sumR / n;
    const meanY = this.sumY / n;
    const varR = this.sumRR / n - meanR * meanR;
    // Both parts are costs: a negative slope or intercept is noise, clamped, with the mean kept on the fit.
    const slope = varR > 1e-9 ? Math.max(0, (this.sumRY / n - meanR * meanY) / varR) : 0;
    this.perRow = slope;
    this.fixed = Math.max(0, meanY - slope * meanR);
  }

  /** Whether enough batches have been seen for predictions to be used. */
  get trained(): boolean {
    return this.seen >= MIN_BATCHES;
  }

  /** Predicted µs from dispatch to result for a batch of `rows` rows; 0 until trained (nothing is refused then). */
  predictUs(rows: number): number {
    return this.trained ? this.fixed + this.perRow * rows : 0;
  }

  get fixedUs(): number {
    return this.fixed;
  }

  get perRowUs(): number {
    return this.perRow;
  }

  /** The mean hand-off (dispatch to result, less compute), for the report. */
  get handOffUs(): number {
    return this.handOff;
  }

  /** Rows a microsecond, recently. */
  get arrivalRowsPerUs(): number {
    return this.gapPerRowUs === Infinity ? 0 : 1 / Math.max(this.gapPerRowUs, 1e-3);
  }

  /**
   * The estimate for the policy, with `busy` batches in flight, the first of which is predicted to end in
   * `workerFreeInUs`; one object, reused. Untrained, it reports no arrivals and no hand-off time, so that the
   * policy dispatches at once until it has something to go on.
   */
  loadEstimate(busy: number, workerFreeInUs = 0): LoadEstimate {
    const estimate = this.estimate;
    estimate.workerFreeInUs = workerFreeInUs;
    estimate.handOffUs = this.trained ? this.handOff : 0;
    estimate.fixedUs = this.fixed;
    estimate.perRowUs = this.perRow;
    estimate.arrivalRowsPerUs = this.trained ? this.arrivalRowsPerUs : 0;
    estimate.idleWorkers = Math.max(0, this.workers - busy);
    return estimate;
  }
}
