import * as os from 'node:os';
import type { Problem } from '../errors';
import { parseDurationMs } from '../util/duration';
import { LIMITS, formatLimitDuration } from '../util/limits';
import { didYouMean } from '../spec/did-you-mean';
import { collectThresholdFlags, collectThresholds, invalid, luaList, type ThresholdDef } from './thresholds';
import type { MetricType } from './metrics';

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

// ---------------------------------------------------------------------------
// options + flags

export interface LoadFlags {
  /** `200/s`, `1000/m`, `50/100ms`, or a plain number per second */
  rate?: string;
  duration?: string;
  ramp?: string;
  maxVus?: number;
  /** repeatable `METRIC:EXPR` */
  threshold?: string[];
}

export interface LoadPlan {
  executor: ExecutorConfig;
  /** thresholds: the script's, with those of a metric key given by --threshold replaced by the flags' */
  thresholds: ThresholdDef[];
  durationMs: number;
}

/**
 * Default max VUs of an arrival-rate executor per core (k6 asks for
 * preAllocatedVUs and defaults maxVUs to it; topas guesses from the rate).
 * VUs needed = rate x iteration time, and one core runs some 20-50k
 * iterations/s of one request: at 20 ms each, 1,000 VUs keep a core busy.
 * More only cost init time and memory (each VU runs the script's top level
 * and keeps a Lua coroutine), so a guess from a huge rate stops here;
 * --max-vus and options.max_vus still go up to LIMITS.vus.
 */
export const DEFAULT_MAX_VUS_PER_CORE = 1000;

export function defaultVuCap(cores: number): number {
  return DEFAULT_MAX_VUS_PER_CORE * Math.max(1, cores);
}

const OPTION_KEYS = ['executor', 'rate', 'time_unit', 'duration', 'ramp', 'stages', 'start_rate', 'vus', 'pre_allocated_vus', 'max_vus', 'thresholds'];
const DEFAULT_DURATION_MS = 30_000;

/** `200/s`, `1000/m`, `5/100ms`, `200` (per second) -> rate per timeUnit. */
export function parseRate(value: unknown): { rate: number; timeUnitMs: number } {
  if (typeof value === 'number') {
    if (!(Number.isFinite(value) && value > 0)) throw new Error(`expected a rate above 0, got ${value}`);
    checkRatePerSecond(value, 1000, String(value));
    return { rate: value, timeUnitMs: 1000 };
  }
  if (typeof value !== 'string') throw new Error(`expected a rate like "200/s", got ${JSON.stringify(value)}`);
  const m = /^\s*(\d+(?:\.\d+)?)\s*(?:\/\s*(\S+))?\s*$/.exec(value);
  if (!m) throw new Error(`expected a rate like "200/s" or "1000/m", got "${value}"`);
  const rate = Number(m[1]);
  if (!(rate > 0)) throw new Error(`expected a rate above 0, got "${value}"`);
  let unit = m[2] ?? 's';
  if (/^[smh]$/.test(unit) || unit === 'ms') unit = `1${unit}`;
  let timeUnitMs: number;
  try {
    timeUnitMs = parseDurationMs(unit);
  } catch {
    throw new Error(`expected a rate like "200/s" or "1000/m", got "${value}"`);
  }
  if (!(timeUnitMs > 0)) throw new Error(`the time unit of "${value}" must be above 0`);
  checkRatePerSecond(rate, timeUnitMs, `"${value}"`);
  return { rate, timeUnitMs };
}

/** Rates past LIMITS.ratePerSecond are refused: the schedule would fall behind at once while memory fills. */
function checkRatePerSecond(rate: number, timeUnitMs: number, shown: string): void {
  const perSecond = (rate * 1000) / timeUnitMs;
  if (perSecond > LIMITS.ratePerSecond) throw new Error(`at most ${LIMITS.ratePerSecond.toLocaleString('en-US')} iterations per second, got ${shown}`);
}

function positiveInt(v: unknown, path: string, problems: Problem[], max: number = LIMITS.vus): number | undefined {
  if (v === undefined || v === null) return undefined;
  const n = typeof v === 'string' && /^\d+$/.test(v) ? Number(v) : v;
  if (typeof n === 'number' && Number.isInteger(n) && n > 0 && n <= max) return n;
  problems.push({ path, message: `expected a whole number 1-${max.toLocaleString('en-US')}, got ${JSON.stringify(v)}` });
  return undefined;
}

function duration(v: unknown, path: string, problems: Problem[], allowZero = false): number | undefined {
  if (v === undefined || v === null) return undefined;
  let ms: number;
  try {
    ms = parseDurationMs(v as string | number);
    if (!allowZero && ms <= 0) throw new Error('zero');
  } catch {
    problems.push({ path, message: `expected a duration like "30s" or "2m"${allowZero ? '' : ' above 0'}, got ${JSON.stringify(v)}` });
    return undefined;
  }
  if (ms > LIMITS.durationMs) {
    problems.push({ path, message: `expected at most ${formatLimitDuration(LIMITS.durationMs)}, got ${JSON.stringify(v)}` });
    return undefined;
  }
  return ms;
}

