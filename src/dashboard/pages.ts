import { esc } from '../reporters/html-reporter';
import { REPORT_CSS } from '../reporters/html-assets';
import { formatDurationMs } from '../util/duration';
import { LOGS_SCRIPT, QUEUE_SCRIPT } from './client-script';
import { DISPLAY_STATES, type ListedRun, type Page, type QueueView, type RunFilter, type TestTrend } from './run-index';

/**
 * The dashboard's own pages, rendered on the server: every value from a run
 * record (names, messages, ids) goes through esc(); the only scripts are the
 * two inline ones of client-script.ts, allowed by a per-response nonce.
 */

const DASH_CSS = `
nav{display:flex;gap:18px;align-items:baseline;padding:10px 24px;border-bottom:1px solid var(--line);background:var(--panel)}
nav b{font-size:15px}nav a{color:var(--accent);text-decoration:none}nav a.here{font-weight:700;color:var(--fg)}
form.filters{display:flex;flex-wrap:wrap;gap:10px;align-items:end;margin:10px 0 14px}
form.filters label{display:flex;flex-direction:column;font-size:12px;color:var(--muted)}
input,select,button{font:inherit;padding:3px 6px}
a{color:var(--accent)}
.pager{margin:10px 0;display:flex;gap:14px;align-items:baseline}
.s-Passed{color:var(--ok);font-weight:600}.s-Failed,.s-Error{color:var(--bad);font-weight:600}.s-Running,.s-Pending,.s-Partial{color:var(--warn);font-weight:600}
.log{background:var(--panel);border:1px solid var(--line);border-radius:4px;padding:8px 10px;font:12px/1.45 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;white-space:pre-wrap;word-break:break-word;min-height:80px}
.log .lvl-warn{color:var(--warn)}.log .lvl-error{color:var(--bad)}
svg.spark{vertical-align:middle}
`;

export interface Layout {
  title: string;
  here: 'history' | 'queue' | 'compare' | 'logs';
  nonce: string;
  script?: string;
}

export function layout(l: Layout, body: string): string {
  const link = (href: string, id: Layout['here'], text: string) => `<a href="${href}"${l.here === id ? ' class="here"' : ''}>${text}</a>`;
  return [
    '<!doctype html>',
    '<html lang="en"><head><meta charset="utf-8">',
    '<meta name="viewport" content="width=device-width, initial-scale=1">',
    `<title>${esc(l.title)} · topas dashboard</title>`,
    `<style>${REPORT_CSS}${DASH_CSS}</style>`,
    '</head><body>',
    `<nav><b>topas dashboard</b>${link('/', 'history', 'History')}${link('/queue', 'queue', 'Queue')}${link('/compare', 'compare', 'Compare')}<a href="/metrics">Metrics</a></nav>`,
    `<main>${body}</main>`,
    l.script ? `<script nonce="${esc(l.nonce)}">${l.script}</script>` : '',
    '</body></html>',
    '',
  ].join('\n');
}

function fmtDuration(ms: number | undefined): string {
  return typeof ms === 'number' && ms > 0 ? formatDurationMs(ms) : '';
}

function fmtStarted(iso: string | undefined): string {
  return iso ? iso.replace('T', ' ').replace(/\.\d+Z$/, 'Z') : '';
}

function query(filter: RunFilter, extra: Record<string, string | number> = {}): string {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries({ ...filter, ...extra })) if (v !== undefined && v !== '') p.set(k, String(v));
  const s = p.toString();
  return s ? `?${s}` : '';
}

function stateCell(r: ListedRun): string {
  const died = r.state === 'Error' && (r.rawState === 'pending' || r.rawState === 'running');
  const note = r.rawState === 'timedOut' ? ' (timed out)' : r.rawState === 'interrupted' ? ' (interrupted)' : died ? ' (runner died)' : '';
  return `<td class="state s-${esc(r.state)}">${esc(r.state)}${esc(note)}</td>`;
}

function filtersForm(f: RunFilter): string {
  const opt = (value: string, text: string, cur: string | undefined) => `<option value="${esc(value)}"${(cur ?? '') === value ? ' selected' : ''}>${esc(text)}</option>`;
  return `<form class="filters" method="get" action="/" id="filters">
<label>state<select name="state">${opt('', 'any', f.state)}${DISPLAY_STATES.map((s) => opt(s.toLowerCase(), s, f.state?.toLowerCase())).join('')}</select></label>
<label>test, app or id<input name="name" value="${esc(f.name ?? '')}" placeholder="tests/smoke.lua"></label>
<label>kind<select name="kind">${opt('', 'any', f.kind)}${opt('run', 'run', f.kind)}${opt('load', 'load', f.kind)}</select></label>
<label>from<input type="date" name="from" value="${esc(f.from ?? '')}"></label>
<label>to<input type="date" name="to" value="${esc(f.to ?? '')}"></label>
<button type="submit">filter</button> <a href="/">clear</a></form>`;
}

