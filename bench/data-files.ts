/**
 * Memory of a shared data file: one worker, 1,000 load VUs, one 50 MB CSV.
 *
 *   node dist/bench/data-files.js [--mb 50] [--vus 1000] [--iterations 20]
 *
 * The CSV is generated at bench time into a private temporary folder (removed
 * at the end, never committed). Each measurement runs in a child process of
 * its own, which hosts one VuHost (what one `topas load` worker thread
 * hosts): it makes the VUs, runs `--iterations` iterations on each, collects
 * garbage and reads process.memoryUsage(). Two runs, same VUs and script:
 * `baseline` never touches the file, `data` has every VU call
 * `data.csv(file, {header=true})` at its top level (k6 init code) and read
 * random rows in every iteration. The worker's cost of the file is the
 * difference (RSS, and V8 heap + external memory), printed against the file's
 * size; the target is at most 1.5x.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

interface Sample {
  mode: string;
  vus: number;
  rssBytes: number;
  heapUsedBytes: number;
  externalBytes: number;
  arrayBuffersBytes: number;
  setupMs: number;
  rowsRead: number;
}

function arg(name: string, def: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : def;
}

const SCRIPT = `
local users = MODE == "data" and data.csv("users.csv", { header = true }) or nil
local n = users and #users or 945558
local seen = 0
-- "rows": the same row tables, made in Lua without the file (the garbage any design makes per row read)
local function made(i)
  return { id = tostring(i), name = "user" .. i, email = "user" .. i .. "@example.com", role = "user", city = "Lisbon" }
end
function iteration(ctx)
  if MODE == "baseline" then return end
  for k = 1, 10 do
    local i = (ctx.iteration * 7919 + k * 104729 + ctx.vu) % n + 1
    local u = users and users[i] or made(i)
    if u.email:find("@", 1, true) then seen = seen + 1 end
  end
end
`;

async function child(mode: string, dir: string, vus: number, iterations: number): Promise<void> {
  const { VuHost } = await import('../src/lua/vu-host');
  const file = path.join(dir, `${mode}.lua`);
  fs.writeFileSync(file, `MODE = ${JSON.stringify(mode)}\n${SCRIPT}`);
  const host = await VuHost.create({
    file,
    baseDir: dir,
    env: {},
    endpoints: {},
    rpc: async () => undefined,
    log: (level, source, message) => process.stderr.write(`[${source}] ${level} ${message}\n`),
  });
  const t0 = Date.now();
  const list = [];
  for (let i = 1; i <= vus; i++) {
    const vu = await host.createVu(i);
    await host.setContext(vu, undefined, i);
    list.push(vu);
  }
  const setupMs = Date.now() - t0;
  let rowsRead = 0;
  for (let it = 0; it < iterations; it++) {
    await Promise.all(
      list.map(
        (vu) =>
          new Promise<void>((resolve, reject) =>
            host.runIteration(vu, it, (r) => {
              if (!r.ok) reject(new Error(r.error));
              else resolve();
            }),
          ),
      ),
    );
    if (mode !== 'baseline') rowsRead += 10 * list.length;
  }
  const gc = (globalThis as { gc?: () => void }).gc;
  for (let i = 0; i < 3; i++) gc?.();
  await new Promise((r) => setTimeout(r, 200));
  gc?.();
  const m = process.memoryUsage();
  const sample: Sample = { mode, vus, rssBytes: m.rss, heapUsedBytes: m.heapUsed, externalBytes: m.external, arrayBuffersBytes: m.arrayBuffers, setupMs, rowsRead };
  process.stdout.write(`${JSON.stringify(sample)}\n`);
  // the VUs stay alive until the sample is taken
  for (const vu of list) host.discardVu(vu);
}

function makeCsv(file: string, bytes: number): number {
  const fd = fs.openSync(file, 'w');
  const roles = ['admin', 'user', 'viewer', 'owner'];
  const cities = ['Berlin', 'Lisbon', 'Kyoto', 'Lima', '"Washington, D.C."'];
  let size = 0;
  let rows = 0;
  let chunk = 'id,name,email,role,city\n';
  while (size + chunk.length < bytes) {
    size += Buffer.byteLength(chunk);
    fs.writeSync(fd, chunk);
    chunk = '';
    for (let k = 0; k < 1000 && size + chunk.length < bytes; k++) {
      rows++;
      chunk += `${rows},user${rows},user${rows}@example.com,${roles[rows % 4]},${cities[rows % 5]}\n`;
    }
  }
  fs.closeSync(fd);
  return rows;
}

const mib = (b: number) => `${(b / (1024 * 1024)).toFixed(1)} MiB`;

async function main(): Promise<void> {
  const childMode = process.argv.indexOf('--child');
  if (childMode >= 0) {
    await child(process.argv[childMode + 1], process.argv[childMode + 2], arg('vus', 1000), arg('iterations', 20));
    return;
  }
  const mb = arg('mb', 50);
  const vus = arg('vus', 1000);
  const iterations = arg('iterations', 20);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'topas-bench-data-'));
  try {
    const csv = path.join(dir, 'users.csv');
    const rows = makeCsv(csv, mb * 1024 * 1024);
    const fileBytes = fs.statSync(csv).size;
    console.log(`data file: ${mib(fileBytes)} (${rows} rows), ${vus} VUs in one worker, ${iterations} iterations of 10 random rows each`);
    const samples: Record<string, Sample> = {};
    for (const mode of ['baseline', 'rows', 'data']) {
      const out = execFileSync(process.execPath, ['--expose-gc', __filename, '--child', mode, dir, '--vus', String(vus), '--iterations', String(iterations)], {
        encoding: 'utf8',
        maxBuffer: 16 * 1024 * 1024,
        stdio: ['ignore', 'pipe', 'inherit'],
      });
      samples[mode] = JSON.parse(out.trim().split('\n').pop()!) as Sample;
    }
    const d = samples.data;
    const cmp = (base: Sample, label: string) => {
      console.log(`against ${label}:`);
      const row = (what: string, f: (s: Sample) => number) => {
        const delta = f(d) - f(base);
        console.log(`  ${what.padEnd(20)} ${mib(f(base)).padStart(10)} -> ${mib(f(d)).padStart(10)}   cost ${mib(delta).padStart(9)}   ${(delta / fileBytes).toFixed(2)}x the file`);
      };
      row('RSS', (s) => s.rssBytes);
      row('V8 heap + external', (s) => s.heapUsedBytes + s.externalBytes);
      return d.rssBytes - base.rssBytes;
    };
    cmp(samples.baseline, 'idle VUs (no rows read at all)');
    const cost = cmp(samples.rows, 'VUs making the same row tables without the file (the per-read garbage any design has)');
    console.log(`VU setup: ${samples.baseline.setupMs} ms idle, ${d.setupMs} ms with data.csv (then ${d.rowsRead} rows read)`);
    console.log(`target: at most 1.5x the file per worker -> ${(cost / fileBytes).toFixed(2)}x (RSS, same work): ${cost <= 1.5 * fileBytes ? 'met' : 'NOT met'}`);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
