import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { cli } from '../helpers/cli';

// A load VU whose iterations leak (a global table of big strings) is capped
// like a scenario is: its iteration fails with the cap in the message, the VU
// is replaced by a fresh one, the other VUs go on, and the run ends on time.

let cwd: string;

before(() => {
  cwd = fs.mkdtempSync(path.join(os.tmpdir(), 'topas-load-mem-'));
});

after(() => {
  fs.rmSync(cwd, { recursive: true, force: true });
});

const LEAKY = [
  'options = { vus = 2, duration = "2s" }',
  'leak = {}',
  // string.rep of 1 MiB takes ~50ms in wasm: a VU's init would cost more than the test
  'local KiB = string.rep("x", 1024); local parts = {}; for i = 1, 1024 do parts[i] = KiB end',
  'local MiB = table.concat(parts)',
  'function iteration(ctx)',
  '  if ctx.vu == 1 then',
  '    -- 4 MiB kept per iteration, without ever waiting',
  '    leak[#leak + 1] = MiB .. MiB .. MiB .. MiB .. ctx.iteration',
  '    check("leaker ran", true)',
  '  else',
  '    sleep(0.01)',
  '    check("bystander ran", true)',
  '  end',
  'end',
].join('\n');

test('a leaking load VU fails its iteration over the VU memory cap, is replaced, and the run ends on time', async () => {
  const file = path.join(cwd, 'leaky.lua');
  fs.writeFileSync(file, LEAKY);
  let peakRss = 0;
  const sampler = setInterval(() => (peakRss = Math.max(peakRss, process.memoryUsage.rss())), 20);
  const t0 = Date.now();
  let r;
  try {
    r = await cli(['load', file, '--workers', '1', '--json'], { cwd });
  } finally {
    clearInterval(sampler);
  }
  const elapsedMs = Date.now() - t0;
  const summary = JSON.parse(r.stdout);
  // iterations that fail are no threshold failure (as in k6): the summary shows them
  assert.equal(r.code, 0, r.stderr);
  assert.ok(elapsedMs < 2000 + 10_000, `a 2s test took ${elapsedMs}ms`);
  const capErrors = (summary.errors as Array<{ message: string; count: number }>).filter((e) => /VU memory over 64 MiB/.test(e.message));
  assert.equal(capErrors.length, 1, JSON.stringify(summary.errors));
  assert.ok(capErrors[0].count >= 2, 'the leaking VU was replaced and hit the cap again');
  assert.match(capErrors[0].message, /the VU replaced by a fresh one/);
  assert.ok(summary.metrics.iterations.values.count >= capErrors[0].count);
  const checks = summary.metrics.checks;
  assert.ok(checks, JSON.stringify(Object.keys(summary.metrics)));
  assert.match(r.stderr, /VU memory over 64 MiB/);
  // the bystander VU kept running: ~100 sleeps of 10ms in 2s
  assert.ok(Number(summary.metrics.iterations.values.count) - capErrors[0].count > 50, JSON.stringify(summary.metrics.iterations));
  // ~170 MiB with the cap; without, the leak grows as fast as the VU runs (540 MiB in 2s here, 2 GiB reported)
  assert.ok(peakRss < 400 * 1024 * 1024, `peak RSS ${Math.round(peakRss / 1048576)} MiB`);
});

test('many VUs leaking a little each: the worker\'s cap stops the VU holding the most, which makes way for a fresh one', async () => {
  const file = path.join(cwd, 'leaky-rate.lua');
  fs.writeFileSync(
    file,
    [
      'options = { rate = 50, duration = "2s" }',
      'leak = {}',
      // string.rep of 1 MiB takes ~50ms in wasm: a VU's init would cost more than the test
  'local KiB = string.rep("x", 1024); local parts = {}; for i = 1, 1024 do parts[i] = KiB end',
  'local MiB = table.concat(parts)',
      'local MiB8 = MiB .. MiB .. MiB .. MiB .. MiB .. MiB .. MiB .. MiB',
      'function iteration(ctx)',
      '  leak[#leak + 1] = MiB8 .. MiB8 .. ctx.iteration',
      'end',
    ].join('\n'),
  );
  let peakRss = 0;
  const sampler = setInterval(() => (peakRss = Math.max(peakRss, process.memoryUsage.rss())), 20);
  const t0 = Date.now();
  let r;
  try {
    r = await cli(['load', file, '--workers', '1', '--json'], { cwd });
  } finally {
    clearInterval(sampler);
  }
  const elapsedMs = Date.now() - t0;
  assert.equal(r.code, 0, r.stderr);
  assert.ok(elapsedMs < 2000 + 10_000, `a 2s test took ${elapsedMs}ms`);
  const summary = JSON.parse(r.stdout);
  // 16 MiB per iteration spread over up to 50 VUs: all together pass the worker's 1 GiB (those that ran
  // more iterations than the others, when the machine is slow, reach their own cap first)
  const errors = summary.errors as Array<{ message: string; count: number }>;
  const capErrors = errors.filter((e) => /^(worker memory over 1024 MiB|VU memory over 64 MiB)/.test(e.message));
  assert.ok(capErrors.length >= 1, JSON.stringify(errors));
  assert.equal(capErrors.length, errors.length, JSON.stringify(errors));
  // each VU's top level takes ~50 ms (1 MiB string.rep) and each iteration builds 16 MiB: more CPU than
  // the 2 s hold, so the run ends on time and the iterations whose VU was not made by then are dropped
  const ran = Number(summary.metrics.iterations.values.count);
  assert.ok(ran >= 10, JSON.stringify(summary.metrics.iterations));
  assert.equal(ran + Number(summary.metrics.dropped_iterations?.values.count ?? 0), 100, 'every iteration ran or was dropped');
  // ~1.2 GiB with the caps (the worker's heap stays near 1 GiB)
  assert.ok(peakRss < 1600 * 1024 * 1024, `peak RSS ${Math.round(peakRss / 1048576)} MiB`);
});
