import { TopasError } from '../errors';
import { SeriesStats, selectSeries, snapshotDurationMs, type MetricsSnapshot } from './metrics';

/**
 * `--baseline RUN|FILE`: compare this run with an earlier one. The gate is
 * the p95 of http_req_duration and the http_req_failed rate; other figures
 * are shown for context.
 */

/** metric -> aggregation -> value; what a baseline boils down to. */
export type Figures = Record<string, Record<string, number | undefined>>;

export interface BaselineRow {
  metric: string;
  stat: string;
  baseline?: number;
  current?: number;
  /** (current - baseline) / baseline; undefined when baseline is 0 or missing */
  deltaRatio?: number;
  /** this row can fail the comparison */
  gated: boolean;
  ok: boolean;
}

export interface BaselineComparison {
  ok: boolean;
  maxRegression: number;
  rows: BaselineRow[];
}

const SHOWN: Array<{ metric: string; stat: string; gated: boolean; higherIsWorse: boolean }> = [
  { metric: 'http_req_duration', stat: 'p(95)', gated: true, higherIsWorse: true },
  { metric: 'http_req_failed', stat: 'rate', gated: true, higherIsWorse: true },
  { metric: 'http_req_duration', stat: 'avg', gated: false, higherIsWorse: true },
  { metric: 'http_req_duration', stat: 'med', gated: false, higherIsWorse: true },
  { metric: 'http_req_duration', stat: 'p(99)', gated: false, higherIsWorse: true },
  { metric: 'http_reqs', stat: 'rate', gated: false, higherIsWorse: false },
  { metric: 'iterations', stat: 'rate', gated: false, higherIsWorse: false },
  { metric: 'dropped_iterations', stat: 'count', gated: false, higherIsWorse: true },
];

/** Failure rates this close to the baseline are noise, whatever the ratio (0 -> 0.0005 is not a regression). */
const RATE_NOISE = 0.001;

export function figuresFromSnapshot(snapshot: MetricsSnapshot, durationMs = snapshotDurationMs(snapshot)): Figures {
  const out: Figures = {};
  for (const { metric, stat } of SHOWN) {
    const sel = selectSeries(snapshot, metric);
    (out[metric] ??= {})[stat] = sel ? new SeriesStats(sel.data, durationMs).get(stat) : undefined;
  }
  return out;
}

function isSnapshot(v: unknown): v is MetricsSnapshot {
  return !!v && typeof v === 'object' && (v as MetricsSnapshot).version === 1 && typeof (v as MetricsSnapshot).startMs === 'number' && typeof (v as MetricsSnapshot).metrics === 'object';
}

/**
 * Figures from a parsed baseline file, which may be: a topas run record
 * (`load.snapshot` or `snapshot`), a bare MetricsSnapshot, a topas summary
 * file / k6 handleSummary JSON (`metrics[name].values[stat]`), or k6's
 * `--summary-export` (`metrics[name][stat]`, failed rate as `value`).
 */
export function figuresFromBaselineJson(json: unknown, source = 'baseline'): Figures {
  const o = json as Record<string, any> | null;
  // a run record's own durationMs spans the SUT's start-up and teardown too: rates use the load phase only
  const durationMs = typeof o?.load?.durationMs === 'number' ? o.load.durationMs : typeof o?.durationMs === 'number' ? o.durationMs : undefined;
  for (const cand of [o?.load?.snapshot, o?.snapshot, o?.load?.metrics, o]) {
    if (isSnapshot(cand)) return figuresFromSnapshot(cand, durationMs ?? snapshotDurationMs(cand));
  }
  const metrics = o?.metrics ?? o?.load?.summary?.metrics ?? o?.summary?.metrics;
  if (metrics && typeof metrics === 'object') {
    const out: Figures = {};
    for (const { metric, stat } of SHOWN) {
      const m = metrics[metric];
      if (!m || typeof m !== 'object') continue;
      const values = m.values && typeof m.values === 'object' ? m.values : m;
      let v = values[stat];
      if (v === undefined && metric === 'http_req_failed' && stat === 'rate') v = values.value;
      if (v === undefined && stat === 'med') v = values['p(50)'];
      (out[metric] ??= {})[stat] = typeof v === 'number' ? v : undefined;
    }
    if (Object.keys(out).length) return out;
  }
  throw new TopasError('INVALID_FLAGS', `${source}: not a topas run record or load summary (no metrics found)`, {
    hint: 'pass a run id, a .topas/runs/<id>/run.json, or a summary JSON (topas or k6 handleSummary)',
  });
}

/** Compare; fail when a gated figure got worse by more than maxRegression (0.1 = 10%). */
export function compareWithBaseline(current: Figures, baseline: Figures, opts: { maxRegression?: number } = {}): BaselineComparison {
  const maxRegression = opts.maxRegression ?? 0.1;
  if (!(maxRegression >= 0)) throw new TopasError('INVALID_FLAGS', `max regression must be >= 0, got ${maxRegression}`);
  const rows: BaselineRow[] = [];
  for (const { metric, stat, gated, higherIsWorse } of SHOWN) {
    const b = baseline[metric]?.[stat];
    const c = current[metric]?.[stat];
    if (b === undefined && c === undefined) continue;
    const deltaRatio = b !== undefined && c !== undefined && b !== 0 ? (c - b) / b : undefined;
    let ok = true;
    if (gated && b !== undefined && c !== undefined) {
      const worse = higherIsWorse ? c - b : b - c;
      const limit = Math.abs(b) * maxRegression;
      ok = worse <= limit || (stat === 'rate' && metric === 'http_req_failed' && worse <= RATE_NOISE);
    }
    rows.push({ metric, stat, baseline: b, current: c, deltaRatio, gated, ok });
  }
  return { ok: rows.every((r) => r.ok), maxRegression, rows };
}
