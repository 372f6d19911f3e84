/**
 * Executor schedules (k6 semantics), pure and clock-free: the arrival-rate
 * executors give the exact start time of iteration k by inverting the
 * integral of the rate curve, so no rounding accumulates over a long run.
 */

export interface Stage {
  /** iterations per timeUnit at the end of the stage */
  target: number;
  durationMs: number;
}

export type ExecutorConfig =
  | { executor: 'constant-arrival-rate'; rate: number; timeUnitMs: number; durationMs: number; preAllocatedVus: number; maxVus: number }
  | { executor: 'ramping-arrival-rate'; startRate: number; timeUnitMs: number; stages: Stage[]; preAllocatedVus: number; maxVus: number }
  | { executor: 'constant-vus'; vus: number; durationMs: number };

export type ExecutorName = ExecutorConfig['executor'];
export const EXECUTORS: readonly ExecutorName[] = ['constant-arrival-rate', 'ramping-arrival-rate', 'constant-vus'];

/** Start times of an open-model executor. Times are ms since the load start. */
export class ArrivalSchedule {
  /** segment i spans [t0[i], t0[i+1]) with rate r0[i] -> r1[i] per ms; cum[i] = integral up to t0[i] */
  private readonly t0: number[] = [];
  private readonly r0: number[] = [];
  private readonly r1: number[] = [];
  private readonly cum: number[] = [];
  readonly durationMs: number;
  /** exact iteration count of the whole run: iterations k with start(k) < duration */
  readonly totalIterations: number;

  constructor(config: Extract<ExecutorConfig, { executor: 'constant-arrival-rate' | 'ramping-arrival-rate' }>) {
    const perMs = (r: number) => r / config.timeUnitMs;
    const stages =
      config.executor === 'constant-arrival-rate'
        ? [{ from: config.rate, to: config.rate, durationMs: config.durationMs }]
        : config.stages.map((s, i) => ({ from: i === 0 ? config.startRate : config.stages[i - 1].target, to: s.target, durationMs: s.durationMs }));
    let t = 0;
    let c = 0;
    for (const s of stages) {
      if (s.durationMs <= 0) continue;
      this.t0.push(t);
      this.r0.push(perMs(s.from));
      this.r1.push(perMs(s.to));
      this.cum.push(c);
      c += ((perMs(s.from) + perMs(s.to)) / 2) * s.durationMs;
      t += s.durationMs;
    }
    this.t0.push(t);
    this.cum.push(c);
    this.durationMs = t;
    this.totalIterations = ceilCount(c);
    this.constantRate = config.executor === 'constant-arrival-rate' ? { rate: config.rate, timeUnitMs: config.timeUnitMs } : undefined;
  }

  private readonly constantRate?: { rate: number; timeUnitMs: number };

  /** Target rate at time t, in iterations per second. */
  rateAt(tMs: number): number {
    const i = this.segmentAtTime(tMs);
    if (i < 0) return 0;
    const span = this.t0[i + 1] - this.t0[i];
    const f = span > 0 ? (tMs - this.t0[i]) / span : 0;
    return (this.r0[i] + (this.r1[i] - this.r0[i]) * f) * 1000;
  }

  /** Integral of the rate from 0 to t: how many iterations are due in [0, t) is ceil of this. */
  integral(tMs: number): number {
    if (tMs <= 0) return 0;
    if (tMs >= this.durationMs) return this.cum[this.cum.length - 1];
    const i = this.segmentAtTime(tMs);
    const x = tMs - this.t0[i];
    const span = this.t0[i + 1] - this.t0[i];
    const slope = (this.r1[i] - this.r0[i]) / span;
    return this.cum[i] + this.r0[i] * x + 0.5 * slope * x * x;
  }

