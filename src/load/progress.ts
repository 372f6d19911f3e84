import Table from 'cli-table3';
import type { Io } from '../io';
import { formatDurationMs } from '../util/duration';
import { paint } from '../util/color';
import { selectSeries, SeriesStats, summarize, type MetricContains, type MetricsSnapshot, type SummaryRow, type TimeSeriesBuilder } from './metrics';
import type { ThresholdResult } from './thresholds';
import type { BaselineComparison } from './baseline';

/** What the live line shows; the caller fills it from the merged worker data. */
export interface ProgressState {
  elapsedMs: number;
  totalMs: number;
  /** iterations/s the schedule asks for now */
  targetRate: number;
  /** iterations/s achieved over the last second */
  achievedRate: number;
  activeVus: number;
  maxVus: number;
  /** ms; undefined before the first request */
  p95Ms?: number;
  errors: number;
  requests: number;
  dropped: number;
}

function fmtNum(n: number, digits = 1): string {
  return Number.isInteger(n) ? String(n) : n.toFixed(digits);
}

export function formatProgressLine(s: ProgressState, color = false): string {
  const pct = s.totalMs > 0 ? Math.min(100, Math.floor((s.elapsedMs / s.totalMs) * 100)) : 0;
  const p95 = s.p95Ms === undefined ? '-' : formatMs(s.p95Ms);
  return (
    `${formatDurationMs(s.elapsedMs)}/${formatDurationMs(s.totalMs)} (${pct}%)  ` +
    `rate ${fmtNum(s.achievedRate)}/${fmtNum(s.targetRate)} it/s  ` +
    `vus ${s.activeVus}/${s.maxVus}  p95 ${p95}  reqs ${s.requests}  ${paint(color && s.errors > 0, 'red', `errors ${s.errors}`)}  ${paint(color && s.dropped > 0, 'yellow', `dropped ${s.dropped}`)}`
  );
}

/**
 * Live progress: on a terminal one line redrawn in place (cursor up + clear
 * line); elsewhere (CI logs, pipes) a plain line every `plainEveryMs`.
 */
export class ProgressRenderer {
  private drawnLines = 0;
  private lastPlainMs = -Infinity;
  private readonly tty: boolean;
  private readonly color: boolean;
  private readonly plainEveryMs: number;

  constructor(
    private readonly out: Io['stdout'],
    opts: { tty?: boolean; color?: boolean; plainEveryMs?: number; now?: () => number } = {},
  ) {
    this.tty = opts.tty ?? !!out.isTTY;
    this.color = opts.color ?? false;
    this.plainEveryMs = opts.plainEveryMs ?? 5000;
    this.now = opts.now ?? Date.now;
  }

  private readonly now: () => number;

  update(state: ProgressState, extraLines: string[] = []): void {
    const lines = [formatProgressLine(state, this.color), ...extraLines];
    if (this.tty) {
      let s = this.drawnLines > 0 ? `\x1b[${this.drawnLines}A` : '';
      for (const l of lines) s += `\r\x1b[2K${l}\n`;
      // fewer lines than last time: clear what is left below
      for (let i = lines.length; i < this.drawnLines; i++) s += '\r\x1b[2K\n';
      const extra = Math.max(0, this.drawnLines - lines.length);
      if (extra) s += `\x1b[${extra}A`;
      this.out.write(s);
      this.drawnLines = lines.length;
      return;
    }
    const t = this.now();
    if (t - this.lastPlainMs < this.plainEveryMs) return;
    this.lastPlainMs = t;
    this.out.write(lines.join('\n') + '\n');
  }

  /** The last state, always written (so a non-TTY log ends with the final figures). */
  finish(state: ProgressState): void {
    this.lastPlainMs = -Infinity;
    this.update(state);
    this.drawnLines = 0;
  }
}

export function formatMs(ms: number): string {
  if (ms >= 1000) return `${(ms / 1000).toFixed(2)}s`;
  if (ms >= 1) return `${ms.toFixed(2)}ms`;
  return `${(ms * 1000).toFixed(0)}µs`;
}

function formatBytes(n: number): string {
  const units = ['B', 'kB', 'MB', 'GB', 'TB'];
  let i = 0;
  while (n >= 1000 && i < units.length - 1) {
    n /= 1000;
    i++;
  }
  return `${i === 0 ? Math.round(n) : n.toFixed(1)} ${units[i]}`;
}

function formatValue(v: number | undefined, stat: string, contains: MetricContains, type: SummaryRow['type']): string {
  if (v === undefined) return '-';
  if (type === 'rate' && stat === 'rate') return `${(v * 100).toFixed(2)}%`;
  if (stat === 'rate') return contains === 'data' ? `${formatBytes(v)}/s` : `${v.toFixed(2)}/s`;
  if (contains === 'time' && stat !== 'count') return formatMs(v);
  if (contains === 'data' && stat === 'count') return formatBytes(v);
  return fmtNum(v, 2);
}

export interface SummaryOptions {
  durationMs?: number;
  thresholds?: readonly ThresholdResult[];
  baseline?: BaselineComparison;
  trendStats?: readonly string[];
  /** no box-drawing colours, plain ASCII marks (for logs without UTF-8) */
  ascii?: boolean;
  /** colour the threshold marks (NO_COLOR / FORCE_COLOR / a terminal: util/color) */
  color?: boolean;
}

/**
 * The final k6-style summary: one row per metric (and per endpoint name),
 * its stats, and a ✓/✗ per threshold declared on it.
 */
