import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { cli, REPO_ROOT } from '../helpers/cli';

const APP = ['--app', 'fixtures/quickstart/topas.yaml', '--backend', 'local'];

/** The run's JSON report, from --json on stdout. */
function jsonReport(stdout: string): { results: { state: string; checks: { name: string; passed: number; failed: number }[]; steps: { name: string; state: string; error?: { message: string } }[]; error?: { message: string } }[] } {
  return JSON.parse(stdout);
}

describe('Postman, gRPC and db against the quickstart on the local backend', () => {
  let dir: string;
  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'topas-postman-'));
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  test('the mock-app collection passes: whole, one folder, iterations, vars', async () => {
    const r = await cli(['run', 'fixtures/postman/postman.lua', ...APP, '--json']);
    assert.equal(r.code, 0, r.stderr + r.stdout);
    const res = jsonReport(r.stdout).results[0];
    assert.equal(res.state, 'passed');
    // every request and every Postman test is a check named after its request
    const names = res.checks.map((c) => c.name);
    for (const n of ['health check', 'health check › status is 200', 'create user › status is 201', 'get deleted user › status is 404']) assert.ok(names.includes(n), `no check ${n} in ${names.join(', ')}`);
    assert.deepEqual(res.checks.find((c) => c.name === 'create user › returns the user'), { name: 'create user › returns the user', passed: 3, failed: 0 });
    assert.equal(res.steps.length, 8 + 12);
  });

  test('a failing Postman assertion fails the scenario, naming the request and the assertion message', async () => {
    const scenario = path.join(dir, 'failing.lua');
    fs.writeFileSync(
      scenario,
      [
        'local postman = require("postman")',
        `local ok, report = postman.run{ collection = ${JSON.stringify(path.join(REPO_ROOT, 'fixtures/postman/failing.postman_collection.json'))} }`,
        'log.info("returned " .. tostring(ok) .. " with " .. #report.failures .. " failure(s): " .. report.failures[1].name)',
      ].join('\n'),
    );
    const r = await cli(['run', scenario, ...APP]);
    assert.equal(r.code, 1, r.stderr + r.stdout);
    assert.match(r.stdout, /✗ \S*failing\.lua › version\n/);
    assert.match(r.stdout, /failing\.lua:2: postman GET http:\/\/api\/version \(version\): version is 9\.9\.9: expected '1\.0\.0' to deeply equal '9\.9\.9'/);
    // the call returns (passed, report) and the scenario goes on
    assert.match(r.stderr, /returned false with 1 failure\(s\): version › version is 9\.9\.9/);
    const j = await cli(['run', scenario, ...APP, '--json']);
    const res = jsonReport(j.stdout).results[0];
    assert.equal(res.state, 'failed');
    assert.deepEqual(res.checks.find((c) => c.name === 'version › version is 9.9.9'), { name: 'version › version is 9.9.9', passed: 0, failed: 1 });
    assert.deepEqual(res.checks.find((c) => c.name === 'health check › status is 200'), { name: 'health check › status is 200', passed: 1, failed: 0 });
  });

  test('a real stack: SQL state, transactions, the users suite and gRPC', async () => {
    const r = await cli(['run', 'fixtures/postman/stack.lua', ...APP]);
    assert.equal(r.code, 0, r.stderr + r.stdout);
    assert.match(r.stdout, /1 passed, 0 failed/);
  });

  test('gRPC by reflection and by proto against both replicas', async () => {
    const r = await cli(['run', 'fixtures/grpc/echo.lua', ...APP]);
    assert.equal(r.code, 0, r.stderr + r.stdout);
    assert.match(r.stdout, /1 passed, 0 failed/);
  });

  test('postman.run names a missing folder and a missing file', async () => {
    const scenario = path.join(dir, 'bad.lua');
    fs.writeFileSync(
      scenario,
      [
        'local postman = require("postman")',
        `local C = ${JSON.stringify(path.join(REPO_ROOT, 'fixtures/postman/mock-app.postman_collection.json'))}`,
        'local ok, err = pcall(postman.run, { collection = C, folder = "nope" })',
        'expect(err):to_contain(\'no folder or request named "nope" in the collection (folders: health, users)\')',
        'ok, err = pcall(postman.run, { collection = "missing.json" })',
        'expect(err):to_contain("postman.run collection: file not found: missing.json")',
      ].join('\n'),
    );
    const r = await cli(['run', scenario, ...APP]);
    assert.equal(r.code, 0, r.stderr + r.stdout);
  });
});
