import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { captureIo, cli, REPO_ROOT } from '../helpers/cli';
import { browserOrSkipReason, CHROMIUM, CHROMIUM_ARGS, type Browser, type Page } from '../helpers/browser';
import { startDashboard, type Dashboard } from '../../src/dashboard/server';
import { RunRecordStore } from '../../src/run/run-record';

/**
 * The dashboard in headless Chromium: three runs scheduled against one app
 * (`topas test schedule`; scheduled runs of one app run one at a time) while
 * the queue page is open, the log page of a run opened while it still
 * waits, then the history. Set TOPAS_DASHBOARD_SCREENSHOT=docs/dashboard.png
 * to write the history page's screenshot.
 */
const browser = browserOrSkipReason();
let dir: string | undefined;
let dashboard: Dashboard | undefined;
let chromium: Browser | undefined;
let scheduled: string[] = [];

interface QueueSnapshot {
  running: string[];
  pending: string[];
}

const FINAL = new Set(['passed', 'failed', 'error', 'timedOut', 'interrupted']);

after(async () => {
  await chromium?.close();
  await dashboard?.close();
  if (!dir) return;
  // the scheduled runs are short (8 ticks of 200 ms): let them finish before their folder goes
  const store = new RunRecordStore(dir);
  for (let i = 0; i < 600 && scheduled.some((id) => !FINAL.has(String(store.readRun(id).state))); i++) await new Promise((r) => setTimeout(r, 100));
  fs.rmSync(dir, { recursive: true, force: true });
});

function scratchApp(): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'topas-dashboard-browser-'));
  for (const f of ['ticks.lua', 'pass.lua', 'fail.lua']) fs.copyFileSync(path.join(REPO_ROOT, 'fixtures', 'cli', 'no-app', f), path.join(d, f));
  fs.writeFileSync(path.join(d, 'server.js'), "require('node:http').createServer((q, s) => s.end('ok')).listen(Number(process.env.PORT), '127.0.0.1');\n");
  fs.writeFileSync(path.join(d, 'topas.yaml'), 'name: queued\nservices:\n  - name: web\n    command: ["node", "server.js"]\n    port: 8080\n    ready: { http: / }\n');
  return d;
}

