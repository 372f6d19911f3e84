import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { htmlReporter } from '../../src/reporters/html-reporter';
import { githubReporter } from '../../src/reporters/github-reporter';
import type { RunReport } from '../../src/reporters/run-report';
import { reportFromRecord } from '../../src/run/record-report';

const HOSTILE = '<img src=x onerror=alert(1)></script><!--';
const noMask = (s: string) => s;

function scenarioRun(): RunReport {
  return {
    runId: 'r1',
    app: 'shop',
    backend: 'local',
    startedAt: '2026-12-02T06:00:00.000Z',
    durationMs: 1234,
    state: 'failed',
    exitCode: 1,
    results: [
      {
        runId: 'r1',
        name: `checkout ${HOSTILE}`,
        file: 'tests/checkout.lua',
        instance: { id: 'checkout', index: 0, count: 1 } as never,
        state: 'failed',
        startedAt: '2026-12-02T06:00:00.000Z',
        durationMs: 1000,
        checks: [{ name: HOSTILE, passed: 1, failed: 1 }],
        steps: [
          { name: 'login', state: 'passed', durationMs: 10, checks: [] },
          { name: `pay, 100%: ${HOSTILE}`, state: 'failed', durationMs: 20, checks: [], error: { name: 'ExpectError', message: `expected 200\ngot 500 ${HOSTILE}`, location: 'tests/checkout.lua:12' } },
        ],
        error: { name: 'ExpectError', message: `expected 200\ngot 500 ${HOSTILE}`, location: 'tests/checkout.lua:12' },
      },
    ],
    sut: [{ name: 'api', kind: 'service', replicas: 2, ready: true, version: '1.1.0', logExcerpt: `GET /pay ${HOSTILE}` }],
    logs: [{ ts: 0, source: 'checkout', level: 'info', message: HOSTILE }],
  };
}

describe('html reporter', () => {
  test('every string from the SUT or the script is escaped; the data block cannot end its script element', () => {
    const html = htmlReporter(scenarioRun(), { color: false, mask: noMask });
    assert.doesNotMatch(html, /<img/);
    assert.doesNotMatch(html, /<!--/);
    assert.equal(html.match(/<\/script>/g)?.length, 2, 'only the two script elements end');
    assert.match(html, /&lt;img src=x onerror=alert\(1\)&gt;/);
    assert.match(html, /<span class="loc">tests\/checkout.lua:12<\/span>/);
    assert.match(html, /<td>1.1.0<\/td><td class="num">2<\/td>/);
    assert.match(html, /Content-Security-Policy" content="default-src 'none'/);
  });

  test('secrets are masked before anything is rendered', () => {
    const report = scenarioRun();
    report.logs![0].message = 'password=hunter22';
    const html = htmlReporter(report, { color: false, mask: (s) => s.replace(/hunter22/g, '***') });
    assert.doesNotMatch(html, /hunter22/);
    assert.match(html, /password=\*\*\*/);
  });

  test('a load record: charts, marks by kind, thresholds; the JSON data block escapes markup', () => {
    const report = reportFromRecord({
      runId: 'l1',
      kind: 'load',
      state: 'failed',
      exitCode: 4,
      load: {
        describe: 'constant arrival rate 10/s for 2.00s',
        durationMs: 2000,
        timeSeries: {
          startMs: 0,
          points: [{ t: 0, targetRate: 10, achievedRate: 10, activeVus: 1, p50Ms: 1, p95Ms: 2, p99Ms: 3, errors: 0, requests: 10, dropped: 0 }],
          markers: [
            { tMs: 500, text: `sut.applyService(api, {"version":"${HOSTILE}"})` },
            { tMs: 900, text: 'sut.applyService done' },
            { tMs: 1000, text: 'shape api: latency 100ms' },
          ],
        },
        thresholds: [{ key: 'http_req_duration', metric: 'http_req_duration', tags: {}, expression: 'p(95)<1', ok: false, observed: 2, abortOnFail: false }],
      },
    } as never);
    assert.deepEqual(report.load!.marks.map((m) => m.kind), ['sut', 'shape']);
    const html = htmlReporter(report, { color: false, mask: noMask });
    assert.match(html, /<canvas id="chart-latency"/);
    assert.match(html, /<tr class="threshold-failed">/);
    const data = /<script type="application\/json" id="topas-data">(.*?)<\/script>/s.exec(html)![1];
    assert.doesNotMatch(data, /[<>]/);
    assert.equal(JSON.parse(data).load.marks[0].text.includes(HOSTILE), true);
  });
});

describe('github reporter', () => {
  test('an ::error at the Lua location of each failed step, data and properties escaped', () => {
    const out = githubReporter(scenarioRun(), { color: false, mask: noMask });
    const lines = out.trim().split('\n');
    assert.equal(lines.length, 1, out);
    assert.equal(lines[0], `::error file=tests/checkout.lua,line=12,title=checkout ${HOSTILE} › pay%2C 100%25%3A ${HOSTILE}::expected 200%0Agot 500 ${HOSTILE}`);
  });

  test('the job summary goes to $GITHUB_STEP_SUMMARY from the injected env, and nowhere without it', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'topas-gh-'));
    try {
      const file = path.join(dir, 'summary.md');
      githubReporter(scenarioRun(), { color: false, mask: noMask, env: { GITHUB_STEP_SUMMARY: file } });
      const md = fs.readFileSync(file, 'utf8');
      assert.match(md, /^### ❌ topas run r1: failed/);
      assert.match(md, /\| checkout &lt;img src=x onerror=alert\(1\)&gt;&lt;\/script&gt;&lt;!-- \| failed \| 1.00s \| pay, 100%: /);
      assert.doesNotMatch(md, /<img/);
      githubReporter(scenarioRun(), { color: false, mask: noMask, env: {} });
      assert.deepEqual(fs.readdirSync(dir), ['summary.md']);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
