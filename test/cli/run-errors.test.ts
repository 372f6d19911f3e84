import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { cli } from '../helpers/cli';

describe('topas run: invalid input and failures, in-process', () => {
  test('an app spec with three mistakes exits 2 and names all three with their paths', async () => {
    const r = await cli(['run', 'fixtures/cli/three-mistakes/smoke.lua', '--app', 'fixtures/cli/three-mistakes/topas.yaml']);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /services\[0\]\.port/);
    assert.match(r.stderr, /services\[0\]\.replcias.*did you mean "replicas"/);
    assert.match(r.stderr, /nodb/);
  });

  test('a Lua syntax error exits 2 with file:line, before anything starts', async () => {
    const r = await cli(['run', 'fixtures/cli/syntax/bad.lua']);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /fixtures\/cli\/syntax\/bad\.lua:\d+/);
    assert.match(r.stderr, /LUA_SYNTAX/);
  });

  test('a missing scenario file exits 2 and names it', async () => {
    const r = await cli(['run', 'fixtures/cli/no-app/does-not-exist.lua']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /does-not-exist\.lua: no such file/);
  });

  test('an unknown reporter is invalid input', async () => {
    const r = await cli(['run', 'fixtures/cli/no-app/pass.lua', '--reporter', 'nope']);
    assert.equal(r.code, 2, r.stderr);
  });

  test('while true do end with --timeout 2s ends with exit 5', async (t) => {
    const r = await cli(['run', 'fixtures/cli/no-app/loop.lua', '--timeout', '2s']);
    t.diagnostic(`elapsed ${r.elapsedMs} ms`);
    assert.equal(r.code, 5, r.stderr + r.stdout);
    assert.match(r.stdout, /loop\.lua/);
  });

  test('a passing scenario without an app exits 0 and prints the table', async () => {
    const r = await cli(['run', 'fixtures/cli/no-app/pass.lua']);
    assert.equal(r.code, 0, r.stderr + r.stdout);
    assert.match(r.stdout, /json round trip/);
    assert.match(r.stdout, /1 passed, 0 failed/);
  });

  test('a failing expect exits 1 and the JUnit file names the step and the Lua line', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'topas-junit-'));
    const junit = path.join(dir, 'report.xml');
    try {
      const r = await cli(['run', 'fixtures/cli/no-app/fail.lua', '--reporter', `junit:${junit}`]);
      assert.equal(r.code, 1, r.stderr + r.stdout);
      const xml = fs.readFileSync(junit, 'utf8');
      assert.match(xml, /<testcase[^>]*name="totals add up"/);
      assert.match(xml, /<failure[^>]*>/);
      assert.match(xml, /fail\.lua:7/);
      // the step after the failure is reported as skipped, not silently dropped
      assert.match(xml, /name="never reached"[\s\S]*?<skipped/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('--json prints the run report as JSON on stdout', async () => {
    const r = await cli(['run', 'fixtures/cli/no-app/fail.lua', '--json']);
    assert.equal(r.code, 1);
    const report = JSON.parse(r.stdout);
    assert.equal(report.state, 'failed');
    assert.equal(report.results[0].steps[1].state, 'failed');
    assert.match(report.results[0].error.location, /fail\.lua:7/);
  });
});

describe('topas report', () => {
  test('renders a past run as junit from its record', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'topas-report-'));
    try {
      fs.copyFileSync('fixtures/cli/no-app/fail.lua', path.join(dir, 'fail.lua'));
      const run = await cli(['run', 'fail.lua', '--json'], { cwd: dir });
      const id = JSON.parse(run.stdout).runId;
      const r = await cli(['report', id, '--format', 'junit'], { cwd: dir });
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /<testcase[^>]*name="totals add up"/);
      const missing = await cli(['report', '20200101-000000-000-10-000000'], { cwd: dir });
      assert.equal(missing.code, 2);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
