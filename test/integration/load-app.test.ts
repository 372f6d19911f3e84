import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { captureIo, cli, REPO_ROOT } from '../helpers/cli';
import { runCli } from '../../src/cli/main';

/**
 * `topas load` against the fixture app stood up on the local backend
 * (fixtures/load/app/topas.yaml), the way users run it.
 */
const APP_DIR = path.join(REPO_ROOT, 'fixtures', 'load', 'app');
const APP = ['--app', path.join(APP_DIR, 'topas.yaml'), '--backend', 'local'];

function removeRun(runId: string | undefined): void {
  if (runId) fs.rmSync(path.join(APP_DIR, '.topas', 'runs', runId), { recursive: true, force: true });
}

function portOpen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

describe('topas load against the fixture app', () => {
  test('--rate 1000/s --duration 10s: the achieved rate is the target and nothing is dropped', async () => {
    // VUs to spare: a scheduler hiccup on a shared machine must not turn into drops
    const r = await cli(['load', path.join(APP_DIR, 'fixed.lua'), ...APP, '--rate', '1000/s', '--duration', '10s', '--max-vus', '500', '--json']);
    const s = JSON.parse(r.stdout);
    try {
      assert.equal(r.code, 0, r.stderr);
      const iterations = s.metrics.iterations.values;
      // every scheduled iteration started and finished: 10000 in 10s
      assert.ok(Math.abs(iterations.count - 10_000) <= 100, `${iterations.count} iterations, ${JSON.stringify(s.metrics.dropped_iterations)} dropped`);
      assert.ok(Math.abs(iterations.rate - 1000) <= 10, `achieved ${iterations.rate}/s`);
      assert.equal(s.metrics.dropped_iterations?.values.count ?? 0, 0);
      assert.equal(s.metrics.http_req_failed.values.passes, 0);
      assert.equal(s.metrics.checks.values.fails, 0);
      // requests are tagged with the URL as the script wrote it (service name kept)
      const record = JSON.parse(fs.readFileSync(path.join(APP_DIR, '.topas', 'runs', s.runId, 'run.json'), 'utf8'));
      const names = record.load.snapshot.metrics.http_reqs.series.map((x: { tags: Record<string, string> }) => x.tags.name);
      assert.deepEqual([...new Set(names)], ['http://api/fixed']);
      assert.equal(record.load.timeSeries.points.reduce((n: number, p: { achievedRate: number }) => n + p.achievedRate, 0), iterations.count);
    } finally {
      removeRun(s.runId);
    }
  });

  test('an endpoint slower than max_vus allows: dropped iterations are reported and rate>990 exits 4', async () => {
    const r = await cli(['load', path.join(APP_DIR, 'slow.lua'), ...APP, '--json']);
    const s = JSON.parse(r.stdout);
    try {
      assert.equal(r.code, 4, r.stderr);
      assert.equal(s.state, 'failed');
      const dropped = s.metrics.dropped_iterations.values.count;
      const iterations = s.metrics.iterations.values.count;
      // 50 VUs x 200 ms: at most ~250 iterations/s of the 1000/s asked for
      assert.ok(dropped > 1000, `dropped ${dropped}`);
      assert.ok(iterations <= 50 * 5 * 3 + 50, `iterations ${iterations}`);
      assert.equal(iterations + dropped, 3000);
      assert.equal(s.metrics.vus_max.values.value, 50);
      const rate = s.thresholds.find((t: { metric: string }) => t.metric === 'iterations');
      assert.equal(rate.ok, false);
      assert.ok(rate.observed < 990);
      // the request failure threshold still passes: slow is not failed
      assert.equal(s.thresholds.find((t: { metric: string }) => t.metric === 'http_req_failed').ok, true);
      assert.ok(s.metrics['http_req_duration{name:slow}'] === undefined || s.metrics['http_req_duration{name:slow}'].values['p(95)'] >= 200);
      assert.ok(s.metrics.http_req_duration.values.med >= 200);
    } finally {
      removeRun(s.runId);
    }
  });

  test('the SUT changing under load is marked in the time series', async () => {
    const r = await cli(['load', path.join(APP_DIR, 'sut-change.lua'), ...APP, '--json']);
    const s = JSON.parse(r.stdout);
    try {
      assert.equal(r.code, 0, r.stderr);
      const record = JSON.parse(fs.readFileSync(path.join(APP_DIR, '.topas', 'runs', s.runId, 'run.json'), 'utf8'));
      const markers = record.load.timeSeries.markers as Array<{ tMs: number; text: string }>;
      const start = markers.find((m) => m.text === 'sut.restart(api)');
      const done = markers.find((m) => m.text === 'sut.restart done');
      assert.ok(start && done, JSON.stringify(markers));
      // iteration 40 of 40/s starts at 1s
      assert.ok(start.tMs >= 900 && start.tMs <= done.tMs, JSON.stringify(markers));
      // every scheduled iteration still started: 160 in 4s
      assert.equal(s.metrics.iterations.values.count + (s.metrics.dropped_iterations?.values.count ?? 0), 160);
    } finally {
      removeRun(s.runId);
    }
  });

  test('shape.* from the load script: requests slow down while shaped, the time series marks each change', async () => {
    const r = await cli(['load', path.join(APP_DIR, 'shape-latency.lua'), ...APP, '--json']);
    const s = JSON.parse(r.stdout);
    try {
      assert.equal(r.code, 0, r.stderr);
      const record = JSON.parse(fs.readFileSync(path.join(APP_DIR, '.topas', 'runs', s.runId, 'run.json'), 'utf8'));
      const markers = (record.load.timeSeries.markers as Array<{ tMs: number; text: string }>).map((m) => m.text);
      assert.ok(markers.some((t) => /^shape api: latency 150ms/.test(t)), JSON.stringify(markers));
      assert.ok(markers.some((t) => /^shape api: (reset|unshaped|none)/.test(t)), JSON.stringify(markers));
      const p50 = (name: string) => {
        const row = Object.entries(s.metrics as Record<string, { values: Record<string, number> }>).find(([k]) => k.startsWith('http_req_duration{') && k.includes(`name:${name}`));
        assert.ok(row, `no http_req_duration row for ${name}: ${Object.keys(s.metrics).join(', ')}`);
        return row[1].values.med;
      };
      const before = p50('before');
      const shaped = p50('shaped');
      const after = p50('after');
      // +150ms on the response path, within 10%
      assert.ok(shaped - before >= 135 && shaped - before <= 165 + 20, `before ${before}ms, shaped ${shaped}ms`);
      assert.ok(after < before + 50, `after ${after}ms vs before ${before}ms`);
    } finally {
      removeRun(s.runId);
    }
  });

  test('Ctrl-C: exit 130, teardown() runs and the SUT is torn down', async () => {
    const cap = captureIo({ cwd: REPO_ROOT });
    const running = runCli(['load', path.join(APP_DIR, 'interrupt.lua'), ...APP], cap.io);
    // wait (bounded) until load is under way, then interrupt
    for (let i = 0; i < 300 && !/load: constant arrival rate/.test(cap.stderr); i++) await new Promise((r) => setTimeout(r, 100));
    assert.match(cap.stderr, /load: constant arrival rate/);
    await new Promise((r) => setTimeout(r, 1500));
    cap.signal('SIGINT');
    const code = await running;
    const runId = /run (\S+): interrupted/.exec(cap.stdout)?.[1];
    try {
      assert.equal(code, 130, cap.stderr);
      const port = Number(/setup: api at http:\/\/127\.0\.0\.1:(\d+)/.exec(cap.stderr)?.[1]);
      assert.ok(port > 0, cap.stderr);
      assert.match(cap.stderr, /teardown ran with http:\/\/127\.0\.0\.1:\d+/);
      assert.match(cap.stderr, /tearing down/);
      assert.equal(await portOpen(port), false, 'the app still answers after the interrupted run');
      assert.ok(runId, cap.stdout);
      const record = JSON.parse(fs.readFileSync(path.join(APP_DIR, '.topas', 'runs', runId!, 'run.json'), 'utf8'));
      assert.equal(record.state, 'interrupted');
      assert.equal(record.exitCode, 130);
      assert.ok(record.load.snapshot.metrics.iterations.total.samples > 0);
    } finally {
      removeRun(runId);
    }
  });
});
