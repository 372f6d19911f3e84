import { buildHistogram, type Histogram } from './hdr';

/**
 * Load-test metrics, k6 style: what they are and the plain data a registry
 * hands out (metrics-registry.ts), the workers' snapshots merge into
 * (metrics-merge.ts) and summaries are read from (metrics-query.ts). Trends
 * keep an HDR histogram (so percentiles merge exactly: histograms add,
 * percentiles are never averaged) plus exact count/sum/min/max.
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
export const SUMMED_GAUGES = new Set(['vus', 'vus_max']);

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

/** An empty histogram of the metrics' range. */
export function newHistogram(): Histogram {
  return buildHistogram(HDR_LOWEST_US, HDR_HIGHEST_US, HDR_SIGNIFICANT_DIGITS);
}

/** ms -> histogram units (µs), clamped into the trackable range. */
export function toMicros(ms: number): number {
  const us = Math.round(ms * 1000);
  if (!(us > 0)) return 0;
  return us > HDR_HIGHEST_US ? HDR_HIGHEST_US : us;
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
