import { decodeHistogram, encodeHistogram, type Histogram } from './hdr';
import { formatMetricKey, newHistogram, type GaugeData, type MetricContains, type MetricsSnapshot, type MetricType, type SeriesData, type Tags } from './metric-data';
import { mergeSeriesList } from './metrics-merge';

/** Reading a snapshot: series selected by tags, their stats (percentiles, rates), the summary rows and file. */

export interface SeriesSelection {
  type: MetricType;
  contains: MetricContains;
  data: SeriesData;
  /** the filter matched tag sets, but some samples were only kept in the total (too many tag sets) */
  partial: boolean;
}

/** The series of `name` whose tags include every pair of `filter`, merged; undefined when the metric is unknown. */
export function selectSeries(snapshot: MetricsSnapshot, name: string, filter: Tags = {}): SeriesSelection | undefined {
  const m = snapshot.metrics[name];
  if (!m) return undefined;
  const fk = Object.keys(filter);
  if (fk.length === 0) return { type: m.type, contains: m.contains, data: m.total, partial: false };
  const matching = m.series.filter((s) => fk.every((k) => s.tags[k] === filter[k])).map((s) => s.data);
  const data = matching.length ? mergeSeriesList(matching) : emptyData(m.type, m.total);
  return { type: m.type, contains: m.contains, data, partial: m.overflowSamples > 0 };
}

function emptyData(type: MetricType, like: SeriesData): SeriesData {
  switch (type) {
    case 'counter':
      return { kind: 'counter', samples: 0, sum: 0 };
    case 'rate':
      return { kind: 'rate', passes: 0, fails: 0 };
    case 'gauge':
      return { kind: 'gauge', value: 0, min: 0, max: 0, ts: 0, merge: (like as GaugeData).merge };
    case 'trend':
      return { kind: 'trend', count: 0, sum: 0, min: 0, max: 0, hdr: encodeHistogram(newHistogram()) };
  }
}

const PERCENTILE_RE = /^p\((\d+(?:\.\d+)?)\)$/;

/**
 * Turns series data into a stats reader. Trend percentiles come from the HDR
 * histogram (µs, ~0.1% relative error); avg/min/max/count are exact.
 */
export class SeriesStats {
  private hist?: Histogram;

  constructor(
    readonly data: SeriesData,
    /** the window counter rates are per: ms */
    readonly durationMs: number,
  ) {}

  get count(): number {
    const d = this.data;
    switch (d.kind) {
      case 'counter':
        return d.sum;
      case 'trend':
        return d.count;
      case 'rate':
        return d.passes + d.fails;
      case 'gauge':
        return d.value;
    }
  }

  /** counter: per second over the window; rate: the fraction of true samples (0 when none). */
  get rate(): number {
    const d = this.data;
    if (d.kind === 'counter') return this.durationMs > 0 ? d.sum / (this.durationMs / 1000) : 0;
    if (d.kind === 'rate') return d.passes + d.fails === 0 ? 0 : d.passes / (d.passes + d.fails);
    if (d.kind === 'trend') return this.durationMs > 0 ? d.count / (this.durationMs / 1000) : 0;
    return d.value;
  }

  /** trend percentile in the metric unit (ms for time trends); undefined without samples. p in [0, 100]. */
  percentile(p: number): number | undefined {
    if (this.data.kind !== 'trend' || this.data.count === 0) return undefined;
    this.hist ??= decodeHistogram(this.data.hdr);
    const v = this.hist.getValueAtPercentile(p) / 1000;
    // the histogram bucket edge may lie outside the exact extremes
    return Math.min(this.data.max, Math.max(this.data.min, v));
  }

  /**
   * Value of one aggregation (`count`, `rate`, `avg`, `min`, `med`, `max`,
   * `value`, `p(99.9)`, `passes`, `fails`); undefined when it has no value
   * (a trend without samples) or does not apply to the type.
   */
  get(aggregation: string): number | undefined {
    const d = this.data;
    const pm = PERCENTILE_RE.exec(aggregation);
    if (pm) return this.percentile(Number(pm[1]));
    switch (aggregation) {
      case 'count':
        return d.kind === 'gauge' ? undefined : this.count;
      case 'rate':
        return d.kind === 'gauge' ? undefined : this.rate;
      case 'passes':
        return d.kind === 'rate' ? d.passes : undefined;
      case 'fails':
        return d.kind === 'rate' ? d.fails : undefined;
      case 'value':
        return d.kind === 'gauge' ? d.value : undefined;
      case 'avg':
        return d.kind === 'trend' && d.count ? d.sum / d.count : undefined;
      case 'med':
        return this.percentile(50);
      case 'min':
      case 'max':
        if (d.kind === 'trend') return d.count ? d[aggregation] : undefined;
        if (d.kind === 'gauge') return d[aggregation];
        return undefined;
      default:
        return undefined;
    }
  }
}

