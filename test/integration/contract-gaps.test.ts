import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { REPO_ROOT, cli } from '../helpers/cli';

// issue 19, "contract gaps" and the bare `topas run`: through the CLI, on the local backend
const GAPS = path.join(REPO_ROOT, 'fixtures/cli/gaps');
const env = { ...process.env, SHADOWS_PROCESS: 'process', ONLY_PROCESS: 'process' };

interface Result {
  name: string;
  state: string;
  error?: { message: string };
  metrics?: Array<{ name: string; type: string; count: number; value: number; min?: number; max?: number }>;
}

function results(stdout: string): Result[] {
  return (JSON.parse(stdout) as { results: Result[] }).results;
}

describe('contract gaps, local backend', () => {
  test('a bare `topas run` next to a topas.yaml runs tests/', async () => {
    const r = await cli(['run', '--backend', 'local', '--json', '--env', 'OVERRIDDEN=flag'], { cwd: GAPS, env });
    assert.equal(r.code, 0, r.stderr + r.stdout);
    assert.deepEqual(results(r.stdout).map((x) => x.name).sort(), ['tests/endpoint.lua', 'tests/env.lua', 'tests/metrics.lua']);
  });

  test('env() reads --env, then the app spec\'s env, then the process', async () => {
    const r = await cli(['run', 'tests/env.lua', '--backend', 'local', '--json', '--env', 'OVERRIDDEN=flag'], { cwd: GAPS, env });
    assert.equal(r.code, 0, r.stderr + r.stdout);
    assert.equal(results(r.stdout)[0].state, 'passed');
    // a secret-looking variable of the spec's env is masked like the services' ones
    assert.match(r.stderr, /token \*\*\*/);
    assert.doesNotMatch(r.stderr + r.stdout, /s3cret-token-from-spec/);
  });

  test('sut.endpoint(name, 9090) takes a port number as well as a port name', async () => {
    const r = await cli(['run', 'tests/endpoint.lua', '--backend', 'local', '--json'], { cwd: GAPS, env });
    assert.equal(r.code, 0, r.stderr + r.stdout);
    assert.equal(results(r.stdout)[0].state, 'passed', JSON.stringify(results(r.stdout)[0].error));
  });

  test('require("metrics") works in `topas run` and playbooks; the metrics show in the report', async () => {
    const r = await cli(['run', 'tests/metrics.lua', 'playbook/metrics.yaml', '--backend', 'local', '--json'], { cwd: GAPS, env });
    assert.equal(r.code, 0, r.stderr + r.stdout);
    const rs = results(r.stdout);
    assert.equal(rs.length, 3);
    for (const x of rs) {
      assert.equal(x.state, 'passed', JSON.stringify(x.error));
      const byName = Object.fromEntries((x.metrics ?? []).map((m) => [m.name, m]));
      assert.deepEqual(byName.logins, { name: 'logins', type: 'counter', count: 2, value: 5 });
      assert.deepEqual(byName.think_ms, { name: 'think_ms', type: 'trend', count: 2, value: 20, min: 10, max: 30 });
    }
    const table = await cli(['run', 'tests/metrics.lua', '--backend', 'local'], { cwd: GAPS, env });
    assert.equal(table.code, 0, table.stderr + table.stdout);
    assert.match(table.stdout, /logins \(counter\): 5/);
    assert.match(table.stdout, /think_ms \(trend\): avg 20, min 10, max 30/);
  });
});

describe('shape.loss, local backend', () => {
  test('loss hits requests on open keep-alive connections and drops per request in HTTP mode', async () => {
    const r = await cli(['run', 'shape/loss.lua', '--backend', 'local', '--json'], { cwd: GAPS, env });
    const rs = results(r.stdout);
    assert.equal(r.code, 0, r.stderr + JSON.stringify(rs.map((x) => x.error)));
    const line = r.stderr.match(/RESULT loss failed=\d+\/\d+/);
    if (line) console.log(line[0]);
  });
});
