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

/** Alive and not a zombie (a process we only know by pid is reaped by someone else). */
function alive(pid: number): boolean {
  try {
    return !/\) [ZX] /.test(fs.readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

interface KeptState {
  runId: string;
  data: { proxyHost?: { pid: number }; postgres?: { pid: number }; services?: Record<string, { replicas?: Array<{ pid: number }> }> };
}

function readState(): KeptState {
  return JSON.parse(fs.readFileSync(STATE, 'utf8')) as KeptState;
}

function hostPid(): number {
  const state = readState();
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

/** What this test's kept SUT is made of: its processes (by pid) and its containers (by run label). */
function footprint(state: KeptState): { pids: number[]; runId: string } {
  const d = state.data;
  const pids = [
    ...(d.proxyHost ? [d.proxyHost.pid] : []),
    ...(d.postgres ? [d.postgres.pid] : []),
    ...Object.values(d.services ?? {}).flatMap((s) => (s.replicas ?? []).map((r) => r.pid)),
  ];
  return { pids, runId: state.runId };
}

/** What of that footprint still runs ('' when nothing). */
function leftovers(fp: { pids: number[]; runId: string }): string {
  let out = fp.pids.filter(alive).map((p) => `pid ${p} `).join('');
  try {
    out += execFileSync('docker', ['ps', '-aq', '--filter', `label=topas.run=${fp.runId}`], { encoding: 'utf8' }).trim();
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
    const fp = footprint(readState());
    assert.ok(alive(pid), 'the proxy host runs after `topas up` returned');
    const r = await cli(['run', path.join('fixtures', 'shape', 'db-down.lua'), path.join('fixtures', 'shape', 'db-latency.lua'), '--app', APP]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /2 passed, 0 failed/);
    assert.match(r.stderr, /shape: db -> down/);
    assert.doesNotMatch(r.stderr, /scenario traffic only/);
    const down = await cli(['down', '--app', APP]);
    assert.equal(down.code, 0, down.stdout + down.stderr);
    assert.ok(await gone(pid, 3000), `proxy host ${pid} still running after topas down`);
    assert.equal(leftovers(fp), '');
  });

  test('a sweep after the state was lost: the proxy host leaves with its SUT', async () => {
    const up = await cli(['up', '--app', APP, '--backend', backend]);
    assert.equal(up.code, 0, up.stdout + up.stderr);
    const pid = hostPid();
    const fp = footprint(readState());
    fs.rmSync(STATE);
    // from another folder, --all leaves a SUT that this app kept alone
    const elsewhere = await cli(['down', '--all'], { cwd: path.join(REPO_ROOT, 'fixtures', 'apps') });
    assert.equal(elsewhere.code, 0, elsewhere.stdout + elsewhere.stderr);
    assert.ok(alive(pid), 'down --all from elsewhere stopped the proxy host of a kept SUT');
    // for the same app (name and spec file), --all takes the kept SUT with it
    const sweep = await cli(['down', '--all', '--app', APP]);
    assert.equal(sweep.code, 0, sweep.stdout + sweep.stderr);
    assert.match(sweep.stdout, new RegExp(`${fp.runId}.*kept SUT of this app`));
    assert.ok(await gone(pid, 5000), `proxy host ${pid} outlived its SUT`);
    assert.equal(leftovers(fp), '');
  });
});