  /** Start of iteration k (0-based): the time where the integral reaches k. Undefined past the end. */
  startMs(k: number): number | undefined {
    if (k < 0 || k >= this.totalIterations) return undefined;
    if (this.constantRate) return (k * this.constantRate.timeUnitMs) / this.constantRate.rate;
    // last segment whose cumulative start is <= k
    let lo = 0;
    let hi = this.r0.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.cum[mid] <= k) lo = mid;
      else hi = mid - 1;
    }
    // the last such segment, so segments that add nothing (rate 0 -> 0) are passed over
    const i = lo;
    const need = k - this.cum[i];
    const span = this.t0[i + 1] - this.t0[i];
    const slope = (this.r1[i] - this.r0[i]) / span;
    const r0 = this.r0[i];
    // root of r0 x + slope/2 x^2 = need, in the form that stays exact when slope ~ 0
    const disc = Math.max(0, r0 * r0 + 2 * slope * need);
    const denom = r0 + Math.sqrt(disc);
    const x = denom > 0 ? (2 * need) / denom : 0;
    return this.t0[i] + Math.min(x, span);
  }

  /** Iterations of worker w of W (k % W == w) starting in [fromMs, toMs), as [k, startMs] pairs. */
  *startsForWorker(worker: number, workers: number, fromMs = 0, toMs = this.durationMs): Generator<[number, number]> {
    let k = firstIndexAtOrAfter(this, fromMs);
    k += (((worker - k) % workers) + workers) % workers;
    for (; k < this.totalIterations; k += workers) {
      const t = this.startMs(k)!;
      if (t >= toMs) return;
      yield [k, t];
    }
  }

  private segmentAtTime(tMs: number): number {
    if (tMs < 0 || tMs >= this.durationMs) return -1;
    let lo = 0;
    let hi = this.r0.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.t0[mid] <= tMs) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }
}

/** Number of integers k >= 0 with k < x, tolerant of float noise just above an integer. */
function ceilCount(x: number): number {
  const r = Math.round(x);
  if (Math.abs(x - r) < 1e-9 * Math.max(1, Math.abs(x))) return Math.max(0, r);
  return Math.max(0, Math.ceil(x));
}

function firstIndexAtOrAfter(s: ArrivalSchedule, tMs: number): number {
  if (tMs <= 0) return 0;
  let k = Math.max(0, Math.floor(s.integral(tMs)) - 1);
  // the float inverse can be off by one near a boundary: step to the exact index
  while (k > 0 && (s.startMs(k - 1) ?? Infinity) >= tMs) k--;
  while (k < s.totalIterations && s.startMs(k)! < tMs) k++;
  return k;
}

/** Share of n for worker w of W: the first n % W workers get one more. */
export function splitCount(n: number, workers: number, worker: number): number {
  return Math.floor(n / workers) + (worker < n % workers ? 1 : 0);
}

// ---------------------------------------------------------------------------
// VU pool and dispatch (one per worker)

export interface DueIteration {
  k: number;
  dueMs: number;
  /** VU slot id (0-based, per dispatcher) */
  vu: number;
  /** the VU must be created before it runs its first iteration (pool grew) */
  fresh: boolean;
}

export interface DispatchResult {
  start: DueIteration[];
  /** iteration indexes dropped: due while no VU was free and the pool was at max */
  dropped: number[];
}

/**
 * Hands out this worker's due iterations to VUs. A VU released at time r is
 * free for iterations due at >= r; an iteration due while no VU is free and
 * the pool is at maxVus is dropped (counted, never silently skipped).
 * All times come from the injected clock, in ms since the load start.
 */
export class ArrivalDispatcher {
  private readonly iter: Generator<[number, number]>;
  private next: [number, number] | undefined;
  /**
   * Free VU slots, oldest release first (releases come in clock order): a
   * queue read from freeHead, since Array#shift copies a large array on every
   * call (100,000 pre-allocated VUs made one poll take ~50 s).
   */
  private free: Array<{ vu: number; sinceMs: number }> = [];
  private freeHead = 0;
  private allocated = 0;
  private busy = 0;
  private peakBusy = 0;
  started = 0;
  droppedCount = 0;

