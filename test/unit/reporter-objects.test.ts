import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { getReporter, registerReporter, reporterHooks, reporterNames } from '../../src/reporters/index';
import type { RunReport } from '../../src/reporters/run-report';

/** Reporters are objects in one registry: built-in, registered (a plugin's) or from a path, each with optional hooks. */
const plain = { color: false, mask: (s: string) => s };

const loadReport: RunReport = {
  runId: '20261202-100000-000-10-abcdef',
  startedAt: '2026-12-02T10:00:00.000Z',
  durationMs: 3500,
  state: 'failed',
  results: [],
  kind: 'load',
  exitCode: 4,
  load: {
    executor: 'constant arrival rate 20/s for 3.00s, up to 20 VUs',
    plan: { executor: 'constant-arrival-rate', rate: 20, timeUnitMs: 1000, durationMs: 3000, preAllocatedVus: 20, maxVus: 20 },
    durationMs: 3000,
    points: [],
    marks: [],
    thresholds: [{ key: 'http_req_duration', metric: 'http_req_duration', tags: {}, expression: 'p(95)<1', ok: false, observed: 4.5, abortOnFail: false }],
    metrics: {
      http_req_duration: { type: 'trend', contains: 'time', values: { count: 60, avg: 3.1, min: 1, med: 3, max: 9, 'p(90)': 4, 'p(95)': 4.5, 'p(99)': 8 } },
      iterations: { type: 'counter', contains: 'default', values: { count: 60, rate: 20 } },
    },
    errors: [{ message: 'load.lua:9: boom', count: 2 }],
    aborted: 'threshold http_req_duration p(95)<1 failed (abort_on_fail)',
  },
};

describe('reporter objects', () => {
  test('summary: the load summary table with threshold marks, errors and the verdict; its JSON form with json', () => {
    assert.ok(reporterNames().includes('summary'));
    const text = getReporter('summary')(loadReport, plain);
    assert.match(text, /http_req_duration +│ count=60 +avg=3\.10ms/);
    assert.match(text, /│ ✗ p\(95\)<1 +│/);
    assert.match(text, /✗ 1 of 1 thresholds failed/);
    assert.match(text, /^aborted: threshold http_req_duration/m);
    assert.match(text, /^iteration errors:\n {2}2 × load\.lua:9: boom$/m);
    assert.match(text, /\nrun 20261202-100000-000-10-abcdef: failed\n$/);
    const json = JSON.parse(getReporter('summary')(loadReport, { ...plain, json: true }));
    assert.deepEqual(Object.keys(json), ['runId', 'state', 'exitCode', 'durationMs', 'executor', 'metrics', 'thresholds', 'aborted', 'errors']);
    assert.equal(json.executor.executor, 'constant-arrival-rate');
    assert.equal(json.thresholds[0].abortOnFail, false);
    // a load run that never started its load prints nothing (the log said why)
    assert.equal(getReporter('summary')({ ...loadReport, load: { ...loadReport.load!, durationMs: 0 } }, plain), '');
  });

  test('a registered object reporter: render, onRunEnd and lifecycle hooks; a hook that throws is reported once', () => {
    const seen: string[] = [];
    registerReporter('probe', {
      render: (r) => `probe ${r.state}`,
      onRunEnd: (r) => void seen.push(`end ${r.state}`),
      onRunStart: (info) => void seen.push(`start ${info.kind}`),
      onLoadSecond: (p) => {
        seen.push(`second ${p.t}`);
        if (p.t === 1) throw new Error('broken');
      },
    });
    const warnings: string[] = [];
    const hooks = reporterHooks(['probe', 'table'], process.cwd(), (l) => void warnings.push(l));
    hooks.runStart({ runId: 'r', kind: 'load' });
    for (let t = 0; t < 3; t++) hooks.loadSecond({ t, targetRate: 1, achievedRate: 1, activeVus: 1, p95Ms: 1, errors: 0, requests: 1, dropped: 0 });
    assert.equal(getReporter('probe')(loadReport, plain), 'probe failed');
    assert.deepEqual(seen, ['start load', 'second 0', 'second 1', 'end failed']);
    assert.deepEqual(warnings, ['reporter probe: onLoadSecond failed (broken); its hooks are not called again']);
  });
});
