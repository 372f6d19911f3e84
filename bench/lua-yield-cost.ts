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
 *   node dist/bench/lua-yield-cost.js [--n 100000] [--rounds 3] [--wasmoon DIR[,DIR]]
 *
 * --wasmoon adds other builds of wasmoon's Lua (a copy of the package, as
 * bench/build-lua-wasm-eh.sh makes one with native wasm exceptions), measured
 * in the same rounds beside the one topas ships.
 */
import * as path from 'node:path';
import { luaFactory } from '../src/lua/lua-factory';
import { arg } from './proxy-peers';

interface Engine {
  doString(code: string): Promise<unknown>;
  global: { close(): void };
}

/** a wasmoon package copy outside node_modules: its LuaFactory, loaded by path */
async function engineFrom(dir: string): Promise<Engine> {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const mod = require(path.resolve(dir, 'dist', 'index.js')) as { LuaFactory: new () => { createEngine(): Promise<Engine> } };
  return new mod.LuaFactory().createEngine();
}

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
  const builds: Array<[string, Engine]> = [['wasmoon (npm, topas)', await luaFactory().createEngine()]];
  for (const dir of arg('wasmoon', '').split(',').filter(Boolean)) builds.push([path.basename(dir), await engineFrom(dir)]);
  const cases: Record<string, string> = {
    'call': `local f = function() return 1 end; local t = os.clock(); for i = 1, ${n} do f() end; return os.clock() - t`,
    'pcall (setjmp, no throw)': `local f = function() return 1 end; local t = os.clock(); for i = 1, ${n} do pcall(f) end; return os.clock() - t`,
    'new coroutine run to its return': `local f = function() return 1 end; local t = os.clock(); for i = 1, ${n} do coroutine.resume(coroutine.create(f)) end; return os.clock() - t`,
    'pcall(error) (one longjmp)': `local t = os.clock(); for i = 1, ${n} do pcall(error, 1) end; return os.clock() - t`,
    'resume + yield (one longjmp)': `local co = coroutine.wrap(function() while true do coroutine.yield() end end); local t = os.clock(); for i = 1, ${n} do co() end; return os.clock() - t`,
  };
  // case -> build -> µs per round
  const results = new Map<string, Map<string, number[]>>();
  const add = (row: string, col: string, us: number) => {
    const byBuild = results.get(row) ?? results.set(row, new Map()).get(row)!;
    byBuild.set(col, [...(byBuild.get(col) ?? []), us]);
  };
  try {
    for (let r = 0; r < rounds; r++) {
      for (const [name, code] of Object.entries(cases)) {
        for (const [build, lua] of builds) add(name, build, (((await lua.doString(code)) as number) * 1e6) / n);
      }
      for (const depth of [0, 10, 30]) add(`JS throw Infinity + catch, ${depth} frames between`, builds[0][0], jsThrowNs(depth, n) / 1000);
    }
  } finally {
    for (const [, lua] of builds) lua.global.close();
  }
  const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  process.stdout.write(`median of ${rounds} rounds of ${n}, µs each (CPU time; a shared machine: compare the rows, not runs)\n`);
  process.stdout.write(`${''.padEnd(48)} ${builds.map(([b]) => b.padStart(22)).join(' ')}\n`);
  for (const [name, byBuild] of results) {
    const cells = builds.map(([b]) => {
      const xs = byBuild.get(b);
      return (xs ? med(xs).toFixed(3) : '').padStart(22);
    });
    process.stdout.write(`${name.padEnd(48)} ${cells.join(' ')}\n`);
  }
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
