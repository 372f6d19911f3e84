import { addEncoded, buildHistogram, decodeHistogram as decodeHdr, encodeHistogram, finishAdds, type Histogram } from './hdr';
import { TopasError } from '../errors';

/**
 * Load-test metrics, k6 style. Each worker thread owns one MetricsRegistry;
 * the main thread merges their snapshots. Trends keep an HDR histogram (so
 * percentiles merge exactly: histograms add, percentiles are never averaged)
 * plus exact count/sum/min/max.
 */

export type MetricType = 'counter' | 'trend' | 'rate' | 'gauge';
/** What a metric's values are, for display: milliseconds, bytes or plain numbers. */
export type MetricContains = 'time' | 'data' | 'default';
export type Tags = Record<string, string>;

export interface MetricInfo {
  type: MetricType;
  contains: MetricContains;
}

export const BUILTIN_METRICS: Readonly<Record<string, MetricInfo>> = {
  http_req_duration: { type: 'trend', contains: 'time' },
  http_req_failed: { type: 'rate', contains: 'default' },
  http_reqs: { type: 'counter', contains: 'default' },
  iterations: { type: 'counter', contains: 'default' },
  iteration_duration: { type: 'trend', contains: 'time' },
  dropped_iterations: { type: 'counter', contains: 'default' },
  checks: { type: 'rate', contains: 'default' },
  data_sent: { type: 'counter', contains: 'data' },
  data_received: { type: 'counter', contains: 'data' },
  vus: { type: 'gauge', contains: 'default' },
  vus_max: { type: 'gauge', contains: 'default' },
  ws_msgs_sent: { type: 'counter', contains: 'default' },
  ws_msgs_received: { type: 'counter', contains: 'default' },
  ws_connecting: { type: 'trend', contains: 'time' },
};

/** Gauges that are per-worker parts of one whole: merged by adding, not by last value. */
const SUMMED_GAUGES = new Set(['vus', 'vus_max']);

/** Histogram range in microseconds: 1 µs .. 1 h, 3 significant digits (~0.1% relative error). */
export const HDR_LOWEST_US = 1;
export const HDR_HIGHEST_US = 3_600_000_000;
export const HDR_SIGNIFICANT_DIGITS = 3;

export const METRIC_NAME_RE = /^[A-Za-z_][A-Za-z0-9_.-]*$/;

export interface CounterData {
  kind: 'counter';
  /** number of add() calls */
  samples: number;
  sum: number;
}
export interface TrendData {
  kind: 'trend';
  count: number;
  /** exact, in the metric's unit (ms for time trends) */
  sum: number;
  min: number;
  max: number;
  /** HDR histogram of the values in µs, compressed base64 (standard HdrHistogram encoding) */
  hdr: string;
}
export interface RateData {
  kind: 'rate';
  passes: number;
  fails: number;
}
export interface GaugeData {
  kind: 'gauge';
  value: number;
  min: number;
  max: number;
  /** when value was set (ms epoch); the later one wins when merging 'last' gauges */
  ts: number;
  merge: 'sum' | 'last';
}
export type SeriesData = CounterData | TrendData | RateData | GaugeData;

export interface MetricSnapshot {
  type: MetricType;
  contains: MetricContains;
  /** every sample, whatever its tags */
  total: SeriesData;
  /** one entry per distinct tag set (an empty tag set included when untagged samples exist) */
  series: Array<{ tags: Tags; data: SeriesData }>;
  /** samples whose tag set was not kept because the metric had too many tag sets; still in `total` */
  overflowSamples: number;
}

/** What a registry hands out: plain data, structured-cloneable (postMessage, JSON). */
export interface MetricsSnapshot {
  version: 1;
  /** observation window, ms epoch */
  startMs: number;
  endMs: number;
  metrics: Record<string, MetricSnapshot>;
}

/** One second of a worker's activity, for the per-second time series. */
export interface SecondBucket {
  /** seconds since the run start */
  sec: number;
  iterations: number;
  requests: number;
  /** failed requests + failed iterations */
  errors: number;
  dropped: number;
  /** highest active VU count seen in this second */
  activeVus: number;
  /** http_req_duration of this second, compressed base64 HDR (µs); '' when no requests */
  hdr: string;
}

export interface RequestSample {
  /** request name or URL template, e.g. `/api/users/:name` */
  name: string;
  method: string;
  /** HTTP status; 0 when the connection failed */
  status: number;
  durationMs: number;
  failed: boolean;
  bytesSent?: number;
  bytesReceived?: number;
  tags?: Tags;
}