/**
 * Merge the script's `options` table with `topas load` flags (flags win) and
 * validate everything at once: one INVALID_FLAGS error lists every problem
 * with its path (`options.stages[2].target`, `--rate`).
 */
export function resolveLoadPlan(options: unknown, flags: LoadFlags = {}, knownTypes: Record<string, MetricType> = {}, cores = os.availableParallelism()): LoadPlan {
  const problems: Problem[] = [];
  const o: Record<string, unknown> = {};
  if (options !== undefined && options !== null) {
    if (typeof options !== 'object' || Array.isArray(options)) problems.push({ path: 'options', message: 'expected a table' });
    else Object.assign(o, options);
  }
  for (const k of Object.keys(o)) {
    if (!OPTION_KEYS.includes(k)) {
      const s = didYouMean(k, OPTION_KEYS);
      problems.push({ path: `options.${k}`, message: `unknown option${s ? `; did you mean "${s}"?` : ` (known: ${OPTION_KEYS.join(', ')})`}` });
    }
  }

  let rate: { rate: number; timeUnitMs: number } | undefined;
  const rateFrom = (v: unknown, path: string) => {
    try {
      return parseRate(v);
    } catch (e) {
      problems.push({ path, message: (e as Error).message });
      return undefined;
    }
  };
  const flagRate = flags.rate !== undefined ? rateFrom(flags.rate, '--rate') : undefined;
  const optRate = o.rate !== undefined ? rateFrom(o.rate, 'options.rate') : undefined;
  let timeUnitMs = 1000;
  if (o.time_unit !== undefined) timeUnitMs = duration(o.time_unit, 'options.time_unit', problems) ?? 1000;
  if (optRate && typeof o.rate === 'number') {
    optRate.timeUnitMs = timeUnitMs;
    try {
      checkRatePerSecond(optRate.rate, timeUnitMs, `${optRate.rate} per ${timeUnitMs}ms`);
    } catch (e) {
      problems.push({ path: 'options.rate', message: (e as Error).message });
    }
  }
  rate = flagRate ?? optRate;

  const durationMs = flags.duration !== undefined ? duration(flags.duration, '--duration', problems) : duration(o.duration, 'options.duration', problems);
  const rampMs = flags.ramp !== undefined ? duration(flags.ramp, '--ramp', problems, true) : duration(o.ramp, 'options.ramp', problems, true);
  const maxVusFlag = flags.maxVus !== undefined ? positiveInt(flags.maxVus, '--max-vus', problems) : undefined;
  const maxVus = maxVusFlag ?? positiveInt(o.max_vus, 'options.max_vus', problems);
  const preVus = positiveInt(o.pre_allocated_vus, 'options.pre_allocated_vus', problems);
  const vus = positiveInt(o.vus, 'options.vus', problems);
  const startRate = o.start_rate === undefined ? 0 : typeof o.start_rate === 'number' && o.start_rate >= 0 ? o.start_rate : (problems.push({ path: 'options.start_rate', message: 'expected a number >= 0' }), 0);
  /** a stage target or start rate is per time_unit */
  const overRate = (r: number) => (r * 1000) / timeUnitMs > LIMITS.ratePerSecond;
  const rateLimitMessage = (r: unknown) => `at most ${LIMITS.ratePerSecond.toLocaleString('en-US')} iterations per second, got ${JSON.stringify(r)} per ${timeUnitMs}ms`;
  if (startRate > 0 && overRate(startRate)) problems.push({ path: 'options.start_rate', message: rateLimitMessage(startRate) });

  let stages: Stage[] | undefined;
  if (o.stages !== undefined) {
    const list = luaList(o.stages);
    if (!list || list.length === 0) problems.push({ path: 'options.stages', message: 'expected a list of {target=, duration=}' });
    else {
      stages = [];
      list.forEach((s, i) => {
        const p = `options.stages[${i + 1}]`;
        if (!s || typeof s !== 'object') {
          problems.push({ path: p, message: 'expected {target=, duration=}' });
          return;
        }
        const st = s as Record<string, unknown>;
        for (const k of Object.keys(st)) if (k !== 'target' && k !== 'duration') problems.push({ path: `${p}.${k}`, message: 'unknown field (expected target, duration)' });
        const target = st.target;
        if (typeof target !== 'number' || !(target >= 0) || !Number.isFinite(target)) problems.push({ path: `${p}.target`, message: `expected a rate >= 0, got ${JSON.stringify(target)}` });
        else if (overRate(target)) problems.push({ path: `${p}.target`, message: rateLimitMessage(target) });
        const d = duration(st.duration, `${p}.duration`, problems);
        if (st.duration === undefined) problems.push({ path: `${p}.duration`, message: 'missing' });
        if (typeof target === 'number' && d !== undefined) stages!.push({ target, durationMs: d });
      });
      const stagesMs = stages.reduce((n, st) => n + st.durationMs, 0);
      if (stagesMs > LIMITS.durationMs) problems.push({ path: 'options.stages', message: `the stages last ${stagesMs}ms; at most ${formatLimitDuration(LIMITS.durationMs)} in all` });
    }
  }

  let executorName = o.executor as ExecutorName | undefined;
  if (executorName !== undefined && !EXECUTORS.includes(executorName)) {
    const s = didYouMean(String(executorName), EXECUTORS);
    problems.push({ path: 'options.executor', message: `unknown executor ${JSON.stringify(executorName)}${s ? `; did you mean "${s}"?` : ` (known: ${EXECUTORS.join(', ')})`}` });
    executorName = undefined;
  }
  // --rate on the command line means an open model at that rate, whatever the script declared
  if (flagRate) executorName = rampMs ? 'ramping-arrival-rate' : 'constant-arrival-rate';
  else if (!executorName) executorName = stages ? 'ramping-arrival-rate' : vus && !rate ? 'constant-vus' : rampMs ? 'ramping-arrival-rate' : 'constant-arrival-rate';

  let executor: ExecutorConfig | undefined;
  const total = durationMs ?? DEFAULT_DURATION_MS;
  if (executorName === 'constant-vus') {
    // a vus given but invalid is reported once, above
    if (!vus && o.vus === undefined) problems.push({ path: 'options.vus', message: 'the constant-vus executor needs vus' });
    executor = { executor: 'constant-vus', vus: vus ?? 1, durationMs: total };
  } else {
    let ex: ExecutorConfig | undefined;
    if (executorName === 'ramping-arrival-rate' && stages && !flagRate) {
      if (flags.duration !== undefined || o.duration !== undefined) problems.push({ path: flags.duration !== undefined ? '--duration' : 'options.duration', message: 'stages set the duration; give one or the other' });
      ex = { executor: 'ramping-arrival-rate', startRate, timeUnitMs, stages, preAllocatedVus: 0, maxVus: 0 };
    } else if (!rate) {
      // a rate given but invalid is reported once, above
      if (flags.rate === undefined && o.rate === undefined) problems.push({ path: 'options.rate', message: 'missing: give options.rate or --rate (e.g. 200/s), or stages' });
    } else if (rampMs) {
      if (rampMs > total) problems.push({ path: flags.ramp !== undefined ? '--ramp' : 'options.ramp', message: `the ramp (${rampMs}ms) is longer than the duration (${total}ms)` });
      const st: Stage[] = [{ target: rate.rate, durationMs: rampMs }];
      if (total > rampMs) st.push({ target: rate.rate, durationMs: total - rampMs });
      ex = { executor: 'ramping-arrival-rate', startRate: 0, timeUnitMs: rate.timeUnitMs, stages: st, preAllocatedVus: 0, maxVus: 0 };
    } else {
      ex = { executor: 'constant-arrival-rate', rate: rate.rate, timeUnitMs: rate.timeUnitMs, durationMs: total, preAllocatedVus: 0, maxVus: 0 };
    }
    if (ex && ex.executor !== 'constant-vus') {
      const peakPerSec =
        ex.executor === 'constant-arrival-rate' ? (ex.rate * 1000) / ex.timeUnitMs : (Math.max(ex.startRate, ...ex.stages.map((s) => s.target)) * 1000) / ex.timeUnitMs;
      // enough VUs for iterations of up to 1s at the peak rate, unless told otherwise, and no more than the machine can drive
      ex.maxVus = maxVus ?? Math.min(LIMITS.vus, defaultVuCap(cores), Math.max(50, Math.ceil(peakPerSec)));
      ex.preAllocatedVus = Math.min(ex.maxVus, preVus ?? Math.max(1, Math.ceil(peakPerSec / 10)));
      if (preVus !== undefined && preVus > ex.maxVus) problems.push({ path: 'options.pre_allocated_vus', message: `is above max_vus (${ex.maxVus})` });
      executor = ex;
    }
  }

  const optThresholds = collectThresholds(o.thresholds, 'options.thresholds', knownTypes, problems);
  const flagThresholds = collectThresholdFlags(flags.threshold ?? [], knownTypes, problems);
  if (problems.length) throw invalid(problems);
  const overridden = new Set(flagThresholds.map((t) => t.key));
  const thresholds = [...optThresholds.filter((t) => !overridden.has(t.key)), ...flagThresholds];
  return { executor: executor!, thresholds, durationMs: planDurationMs(executor!) };
}

export function planDurationMs(e: ExecutorConfig): number {
  return e.executor === 'ramping-arrival-rate' ? e.stages.reduce((n, s) => n + s.durationMs, 0) : e.durationMs;
}

/** Target rate (iterations/s) at a time of the plan; 0 for the closed model. */
export function targetRateAt(e: ExecutorConfig, schedule: ArrivalSchedule | undefined, tMs: number): number {
  if (e.executor === 'constant-vus' || !schedule) return 0;
  return schedule.rateAt(tMs);
}
