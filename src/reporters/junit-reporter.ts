import type { SerializedError } from '../errors';
import type { ScenarioResult } from '../run/scenario-types';
import type { ReporterOptions } from './index';
import { failuresOf, messageWithLocation, tracebackOf, type RunReport } from './run-report';

// Characters XML 1.0 cannot carry at all, even escaped.
const INVALID_XML_CHARS = /[^\t\n\r\u0020-\uD7FF\uE000-\uFFFD\u{10000}-\u{10FFFF}]/gu;

export function escapeXmlText(s: string): string {
  return s.replace(INVALID_XML_CHARS, '\uFFFD').replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

export function escapeXmlAttr(s: string): string {
  return escapeXmlText(s).replace(/"/g, '&quot;').replace(/'/g, '&apos;').replace(/\n/g, '&#10;').replace(/\r/g, '&#13;').replace(/\t/g, '&#9;');
}

function seconds(ms: number): string {
  return (ms / 1000).toFixed(3);
}

interface Case {
  name: string;
  durationMs: number;
  skipped?: boolean;
  failure?: { error?: SerializedError; state: string };
}

/** A testcase per step; a scenario without steps (or failing outside them) gets one named after the scenario. */
function casesOf(r: ScenarioResult): Case[] {
  const failures = failuresOf(r);
  const cases: Case[] = r.steps.map((s) => {
    const c: Case = { name: s.name, durationMs: s.durationMs };
    if (s.state === 'skipped') c.skipped = true;
    if (s.state === 'failed') c.failure = { error: failures.find((f) => f.step === s.name)?.error ?? s.error, state: 'failed' };
    return c;
  });
  const outsideSteps = failures.filter((f) => f.step === undefined);
  if (cases.length === 0) {
    cases.push({ name: r.name, durationMs: r.durationMs, failure: outsideSteps[0] ? { error: outsideSteps[0].error, state: r.state } : undefined });
  } else if (outsideSteps.length > 0) {
    cases.push({ name: r.name, durationMs: 0, failure: { error: outsideSteps[0].error, state: r.state } });
  }
  return cases;
}

function failureXml(f: NonNullable<Case['failure']>, mask: (s: string) => string): string {
  const message = f.error ? messageWithLocation(f.error) : f.state;
  const body = [message];
  const tb = f.error ? tracebackOf(f.error) : undefined;
  if (tb) body.push(tb);
  const type = f.error?.code ?? f.error?.name ?? f.state;
  return `<failure message="${escapeXmlAttr(mask(message))}" type="${escapeXmlAttr(mask(type))}">${escapeXmlText(mask(body.join('\n')))}</failure>`;
}

/** JUnit XML: <testsuites> for the run, a <testsuite> per scenario, a <testcase> per step. */
export function junitReporter(report: RunReport, opts: ReporterOptions): string {
  const { mask } = opts;
  const a = (s: string) => escapeXmlAttr(mask(s));
  const suites: string[] = [];
  let tests = 0;
  let failures = 0;
  let skipped = 0;
  for (const r of report.results) {
    const cases = casesOf(r);
    const sFailures = cases.filter((c) => c.failure).length;
    const sSkipped = cases.filter((c) => c.skipped).length;
    tests += cases.length;
    failures += sFailures;
    skipped += sSkipped;
    const lines = [
      `  <testsuite name="${a(r.name)}" tests="${cases.length}" failures="${sFailures}" errors="0" skipped="${sSkipped}" time="${seconds(r.durationMs)}" timestamp="${a(r.startedAt)}" file="${a(r.file)}">`,
    ];
    for (const c of cases) {
      const open = `    <testcase name="${a(c.name)}" classname="${a(r.name)}" file="${a(r.file)}" time="${seconds(c.durationMs)}"`;
      if (c.failure) lines.push(`${open}>`, `      ${failureXml(c.failure, mask)}`, '    </testcase>');
      else if (c.skipped) lines.push(`${open}>`, '      <skipped/>', '    </testcase>');
      else lines.push(`${open}/>`);
    }
    lines.push('  </testsuite>');
    suites.push(lines.join('\n'));
  }
  // A load run: a testcase per threshold (and one for an abort), so CI shows which gate failed.
  if (report.load) {
    const file = report.file ?? '';
    const name = report.file ?? 'load';
    const cases = report.load.thresholds.map((t) => ({
      name: `${t.key} ${t.expression}`,
      failure: t.ok ? undefined : `${t.key} ${t.expression}: ${t.observed === undefined ? (t.note ?? 'no samples') : `observed ${t.observed}`}`,
    }));
    if (report.load.aborted) cases.push({ name: 'aborted', failure: `aborted: ${report.load.aborted}` });
    // a partial run is not a failure of the SUT: listed, passing, with what was lost in its name
    for (const [i, p] of (report.load.partial ?? []).entries()) cases.push({ name: `partial results (${i + 1}): ${p}`, failure: undefined });
    if (cases.length) {
      const sFailures = cases.filter((c) => c.failure).length;
      tests += cases.length;
      failures += sFailures;
      const lines = [`  <testsuite name="${a(name)}" tests="${cases.length}" failures="${sFailures}" errors="0" skipped="0" time="${seconds(report.load.durationMs)}" timestamp="${a(report.startedAt)}" file="${a(file)}">`];
      // JUnit has no word for a run that passed on part of its load: the run's state goes with the suite as a property
      if (report.state === 'partial') lines.push('    <properties>', `      <property name="topas.state" value="${a(report.state)}"/>`, '    </properties>');
      for (const c of cases) {
        const open = `    <testcase name="${a(c.name)}" classname="${a(`${name} thresholds`)}" file="${a(file)}" time="0.000"`;
        if (c.failure) lines.push(`${open}>`, `      <failure message="${a(c.failure)}" type="threshold">${escapeXmlText(mask(c.failure))}</failure>`, '    </testcase>');
        else lines.push(`${open}/>`);
      }
      lines.push('  </testsuite>');
      suites.push(lines.join('\n'));
    }
  }
  // A run that failed before any scenario (SUT did not start) still has to fail in CI.
  if (report.error && report.results.length === 0) {
    tests += 1;
    failures += 1;
    suites.push(
      [
        `  <testsuite name="${a(report.app ?? 'topas')}" tests="1" failures="1" errors="0" skipped="0" time="${seconds(report.durationMs)}" timestamp="${a(report.startedAt)}">`,
        `    <testcase name="run" classname="${a(report.app ?? 'topas')}" time="${seconds(report.durationMs)}">`,
        `      ${failureXml({ error: report.error, state: report.state }, mask)}`,
        '    </testcase>',
        '  </testsuite>',
      ].join('\n'),
    );
  }
  const head = `<testsuites name="${a(`topas ${report.runId}`)}" tests="${tests}" failures="${failures}" errors="0" skipped="${skipped}" time="${seconds(report.durationMs)}" timestamp="${a(report.startedAt)}">`;
  return ['<?xml version="1.0" encoding="UTF-8"?>', head, ...suites, '</testsuites>', ''].join('\n');
}