export interface MetricsRegistryOptions {
  /** run start (ms epoch) shared by all workers, so per-second buckets line up */
  startMs?: number;
  now?: () => number;
  /** distinct tag sets kept per metric; more are counted in total only */
  maxTagSets?: number;
}

function newHistogram(): Histogram {
  return buildHistogram(HDR_LOWEST_US, HDR_HIGHEST_US, HDR_SIGNIFICANT_DIGITS);
}

function decodeHistogram(b64: string): Histogram {
  return decodeHdr(b64);
}

/** ms -> histogram units (µs), clamped into the trackable range. */
function toMicros(ms: number): number {
  const us = Math.round(ms * 1000);
  if (!(us > 0)) return 0;
  return us > HDR_HIGHEST_US ? HDR_HIGHEST_US : us;
}

interface RequestSeries {
  reqs?: LiveSeries;
  dur?: LiveSeries;
  failed?: LiveSeries;
  sent?: LiveSeries;
  received?: LiveSeries;
}

/** A live series inside a registry. */
class LiveSeries {
  samples = 0;
  sum = 0;
  min = Infinity;
  max = -Infinity;
  passes = 0;
  fails = 0;
  value = 0;
  ts = 0;
  hist?: Histogram;

  /** withHist false: a metric's total, whose histogram is made from its series' when read */
  constructor(
    readonly type: MetricType,
    readonly gaugeMerge: 'sum' | 'last',
    withHist = true,
  ) {
    if (type === 'trend' && withHist) this.hist = newHistogram();
  }

  add(v: number, nowMs: number): void {
    switch (this.type) {
      case 'counter':
        this.samples++;
        this.sum += v;
        return;
      case 'trend':
        this.samples++;
        this.sum += v;
        if (v < this.min) this.min = v;
        if (v > this.max) this.max = v;
        this.hist?.recordValue(toMicros(v));
        return;
      case 'rate':
        if (v) this.passes++;
        else this.fails++;
        return;
      case 'gauge':
        this.samples++;
        this.value = v;
        this.ts = nowMs;
        if (v < this.min) this.min = v;
        if (v > this.max) this.max = v;
        return;
    }
  }

  toData(hist = this.hist): SeriesData {
    switch (this.type) {
      case 'counter':
        return { kind: 'counter', samples: this.samples, sum: this.sum };
      case 'trend':
        return {
          kind: 'trend',
          count: this.samples,
          sum: this.sum,
          min: this.samples ? this.min : 0,
          max: this.samples ? this.max : 0,
          hdr: encodeHistogram(hist ?? newHistogram()),
        };
      case 'rate':
        return { kind: 'rate', passes: this.passes, fails: this.fails };
      case 'gauge':
        return {
          kind: 'gauge',
          value: this.value,
          min: this.samples ? this.min : 0,
          max: this.samples ? this.max : 0,
          ts: this.ts,
          merge: this.gaugeMerge,
        };
    }
  }
}

class LiveMetric {
  /**
   * Every sample. A trend's total keeps no histogram of its own: each sample
   * is recorded once, in its series or in `overflowHist`, and the total's
   * histogram is their sum when read (recording twice cost a load test ~1 µs
   * per request).
   */
  readonly total: LiveSeries;
  readonly byTags = new Map<string, { tags: Tags; series: LiveSeries }>();
  overflowSamples = 0;
  private overflowHist: Histogram | undefined;

  constructor(
    readonly name: string,
    readonly info: MetricInfo,
  ) {
    this.total = new LiveSeries(info.type, this.gaugeMerge(), false);
  }

  /** A sample whose tag set is not kept: in the total only. */
  overflow(v: number): void {
    this.overflowSamples++;
    if (this.info.type === 'trend') (this.overflowHist ??= newHistogram()).recordValue(toMicros(v));
  }

  totalData(): SeriesData {
    if (this.info.type !== 'trend') return this.total.toData();
    const sum = newHistogram();
    for (const e of this.byTags.values()) if (e.series.hist) sum.add(e.series.hist);
    if (this.overflowHist) sum.add(this.overflowHist);
    return this.total.toData(sum);
  }

  gaugeMerge(): 'sum' | 'last' {
    return SUMMED_GAUGES.has(this.name) ? 'sum' : 'last';
  }
}

/** Canonical key of a tag set: sorted pairs. */
export function tagsKey(tags: Tags): string {
  const keys = Object.keys(tags).sort();
  return keys.map((k) => `${k}=${tags[k]}`).join('\u0000');
}

