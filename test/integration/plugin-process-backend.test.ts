import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { REPO_ROOT } from '../helpers/cli';

// topas as published (`npm pack`), installed the way a plugin's dependency is:
// a plugin type-checks against its declarations, and fixtures/plugins/process-backend,
// linked with `topas plugins link`, runs the quickstart through the public API only.
const TSC = path.join(REPO_ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
const STEP_TIMEOUT_MS = 3 * 60_000;

let root: string;
let tarball: string;

/** `dir/node_modules/topas`: the packed package, its dependencies those this repository installed. */
function installPackedTopas(dir: string): void {
  const modules = path.join(dir, 'node_modules');
  fs.mkdirSync(modules, { recursive: true });
  const untar = spawnSync('tar', ['-xzf', tarball, '-C', modules], { encoding: 'utf8' });
  assert.equal(untar.status, 0, untar.stderr);
  fs.renameSync(path.join(modules, 'package'), path.join(modules, 'topas'));
  fs.symlinkSync(path.join(REPO_ROOT, 'node_modules'), path.join(modules, 'topas', 'node_modules'));
}

function tsc(cwd: string, args: string[]): SpawnSyncReturns<string> {
  // strict, and neither esModuleInterop nor skipLibCheck: the declarations must hold up on their own
  const base = ['--noEmit', '--strict', '--module', 'commonjs', '--moduleResolution', 'node', '--target', 'es2022', '--lib', 'es2023,esnext.disposable', '--types', 'node', '--typeRoots', path.join(REPO_ROOT, 'node_modules', '@types')];
  return spawnSync(process.execPath, [TSC, ...base, ...args], { cwd, encoding: 'utf8', timeout: STEP_TIMEOUT_MS });
}

/** The CLI under test, with oclif's data, cache and config dirs private to this file. */
function topas(args: string[]): SpawnSyncReturns<string> {
  const env = { ...process.env, TOPAS_DATA_DIR: path.join(root, 'data'), TOPAS_CACHE_DIR: path.join(root, 'cache'), TOPAS_CONFIG_DIR: path.join(root, 'config'), NO_COLOR: '1', FORCE_COLOR: '0' };
  // (oclif colours its plugin list when it believes it runs in CI, whatever the pipe says)
  return spawnSync(process.execPath, [path.join(REPO_ROOT, 'bin', 'run.js'), ...args], { cwd: REPO_ROOT, env, encoding: 'utf8', timeout: STEP_TIMEOUT_MS });
}

describe('a backend plugin on the published API', () => {
  before(() => {
    root = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'topas-plugin-api-')));
    const pack = spawnSync('npm', ['pack', '--ignore-scripts', '--silent', '--pack-destination', root], { cwd: REPO_ROOT, encoding: 'utf8', timeout: STEP_TIMEOUT_MS });
    assert.equal(pack.status, 0, pack.stderr);
    tarball = path.join(root, pack.stdout.trim().split('\n').pop()!);
    assert.ok(fs.existsSync(tarball), pack.stdout);
  });

  after(() => {
    if (root) fs.rmSync(root, { recursive: true, force: true });
  });

  test('a TypeScript plugin compiles against `topas` from npm pack, and a wrong error code does not', () => {
    const project = path.join(root, 'typed-plugin');
    fs.mkdirSync(project);
    installPackedTopas(project);
    fs.writeFileSync(
      path.join(project, 'index.ts'),
      `import type { AppSpec, Backend, BackendsHook, EndpointMap, ServiceStatus, StartContext, Sut, SutState } from 'topas';
import { RoundRobin, TopasError, startPostgres, sutErrors, waitForHttp } from 'topas';

export const backend: Backend = {
  name: 'typed',
  probe: async (spec: AppSpec) => ({ ok: spec.services.length === 0, reason: 'runs empty apps only' }),
  start: async (_spec: AppSpec, ctx: StartContext): Promise<Sut> => {
    throw new TopasError('BACKEND_UNAVAILABLE', \`typed cannot start run \${ctx.runId}\`);
  },
  attach: async (_spec: AppSpec, state: SutState): Promise<Sut> => {
    throw sutErrors.disposed('typed', state.runId);
  },
  sweep: async () => ({ removed: [] }),
};
export const hook: BackendsHook = (opts) => opts.register('typed', () => backend);
export const none: { statuses: ServiceStatus[]; map: EndpointMap } = { statuses: [], map: {} };
export const helpers = [RoundRobin, startPostgres, waitForHttp];
// @ts-expect-error not one of topas's error codes
export const wrong = new TopasError('NOT_A_CODE', 'x');
`,
    );
    const r = tsc(project, ['index.ts']);
    assert.equal(r.status, 0, `tsc:\n${r.stdout}${r.stderr}`);
  });

  test('fixtures/plugins/process-backend: type-checked, linked, runs the quickstart, uninstalled', (t) => {
    const plugin = path.join(root, 'process-backend');
    fs.cpSync(path.join(REPO_ROOT, 'fixtures', 'plugins', 'process-backend'), plugin, { recursive: true });
    installPackedTopas(plugin);
    const checked = tsc(plugin, ['--allowJs', '--checkJs', 'hooks/backends.js', 'lib/process-backend.js', 'lib/process-driver.js']);
    assert.equal(checked.status, 0, `the plugin does not type-check against the packed API:\n${checked.stdout}${checked.stderr}`);

    // the default `link` (dependencies "installed"): the plugin has no lockfile, so nothing is fetched
    const link = topas(['plugins', 'link', plugin]);
    assert.equal(link.status, 0, link.stderr);
    assert.match(topas(['plugins']).stdout, /topas-plugin-process-backend 1\.0\.0 \(link\)/);
    assert.match(topas(['run', '--help']).stdout, /--backend=auto\|local\|docker\|process\s/);

    const run = topas(['run', 'fixtures/quickstart/tests/quickstart.lua', '--app', 'fixtures/quickstart/topas.yaml', '--backend', 'process']);
    t.diagnostic(run.stderr.split('\n').filter((l) => /is up on backend|tearing down/.test(l)).join(' | '));
    assert.equal(run.status, 0, `${run.stdout}\n${run.stderr}`);
    assert.match(run.stdout, /app quickstart\s+backend process/);
    assert.match(run.stdout, /upgrade api to 1\.1\.0/);
    assert.match(run.stdout, /1 passed, 0 failed/);
    assert.match(run.stderr, /process: service api ready \(2 replica\(s\)\)/);

    const un = topas(['plugins', 'uninstall', 'topas-plugin-process-backend']);
    assert.equal(un.status, 0, un.stderr);
    assert.match(topas(['plugins']).stdout, /No plugins installed/);
    const gone = topas(['run', 'fixtures/quickstart/tests/quickstart.lua', '--app', 'fixtures/quickstart/topas.yaml', '--backend', 'process']);
    assert.equal(gone.status, 2, gone.stderr);
    assert.match(gone.stderr, /unknown backend "process"/);
  });
});
