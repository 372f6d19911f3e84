import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { cli, REPO_ROOT } from '../helpers/cli';
import { startHttpServer, type TestHttpServer } from '../helpers/http-server';

/** `topas report` and `topas test status` of load runs, and `topas load --reporter` (no app: records land in cwd). */
const SCRIPTS = path.join(REPO_ROOT, 'fixtures', 'load', 'no-app');
let server: TestHttpServer;
let cwd: string;
let passedId: string;

before(async () => {
  cwd = fs.mkdtempSync(path.join(os.tmpdir(), 'topas-report-load-'));
  server = await startHttpServer((_req, res) => res.end('ok'));
  const r = await cli(['load', path.join(SCRIPTS, 'fixed.lua'), '--rate', '20/s', '--duration', '1s', '--json'], { cwd, env: { ...process.env, TARGET: `${server.url}/fixed` } });
  assert.equal(r.code, 0, r.stderr);
  passedId = JSON.parse(r.stdout).runId;
});

after(async () => {
  await server.close();
  fs.rmSync(cwd, { recursive: true, force: true });
});

describe('reports of load runs', () => {
  test('the run record has a schema version and the per-second series with p50/p95/p99', () => {
    const record = JSON.parse(fs.readFileSync(path.join(cwd, '.topas', 'runs', passedId, 'run.json'), 'utf8'));
    assert.equal(record.schemaVersion, 1);
    assert.equal(record.kind, 'load');
    assert.ok(record.load.describe.startsWith('constant arrival rate 20/s'), record.load.describe);
    const p = record.load.timeSeries.points.find((x: { requests: number }) => x.requests > 0);
    assert.ok(p && typeof p.p50Ms === 'number' && typeof p.p99Ms === 'number', JSON.stringify(record.load.timeSeries.points));
  });

  test('topas report <id> of a load run renders it (table, json, html) instead of "holds no scenario results"', async () => {
    const table = await cli(['report', passedId], { cwd });
    assert.equal(table.code, 0, table.stderr);
    assert.match(table.stdout, /constant arrival rate 20\/s/);
    assert.match(table.stdout, /http_req_duration/);
    assert.match(table.stdout, /load passed \(exit 0\)/);
    const json = await cli(['report', passedId, '--format', 'json'], { cwd });
    assert.equal(json.code, 0, json.stderr);
    const report = JSON.parse(json.stdout);
    assert.equal(report.kind, 'load');
    assert.equal(report.exitCode, 0);
    assert.ok(report.load.points.length >= 1);
    const html = await cli(['report', passedId, '--format', 'html', '-o', 'r.html'], { cwd });
    assert.equal(html.code, 0, html.stderr);
    const text = fs.readFileSync(path.join(cwd, 'r.html'), 'utf8');
    assert.match(text, /<canvas id="chart-rate"/);
    assert.match(text, /id="verdict">passed</);
    // self-contained: nothing is loaded from anywhere
    assert.doesNotMatch(text, /<(script|link|img)[^>]+(src|href)=/i);
  });

  test('topas test status of a load run says how the load went, not "0/0 scenario(s) passed"', async () => {
    const r = await cli(['test', 'status', passedId, '--json'], { cwd });
    assert.equal(r.code, 0, r.stderr);
    const s = JSON.parse(r.stdout);
    assert.doesNotMatch(s.result, /scenario/);
    assert.match(s.result, /^passed: load, 20 iteration\(s\) at [\d.]+\/s, 20 request\(s\), p95 [\d.]+ms$/);
  });

  test('--reporter github: an annotation per failed threshold, the job summary appended to $GITHUB_STEP_SUMMARY', async () => {
    const summary = path.join(cwd, 'summary.md');
    fs.writeFileSync(summary, 'before\n');
    const r = await cli(
      ['load', path.join(SCRIPTS, 'fixed.lua'), '--rate', '20/s', '--duration', '1s', '--threshold', 'http_req_duration:p(95)<0.000001', '--reporter', 'summary', '--reporter', 'github', '--reporter', 'html:out/load.html'],
      { cwd, env: { ...process.env, TARGET: `${server.url}/fixed`, GITHUB_STEP_SUMMARY: summary } },
    );
    assert.equal(r.code, 4, r.stderr);
    const file = path.relative(cwd, path.join(SCRIPTS, 'fixed.lua'));
    assert.ok(r.stdout.includes(`::error file=${file},title=threshold http_req_duration failed::http_req_duration p(95)<0.000001: observed `), r.stdout);
    const md = fs.readFileSync(summary, 'utf8');
    assert.ok(md.startsWith('before\n### ❌ topas load '), md);
    assert.match(md, /\| http_req_duration \| `p\(95\)<0.000001` \| [\d.]+ \| ❌ failed \|/);
    const html = fs.readFileSync(path.join(cwd, 'out', 'load.html'), 'utf8');
    assert.match(html, /class="threshold-failed"/);
    // the same run as JUnit: a failing testcase per failed threshold
    const id = /run (\S+): failed/.exec(r.stdout)![1];
    const junit = await cli(['report', id, '--format', 'junit'], { cwd });
    assert.equal(junit.code, 0, junit.stderr);
    assert.match(junit.stdout, /<testsuites name="topas [^"]+" tests="1" failures="1"/);
    assert.match(junit.stdout, /<testcase name="http_req_duration p\(95\)&lt;0.000001" [^>]*>\s*<failure message="http_req_duration p\(95\)&lt;0.000001: observed [\d.]+" type="threshold">/);
  });

  test('--reporter with --json needs a file; an unknown reporter is refused before the run', async () => {
    const both = await cli(['load', path.join(SCRIPTS, 'fixed.lua'), '--json', '--reporter', 'html'], { cwd });
    assert.equal(both.code, 2, both.stderr);
    const unknown = await cli(['load', path.join(SCRIPTS, 'fixed.lua'), '--reporter', 'nope:x.html'], { cwd });
    assert.equal(unknown.code, 2, unknown.stderr);
    assert.match(unknown.stderr, /unknown reporter "nope"/);
  });
});
