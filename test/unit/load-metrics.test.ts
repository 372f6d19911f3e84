import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  MetricsRegistry,
  SeriesStats,
  TimeSeriesBuilder,
  mergeSnapshots,
  selectSeries,
  summarize,
  toSummaryFile,
  type MetricsSnapshot,
} from '../../src/load/metrics';

/** mulberry32: a seeded generator, so a failure reproduces. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Latency-like samples in ms: log-normal-ish, 0.05 ms .. ~10 s. */
function samples(n: number, seed: number): number[] {
  const r = rng(seed);
  return Array.from({ length: n }, () => Math.round(Math.exp(r() * 12 - 3) * 1000) / 1000 + 0.05);
}

/** Nearest-rank quantile of sorted values (what an HDR histogram approximates). */
function exactQuantile(sorted: number[], p: number): number {
  const rank = Math.max(1, Math.ceil((p / 100) * sorted.length));
  return sorted[rank - 1];
}

function assertClose(actual: number | undefined, expected: number, what: string): void {
  assert.ok(actual !== undefined, `${what}: no value`);
  // 3 significant digits: bucket width <= 1/1024 of the value; plus the 1 µs unit
  const tol = expected * (2 / 1024) + 0.001;
  assert.ok(Math.abs(actual - expected) <= tol, `${what}: ${actual} vs exact ${expected} (tolerance ${tol})`);
}

function fixedClock(startMs: number) {
  let t = startMs;
  return { now: () => t, set: (v: number) => (t = v), advance: (d: number) => (t += d) };
}