/** Window counter rates are computed over. */
export function snapshotDurationMs(s: MetricsSnapshot): number {
  return Math.max(0, s.endMs - s.startMs);
}

export const DEFAULT_TREND_STATS = ['avg', 'min', 'med', 'max', 'p(90)', 'p(95)', 'p(99)'] as const;

export interface SummaryRow {
  /** `http_req_duration` or `http_req_duration{name:/api/users/:name}` */
  key: string;
  metric: string;
  tags: Tags;
  type: MetricType;
  contains: MetricContains;
  /** aggregation -> value (undefined: no samples) */
  values: Record<string, number | undefined>;
}

/**
 * One row per metric that has data, followed by one row per value of each
 * `breakdownTags` tag (default `name`): the per-endpoint sub-metrics.
 */
export function summarize(
  snapshot: MetricsSnapshot,
  opts: { durationMs?: number; trendStats?: readonly string[]; breakdownTags?: readonly string[] } = {},
): SummaryRow[] {
  const durationMs = opts.durationMs ?? snapshotDurationMs(snapshot);
  const trendStats = opts.trendStats ?? DEFAULT_TREND_STATS;
  const breakdown = opts.breakdownTags ?? ['name'];
  const rows: SummaryRow[] = [];
  const statsFor = (type: MetricType): readonly string[] =>
    type === 'trend' ? ['count', ...trendStats] : type === 'counter' ? ['count', 'rate'] : type === 'rate' ? ['rate', 'passes', 'fails'] : ['value', 'min', 'max'];
  const row = (metric: string, tags: Tags, sel: SeriesSelection): SummaryRow => {
    const st = new SeriesStats(sel.data, durationMs);
    const values: Record<string, number | undefined> = {};
    for (const a of statsFor(sel.type)) values[a] = st.get(a);
    return { key: formatMetricKey(metric, tags), metric, tags, type: sel.type, contains: sel.contains, values };
  };
  for (const name of Object.keys(snapshot.metrics).sort()) {
    const m = snapshot.metrics[name];
    if (!hasSamples(m.total)) continue;
    rows.push(row(name, {}, selectSeries(snapshot, name)!));
    for (const tag of breakdown) {
      const values = [...new Set(m.series.map((s) => s.tags[tag]).filter((v): v is string => v !== undefined))].sort();
      // a single value adds nothing to the total row
      if (values.length < 2) continue;
      for (const v of values) rows.push(row(name, { [tag]: v }, selectSeries(snapshot, name, { [tag]: v })!));
    }
  }
  return rows;
}

export function hasSamples(d: SeriesData): boolean {
  switch (d.kind) {
    case 'counter':
      return d.samples > 0;
    case 'trend':
      return d.count > 0;
    case 'rate':
      return d.passes + d.fails > 0;
    case 'gauge':
      // ts can be 0 under an injected clock, so a set value counts too
      return d.ts > 0 || d.value !== 0 || d.max !== 0;
  }
}

/**
 * The summary file topas writes next to a run (and reads back as a baseline):
 * the shape of k6's handleSummary data, `metrics[key].values[aggregation]`.
 */
export interface SummaryFile {
  version: 1;
  durationMs: number;
  metrics: Record<string, { type: MetricType; contains: MetricContains; values: Record<string, number | null> }>;
}

export function toSummaryFile(snapshot: MetricsSnapshot, opts: { durationMs?: number } = {}): SummaryFile {
  const durationMs = opts.durationMs ?? snapshotDurationMs(snapshot);
  const metrics: SummaryFile['metrics'] = {};
  for (const r of summarize(snapshot, { durationMs })) {
    const values: Record<string, number | null> = {};
    for (const [k, v] of Object.entries(r.values)) values[k] = v ?? null;
    metrics[r.key] = { type: r.type, contains: r.contains, values };
  }
  return { version: 1, durationMs, metrics };
}
