import { describe, test, before } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { cli, REPO_ROOT } from '../helpers/cli';

const BIN = path.join(REPO_ROOT, 'bin', 'run.js');

function docker(...args: string[]): string {
  return execFileSync('docker', args, { encoding: 'utf8' }).trim();
}

/** The spec label topas puts on what it makes for the app of `specFile` (absolute, symlinks resolved). */
function specLabel(specFile: string): string {
  return `label=topas.spec=${fs.realpathSync(path.resolve(REPO_ROOT, specFile))}`;
}

/** Containers and networks this test's runs of the app of `specFile` left, by the app's spec label. */
function leftovers(specFile: string): { containers: string[]; networks: string[] } {
  const containers = docker('ps', '-aq', '--filter', specLabel(specFile)).split('\n').filter(Boolean);
  const networks = docker('network', 'ls', '-q', '--filter', specLabel(specFile)).split('\n').filter(Boolean);
  return { containers, networks };
}

const WITH_APP = 'fixtures/cli/with-app/topas.yaml';
const QUICKSTART = 'fixtures/quickstart/topas.yaml';
const APP = ['--app', WITH_APP, '--backend', 'docker'];

describe('topas on the docker backend, end to end', () => {
  before(() => {
    execFileSync('bash', [path.join(REPO_ROOT, 'scripts', 'ensure-docker.sh')], { stdio: 'inherit' });
    execFileSync('bash', [path.join(REPO_ROOT, 'scripts', 'build-fixture-images.sh')], { stdio: 'inherit' });
    // what earlier, crashed runs of these apps left must not count against this one (never other apps' runs)
    for (const app of [WITH_APP, QUICKSTART]) execFileSync(process.execPath, [BIN, 'down', '--app', app], { cwd: REPO_ROOT, stdio: 'ignore' });
  });

  test('the quickstart passes with --backend docker', async () => {
    const r = await cli(['run', 'fixtures/quickstart/tests/quickstart.lua', '--app', 'fixtures/quickstart/topas.yaml', '--backend', 'docker']);
    assert.equal(r.code, 0, r.stderr + r.stdout);
    assert.match(r.stdout, /1 passed, 0 failed/);
    assert.deepEqual(leftovers(QUICKSTART), { containers: [], networks: [] });
  });

  test('after a failing run nothing is left', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'topas-fail-'));
    const scenario = path.join(dir, 'fails.lua');
    fs.writeFileSync(scenario, 'local net = require("net")\nexpect(net.get("http://api/healthz").code):to_be(418)\n');
    try {
      const r = await cli(['run', scenario, ...APP]);
      assert.equal(r.code, 1, r.stderr + r.stdout);
      assert.deepEqual(leftovers(WITH_APP), { containers: [], networks: [] });
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('Ctrl-C mid-run: exit 130 and nothing left', async () => {
    const child = spawn(process.execPath, [BIN, 'run', 'fixtures/cli/with-app/slow.lua', ...APP], { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    child.stdout.resume();
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    const deadline = Date.now() + 120_000;
    while (!/endpoint db /.test(stderr) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    assert.match(stderr, /endpoint db /, 'the scenario never started');
    assert.ok(leftovers(WITH_APP).containers.length >= 2);
    child.kill('SIGINT');
    assert.equal(await exited, 130, stderr);
    assert.deepEqual(leftovers(WITH_APP), { containers: [], networks: [] });
  });

  test('kill -9 of topas, then `topas down --all`, leaves nothing', async () => {
    const child = spawn(process.execPath, [BIN, 'run', 'fixtures/cli/with-app/slow.lua', ...APP], { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    child.stdout.resume();
    const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
    const deadline = Date.now() + 120_000;
    while (!/endpoint db /.test(stderr) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    assert.match(stderr, /endpoint db /);
    child.kill('SIGKILL');
    await exited;
    assert.ok(leftovers(WITH_APP).containers.length >= 2, 'kill -9 cannot clean up: containers should still be there');
    // from a folder without an app: --all removes what runs whose owner is gone left, of any app
    const down = await cli(['down', '--all'], { cwd: path.join(REPO_ROOT, 'fixtures', 'apps') });
    assert.equal(down.code, 0, down.stderr);
    assert.deepEqual(leftovers(WITH_APP), { containers: [], networks: [] });
  });

  test('a missing image gives exit 3 and says how to build it', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'topas-noimg-'));
    try {
      fs.writeFileSync(path.join(dir, 'topas.yaml'), 'name: noimg\nservices:\n  - name: api\n    image: local/mock-app\n    version: "9.9.9"\n    port: 8080\n');
      fs.writeFileSync(path.join(dir, 'a.lua'), 'print("x")\n');
      const r = await cli(['run', path.join(dir, 'a.lua'), '--app', path.join(dir, 'topas.yaml'), '--backend', 'docker']);
      assert.equal(r.code, 3, r.stderr);
      assert.match(r.stderr, /local\/mock-app:9\.9\.9/);
      assert.match(r.stderr, /docker build|build-fixture-images/);
      assert.deepEqual(leftovers(path.join(dir, 'topas.yaml')), { containers: [], networks: [] });
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('a Docker engine that does not answer gives exit 3 and says what to do', async () => {
    // a subprocess: the Docker client reads DOCKER_HOST from the real process environment
    const { spawnSync } = await import('node:child_process');
    const r = spawnSync(process.execPath, [BIN, 'run', 'fixtures/cli/with-app/smoke.lua', ...APP], {
      cwd: REPO_ROOT,
      encoding: 'utf8',
      env: { ...process.env, DOCKER_HOST: 'unix:///tmp/topas-no-docker.sock' },
    });
    assert.equal(r.status, 3, r.stderr);
    assert.match(r.stderr, /ensure-docker\.sh|start Docker|--backend local/);
  });

  test('--backend auto says which backend it chose and why', async () => {
    const r = await cli(['up', '--app', 'fixtures/cli/with-app/topas.yaml']);
    try {
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stderr, /auto: docker/);
    } finally {
      await cli(['down', '--app', 'fixtures/cli/with-app/topas.yaml']);
    }
    assert.deepEqual(leftovers(WITH_APP), { containers: [], networks: [] });
  });
});
