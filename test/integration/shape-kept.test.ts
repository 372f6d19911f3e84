import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { cli, REPO_ROOT } from '../helpers/cli';

/**
 * On both backends: a SUT kept by `topas up` outlives the process that started it; its
 * dependents' shaping proxies live in a detached proxy host, so a later
 * `topas run` shapes service-to-service traffic too, and the host goes with
 * the SUT (`topas down`, or a sweep after the state was lost).
 */
const APP = path.join('fixtures', 'shape', 'topas.yaml');
const STATE = path.join(REPO_ROOT, 'fixtures', 'shape', '.topas', 'state.json');

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function hostPid(): number {
  const state = JSON.parse(fs.readFileSync(STATE, 'utf8')) as { data: { proxyHost?: { pid: number } } };
  assert.ok(state.data.proxyHost, `no proxy host in ${STATE}`);
  return state.data.proxyHost.pid;
}

async function gone(pid: number, withinMs: number): Promise<boolean> {
  for (let waited = 0; waited < withinMs; waited += 100) {
    if (!alive(pid)) return true;
    await new Promise((r) => setTimeout(r, 100));
  }
  return !alive(pid);
}

function leftovers(): string {
  let out = '';
  try {
    out += execFileSync('pgrep', ['-fa', 'proxy-host|apps/mock-app/server.js'], { encoding: 'utf8' }).trim();
  } catch {
    /* none */
  }
  try {
    out += execFileSync('docker', ['ps', '-aq', '--filter', 'label=topas.app=shapeapp'], { encoding: 'utf8' }).trim();
  } catch {
    /* no docker */
  }
  return out;
}

for (const backend of ['local', 'docker'] as const) describe(`shaping a SUT kept by topas up (${backend})`, () => {
  before(() => {
    if (backend === 'docker') {
      execFileSync('bash', [path.join(REPO_ROOT, 'scripts', 'ensure-docker.sh')], { stdio: 'inherit' });
      execFileSync('bash', [path.join(REPO_ROOT, 'scripts', 'build-fixture-images.sh')], { stdio: 'inherit' });
    }
  });
  after(async () => {
    await cli(['down', '--app', APP]);
  });

  test('db down reaches the api (its dependent) from a later run; down takes the proxy host with it', async () => {
    const up = await cli(['up', '--app', APP, '--backend', backend]);
    assert.equal(up.code, 0, up.stdout + up.stderr);
    const pid = hostPid();
    assert.ok(alive(pid), 'the proxy host runs after `topas up` returned');
    const r = await cli(['run', path.join('fixtures', 'shape', 'db-down.lua'), path.join('fixtures', 'shape', 'db-latency.lua'), '--app', APP]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /2 passed, 0 failed/);
    assert.match(r.stderr, /shape: db -> down/);
    assert.doesNotMatch(r.stderr, /scenario traffic only/);
    const down = await cli(['down', '--app', APP]);
    assert.equal(down.code, 0, down.stdout + down.stderr);
    assert.ok(await gone(pid, 3000), `proxy host ${pid} still running after topas down`);
    assert.equal(leftovers(), '');
  });

  test('a sweep after the state was lost: the proxy host leaves with its SUT', async () => {
    const up = await cli(['up', '--app', APP, '--backend', backend]);
    assert.equal(up.code, 0, up.stdout + up.stderr);
    const pid = hostPid();
    fs.rmSync(STATE);
    const sweep = await cli(['down', '--all']);
    assert.equal(sweep.code, 0, sweep.stdout + sweep.stderr);
    // the host watches a folder of the run, which the sweep removed
    assert.ok(await gone(pid, 5000), `proxy host ${pid} outlived its SUT`);
    assert.equal(leftovers(), '');
  });
});
