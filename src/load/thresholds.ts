import { TopasError, type Problem } from '../errors';
import { parseDurationMs } from '../util/duration';
import { didYouMean } from '../spec/did-you-mean';
import { BUILTIN_METRICS, METRIC_NAME_RE, SeriesStats, selectSeries, snapshotDurationMs, type MetricType, type MetricsSnapshot, type Tags } from './metrics';

/**
 * k6 threshold expressions: `<aggregation> <op> <number>`, e.g. `p(95)<250`,
 * `rate<0.01`, `count>100`. Aggregations follow k6 per metric type: a
 * counter's `rate` is per second, a rate metric's `rate` is the fraction of
 * true samples, trend values are in ms.
 */

export type ThresholdOp = '<' | '<=' | '>' | '>=' | '==' | '!=';

export interface ThresholdExpr {
  /** `avg`, `min`, `max`, `med`, `count`, `rate`, `value`, or `p(N)` */
  aggregation: string;
  /** N of `p(N)`, when aggregation is a percentile */
  percentile?: number;
  op: ThresholdOp;
  value: number;
  /** the expression as written */
  source: string;
}

export interface ThresholdDef {
  /** the key as written: `http_req_duration{name:/api/users}` */
  key: string;
  metric: string;
  tags: Tags;
  expr: ThresholdExpr;
  abortOnFail: boolean;
  delayAbortEvalMs: number;
  /** where it was declared, for messages */
  path: string;
}

export interface ThresholdResult {
  key: string;
  metric: string;
  tags: Tags;
  expression: string;
  ok: boolean;
  /** the aggregation's observed value; undefined when the metric had no samples */
  observed?: number;
  abortOnFail: boolean;
  /** why it failed without a value (no samples) */
  note?: string;
}

