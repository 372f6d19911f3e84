import { addEncoded, encodeHistogram, finishAdds } from './hdr';
import { TopasError } from '../errors';
import { newHistogram, tagsKey, type CounterData, type GaugeData, type MetricSnapshot, type MetricsSnapshot, type RateData, type SeriesData, type Tags, type TrendData } from './metric-data';

/** Merging the snapshots of workers (and the series of one metric) into one. */

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
export function mergeSeriesList(list: SeriesData[]): SeriesData {
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
