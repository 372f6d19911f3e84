import type { SerializedError } from '../errors';
import type { RunState, ScenarioResult } from '../run/scenario-types';

/** The state of a whole run (a scenario's own state is a RunState). */
export type RunReportState = RunState | 'pending' | 'running' | 'partial';

/** A run as reporters see it (and as run.json stores it, see src/run/run-record.ts). */
export interface RunReport {
  runId: string;
  app?: string;
  backend?: string;
  /** ISO timestamp */
  startedAt: string;
  durationMs: number;
  /**
   * `pending` / `running` for runs that are queued or still going; `partial` for a
   * load run that lost a worker and passed on what arrived (load.lost says what is missing)
   */
  state: RunReportState;
  results: ScenarioResult[];
  /** what ended the run outside any scenario (SUT failed to start, interrupted, ...) */
  error?: SerializedError;
  /** one per playbook run: Ok/Total per role */
  playbooks?: PlaybookSummary[];
  /** `load` for `topas load` runs (results is empty, `load` holds the course); default `run` */
  kind?: 'run' | 'load';
  /** the process exit code the run ended with */
  exitCode?: number;
  /** the script (load) */
  file?: string;
  load?: LoadReportSection;
  /** the SUT as the run left it */
  sut?: SutServiceReport[];
  /** the last log lines of the run (topas, scripts, services), masked */
  logs?: Array<{ ts: number; source: string; level: string; message: string }>;
}

export interface PlaybookSummary {
  name: string;
  file: string;
  state: RunState;
  roles: { name: string; ok: number; total: number }[];
  /** the instance whose failure failed the playbook */
  firstFailure?: { instance: string; error?: SerializedError };
}

export interface ScenarioCounts {
  total: number;
  passed: number;
  /** everything not passed: failed, error, timedOut, interrupted */
  failed: number;
  byState: Partial<Record<RunState, number>>;
}

export function countScenarios(results: readonly ScenarioResult[]): ScenarioCounts {
  const byState: Partial<Record<RunState, number>> = {};
  for (const r of results) byState[r.state] = (byState[r.state] ?? 0) + 1;
  const passed = byState.passed ?? 0;
  return { total: results.length, passed, failed: results.length - passed, byState };
}

/** `tests/a.lua:12: boom` without repeating a location the message already starts with. */
export function messageWithLocation(err: SerializedError): string {
  if (!err.location || err.message.includes(err.location)) return err.message;
  return `${err.location}: ${err.message}`;
}

/** The stack/traceback minus a first line that only repeats the message (JS stacks do). */
export function tracebackOf(err: SerializedError): string | undefined {
  if (!err.stack) return undefined;
  const lines = err.stack.split('\n');
  const first = lines[0].trim();
  if (first === err.message.trim() || first === `${err.name}: ${err.message}`.trim() || (err.location && first === `${err.location}: ${err.message}`)) {
    lines.shift();
  }
  const rest = lines.join('\n').replace(/\s+$/, '');
  return rest === '' ? undefined : rest;
}

/** Failures of a scenario: each failed step with its error, then the scenario's own error if it is a different one. */
export function failuresOf(r: ScenarioResult): { step?: string; error?: SerializedError }[] {
  if (r.state === 'passed') return [];
  const out: { step?: string; error?: SerializedError }[] = [];
  for (const s of r.steps) if (s.state === 'failed') out.push({ step: s.name, error: s.error ?? r.error });
  const scenarioError = r.error;
  const alreadyShown = scenarioError && out.some((f) => f.error && f.error.message === scenarioError.message && f.error.location === scenarioError.location);
  if (scenarioError && !alreadyShown) out.push({ error: scenarioError });
  if (out.length === 0) out.push({});
  return out;
}

export const STATE_TEXT: Record<RunReport['state'] | 'skipped', string> = {
  passed: 'passed',
  failed: 'failed',
  error: 'error',
  timedOut: 'timed out',
  interrupted: 'interrupted',
  pending: 'pending',
  running: 'running',
  partial: 'partial',
  skipped: 'skipped',
};

/** One second of a load run, as the run record keeps it (src/load/metrics.ts TimeSeriesPoint). */
export interface LoadSeriesPoint {
  /** seconds since load start */
  t: number;
  targetRate: number;
  achievedRate: number;
  activeVus: number;
  p50Ms?: number | null;
  p95Ms: number | null;
  p99Ms?: number | null;
  errors: number;
  requests: number;
  dropped: number;
}

/** A change on the run's timeline: the SUT (upgrade, scale, kill, ...) or the shaping of a service. */
export interface LoadMark {
  /** ms since load start */
  tMs: number;
  kind: 'sut' | 'shape' | 'other';
  text: string;
}

export interface LoadThreshold {
  key: string;
  expression: string;
  ok: boolean;
  observed?: number;
  note?: string;
  metric?: string;
  tags?: Record<string, string>;
  abortOnFail?: boolean;
}

/** A `--baseline` comparison (src/load/baseline.ts BaselineComparison). */
export interface LoadBaseline {
  ok: boolean;
  rows: Array<{ metric: string; stat: string; baseline?: number; current?: number; deltaRatio?: number; regressed?: boolean; [k: string]: unknown }>;
  [k: string]: unknown;
}

/** What a report shows of a load run (`kind: 'load'` records). */
export interface LoadReportSection {
  /** human description of the executor (e.g. constant arrival rate 200/s for 30s) */
  executor?: string;
  durationMs: number;
  points: LoadSeriesPoint[];
  marks: LoadMark[];
  thresholds: LoadThreshold[];
  /** k6 summary shape: metrics[key].values[stat] */
  metrics: Record<string, { type: string; contains?: string; values: Record<string, number | null> }>;
  errors: Array<{ message: string; count: number }>;
  aborted?: string;
  /** the run is partial: each lost worker, which share of the load it carried and from when it is missing */
  partial?: string[];
  baselineOk?: boolean;
  /** the executor as planned (k6 names; rate, stages, VUs, durations in ms) */
  plan?: Record<string, unknown>;
  /** the `--baseline` comparison */
  baseline?: LoadBaseline;
  /** load worker threads that died while the load ran: the figures are partial */
  lostWorkers?: string[];
  /** the same, as data (src/load/lost-share.ts): worker, share, from when */
  lost?: unknown[];
  /** the load summary as the terminal printed it */
  summaryText?: string;
}

export interface SutServiceReport {
  name: string;
  kind: string;
  replicas: number;
  ready: boolean;
  version?: string;
  image?: string;
  /** the last lines of its log when the run ended */
  logExcerpt?: string;
}

/** A load threshold that failed, as a GitHub annotation / summary line. */
export function failedThresholds(report: RunReport): LoadThreshold[] {
  return (report.load?.thresholds ?? []).filter((t) => !t.ok);
}
