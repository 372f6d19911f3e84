import * as os from 'node:os';
import type { Problem } from '../errors';
import { parseDurationMs } from '../util/duration';
import { LIMITS, formatLimitDuration } from '../util/limits';
import { didYouMean } from '../spec/did-you-mean';
import { collectThresholdFlags, collectThresholds, invalid, luaList, type ThresholdDef } from './thresholds';
import type { MetricType } from './metrics';
import { EXECUTORS, planDurationMs, type ExecutorConfig, type ExecutorName, type Stage } from './schedule';

/**
 * A load run's plan from the script's `options` and the command's flags:
 * the executor (k6 names and semantics), its thresholds and duration, with
 * every problem reported at once with its path.
 */
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
