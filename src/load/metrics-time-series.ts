import { addEncoded, finishAdds } from './hdr';
import { newHistogram, type SecondBucket } from './metric-data';

/** Per-second time series of a load run (main thread), from the workers' per-second buckets. */

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
