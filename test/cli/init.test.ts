import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { once } from 'node:events';
import { parse as parseYaml } from 'yaml';
import { REPO_ROOT, cli } from '../helpers/cli';

function tempDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'topas-init-'));
}

const SCAFFOLD = ['topas.yaml', 'app/server.js', 'tests/smoke.lua', '.luarc.json', '.gitignore'];

describe('topas init', () => {
  test('scaffolds a runnable project into an empty folder and says what it wrote', async () => {
    const dir = tempDir();
    try {
      const r = await cli(['init'], { cwd: dir });
      assert.equal(r.code, 0, r.stderr);
      for (const f of SCAFFOLD) {
        assert.ok(fs.existsSync(path.join(dir, f)), `${f} was written`);
        assert.match(r.stdout, new RegExp(`created\\s+${f.replace('.', '\\.')}`));
      }
      const spec = parseYaml(fs.readFileSync(path.join(dir, 'topas.yaml'), 'utf8'));
      assert.equal(spec.name, path.basename(dir).toLowerCase().replace(/[^a-z0-9-]+/g, '-').replace(/^[^a-z]+/, '').replace(/-+$/, ''));
      assert.deepEqual(spec.services[0].command, ['node', 'app/server.js']);
      assert.match(spec.databases[0].initSQL, /CREATE TABLE greetings/);
      assert.equal(fs.readFileSync(path.join(dir, '.gitignore'), 'utf8').split('\n').filter((l) => l === '.topas/').length, 1);
      const smoke = fs.readFileSync(path.join(dir, 'tests/smoke.lua'), 'utf8');
      for (const word of ['require("net")', 'require("db")', 'expect(', 'step(', 'check(']) assert.ok(smoke.includes(word), word);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('.luarc.json points LuaLS at the shipped type files for Lua 5.4 with the topas globals', async () => {
    const dir = tempDir();
    try {
      assert.equal((await cli(['init'], { cwd: dir })).code, 0);
      const rc = JSON.parse(fs.readFileSync(path.join(dir, '.luarc.json'), 'utf8'));
      assert.equal(rc.runtime.version, 'Lua 5.4');
      const lib = rc.workspace.library[0] as string;
      const libDir = path.isAbsolute(lib) ? lib : path.join(dir, lib);
      for (const f of ['globals.lua', 'net.lua', 'sut.lua', 'db.lua']) assert.ok(fs.existsSync(path.join(libDir, f)), `${f} in ${libDir}`);
      for (const g of ['step', 'check', 'expect', 'json', 'env', 'instance']) assert.ok(rc.diagnostics.globals.includes(g), g);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('a second run keeps edited files, does not duplicate .gitignore entries; --force overwrites', async () => {
    const dir = tempDir();
    try {
      fs.writeFileSync(path.join(dir, '.gitignore'), 'node_modules\n/.topas');
      assert.equal((await cli(['init'], { cwd: dir })).code, 0);
      assert.equal(fs.readFileSync(path.join(dir, '.gitignore'), 'utf8'), 'node_modules\n/.topas', 'an equivalent entry is recognized');
      fs.writeFileSync(path.join(dir, 'tests/smoke.lua'), '-- mine\n');

      const again = await cli(['init', '--json'], { cwd: dir });
      assert.equal(again.code, 0, again.stderr);
      const report = JSON.parse(again.stdout);
      const byPath = Object.fromEntries(report.files.map((f: { path: string; action: string }) => [f.path, f.action]));
      assert.equal(byPath['tests/smoke.lua'], 'skipped');
      assert.equal(byPath['topas.yaml'], 'unchanged');
      assert.equal(byPath['.gitignore'], 'unchanged');
      assert.equal(fs.readFileSync(path.join(dir, 'tests/smoke.lua'), 'utf8'), '-- mine\n');

      const forced = await cli(['init', '--force'], { cwd: dir });
      assert.equal(forced.code, 0, forced.stderr);
      assert.match(forced.stdout, /overwritten\s+tests\/smoke\.lua/);
      assert.match(fs.readFileSync(path.join(dir, 'tests/smoke.lua'), 'utf8'), /step\("web answers"/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('.gitignore without the entry gets it appended once, after a newline', async () => {
    const dir = tempDir();
    try {
      fs.writeFileSync(path.join(dir, '.gitignore'), 'node_modules');
      assert.equal((await cli(['init'], { cwd: dir })).code, 0);
      assert.equal((await cli(['init'], { cwd: dir })).code, 0);
      const text = fs.readFileSync(path.join(dir, '.gitignore'), 'utf8');
      assert.match(text, /^node_modules\n/);
      assert.equal(text.split('\n').filter((l) => l === '.topas/').length, 1);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('--name sets the app name and an invalid one is invalid input', async () => {
    const dir = tempDir();
    try {
      const bad = await cli(['init', '--name', 'Not Valid'], { cwd: dir });
      assert.equal(bad.code, 2, bad.stderr);
      assert.match(bad.stderr, /--name/);
      assert.equal(fs.existsSync(path.join(dir, 'topas.yaml')), false, 'nothing written on invalid input');
      assert.equal((await cli(['init', '--name', 'shop'], { cwd: dir })).code, 0);
      assert.match(fs.readFileSync(path.join(dir, 'topas.yaml'), 'utf8'), /^name: shop$/m);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('the scaffolded server answers /healthz and /api/hello with the configured greeting', async () => {
    const dir = tempDir();
    try {
      assert.equal((await cli(['init'], { cwd: dir })).code, 0);
      const child = spawn(process.execPath, ['app/server.js'], { cwd: dir, env: { PORT: '0', GREETING: 'Hi' }, stdio: ['ignore', 'pipe', 'inherit'] });
      try {
        let out = '';
        const port = await new Promise<number>((resolve, reject) => {
          const timer = setTimeout(() => reject(new Error(`server did not start: ${out}`)), 10_000);
          child.stdout.on('data', (c: Buffer) => {
            out += c.toString();
            const m = /listening on (\d+)/.exec(out);
            if (m) {
              clearTimeout(timer);
              resolve(Number(m[1]));
            }
          });
        });
        const health = await fetch(`http://127.0.0.1:${port}/healthz`);
        assert.equal(health.status, 200);
        const hello = await fetch(`http://127.0.0.1:${port}/api/hello?name=topas`);
        assert.deepEqual(((await hello.json()) as { message: string }).message, 'Hi, topas!');
        assert.equal((await fetch(`http://127.0.0.1:${port}/nope`)).status, 404);
      } finally {
        child.kill('SIGTERM');
        if (child.exitCode === null) await once(child, 'exit');
      }
      assert.notEqual(child.exitCode ?? child.signalCode, null, 'server process is gone');
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('the scaffold runs as it is', () => {
  test('`topas run tests/smoke.lua --backend local` passes right after `topas init`', async () => {
    const dir = tempDir();
    try {
      assert.equal((await cli(['init'], { cwd: dir })).code, 0);
      const r = await cli(['run', 'tests/smoke.lua', '--backend', 'local', '--json'], { cwd: dir });
      assert.equal(r.code, 0, r.stderr + r.stdout);
      const report = JSON.parse(r.stdout);
      assert.equal(report.state, 'passed');
      assert.deepEqual(
        report.results[0].steps.map((s: { name: string; state: string }) => [s.name, s.state]),
        [
          ['web answers', 'passed'],
          ['database has the schema from initSQL', 'passed'],
        ],
      );
      assert.deepEqual(leftoverProcesses(dir), [], 'the app and PostgreSQL are gone after the run');
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

/** Processes whose command line mentions `dir` (the scaffold's server, its PostgreSQL). */
function leftoverProcesses(dir: string): string[] {
  const out: string[] = [];
  for (const pid of fs.readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    try {
      const cmd = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ');
      const cwd = fs.readlinkSync(`/proc/${pid}/cwd`);
      if (cmd.includes(dir) || cwd.startsWith(dir)) out.push(`${pid}: ${cmd}`);
    } catch {
      /* gone meanwhile, or not ours to read */
    }
  }
  return out;
}

describe('shell completion (@oclif/plugin-autocomplete) in the npm-installed CLI', () => {
  test('autocomplete --help and a bash script come from the plugin', () => {
    const dir = tempDir();
    try {
      const env = { ...process.env, HOME: dir, XDG_CACHE_HOME: path.join(dir, 'cache') };
      const run = (args: string[]) => spawnSync(process.execPath, [path.join(REPO_ROOT, 'bin', 'run.js'), ...args], { cwd: dir, env, encoding: 'utf8', timeout: 60_000 });
      const help = run(['autocomplete', '--help']);
      assert.equal(help.status, 0, help.stderr);
      assert.match(help.stdout, /autocomplete \[SHELL\]/);
      const script = run(['autocomplete', 'script', 'bash']);
      assert.equal(script.status, 0, script.stderr);
      assert.match(script.stdout, /TOPAS_AC_BASH_SETUP_PATH/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
