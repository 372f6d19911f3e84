/**
 * HTML report size and render time: a synthesized run record of a 1-hour load
 * run with 20 named endpoints (3600 seconds of series with p50/p95/p99, SUT
 * changes, thresholds per endpoint, three services with log excerpts, 400 log
 * lines) rendered by the html reporter, then opened from file:// in headless
 * Chromium (Debian's, driven by playwright-core; scripts/ensure-chromium.sh)
 * until the last chart is drawn. Targets (issue 17): at most 1.5 MB, at most
 * 1 s to the last chart.
 *
 *   node dist/bench/report-size.js [--rounds 5]
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import { htmlReporter } from '../src/reporters/html-reporter';
import { reportFromRecord } from '../src/run/record-report';
import type { RunRecord } from '../src/run/run-record';
import type { LogLine } from '../src/run/scenario-types';
import { browserOrSkipReason, CHROMIUM, CHROMIUM_ARGS } from '../test/helpers/browser';

const SECONDS = 3600;
const ENDPOINTS = 20;
const MAX_BYTES = 1.5 * 1024 * 1024;
const MAX_RENDER_MS = 1000;

function synthesize(): { record: RunRecord; logs: LogLine[] } {
  let seed = 42;
  const rnd = () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648);
  const points = Array.from({ length: SECONDS }, (_, t) => {
    const p50 = 8 + rnd() * 4 + (t > 1800 && t < 1900 ? 30 : 0);
    return { t, targetRate: 500, achievedRate: 495 + Math.round(rnd() * 10), activeVus: 20 + Math.round(rnd() * 15), p50Ms: p50, p95Ms: p50 * 2.5, p99Ms: p50 * 4 + rnd() * 20, errors: rnd() < 0.05 ? Math.round(rnd() * 5) : 0, requests: 500, dropped: 0 };
  });
  const metrics: Record<string, { type: string; contains: string; values: Record<string, number> }> = {};
  const thresholds = [];
  for (let e = 0; e < ENDPOINTS; e++) {
    const name = `GET /api/v1/resource-${e}/{id}`;
    metrics[`http_req_duration{name:${name}}`] = { type: 'trend', contains: 'time', values: { avg: 10 + e, min: 1, med: 9 + e, max: 400, 'p(90)': 20 + e, 'p(95)': 25 + e, 'p(99)': 60 + e } };
    metrics[`http_req_failed{name:${name}}`] = { type: 'rate', contains: 'default', values: { rate: 0.001 * e, passes: e, fails: 90_000 } };
    metrics[`http_reqs{name:${name}}`] = { type: 'counter', contains: 'default', values: { count: 90_000, rate: 25 } };
    thresholds.push({ key: `http_req_duration{name:${name}}`, metric: 'http_req_duration', tags: { name }, expression: 'p(95)<40', ok: e < 15, observed: 25 + e, abortOnFail: false });
  }
  const markers = [
    { tMs: 600_000, text: 'sut.applyService(api, {"version":"1.1.0"})' },
    { tMs: 640_000, text: 'sut.applyService done' },
    { tMs: 1_800_000, text: 'shape api: latency 30ms' },
    { tMs: 1_900_000, text: 'shape api: cleared' },
    { tMs: 2_400_000, text: 'sut.scale(api, 3)' },
    { tMs: 3_000_000, text: 'sut.kill(worker)' },
  ];
  const logLine = (i: number) => `${new Date(1_764_000_000_000 + i * 1000).toISOString()} INFO request handled path=/api/v1/resource-${i % ENDPOINTS}/${i} status=200 duration_ms=${i % 97}`;
  const sut = ['api', 'worker', 'gateway'].map((name) => ({ name, kind: 'service', replicas: 3, ready: true, version: '1.1.0', image: `local/${name}`, logExcerpt: Array.from({ length: 40 }, (_, i) => logLine(i)).join('\n') }));
  const record = {
    schemaVersion: 1,
    runId: '20261202-070000-000-10-abcdef',
    kind: 'load',
    app: 'shop',
    backend: 'docker',
    file: 'tests/load.lua',
    startedAt: '2026-12-02T07:00:00.000Z',
    durationMs: SECONDS * 1000 + 12_000,
    state: 'failed',
    exitCode: 4,
    sut,
    load: { describe: 'constant arrival rate 500/s for 1h, up to 200 VUs', durationMs: SECONDS * 1000, timeSeries: { startMs: 0, points, markers }, summary: { version: 1, durationMs: SECONDS * 1000, metrics }, thresholds, errors: [{ message: 'tests/load.lua:31: timeout', count: 12 }] },
  } as unknown as RunRecord;
  const logs: LogLine[] = Array.from({ length: 2000 }, (_, i) => ({ ts: 1_764_000_000_000 + i, runId: record.runId, source: i % 3 ? 'worker-0' : 'topas', level: 'info', message: logLine(i) }));
  return { record, logs };
}

async function main(): Promise<void> {
  const roundsArg = process.argv.indexOf('--rounds');
  const rounds = roundsArg > 0 ? Number(process.argv[roundsArg + 1]) : 5;
  const { record, logs } = synthesize();
  const t0 = performance.now();
  const html = htmlReporter(reportFromRecord(record, { logs }), { color: false, mask: (s) => s });
  const renderMs = performance.now() - t0;
  const bytes = Buffer.byteLength(html);
  console.log(`html report of a ${SECONDS / 3600}h load run with ${ENDPOINTS} endpoints: ${(bytes / 1024).toFixed(0)} kB (limit ${(MAX_BYTES / 1024).toFixed(0)} kB) ${bytes <= MAX_BYTES ? 'ok' : 'OVER'}; written in ${renderMs.toFixed(0)} ms`);
  const browser = browserOrSkipReason();
  if ('skip' in browser) {
    console.log(`render time skipped: ${browser.skip}`);
    return;
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'topas-report-size-'));
  const file = path.join(dir, 'report.html');
  fs.writeFileSync(file, html);
  const b = await browser.chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
  try {
    const times: number[] = [];
    for (let i = 0; i < rounds; i++) {
      const page = await (await b.newContext({ viewport: { width: 1280, height: 1000 } })).newPage();
      await page.goto(pathToFileURL(file).href);
      await page.waitForSelector('body[data-charts-drawn="4"]', { timeout: 10_000 });
      times.push(Number(await page.evaluate<string>("document.body.getAttribute('data-charts-ms')")));
    }
    times.sort((x, y) => x - y);
    const median = times[Math.floor(times.length / 2)];
    console.log(`to the last chart in headless Chromium (navigation start -> drawn), ${rounds} rounds: median ${median} ms, min ${times[0]} ms, max ${times[times.length - 1]} ms (limit ${MAX_RENDER_MS} ms) ${median <= MAX_RENDER_MS ? 'ok' : 'OVER'}`);
  } finally {
    await b.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
