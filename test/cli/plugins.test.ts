import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { cli, REPO_ROOT } from '../helpers/cli';
import '../../src/backends/index';
import { backendNames, getBackend } from '../../src/backends/registry';

// oclif reads where user plugins live from the process environment (not Io): this
// file's process gets a private data dir, so linking never touches the user's topas.
const root = fs.mkdtempSync(path.join(os.tmpdir(), 'topas-plugins-cli-'));
process.env.TOPAS_DATA_DIR = path.join(root, 'data');
process.env.TOPAS_CACHE_DIR = path.join(root, 'cache');
process.env.TOPAS_CONFIG_DIR = path.join(root, 'config');

/** A plugin folder: package.json declaring `hook` and a hook file registering `names` (every probe fails). */
function writePlugin(name: string, hook: string, names: string[]): string {
  const dir = path.join(root, name);
  fs.mkdirSync(path.join(dir, 'hooks'), { recursive: true });
  fs.writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name, version: '1.0.0', private: true, oclif: { hooks: { [hook]: './hooks/backends.js' } } }));
  const registrations = names.map((n) => `  opts.register(${JSON.stringify(n)}, () => ({ name: ${JSON.stringify(n)}, probe: async () => ({ ok: false, reason: 'the ${n} backend runs nothing' }), start: fail, attach: fail, sweep: async () => ({ removed: [] }) }));`);
  fs.writeFileSync(path.join(dir, 'hooks', 'backends.js'), `'use strict';\nconst fail = async () => { throw new Error('runs nothing'); };\nmodule.exports = async function (opts) {\n${registrations.join('\n')}\n};\n`);
  return dir;
}

// oclif colours its plugin list when it believes it runs in CI (CI=true), whatever the pipe says
const NO_COLOUR = { NO_COLOR: '1', FORCE_COLOR: '0' };

/** oclif prints help and the plugin list itself, on the process's stdout: those run as a child process. */
function child(args: string[]): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [path.join(REPO_ROOT, 'bin', 'run.js'), ...args], { encoding: 'utf8', timeout: 60_000, env: { ...process.env, ...NO_COLOUR } });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

function backendHelp(stdout: string): string {
  const m = stdout.match(/--backend=(\S+)/);
  assert.ok(m, `no --backend in:\n${stdout}`);
  return m[1];
}

describe('topas plugins: link, a plugin backend, uninstall (in-process; oclif prints help and the list in a child)', () => {
  let app: string;
  before(() => {
    // api can run on docker only, worker on local only: auto has to go past both
    app = path.join(root, 'app');
    fs.mkdirSync(app);
    fs.writeFileSync(path.join(app, 'topas.yaml'), 'name: plugins-cli\nservices:\n  - name: api\n    image: local/mock-app\n    port: 8080\n  - name: worker\n    command: ["node", "-e", "0"]\n    port: 8081\n');
    fs.writeFileSync(path.join(app, 'smoke.lua'), 'step("nothing", function() end)\n');
  });
  after(() => fs.rmSync(root, { recursive: true, force: true }));

  test('without plugins, --backend lists only the built-in backends', async () => {
    const r = child(['run', '--help']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(backendHelp(r.stdout), 'auto|local|docker');
    assert.doesNotMatch(r.stdout, /kubernetes|fake/);
  });

  test('a linked plugin backend is listed, tried by auto after docker and local, and gone after uninstall', async () => {
    const plugin = writePlugin('topas-plugin-fake', 'topas:backends', ['fake']);
    const link = await cli(['plugins', 'link', plugin, '--no-install']);
    assert.equal(link.code, 0, link.stderr);
    const list = child(['plugins']);
    assert.match(list.stdout, /topas-plugin-fake 1\.0\.0 \(link\)/);

    const help = child(['run', '--help']);
    assert.equal(backendHelp(help.stdout), 'auto|local|docker|fake');
    assert.match(help.stdout.replace(/\s+/g, ' '), /else local, then fake\), local, docker, fake/);

    const auto = await cli(['run', path.join(app, 'smoke.lua'), '--app', path.join(app, 'topas.yaml')]);
    assert.equal(auto.code, 3, auto.stderr);
    assert.match(auto.stderr, /no backend can run app plugins-cli/);
    const order = ['backend: docker not usable', 'backend: local not usable', 'backend: fake not usable: the fake backend runs nothing'].map((s) => auto.stderr.indexOf(s));
    assert.ok(order.every((i) => i >= 0), auto.stderr);
    assert.deepEqual([...order].sort((a, b) => a - b), order, `auto tries docker, local, then the plugin:\n${auto.stderr}`);

    const named = await cli(['run', path.join(app, 'smoke.lua'), '--app', path.join(app, 'topas.yaml'), '--backend', 'fake']);
    assert.equal(named.code, 3, named.stderr);
    assert.match(named.stderr, /backend fake cannot run app plugins-cli: the fake backend runs nothing/);

    const un = await cli(['plugins', 'uninstall', 'topas-plugin-fake']);
    assert.equal(un.code, 0, un.stderr);
    assert.match(child(['plugins']).stdout, /No plugins installed/);
    assert.equal(backendHelp(child(['run', '--help']).stdout), 'auto|local|docker');
    const gone = await cli(['run', path.join(app, 'smoke.lua'), '--app', path.join(app, 'topas.yaml'), '--backend', 'fake']);
    assert.equal(gone.code, 2, gone.stderr);
    assert.match(gone.stderr, /--backend: unknown backend "fake"/);
  });

  test('a plugin on the plain `backends` hook still registers, but cannot take over local or docker', async () => {
    const plugin = writePlugin('topas-plugin-impostor', 'backends', ['local', 'docker', 'legacy']);
    assert.equal((await cli(['plugins', 'link', plugin, '--no-install'])).code, 0);
    try {
      const help = child(['run', '--help']);
      assert.equal(backendHelp(help.stdout), 'auto|local|docker|legacy');
      const run = (backend: string) => cli(['run', path.join(app, 'smoke.lua'), '--app', path.join(app, 'topas.yaml'), '--backend', backend]);
      const legacy = await run('legacy');
      assert.equal(legacy.code, 3, legacy.stderr);
      assert.match(legacy.stderr, /the legacy backend runs nothing/);
      // local is still topas's own: its probe, not the impostor's
      const local = await run('local');
      assert.equal(local.code, 3, local.stderr);
      assert.match(local.stderr, /backend local cannot run app plugins-cli: 1 problem in the app spec for it/);
      assert.match(local.stderr, /services\[0\]\.command: service api has no command \(its image local\/mock-app runs on docker\)/);
      assert.deepEqual(backendNames().sort(), ['docker', 'legacy', 'local']);
      assert.equal(getBackend('local').constructor.name, 'LocalBackend');
      assert.equal(getBackend('docker').constructor.name, 'DockerBackend');
    } finally {
      assert.equal((await cli(['plugins', 'uninstall', 'topas-plugin-impostor'])).code, 0);
    }
  });

  test('links and uninstalls went to the private data dir, which lists no plugin at the end', () => {
    const pjson = JSON.parse(fs.readFileSync(path.join(root, 'data', 'package.json'), 'utf8'));
    assert.deepEqual(pjson.oclif.plugins, []);
  });
});
