import type { SerializedError } from '../errors';
import { maskDeep, maskSecrets } from '../spec/secrets';
import type { CheckTally } from '../run/scenario-types';
import { formatDurationMs } from '../util/duration';
import { REPORT_CSS, REPORT_SCRIPT } from './html-assets';
import type { ReporterOptions } from './index';
import { STATE_TEXT, countScenarios, failuresOf, messageWithLocation, tracebackOf, type RunReport } from './run-report';

/**
 * One self-contained HTML file: styles and the chart script inline, data in a
 * JSON block, no request to anywhere (a CSP that allows nothing from outside
 * says so to the browser too). Every string that came from the SUT, the
 * script or the user is masked, then HTML-escaped; the JSON block escapes
 * `<`, `>` and `&` so nothing in it can close the script element.
 */
export function htmlReporter(input: RunReport, opts: ReporterOptions): string {
  // the run's mask, and every secret registered in this process (a run without an app masks nothing itself)
  const report = maskDeep(input, (s: string) => maskSecrets(opts.mask(s)));
  const state = report.state;
  const title = `topas ${report.kind === 'load' ? 'load' : 'run'} ${report.runId}`;
  const body: string[] = [];
  body.push(`<h1><span class="verdict v-${esc(state)}" id="verdict">${esc(STATE_TEXT[state] ?? state)}</span>${esc(title)}</h1>`);
  const meta: string[] = [];
  if (report.exitCode !== undefined) meta.push(`exit code <b id="exit-code">${report.exitCode}</b>`);
  if (report.app) meta.push(`app ${esc(report.app)}`);
  if (report.backend) meta.push(`backend ${esc(report.backend)}`);
  if (report.file) meta.push(`script ${esc(report.file)}`);
  if (report.startedAt) meta.push(`started ${esc(report.startedAt)}`);
  meta.push(`duration ${esc(formatDurationMs(report.durationMs))}`);
  body.push(`<div class="meta">${meta.map((m) => `<span>${m}</span>`).join('')}</div>`);
  if (report.error) body.push(`<h2>Run error</h2>${errorBlock(report.error)}`);
  if (report.load) body.push(loadSection(report));
  if (report.kind !== 'load' || report.results.length) body.push(scenarioSection(report));
  if (report.playbooks?.length) body.push(playbookSection(report));
  if (report.sut?.length) body.push(sutSection(report));
  if (report.logs?.length) {
    body.push(
      `<h2>Log</h2><details><summary>last ${report.logs.length} line(s)</summary><pre>${report.logs
        .map((l) => `${esc(new Date(l.ts).toISOString().slice(11, 23))} [${esc(l.source)}] ${l.level === 'info' ? '' : `${esc(l.level.toUpperCase())} `}${esc(l.message)}`)
        .join('\n')}</pre></details>`,
    );
  }
  body.push(`<footer>written by topas; opens offline, no data leaves this file</footer>`);
  // figures to 3 decimals: an hour of seconds stays small
  const data = report.load ? { load: { durationMs: report.load.durationMs, points: report.load.points.map(roundPoint), marks: report.load.marks } } : {};
  return [
    '<!doctype html>',
    '<html lang="en"><head><meta charset="utf-8">',
    `<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:">`,
    '<meta name="viewport" content="width=device-width, initial-scale=1">',
    `<title>${esc(title)}</title>`,
    `<style>${REPORT_CSS}</style>`,
    '</head><body><main>',
    ...body,
    '</main>',
    `<script type="application/json" id="topas-data">${jsonForScript(data)}</script>`,
    `<script>${REPORT_SCRIPT}</script>`,
    '</body></html>',
    '',
  ].join('\n');
}

export function esc(s: unknown): string {
  return String(s ?? '').replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
}

/** JSON that can sit inside <script> without ending it or starting a comment. */
function jsonForScript(v: unknown): string {
  return JSON.stringify(v)
    .replace(/</g, '\\u003c')
    .replace(/>/g, '\\u003e')
    .replace(/&/g, '\\u0026')
    .replace(/\u2028/g, '\\u2028')
    .replace(/\u2029/g, '\\u2029');
}

function roundPoint<T extends object>(p: T): T {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(p)) out[k] = typeof v === 'number' && !Number.isInteger(v) ? Math.round(v * 1000) / 1000 : v;
  return out as T;
}

