import { encodeHistogram, type Histogram } from './hdr';
import { TopasError } from '../errors';
import {
  BUILTIN_METRICS,
  METRIC_NAME_RE,
  newHistogram,
  SUMMED_GAUGES,
  tagsKey,
  toMicros,
  type MetricContains,
  type MetricInfo,
  type MetricSnapshot,
  type MetricsRegistryOptions,
  type MetricsSnapshot,
  type MetricType,
  type RequestSample,
  type SecondBucket,
  type SeriesData,
  type Tags,
} from './metric-data';

/**
 * Where a worker thread records its samples: each worker owns one
 * MetricsRegistry and hands out snapshots and per-second buckets, which the
 * main thread merges (metrics-merge.ts, time-series.ts).
 */

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