/** `name{a:1,b:2}` */
export function formatMetricKey(name: string, tags: Tags): string {
  const keys = Object.keys(tags).sort();
  if (keys.length === 0) return name;
  return `${name}{${keys.map((k) => `${k}:${tags[k]}`).join(',')}}`;
}

export class MetricsRegistry {
  private readonly metrics = new Map<string, LiveMetric>();
  private readonly now: () => number;
  private readonly maxTagSets: number;
  readonly startMs: number;
  private bucket?: { sec: number; b: Omit<SecondBucket, 'hdr'>; hist?: Histogram };
  private readonly completed: SecondBucket[] = [];
  private activeVus = 0;

  constructor(opts: MetricsRegistryOptions = {}) {
    this.now = opts.now ?? Date.now;
    this.startMs = opts.startMs ?? this.now();
    this.maxTagSets = opts.maxTagSets ?? 200;
    for (const [name, info] of Object.entries(BUILTIN_METRICS)) this.metrics.set(name, new LiveMetric(name, info));
  }

  /**
   * Declare a metric (custom ones from the Lua `metrics` module). Declaring a
   * name again with the same type is fine; with another type it is an error.
   */
  define(name: string, type: MetricType, contains?: MetricContains): void {
    const existing = this.metrics.get(name);
    if (existing) {
      if (existing.info.type !== type) {
        throw new TopasError('SCENARIO_FAILED', `metrics.${type}("${name}"): "${name}" is already a ${existing.info.type} metric`);
      }
      return;
    }
    if (!METRIC_NAME_RE.test(name)) {
      throw new TopasError('SCENARIO_FAILED', `metrics.${type}("${name}"): a metric name is letters, digits, "_", "." or "-", starting with a letter or "_"`);
    }
    this.metrics.set(name, new LiveMetric(name, { type, contains: contains ?? (type === 'trend' ? 'time' : 'default') }));
  }

  has(name: string): boolean {
    return this.metrics.has(name);
  }

  /**
   * Add one sample: counter += value, trend records value (ms for time
   * trends), rate records value truthiness, gauge is set to value.
   */
  add(name: string, value: number | boolean, tags?: Tags): void {
    const m = this.metrics.get(name);
    if (!m) throw new TopasError('SCENARIO_FAILED', `metric "${name}" is not defined`);
    const v = typeof value === 'boolean' ? (value ? 1 : 0) : value;
    if (!Number.isFinite(v)) throw new TopasError('SCENARIO_FAILED', `metric "${name}": expected a finite number, got ${value}`);
    const nowMs = this.now();
    m.total.add(v, nowMs);
    const key = tags ? tagsKey(tags) : '';
    let entry = m.byTags.get(key);
    if (!entry) {
      if (m.byTags.size >= this.maxTagSets) {
        m.overflow(v);
        return;
      }
      entry = { tags: tags ? { ...tags } : {}, series: new LiveSeries(m.info.type, m.gaugeMerge()) };
      m.byTags.set(key, entry);
    }
    entry.series.add(v, nowMs);
  }

  /** The tagged series of a metric (made on first use); undefined when the metric has too many tag sets. */
  private seriesFor(m: LiveMetric, tags: Tags): LiveSeries | undefined {
    const key = tagsKey(tags);
    let entry = m.byTags.get(key);
    if (!entry) {
      if (m.byTags.size >= this.maxTagSets) return undefined;
      entry = { tags: { ...tags }, series: new LiveSeries(m.info.type, m.gaugeMerge()) };
      m.byTags.set(key, entry);
    }
    return entry.series;
  }

  // the hot path of a load test: one lookup per request instead of five tag-set keys
  private iterationSeries?: { it?: LiveSeries; dur?: LiveSeries };
  private readonly requestSeries = new Map<string, Map<string, Map<number, RequestSeries>>>();

