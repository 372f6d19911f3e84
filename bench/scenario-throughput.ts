/**
 * Runs/second of the Lua scenario runtime on one thread: a trivial scenario,
 * each run in a fresh coroutine with its own _ENV. Target: >= 5000 runs/s.
 * Usage: node dist/bench/scenario-throughput.js [runs] [concurrency]
 */
import path from 'node:path';
import { LuaRuntime } from '../src/lua/engine';
import type { ScenarioTask } from '../src/run/scenario-types';

async function main(): Promise<void> {
  const runs = Number(process.argv[2] ?? 20_000);
  const concurrency = Number(process.argv[3] ?? 1);
  const baseDir = path.resolve(__dirname, '..', '..', 'fixtures', 'lua');
  const file = path.join(baseDir, 'trivial.lua');
  const rt = await LuaRuntime.create({ onLog: () => undefined, onEvent: () => undefined, rpc: async () => undefined });
  let seq = 0;
  const task = (): ScenarioTask => ({
    runId: `bench-${++seq}`,
    file,
    baseDir,
    name: 'trivial.lua',
    timeoutMs: 10_000,
    env: {},
    instance: { id: 'bench-1', role: 'default', index: 1, count: 1, params: {} },
    endpoints: {},
    memoryLimitBytes: 64 << 20,
    continueOnFailure: false,
  });
  const lane = async (n: number) => {
    for (let i = 0; i < n; i++) {
      const r = await rt.run(task());
      if (r.state !== 'passed') throw new Error(`bench run ${r.runId} ended ${r.state}: ${r.error?.message}`);
    }
  };
  await lane(500); // warm-up: JIT, file cache
  const t0 = performance.now();
  const per = Math.ceil(runs / concurrency);
  await Promise.all(Array.from({ length: concurrency }, () => lane(per)));
  const s = (performance.now() - t0) / 1000;
  const total = per * concurrency;
  const mem = rt.memoryUsedBytes();
  rt.close();
  process.stdout.write(`${total} runs in ${s.toFixed(2)}s: ${Math.round(total / s)} runs/s (1 thread, concurrency ${concurrency}, lua heap after ${Math.round(mem / 1024)} KB)\n`);
}

main().catch((err) => {
  process.stderr.write(`${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
