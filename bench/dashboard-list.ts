/**
 * `topas dashboard` listing speed: 1,000 synthesized stored runs (700 scenario
 * runs of 4 scenarios, 300 load runs with an 80 kB record: 300 seconds of
 * series, per-endpoint metrics and a histogram blob), then the history page
 * (first page of 50, per-test trends over all 1,000) requested over HTTP from
 * the real dashboard server. The dashboard builds its index of run summaries
 * when it starts (every run.json read once; printed), keeps it in
 * .topas/dashboard-index.json for the next start (printed), and then answers
 * from it with only a stat per run: the first request, warm requests, a
 * filtered request, a later page and the JSON list. Target (issue 17): at most 200 ms to list 1,000 stored runs.
 *
 *   node dist/bench/dashboard-list.js [--runs 1000] [--rounds 20]
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { startDashboard } from '../src/dashboard/server';
import type { Io } from '../src/io';

const LIMIT_MS = 200;

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(name);
  return i > 0 ? Number(process.argv[i + 1]) : fallback;
}

function synthesize(dir: string, count: number): void {
  const runsDir = path.join(dir, '.topas', 'runs');
  fs.mkdirSync(runsDir, { recursive: true, mode: 0o700 });
  const t0 = Date.UTC(2026, 10, 1);
  const blob = 'x'.repeat(40_000); // stands in for the encoded HDR histograms of a load run
  for (let i = 0; i < count; i++) {
    const at = new Date(t0 + i * 3_600_000);
    const runId = `${at.toISOString().replace(/[-:]/g, '').replace('T', '-').replace(/\..*/, '')}-000-10-${i.toString(16).padStart(6, '0')}`;
    const state = i % 7 === 0 ? 'failed' : i % 31 === 0 ? 'error' : 'passed';
    let record: Record<string, unknown>;
    if (i % 10 < 7) {
      const results = Array.from({ length: 4 }, (_, s) => ({
        runId: `${runId}-${s}`,
        name: `scenario-${s}`,
        file: `tests/suite-${i % 5}.lua`,
        state: state === 'failed' && s === 3 ? 'failed' : 'passed',
        startedAt: at.toISOString(),
        durationMs: 1000 + s * 250,
        checks: [{ name: 'status is 200', passed: 10, failed: 0 }],
        steps: Array.from({ length: 5 }, (__, k) => ({ name: `step ${k}`, state: 'passed', durationMs: 100, checks: [] })),
      }));
      record = { schemaVersion: 1, runId, kind: 'run', app: 'shop', specFile: '/srv/shop/topas.yaml', backend: 'local', targets: [`tests/suite-${i % 5}.lua`], startedAt: at.toISOString(), durationMs: 5000 + (i % 13) * 100, state, exitCode: state === 'passed' ? 0 : 1, results };
    } else {
      const points = Array.from({ length: 300 }, (_, t) => ({ t, targetRate: 100, achievedRate: 99, activeVus: 12, p50Ms: 8.5, p95Ms: 21.25, p99Ms: 40.125, errors: 0, requests: 100, dropped: 0 }));
      const metrics: Record<string, unknown> = {};
      for (let e = 0; e < 20; e++) metrics[`http_req_duration{name:GET /api/${e}}`] = { type: 'trend', contains: 'time', values: { avg: 10, med: 9, 'p(95)': 25, 'p(99)': 60, max: 400 } };
      record = {
        schemaVersion: 1,
        runId,
        kind: 'load',
        app: 'shop',
        file: `tests/load-${i % 3}.lua`,
        startedAt: at.toISOString(),
        durationMs: 301_000,
        state: i % 9 === 0 ? 'failed' : 'passed',
        exitCode: i % 9 === 0 ? 4 : 0,
        load: { describe: 'constant arrival rate 100/s for 5m', durationMs: 300_000, timeSeries: { startMs: at.getTime(), points, markers: [] }, summary: { metrics }, snapshot: { blob }, thresholds: [{ key: 'http_req_duration', expression: 'p(95)<250', ok: i % 9 !== 0, observed: 21 }] },
      };
    }
    const runDir = path.join(runsDir, runId);
    fs.mkdirSync(runDir, { mode: 0o700 });
    fs.writeFileSync(path.join(runDir, 'run.json'), JSON.stringify(record, null, 2), { mode: 0o600 });
  }
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

async function timed(url: string, token: string): Promise<{ ms: number; bytes: number; status: number }> {
  const t = performance.now();
  const res = await fetch(url, { headers: { authorization: `Bearer ${token}` } });
  const body = await res.text();
  return { ms: performance.now() - t, bytes: Buffer.byteLength(body), status: res.status };
}

async function main(): Promise<void> {
  const count = arg('--runs', 1000);
  const rounds = arg('--rounds', 20);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'topas-dashboard-bench-'));
  const io: Io = { stdout: process.stdout, stderr: process.stderr, env: process.env, cwd: dir, now: () => Date.now(), onSignal: () => () => undefined };
  try {
    const s0 = performance.now();
    synthesize(dir, count);
    const bytes = fs.readdirSync(path.join(dir, '.topas', 'runs')).reduce((n, id) => n + fs.statSync(path.join(dir, '.topas', 'runs', id, 'run.json')).size, 0);
    console.log(`${count} stored runs synthesized (${(bytes / 1024 / 1024).toFixed(1)} MB of run.json) in ${(performance.now() - s0).toFixed(0)} ms`);
    const st0 = performance.now();
    let d = await startDashboard({ io });
    console.log(`dashboard start, index built from ${count} records: ${(performance.now() - st0).toFixed(0)} ms`);
    await d.close();
    const st1 = performance.now();
    d = await startDashboard({ io });
    console.log(`dashboard start again, index read from .topas/dashboard-index.json: ${(performance.now() - st1).toFixed(0)} ms`);
    try {
      const base = `http://127.0.0.1:${d.port}`;
      // the client's own first-use cost (fetch loads undici lazily) is not the dashboard's: warm it on a refused request
      await fetch(`${base}/nothing`).then((r) => r.text());
      const cold = await timed(`${base}/`, d.token);
      if (cold.status !== 200) throw new Error(`history page answered ${cold.status}`);
      const line = (what: string, ms: number, extra = '') => console.log(`${what}: ${ms.toFixed(1)} ms${extra} (limit ${LIMIT_MS} ms) ${ms <= LIMIT_MS ? 'ok' : 'OVER'}`);
      line('history page, first request', cold.ms, `, ${(cold.bytes / 1024).toFixed(0)} kB`);
      for (const [what, p] of [
        ['history page, warm', '/'],
        ['history page, filtered (state=failed, name=suite-2)', '/?state=failed&name=suite-2'],
        ['history page 10 of 20', '/?page=10'],
        ['JSON list (/api/runs)', '/api/runs'],
      ] as const) {
        const times: number[] = [];
        for (let i = 0; i < rounds; i++) times.push((await timed(`${base}${p}`, d.token)).ms);
        line(`${what}, median of ${rounds}`, median(times), `, max ${Math.max(...times).toFixed(1)} ms`);
      }
    } finally {
      await d.close();
    }
  } finally {
    if (!process.env.TOPAS_BENCH_KEEP) fs.rmSync(dir, { recursive: true, force: true });
    else console.log(`kept ${dir}`);
  }
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
