import * as fs from 'node:fs';
import * as path from 'node:path';
import Table from 'cli-table3';
import { EXIT_CODES, TopasError } from '../errors';
import type { Io } from '../io';
import { SeriesStats, selectSeries, type MetricsSnapshot } from '../load/metrics';
import { esc } from '../reporters/html-reporter';
import { REPORT_CSS } from '../reporters/html-assets';
import { maskSecrets } from '../spec/secrets';
import { checkReporterOutputs } from './render-reports';
import { RunRecordStore, type RunRecord } from './run-record';
import { recordDirFor } from './schedule-service';
import { recordState } from './record-report';

/**
 * `topas compare <idA> <idB>`: two stored runs side by side. Load runs: per
 * endpoint (the `name` tag of http requests) and overall, p95, p99, error
 * rate and the rate achieved; scenario runs: each scenario's state. B is
 * measured against A: a figure worse by more than --max-regression, or a
 * scenario that passed in A and not in B, is a regression (exit 4).
 */

export type CompareMetric = 'p95' | 'p99' | 'errorRate' | 'rate';

export interface CompareRow {
  endpoint: string;
  metric: CompareMetric;
  a?: number;
  b?: number;
  /** (b - a) / a; undefined when a is 0 or missing */
  deltaRatio?: number;
  regression: boolean;
}

export interface ScenarioCompareRow {
  scenario: string;
  a?: string;
  b?: string;
  regression: boolean;
}

export interface ComparedRun {
  runId: string;
  kind: string;
  /** as the record says (a load run that lost a worker is `partial`) */
  state: string;
  startedAt?: string;
  /** a partial load run: what was lost (which share, from when), one line per lost worker */
  lost?: string[];
}

export interface Comparison {
  a: ComparedRun;
  b: ComparedRun;
  maxRegression: number;
  rows: CompareRow[];
  scenarios: ScenarioCompareRow[];
  regressions: number;
}

const ALL = '(all)';
/** error rates this close are noise whatever their ratio (0 -> 0.0005) */
const RATE_NOISE = 0.001;
const HIGHER_IS_WORSE: Record<CompareMetric, boolean> = { p95: true, p99: true, errorRate: true, rate: false };
const METRIC_TEXT: Record<CompareMetric, string> = { p95: 'p95 ms', p99: 'p99 ms', errorRate: 'error rate', rate: 'rate achieved /s' };

interface LoadFigures {
  durationMs: number;
  snapshot?: MetricsSnapshot;
}

function loadFigures(record: RunRecord): LoadFigures | undefined {
  const load = record.load as { durationMs?: number; snapshot?: MetricsSnapshot } | undefined;
  if (!load?.snapshot) return undefined;
  return { durationMs: Math.max(1, load.durationMs ?? 1), snapshot: load.snapshot };
}

function endpointsOf(f: LoadFigures | undefined): string[] {
  const m = f?.snapshot?.metrics.http_req_duration;
  if (!m) return [];
  const names = new Set<string>();
  for (const s of m.series) if (typeof s.tags.name === 'string') names.add(s.tags.name);
  return [...names].sort();
}

function figure(f: LoadFigures | undefined, endpoint: string, metric: CompareMetric): number | undefined {
  if (!f?.snapshot) return undefined;
  const filter: Record<string, string> = endpoint === ALL ? {} : { name: endpoint };
  const stat = (name: string, s: string) => {
    const sel = selectSeries(f.snapshot!, name, filter);
    return sel ? new SeriesStats(sel.data, f.durationMs).get(s) : undefined;
  };
  switch (metric) {
    case 'p95':
      return stat('http_req_duration', 'p(95)');
    case 'p99':
      return stat('http_req_duration', 'p(99)');
    case 'errorRate':
      return stat('http_req_failed', 'rate');
    case 'rate':
      return endpoint === ALL ? (stat('iterations', 'rate') ?? stat('http_reqs', 'rate')) : stat('http_reqs', 'rate');
  }
}

