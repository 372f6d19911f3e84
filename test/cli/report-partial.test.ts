import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { cli } from '../helpers/cli';
import { historyPage } from '../../src/dashboard/pages';
import { paginate, RunIndex, trends } from '../../src/dashboard/run-index';

/**
 * A load run that lost a worker (issue 16): `partial` is the state stored in
 * run.json, and every view of the run shows it from there: `test status`,
 * `topas report` in each format, `topas compare` and the dashboard's history
 * filter. One real partial run (worker 1 of 2 crashes on purpose) and one
 * passed run of the same script; records in a temp folder (no app).
 */
let cwd: string;
let partialId: string;
let passedId: string;
let lostLine: string;

const SCRIPT = 'options = { rate = 40, duration = "2s" }\nfunction iteration(ctx) sleep(0.002) end\n';

before(async () => {
  cwd = fs.mkdtempSync(path.join(os.tmpdir(), 'topas-report-partial-'));
  fs.writeFileSync(path.join(cwd, 'steady.lua'), SCRIPT);
  const passed = await cli(['load', 'steady.lua', '--workers', '2', '--json'], { cwd });
  assert.equal(passed.code, 0, passed.stderr);
  passedId = JSON.parse(passed.stdout).runId;
  // worker 1 of 2 throws 1.2 s into the load: the run goes on with worker 0's half
  const partial = await cli(['load', 'steady.lua', '--workers', '2', '--json'], { cwd, env: { ...process.env, TOPAS_TEST_CRASH_LOAD_WORKER: '1:1200' } });
  assert.equal(partial.code, 0, partial.stderr);
  const summary = JSON.parse(partial.stdout);
  partialId = summary.runId;
  assert.equal(summary.state, 'partial');
  assert.equal(summary.lostWorkers.length, 1);
  lostLine = summary.lostWorkers[0];
});

after(() => {
  fs.rmSync(cwd, { recursive: true, force: true });
});

function record(id: string): Record<string, unknown> {
  return JSON.parse(fs.readFileSync(path.join(cwd, '.topas', 'runs', id, 'run.json'), 'utf8'));
}