/** A bar per finished run, oldest first: height is its duration, colour its outcome. */
function sparkline(t: TestTrend): string {
  if (!t.durationsMs.length) return '';
  const w = 8;
  const h = 28;
  const max = Math.max(...t.durationsMs, 1);
  const bars = t.durationsMs
    .map((d, i) => {
      const bh = Math.max(1, Math.round((d / max) * h));
      return `<rect x="${i * w}" y="${h - bh}" width="${w - 1}" height="${bh}" fill="${t.outcomes[i] ? '#17803d' : '#c62828'}"><title>${esc(formatDurationMs(d))}</title></rect>`;
    })
    .join('');
  return `<svg class="spark" width="${t.durationsMs.length * w}" height="${h}" role="img" aria-label="durations">${bars}</svg>`;
}

function trendsTable(list: TestTrend[]): string {
  if (!list.length) return '<p class="empty">no runs</p>';
  const rows = list.map((t) => {
    const avg = t.durationsMs.length ? t.durationsMs.reduce((a, b) => a + b, 0) / t.durationsMs.length : undefined;
    const rate = t.passRate === undefined ? '' : `${(t.passRate * 100).toFixed(0)}%`;
    return `<tr><td>${esc(t.name)}</td><td>${esc(t.kind)}</td><td class="num">${t.runs}</td><td class="num ok">${t.passed}</td><td class="num bad">${t.failed}</td><td class="num pass-rate">${esc(rate)}</td><td class="num">${esc(fmtDuration(avg))}</td><td>${sparkline(t)}</td><td class="s-${esc(t.lastState)}">${esc(t.lastState)}</td></tr>`;
  });
  return `<table id="trends"><thead><tr><th>test</th><th>kind</th><th>runs</th><th>passed</th><th>failed</th><th>pass rate</th><th>avg duration</th><th>duration trend (last ${30})</th><th>last</th></tr></thead><tbody>${rows.join('')}</tbody></table>`;
}

export function historyPage(opts: { nonce: string; filter: RunFilter; page: Page<ListedRun>; trends: TestTrend[]; dir: string }): string {
  const { page, filter } = opts;
  const rows = page.items.map(
    (r) =>
      `<tr data-run-id="${esc(r.runId)}"><td><input type="radio" name="a" value="${esc(r.runId)}" aria-label="A"></td><td><input type="radio" name="b" value="${esc(r.runId)}" aria-label="B"></td><td class="run-id"><a href="/runs/${encodeURIComponent(r.runId)}">${esc(r.runId)}</a></td>${stateCell(r)}<td>${esc(r.kind)}</td><td class="test-name">${esc(r.name)}</td><td>${esc(r.app ?? '')}</td><td>${esc(fmtStarted(r.startedAt))}</td><td class="num">${esc(fmtDuration(r.durationMs))}</td><td>${esc(r.result)}</td><td><a href="/runs/${encodeURIComponent(r.runId)}/logs">log</a></td></tr>`,
  );
  const finished = opts.trends.reduce((n, t) => n + t.passed + t.failed, 0);
  const passed = opts.trends.reduce((n, t) => n + t.passed, 0);
  const pager = `<div class="pager" id="pager">${page.page > 1 ? `<a href="/${esc(query(filter, { page: page.page - 1 }))}" rel="prev">← newer</a>` : ''}<span>page ${page.page} of ${page.pages} · ${page.total} run(s)</span>${
    page.page < page.pages ? `<a href="/${esc(query(filter, { page: page.page + 1 }))}" rel="next">older →</a>` : ''
  }</div>`;
  const body = [
    `<h1>Run history</h1><p class="meta">runs stored in ${esc(opts.dir)}${finished ? ` · <span id="pass-rate">${((passed / finished) * 100).toFixed(0)}% passed</span> (${passed} of ${finished} finished runs)` : ''}</p>`,
    filtersForm(filter),
    `<form method="get" action="/compare" id="compare-form">`,
    rows.length
      ? `<table id="runs"><thead><tr><th>A</th><th>B</th><th>run</th><th>state</th><th>kind</th><th>test</th><th>app</th><th>started (UTC)</th><th>duration</th><th>result</th><th></th></tr></thead><tbody>${rows.join('')}</tbody></table>`
      : '<p class="empty" id="no-runs">no runs match</p>',
    rows.length > 1 ? '<p><button type="submit">compare A with B</button></p>' : '',
    '</form>',
    pager,
    '<h2>Per test: pass rate and duration trend</h2>',
    trendsTable(opts.trends),
  ].join('\n');
  return layout({ title: 'History', here: 'history', nonce: opts.nonce }, body);
}

