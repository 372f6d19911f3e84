/**
 * Peer throughput bench: how many req/s each load tool drives against one
 * fixed-response HTTP server, and how much client CPU each request costs.
 *
 *   scripts/install-peers.sh          # wrk, autocannon, k6 into .tools/
 *   npx tsc -p tsconfig.json && node dist/bench/load-throughput.js [--duration 10s] [--rounds 3] [--vus 64] [--workers N] [--tools wrk,autocannon,k6,undici,floor,client,topas]
 *
 * The server runs in a child process so it never shares the client's event
 * loop. Client CPU: for external tools, the CPU of a wrapper shell's waited-for
 * children (utime+stime of the tool, from /proc/<shell>/stat cutime+cstime);
 * for the in-process measurement, process.cpuUsage(). Both tools and server
 * share the machine's cores, so absolute numbers depend on the box; the
 * ratios are the point.
 */
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as net from 'node:net';
import Table from 'cli-table3';
import { Pool } from 'undici';
import { luaFactory } from '../src/lua/lua-factory';

interface Measurement {
  tool: string;
  requests: number;
  seconds: number;
  /** client CPU time, µs */
  cpuUs: number;
  note?: string;
}

const repo = path.resolve(__dirname, '..', '..');
/** what the issue measured for the bare undici loop on its machine, µs per request */
const UNDICI_REFERENCE_US = 16;
/** issue 20's machine: wrk's client CPU per request, and topas's target there */
const WRK_REFERENCE_US = 12.7;
const TARGET_US_AT_REFERENCE = 15;
const toolsBin = path.join(repo, '.tools', 'bin');

function arg(name: string, dflt: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] ? process.argv[i + 1] : dflt;
}

const SERVER_SRC = `
const http = require('node:http');
const body = Buffer.from(JSON.stringify({ ok: true, name: 'alice', n: 42 }));
const server = http.createServer((req, res) => {
  req.resume();
  res.writeHead(200, { 'content-type': 'application/json', 'content-length': body.length });
  res.end(body);
});
server.keepAliveTimeout = 60000;
server.listen(0, '127.0.0.1', () => process.stdout.write(String(server.address().port) + '\\n'));
process.on('SIGTERM', () => server.close(() => process.exit(0)));
`;

async function startServer(): Promise<{ url: string; stop: () => Promise<void> }> {
  const child = spawn(process.execPath, ['-e', SERVER_SRC], { stdio: ['ignore', 'pipe', 'inherit'] });
  const port = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('server did not start in 10s')), 10_000);
    child.stdout!.once('data', (d: Buffer) => {
      clearTimeout(timer);
      resolve(d.toString().trim());
    });
    child.once('exit', (code) => reject(new Error(`server exited (${code})`)));
  });
  return {
    url: `http://127.0.0.1:${port}/api/users/alice`,
    stop: () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null) return resolve();
        const kill = setTimeout(() => child.kill('SIGKILL'), 5000);
        child.once('exit', () => {
          clearTimeout(kill);
          resolve();
        });
        child.kill('SIGTERM');
      }),
  };
}

function which(tool: string): string | undefined {
  const local = path.join(toolsBin, tool);
  if (fs.existsSync(local)) return local;
  const r = spawnSync('sh', ['-c', `command -v ${tool}`], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : undefined;
}

const CLK_TCK = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim()) || 100;

/**
 * Run argv under `sh`, which prints its own /proc stat after the tool exits:
 * cutime+cstime then hold exactly the tool's CPU (and its threads').
 */
function runMeasured(argv: string[], timeoutMs: number): { stdout: string; cpuUs: number; wallMs: number } {
  const quoted = argv.map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' ');
  const t0 = process.hrtime.bigint();
  const r = spawnSync('sh', ['-c', `${quoted} 2>&1; echo "@@STAT $(cat /proc/$$/stat)"`], {
    encoding: 'utf8',
    timeout: timeoutMs,
    maxBuffer: 64 * 1024 * 1024,
    killSignal: 'SIGKILL',
  });
  const wallMs = Number(process.hrtime.bigint() - t0) / 1e6;
  if (r.error) throw r.error;
  const m = /@@STAT (.*)$/m.exec(r.stdout);
  if (!m) throw new Error(`no stat line; output:\n${r.stdout.slice(-2000)}`);
  // fields after "(comm)": state is field 3; cutime/cstime are fields 16/17
  const rest = m[1].slice(m[1].lastIndexOf(')') + 2).split(' ');
  const cutime = Number(rest[16 - 3]);
  const cstime = Number(rest[17 - 3]);
  return { stdout: r.stdout.slice(0, m.index), cpuUs: ((cutime + cstime) * 1e6) / CLK_TCK, wallMs };
}

