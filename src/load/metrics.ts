/**
 * Load-test metrics, k6 style: each worker thread owns one MetricsRegistry;
 * the main thread merges their snapshots. The parts live in their own
 * modules; this one gathers what the rest of topas imports.
 */

export {
  BUILTIN_METRICS,
  formatMetricKey,
  HDR_HIGHEST_US,
  HDR_LOWEST_US,
  HDR_SIGNIFICANT_DIGITS,
  METRIC_NAME_RE,
  tagsKey,
  type CounterData,
  type GaugeData,
  type MetricContains,
  type MetricInfo,
  type MetricSnapshot,
  type MetricsRegistryOptions,
  type MetricsSnapshot,
  type MetricType,
  type RateData,
  type RequestSample,
  type SecondBucket,
  type SeriesData,
  type Tags,
  type TrendData,
} from './metric-data';
export { MetricsRegistry } from './metrics-registry';
export { mergeSnapshots } from './metrics-merge';
export {
  DEFAULT_TREND_STATS,
  hasSamples,
  selectSeries,
  SeriesStats,
  snapshotDurationMs,
  summarize,
  toSummaryFile,
  type SeriesSelection,
  type SummaryFile,
  type SummaryRow,
} from './metrics-query';
export { TimeSeriesBuilder, type TimeSeries, type TimeSeriesMarker, type TimeSeriesPoint } from './metrics-time-series';
