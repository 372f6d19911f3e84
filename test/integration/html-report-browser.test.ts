import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import { cli, REPO_ROOT } from '../helpers/cli';
import { browserOrSkipReason, CHROMIUM, CHROMIUM_ARGS } from '../helpers/browser';

/**
 * The HTML report of a load run that upgraded a service mid-run and failed a
 * threshold, opened from file:// in headless Chromium with every request
 * that is not file: aborted (fixtures/load/app/report-upgrade.lua, local backend).
 */
const APP_DIR = path.join(REPO_ROOT, 'fixtures', 'load', 'app');
const APP = ['--app', path.join(APP_DIR, 'topas.yaml'), '--backend', 'local'];
const HOSTILE = '<img src=x onerror=alert(1)>';
const browser = browserOrSkipReason();
let out: string;
let runId: string | undefined;
let loadRun: { code: number; stdout: string; stderr: string };

before(async () => {
  if ('skip' in browser) return;
  out = fs.mkdtempSync(path.join(os.tmpdir(), 'topas-html-report-'));
  loadRun = await cli(['load', path.join(APP_DIR, 'report-upgrade.lua'), ...APP, '--reporter', `html:${path.join(out, 'load.html')}`]);
  runId = /run (\S+): /.exec(loadRun.stdout)?.[1];
});

after(() => {
  if (runId) fs.rmSync(path.join(APP_DIR, '.topas', 'runs', runId), { recursive: true, force: true });
  if (out) fs.rmSync(out, { recursive: true, force: true });
});

interface PageFacts {
  drawn: string | null;
  inkPerCanvas: Record<string, number>;
  marks: string;
  failedThresholds: string;
  text: string;
  images: number;
  verdict: string;
  exitCode: string;
}

async function openOffline(file: string): Promise<{ facts: PageFacts; dialogs: string[]; blocked: string[]; errors: string[] }> {
  if ('skip' in browser) throw new Error(browser.skip);
  const b = await browser.chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
  try {
    const context = await b.newContext({ viewport: { width: 1280, height: 1000 } });
    const blocked: string[] = [];
    await context.route('**/*', (route) => {
      const url = route.request().url();
      if (url.startsWith('file:')) return route.continue();
      blocked.push(url);
      return route.abort();
    });
    const page = await context.newPage();
    const dialogs: string[] = [];
    const errors: string[] = [];
    page.on('dialog', (d) => {
      dialogs.push(d.message());
      void d.dismiss();
    });
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(pathToFileURL(file).href);
    await page.waitForSelector('body[data-charts-drawn="4"]', { timeout: 10_000 });
    const facts = await page.evaluate<PageFacts>(`(() => {
      const ink = {};
      for (const c of Array.from(document.querySelectorAll('canvas'))) {
        const px = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let n = 0;
        for (let i = 3; i < px.length; i += 4) if (px[i] !== 0) n++;
        ink[c.id] = n;
      }
      const text = (sel) => Array.from(document.querySelectorAll(sel)).map((e) => e.innerText).join('\\n');
      return {
        drawn: document.body.getAttribute('data-charts-drawn'),
        inkPerCanvas: ink,
        marks: text('#marks tbody tr'),
        failedThresholds: text('#thresholds tr.threshold-failed'),
        text: document.body.innerText,
        images: document.images.length,
        verdict: text('#verdict'),
        exitCode: text('#exit-code'),
      };
    })()`);
    return { facts, dialogs, blocked, errors };
  } finally {
    await b.close();
  }
}

function assertReport(r: Awaited<ReturnType<typeof openOffline>>): void {
  const { facts } = r;
  assert.deepEqual(r.errors, [], 'no script error');
  assert.deepEqual(r.blocked, [], 'nothing but the file itself was requested');
  assert.deepEqual(r.dialogs, [], 'no dialog fired');
  assert.equal(facts.verdict, 'failed');
  assert.equal(facts.exitCode, '4');
  // each chart drew: axes, grid and lines put ink on a good part of the canvas
  for (const id of ['chart-rate', 'chart-latency', 'chart-errors', 'chart-vus']) {
    assert.ok((facts.inkPerCanvas[id] ?? 0) > 2000, `${id}: ${facts.inkPerCanvas[id]} painted pixels`);
  }
  assert.match(facts.marks, /SUT\s+sut\.applyService\(api, \{"version":"1\.1\.0"\}\)/);
  assert.match(facts.failedThresholds, /failed\s+http_req_duration\s+p\(95\)<0\.001/);
  assert.ok(facts.text.includes(HOSTILE), 'the script value shows as text');
  assert.equal(facts.images, 0, 'and made no element');
  assert.match(facts.text, /api\s+service\s+1\.1\.0\s+1\s+ready/);
}

describe('HTML report in headless Chromium', { skip: 'skip' in browser ? browser.skip : false }, () => {
  test('load --reporter html: offline, charts drawn, the upgrade marked, the failed threshold shown, script values inert', async () => {
    assert.equal(loadRun.code, 4, loadRun.stderr);
    assert.ok(runId, loadRun.stdout);
    assertReport(await openOffline(path.join(out, 'load.html')));
  });

  test('topas report <id> --format html renders the same stored run', async () => {
    const r = await cli(['report', runId!, '--app', path.join(APP_DIR, 'topas.yaml'), '--format', 'html', '-o', path.join(out, 'report.html')]);
    assert.equal(r.code, 0, r.stderr);
    assertReport(await openOffline(path.join(out, 'report.html')));
  });
});