function num(v: number | null | undefined, digits = 2): string {
  if (v === null || v === undefined || !Number.isFinite(v)) return '';
  return Number.isInteger(v) ? String(v) : v.toFixed(digits);
}

function checksText(checks: readonly CheckTally[]): string {
  if (!checks.length) return '';
  let p = 0;
  let f = 0;
  for (const c of checks) {
    p += c.passed;
    f += c.failed;
  }
  return f ? `${p} passed, <span class="bad">${f} failed</span>` : `${p} passed`;
}

function errorBlock(err: SerializedError): string {
  const parts = [`<div>${err.location ? `<span class="loc">${esc(err.location)}</span> ` : ''}${esc(err.location ? err.message : messageWithLocation(err))}</div>`];
  for (const p of err.problems ?? []) parts.push(`<div>${esc(p.path)}: ${esc(p.message)}</div>`);
  if (err.hint) parts.push(`<div class="meta">hint: ${esc(err.hint)}</div>`);
  const tb = tracebackOf(err);
  if (tb) parts.push(`<pre>${esc(tb)}</pre>`);
  return parts.join('');
}

function scenarioSection(report: RunReport): string {
  const counts = countScenarios(report.results);
  const rows: string[] = [];
  for (const r of report.results) {
    const failure = failuresOf(r).find((f) => !f.step && f.error)?.error;
    rows.push(
      `<tr class="scenario"><td><b>${esc(r.name)}</b> <span class="meta">${esc(r.file)}</span></td><td class="s-${esc(r.state)}">${esc(STATE_TEXT[r.state])}</td><td class="num">${esc(formatDurationMs(r.durationMs))}</td><td>${checksText(r.checks)}</td><td>${failure ? errorBlock(failure) : ''}</td></tr>`,
    );
    for (const s of r.steps) {
      const err = s.state === 'failed' ? (s.error ?? r.error) : undefined;
      rows.push(
        `<tr class="step"><td>${esc(s.name)}</td><td class="s-${esc(s.state)}">${esc(STATE_TEXT[s.state])}</td><td class="num">${s.state === 'skipped' ? '' : esc(formatDurationMs(s.durationMs))}</td><td>${checksText(s.checks)}</td><td>${err ? errorBlock(err) : ''}</td></tr>`,
      );
    }
  }
  const summary = counts.total === 0 ? 'no scenarios ran' : `${counts.passed} passed, ${counts.failed} failed of ${counts.total}`;
  return `<h2>Scenarios</h2><p id="scenario-summary">${esc(summary)}</p>${
    rows.length ? `<table id="scenarios"><thead><tr><th>scenario / step</th><th>state</th><th>duration</th><th>checks</th><th>failure (Lua location)</th></tr></thead><tbody>${rows.join('')}</tbody></table>` : ''
  }`;
}

function playbookSection(report: RunReport): string {
  const rows = (report.playbooks ?? []).map(
    (pb) =>
      `<tr><td>${esc(pb.name)}</td><td class="s-${esc(pb.state)}">${esc(STATE_TEXT[pb.state])}</td><td>${pb.roles.map((r) => `${esc(r.name)} ${r.ok}/${r.total}`).join(', ')}</td><td>${
        pb.firstFailure ? `${esc(pb.firstFailure.instance)}${pb.firstFailure.error ? `: ${errorBlock(pb.firstFailure.error)}` : ''}` : ''
      }</td></tr>`,
  );
  return `<h2>Playbooks</h2><table><thead><tr><th>playbook</th><th>state</th><th>roles ok/total</th><th>first failure</th></tr></thead><tbody>${rows.join('')}</tbody></table>`;
}