describe('load metrics', () => {
  test('trend percentiles agree with exact quantiles over 100k samples within HDR precision', () => {
    const clock = fixedClock(1_000_000);
    const reg = new MetricsRegistry({ now: clock.now });
    const values = samples(100_000, 42);
    for (const v of values) reg.add('iteration_duration', v);
    clock.advance(10_000);
    const snap = reg.snapshot();
    const st = new SeriesStats(selectSeries(snap, 'iteration_duration')!.data, 10_000);
    const sorted = [...values].sort((a, b) => a - b);
    for (const p of [50, 90, 95, 99, 99.9]) assertClose(st.get(`p(${p})`), exactQuantile(sorted, p), `p(${p})`);
    assertClose(st.get('med'), exactQuantile(sorted, 50), 'med');
    assert.equal(st.get('count'), 100_000);
    assert.equal(st.get('min'), sorted[0]);
    assert.equal(st.get('max'), sorted[sorted.length - 1]);
    const avg = values.reduce((a, b) => a + b, 0) / values.length;
    assert.ok(Math.abs(st.get('avg')! - avg) < 1e-9 * avg);
    assert.equal(st.get('rate'), 10_000);
  });

  test('merging two worker snapshots equals one histogram of all samples', () => {
    const clock = fixedClock(5_000);
    const a = new MetricsRegistry({ now: clock.now, startMs: 5_000 });
    const b = new MetricsRegistry({ now: clock.now, startMs: 5_000 });
    const all = new MetricsRegistry({ now: clock.now, startMs: 5_000 });
    const va = samples(30_000, 1);
    // the second worker sees a slower distribution, so averaging percentiles would be wrong
    const vb = samples(20_000, 2).map((v) => v * 3);
    for (const v of va) {
      a.recordRequest({ name: '/a', method: 'get', status: 200, durationMs: v, failed: false, bytesReceived: 10 });
      all.recordRequest({ name: '/a', method: 'get', status: 200, durationMs: v, failed: false, bytesReceived: 10 });
    }
    for (const v of vb) {
      b.recordRequest({ name: '/b', method: 'POST', status: 500, durationMs: v, failed: true });
      all.recordRequest({ name: '/b', method: 'POST', status: 500, durationMs: v, failed: true });
    }
    clock.advance(2_000);
    // snapshots cross threads by structured clone
    const merged = mergeSnapshots([structuredClone(a.snapshot()), structuredClone(b.snapshot())]);
    const direct = all.snapshot();
    const sm = new SeriesStats(selectSeries(merged, 'http_req_duration')!.data, 2_000);
    const sd = new SeriesStats(selectSeries(direct, 'http_req_duration')!.data, 2_000);
    for (const agg of ['count', 'min', 'max', 'med', 'p(90)', 'p(95)', 'p(99)', 'p(99.99)']) {
      assert.equal(sm.get(agg), sd.get(agg), agg);
    }
    assert.ok(Math.abs(sm.get('avg')! - sd.get('avg')!) < 1e-9 * sd.get('avg')!);
    const sorted = [...va, ...vb].sort((x, y) => x - y);
    assertClose(sm.get('p(95)'), exactQuantile(sorted, 95), 'merged p(95)');

    const failed = new SeriesStats(selectSeries(merged, 'http_req_failed')!.data, 2_000);
    assert.equal(failed.get('rate'), 20_000 / 50_000);
    const reqs = new SeriesStats(selectSeries(merged, 'http_reqs')!.data, 2_000);
    assert.equal(reqs.get('count'), 50_000);
    assert.equal(reqs.get('rate'), 25_000);
    const recv = new SeriesStats(selectSeries(merged, 'data_received')!.data, 2_000);
    assert.equal(recv.get('count'), 300_000);

    // per-endpoint sub-metrics by tag filter
    const onlyB = new SeriesStats(selectSeries(merged, 'http_req_duration', { name: '/b' })!.data, 2_000);
    assert.equal(onlyB.get('count'), 20_000);
    assert.equal(onlyB.get('min'), Math.min(...vb));
    assert.equal(new SeriesStats(selectSeries(merged, 'http_req_duration', { status: '200', method: 'GET' })!.data, 2000).get('count'), 30_000);
    assert.equal(new SeriesStats(selectSeries(merged, 'http_req_duration', { name: '/nope' })!.data, 2000).get('count'), 0);
  });

  test('custom metrics, gauges and checks merge across workers', () => {
    const clock = fixedClock(0);
    const w1 = new MetricsRegistry({ now: clock.now, startMs: 0 });
    const w2 = new MetricsRegistry({ now: clock.now, startMs: 0 });
    for (const w of [w1, w2]) {
      w.define('orders', 'counter');
      w.define('cart_ms', 'trend');
      w.define('ok_ratio', 'rate');
      w.define('queue', 'gauge');
    }
    w1.add('orders', 3);
    w2.add('orders', 4);
    w1.add('cart_ms', 10);
    w2.add('cart_ms', 30);
    w1.add('ok_ratio', true);
    w2.add('ok_ratio', false);
    w2.add('ok_ratio', true);
    clock.set(100);
    w1.add('queue', 7);
    clock.set(200);
    w2.add('queue', 2);
    w1.setVus(3, 10);
    w2.setVus(5, 10);
    w1.recordCheck('status is 200', true);
    w2.recordCheck('status is 200', false);
    clock.set(1000);
    const m = mergeSnapshots([w1.snapshot(), w2.snapshot()]);
    const get = (name: string, agg: string, tags = {}) => new SeriesStats(selectSeries(m, name, tags)!.data, 1000).get(agg);
    assert.equal(get('orders', 'count'), 7);
    assert.equal(get('orders', 'rate'), 7);
    assert.equal(get('cart_ms', 'avg'), 20);
    assert.equal(get('ok_ratio', 'rate'), 2 / 3);
    assert.equal(get('queue', 'value'), 2, 'the later gauge value wins');
    assert.equal(get('vus', 'value'), 8, 'vus add across workers');
    assert.equal(get('vus_max', 'value'), 20);
    assert.equal(get('checks', 'rate', { check: 'status is 200' }), 0.5);
    assert.throws(() => w1.define('orders', 'trend'), /already a counter/);
    assert.throws(() => w1.add('nope', 1), /not defined/);
  });

  test('summary rows break http_req_duration down per endpoint name', () => {
    const clock = fixedClock(0);
    const r = new MetricsRegistry({ now: clock.now, startMs: 0 });
    for (let i = 1; i <= 100; i++) r.recordRequest({ name: '/api/users/:name', method: 'GET', status: 200, durationMs: i, failed: false });
    for (let i = 1; i <= 10; i++) r.recordRequest({ name: '/api/orders', method: 'POST', status: 201, durationMs: 1000 + i, failed: false });
    clock.set(10_000);
    const rows = summarize(r.snapshot());
    const keys = rows.map((x) => x.key);
    assert.ok(keys.includes('http_req_duration'));
    assert.ok(keys.includes('http_req_duration{name:/api/users/:name}'));
    assert.ok(keys.includes('http_req_duration{name:/api/orders}'));
    const users = rows.find((x) => x.key === 'http_req_duration{name:/api/users/:name}')!;
    assertClose(users.values['p(95)'], 95, 'users p(95)');
    assert.equal(users.values.max, 100);
    const file = toSummaryFile(r.snapshot());
    assert.equal(file.metrics.http_reqs.values.count, 110);
    assert.equal(file.metrics.http_reqs.values.rate, 11);
    assert.doesNotThrow(() => JSON.parse(JSON.stringify(file)));
  });

  test('too many tag sets: the total stays exact and filtered views say partial', () => {
    const r = new MetricsRegistry({ maxTagSets: 3 });
    for (let i = 0; i < 10; i++) r.recordRequest({ name: `/u/${i}`, method: 'GET', status: 200, durationMs: 1, failed: false });
    const s: MetricsSnapshot = r.snapshot();
    assert.equal(new SeriesStats(selectSeries(s, 'http_reqs')!.data, 1000).get('count'), 10);
    assert.equal(s.metrics.http_reqs.series.length, 3);
    assert.equal(s.metrics.http_reqs.overflowSamples, 7);
    assert.equal(selectSeries(s, 'http_reqs', { name: '/u/1' })!.partial, true);
  });

  test('per-second buckets merge into a time series with markers', () => {
    const clock = fixedClock(10_000);
    const w1 = new MetricsRegistry({ now: clock.now, startMs: 10_000 });
    const w2 = new MetricsRegistry({ now: clock.now, startMs: 10_000 });
    const ts = new TimeSeriesBuilder(10_000);
    for (let sec = 0; sec < 3; sec++) {
      clock.set(10_000 + sec * 1000 + 100);
      w1.setVus(2, 4);
      w2.setVus(1, 4);
      for (let i = 0; i < 10; i++) {
        w1.recordRequest({ name: '/a', method: 'GET', status: 200, durationMs: (sec + 1) * 10, failed: false });
        w1.recordIteration(5);
      }
      w2.recordRequest({ name: '/a', method: 'GET', status: 0, durationMs: 1, failed: true });
      w2.recordIteration(5, { failed: true });
      w2.recordDropped(2);
      ts.add(w1.takeSeconds());
      ts.add(w2.takeSeconds());
    }
    clock.set(10_000 + 1500);
    ts.mark(10_000 + 1500, 'shape latency api 200ms');
    ts.add(w1.takeSeconds(true));
    ts.add(w2.takeSeconds(true));
    assert.deepEqual(w1.takeSeconds(true), [], 'each bucket is handed out once');
    const series = ts.build((sec) => (sec < 1 ? 5 : 11));
    assert.equal(series.points.length, 3);
    const p1 = series.points[1];
    assert.equal(p1.achievedRate, 11);
    assert.equal(p1.requests, 11);
    assert.equal(p1.errors, 2, 'a failed request and a failed iteration');
    assert.equal(p1.dropped, 2);
    assert.equal(p1.activeVus, 3);
    assert.equal(p1.targetRate, 11);
    assertClose(p1.p95Ms!, 20, 'second 1 p95');
    assertClose(series.points[2].p95Ms!, 30, 'second 2 p95');
    assert.deepEqual(series.markers, [{ tMs: 1500, text: 'shape latency api 200ms' }]);
  });
});