function isRegression(metric: CompareMetric, a: number | undefined, b: number | undefined, maxRegression: number): boolean {
  if (a === undefined || b === undefined || !Number.isFinite(a) || !Number.isFinite(b)) return false;
  if (metric === 'errorRate' && Math.abs(b - a) <= RATE_NOISE) return false;
  if (HIGHER_IS_WORSE[metric]) return a === 0 ? b > 0 && metric === 'errorRate' : (b - a) / a > maxRegression;
  return a > 0 && (a - b) / a > maxRegression;
}

export function compareRecords(ra: RunRecord, rb: RunRecord, maxRegression: number): Comparison {
  const fa = loadFigures(ra);
  const fb = loadFigures(rb);
  const rows: CompareRow[] = [];
  if (fa || fb) {
    const endpoints = [ALL, ...new Set([...endpointsOf(fa), ...endpointsOf(fb)])];
    for (const endpoint of endpoints) {
      for (const metric of ['p95', 'p99', 'errorRate', 'rate'] as CompareMetric[]) {
        const a = figure(fa, endpoint, metric);
        const b = figure(fb, endpoint, metric);
        if (a === undefined && b === undefined) continue;
        rows.push({ endpoint, metric, a, b, deltaRatio: a !== undefined && b !== undefined && a !== 0 ? (b - a) / a : undefined, regression: isRegression(metric, a, b, maxRegression) });
      }
    }
  }
  const scenarios: ScenarioCompareRow[] = [];
  const stateOf = (r: RunRecord) => new Map((r.results ?? []).map((s) => [s.name, s.state] as const));
  const sa = stateOf(ra);
  const sb = stateOf(rb);
  for (const name of [...new Set([...sa.keys(), ...sb.keys()])].sort()) {
    const a = sa.get(name);
    const b = sb.get(name);
    scenarios.push({ scenario: name, a, b, regression: a === 'passed' && b !== undefined && b !== 'passed' });
  }
  const side = (r: RunRecord): ComparedRun => {
    const lost = (r.load as { lostWorkers?: unknown } | undefined)?.lostWorkers;
    return { runId: r.runId, kind: String(r.kind ?? 'run'), state: recordState(r), startedAt: r.startedAt, ...(Array.isArray(lost) && lost.length ? { lost: lost.map(String) } : {}) };
  };
  return { a: side(ra), b: side(rb), maxRegression, rows, scenarios, regressions: rows.filter((r) => r.regression).length + scenarios.filter((s) => s.regression).length };
}

function num(v: number | undefined, metric: CompareMetric): string {
  if (v === undefined || !Number.isFinite(v)) return '-';
  if (metric === 'errorRate') return `${(v * 100).toFixed(2)}%`;
  return v >= 100 ? v.toFixed(0) : v.toFixed(2);
}

function delta(r: CompareRow): string {
  if (r.deltaRatio === undefined) return '';
  const pct = r.deltaRatio * 100;
  return `${pct >= 0 ? '+' : ''}${pct.toFixed(1)}%`;
}

export function renderCompareTable(c: Comparison): string {
  const out: string[] = [];
  for (const [name, s] of [['A', c.a], ['B', c.b]] as const) {
    out.push(`${name} ${s.runId} (${s.kind}, ${s.state})`);
    // a partial run's figures lack a share of the load: say which, beside them
    for (const l of s.lost ?? []) out.push(`  partial results: ${l}`);
  }
  if (c.rows.length) {
    const t = new Table({ head: ['endpoint', 'metric', 'A', 'B', 'change', ''], style: { head: [], border: [] } });
    for (const r of c.rows) t.push([r.endpoint, METRIC_TEXT[r.metric], num(r.a, r.metric), num(r.b, r.metric), delta(r), r.regression ? 'REGRESSION' : '']);
    out.push(t.toString());
  }
  if (c.scenarios.length) {
    const t = new Table({ head: ['scenario', 'A', 'B', ''], style: { head: [], border: [] } });
    for (const s of c.scenarios) t.push([s.scenario, s.a ?? '-', s.b ?? '-', s.regression ? 'REGRESSION' : '']);
    out.push(t.toString());
  }
  out.push(c.regressions ? `${c.regressions} regression(s) beyond ${(c.maxRegression * 100).toFixed(1)}%` : `no regression beyond ${(c.maxRegression * 100).toFixed(1)}%`);
  return out.join('\n') + '\n';
}