export function renderSummary(snapshot: MetricsSnapshot, opts: SummaryOptions = {}): string {
  return renderSummaryRows(summarize(snapshot, { durationMs: opts.durationMs, trendStats: opts.trendStats }), opts);
}

/** The summary table from its rows: what summarize() gives, or a stored summary's metrics (toSummaryFile). */
export function renderSummaryRows(rows: ReadonlyArray<Pick<SummaryRow, 'key' | 'type' | 'contains' | 'values'>>, opts: Omit<SummaryOptions, 'durationMs' | 'trendStats'> = {}): string {
  const ok = paint(Boolean(opts.color), 'green', opts.ascii ? 'ok' : '✓');
  const bad = paint(Boolean(opts.color), 'red', opts.ascii ? 'FAIL' : '✗');
  const byKey = new Map<string, ThresholdResult[]>();
  for (const r of opts.thresholds ?? []) {
    const k = r.key.replace(/\s+/g, '');
    byKey.set(k, [...(byKey.get(k) ?? []), r]);
  }
  const table = new Table({ head: ['metric', 'values', 'thresholds'], style: { head: [], border: [] }, wordWrap: false });
  const shown = new Set<string>();
  for (const r of rows) {
    const values = Object.entries(r.values)
      .map(([stat, v]) => `${stat}=${formatValue(v, stat, r.contains, r.type)}`)
      .join('  ');
    const ths = byKey.get(r.key.replace(/\s+/g, '')) ?? [];
    shown.add(r.key.replace(/\s+/g, ''));
    const marks = ths.map((t) => `${t.ok ? ok : bad} ${t.expression}`).join('\n');
    table.push([r.key, values, marks]);
  }
  // thresholds on keys without a row (no samples, or a tag filter not broken down by default)
  for (const [k, ths] of byKey) {
    if (shown.has(k)) continue;
    const t0 = ths[0];
    const values = ths.map((t) => (t.observed === undefined ? t.note ?? 'no samples' : `${t.expression.split(/[<>=!]/)[0].trim()}=${fmtNum(t.observed, 2)}`)).join('  ');
    table.push([t0.key, values, ths.map((t) => `${t.ok ? ok : bad} ${t.expression}`).join('\n')]);
  }
  const parts = [table.toString()];
  if (opts.thresholds?.length) {
    const failed = opts.thresholds.filter((t) => !t.ok);
    parts.push(failed.length ? `${bad} ${failed.length} of ${opts.thresholds.length} thresholds failed` : `${ok} all ${opts.thresholds.length} thresholds passed`);
  }
  if (opts.baseline) parts.push(renderBaseline(opts.baseline, opts.ascii));
  return parts.join('\n') + '\n';
}

export function renderBaseline(c: BaselineComparison, ascii = false): string {
  const table = new Table({ head: ['vs baseline', 'baseline', 'current', 'delta', ''], style: { head: [], border: [] } });
  for (const r of c.rows) {
    const f = (v: number | undefined) => (v === undefined ? '-' : r.metric === 'http_req_failed' ? `${(v * 100).toFixed(2)}%` : r.stat === 'rate' ? `${v.toFixed(2)}/s` : r.metric.endsWith('duration') ? formatMs(v) : fmtNum(v, 2));
    const delta = r.deltaRatio === undefined ? '-' : `${r.deltaRatio >= 0 ? '+' : ''}${(r.deltaRatio * 100).toFixed(1)}%`;
    const mark = r.gated ? (r.ok ? (ascii ? 'ok' : '✓') : ascii ? 'FAIL' : '✗') : '';
    table.push([`${r.metric} ${r.stat}`, f(r.baseline), f(r.current), delta, mark]);
  }
  const verdict = c.ok ? 'no regression' : `regressed by more than ${(c.maxRegression * 100).toFixed(0)}%`;
  return `${table.toString()}\n${verdict}`;
}

/** The live line's figures from the merged worker snapshots and the per-second series. */
export function progressState(
  merged: MetricsSnapshot,
  ts: TimeSeriesBuilder,
  elapsedMs: number,
  totalMs: number,
  rateAt: (sec: number) => number,
  slots: ReadonlyArray<{ activeVus?: number; allocatedVus?: number }>,
  maxVus: number,
): ProgressState {
  const sec = Math.floor(elapsedMs / 1000) - 1;
  const last = sec >= 0 ? ts.point(sec, rateAt) : undefined;
  const get = (metric: string, stat: string) => {
    const sel = selectSeries(merged, metric);
    return sel ? new SeriesStats(sel.data, Math.max(1, elapsedMs)).get(stat) : undefined;
  };
  const reqFailed = selectSeries(merged, 'http_req_failed');
  const failedIterations = 0;
  return {
    elapsedMs: Math.min(elapsedMs, Math.max(totalMs, elapsedMs)),
    totalMs,
    targetRate: rateAt(Math.min(elapsedMs, Math.max(0, totalMs - 1)) / 1000),
    achievedRate: last?.achievedRate ?? 0,
    activeVus: slots.reduce((n, s) => n + (s.activeVus ?? 0), 0),
    // vus_max as the summary has it (VUs made so far), the cap until a worker reports
    maxVus: slots.some((s) => s.allocatedVus !== undefined) ? slots.reduce((n, s) => n + (s.allocatedVus ?? 0), 0) : maxVus,
    p95Ms: last?.p95Ms ?? get('http_req_duration', 'p(95)'),
    errors: (reqFailed && reqFailed.data.kind === 'rate' ? reqFailed.data.passes : 0) + failedIterations,
    requests: get('http_reqs', 'count') ?? 0,
    dropped: get('dropped_iterations', 'count') ?? 0,
  };
}
