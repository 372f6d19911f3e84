/**
 * What one Lua coroutine yield costs in the wasm Lua topas runs (wasmoon):
 * the floor under `topas load`'s CPU per request, since every request a VU
 * makes suspends its coroutine once (vu-host.ts) and resumes it once.
 *
 * Lua 5.4 yields from C by longjmp, and this wasm build does longjmp the
 * emscripten way: a JS exception (`throw Infinity`) unwound through the wasm
 * frames to a JS try/catch trampoline. Measured beside a plain call, a
 * pcall (setjmp only) and a pcall that catches an error (one longjmp, no
 * yield), all in Lua loops so no JS<->Lua boundary is counted; and a bare JS
 * throw+catch at a few stack depths (what V8 charges for the throw itself).
 *
 *   node dist/bench/lua-yield-cost.js [--n 100000] [--rounds 3]
 */
import { luaFactory } from '../src/lua/lua-factory';
import { arg } from './proxy-peers';

function thrower(): never {
  throw Infinity;
}
function deep(n: number): number {
  return n === 0 ? thrower() : deep(n - 1) + 1;
}

function jsThrowNs(depth: number, n: number): number {
  let caught = 0;
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) {
    try {
      deep(depth);
    } catch {
      caught++;
    }
  }
  return Number(process.hrtime.bigint() - t0) / caught;
}

async function main(): Promise<void> {
  const n = Number(arg('n', '100000'));
  const rounds = Number(arg('rounds', '3'));
  const lua = await luaFactory().createEngine();
  const cases: Record<string, string> = {
    'call': `local f = function() return 1 end; local t = os.clock(); for i = 1, ${n} do f() end; return os.clock() - t`,
    'pcall (setjmp, no throw)': `local f = function() return 1 end; local t = os.clock(); for i = 1, ${n} do pcall(f) end; return os.clock() - t`,
    'new coroutine run to its return': `local f = function() return 1 end; local t = os.clock(); for i = 1, ${n} do coroutine.resume(coroutine.create(f)) end; return os.clock() - t`,
    'pcall(error) (one longjmp)': `local t = os.clock(); for i = 1, ${n} do pcall(error, 1) end; return os.clock() - t`,
    'resume + yield (one longjmp)': `local co = coroutine.wrap(function() while true do coroutine.yield() end end); local t = os.clock(); for i = 1, ${n} do co() end; return os.clock() - t`,
  };
  const results = new Map<string, number[]>();
  try {
    for (let r = 0; r < rounds; r++) {
      for (const [name, code] of Object.entries(cases)) {
        const secs = (await lua.doString(code)) as number;
        results.set(name, [...(results.get(name) ?? []), (secs * 1e6) / n]);
      }
      for (const depth of [0, 10, 30]) {
        const name = `JS throw Infinity + catch, ${depth} frames between`;
        results.set(name, [...(results.get(name) ?? []), jsThrowNs(depth, n) / 1000]);
      }
    }
  } finally {
    lua.global.close();
  }
  const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  process.stdout.write(`median of ${rounds} rounds of ${n}, µs each (CPU time; a shared machine: compare the rows, not runs)\n`);
  for (const [name, xs] of results) process.stdout.write(`${name.padEnd(48)} ${med(xs).toFixed(3).padStart(8)}\n`);
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