describe('a partial load run', () => {
  test('run.json stores state partial (not passed with a flag), exit code 0, what was lost', () => {
    const r = record(partialId);
    assert.equal(r.state, 'partial');
    assert.equal(r.partial, undefined);
    assert.equal(r.exitCode, 0);
    assert.deepEqual((r.load as { lostWorkers: string[] }).lostWorkers, [lostLine]);
    assert.equal(record(passedId).state, 'passed');
  });

  test('topas test status: Partial, and the result line says partial', async () => {
    const one = await cli(['test', 'status', partialId, '--json'], { cwd });
    assert.equal(one.code, 0, one.stderr);
    const s = JSON.parse(one.stdout);
    assert.equal(s.state, 'Partial');
    assert.match(s.result, /^partial: load, .*partial: 1 worker\(s\) lost/);
    const all = await cli(['test', 'status'], { cwd });
    assert.equal(all.code, 0, all.stderr);
    assert.match(all.stdout, new RegExp(`${partialId}\\s.*Partial`));
    assert.match(all.stdout, new RegExp(`${passedId}\\s.*Passed`));
  });

  test('topas report in every format shows the stored state', async () => {
    const table = await cli(['report', partialId], { cwd });
    assert.equal(table.code, 0, table.stderr);
    assert.match(table.stdout, /load partial \(exit 0\)/);
    assert.ok(table.stdout.includes(`partial results: ${lostLine}`), table.stdout);

    const json = JSON.parse((await cli(['report', partialId, '--format', 'json'], { cwd })).stdout);
    assert.equal(json.state, 'partial');
    assert.deepEqual(json.load.lostWorkers, [lostLine]);

    const summary = await cli(['report', partialId, '--format', 'summary'], { cwd });
    assert.equal(summary.code, 0, summary.stderr);
    assert.match(summary.stdout, new RegExp(`run ${partialId}: partial\\n$`));

    const junit = (await cli(['report', partialId, '--format', 'junit'], { cwd })).stdout;
    assert.match(junit, /<property name="topas.state" value="partial"\/>/);
    assert.match(junit, /<testcase name="partial results \(1\): /);
    assert.match(junit, /<testsuites [^>]*failures="0"/);
    // a run that was not partial carries no such property
    assert.doesNotMatch((await cli(['report', passedId, '--format', 'junit'], { cwd })).stdout, /topas\.state/);

    const html = await cli(['report', partialId, '--format', 'html', '-o', 'partial.html'], { cwd });
    assert.equal(html.code, 0, html.stderr);
    const page = fs.readFileSync(path.join(cwd, 'partial.html'), 'utf8');
    assert.match(page, /<span class="verdict v-partial" id="verdict">partial</);
    assert.match(page, /partial results: /);

    const stepSummary = path.join(cwd, 'step-summary.md');
    const github = await cli(['report', partialId, '--format', 'github'], { cwd, env: { ...process.env, GITHUB_STEP_SUMMARY: stepSummary } });
    assert.equal(github.code, 0, github.stderr);
    assert.match(github.stdout, /::warning title=partial load results::/);
    assert.match(fs.readFileSync(stepSummary, 'utf8'), new RegExp(`^### ⚠️ topas load ${partialId}: partial`));
  });

  test('topas compare shows each side as stored, and what the partial side lost', async () => {
    const table = await cli(['compare', passedId, partialId, '--max-regression', '100%'], { cwd });
    assert.match(table.stdout, new RegExp(`A ${passedId} \\(load, passed\\)`));
    assert.match(table.stdout, new RegExp(`B ${partialId} \\(load, partial\\)\\n  partial results: `));
    const json = JSON.parse((await cli(['compare', passedId, partialId, '--json'], { cwd })).stdout);
    assert.equal(json.a.state, 'passed');
    assert.equal(json.a.lost, undefined);
    assert.equal(json.b.state, 'partial');
    assert.deepEqual(json.b.lost, [lostLine]);
  });

  test('the dashboard lists it as Partial, filters by it, counts it as passed in the trend', () => {
    const index = new RunIndex(cwd, { persist: false });
    const partial = index.list({ state: 'partial' });
    assert.deepEqual(
      partial.map((r) => [r.runId, r.state]),
      [[partialId, 'Partial']],
    );
    assert.deepEqual(
      index.list({ state: 'passed' }).map((r) => r.runId),
      [passedId],
    );
    const all = index.list();
    const [trend] = trends(all);
    assert.equal(trend.passed, 2);
    assert.equal(trend.failed, 0);
    const page = historyPage({ nonce: 'n', filter: { state: 'partial' }, page: paginate(partial, 1, 50), trends: trends(partial), dir: cwd });
    assert.match(page, /<option value="partial" selected>Partial<\/option>/);
    assert.match(page, /<td class="state s-Partial">Partial<\/td>/);
  });

  test('a record written before partial was a state (passed + partial: true) reads as partial everywhere', async () => {
    const file = path.join(cwd, '.topas', 'runs', partialId, 'run.json');
    const before = fs.readFileSync(file, 'utf8');
    try {
      fs.writeFileSync(file, JSON.stringify({ ...record(partialId), state: 'passed', partial: true }));
      assert.equal(JSON.parse((await cli(['test', 'status', partialId, '--json'], { cwd })).stdout).state, 'Partial');
      assert.equal(JSON.parse((await cli(['report', partialId, '--format', 'json'], { cwd })).stdout).state, 'partial');
      assert.equal(JSON.parse((await cli(['compare', passedId, partialId, '--json'], { cwd })).stdout).b.state, 'partial');
      assert.deepEqual(
        new RunIndex(cwd, { persist: false }).list({ state: 'partial' }).map((r) => r.runId),
        [partialId],
      );
    } finally {
      fs.writeFileSync(file, before);
    }
  });
});
