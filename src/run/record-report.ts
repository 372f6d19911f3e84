import type { MetricsSnapshot } from '../load/metrics';
import type { ThresholdResult } from '../load/thresholds';
import type { LoadMark, LoadReportSection, LoadSeriesPoint, RunReport, SutServiceReport } from '../reporters/run-report';
import type { RunRecord } from './run-record';
import type { LogLine } from './scenario-types';

/**
 * The version of run.json's layout (docs/run-record.md). Records without it
 * were written before the schema was versioned and read as version 0: same
 * fields, minus `spec`, `sut` and the p50/p99 series.
 */
export const RUN_RECORD_SCHEMA_VERSION = 1;

/** How many log lines a report keeps (the last ones, per source at most LOG_LINES_PER_SOURCE). */
const LOG_LINES = 400;
const LOG_LINES_PER_SOURCE = 60;

/** What `load` in run.json holds (written by src/load/load-service.ts). */
interface LoadRecord {
  describe?: string;
  durationMs?: number;
  snapshot?: MetricsSnapshot;
  summary?: { metrics?: LoadReportSection['metrics'] };
  timeSeries?: { points?: LoadSeriesPoint[]; markers?: Array<{ tMs: number; text: string; kind?: LoadMark['kind'] }> };
  thresholds?: ThresholdResult[];
  baseline?: LoadReportSection['baseline'];
  aborted?: string;
  lostWorkers?: string[];
  lost?: unknown[];
  errors?: Array<{ message: string; count: number }>;
  plan?: { executor?: Record<string, unknown> };
}

/**
 * The run's state as stored. Load records written before `partial` was a state
 * of its own said `state: "passed"` with `partial: true`: read as `partial`.
 */
export function recordState(record: Pick<RunRecord, 'state'> & { partial?: unknown }): RunReport['state'] {
  return record.state === 'passed' && record.partial === true ? 'partial' : record.state;
}

/** `sut.applyService(api, ...)` and `sut.scale` are SUT changes; `shape api: ...` a shaping change. */
export function markKind(text: string): LoadMark['kind'] {
  if (text.startsWith('sut.')) return 'sut';
  if (text.startsWith('shape ')) return 'shape';
  return 'other';
}

function loadSection(record: RunRecord, withSummary = true): LoadReportSection | undefined {
  const load = record.load as LoadRecord | undefined;
  if (!load || typeof load !== 'object') return undefined;
  const durationMs = load.durationMs ?? 0;
  let summaryText: string | undefined;
  if (load.snapshot && withSummary) {
    try {
      // loaded here: `test status` needs no metrics code
      const { renderSummary } = require('../load/progress') as typeof import('../load/progress');
      summaryText = renderSummary(load.snapshot, { durationMs: Math.max(1, durationMs), thresholds: load.thresholds ?? [] });
    } catch {
      summaryText = undefined; // a snapshot an older topas wrote in another shape
    }
  }
  return {
    executor: load.describe,
    durationMs,
    points: load.timeSeries?.points ?? [],
    // "sut.x done" repeats the start of the change: the start is where the chart marks it
    marks: (load.timeSeries?.markers ?? []).filter((m) => !/ done$/.test(m.text)).map((m) => ({ tMs: m.tMs, kind: m.kind ?? markKind(m.text), text: m.text })),
    // as evaluated (the summary's JSON form gives them as they are)
    thresholds: (load.thresholds ?? []).map((t) => ({ ...t })),
    metrics: load.summary?.metrics ?? {},
    errors: load.errors ?? [],
    aborted: load.aborted,
    ...(load.lostWorkers?.length ? { partial: load.lostWorkers } : {}),
    baselineOk: load.baseline?.ok,
    summaryText,
    ...(load.plan?.executor ? { plan: load.plan.executor } : {}),
    ...(load.baseline ? { baseline: load.baseline } : {}),
    ...(load.lostWorkers?.length ? { lostWorkers: load.lostWorkers, ...(load.lost ? { lost: load.lost } : {}) } : {}),
  };
}