const AGG_NAMES = ['avg', 'min', 'max', 'med', 'count', 'rate', 'value', 'p(95)'];
const EXPR_RE = /^\s*(avg|min|max|med|count|rate|value|p\(\s*(\d+(?:\.\d+)?)\s*\))\s*(<=|>=|===|==|!=|<|>)\s*([-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?)\s*$/;

/** The aggregations k6 allows for each metric type. */
export function aggregationsFor(type: MetricType): string[] {
  switch (type) {
    case 'counter':
      return ['count', 'rate'];
    case 'rate':
      return ['rate'];
    case 'gauge':
      return ['value'];
    case 'trend':
      return ['avg', 'min', 'max', 'med', 'count', 'p(N)'];
  }
}

/** Parse one expression; throws a plain Error with the message (callers add the path). */
export function parseThresholdExpr(source: string): ThresholdExpr {
  const m = EXPR_RE.exec(source);
  if (!m) {
    const fix = repairExpr(source);
    throw new Error(`cannot parse "${source}"${fix ? `; did you mean "${fix}"?` : '; expected e.g. "p(95)<250", "avg<200", "rate<0.01", "count>100"'}`);
  }
  const op = (m[3] === '===' ? '==' : m[3]) as ThresholdOp;
  const value = Number(m[4]);
  // 1e309 is Infinity: a bound that can never be crossed is a typo, not a threshold
  if (!Number.isFinite(value)) throw new Error(`cannot parse "${source}": ${m[4]} is not a finite number`);
  if (m[2] !== undefined) {
    const p = Number(m[2]);
    if (!(p >= 0 && p <= 100)) throw new Error(`cannot parse "${source}": a percentile is between 0 and 100`);
    return { aggregation: `p(${p})`, percentile: p, op, value, source };
  }
  return { aggregation: m[1], op, value, source };
}

/** A guess at what a malformed expression meant, if a few usual slips explain it. */
function repairExpr(source: string): string | undefined {
  let s = source.trim().toLowerCase().replace(/\s+/g, '');
  s = s.replace(/=>/g, '>=').replace(/=</g, '<=');
  s = s.replace(/(\d)(ms)$/, '$1');
  s = s.replace(/^(?:p|percentile|pct)[_(]?(\d+(?:\.\d+)?)\)?(?=[<>=!])/, 'p($1)');
  s = s.replace(/^(\d+(?:\.\d+)?)(?:th)?(?:p|%|percentile)(?=[<>=!])/, 'p($1)');
  s = s.replace(/^(p\(\d+(?:\.\d+)?\))?([a-z_]+)(?=[<>=!])/, (all, p: string | undefined, word: string) => {
    if (p) return all;
    if (word === 'average' || word === 'mean') return 'avg';
    if (word === 'median') return 'med';
    if (word === 'minimum') return 'min';
    if (word === 'maximum') return 'max';
    return didYouMean(word, AGG_NAMES.slice(0, 7)) ?? word;
  });
  s = s.replace(/(?<![<>!=])=(?!=)/, '==');
  const pct = /^(.*?)([\d.]+)%$/.exec(s);
  if (pct) s = `${pct[1]}${Number(pct[2]) / 100}`;
  if (s === source.trim()) return undefined;
  return EXPR_RE.test(s) ? s : undefined;
}

/** `http_req_duration{name:/api/users,method:GET}` -> metric + tags. */
export function parseMetricKey(key: string): { metric: string; tags: Tags } {
  const m = /^\s*([^{}\s]+)\s*(?:\{(.*)\})?\s*$/.exec(key);
  if (!m) throw new Error(`cannot parse metric "${key}"; expected name or name{tag:value,...}`);
  const metric = m[1];
  if (!METRIC_NAME_RE.test(metric)) throw new Error(`"${metric}" is not a metric name`);
  const tags: Tags = {};
  if (m[2] !== undefined) {
    if (m[2].trim() === '') throw new Error(`"${key}": empty tag filter`);
    for (const part of m[2].split(',')) {
      const i = part.indexOf(':');
      if (i <= 0) throw new Error(`"${key}": tag filter "${part.trim()}" is not tag:value`);
      tags[part.slice(0, i).trim()] = part.slice(i + 1).trim();
    }
  }
  return { metric, tags };
}

function checkAggregation(metric: string, expr: ThresholdExpr, type: MetricType | undefined): string | undefined {
  if (!type) return undefined;
  const allowed = aggregationsFor(type);
  const ok = expr.percentile !== undefined ? allowed.includes('p(N)') : allowed.includes(expr.aggregation);
  if (ok) return undefined;
  return `"${expr.aggregation}" does not apply to ${type} metric "${metric}" (use ${allowed.join(', ')})`;
}

/** Lua arrays reach JS as arrays or as objects keyed "1", "2", ... */
export function luaList(v: unknown): unknown[] | undefined {
  if (Array.isArray(v)) return v;
  if (v && typeof v === 'object') {
    const keys = Object.keys(v);
    if (keys.length === 0) return [];
    if (keys.every((k) => /^\d+$/.test(k))) {
      return keys
        .map(Number)
        .sort((a, b) => a - b)
        .map((k) => (v as Record<string, unknown>)[String(k)]);
    }
  }
  return undefined;
}

/**
 * `options.thresholds`: `{ [metricKey] = { "p(95)<250", {threshold=..., abort_on_fail=true, delay_abort_eval="10s"} } }`.
 * Collects every problem before throwing one INVALID_FLAGS error.
 */
export function parseThresholdsOption(value: unknown, path = 'options.thresholds', knownTypes: Record<string, MetricType> = {}): ThresholdDef[] {
  const problems: Problem[] = [];
  const defs = collectThresholds(value, path, knownTypes, problems);
  if (problems.length) throw invalid(problems);
  return defs;
}

/** Same as parseThresholdsOption but appends problems instead of throwing. */
export function collectThresholds(value: unknown, path: string, knownTypes: Record<string, MetricType>, problems: Problem[]): ThresholdDef[] {
  const defs: ThresholdDef[] = [];
  if (value === undefined || value === null) return defs;
  if (typeof value !== 'object' || Array.isArray(value)) {
    problems.push({ path, message: 'expected a table of metric = {expressions}' });
    return defs;
  }
  for (const [key, entries] of Object.entries(value as Record<string, unknown>)) {
    const keyPath = `${path}[${JSON.stringify(key)}]`;
    let metric: { metric: string; tags: Tags };
    try {
      metric = parseMetricKey(key);
    } catch (e) {
      problems.push({ path: keyPath, message: (e as Error).message });
      continue;
    }
    const type = knownTypes[metric.metric] ?? BUILTIN_METRICS[metric.metric]?.type;
    if (!type && metric.metric.startsWith('http_') ) {
      const s = didYouMean(metric.metric, Object.keys(BUILTIN_METRICS));
      if (s) problems.push({ path: keyPath, message: `unknown metric "${metric.metric}"; did you mean "${s}"?` });
    }
    const list = typeof entries === 'string' ? [entries] : luaList(entries);
    if (!list) {
      problems.push({ path: keyPath, message: 'expected a list of threshold expressions' });
      continue;
    }
    list.forEach((entry, i) => {
      const p = `${keyPath}[${i + 1}]`;
      const def = parseEntry(entry, p, key, metric, type, problems);
      if (def) defs.push(def);
    });
  }
  return defs;
}

const ENTRY_KEYS = ['threshold', 'abort_on_fail', 'delay_abort_eval'];

function parseEntry(
  entry: unknown,
  path: string,
  key: string,
  metric: { metric: string; tags: Tags },
  type: MetricType | undefined,
  problems: Problem[],
): ThresholdDef | undefined {
  let source: unknown = entry;
  let abortOnFail = false;
  let delayAbortEvalMs = 0;
  if (entry && typeof entry === 'object' && !Array.isArray(entry)) {
    const o = entry as Record<string, unknown>;
    for (const k of Object.keys(o)) {
      if (!ENTRY_KEYS.includes(k)) {
        const s = didYouMean(k, ENTRY_KEYS);
        problems.push({ path: `${path}.${k}`, message: `unknown field${s ? `; did you mean "${s}"?` : ` (expected ${ENTRY_KEYS.join(', ')})`}` });
      }
    }
    source = o.threshold;
    if (o.abort_on_fail !== undefined) {
      if (typeof o.abort_on_fail !== 'boolean') problems.push({ path: `${path}.abort_on_fail`, message: 'expected true or false' });
      else abortOnFail = o.abort_on_fail;
    }
    if (o.delay_abort_eval !== undefined) {
      try {
        delayAbortEvalMs = parseDurationMs(o.delay_abort_eval as string | number);
      } catch {
        problems.push({ path: `${path}.delay_abort_eval`, message: `expected a duration like "10s", got ${JSON.stringify(o.delay_abort_eval)}` });
      }
    }
    if (source === undefined) {
      problems.push({ path: `${path}.threshold`, message: 'missing; expected e.g. threshold="p(95)<250"' });
      return undefined;
    }
  }
  if (typeof source !== 'string') {
    problems.push({ path, message: `expected a string like "p(95)<250" or a table {threshold=...}, got ${JSON.stringify(source)}` });
    return undefined;
  }
  let expr: ThresholdExpr;
  try {
    expr = parseThresholdExpr(source);
  } catch (e) {
    problems.push({ path, message: (e as Error).message });
    return undefined;
  }
  const bad = checkAggregation(metric.metric, expr, type);
  if (bad) {
    problems.push({ path, message: bad });
    return undefined;
  }
  return { key, metric: metric.metric, tags: metric.tags, expr, abortOnFail, delayAbortEvalMs, path };
}

/**
 * `--threshold 'http_req_duration{name:/x}:p(95)<250'` (repeatable). The
 * metric key ends at the first ':' outside braces.
 */
export function parseThresholdFlags(flags: readonly string[], knownTypes: Record<string, MetricType> = {}): ThresholdDef[] {
  const problems: Problem[] = [];
  const defs = collectThresholdFlags(flags, knownTypes, problems);
  if (problems.length) throw invalid(problems);
  return defs;
}

export function collectThresholdFlags(flags: readonly string[], knownTypes: Record<string, MetricType>, problems: Problem[]): ThresholdDef[] {
  const defs: ThresholdDef[] = [];
  flags.forEach((flag, i) => {
    const path = `--threshold[${i + 1}] "${flag}"`;
    let depth = 0;
    let cut = -1;
    for (let j = 0; j < flag.length; j++) {
      const c = flag[j];
      if (c === '{') depth++;
      else if (c === '}') depth--;
      else if (c === ':' && depth === 0) {
        cut = j;
        break;
      }
    }
    if (cut <= 0) {
      problems.push({ path, message: 'expected METRIC:EXPR, e.g. "http_req_duration:p(95)<250"' });
      return;
    }
    const key = flag.slice(0, cut).trim();
    let metric: { metric: string; tags: Tags };
    try {
      metric = parseMetricKey(key);
    } catch (e) {
      problems.push({ path, message: (e as Error).message });
      return;
    }
    const type = knownTypes[metric.metric] ?? BUILTIN_METRICS[metric.metric]?.type;
    const def = parseEntry(flag.slice(cut + 1), path, key, metric, type, problems);
    if (def) defs.push(def);
  });
  return defs;
}

export function invalid(problems: Problem[]): TopasError {
  return new TopasError('INVALID_FLAGS', problems.length === 1 ? 'invalid load options' : `invalid load options (${problems.length} problems)`, {
    problems,
    hint: 'thresholds look like "p(95)<250", "avg<200", "rate<0.01", "count>100"; see `topas load --help`',
  });
}

function compare(observed: number, op: ThresholdOp, value: number): boolean {
  switch (op) {
    case '<':
      return observed < value;
    case '<=':
      return observed <= value;
    case '>':
      return observed > value;
    case '>=':
      return observed >= value;
    case '==':
      return observed === value;
    case '!=':
      return observed !== value;
  }
}

/** Evaluate every threshold against a merged snapshot. */
export function evaluateThresholds(defs: readonly ThresholdDef[], snapshot: MetricsSnapshot, opts: { durationMs?: number } = {}): ThresholdResult[] {
  const durationMs = opts.durationMs ?? snapshotDurationMs(snapshot);
  return defs.map((d) => {
    const base = { key: d.key, metric: d.metric, tags: d.tags, expression: d.expr.source, abortOnFail: d.abortOnFail };
    const sel = selectSeries(snapshot, d.metric, d.tags);
    if (!sel) return { ...base, ok: false, note: `metric "${d.metric}" received no samples` };
    const bad = checkAggregation(d.metric, d.expr, sel.type);
    if (bad) return { ...base, ok: false, note: bad };
    const observed = new SeriesStats(sel.data, durationMs).get(d.expr.aggregation);
    if (observed === undefined) return { ...base, ok: false, note: `"${d.key}" received no samples` };
    return { ...base, ok: compare(observed, d.expr.op, d.expr.value), observed };
  });
}

/**
 * Mid-run check for `abort_on_fail` thresholds whose `delay_abort_eval` has
 * passed: the first failing one, or undefined.
 */
export function abortingThreshold(
  defs: readonly ThresholdDef[],
  snapshot: MetricsSnapshot,
  elapsedMs: number,
  opts: { durationMs?: number } = {},
): ThresholdResult | undefined {
  const due = defs.filter((d) => d.abortOnFail && elapsedMs >= d.delayAbortEvalMs);
  if (due.length === 0) return undefined;
  // a metric without samples yet is no reason to abort
  return evaluateThresholds(due, snapshot, opts).find((r) => !r.ok && r.observed !== undefined);
}

export function thresholdsPassed(results: readonly ThresholdResult[]): boolean {
  return results.every((r) => r.ok);
}