export function renderCompareHtml(c: Comparison): string {
  const rows = c.rows
    .map((r) => `<tr class="${r.regression ? 'regression' : ''}"><td>${esc(r.endpoint)}</td><td>${esc(METRIC_TEXT[r.metric])}</td><td class="num">${esc(num(r.a, r.metric))}</td><td class="num">${esc(num(r.b, r.metric))}</td><td class="num">${esc(delta(r))}</td><td class="${r.regression ? 'bad' : 'ok'}">${r.regression ? '✗ regression' : ''}</td></tr>`)
    .join('');
  const scen = c.scenarios
    .map((s) => `<tr class="${s.regression ? 'regression' : ''}"><td>${esc(s.scenario)}</td><td class="s-${esc(s.a)}">${esc(s.a ?? '-')}</td><td class="s-${esc(s.b)}">${esc(s.b ?? '-')}</td><td class="${s.regression ? 'bad' : ''}">${s.regression ? '✗ regression' : ''}</td></tr>`)
    .join('');
  const verdict = c.regressions ? `<span class="verdict v-failed">${c.regressions} regression(s)</span>` : '<span class="verdict v-passed">no regression</span>';
  return [
    '<!doctype html><html lang="en"><head><meta charset="utf-8">',
    `<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">`,
    `<title>topas compare ${esc(c.a.runId)} ${esc(c.b.runId)}</title><style>${REPORT_CSS}</style></head><body><main>`,
    `<h1>${verdict}topas compare</h1>`,
    `<div class="meta"><span>A ${esc(c.a.runId)} (${esc(c.a.kind)}, <span class="s-${esc(c.a.state)}">${esc(c.a.state)}</span>)</span><span>B ${esc(c.b.runId)} (${esc(c.b.kind)}, <span class="s-${esc(c.b.state)}">${esc(c.b.state)}</span>)</span><span>max regression ${esc((c.maxRegression * 100).toFixed(1))}%</span></div>`,
    ...[['A', c.a] as const, ['B', c.b] as const].flatMap(([name, s]) => (s.lost ?? []).map((l) => `<p class="bad">${name}: partial results: ${esc(l)}</p>`)),
    rows ? `<h2>Endpoints</h2><table id="compare-metrics"><thead><tr><th>endpoint</th><th>metric</th><th>A</th><th>B</th><th>change</th><th></th></tr></thead><tbody>${rows}</tbody></table>` : '',
    scen ? `<h2>Scenarios</h2><table id="compare-scenarios"><thead><tr><th>scenario</th><th>A</th><th>B</th><th></th></tr></thead><tbody>${scen}</tbody></table>` : '',
    '</main></body></html>',
    '',
  ].join('\n');
}

export async function compareRuns(opts: { io: Io; a: string; b: string; app?: string; maxRegression: number; format: 'table' | 'json' | 'html'; file?: string }): Promise<{ exitCode: number; comparison: Comparison }> {
  if (!(opts.maxRegression >= 0)) throw new TopasError('INVALID_FLAGS', `--max-regression must be >= 0, got ${opts.maxRegression}`);
  checkReporterOutputs([{ name: opts.format, file: opts.file }], opts.io.cwd, '--output');
  const store = new RunRecordStore(recordDirFor(opts.io, opts.app));
  const comparison = compareRecords(store.readRun(opts.a), store.readRun(opts.b), opts.maxRegression);
  const text = maskSecrets(opts.format === 'json' ? JSON.stringify(comparison, null, 2) + '\n' : opts.format === 'html' ? renderCompareHtml(comparison) : renderCompareTable(comparison));
  if (opts.file) {
    const file = path.resolve(opts.io.cwd, opts.file);
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.writeFileSync(file, text);
  } else opts.io.stdout.write(text);
  return { exitCode: comparison.regressions ? EXIT_CODES.thresholdsFailed : EXIT_CODES.ok, comparison };
}