/** The last lines of the log, a bounded number per source so one chatty source does not hide the others. */
export function logExcerpt(lines: readonly LogLine[]): NonNullable<RunReport['logs']> {
  const perSource = new Map<string, number>();
  const out: NonNullable<RunReport['logs']> = [];
  for (let i = lines.length - 1; i >= 0 && out.length < LOG_LINES; i--) {
    const l = lines[i];
    const n = perSource.get(l.source) ?? 0;
    if (n >= LOG_LINES_PER_SOURCE) continue;
    perSource.set(l.source, n + 1);
    out.push({ ts: l.ts, source: l.source, level: l.level, message: l.message });
  }
  return out.reverse();
}

/** A stored run (scenario run or load run, any schema version) as reporters see it. */
export function reportFromRecord(record: RunRecord, opts: { logs?: readonly LogLine[] } = {}): RunReport {
  const kind = record.kind === 'load' ? 'load' : 'run';
  return {
    runId: record.runId,
    app: record.app,
    backend: record.backend,
    startedAt: record.startedAt ?? '',
    durationMs: record.durationMs ?? 0,
    state: recordState(record),
    results: Array.isArray(record.results) ? record.results : [],
    playbooks: record.playbooks,
    error: record.error,
    kind,
    exitCode: typeof record.exitCode === 'number' ? record.exitCode : undefined,
    file: typeof record.file === 'string' ? record.file : undefined,
    load: kind === 'load' ? loadSection(record) : undefined,
    sut: Array.isArray(record.sut) ? (record.sut as SutServiceReport[]) : undefined,
    logs: opts.logs ? logExcerpt(opts.logs) : undefined,
  };
}

/** `test status`'s RESULT column for a load run. */
export function loadResultLine(record: RunRecord): string {
  const load = loadSection(record, false);
  const parts: string[] = [];
  if (load) {
    const th = load.thresholds;
    if (th.length) parts.push(`${th.filter((t) => t.ok).length}/${th.length} threshold(s) passed`);
    const iterations = load.metrics.iterations?.values;
    if (typeof iterations?.count === 'number') parts.push(`${iterations.count} iteration(s)${typeof iterations.rate === 'number' ? ` at ${iterations.rate.toFixed(1)}/s` : ''}`);
    const reqs = load.metrics.http_reqs?.values.count;
    if (typeof reqs === 'number') parts.push(`${reqs} request(s)`);
    const p95 = load.metrics.http_req_duration?.values['p(95)'];
    if (typeof p95 === 'number') parts.push(`p95 ${p95.toFixed(1)}ms`);
    if (load.aborted) parts.push(`aborted: ${load.aborted}`);
    if (load.partial) parts.push(`partial: ${load.partial.length} worker(s) lost`);
    if (load.baselineOk === false) parts.push('regressed against the baseline');
  }
  if (record.error) parts.push(record.error.message);
  return `${recordState(record)}: load${parts.length ? `, ${parts.join(', ')}` : ''}`;
}

const SUT_CAPTURE_MS = 3000;
const LOG_EXCERPT_LINES = 40;

/**
 * The SUT as the run leaves it (services, versions, replicas, the tail of each
 * log), for the run record; bounded in time, and empty when the backend
 * cannot tell (a report is never worth a hung teardown).
 */
export async function captureSut(sut: { services(): Promise<import('../backends/backend').ServiceStatus[]>; logs(name: string, opts?: { tail?: number }): Promise<string> } | undefined): Promise<SutServiceReport[] | undefined> {
  if (!sut) return undefined;
  const capture = async (): Promise<SutServiceReport[]> => {
    const services = await sut.services();
    return Promise.all(
      services.map(async (s) => {
        let logExcerpt: string | undefined;
        if (s.kind === 'service') logExcerpt = await sut.logs(s.name, { tail: LOG_EXCERPT_LINES }).catch(() => undefined);
        return { name: s.name, kind: s.kind, replicas: s.replicas, ready: s.ready, version: s.version, image: s.image, ...(logExcerpt ? { logExcerpt: logExcerpt.slice(-16_000) } : {}) };
      }),
    );
  };
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([capture(), new Promise<undefined>((resolve) => (timer = setTimeout(() => resolve(undefined), SUT_CAPTURE_MS)))]);
  } catch {
    return undefined;
  } finally {
    clearTimeout(timer);
  }
}
