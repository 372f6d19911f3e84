import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { cli, type CliRun } from '../helpers/cli';

// A load test at the largest rate and VU count validation allows ends on
// time (duration + gracefulStop at most; these iterations end at once, so
// duration + start-up), counts the iterations it could not start as
// dropped_iterations (k6's meaning) and keeps memory bounded. Before: 38-101 s
// and ~1.4 GiB for a 1 s test (100,000 VUs made before the start, the pool
// grown without bound while it ran). Bounds are generous: the CPU is shared.
// A load worker thread that dies mid-run costs its share of the load, not the
// run: the others finish, its last reports are kept, the run says so and exits 1.

let cwd: string;
const START_SLACK_MS = 15_000;
const RSS_BOUND = 700 * 1024 * 1024;
/**
 * A pool of VUs the script asked for is made as far as time allows, so how
 * many depends on the machine's speed: what is bounded is what each costs
 * (~10 KiB of Lua heap and ~1 KiB of JS for an empty script) and the total
 * (the pool stops growing at half the worker's 1 GiB Lua heap cap).
 */
const RSS_PER_VU = 32 * 1024;
const RSS_BOUND_BIG_POOL = 1536 * 1024 * 1024;

before(() => {
  cwd = fs.mkdtempSync(path.join(os.tmpdir(), 'topas-load-extreme-'));
});

after(() => {
  fs.rmSync(cwd, { recursive: true, force: true });
});

async function measured(argv: string[], env?: NodeJS.ProcessEnv): Promise<CliRun & { peakRss: number; startRss: number }> {
  const startRss = process.memoryUsage.rss();
  let peakRss = startRss;
  const sampler = setInterval(() => (peakRss = Math.max(peakRss, process.memoryUsage.rss())), 20);
  try {
    const r = await cli(argv, { cwd, env });
    return { ...r, peakRss, startRss };
  } finally {
    clearInterval(sampler);
  }
}

function count(summary: { metrics: Record<string, { values: Record<string, number> }> }, metric: string): number {
  return Number(summary.metrics[metric]?.values.count ?? 0);
}

const MiB = (n: number) => `${Math.round(n / 1048576)} MiB`;

function assertPoolMemory(r: { peakRss: number; startRss: number }, summary: { metrics: Record<string, { values: Record<string, number> }> }): void {
  const vus = Number(summary.metrics.vus_max?.values.max ?? 0);
  assert.ok(vus > 0, 'vus_max');
  const grew = r.peakRss - r.startRss;
  assert.ok(grew < 300 * 1048576 + vus * RSS_PER_VU, `RSS grew ${MiB(grew)} for ${vus} VUs`);
  assert.ok(r.peakRss < RSS_BOUND_BIG_POOL, `peak RSS ${MiB(r.peakRss)}`);
}

test('1,000,000 iterations/s for 1s of an empty iteration: ends on time, drops what it cannot start, memory bounded', async () => {
  fs.writeFileSync(path.join(cwd, 'noop.lua'), 'function iteration(ctx) end\n');
  const r = await measured(['load', 'noop.lua', '--rate', '1000000/s', '--duration', '1s', '--json']);
  assert.equal(r.code, 0, r.stderr);
  assert.ok(r.elapsedMs < 1000 + START_SLACK_MS, `a 1s test took ${r.elapsedMs}ms`);
  const summary = JSON.parse(r.stdout);
  const ran = count(summary, 'iterations');
  const dropped = count(summary, 'dropped_iterations');
  assert.ok(ran > 0, 'iterations ran');
  assert.ok(dropped > 0, 'iterations that could not start are dropped_iterations');
  assert.equal(ran + dropped, 1_000_000, 'every scheduled iteration ran or was dropped');
  assert.ok(r.peakRss < RSS_BOUND, `peak RSS ${MiB(r.peakRss)}`);
  assert.doesNotMatch(r.stderr, /\n\s+at /, 'no JS stack');
});

test('100,000 pre-allocated VUs at 1,000,000/s: the pool is made in part before the start and the run still ends on time', async () => {
  fs.writeFileSync(path.join(cwd, 'pool.lua'), 'options = { pre_allocated_vus = 100000, max_vus = 100000 }\nfunction iteration(ctx) end\n');
  const r = await measured(['load', 'pool.lua', '--rate', '1000000/s', '--duration', '1s', '--json']);
  assert.equal(r.code, 0, r.stderr);
  assert.ok(r.elapsedMs < 1000 + START_SLACK_MS, `a 1s test took ${r.elapsedMs}ms`);
  const summary = JSON.parse(r.stdout);
  assert.ok(count(summary, 'iterations') > 0);
  assert.ok(count(summary, 'dropped_iterations') > 0);
  assert.equal(count(summary, 'iterations') + count(summary, 'dropped_iterations'), 1_000_000);
  assertPoolMemory(r, summary);
});

