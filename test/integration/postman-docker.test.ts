import { describe, test, before } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { cli, REPO_ROOT } from '../helpers/cli';

const BIN = path.join(REPO_ROOT, 'bin', 'run.js');
const APP = ['--app', 'fixtures/postman/topas.yaml', '--backend', 'docker'];

/** Containers of this checkout's runs of the app (by the spec label topas puts on them), not another's. */
function leftovers(): string[] {
  const spec = fs.realpathSync(path.join(REPO_ROOT, 'fixtures', 'postman', 'topas.yaml'));
  return execFileSync('docker', ['ps', '-aq', '--filter', `label=topas.spec=${spec}`], { encoding: 'utf8' }).split('\n').filter(Boolean);
}

describe('Postman, gRPC and db against the mock app on the docker backend', () => {
  before(() => {
    execFileSync('bash', [path.join(REPO_ROOT, 'scripts', 'ensure-docker.sh')], { stdio: 'inherit' });
    execFileSync('bash', [path.join(REPO_ROOT, 'scripts', 'build-fixture-images.sh')], { stdio: 'inherit' });
    // what earlier, crashed runs of this app left (never other apps' runs)
    execFileSync(process.execPath, [BIN, 'down', ...APP.slice(0, 2)], { cwd: REPO_ROOT, stdio: 'ignore' });
  });

  test('collection, folder, iterations, vars; SQL state with transactions; gRPC by reflection and proto', async () => {
    // one SUT for the three scenarios: topas run takes several files
    const r = await cli(['run', 'fixtures/postman/postman.lua', 'fixtures/postman/stack.lua', 'fixtures/grpc/echo.lua', ...APP]);
    assert.equal(r.code, 0, r.stderr + r.stdout);
    assert.match(r.stdout, /3 passed, 0 failed/);
    assert.deepEqual(leftovers(), []);
  });

  test('a failing Postman assertion fails the run and names the request and the message', async () => {
    const r = await cli(['run', 'fixtures/postman/failing.lua', ...APP]);
    assert.equal(r.code, 1, r.stderr + r.stdout);
    assert.match(r.stdout, /✗ \S*failing\.lua › version\n/);
    assert.match(r.stdout, /postman GET http:\/\/api\/version \(version\): version is 9\.9\.9: expected '1\.0\.0' to deeply equal '9\.9\.9'/);
    assert.deepEqual(leftovers(), []);
  });

  test('topas load runs the collection with latency per request name', async () => {
    const r = await cli(['load', 'fixtures/postman/mock-app.postman_collection.json', '--rate', '10/s', '--duration', '2s', ...APP, '--json']);
    assert.equal(r.code, 0, r.stderr);
    const s = JSON.parse(r.stdout) as { metrics: Record<string, { values: Record<string, number> }> };
    assert.ok(s.metrics['http_req_duration{name:create user}'].values.count > 0);
    assert.equal(s.metrics.checks.values.fails, 0);
    assert.deepEqual(leftovers(), []);
  });
});