function loadSection(report: RunReport): string {
  const load = report.load!;
  const out: string[] = ['<h2>Load</h2>'];
  if (load.executor) out.push(`<p class="meta">${esc(load.executor)}, ${esc(formatDurationMs(load.durationMs))} of load</p>`);
  if (load.aborted) out.push(`<p class="bad">aborted: ${esc(load.aborted)}</p>`);
  for (const p of load.partial ?? []) out.push(`<p class="bad">partial results: ${esc(p)}</p>`);
  if (load.baselineOk === false) out.push(`<p class="bad">regressed against the baseline</p>`);
  const chart = (id: string, name: string) => `<div class="chart"><h3>${esc(name)}</h3><div class="legend"></div><canvas id="${id}" role="img" aria-label="${esc(name)}"></canvas></div>`;
  if (load.points.length) {
    out.push(
      `<div class="charts">${chart('chart-rate', 'Iterations per second: achieved vs target')}${chart('chart-latency', 'Request duration p50 / p95 / p99')}${chart('chart-errors', 'Errors per second')}${chart('chart-vus', 'Active VUs')}</div>`,
    );
  } else out.push('<p class="empty">no second of load was recorded</p>');
  out.push('<h3>Changes during the run</h3>');
  if (load.marks.length) {
    out.push(
      `<table id="marks"><thead><tr><th>#</th><th>at</th><th>kind</th><th>change</th></tr></thead><tbody>${load.marks
        .map((m, i) => `<tr class="mark mark-${esc(m.kind)}"><td>${i + 1}</td><td class="num">${esc(formatDurationMs(Math.round(m.tMs)))}</td><td class="mark-${esc(m.kind)}">${m.kind === 'sut' ? 'SUT' : m.kind === 'shape' ? 'shaping' : 'other'}</td><td>${esc(m.text)}</td></tr>`)
        .join('')}</tbody></table>`,
    );
  } else out.push('<p class="empty">none</p>');
  out.push('<h3>Thresholds</h3>');
  if (load.thresholds.length) {
    out.push(
      `<table id="thresholds"><thead><tr><th></th><th>metric</th><th>expression</th><th>observed</th></tr></thead><tbody>${load.thresholds
        .map((t) => `<tr class="${t.ok ? 'threshold-ok' : 'threshold-failed'}"><td class="${t.ok ? 'ok' : 'bad'}">${t.ok ? '✓ passed' : '✗ failed'}</td><td>${esc(t.key)}</td><td>${esc(t.expression)}</td><td class="num">${esc(t.observed === undefined ? (t.note ?? 'no samples') : num(t.observed, 3))}</td></tr>`)
        .join('')}</tbody></table>`,
    );
  } else out.push('<p class="empty">none</p>');
  const metricRows = Object.entries(load.metrics)
    .filter(([, m]) => m.type === 'trend' || m.type === 'rate' || m.type === 'counter')
    .map(([key, m]) => {
      const v = m.values;
      const stats = m.type === 'trend' ? ['avg', 'med', 'p(95)', 'p(99)', 'max'].filter((k) => k in v).map((k) => `${k}=${num(v[k])}`) : Object.entries(v).map(([k, x]) => `${k}=${num(x, 4)}`);
      return `<tr><td>${esc(key)}</td><td>${esc(m.type)}</td><td>${esc(stats.join('  '))}</td></tr>`;
    });
  if (metricRows.length) out.push(`<h3>Metrics</h3><table id="metrics"><thead><tr><th>metric</th><th>type</th><th>values</th></tr></thead><tbody>${metricRows.join('')}</tbody></table>`);
  if (load.errors.length) {
    out.push(`<h3>Iteration errors</h3><table id="iteration-errors"><tbody>${load.errors.map((e) => `<tr><td class="num">${e.count} ×</td><td>${esc(e.message)}</td></tr>`).join('')}</tbody></table>`);
  }
  if (load.summaryText) out.push(`<details><summary>summary as printed</summary><pre>${esc(load.summaryText)}</pre></details>`);
  return out.join('\n');
}

function sutSection(report: RunReport): string {
  const sut = report.sut!;
  const rows = sut.map(
    (s) =>
      `<tr><td>${esc(s.name)}</td><td>${esc(s.kind)}</td><td>${esc(s.version ?? s.image ?? '')}</td><td class="num">${s.replicas}</td><td class="${s.ready ? 'ok' : 'bad'}">${s.ready ? 'ready' : 'not ready'}</td></tr>`,
  );
  const logs = sut
    .filter((s) => s.logExcerpt)
    .map((s) => `<details><summary>${esc(s.name)} log (last lines)</summary><pre>${esc(s.logExcerpt)}</pre></details>`);
  return `<h2>System under test</h2><table id="sut"><thead><tr><th>service</th><th>kind</th><th>version / image</th><th>replicas</th><th>ready</th></tr></thead><tbody>${rows.join('')}</tbody></table>${logs.join('')}`;
}
