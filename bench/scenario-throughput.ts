/**
 * Scenario throughput and footprint of the Lua runtime.
 *
 *   node dist/bench/scenario-throughput.js [--runs N] [--concurrency C] [--workers W] [--idle I]
 *
 * - one thread (default): a trivial scenario, each run a fresh coroutine with
 *   its own _ENV, driven in-thread: runs/s (target >= 5,000).
 * - --workers W: the same through the worker pool that `topas run` uses
 *   (W worker threads, C runs in flight): runs/s (target >= 8,000 on 2 workers).
 * - idle footprint: I scenarios parked in `sleep` at once on one engine; Lua
 *   heap and process memory per idle instance (target <= 64 KB).
 *
 * Beside runs/s, the CPU time per run (process.cpuUsage: every thread of the
 * process, the pool's workers included): on a shared machine runs/s follow
 * the neighbours' load, CPU per run much less. `--rounds R` repeats each
 * measurement and prints the median.
 */
import path from 'node:path';
import { LuaRuntime } from '../src/lua/engine';
import { ScenarioPool } from '../src/run/scenario-pool';
import type { ScenarioTask } from '../src/run/scenario-types';

const args = process.argv.slice(2);
function flag(name: string, def: number): number {
  const i = args.indexOf(`--${name}`);
  if (i >= 0) return Number(args[i + 1]);
  const positional = args.filter((a) => !a.startsWith('--') && !args[args.indexOf(a) - 1]?.startsWith('--'));
  if (name === 'runs' && positional[0]) return Number(positional[0]);
  if (name === 'concurrency' && positional[1]) return Number(positional[1]);
  return def;
}

const baseDir = path.resolve(__dirname, '..', '..', 'fixtures', 'lua');
let seq = 0;
function task(file: string, timeoutMs = 60_000): ScenarioTask {
  return {
    runId: `bench-${++seq}`,
    file: path.join(baseDir, file),
    baseDir,
    name: file,
    timeoutMs,
    env: {},
    instance: { id: `bench-${seq}`, role: 'default', index: 1, count: 1, params: {} },
    endpoints: {},
    memoryLimitBytes: 512 << 20,
    continueOnFailure: false,
  };
}

interface Rate {
  runsPerS: number;
  cpuUsPerRun: number;
}

function cpuNow(): number {
  const c = process.cpuUsage();
  return c.user + c.system;
}

async function oneThread(runs: number, concurrency: number): Promise<Rate> {
  const rt = await LuaRuntime.create({ onLog: () => undefined, onEvent: () => undefined, rpc: async () => undefined });
  const lane = async (n: number) => {
    for (let i = 0; i < n; i++) {
      const r = await rt.run(task('trivial.lua'));
      if (r.state !== 'passed') throw new Error(`bench run ${r.runId} ended ${r.state}: ${r.error?.message}`);
    }
  };
  await lane(500); // warm-up: JIT, file cache
  const t0 = performance.now();
  const c0 = cpuNow();
  const per = Math.ceil(runs / concurrency);
  await Promise.all(Array.from({ length: concurrency }, () => lane(per)));
  const s = (performance.now() - t0) / 1000;
  const cpu = cpuNow() - c0;
  rt.close();
  return { runsPerS: (per * concurrency) / s, cpuUsPerRun: cpu / (per * concurrency) };
}

async function pooled(runs: number, concurrency: number, workers: number): Promise<Rate> {
  const pool = new ScenarioPool({ workers, rpc: async () => undefined, onLog: () => undefined, onEvent: () => undefined });
  try {
    let next = 0;
    const lane = async (n: number) => {
      while (next < n) {
        next++;
        const r = await pool.run(task('trivial.lua'));
        if (r.state !== 'passed') throw new Error(`bench run ${r.runId} ended ${r.state}: ${r.error?.message}`);
      }
    };
    next = 0;
    await Promise.all(Array.from({ length: concurrency }, () => lane(1000))); // warm-up every worker
    next = 0;
    const t0 = performance.now();
    const c0 = cpuNow();
    await Promise.all(Array.from({ length: concurrency }, () => lane(runs)));
    return { runsPerS: runs / ((performance.now() - t0) / 1000), cpuUsPerRun: (cpuNow() - c0) / runs };
  } finally {
    await pool.close();
  }
}

async function idleFootprint(instances: number): Promise<{ luaPerInstance: number; rssPerInstance: number }> {
  const rt = await LuaRuntime.create({ onLog: () => undefined, onEvent: () => undefined, rpc: async () => undefined });
  // warm the engine (module shims, caches) so only per-instance cost is counted
  await rt.run(task('trivial.lua'));
  global.gc?.();
  const lua0 = rt.memoryUsedBytes();
  const rss0 = process.memoryUsage().rss;
  const running = Array.from({ length: instances }, () => rt.run(task('idle.lua')));
  const deadline = Date.now() + 30_000;
  while (rt.activeRuns < instances && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  await new Promise((r) => setTimeout(r, 200));
  global.gc?.();
  const lua1 = rt.memoryUsedBytes();
  const rss1 = process.memoryUsage().rss;
  rt.cancelAll('interrupt');
  await Promise.all(running);
  rt.close();
  return { luaPerInstance: (lua1 - lua0) / instances, rssPerInstance: (rss1 - rss0) / instances };
}

async function main(): Promise<void> {
  const runs = flag('runs', 10_000);
  const concurrency = flag('concurrency', 16);
  const workers = flag('workers', 0);
  const idle = flag('idle', 1000);
  const rounds = Math.max(1, flag('rounds', 1));
  const kb = (b: number) => `${(b / 1024).toFixed(1)} KB`;
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  const medianRate = async (measure: () => Promise<Rate>): Promise<Rate> => {
    const all: Rate[] = [];
    for (let r = 0; r < rounds; r++) all.push(await measure());
    return { runsPerS: median(all.map((x) => x.runsPerS)), cpuUsPerRun: median(all.map((x) => x.cpuUsPerRun)) };
  };
  const cpu = (r: Rate) => `${r.cpuUsPerRun.toFixed(1)} µs CPU per run`;
  const single = await medianRate(() => oneThread(runs, 1));
  process.stdout.write(`one thread, in-thread driver:   ${Math.round(single.runsPerS)} runs/s, ${cpu(single)} (target >= 5000)\n`);
  if (workers > 0) {
    const multi = await medianRate(() => pooled(runs, concurrency, workers));
    process.stdout.write(
      `worker pool, ${workers} workers, ${concurrency} in flight: ${Math.round(multi.runsPerS)} runs/s over ${runs} runs, ${cpu(multi)} (all threads; ${Math.round((workers * 1e6) / multi.cpuUsPerRun)} runs/s on ${workers} free cores) (target >= 20000 on 2 workers)\n`,
    );
  }
  const fp = await idleFootprint(idle);
  process.stdout.write(`${idle} idle instances on one engine: Lua heap ${kb(fp.luaPerInstance)} per instance, process RSS ${kb(fp.rssPerInstance)} per instance (target <= 64 KB)\n`);
}

main().catch((err) => {
  process.stderr.write(`${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