/** page.waitForFunction evaluates its string with eval, which the dashboard's CSP forbids: poll through evaluate instead */
async function waitUntil(page: Page, expression: string, timeoutMs: number): Promise<void> {
  for (let waited = 0; waited < timeoutMs; waited += 100) {
    if (await page.evaluate<boolean>(expression)) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${expression}`);
}

async function tableRows(page: Page): Promise<Array<{ id: string; state: string; name: string }>> {
  return page.evaluate(`Array.from(document.querySelectorAll('#runs tbody tr')).map((tr) => ({ id: tr.getAttribute('data-run-id'), state: tr.querySelector('td.state').innerText, name: tr.querySelector('td.test-name').innerText }))`);
}

describe('topas dashboard in headless Chromium', { skip: 'skip' in browser ? browser.skip : false }, () => {
  test('the queue changes live as three runs with a limit of one go through; a waiting run streams its log in order without a reload; history shows the states', async () => {
    if ('skip' in browser) return;
    dir = scratchApp();
    dashboard = await startDashboard({ io: captureIo({ cwd: dir }).io });
    chromium = await browser.chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
    const context = await chromium.newContext({ viewport: { width: 1360, height: 900 } });
    const errors: string[] = [];
    const queuePage = await context.newPage();
    queuePage.on('pageerror', (e) => errors.push(e.message));
    // the printed URL: the token becomes a cookie and leaves the address bar
    await queuePage.goto(dashboard.url);
    assert.equal(queuePage.url(), `http://127.0.0.1:${dashboard.port}/`);
    await queuePage.goto(`http://127.0.0.1:${dashboard.port}/queue`);
    await queuePage.waitForSelector('body[data-queue-updates]', { timeout: 10_000 });
    await queuePage.evaluate(`(() => {
      window.__marker = 'same page';
      window.__seen = [];
      const ids = (sel) => Array.from(document.querySelectorAll(sel + ' tbody tr')).map((tr) => tr.getAttribute('data-run-id'));
      const record = () => window.__seen.push({ running: ids('#queue-running'), pending: ids('#queue-pending') });
      new MutationObserver(record).observe(document.getElementById('queue-counts'), { childList: true, characterData: true, subtree: true });
      record();
    })()`);

    for (let i = 0; i < 3; i++) {
      const s = await cli(['test', 'schedule', 'ticks.lua', '--backend', 'local'], { cwd: dir });
      assert.equal(s.code, 0, s.stderr);
      scheduled.push(s.stdout.trim());
    }
    const first = scheduled[0];

    // the log of a run that still waits for its turn (the runners race for the app's lock, so ask the page which)
    const waiting = await queuePage.evaluate<string[]>(`Array.from(document.querySelectorAll('#queue-pending tbody tr')).map((tr) => tr.getAttribute('data-run-id'))`);
    const followed = waiting[waiting.length - 1] ?? scheduled[2];
    const logPage = await context.newPage();
    logPage.on('pageerror', (e) => errors.push(e.message));
    await logPage.goto(`http://127.0.0.1:${dashboard.port}/runs/${followed}/logs`);
    await logPage.evaluate(`(() => {
      window.__marker = 'same page';
      window.__batches = 0;
      new MutationObserver(() => window.__batches++).observe(document.getElementById('log'), { childList: true });
    })()`);

    await waitUntil(
      queuePage,
      `window.__seen.some((s) => s.running.length + s.pending.length > 0) && window.__seen[window.__seen.length - 1].running.length + window.__seen[window.__seen.length - 1].pending.length === 0`,
      120_000,
    );
    const seen = await queuePage.evaluate<QueueSnapshot[]>('window.__seen');
    assert.equal(await queuePage.evaluate<string>('window.__marker'), 'same page', 'the queue page was never reloaded');
    // a limit of one: never two running; the other two waited, shown in the order they were queued; each went through
    assert.ok(seen.every((s) => s.running.length <= 1), JSON.stringify(seen));
    assert.ok(seen.some((s) => s.running.length === 1 && s.pending.length === 2), JSON.stringify(seen));
    assert.ok(seen.some((s) => s.running.length === 1 && s.pending.length === 1), JSON.stringify(seen));
    for (const s of seen) assert.deepEqual(s.pending, scheduled.filter((id) => s.pending.includes(id)), 'pending in queue order');
    for (const id of scheduled) assert.ok(seen.some((s) => s.running.includes(id)), `${id} was seen running`);

    await logPage.waitForSelector('body[data-log-ended]', { timeout: 120_000 });
    const log = await logPage.evaluate<{ lines: string[]; state: string; marker: string; batches: number }>(`({
      lines: Array.from(document.querySelectorAll('#log .line')).map((d) => d.textContent),
      state: document.body.getAttribute('data-log-ended'),
      marker: window.__marker,
      batches: window.__batches,
    })`);
    assert.equal(log.marker, 'same page', 'the log page was never reloaded');
    assert.equal(log.state, 'Passed');
    const ticks = log.lines.filter((l) => /\[ticks\.lua\] tick \d/.test(l)).map((l) => Number(/tick (\d)/.exec(l)![1]));
    assert.deepEqual(ticks, [1, 2, 3, 4, 5, 6, 7, 8], `every line once, in order: ${JSON.stringify(log.lines)}`);
    assert.ok(log.lines.findIndex((l) => /standing up app queued/.test(l)) < log.lines.findIndex((l) => /tick 1/.test(l)));
    assert.ok(log.batches >= 2, `the lines arrived as the run wrote them, in ${log.batches} update(s)`);

    // two more finished runs, so the history has a failure too
    assert.equal((await cli(['run', 'pass.lua', '--backend', 'local'], { cwd: dir })).code, 0);
    assert.equal((await cli(['run', 'fail.lua', '--backend', 'local'], { cwd: dir })).code, 1);
    const history = await context.newPage();
    history.on('pageerror', (e) => errors.push(e.message));
    await history.goto(`http://127.0.0.1:${dashboard.port}/`);
    const rows = await tableRows(history);
    const byId = new Map(rows.map((r) => [r.id, r]));
    for (const id of scheduled) assert.equal(byId.get(id)?.state, 'Passed', id);
    assert.deepEqual(rows.map((r) => `${r.name} ${r.state}`), ['fail.lua Failed', 'pass.lua Passed', 'ticks.lua Passed', 'ticks.lua Passed', 'ticks.lua Passed']);
    const trend = await history.evaluate<string>(`Array.from(document.querySelectorAll('#trends tbody tr')).map((tr) => tr.innerText.replace(/\\s+/g, ' ')).join('\\n')`);
    assert.match(trend, /ticks\.lua run 3 3 0 100%/);
    assert.match(trend, /fail\.lua run 1 0 1 0%/);
    if (process.env.TOPAS_DASHBOARD_SCREENSHOT) await history.screenshot({ path: path.resolve(REPO_ROOT, process.env.TOPAS_DASHBOARD_SCREENSHOT), fullPage: true });
    await history.goto(`http://127.0.0.1:${dashboard.port}/?state=failed`);
    assert.deepEqual((await tableRows(history)).map((r) => r.name), ['fail.lua']);
    assert.deepEqual(errors, [], 'no script error');

    // a browser without the cookie: the page and the WebSocket are refused
    const stranger = await (await chromium.newContext()).newPage();
    const res = await stranger.goto(`http://127.0.0.1:${dashboard.port}/`);
    assert.equal(res?.status(), 401);
    const body = await stranger.evaluate<string>('document.body.innerText');
    assert.ok(!scheduled.some((id) => body.includes(id)), 'no run id in the refusal');
    const ws = await stranger.evaluate<{ opened: boolean; messages: number }>(`new Promise((resolve) => {
      const ws = new WebSocket('ws://127.0.0.1:${dashboard.port}/ws/logs/${first}');
      let opened = false, messages = 0;
      ws.onopen = () => { opened = true; };
      ws.onmessage = () => { messages++; };
      ws.onclose = () => resolve({ opened, messages });
    })`);
    assert.deepEqual(ws, { opened: false, messages: 0 });
  });
});