function queueRows(runs: ListedRun[], withPosition: boolean): string {
  return runs
    .map(
      (r, i) =>
        `<tr data-run-id="${esc(r.runId)}">${withPosition ? `<td class="num">${i + 1}</td>` : ''}<td class="run-id"><a href="/runs/${encodeURIComponent(r.runId)}/logs">${esc(r.runId)}</a></td><td class="s-${esc(r.state)}">${esc(r.state)}</td><td>${esc(r.app ?? '')}</td><td>${esc(r.name)}</td><td>${esc(fmtStarted(r.startedAt))}</td></tr>`,
    )
    .join('');
}

export function queuePage(opts: { nonce: string; queue: QueueView }): string {
  const q = opts.queue;
  const body = [
    '<h1>Queue</h1>',
    `<p class="meta" id="queue-limit">limit: <b>${q.limitPerApp}</b> running run per app; scheduled runs of one app wait for the one before (<code>topas test schedule</code>)</p>`,
    `<p id="queue-counts">${q.running.length} running, ${q.pending.length} pending</p>`,
    '<h2>Running</h2>',
    `<table id="queue-running"><thead><tr><th>run</th><th>state</th><th>app</th><th>test</th><th>queued (UTC)</th></tr></thead><tbody>${queueRows(q.running, false)}</tbody></table>`,
    '<h2>Pending</h2>',
    `<table id="queue-pending"><thead><tr><th>#</th><th>run</th><th>state</th><th>app</th><th>test</th><th>queued (UTC)</th></tr></thead><tbody>${queueRows(q.pending, true)}</tbody></table>`,
    '<p class="meta" id="queue-live">live: updates as runs start and end</p>',
  ].join('\n');
  return layout({ title: 'Queue', here: 'queue', nonce: opts.nonce, script: QUEUE_SCRIPT }, body);
}

export function logsPage(opts: { nonce: string; run: ListedRun }): string {
  const r = opts.run;
  const body = [
    `<h1>Log of <a href="/runs/${encodeURIComponent(r.runId)}">${esc(r.runId)}</a></h1>`,
    `<p class="meta"><span>test ${esc(r.name)}</span><span>state <b id="run-state" class="s-${esc(r.state)}">${esc(r.state)}</b></span><span id="log-status">connecting…</span></p>`,
    `<div id="log" class="log" data-run-id="${esc(r.runId)}"></div>`,
  ].join('\n');
  return layout({ title: `Log ${r.runId}`, here: 'logs', nonce: opts.nonce, script: LOGS_SCRIPT }, body);
}

export function comparePickPage(opts: { nonce: string; runs: ListedRun[]; a?: string; b?: string; maxRegression: string }): string {
  const options = (cur: string | undefined) => opts.runs.map((r) => `<option value="${esc(r.runId)}"${cur === r.runId ? ' selected' : ''}>${esc(`${r.runId}  ${r.state}  ${r.name}`)}</option>`).join('');
  const body = [
    '<h1>Compare two runs</h1>',
    `<form class="filters" method="get" action="/compare"><label>A (baseline)<select name="a">${options(opts.a)}</select></label><label>B (measured against A)<select name="b">${options(opts.b)}</select></label><label>max regression<input name="max" value="${esc(opts.maxRegression)}" size="6"></label><button type="submit">compare</button></form>`,
    '<p class="meta">the same page as <code>topas compare A B --format html</code></p>',
  ].join('\n');
  return layout({ title: 'Compare', here: 'compare', nonce: opts.nonce }, body);
}

export function messagePage(opts: { nonce: string; status: number; title: string; message: string }): string {
  return layout({ title: opts.title, here: 'history', nonce: opts.nonce }, `<h1>${esc(opts.title)}</h1><p id="message">${esc(opts.message)}</p>`);
}