  recordRequest(r: RequestSample): void {
    if (r.tags) return this.recordTaggedRequest(r);
    // name -> method -> status: no key string built per request
    let byMethod = this.requestSeries.get(r.name);
    if (!byMethod) {
      byMethod = new Map();
      if (this.requestSeries.size < 10_000) this.requestSeries.set(r.name, byMethod);
    }
    let byStatus = byMethod.get(r.method);
    if (!byStatus) {
      byStatus = new Map();
      byMethod.set(r.method, byStatus);
    }
    let s = byStatus.get(r.status);
    const reqs = this.metrics.get('http_reqs')!;
    const dur = this.metrics.get('http_req_duration')!;
    const failed = this.metrics.get('http_req_failed')!;
    const sent = this.metrics.get('data_sent')!;
    const received = this.metrics.get('data_received')!;
    if (!s) {
      const tags: Tags = { name: r.name, method: r.method.toUpperCase(), status: String(r.status) };
      s = { reqs: this.seriesFor(reqs, tags), dur: this.seriesFor(dur, tags), failed: this.seriesFor(failed, tags), sent: this.seriesFor(sent, { name: r.name }), received: this.seriesFor(received, { name: r.name }) };
      byStatus.set(r.status, s);
    }
    const nowMs = 0; // only gauges keep the time
    const ms = Number.isFinite(r.durationMs) ? r.durationMs : 0;
    reqs.total.add(1, nowMs);
    dur.total.add(ms, nowMs);
    failed.total.add(r.failed ? 1 : 0, nowMs);
    if (s.reqs) s.reqs.add(1, nowMs);
    else reqs.overflowSamples++;
    if (s.dur) s.dur.add(ms, nowMs);
    else dur.overflow(ms);
    if (s.failed) s.failed.add(r.failed ? 1 : 0, nowMs);
    else failed.overflowSamples++;
    if (r.bytesSent) {
      sent.total.add(r.bytesSent, nowMs);
      if (s.sent) s.sent.add(r.bytesSent, nowMs);
      else sent.overflowSamples++;
    }
    if (r.bytesReceived) {
      received.total.add(r.bytesReceived, nowMs);
      if (s.received) s.received.add(r.bytesReceived, nowMs);
      else received.overflowSamples++;
    }
    const b = this.currentBucket();
    b.b.requests++;
    if (r.failed) b.b.errors++;
    (b.hist ??= newHistogram()).recordValue(toMicros(ms));
  }

  private recordTaggedRequest(r: RequestSample): void {
    const tags: Tags = { ...r.tags, name: r.name, method: r.method.toUpperCase(), status: String(r.status) };
    this.add('http_reqs', 1, tags);
    this.add('http_req_duration', r.durationMs, tags);
    this.add('http_req_failed', r.failed, tags);
    if (r.bytesSent) this.add('data_sent', r.bytesSent, { name: r.name });
    if (r.bytesReceived) this.add('data_received', r.bytesReceived, { name: r.name });
    const b = this.currentBucket();
    b.b.requests++;
    if (r.failed) b.b.errors++;
    (b.hist ??= newHistogram()).recordValue(toMicros(r.durationMs));
  }

  recordIteration(durationMs: number, opts: { failed?: boolean; tags?: Tags } = {}): void {
    if (opts.tags) {
      this.add('iterations', 1, opts.tags);
      this.add('iteration_duration', durationMs, opts.tags);
    } else {
      // untagged: the total and the one empty-tag series, without building keys
      const it = this.metrics.get('iterations')!;
      const dur = this.metrics.get('iteration_duration')!;
      this.iterationSeries ??= { it: this.seriesFor(it, {}), dur: this.seriesFor(dur, {}) };
      const ms = Number.isFinite(durationMs) ? durationMs : 0;
      it.total.add(1, 0);
      dur.total.add(ms, 0);
      this.iterationSeries.it?.add(1, 0);
      if (this.iterationSeries.dur) this.iterationSeries.dur.add(ms, 0);
      else dur.overflow(ms);
    }
    const b = this.currentBucket();
    b.b.iterations++;
    if (opts.failed) b.b.errors++;
  }

  recordDropped(count = 1): void {
    if (count <= 0) return;
    this.add('dropped_iterations', count);
    this.currentBucket().b.dropped += count;
  }

  recordCheck(name: string, ok: boolean): void {
    this.add('checks', ok, { check: name });
  }

  setVus(active: number, max: number): void {
    this.activeVus = active;
    this.add('vus', active);
    this.add('vus_max', max);
    const b = this.currentBucket();
    if (active > b.b.activeVus) b.b.activeVus = active;
  }

  snapshot(): MetricsSnapshot {
    const metrics: Record<string, MetricSnapshot> = {};
    for (const [name, m] of this.metrics) {
      metrics[name] = {
        type: m.info.type,
        contains: m.info.contains,
        total: m.totalData(),
        series: [...m.byTags.values()].map((e) => ({ tags: { ...e.tags }, data: e.series.toData() })),
        overflowSamples: m.overflowSamples,
      };
    }
    return { version: 1, startMs: this.startMs, endMs: this.now(), metrics };
  }

