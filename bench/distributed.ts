/**
 * Distributed load (issue 16): the coordinator's CPU per merged
 * worker-second. 100 simulated workers each send one `load-metrics` message a
 * second (their per-second bucket and their cumulative snapshot with HDR
 * histograms, as src/load/load-runner.ts flushes them); the coordinator does
 * what src/load/load-service.ts does with them: receives each message (v8
 * deserialize: what the 'advanced' IPC serialization costs on arrival), adds
 * the buckets to the time series, and once a second merges the latest
 * snapshot of every worker and reads the live view's figures from it.
 * Target: at most 5% of one core. Printed with the merge error: the merged
 * percentiles against one histogram that recorded every sample.
 *
 *   node dist/bench/distributed.js [--workers 100] [--seconds 10] [--rate 200]
 *
 * --rate: requests per second per worker (each over 4 request names).
 * Making the workers' messages is not timed (it is the workers' work).
 */
import * as v8 from 'node:v8';
import { MetricsRegistry, mergeSnapshots, selectSeries, SeriesStats, TimeSeriesBuilder, type MetricsSnapshot, type SecondBucket } from '../src/load/metrics';

const arg = (name: string, dflt: number) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : dflt;
};
const WORKERS = arg('workers', 100);
const SECONDS = arg('seconds', 10);
const RATE = arg('rate', 200);
const TARGET_CORE_SHARE = 0.05;
const NAMES = ['/api/users', '/api/orders', '/api/items/:id', '/health'];

let seed = 7;
const rnd = () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648);
/** latency ms: 0.2 .. ~400 with a long tail */
const latency = () => 0.2 + 400 * rnd() ** 5;

function simulate(): { messages: Buffer[][]; single: MetricsRegistry } {
  const startMs = 1_000_000;
  let clock = startMs;
  const now = () => clock;
  const workers = Array.from({ length: WORKERS }, () => new MetricsRegistry({ startMs, now }));
  const single = new MetricsRegistry({ startMs, now });
  const messages: Buffer[][] = [];
  for (let sec = 0; sec < SECONDS; sec++) {
    for (let i = 0; i < RATE; i++) {
      clock = startMs + sec * 1000 + (i * 1000) / RATE;
      for (const w of workers) {
        const r = { name: NAMES[i % NAMES.length], method: 'GET', status: 200, durationMs: latency(), failed: rnd() < 0.01, bytesSent: 80, bytesReceived: 300 };
        const it = r.durationMs + rnd();
        w.recordRequest(r);
        w.recordIteration(it);
        single.recordRequest(r);
        single.recordIteration(it);
      }
    }
    clock = startMs + (sec + 1) * 1000 + 20;
    messages.push(workers.map((w, i) => v8.serialize({ type: 'load-metrics', buckets: w.takeSeconds(), snapshot: w.snapshot(), activeVus: 10 + (i % 3), allocatedVus: 20 })));
  }
  return { messages, single };
}

function coordinator(messages: Buffer[][]): { cpuUs: number; merged: MetricsSnapshot } {
  const ts = new TimeSeriesBuilder(0);
  const latest: MetricsSnapshot[] = new Array(WORKERS);
  let merged: MetricsSnapshot = mergeSnapshots([]);
  let sink = 0;
  const t0 = process.cpuUsage();
  for (const second of messages) {
    for (let w = 0; w < second.length; w++) {
      const msg = v8.deserialize(second[w]) as { buckets: SecondBucket[]; snapshot: MetricsSnapshot; activeVus: number };
      ts.add(msg.buckets);
      latest[w] = msg.snapshot;
      sink += msg.activeVus;
    }
    // the live view's refresh, once a second
    merged = mergeSnapshots(latest);
    const sel = selectSeries(merged, 'http_req_duration')!;
    sink += new SeriesStats(sel.data, 1000).get('p(95)') ?? 0;
    sink += ts.point(messages.indexOf(second), () => RATE * WORKERS)?.p95Ms ?? 0;
  }
  const cpu = process.cpuUsage(t0);
  if (sink === -1) console.log(sink);
  return { cpuUs: cpu.user + cpu.system, merged };
}

function mergeError(merged: MetricsSnapshot, single: MetricsSnapshot): { stat: string; merged: number; single: number }[] {
  const out: { stat: string; merged: number; single: number }[] = [];
  for (const [metric, filter] of [['http_req_duration', {}], ['http_req_duration', { name: '/api/orders' }], ['iteration_duration', {}]] as const) {
    const a = selectSeries(merged, metric, filter)!;
    const b = selectSeries(single, metric, filter)!;
    for (const stat of ['count', 'min', 'med', 'p(90)', 'p(95)', 'p(99)', 'p(99.9)', 'max', 'avg']) {
      out.push({ stat: `${metric}${Object.keys(filter).length ? `{name:${(filter as { name: string }).name}}` : ''} ${stat}`, merged: new SeriesStats(a.data, 1000).get(stat)!, single: new SeriesStats(b.data, 1000).get(stat)! });
    }
  }
  return out;
}

const t = Date.now();
const { messages, single } = simulate();
const bytes = messages.reduce((n, s) => n + s.reduce((m, b) => m + b.length, 0), 0);
console.log(`simulated ${WORKERS} workers x ${SECONDS}s at ${RATE} req/s each (${(WORKERS * SECONDS * RATE).toLocaleString('en-US')} requests) in ${Date.now() - t} ms; ${(bytes / messages.length / WORKERS / 1024).toFixed(1)} KiB per worker message`);
// rounds: a shared machine's noise; the median is reported
const rounds = 5;
const cpus: number[] = [];
let merged!: MetricsSnapshot;
for (let r = 0; r < rounds; r++) {
  const out = coordinator(messages);
  cpus.push(out.cpuUs);
  merged = out.merged;
}
cpus.sort((a, b) => a - b);
const median = cpus[Math.floor(rounds / 2)];
const perWorkerSecondUs = median / (WORKERS * SECONDS);
const coreShare = (perWorkerSecondUs * WORKERS) / 1e6;
console.log(`coordinator CPU: ${(median / 1000).toFixed(1)} ms for ${WORKERS * SECONDS} worker-seconds (median of ${rounds}; all: ${cpus.map((c) => (c / 1000).toFixed(0)).join(', ')} ms)`);
console.log(`  per merged worker-second: ${perWorkerSecondUs.toFixed(1)} µs`);
console.log(`  ${WORKERS} workers, one snapshot a second each: ${(coreShare * 100).toFixed(2)}% of one core (target <= ${TARGET_CORE_SHARE * 100}%): ${coreShare <= TARGET_CORE_SHARE ? 'MET' : 'NOT MET'}`);
const errs = mergeError(merged, single.snapshot());
let worst = 0;
for (const e of errs) {
  const rel = e.single === 0 ? Math.abs(e.merged) : Math.abs(e.merged - e.single) / Math.abs(e.single);
  worst = Math.max(worst, rel);
}
console.log(`merge error vs one histogram of all samples: max relative ${worst.toExponential(2)} over ${errs.length} figures`);
for (const e of errs.filter((x) => /p\(9|med|count/.test(x.stat))) console.log(`  ${e.stat.padEnd(44)} merged ${String(e.merged).padEnd(20)} single ${e.single}`);
