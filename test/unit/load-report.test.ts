import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { TopasError } from '../../src/errors';
import { MetricsRegistry, toSummaryFile } from '../../src/load/metrics';
import { compareWithBaseline, figuresFromBaselineJson, figuresFromSnapshot } from '../../src/load/baseline';
import { ProgressRenderer, renderSummary, type ProgressState } from '../../src/load/progress';
import { evaluateThresholds, parseThresholdsOption } from '../../src/load/thresholds';

function runSnapshot(scale: number, failures: number) {
  let t = 0;
  const r = new MetricsRegistry({ now: () => t, startMs: 0 });
  for (let i = 1; i <= 1000; i++) {
    r.recordRequest({ name: i % 2 ? '/api/users/:name' : '/api/orders', method: 'GET', status: i <= failures ? 500 : 200, durationMs: i * scale * 0.1, failed: i <= failures });
    r.recordIteration(i * scale * 0.1 + 1);
  }
  t = 10_000;
  return r.snapshot();
}

const state: ProgressState = { elapsedMs: 5000, totalMs: 30_000, targetRate: 200, achievedRate: 198.5, activeVus: 12, maxVus: 500, p95Ms: 42.5, errors: 3, requests: 990, dropped: 0 };

describe('baseline comparison', () => {
  test('p95 and failure rate regressions beyond 10% fail; from snapshots, summary files and k6 exports', () => {
    const base = runSnapshot(1, 0);
    const same = compareWithBaseline(figuresFromSnapshot(runSnapshot(1.05, 0)), figuresFromSnapshot(base));
    assert.equal(same.ok, true);
    const p95Row = same.rows.find((r) => r.metric === 'http_req_duration' && r.stat === 'p(95)')!;
    assert.ok(Math.abs(p95Row.deltaRatio! - 0.05) < 0.005);

    const slower = compareWithBaseline(figuresFromSnapshot(runSnapshot(1.2, 0)), figuresFromBaselineJson({ load: { snapshot: base } }));
    assert.equal(slower.ok, false);
    assert.equal(slower.rows.find((r) => !r.ok)!.stat, 'p(95)');

    const failing = compareWithBaseline(figuresFromSnapshot(runSnapshot(1, 20)), figuresFromBaselineJson(toSummaryFile(base)));
    assert.equal(failing.ok, false);
    assert.deepEqual(failing.rows.filter((r) => !r.ok).map((r) => r.metric), ['http_req_failed']);
    assert.equal(compareWithBaseline(figuresFromSnapshot(runSnapshot(1.5, 0)), figuresFromSnapshot(base), { maxRegression: 0.6 }).ok, true);

    const k6Export = { metrics: { http_req_duration: { avg: 10, 'p(95)': 100, med: 9 }, http_req_failed: { value: 0.02, passes: 2, fails: 98 } } };
    const k6 = figuresFromBaselineJson(k6Export);
    assert.equal(k6.http_req_failed.rate, 0.02);
    assert.equal(k6.http_req_duration['p(95)'], 100);
    assert.throws(() => figuresFromBaselineJson({ hello: 1 }, 'x.json'), (e: TopasError) => e.code === 'INVALID_FLAGS' && /x\.json/.test(e.message));
  });
});

describe('progress and summary', () => {
  test('a TTY redraws in place; a pipe gets plain lines at most every plainEveryMs', () => {
    let tty = '';
    const r = new ProgressRenderer({ write: (s: string) => (tty += s), isTTY: true });
    r.update(state);
    r.update({ ...state, elapsedMs: 6000 });
    assert.ok(!tty.startsWith('\x1b[1A'));
    assert.ok(tty.includes('\x1b[1A\r\x1b[2K'), 'cursor up + clear line before the redraw');
    assert.match(tty, /rate 198\.5\/200 it\/s {2}vus 12\/500 {2}p95 42\.50ms/);

    let plain = '';
    let now = 0;
    const p = new ProgressRenderer({ write: (s: string) => (plain += s), isTTY: false }, { plainEveryMs: 5000, now: () => now });
    p.update(state);
    now = 1000;
    p.update(state);
    now = 5000;
    p.update(state);
    now = 5001;
    p.finish(state);
    assert.equal(plain.split('\n').filter(Boolean).length, 3);
    assert.ok(!plain.includes('\x1b'));
  });

  test('summary table lists metrics, per-endpoint rows and threshold marks', () => {
    const snap = runSnapshot(1, 5);
    const defs = parseThresholdsOption({
      http_req_duration: ['p(95)<250', 'p(99)<50'],
      http_req_failed: ['rate<0.01'],
      'http_req_duration{method:GET}': ['avg<1000'],
      custom_thing: ['count>1'],
    });
    const out = renderSummary(snap, { thresholds: evaluateThresholds(defs, snap) });
    assert.match(out, /http_req_duration{name:\/api\/orders}/);
    assert.match(out, /✓ p\(95\)<250/);
    assert.match(out, /✗ p\(99\)<50/);
    assert.match(out, /✓ rate<0\.01/);
    assert.match(out, /http_req_failed.*rate=0\.50%/);
    assert.match(out, /http_reqs.*count=1000 +rate=100\.00\/s/);
    assert.match(out, /http_req_duration{method:GET}.*avg=.*✓ avg<1000/s);
    assert.match(out, /custom_thing.*no samples.*✗ count>1/s);
    assert.match(out, /✗ 2 of 5 thresholds failed/);
  });
});