  /**
   * The per-second buckets that are complete (their second has passed), oldest
   * first; each is handed out once. `final` also closes the current second.
   */
  takeSeconds(final = false): SecondBucket[] {
    const sec = this.secondNow();
    if (this.bucket && (final || this.bucket.sec < sec)) this.closeBucket();
    return this.completed.splice(0);
  }

  private secondNow(): number {
    return Math.max(0, Math.floor((this.now() - this.startMs) / 1000));
  }

  private currentBucket(): NonNullable<MetricsRegistry['bucket']> {
    const sec = this.secondNow();
    if (this.bucket && this.bucket.sec !== sec) this.closeBucket();
    if (!this.bucket) {
      this.bucket = { sec, b: { sec, iterations: 0, requests: 0, errors: 0, dropped: 0, activeVus: this.activeVus } };
    }
    return this.bucket;
  }

  private closeBucket(): void {
    const cur = this.bucket!;
    this.completed.push({ ...cur.b, hdr: cur.hist ? encodeHistogram(cur.hist) : '' });
    this.bucket = undefined;
  }
}

// ---------------------------------------------------------------------------
// Merging

function mergeSeries(a: SeriesData, b: SeriesData): SeriesData {
  if (a.kind !== b.kind) throw new TopasError('INTERNAL', `cannot merge a ${a.kind} series with a ${b.kind} series`);
  switch (a.kind) {
    case 'counter': {
      const o = b as CounterData;
      return { kind: 'counter', samples: a.samples + o.samples, sum: a.sum + o.sum };
    }
    case 'rate': {
      const o = b as RateData;
      return { kind: 'rate', passes: a.passes + o.passes, fails: a.fails + o.fails };
    }
    case 'gauge': {
      const o = b as GaugeData;
      if (a.merge === 'sum') {
        // per-worker parts of one whole (vus): the merged min/max are bounds, the value is exact
        return { kind: 'gauge', value: a.value + o.value, min: a.min + o.min, max: a.max + o.max, ts: Math.max(a.ts, o.ts), merge: 'sum' };
      }
      const last = o.ts >= a.ts ? o : a;
      return { kind: 'gauge', value: last.value, min: Math.min(a.min, o.min), max: Math.max(a.max, o.max), ts: last.ts, merge: 'last' };
    }
    case 'trend':
      return mergeTrends([a, b as TrendData]);
  }
}

function mergeTrends(list: TrendData[]): TrendData {
  const nonEmpty = list.filter((t) => t.count > 0);
  if (nonEmpty.length === 0) return list[0] ?? { kind: 'trend', count: 0, sum: 0, min: 0, max: 0, hdr: encodeHistogram(newHistogram()) };
  if (nonEmpty.length === 1) return nonEmpty[0];
  const h = newHistogram();
  let count = 0;
  let sum = 0;
  let min = Infinity;
  let max = -Infinity;
  for (const t of nonEmpty) {
    addEncoded(h, t.hdr);
    count += t.count;
    sum += t.sum;
    min = Math.min(min, t.min);
    max = Math.max(max, t.max);
  }
  finishAdds(h);
  return { kind: 'trend', count, sum, min, max, hdr: encodeHistogram(h) };
}

function mergeSeriesList(list: SeriesData[]): SeriesData {
  if (list.length === 1) return list[0];
  if (list[0].kind === 'trend') return mergeTrends(list as TrendData[]);
  return list.reduce(mergeSeries);
}

/**
 * Exact merge of worker snapshots: counters and rates add, histograms add
 * (percentiles come from the merged histogram), gauges add ('sum') or keep
 * the latest value ('last').
 */
export function mergeSnapshots(list: MetricsSnapshot[]): MetricsSnapshot {
  if (list.length === 0) return { version: 1, startMs: 0, endMs: 0, metrics: {} };
  const byName = new Map<string, MetricSnapshot[]>();
  for (const s of list) {
    for (const [name, m] of Object.entries(s.metrics)) {
      const arr = byName.get(name) ?? [];
      if (arr.length && arr[0].type !== m.type) {
        throw new TopasError('SCENARIO_FAILED', `metric "${name}" is a ${arr[0].type} in one worker and a ${m.type} in another`);
      }
      arr.push(m);
      byName.set(name, arr);
    }
  }
  const metrics: Record<string, MetricSnapshot> = {};
  for (const [name, parts] of byName) {
    const groups = new Map<string, { tags: Tags; data: SeriesData[] }>();
    for (const p of parts) {
      for (const s of p.series) {
        const k = tagsKey(s.tags);
        const g = groups.get(k);
        if (g) g.data.push(s.data);
        else groups.set(k, { tags: s.tags, data: [s.data] });
      }
    }
    metrics[name] = {
      type: parts[0].type,
      contains: parts[0].contains,
      total: mergeSeriesList(parts.map((p) => p.total)),
      series: [...groups.values()].map((g) => ({ tags: { ...g.tags }, data: mergeSeriesList(g.data) })),
      overflowSamples: parts.reduce((n, p) => n + p.overflowSamples, 0),
    };
  }
  return {
    version: 1,
    startMs: Math.min(...list.map((s) => s.startMs)),
    endMs: Math.max(...list.map((s) => s.endMs)),
    metrics,
  };
}

