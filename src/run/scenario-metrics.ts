import type { CustomMetricsSink } from '../lua/vu-metrics-module';

/** One custom metric of a scenario (`require("metrics")` under `topas run`), as the report shows it. */
export interface CustomMetricSummary {
  name: string;
  type: 'counter' | 'trend' | 'rate' | 'gauge';
  /** samples added */
  count: number;
  /** counter: the total; trend: the mean; rate: the share of true/non-zero samples (0-1); gauge: the last value */
  value: number;
  /** trend only */
  min?: number;
  max?: number;
}

interface Acc {
  type: CustomMetricSummary['type'];
  count: number;
  sum: number;
  hits: number;
  last: number;
  min: number;
  max: number;
}

/**
 * The custom metrics of one scenario run: a system test adds a handful of
 * samples, so plain tallies (no histogram) are enough; `topas load` keeps its
 * own HDR-backed registry.
 */
export class ScenarioMetrics implements CustomMetricsSink {
  private readonly byName = new Map<string, Acc>();

  define(name: string, type: CustomMetricSummary['type']): void {
    const known = this.byName.get(name);
    if (known && known.type !== type) throw new Error(`metrics "${name}" is a ${known.type} already, not a ${type}`);
    if (!known) this.byName.set(name, { type, count: 0, sum: 0, hits: 0, last: 0, min: Infinity, max: -Infinity });
  }

  add(name: string, value: number | boolean): void {
    const a = this.byName.get(name);
    if (!a) throw new Error(`metrics "${name}" was not defined`);
    const n = typeof value === 'boolean' ? (value ? 1 : 0) : value;
    a.count++;
    a.sum += n;
    if (n !== 0) a.hits++;
    a.last = n;
    a.min = Math.min(a.min, n);
    a.max = Math.max(a.max, n);
  }

  summary(): CustomMetricSummary[] {
    return [...this.byName].map(([name, a]) => {
      if (a.type === 'trend') return { name, type: a.type, count: a.count, value: a.count ? a.sum / a.count : 0, ...(a.count ? { min: a.min, max: a.max } : {}) };
      const value = a.type === 'counter' ? a.sum : a.type === 'rate' ? (a.count ? a.hits / a.count : 0) : a.last;
      return { name, type: a.type, count: a.count, value };
    });
  }
}