  constructor(
    readonly schedule: ArrivalSchedule,
    readonly opts: { worker: number; workers: number; preAllocatedVus: number; maxVus: number; now: () => number },
  ) {
    if (opts.maxVus < opts.preAllocatedVus) throw new RangeError('maxVus < preAllocatedVus');
    this.iter = schedule.startsForWorker(opts.worker, opts.workers);
    this.next = this.pull();
    for (; this.allocated < opts.preAllocatedVus; this.allocated++) this.free.push({ vu: this.allocated, sinceMs: -Infinity });
  }

  private get freeCount(): number {
    return this.free.length - this.freeHead;
  }

  private takeFree(): number {
    const { vu } = this.free[this.freeHead++];
    // compact once the read part is the larger half: amortized O(1) per take
    if (this.freeHead > 1024 && this.freeHead * 2 > this.free.length) {
      this.free = this.free.slice(this.freeHead);
      this.freeHead = 0;
    }
    return vu;
  }

  private pull(): [number, number] | undefined {
    const r = this.iter.next();
    return r.done ? undefined : r.value;
  }

  /**
   * Everything due up to the clock's now. `maxFresh` bounds how many new VUs
   * this poll may add to the pool (the caller's budget for making them): an
   * iteration due while no VU is free and none may be made now is dropped, as
   * k6 drops it while it initializes VUs in the background.
   */
  poll(maxFresh = Infinity): DispatchResult {
    const now = this.opts.now();
    const out: DispatchResult = { start: [], dropped: [] };
    while (this.next && this.next[1] <= now) {
      const [k, dueMs] = this.next;
      this.next = this.pull();
      if (this.freeCount && this.free[this.freeHead].sinceMs <= dueMs) {
        const vu = this.takeFree();
        if (++this.busy > this.peakBusy) this.peakBusy = this.busy;
        this.started++;
        out.start.push({ k, dueMs, vu, fresh: false });
      } else if (this.allocated < this.opts.maxVus && maxFresh > 0) {
        maxFresh--;
        const vu = this.allocated++;
        if (++this.busy > this.peakBusy) this.peakBusy = this.busy;
        this.started++;
        out.start.push({ k, dueMs, vu, fresh: true });
      } else {
        this.droppedCount++;
        out.dropped.push(k);
      }
    }
    return out;
  }

  /** A VU finished its iteration (at the clock's now). */
  release(vu: number): void {
    if (this.busy <= 0) throw new RangeError('release without a busy VU');
    this.busy--;
    this.free.push({ vu, sinceMs: this.opts.now() });
  }

  /** When the next iteration is due (for the timer), or undefined when none is left. */
  nextDueMs(): number | undefined {
    return this.next?.[1];
  }

  get done(): boolean {
    return this.next === undefined;
  }

  get activeVus(): number {
    return this.busy;
  }

  /**
   * The most VUs busy at once since the last call: at 200/s an iteration of a
   * few ms leaves almost no VU busy at any one sampling instant, so a sample of
   * `activeVus` alone reads 0 while VUs are plainly in use.
   */
  takePeakActiveVus(): number {
    const peak = Math.max(this.peakBusy, this.busy);
    this.peakBusy = this.busy;
    return peak;
  }

  get allocatedVus(): number {
    return this.allocated;
  }
}

export function planDurationMs(e: ExecutorConfig): number {
  return e.executor === 'ramping-arrival-rate' ? e.stages.reduce((n, s) => n + s.durationMs, 0) : e.durationMs;
}

/** Target rate (iterations/s) at a time of the plan; 0 for the closed model. */
export function targetRateAt(e: ExecutorConfig, schedule: ArrivalSchedule | undefined, tMs: number): number {
  if (e.executor === 'constant-vus' || !schedule) return 0;
  return schedule.rateAt(tMs);
}
