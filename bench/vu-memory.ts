/**
 * Memory per idle load VU: one VuHost (what one `topas load` worker thread
 * hosts) with N VUs made (the script's top level run, ctx set) and parked.
 *
 *   node dist/bench/vu-memory.js [--vus 1000,10000]
 *
 * Each N is measured in a child process of its own (--expose-gc): the host
 * and one VU are made first (engine, prelude, module code: what every worker
 * pays once), memory is read after full collections in both V8 and Lua, then
 * N more VUs are made and memory is read again. Per VU: the growth of the Lua
 * heap (wasm), of V8's heap + external memory (JS objects, closures, buffers)
 * and of the process RSS (all of it, the wasm memory included), divided by N.
 * Target (issue 20): at most 16 KB of RSS per idle VU at 10,000 VUs.
 *
 * A VU makes its JS modules on first use (src/lua/prelude.ts lazy_module), so
 * a parked VU holds none: each N is also measured with VUs whose script
 * touched its module at the top level ("in use"), what a VU costs once it ran.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const TARGET_BYTES = 16 * 1024;

// a typical load script: one module, one request per iteration; parked VUs never run it
const SCRIPT = `
local net = require("net")
local target = env("TARGET", "http://127.0.0.1:9/")
options = { executor = "constant-vus", vus = 10000, duration = "1m" }
--USE--
function iteration(ctx)
  local res = net.get(target)
  check("status 200", res.status == 200)
end
`;

interface Sample {
  vus: number;
  luaBytes: number;
  jsHeapBytes: number;
  externalBytes: number;
  rssBytes: number;
  makeMs: number;
}

type Mode = 'idle' | 'in use';

async function child(dir: string, vus: number, mode: Mode): Promise<void> {
  const { VuHost } = await import('../src/lua/vu-host');
  const file = path.join(dir, mode === 'idle' ? 'idle.lua' : 'in-use.lua');
  fs.writeFileSync(file, SCRIPT.replace('--USE--', mode === 'idle' ? '' : 'local _made_now = net.get'));
  const host = await VuHost.create({ file, baseDir: dir, env: {}, endpoints: {}, rpc: async () => undefined, log: () => undefined });
  const gc = (globalThis as { gc?: () => void }).gc!;
  const read = async () => {
    // a full Lua collection (the memory cap's own, private: VuHost.mem, src/lua/vu-memory-cap.ts)
    (host as unknown as { mem: { collect(): void } }).mem.collect();
    for (let i = 0; i < 3; i++) gc();
    await new Promise((r) => setTimeout(r, 100));
    gc();
    const m = process.memoryUsage();
    return { lua: host.heapBytes() ?? NaN, js: m.heapUsed, ext: m.external, rss: m.rss };
  };
  const list = [await host.createVu(0)];
  await host.setContext(list[0], undefined, 0);
  const m0 = await read();
  const t0 = performance.now();
  for (let i = 1; i <= vus; i++) {
    const vu = await host.createVu(i);
    const r = await host.setContext(vu, undefined, i);
    if (!r.ok) throw new Error(r.error);
    list.push(vu);
    if (process.env.VU_MEM_COLLECT_EVERY && i % Number(process.env.VU_MEM_COLLECT_EVERY) === 0) (host as unknown as { mem: { collect(): void } }).mem.collect();
  }
  const makeMs = performance.now() - t0;
  const m1 = await read();
  const sample: Sample = { vus, luaBytes: m1.lua - m0.lua, jsHeapBytes: m1.js - m0.js, externalBytes: m1.ext - m0.ext, rssBytes: m1.rss - m0.rss, makeMs };
  process.stdout.write(`${JSON.stringify(sample)}\n`);
  process.exit(0);
}

async function main(): Promise<void> {
  const c = process.argv.indexOf('--child');
  if (c >= 0) return child(process.argv[c + 1], Number(process.argv[c + 2]), process.argv[c + 3] as Mode);
  const i = process.argv.indexOf('--vus');
  const counts = (i >= 0 ? process.argv[i + 1] : '1000,10000').split(',').map(Number);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'topas-bench-vu-mem-'));
  const kb = (b: number) => `${(b / 1024).toFixed(1)} KB`;
  try {
    let last: Sample | undefined;
    process.stdout.write('VUs      modules   made in   Lua heap/VU   JS heap/VU   external (wasm memory)/VU   RSS/VU\n');
    for (const n of counts) {
      for (const mode of ['idle', 'in use'] as const) {
        const out = execFileSync(process.execPath, ['--expose-gc', __filename, '--child', dir, String(n), mode], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
        const s = JSON.parse(out.trim().split('\n').pop()!) as Sample;
        process.stdout.write(
          `${String(n).padEnd(8)} ${mode.padEnd(7)} ${`${(s.makeMs / 1000).toFixed(1)}s`.padStart(9)}   ${kb(s.luaBytes / n).padStart(11)}   ${kb(s.jsHeapBytes / n).padStart(10)}   ${kb(s.externalBytes / n).padStart(25)}   ${kb(s.rssBytes / n).padStart(6)}\n`,
        );
        if (mode === 'idle') last = s;
      }
    }
    if (last) {
      const per = last.rssBytes / last.vus;
      process.stdout.write(`target <= ${kb(TARGET_BYTES)} RSS per idle VU at ${last.vus} VUs: ${kb(per)} -> ${per <= TARGET_BYTES ? 'met' : 'NOT met'}\n`);
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((err) => {
  process.stderr.write(`${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
