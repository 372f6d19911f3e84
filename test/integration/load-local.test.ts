import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { cli, REPO_ROOT } from '../helpers/cli';
import { startHttpServer, type TestHttpServer } from '../helpers/http-server';

/**
 * `topas load` without an app spec, against a real HTTP server on 127.0.0.1:
 * exact percentiles, thresholds, abort_on_fail, baselines, the closed model.
 */
const SCRIPTS = path.join(REPO_ROOT, 'fixtures', 'load', 'no-app');

let server: TestHttpServer;
/** every number the server handed out on /sample, in order */
const served: number[] = [];
let cwd: string;

before(async () => {
  cwd = fs.mkdtempSync(path.join(os.tmpdir(), 'topas-load-'));
  let seed = 12345;
  // deterministic, spread over 0.05 .. 250 ms with a long tail, 3 decimals
  const next = () => {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    const u = seed / 2147483648;
    return Math.round((0.05 + 250 * u ** 4) * 1000) / 1000;
  };
  server = await startHttpServer((req, res) => {
    const url = new URL(req.url, 'http://x');
    if (url.pathname === '/sample') {
      const v = next();
      served.push(v);
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end(String(v));
      return;
    }
    if (url.pathname === '/slow') {
      setTimeout(() => res.end('slow'), Number(url.searchParams.get('ms') ?? 10));
      return;
    }
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.end('ok');
  });
});

after(async () => {
  await server.close();
  fs.rmSync(cwd, { recursive: true, force: true });
});

function env(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  return { ...process.env, TARGET: server.url, ...extra };
}

/** nearest-rank percentile, what HDR's getValueAtPercentile approximates */
function exactPercentile(sorted: number[], p: number): number {
  const rank = Math.max(1, Math.ceil((p / 100) * sorted.length));
  return sorted[rank - 1];
}