function measureWrk(bin: string, url: string, durationMs: number, vus: number): Measurement {
  const secs = Math.max(1, Math.round(durationMs / 1000));
  const r = runMeasured([bin, '-t', '2', '-c', String(vus), '-d', `${secs}s`, url], durationMs + 30_000);
  const total = /(\d+) requests in ([\d.]+)(\w+)/.exec(r.stdout);
  if (!total) throw new Error(`cannot read wrk output:\n${r.stdout}`);
  const unit = total[3] === 'ms' ? 1e-3 : total[3] === 'm' ? 60 : 1;
  return { tool: 'wrk (2 threads)', requests: Number(total[1]), seconds: Number(total[2]) * unit, cpuUs: r.cpuUs };
}

function measureAutocannon(bin: string, url: string, durationMs: number, vus: number): Measurement {
  const secs = Math.max(1, Math.round(durationMs / 1000));
  const r = runMeasured([bin, '-c', String(vus), '-d', String(secs), '-j', url], durationMs + 30_000);
  const json = JSON.parse(r.stdout.slice(r.stdout.indexOf('{'), r.stdout.lastIndexOf('}') + 1));
  return { tool: 'autocannon', requests: json.requests.total, seconds: json.duration, cpuUs: r.cpuUs };
}

function measureK6(bin: string, url: string, durationMs: number, vus: number): Measurement {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'topas-bench-k6-'));
  try {
    const script = path.join(dir, 'script.js');
    const summary = path.join(dir, 'summary.json');
    fs.writeFileSync(script, `import http from 'k6/http';\nexport default function () { http.get(${JSON.stringify(url)}); }\n`);
    const secs = Math.max(1, Math.round(durationMs / 1000));
    const r = runMeasured([bin, 'run', '--quiet', '--no-color', '--no-usage-report', '--vus', String(vus), '--duration', `${secs}s`, '--summary-export', summary, script], durationMs + 60_000);
    const s = JSON.parse(fs.readFileSync(summary, 'utf8'));
    const count: number = s.metrics.http_reqs.count;
    const rate: number = s.metrics.http_reqs.rate;
    // the CPU is the whole k6 process, its startup (JS compile) included
    return { tool: 'k6', requests: count, seconds: count / rate, cpuUs: r.cpuUs };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------------------
// topas: a real `topas load` run (in this process, so the CPU figure is
// process.cpuUsage() of the main thread and its worker threads together),
// of fixtures/load/no-app/bench.lua: 64 constant VUs, one net.get per iteration.
// ---------------------------------------------------------------------------
async function measureTopas(url: string, durationMs: number, vus: number): Promise<Measurement> {
  const { runLoad } = await import('../src/load/load-service');
  let out = '';
  const io = {
    stdout: { write: (c: string) => ((out += c), true), isTTY: false },
    stderr: { write: (_c: string) => true, isTTY: false },
    env: { ...process.env, TARGET: url, VUS: String(vus), DURATION: `${durationMs / 1000}s` },
    cwd: repo,
    now: () => Date.now(),
    onSignal: () => () => undefined,
  };
  const workers = Number(arg('workers', '0')) || undefined;
  const cpu0 = process.cpuUsage();
  const outcome = await runLoad({ io, file: path.join(repo, 'fixtures', 'load', 'no-app', 'bench.lua'), backend: 'local', flags: {}, env: {}, json: true, workers });
  const cpu = process.cpuUsage(cpu0);
  const summary = outcome.summary;
  const requests = summary.metrics.http_reqs?.values.count ?? 0;
  const failed = summary.metrics.http_req_failed?.values.passes ?? 0;
  fs.rmSync(path.join(repo, '.topas', 'runs', outcome.runId), { recursive: true, force: true });
  return {
    tool: `topas load (${vus} VUs${workers ? `, ${workers} workers` : ''})`,
    requests,
    seconds: summary.durationMs / 1000,
    cpuUs: cpu.user + cpu.system,
    note: failed ? `${failed} failed` : undefined,
  };
}

/** What an in-process client's lanes share: the clock, the counts, when to stop. */
interface Lanes {
  /** time, the request cap and the failure cap all left */
  more(): boolean;
  ok(): void;
  failed(): void;
}

/**
 * `vus` lanes of one in-process client, each keeping one request in flight
 * until `durationMs` is up; CPU from process.cpuUsage() (every thread).
 */
async function measureInProcess(tool: string, durationMs: number, vus: number, lane: (l: Lanes) => Promise<void>, close?: () => Promise<void>): Promise<Measurement> {
  const maxRequests = 5_000_000;
  let requests = 0;
  let failures = 0;
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const deadline = t0 + durationMs;
  const lanes: Lanes = {
    more: () => performance.now() < deadline && requests < maxRequests && failures <= 1000,
    ok: () => void requests++,
    failed: () => void failures++,
  };
  await Promise.all(Array.from({ length: vus }, () => lane(lanes)));
  const seconds = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  await close?.();
  return { tool, requests, seconds, cpuUs: cpu.user + cpu.system, note: failures ? `${failures} failures` : undefined };
}

/**
 * The floor of any Node client: raw sockets, each writing one fixed GET and
 * reading the whole (fixed-length) response before the next: one write and
 * one read through libuv per request, no HTTP parsing, no metrics, no Lua.
 */
function measureNodeFloor(url: string, durationMs: number, vus: number): Promise<Measurement> {
  const u = new URL(url);
  const request = Buffer.from(`GET ${u.pathname} HTTP/1.1\r\nhost: ${u.host}\r\n\r\n`);
  // the server's responses are all the same length: learnt from the first
  let responseBytes = 0;
  return measureInProcess('node net floor', durationMs, vus, (lanes) => new Promise<void>((resolve) => {
    const socket = net.connect(Number(u.port), u.hostname);
    socket.setNoDelay(true);
    let got = 0;
    socket.on('connect', () => socket.write(request));
    socket.on('data', (chunk: Buffer) => {
      if (responseBytes === 0) {
        const text = chunk.toString('latin1');
        const length = /content-length: *(\d+)/i.exec(text);
        if (!length || !text.includes('\r\n\r\n')) return void socket.destroy(new Error('unexpected response'));
        responseBytes = text.indexOf('\r\n\r\n') + 4 + Number(length[1]);
      }
      got += chunk.length;
      while (got >= responseBytes) {
        got -= responseBytes;
        lanes.ok();
        if (lanes.more()) socket.write(request);
        else return void socket.end();
      }
    });
    socket.on('error', () => lanes.failed());
    socket.on('close', () => resolve());
  }));
}

/**
 * topas's own HTTP client (the one `net` uses under load), driven from JS with
 * `vus` requests in flight and no Lua: between the Node floor and `topas load`.
 */
async function measureRawClient(url: string, durationMs: number, vus: number): Promise<Measurement> {
  const { rawHttpClient } = await import('../src/lua/vu-raw-http');
  const client = rawHttpClient();
  const u = new URL(url);
  const signal = new AbortController().signal;
  return measureInProcess('topas http client (no Lua)', durationMs, vus, (lanes) => new Promise<void>((resolve) => {
    const next = (): void => {
      if (!lanes.more()) return resolve();
      const sent = client.send({ origin: u.origin, path: u.pathname, method: 'GET', headers: {}, signal, timeoutMs: 30_000 }, () => (lanes.ok(), next()), () => (lanes.failed(), next()));
      if (!sent) throw new Error('the raw client refused the request');
    };
    next();
  }));
}

/** What one resume+yield of a Lua coroutine costs in topas's wasm Lua, µs (see lua-yield-cost.ts): once per request a VU makes. */
async function measureLuaYieldUs(n = 200_000): Promise<number> {
  const lua = await luaFactory().createEngine();
  try {
    const code = `local co = coroutine.wrap(function() while true do coroutine.yield() end end); local t = os.clock(); for i = 1, ${n} do co() end; return os.clock() - t`;
    return (((await lua.doString(code)) as number) * 1e6) / n;
  } finally {
    lua.global.close();
  }
}

/** A bare undici loop with `vus` requests in flight, in this process. */
function measureUndici(url: string, durationMs: number, vus: number): Promise<Measurement> {
  const u = new URL(url);
  const pool = new Pool(u.origin, { connections: vus, pipelining: 1 });
  return measureInProcess('undici baseline', durationMs, vus, async (lanes) => {
    while (lanes.more()) {
      try {
        const res = await pool.request({ path: u.pathname, method: 'GET' });
        await res.body.text();
        lanes.ok();
      } catch {
        lanes.failed();
      }
    }
  }, () => pool.close());
}

async function main(): Promise<void> {
  const durationMs = Number(arg('duration', '10s').replace(/s$/, '')) * 1000;
  const vus = Number(arg('vus', '64'));
  const rounds = Math.max(1, Number(arg('rounds', '3')));
  const server = await startServer();
  const runs = new Map<string, Measurement[]>();
  const skipped = new Set<string>();
  const yieldUs: number[] = [];
  try {
    const peers: Array<[string, (bin: string) => Measurement]> = [
      ['wrk', (b) => measureWrk(b, server.url, durationMs, vus)],
      ['autocannon', (b) => measureAutocannon(b, server.url, durationMs, vus)],
      ['k6', (b) => measureK6(b, server.url, durationMs, vus)],
    ];
    // --tools k6,topas: measure only these (default: all)
    const only = arg('tools', '').split(',').filter(Boolean);
    const wanted = (name: string) => only.length === 0 || only.includes(name);
    const add = (m: Measurement) => (runs.get(m.tool) ?? runs.set(m.tool, []).get(m.tool)!).push(m);
    // the machine is shared: tools take turns, round after round, and each is summarized by its median round
    for (let round = 1; round <= rounds; round++) {
      for (const [name, fn] of peers) {
        if (!wanted(name)) continue;
        const bin = which(name);
        if (!bin) {
          skipped.add(`${name} (not installed: scripts/install-peers.sh)`);
          continue;
        }
        try {
          process.stderr.write(`round ${round}: ${name}...\n`);
          add(fn(bin));
        } catch (e) {
          skipped.add(`${name} (${(e as Error).message.split('\n')[0]})`);
        }
      }
      if (wanted('undici')) {
        process.stderr.write(`round ${round}: undici baseline...\n`);
        add(await measureUndici(server.url, durationMs, vus));
      }
      if (wanted('floor')) {
        process.stderr.write(`round ${round}: node net floor...\n`);
        add(await measureNodeFloor(server.url, durationMs, vus));
        yieldUs.push(await measureLuaYieldUs());
      }
      if (wanted('client')) {
        process.stderr.write(`round ${round}: topas http client (no Lua)...\n`);
        add(await measureRawClient(server.url, durationMs, vus));
      }
      if (wanted('topas')) {
        process.stderr.write(`round ${round}: topas load...\n`);
        try {
          add(await measureTopas(server.url, durationMs, vus));
        } catch (e) {
          skipped.add(`topas (${(e as Error).message.split('\n')[0]})`);
        }
      }
    }
  } finally {
    await server.stop();
  }

  const rpsOf = (r: Measurement | undefined) => (r ? r.requests / r.seconds : NaN);
  const cpuOf = (r: Measurement | undefined) => (r ? r.cpuUs / r.requests : NaN);
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  // per tool: median req/s and median CPU per request over the rounds
  const results = [...runs.entries()].map(([tool, ms]) => ({
    tool,
    requests: median(ms.map((m) => m.requests)),
    rps: median(ms.map(rpsOf)),
    cpu: median(ms.map(cpuOf)),
    note: ms.map((m) => m.note).filter(Boolean).join('; '),
  }));
  const ref = results.find((r) => r.tool.startsWith('undici'));
  const wrk = results.find((r) => r.tool.startsWith('wrk'));
  const table = new Table({
    head: ['tool', 'requests', 'req/s', 'client CPU µs/req', 'req/s vs wrk', 'req/s vs undici', 'CPU/req vs undici'],
    style: { head: [], border: [] },
  });
  for (const r of results) {
    table.push([r.tool + (r.note ? ` (${r.note})` : ''), r.requests, r.rps.toFixed(0), r.cpu.toFixed(1), `${(r.rps / (wrk?.rps ?? NaN)).toFixed(2)}x`, `${(r.rps / (ref?.rps ?? NaN)).toFixed(2)}x`, `${(r.cpu / (ref?.cpu ?? NaN)).toFixed(2)}x`]);
  }
  process.stdout.write(`${vus} connections/VUs, ${durationMs / 1000}s per run, median of ${rounds} interleaved rounds, ${os.cpus().length} cores, node ${process.version}\n`);
  process.stdout.write(table.toString() + '\n');
  const topas = results.find((r) => r.tool.startsWith('topas load'));
  const k6 = results.find((r) => r.tool === 'k6');
  if (topas) {
    const verdict = (ok: boolean) => (ok ? 'met' : 'MISSED');
    // the issue's figures were taken with a bare undici loop at ~16 µs per request; CPU time
    // per request moves with how busy the shared machine is, so also scale by this run's floor
    const scaled = ref ? (topas.cpu / ref.cpu) * UNDICI_REFERENCE_US : NaN;
    process.stdout.write(
      `targets: topas >= 60% of wrk req/s: ${wrk ? `${verdict(topas.rps >= 0.6 * wrk.rps)} (${((topas.rps / wrk.rps) * 100).toFixed(0)}%)` : 'no wrk'}; ` +
        `ahead of k6: ${k6 ? `${verdict(topas.rps > k6.rps)} (${(topas.rps / k6.rps).toFixed(2)}x)` : 'no k6'}; ` +
        `<= 25 µs CPU/req: ${verdict(topas.cpu <= 25)} as measured (${topas.cpu.toFixed(1)} µs), ` +
        `${ref ? `${verdict(scaled <= 25)} at the issue's machine speed (${scaled.toFixed(1)} µs = ${(topas.cpu / ref.cpu).toFixed(2)}x this run's undici floor of ${ref.cpu.toFixed(1)} µs, which measured ${UNDICI_REFERENCE_US} µs there)` : 'no undici floor'}\n`,
    );
  }
  const floor = results.find((r) => r.tool === 'node net floor');
  if (topas && wrk) {
    // issue 20: at least wrk's req/s, at <= 15 µs where wrk took 12.7, i.e. <= 1.18x wrk's CPU per request
    const verdict = (ok: boolean) => (ok ? 'met' : 'MISSED');
    const bound = TARGET_US_AT_REFERENCE / WRK_REFERENCE_US;
    const scaled = (topas.cpu / wrk.cpu) * WRK_REFERENCE_US;
    process.stdout.write(
      `issue 20 targets: >= 1.0x wrk req/s: ${verdict(topas.rps >= wrk.rps)} (${(topas.rps / wrk.rps).toFixed(2)}x); ` +
        `<= ${TARGET_US_AT_REFERENCE} µs CPU/req where wrk takes ${WRK_REFERENCE_US} (<= ${bound.toFixed(2)}x wrk's): ${verdict(scaled <= TARGET_US_AT_REFERENCE)} (${(topas.cpu / wrk.cpu).toFixed(2)}x wrk = ${scaled.toFixed(1)} µs there)\n`,
    );
    if (floor && yieldUs.length) {
      // the limit: what a VU cannot do without, per request, on Node with this Lua
      const y = median(yieldUs);
      const least = floor.cpu + y;
      process.stdout.write(
        `limit: Node's floor ${floor.cpu.toFixed(1)} µs/req (${(floor.cpu / wrk.cpu).toFixed(2)}x wrk, ${(floor.rps / wrk.rps).toFixed(2)}x its req/s) ` +
          `+ one Lua resume+yield ${y.toFixed(1)} µs = ${least.toFixed(1)} µs = ${(least / wrk.cpu).toFixed(2)}x wrk ` +
          `(${((least / wrk.cpu) * WRK_REFERENCE_US).toFixed(1)} µs there): the CPU target is ${least / wrk.cpu > bound ? 'below' : 'above'} what any VU on Node can reach; ` +
          `topas spends ${(topas.cpu - least).toFixed(1)} µs/req over that (HTTP parsing, metrics, the Lua VM, the VU host)\n`,
      );
      // the server keeps one of the 2 cores: wrk's rate leaves the VUs' thread one core's worth of CPU per second
      const budget = 1e6 / wrk.rps;
      const client = results.find((r) => r.tool.startsWith('topas http client'));
      process.stdout.write(
        `req/s: wrk's ${wrk.rps.toFixed(0)}/s on one thread is <= ${budget.toFixed(1)} µs/req; floor + yield leave ${(budget - least).toFixed(1)} µs for HTTP parsing, metrics, ` +
          `the Lua VM and the VU host${client ? ` (topas's HTTP client alone takes ${(client.cpu - floor.cpu).toFixed(1)} of it)` : ''}\n`,
      );
    }
  }
  if (skipped.size) process.stdout.write(`skipped: ${[...skipped].join('; ')}\n`);
}

main().catch((e) => {
  process.stderr.write(`${(e as Error).stack}\n`);
  process.exitCode = 1;
});
