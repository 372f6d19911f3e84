import type { BaselineComparison } from '../load/baseline';
import type { MetricContains, MetricType } from '../load/metrics';
import type { ThresholdResult } from '../load/thresholds';
import type { ReporterObject, ReporterOptions } from './index';
import type { RunReport } from './run-report';
import { tableReporter } from './table-reporter';

/**
 * `topas load`'s summary as `--json` gives it (the k6 handleSummary shape of
 * `metrics`, with the verdict around it).
 */
export function loadSummaryJson(report: RunReport): Record<string, unknown> {
  const load = report.load!;
  return {
    runId: report.runId,
    // as the record says: `partial` when a worker was lost and the rest passed (--require-all-workers makes it `error`)
    state: report.state,
    exitCode: report.exitCode,
    durationMs: load.durationMs,
    executor: load.plan,
    metrics: load.metrics,
    thresholds: load.thresholds,
    ...(load.baseline ? { baseline: load.baseline } : {}),
    ...(load.aborted ? { aborted: load.aborted } : {}),
    ...(load.lostWorkers?.length ? { lostWorkers: load.lostWorkers, ...(load.lost ? { lost: load.lost } : {}) } : {}),
    errors: load.errors,
  };
}

function render(report: RunReport, opts: ReporterOptions): string {
  const load = report.load;
  // a scenario run has no load summary: its table is its summary
  if (report.kind !== 'load' || !load) return tableReporter(report, opts);
  if (opts.json) return `${JSON.stringify(loadSummaryJson(report), null, 2)}\n`;
  // no load ran (the SUT did not come up, setup() failed): the log said why
  if (load.durationMs === 0) return '';
  // loaded here: `topas run` needs no metrics code
  const { renderSummaryRows } = require('../load/progress') as typeof import('../load/progress');
  const rows = Object.entries(load.metrics).map(([key, m]) => ({
    key,
    type: m.type as MetricType,
    contains: (m.contains ?? 'default') as MetricContains,
    values: Object.fromEntries(Object.entries(m.values).map(([k, v]) => [k, v ?? undefined])),
  }));
  let out = renderSummaryRows(rows, { thresholds: load.thresholds as ThresholdResult[], baseline: load.baseline as unknown as BaselineComparison | undefined, color: opts.color });
  if (load.aborted) out += `aborted: ${load.aborted}\n`;
  for (const l of load.lostWorkers ?? []) out += `partial results: ${l}\n`;
  if (load.errors.length) out += `iteration errors:\n${load.errors.map((e) => `  ${e.count} × ${e.message}`).join('\n')}\n`;
  return `${out}run ${report.runId}: ${report.state}\n`;
}

/**
 * `summary`, the default reporter of `topas load`: the metrics table with a
 * mark per threshold, the baseline comparison, why it stopped early, the
 * iteration errors and the verdict; with --json, the same as JSON.
 */
export const summaryReporter: ReporterObject = { name: 'summary', render };
