import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { REPO_ROOT } from '../helpers/cli';
import { LoadRunner, UNCLONEABLE_SETUP_VALUE, wallNowMs } from '../../src/load/load-runner';
import type { MetricsSnapshot } from '../../src/load/metrics';

/** One worker's LoadRunner in this thread: VU reuse, errors, custom metrics, closed and open models. */
async function runOnce(executor: unknown, extra: { preAllocatedVus?: number; maxVus?: number } = {}) {
  const logs: string[] = [];
  let resolveDone!: (m: { snapshot: MetricsSnapshot; errors: Array<{ message: string; count: number }> }) => void;
  const done = new Promise<{ snapshot: MetricsSnapshot; errors: Array<{ message: string; count: number }> }>((r) => (resolveDone = r));
  const runner = new LoadRunner(
    {
      file: path.join(REPO_ROOT, 'fixtures', 'load', 'no-app', 'vu-state.lua'),
      baseDir: REPO_ROOT,
      env: {},
      endpoints: {},
      worker: 0,
      workers: 1,
      executor,
      preAllocatedVus: extra.preAllocatedVus ?? 0,
      maxVus: extra.maxVus ?? 0,
      data: { n: 1 },
    },
    { log: (_l, _s, m) => logs.push(m), rpc: async () => undefined, metrics: () => undefined, done: (m) => resolveDone(m) },
  );
  try {
    await runner.prepare();
    runner.start(wallNowMs() + 10);
    return { ...(await done), logs };
  } finally {
    await runner.close();
  }
}

describe('VUs', () => {
  test('an open-model run: 40 iterations over 2 pre-allocated VUs reuse them; errors keep file:line', async () => {
    const r = await runOnce({ executor: 'constant-arrival-rate', rate: 40, timeUnitMs: 1000, durationMs: 1000, preAllocatedVus: 2, maxVus: 2 }, { preAllocatedVus: 2, maxVus: 2 });
    const m = r.snapshot.metrics;
    assert.equal(m.iterations.total.kind === 'counter' && m.iterations.total.samples, 40);
    // top-level code ran once per VU: every check passed
    const checks = m.checks.total;
    assert.ok(checks.kind === 'rate' && checks.fails === 0 && checks.passes === 80, JSON.stringify(checks));
    // the per-VU counter grew past 1: state survived between iterations
    const seen = m.iterations_seen_by_vu.total;
    assert.ok(seen.kind === 'trend' && seen.max >= 10, JSON.stringify(seen));
    const odd = m.odd_iteration.total;
    assert.ok(odd.kind === 'rate' && odd.passes === 20 && odd.fails === 20, JSON.stringify(odd));
    // iterations 9, 19, 29, 39 failed, with the script's location
    assert.deepEqual(r.errors, [{ message: 'fixtures/load/no-app/vu-state.lua:16: every tenth iteration fails', count: 4 }]);
    assert.equal(m.dropped_iterations.total.kind === 'counter' && m.dropped_iterations.total.samples, 0);
  });

  test('a closed-model run loops its VUs back to back', async () => {
    const r = await runOnce({ executor: 'constant-vus', vus: 3, durationMs: 300 });
    const it = r.snapshot.metrics.iterations.total;
    // pure-Lua iterations are fast: far more than one per VU
    assert.ok(it.kind === 'counter' && it.samples > 30, JSON.stringify(it));
    assert.equal(r.snapshot.metrics.checks.total.kind === 'rate' && r.snapshot.metrics.checks.total.fails, 0);
  });

  // setup() and teardown() run in a worker only on a cluster (kube-load); here the same runner in this thread
  const HOOKS = [
    'local metrics = require("metrics")',
    'local data_n = metrics.trend("data_n", false)',
    'function setup() if env("UNCLONEABLE") == "1" then return { f = function() end } end return { n = 7 } end',
    'function iteration(ctx) data_n:add(ctx.data and ctx.data.n or -1) end',
    'function teardown(data) if data.n ~= 7 then error("teardown got " .. tostring(data.n)) end end',
  ].join('\n');
  const hookRunner = (env: Record<string, string>, done: (m: { snapshot: MetricsSnapshot }) => void) =>
    new LoadRunner(
      {
        file: path.join(REPO_ROOT, 'hooks.lua'),
        source: HOOKS,
        baseDir: REPO_ROOT,
        env,
        endpoints: {},
        worker: 0,
        workers: 1,
        executor: { executor: 'constant-arrival-rate', rate: 20, timeUnitMs: 1000, durationMs: 500, preAllocatedVus: 1, maxVus: 2 },
        preAllocatedVus: 1,
        maxVus: 2,
        data: undefined,
      },
      { log: () => undefined, rpc: async () => undefined, metrics: () => undefined, done },
    );

  test("setup()'s value reaches the VUs made before it ran; teardown() gets it back", async () => {
    let resolveDone!: (m: { snapshot: MetricsSnapshot }) => void;
    const done = new Promise<{ snapshot: MetricsSnapshot }>((r) => (resolveDone = r));
    const runner = hookRunner({}, resolveDone);
    try {
      assert.equal(await runner.prepare(), 1);
      const setup = await runner.runSetup();
      assert.deepEqual(setup, { ok: true, value: { n: 7 } });
      await runner.setData(setup.ok && setup.value);
      runner.start(wallNowMs() + 10);
      const seen = (await done).snapshot.metrics.data_n.total;
      assert.ok(seen.kind === 'trend' && seen.count > 0 && seen.min === 7 && seen.max === 7, JSON.stringify(seen));
      assert.deepEqual(await runner.runTeardown({ n: 7 }), { ok: true, value: undefined });
      const wrong = await runner.runTeardown({ n: 8 });
      assert.ok(!wrong.ok && /teardown got 8/.test(wrong.error), JSON.stringify(wrong));
    } finally {
      await runner.close();
    }
  });

  test('a setup() value that cannot travel to other workers is an error that says so', async () => {
    const runner = hookRunner({ UNCLONEABLE: '1' }, () => undefined);
    try {
      await runner.prepare();
      assert.deepEqual(await runner.runSetup(), { ok: false, error: UNCLONEABLE_SETUP_VALUE });
    } finally {
      await runner.close();
    }
  });
});
