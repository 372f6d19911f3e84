import Table from 'cli-table3';
import type { SerializedError } from '../errors';
import type { CheckTally, ScenarioResult } from '../run/scenario-types';
import { formatDurationMs } from '../util/duration';
import { paint } from '../util/color';
import { escapeControl } from '../util/terminal-text';
import type { ReporterOptions } from './index';
import { STATE_TEXT, countScenarios, failuresOf, messageWithLocation, tracebackOf, type RunReport } from './run-report';


function symbol(state: string, color: boolean): string {
  if (state === 'passed') return paint(color, 'green', '✓');
  if (state === 'skipped') return paint(color, 'dim', '-');
  if (state === 'pending' || state === 'running') return paint(color, 'yellow', '…');
  if (state === 'partial') return paint(color, 'yellow', '!');
  return paint(color, 'red', '✗');
}

function checksText(checks: readonly CheckTally[], color: boolean): string {
  if (checks.length === 0) return '';
  let passed = 0;
  let failed = 0;
  for (const c of checks) {
    passed += c.passed;
    failed += c.failed;
  }
  const p = `${passed} passed`;
  return failed > 0 ? `${p}, ${paint(color, 'red', `${failed} failed`)}` : p;
}

function indent(text: string, by: string): string {
  return text
    .split('\n')
    .map((l) => by + l)
    .join('\n');
}

function errorLines(err: SerializedError | undefined, pad: string): string[] {
  if (!err) return [];
  const lines = [indent(messageWithLocation(err), pad)];
  for (const p of err.problems ?? []) lines.push(`${pad}  ${p.path}: ${p.message}`);
  if (err.hint) lines.push(`${pad}hint: ${err.hint}`);
  const tb = tracebackOf(err);
  if (tb) lines.push(indent(tb, pad));
  return lines;
}

/** A row per scenario, a row per step beneath it, a summary line, then every failure with its Lua location and traceback. */
export function tableReporter(report: RunReport, opts: ReporterOptions): string {
  const { color } = opts;
  report = terminalSafe(report);
  const table = new Table({
    head: ['', 'scenario / step', 'duration', 'checks'],
    // Empty styles: no colors unless we add them, so piped output stays plain.
    style: { head: color ? ['bold'] : [], border: color ? ['grey'] : [] },
    // No rule between rows, so steps read as belonging to the scenario above them.
    chars: { mid: '', 'left-mid': '', 'mid-mid': '', 'right-mid': '' },
  });
  for (const r of report.results) {
    const state = r.state === 'passed' ? '' : ` (${STATE_TEXT[r.state]})`;
    table.push([symbol(r.state, color), `${r.name}${state}`, formatDurationMs(r.durationMs), checksText(r.checks, color)]);
    for (const s of r.steps) {
      table.push([`  ${symbol(s.state, color)}`, `  ${s.name}`, s.state === 'skipped' ? '' : formatDurationMs(s.durationMs), checksText(s.checks, color)]);
    }
  }

  const out: string[] = [];
  const head = [`run ${report.runId}`];
  if (report.app) head.push(`app ${report.app}`);
  if (report.backend) head.push(`backend ${report.backend}`);
  out.push(paint(color, 'dim', head.join('  ')));
  if (report.results.length > 0) out.push(table.toString());
  const metricLines = report.results.flatMap((r) => (r.metrics ?? []).map((m) => `  ${r.name}  ${m.name} (${m.type}): ${metricText(m)}`));
  if (metricLines.length > 0) out.push('custom metrics:', ...metricLines);
  if (report.load) out.push(...loadLines(report, color));

  const counts = countScenarios(report.results);
  const others = Object.entries(counts.byState)
    .filter(([state]) => state !== 'passed' && state !== 'failed')
    .map(([state, n]) => `${n} ${STATE_TEXT[state as ScenarioResult['state']]}`);
  let summary =
    counts.total === 0
      ? report.kind === 'load'
        ? `load ${report.state === 'partial' ? paint(color, 'yellow', STATE_TEXT.partial) : STATE_TEXT[report.state]}${report.exitCode !== undefined ? ` (exit ${report.exitCode})` : ''}`
        : 'no scenarios ran'
      : `${paint(color, counts.passed > 0 ? 'green' : 'dim', `${counts.passed} passed`)}, ${paint(color, counts.failed > 0 ? 'red' : 'dim', `${counts.failed} failed`)}`;
  if (others.length > 0) summary += ` (${others.join(', ')})`;
  summary += ` in ${formatDurationMs(report.durationMs)}`;
  if (report.state === 'pending' || report.state === 'running') summary += ` (${STATE_TEXT[report.state]})`;
  out.push(summary);
  // Playbooks pass or fail as a whole; Ok/Total per role says where (Testground's outcome view).
  for (const pb of report.playbooks ?? []) {
    const roles = pb.roles.map((r) => `${r.name} ${paint(color, r.ok === r.total ? 'green' : 'red', `${r.ok}/${r.total}`)}`).join(', ');
    out.push(`${symbol(pb.state, color)} playbook ${pb.name} ${STATE_TEXT[pb.state]}: ${roles}`);
    if (pb.firstFailure) out.push(`  first failure: ${pb.firstFailure.instance}${pb.firstFailure.error ? `: ${messageWithLocation(pb.firstFailure.error)}` : ''}`);
  }

  const failureBlocks: string[] = [];
  if (report.error) failureBlocks.push([paint(color, 'red', '✗ run'), ...errorLines(report.error, '  ')].join('\n'));
  // Instances stopped because another one failed say nothing new each: one line for all of them.
  const stopped = report.results.filter((r) => r.state === 'interrupted');
  const collapse = stopped.length > 3;
  if (collapse) {
    const names = stopped.map((r) => r.name);
    const shown = names.length > 6 ? `${names.slice(0, 6).join(', ')} and ${names.length - 6} more` : names.join(', ');
    failureBlocks.push([paint(color, 'yellow', `- ${stopped.length} stopped before finishing`), `  ${shown}`, stopped[0].error ? `  ${messageWithLocation(stopped[0].error)}` : ''].filter(Boolean).join('\n'));
  }
  for (const r of report.results) {
    if (collapse && r.state === 'interrupted') continue;
    for (const f of failuresOf(r)) {
      const title = f.step ? `${r.name} › ${f.step}` : r.name;
      const lines = [paint(color, 'red', `✗ ${title}`)];
      if (r.file) lines.push(paint(color, 'dim', `  ${r.file}`));
      if (f.error) lines.push(...errorLines(f.error, '  '));
      else lines.push(`  ${STATE_TEXT[r.state]}`);
      failureBlocks.push(lines.join('\n'));
    }
  }
  if (failureBlocks.length > 0) out.push('', paint(color, 'bold', 'Failures:'), '', failureBlocks.join('\n\n'));
  return opts.mask(out.join('\n')) + '\n';
}