// ---------------------------------------------------------------------------
// Querying

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

// ---------------------------------------------------------------------------
// Per-second time series (main thread)

export interface TimeSeriesPoint {
  /** seconds since the run start */
  t: number;
  targetRate: number;
  /** iterations per second achieved in this second */
  achievedRate: number;
  activeVus: number;
  /** null when no request finished in this second */
  p95Ms: number | null;
  /** (records since schema 1) */
  p50Ms?: number | null;
  p99Ms?: number | null;
  errors: number;
  requests: number;
  dropped: number;
}

export interface TimeSeriesMarker {
  /** ms since the run start */
  tMs: number;
  text: string;
}

/** What the run record keeps of a load run's course. */
export interface TimeSeries {
  startMs: number;
  points: TimeSeriesPoint[];
  markers: TimeSeriesMarker[];
}

/**
 * Collects the per-second buckets of every worker and merges them by second:
 * counts add, histograms add, active VUs add.
 */
export class TimeSeriesBuilder {
  private readonly seconds = new Map<number, { b: Omit<SecondBucket, 'hdr'>; hdrs: string[] }>();
  private readonly markers: TimeSeriesMarker[] = [];

  constructor(readonly startMs: number) {}

  add(buckets: readonly SecondBucket[]): void {
    for (const b of buckets) {
      let s = this.seconds.get(b.sec);
      if (!s) {
        s = { b: { sec: b.sec, iterations: 0, requests: 0, errors: 0, dropped: 0, activeVus: 0 }, hdrs: [] };
        this.seconds.set(b.sec, s);
      }
      s.b.iterations += b.iterations;
      s.b.requests += b.requests;
      s.b.errors += b.errors;
      s.b.dropped += b.dropped;
      s.b.activeVus += b.activeVus;
      if (b.hdr) s.hdrs.push(b.hdr);
    }
  }

  /** An event on the run's timeline, e.g. `shape latency api 200ms`. */
  mark(atMs: number, text: string): void {
    this.markers.push({ tMs: Math.max(0, atMs - this.startMs), text });
  }

  point(sec: number, targetRateAt: (sec: number) => number): TimeSeriesPoint | undefined {
    const s = this.seconds.get(sec);
    if (!s) return undefined;
    let p50Ms: number | null = null;
    let p95Ms: number | null = null;
    let p99Ms: number | null = null;
    if (s.hdrs.length) {
      const h = newHistogram();
      for (const e of s.hdrs) addEncoded(h, e);
      finishAdds(h);
      p50Ms = h.getValueAtPercentile(50) / 1000;
      p95Ms = h.getValueAtPercentile(95) / 1000;
      p99Ms = h.getValueAtPercentile(99) / 1000;
    }
    return {
      t: sec,
      targetRate: targetRateAt(sec),
      achievedRate: s.b.iterations,
      activeVus: s.b.activeVus,
      p50Ms,
      p95Ms,
      p99Ms,
      errors: s.b.errors,
      requests: s.b.requests,
      dropped: s.b.dropped,
    };
  }

  /** Every second from 0 to the last one seen (empty seconds included, as zeros). */
  build(targetRateAt: (sec: number) => number): TimeSeries {
    const last = Math.max(-1, ...this.seconds.keys());
    const points: TimeSeriesPoint[] = [];
    for (let sec = 0; sec <= last; sec++) {
      points.push(
        this.point(sec, targetRateAt) ?? { t: sec, targetRate: targetRateAt(sec), achievedRate: 0, activeVus: 0, p50Ms: null, p95Ms: null, p99Ms: null, errors: 0, requests: 0, dropped: 0 },
      );
    }
    return { startMs: this.startMs, points, markers: [...this.markers].sort((a, b) => a.tMs - b.tMs) };
  }
}