test('100,000 constant VUs for 1s: ends on time, says how many VUs it could make, memory bounded', async () => {
  fs.writeFileSync(path.join(cwd, 'vus.lua'), 'options = { vus = 100000, duration = "1s" }\nfunction iteration(ctx) end\n');
  const r = await measured(['load', 'vus.lua', '--json']);
  assert.equal(r.code, 0, r.stderr);
  assert.ok(r.elapsedMs < 1000 + START_SLACK_MS, `a 1s test took ${r.elapsedMs}ms`);
  const summary = JSON.parse(r.stdout);
  assert.ok(count(summary, 'iterations') > 0);
  assert.match(r.stderr, /\d+ of 100000 VUs were made by the end of the test/);
  assertPoolMemory(r, summary);
});

test('a load worker thread that dies mid-run: the others finish, its reports are kept, the run is partial and exits 0', async () => {
  fs.writeFileSync(path.join(cwd, 'steady.lua'), 'options = { rate = 50, duration = "3s" }\nfunction iteration(ctx) sleep(0.005) end\n');
  // worker 1 of 2 throws an uncaught error 2.5s into the load, after it reported seconds 1 and 2
  const r = await measured(['load', 'steady.lua', '--workers', '2', '--json'], { ...process.env, TOPAS_TEST_CRASH_LOAD_WORKER: '1:2500' });
  assert.equal(r.code, 0, r.stderr);
  assert.ok(r.elapsedMs < 3000 + START_SLACK_MS, `a 3s test took ${r.elapsedMs}ms`);
  assert.doesNotMatch(r.stderr, /\n\s+at /, 'no JS stack');
  assert.match(r.stderr, /load worker 1 of 2 \(thread \d+\) died 2\.\d+s into the load \(crashed on purpose/);
  const summary = JSON.parse(r.stdout);
  assert.equal(summary.state, 'partial');
  assert.equal(summary.exitCode, 0);
  assert.equal(summary.lostWorkers.length, 1);
  assert.match(summary.lostWorkers[0], /its metrics up to \d.*its share, 1\/2 of the rate \(iterations k with k % 2 = 1, ~25\/s\), is missing from 2\.\d+s to the end/);
  assert.equal(summary.lost[0].worker, 1);
  assert.ok(summary.lost[0].atMs >= 2500 && summary.lost[0].keptUntilMs >= 2000 && summary.lost[0].keptUntilMs <= summary.lost[0].atMs, JSON.stringify(summary.lost));
  // worker 0 runs exactly 75 of the 150 iterations; more means the dead worker's reports were kept
  const ran = count(summary, 'iterations');
  assert.ok(ran > 75 && ran < 150, `iterations ${ran}`);
  assert.ok(summary.errors.some((e: { message: string }) => /load worker 1 died/.test(e.message)), JSON.stringify(summary.errors));
  const record = JSON.parse(fs.readFileSync(path.join(cwd, '.topas', 'runs', summary.runId, 'run.json'), 'utf8'));
  assert.equal(record.state, 'partial');
  assert.equal(record.exitCode, 0);
  assert.deepEqual(record.load.lostWorkers, summary.lostWorkers);
  assert.deepEqual(record.load.lost, summary.lost);
  // the reports say it too
  const report = await measured(['report', summary.runId, '--format', 'table']);
  assert.match(report.stdout, /partial/i, report.stdout + report.stderr);
});

test('--require-all-workers: the same lost worker fails the run with exit 1', async () => {
  fs.writeFileSync(path.join(cwd, 'steady.lua'), 'options = { rate = 50, duration = "2s" }\nfunction iteration(ctx) sleep(0.005) end\n');
  const r = await measured(['load', 'steady.lua', '--workers', '2', '--require-all-workers', '--json'], { ...process.env, TOPAS_TEST_CRASH_LOAD_WORKER: '1:1500' });
  assert.equal(r.code, 1, r.stderr);
  const summary = JSON.parse(r.stdout);
  assert.equal(summary.state, 'error');
  assert.equal(summary.exitCode, 1);
  assert.equal(summary.lost.length, 1);
});