function metricText(m: NonNullable<ScenarioResult['metrics']>[number]): string {
  const n = (v: number) => (Number.isInteger(v) ? String(v) : v.toFixed(2));
  if (m.type === 'trend') return `avg ${n(m.value)}, min ${n(m.min ?? 0)}, max ${n(m.max ?? 0)} (${m.count} samples)`;
  if (m.type === 'rate') return `${(m.value * 100).toFixed(1)}% of ${m.count}`;
  return m.type === 'counter' ? `${n(m.value)} (${m.count} adds)` : n(m.value);
}

/** A load run: what it ran, the summary as the terminal printed it, the SUT and shaping changes. */
function loadLines(report: RunReport, color: boolean): string[] {
  const load = report.load!;
  const out: string[] = [];
  if (load.executor) out.push(`${load.executor}, ${formatDurationMs(load.durationMs)} of load`);
  if (load.summaryText) out.push(load.summaryText.replace(/\n$/, ''));
  else for (const t of load.thresholds) out.push(`${symbol(t.ok ? 'passed' : 'failed', color)} ${t.key} ${t.expression}${t.observed === undefined ? '' : ` (${t.observed})`}`);
  if (load.marks.length) {
    out.push('changes during the run:');
    for (const m of load.marks) out.push(`  ${formatDurationMs(Math.round(m.tMs)).padStart(7)}  ${m.text}`);
  }
  if (load.aborted) out.push(paint(color, 'red', `aborted: ${load.aborted}`));
  for (const p of load.partial ?? []) out.push(paint(color, 'yellow', `partial results: ${p}`));
  if (load.errors.length) out.push('iteration errors:', ...load.errors.map((e) => `  ${e.count} × ${e.message}`));
  return out;
}

/**
 * The report with every text a scenario controls made safe for a terminal:
 * escape sequences and `\r` shown escaped, names on one line (a newline in a
 * step name would break the table), messages keep their lines.
 */
function terminalSafe(report: RunReport): RunReport {
  const line = (s: string) => escapeControl(s);
  const text = (s: string) => escapeControl(s, { multiline: true });
  const err = (e: SerializedError | undefined) =>
    e && { ...e, message: text(e.message), ...(e.stack ? { stack: text(e.stack) } : {}), ...(e.hint ? { hint: text(e.hint) } : {}), ...(e.location ? { location: line(e.location) } : {}) };
  return {
    ...report,
    error: err(report.error),
    results: report.results.map((r) => ({
      ...r,
      name: line(r.name),
      file: line(r.file),
      error: err(r.error),
      steps: r.steps.map((s) => ({ ...s, name: line(s.name), error: err(s.error) })),
      checks: r.checks.map((c) => ({ ...c, name: line(c.name) })),
    })),
  };
}