describe('topas load against a local server', () => {
  test('percentiles agree with an exact computation over the raw samples', async () => {
    served.length = 0;
    const r = await cli(['load', path.join(SCRIPTS, 'samples.lua'), '--json', '--workers', '2'], { cwd, env: env() });
    assert.equal(r.code, 0, r.stderr + r.stdout);
    const summary = JSON.parse(r.stdout);
    assert.equal(summary.state, 'passed');
    // 300/s for 2s: exactly 600 iterations, all of them served and recorded
    assert.equal(served.length, 600);
    assert.equal(summary.metrics.iterations.values.count, 600);
    assert.equal(summary.metrics.samples_seen.values.count, 600);
    assert.equal(summary.metrics.http_reqs.values.count, 600);
    assert.equal(summary.metrics.http_req_duration.values.count, 600);
    assert.equal(summary.metrics.checks.values.passes, 1200);
    assert.equal(summary.metrics.checks.values.fails, 0);
    // data_sent / data_received count the wire, heads included (as k6 does): a GET of /sample is
    // > 40 bytes out, and every answer has a status line and headers besides its short body
    const bodyBytes = served.reduce((n, v) => n + String(v).length, 0);
    assert.ok(summary.metrics.data_sent.values.count >= 600 * 40, JSON.stringify(summary.metrics.data_sent));
    assert.ok(summary.metrics.data_received.values.count >= bodyBytes + 600 * 60, `${JSON.stringify(summary.metrics.data_received)} vs bodies ${bodyBytes}`);
    const trend = summary.metrics.served_ms.values;
    const sorted = [...served].sort((a, b) => a - b);
    assert.equal(trend.count, 600);
    assert.ok(Math.abs(trend.min - sorted[0]) < 1e-9, `min ${trend.min} vs ${sorted[0]}`);
    assert.ok(Math.abs(trend.max - sorted[sorted.length - 1]) < 1e-9, `max ${trend.max}`);
    const exactAvg = served.reduce((a, b) => a + b, 0) / served.length;
    assert.ok(Math.abs(trend.avg - exactAvg) < 1e-6, `avg ${trend.avg} vs ${exactAvg}`);
    for (const [stat, p] of [['med', 50], ['p(90)', 90], ['p(95)', 95], ['p(99)', 99]] as const) {
      const exact = exactPercentile(sorted, p);
      // HDR with 3 significant digits over µs: within 0.1% (+ the µs the values are rounded to)
      const tolerance = exact * 0.001 + 0.001;
      assert.ok(Math.abs(trend[stat] - exact) <= tolerance, `${stat}: ${trend[stat]} vs exact ${exact}`);
    }
    // the run record holds the merged snapshot and a per-second time series
    const record = JSON.parse(fs.readFileSync(path.join(cwd, '.topas', 'runs', summary.runId, 'run.json'), 'utf8'));
    assert.equal(record.kind, 'load');
    assert.equal(record.state, 'passed');
    assert.equal(record.load.snapshot.metrics.served_ms.total.count, 600);
    const points = record.load.timeSeries.points as Array<{ t: number; achievedRate: number; targetRate: number }>;
    assert.ok(points.length >= 2, JSON.stringify(points));
    assert.equal(points.reduce((n, p) => n + p.achievedRate, 0), 600);
    assert.equal(points[0].targetRate, 300);
  });

  test('the summary breaks requests down by name, and thresholds are marked', async () => {
    const r = await cli(['load', path.join(SCRIPTS, 'samples.lua'), '--duration', '1s', '--threshold', 'served_ms:p(95)<0.01'], { cwd, env: env() });
    assert.equal(r.code, 4, r.stderr + r.stdout);
    assert.match(r.stdout, /http_req_duration/);
    assert.match(r.stdout, /served_ms/);
    assert.match(r.stdout, /✗ p\(95\)<0\.01/);
    assert.match(r.stdout, /✓ rate<0\.01/);
    assert.match(r.stdout, /1 of 2 thresholds failed/);
  });

  test('abort_on_fail stops the run early with exit 4', async () => {
    const r = await cli(['load', path.join(SCRIPTS, 'abort.lua'), '--json'], { cwd, env: env() });
    assert.equal(r.code, 4, r.stderr + r.stdout);
    const summary = JSON.parse(r.stdout);
    assert.match(summary.aborted, /http_req_duration p\(95\)<1 failed \(abort_on_fail\)/);
    // 50/s for 60s would be 3000 iterations
    assert.ok(summary.metrics.iterations.values.count < 1500, `ran ${summary.metrics.iterations.values.count} iterations`);
    assert.equal(summary.thresholds[0].ok, false);
  });

  test('--baseline: a p95 regression beyond --max-regression exits 4, none passes', async () => {
    const first = await cli(['load', path.join(SCRIPTS, 'target.lua'), '--json'], { cwd, env: env() });
    assert.equal(first.code, 0, first.stderr);
    const baselineId = JSON.parse(first.stdout).runId;
    const slower = await cli(['load', path.join(SCRIPTS, 'target.lua'), '--json', '--baseline', baselineId], { cwd, env: env({ PATH_: '/slow?ms=40' }) });
    assert.equal(slower.code, 4, slower.stderr);
    const s = JSON.parse(slower.stdout);
    assert.equal(s.baseline.ok, false);
    const p95 = s.baseline.rows.find((row: { metric: string; stat: string }) => row.metric === 'http_req_duration' && row.stat === 'p(95)');
    assert.equal(p95.ok, false);
    // the same run as its own baseline file: no regression
    const file = path.join(cwd, '.topas', 'runs', baselineId, 'run.json');
    const same = await cli(['load', path.join(SCRIPTS, 'target.lua'), '--json', '--baseline', file, '--max-regression', '1000%'], { cwd, env: env() });
    assert.equal(same.code, 0, same.stderr);
    assert.equal(JSON.parse(same.stdout).baseline.ok, true);
  });

  test('constant VUs: setup data reaches every VU, teardown runs once with it', async () => {
    const before = server.requests.filter((q) => q.url.startsWith('/teardown')).length;
    const r = await cli(['load', path.join(SCRIPTS, 'closed.lua'), '--json', '--workers', '2'], { cwd, env: env() });
    assert.equal(r.code, 0, r.stderr + r.stdout);
    const s = JSON.parse(r.stdout);
    assert.equal(s.executor.executor, 'constant-vus');
    assert.ok(s.metrics.iterations.values.count > 4, JSON.stringify(s.metrics.iterations));
    assert.equal(s.metrics.iterations.values.count, s.metrics.http_reqs.values.count);
    assert.equal(s.metrics.vus_max.values.value, 4);
    assert.equal(s.errors.length, 0, JSON.stringify(s.errors));
    const teardowns = server.requests.filter((q) => q.url.startsWith('/teardown'));
    assert.equal(teardowns.length - before, 1);
    assert.equal(teardowns[teardowns.length - 1].url, '/teardown?token=abc');
  });

  test('invalid options and flags exit 2 before anything runs', async () => {
    const bad = await cli(['load', path.join(SCRIPTS, 'target.lua'), '--rate', 'fast', '--threshold', 'http_req_duration:p95<3'], { cwd, env: env() });
    assert.equal(bad.code, 2, bad.stderr);
    assert.match(bad.stderr, /--rate/);
    assert.match(bad.stderr, /p95/);
    const missing = await cli(['load', path.join(SCRIPTS, 'nope.lua')], { cwd, env: env() });
    assert.equal(missing.code, 2, missing.stderr);
  });
});
