import * as fs from 'node:fs';
import { maskDeep, maskSecrets } from '../spec/secrets';
import { formatDurationMs } from '../util/duration';
import type { ReporterOptions } from './index';
import { STATE_TEXT, countScenarios, failedThresholds, failuresOf, type RunReport } from './run-report';

/**
 * GitHub Actions: one `::error` workflow command per failed step (at its Lua
 * location, so the line is marked in the diff) and per failed threshold, and
 * a Markdown job summary appended to $GITHUB_STEP_SUMMARY when it is set (the
 * env comes through Io). The annotations are the reporter's output.
 */
export function githubReporter(input: RunReport, opts: ReporterOptions): string {
  const report = maskDeep(input, (s: string) => maskSecrets(opts.mask(s)));
  const lines: string[] = [];
  for (const r of report.results) {
    for (const f of failuresOf(r)) {
      const loc = splitLocation(f.error?.location);
      const props: string[] = [];
      const file = loc?.file ?? r.file;
      if (file) props.push(`file=${property(file)}`);
      if (loc?.line) props.push(`line=${loc.line}`);
      props.push(`title=${property(f.step ? `${r.name} › ${f.step}` : `${r.name} ${STATE_TEXT[r.state]}`)}`);
      lines.push(`::error ${props.join(',')}::${data(f.error?.message ?? STATE_TEXT[r.state])}`);
    }
  }
  for (const t of failedThresholds(report)) {
    const props = [...(report.file ? [`file=${property(report.file)}`] : []), `title=${property(`threshold ${t.key} failed`)}`];
    lines.push(`::error ${props.join(',')}::${data(`${t.key} ${t.expression}: ${t.observed === undefined ? (t.note ?? 'no samples') : `observed ${round(t.observed)}`}`)}`);
  }
  if (report.error && !report.results.some((r) => r.error?.message === report.error?.message)) {
    lines.push(`::error title=${property(`topas ${report.kind === 'load' ? 'load' : 'run'} ${report.state}`)}::${data(report.error.message)}`);
  }
  if (report.load?.aborted) lines.push(`::error title=load aborted::${data(report.load.aborted)}`);
  for (const p of report.load?.partial ?? []) lines.push(`::warning title=partial load results::${data(p)}`);
  const summaryFile = opts.env?.GITHUB_STEP_SUMMARY;
  if (summaryFile) fs.appendFileSync(summaryFile, opts.mask(markdownSummary(report)));
  return opts.mask(lines.join('\n')) + (lines.length ? '\n' : '');
}

/** `tests/a.lua:12` -> file + line */
function splitLocation(location: string | undefined): { file: string; line?: number } | undefined {
  if (!location) return undefined;
  const m = /^(.*?):(\d+)(?::\d+)?$/.exec(location.trim());
  return m ? { file: m[1], line: Number(m[2]) } : { file: location };
}

// https://github.com/actions/toolkit/blob/main/packages/core/src/command.ts escapeData / escapeProperty
function data(s: string): string {
  return s.replace(/%/g, '%25').replace(/\r/g, '%0D').replace(/\n/g, '%0A');
}

function property(s: string): string {
  return data(s).replace(/:/g, '%3A').replace(/,/g, '%2C');
}

function round(v: number): string {
  return Number.isInteger(v) ? String(v) : v.toFixed(3);
}

/** Text for a Markdown table cell: no HTML, no breaking the row. */
function md(s: unknown): string {
  return String(s ?? '')
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/\|/g, '\\|')
    .replace(/\r?\n/g, ' ');
}

/** A code span: shown literally (no HTML inside), so only backticks and the row break need care. */
function code(s: unknown): string {
  return `\`${String(s ?? '').replace(/`/g, "'").replace(/\|/g, '\\|').replace(/\r?\n/g, ' ')}\``;
}

export function markdownSummary(report: RunReport): string {
  const icon = report.state === 'passed' ? '✅' : report.state === 'interrupted' || report.state === 'partial' ? '⚠️' : '❌';
  const out: string[] = [`### ${icon} topas ${report.kind === 'load' ? 'load' : 'run'} ${md(report.runId)}: ${md(STATE_TEXT[report.state])}`, ''];
  const meta = [report.app && `app ${code(report.app)}`, report.backend && `backend ${md(report.backend)}`, `duration ${formatDurationMs(report.durationMs)}`, report.exitCode !== undefined && `exit code ${report.exitCode}`].filter(Boolean);
  out.push(meta.join(' · '), '');
  if (report.results.length) {
    const c = countScenarios(report.results);
    out.push(`**${c.passed} passed, ${c.failed} failed** of ${c.total} scenario(s)`, '', '| scenario | state | duration | failure |', '| --- | --- | --- | --- |');
    for (const r of report.results) {
      const f = failuresOf(r)[0];
      const failure = f?.error ? `${f.step ? `${md(f.step)}: ` : ''}${f.error.location ? `${code(f.error.location)} ` : ''}${md(f.error.message)}` : '';
      out.push(`| ${md(r.name)} | ${md(STATE_TEXT[r.state])} | ${formatDurationMs(r.durationMs)} | ${failure} |`);
    }
    out.push('');
  }
  if (report.load) {
    const l = report.load;
    if (l.executor) out.push(`${md(l.executor)}`, '');
    if (l.thresholds.length) {
      out.push('| threshold | expression | observed | result |', '| --- | --- | --- | --- |');
      for (const t of l.thresholds) out.push(`| ${md(t.key)} | ${code(t.expression)} | ${t.observed === undefined ? md(t.note ?? 'no samples') : round(t.observed)} | ${t.ok ? '✅ passed' : '❌ failed'} |`);
      out.push('');
    }
    if (l.marks.length) {
      out.push('Changes during the run:', '');
      for (const m of l.marks) out.push(`- ${formatDurationMs(Math.round(m.tMs))}: ${md(m.text)}`);
      out.push('');
    }
    if (l.aborted) out.push(`aborted: ${md(l.aborted)}`, '');
    for (const p of l.partial ?? []) out.push(`partial results: ${md(p)}`, '');
  }
  if (report.error) out.push(`run error: ${md(report.error.message)}`, '');
  return out.join('\n') + '\n';
}
