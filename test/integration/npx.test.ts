import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { REPO_ROOT } from '../helpers/cli';

/**
 * The one-off path: `npm pack`, then from an empty folder `npx --package
 * ./topas-<v>.tgz topas ...` — help, `init`, and the scaffold's smoke scenario
 * on the local backend (embedded PostgreSQL from the registry package).
 */
test('npx from a packed tarball: --help, init, and a passing run from an empty folder', { timeout: 600_000 }, () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'topas-npx-'));
  try {
    const packOut = execFileSync('npm', ['pack', '--json', '--pack-destination', tmp], { cwd: REPO_ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
    // lifecycle scripts (prepack) may print before npm's JSON
    const packed = JSON.parse(packOut.slice(packOut.search(/^\[/m)));
    const tarball = path.join(tmp, packed[0].filename);
    assert.ok(fs.existsSync(tarball));
    const files: string[] = packed[0].files.map((f: { path: string }) => f.path);
    assert.ok(files.includes('oclif.manifest.json'), 'the manifest is generated at prepack');
    assert.ok(files.some((f) => f.startsWith('lua-types/')), 'the Lua type files ship with the package');
    assert.ok(!fs.existsSync(path.join(REPO_ROOT, 'oclif.manifest.json')), 'postpack removes the generated manifest');

    const work = path.join(tmp, 'empty');
    fs.mkdirSync(work);
    const npx = (...args: string[]) =>
      spawnSync('npx', ['--yes', '--package', tarball, 'topas', ...args], {
        cwd: work,
        encoding: 'utf8',
        env: { ...process.env, npm_config_cache: path.join(tmp, 'npm-cache'), npm_config_prefer_offline: 'true' },
        timeout: 400_000,
      });
    const help = npx('--help');
    assert.equal(help.status, 0, help.stderr);
    assert.match(help.stdout, /run\s+Run Lua scenarios/);

    const init = npx('init');
    assert.equal(init.status, 0, init.stderr);
    assert.ok(fs.existsSync(path.join(work, 'topas.yaml')));
    const run = npx('run', 'tests/smoke.lua', '--backend', 'local');
    assert.equal(run.status, 0, `${run.stdout}\n${run.stderr}`);
    assert.match(run.stdout, /1 passed, 0 failed/);
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
});
