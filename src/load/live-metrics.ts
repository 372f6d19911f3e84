import { Counter, Gauge, type Registry } from 'prom-client';
import { decodeHistogram } from './hdr';
import { selectSeries, type MetricsSnapshot, type SeriesData } from './metrics';

/** Request latency buckets, seconds (Prometheus' defaults, plus the sub-5 ms range a local SUT answers in). */
const BUCKETS_S = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

export interface LiveLoadSource {
  /** the workers' merged metrics so far */
  snapshot(): MetricsSnapshot;
  /** iterations/s reached over the last full second, and requests/s over the same second */
  currentRates(): { iterations: number; requests: number };
}

/**
 * `topas load --metrics-port`: live request metrics beside the run metrics,
 * per request name: requests and errors (counters), latency (a histogram
 * read from the merged HDR histograms at scrape time) and the current rate.
 */
export function registerLiveLoadMetrics(registry: Registry, source: LiveLoadSource): void {
  const perName = (metric: string) => {
    const snap = source.snapshot();
    const out = new Map<string, SeriesData>();
    for (const s of snap.metrics[metric]?.series ?? []) {
      const name = s.tags.name;
      if (name !== undefined && !out.has(name)) out.set(name, selectSeries(snap, metric, { name })!.data);
    }
    return out;
  };
  new Counter({
    name: 'topas_load_requests_total',
    help: 'requests made by the load test, by request name',
    labelNames: ['name'],
    registers: [registry],
    collect() {
      this.reset();
      for (const [name, d] of perName('http_reqs')) if (d.kind === 'counter' && d.sum > 0) this.inc({ name }, d.sum);
    },
  });
  new Counter({
    name: 'topas_load_request_errors_total',
    help: 'failed requests (connection errors and error statuses), by request name',
    labelNames: ['name'],
    registers: [registry],
    collect() {
      this.reset();
      for (const [name, d] of perName('http_req_failed')) if (d.kind === 'rate') this.inc({ name }, d.passes);
    },
  });
  new Gauge({
    name: 'topas_load_requests_per_second',
    help: 'requests per second over the last full second',
    registers: [registry],
    collect() {
      this.set(source.currentRates().requests);
    },
  });
  new Gauge({
    name: 'topas_load_iterations_per_second',
    help: 'iterations per second over the last full second',
    registers: [registry],
    collect() {
      this.set(source.currentRates().iterations);
    },
  });
  registry.registerMetric({
    name: 'topas_load_request_duration_seconds',
    help: 'request latency, by request name',
    type: 'histogram',
    aggregator: 'sum',
    get: async () => {
      const values: Array<{ metricName: string; labels: Record<string, string | number>; value: number }> = [];
      for (const [name, d] of perName('http_req_duration')) {
        if (d.kind !== 'trend' || d.count === 0) continue;
        const h = decodeHistogram(d.hdr);
        for (const le of BUCKETS_S) values.push({ metricName: 'topas_load_request_duration_seconds_bucket', labels: { name, le }, value: countAtMost(h, d, le * 1e6) });
        values.push({ metricName: 'topas_load_request_duration_seconds_bucket', labels: { name, le: '+Inf' }, value: d.count });
        values.push({ metricName: 'topas_load_request_duration_seconds_sum', labels: { name }, value: d.sum / 1000 });
        values.push({ metricName: 'topas_load_request_duration_seconds_count', labels: { name }, value: d.count });
      }
      return { name: 'topas_load_request_duration_seconds', help: 'request latency, by request name', type: 'histogram', aggregator: 'sum', values } as never;
    },
    reset: () => undefined,
  } as never);
}

/** Samples at or below `boundUs`: the histogram keeps percentiles, so search the percentile whose value crosses the bound. */
function countAtMost(h: ReturnType<typeof decodeHistogram>, d: Extract<SeriesData, { kind: 'trend' }>, boundUs: number): number {
  if (d.max * 1000 <= boundUs) return d.count;
  if (d.min * 1000 > boundUs) return 0;
  let lo = 0;
  let hi = 100;
  for (let i = 0; i < 30; i++) {
    const mid = (lo + hi) / 2;
    if (h.getValueAtPercentile(mid) <= boundUs) lo = mid;
    else hi = mid;
  }
  return Math.round((lo / 100) * d.count);
}
