import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { cli, REPO_ROOT } from '../helpers/cli';

// issue 19: require() of project modules, open(), data.csv/data.json, through the CLI (local backend, no SUT)
const SUITE = path.join(REPO_ROOT, 'fixtures', 'suite');
let tmp: string;

before(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'topas-suite-'));
});
after(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
});

/** A fresh copy of fixtures/suite (run records land in the copy). */
function suiteCopy(name: string): string {
  const dir = path.join(tmp, name);
  fs.cpSync(SUITE, dir, { recursive: true });
  return dir;
}

/** A project folder with the given files. */
function project(name: string, files: Record<string, string>): string {
  const dir = path.join(tmp, name);
  for (const [f, text] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(dir, f)), { recursive: true });
    fs.writeFileSync(path.join(dir, f), text);
  }
  return dir;
}

describe('the suite (three scenarios, lib/ module, users.csv)', () => {
  test('topas run of the folder: three scenarios pass, lib/ is not run as a scenario', async () => {
    const dir = suiteCopy('run');
    const r = await cli(['run', '.'], { cwd: dir });
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /3 passed, 0 failed/);
    for (const s of ['login.lua', 'profile.lua', 'orders.lua']) assert.match(r.stdout, new RegExp(s.replace('.', '\\.')));
    assert.doesNotMatch(r.stdout, /auth\.lua|util\.lua/);
  });

  test('a playbook of the suite: every instance has its own module state', async () => {
    const dir = suiteCopy('playbook');
    const r = await cli(['run', 'suite.yaml'], { cwd: dir });
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /passed/);
    assert.doesNotMatch(r.stdout + r.stderr, /failed: [1-9]|✗/);
  });

  test('topas load of each scenario: VUs share the CSV and keep their own module state', async () => {
    const dir = suiteCopy('load');
    for (const s of ['login.lua', 'profile.lua', 'orders.lua']) {
      const r = await cli(['load', s, '--rate', '20/s', '--duration', '1s'], { cwd: dir });
      assert.equal(r.code, 0, `${s}: ${r.stdout}${r.stderr}`);
      assert.match(r.stdout, /checks\s*│ rate=100\.00%\s+passes=20\s+fails=0/, `${s}: ${r.stdout}`);
      assert.match(r.stdout, /iterations\s*│ count=20 /);
    }
  });

  test('from a Git source (--git file://...): modules and data resolve inside the checkout', async () => {
    const repo = suiteCopy('git-repo');
    const g = (...args: string[]) => execFileSync('git', ['-C', repo, ...args], { encoding: 'utf8' }).trim();
    execFileSync('git', ['init', '-q', '-b', 'main', repo]);
    g('add', '.');
    g('-c', 'user.email=t@t', '-c', 'user.name=t', 'commit', '-qm', 'suite');
    const cwd = path.join(tmp, 'git-cwd');
    fs.mkdirSync(cwd);
    const r = await cli(['run', '--git', `file://${repo}`], { cwd, env: { ...process.env, XDG_CACHE_HOME: path.join(tmp, 'git-cache') } });
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /3 passed, 0 failed/);
  });
});

describe('require() of project modules', () => {
  test('a module is found beside the scenario, then at the project root, as lib/x.lua or lib/x/init.lua', async () => {
    const dir = project('resolve', {
      'lib/root.lua': 'return { where = "root" }\n',
      'tests/lib/near.lua': 'return { where = "near" }\n',
      'tests/lib/pkg/init.lua': 'return { where = "init" }\n',
      'tests/a.lua': [
        'expect(require("lib.near").where):to_be("near")',
        'expect(require("lib.root").where):to_be("root")',
        'expect(require("lib.pkg").where):to_be("init")',
        'expect(require("lib.near")):to_be(require("lib.near"))',
        '',
      ].join('\n'),
    });
    const r = await cli(['run', 'tests/a.lua'], { cwd: dir });
    assert.equal(r.code, 0, r.stdout + r.stderr);
  });

  test('paths cannot leave the project folder: "..x", absolute names and symlinks out are refused', async () => {
    const outside = path.join(tmp, 'outside');
    fs.mkdirSync(outside, { recursive: true });
    fs.writeFileSync(path.join(outside, 'evil.lua'), 'return { pwned = true }\n');
    const dir = project('escape', {
      'dots.lua': 'require("..outside.evil")\n',
      'abs.lua': `require(${JSON.stringify(path.join(outside, 'evil'))})\n`,
      'link.lua': 'require("lib.evil")\n',
    });
    fs.mkdirSync(path.join(dir, 'lib'));
    fs.symlinkSync(path.join(outside, 'evil.lua'), path.join(dir, 'lib', 'evil.lua'));
    for (const [file, why] of [
      ['dots.lua', /dots\.lua:1: require\("\.\.outside\.evil"\): not a module name.*cannot leave the project folder/],
      ['abs.lua', /abs\.lua:1: require\(".*evil"\): not a module name/],
      ['link.lua', /link\.lua:1: require\("lib\.evil"\): lib\/evil\.lua leads to .*outside\/evil\.lua, outside the project folder/],
    ] as const) {
      const r = await cli(['run', file], { cwd: dir });
      assert.equal(r.code, 1, `${file}: ${r.stdout}${r.stderr}`);
      assert.match(r.stdout + r.stderr, why, file);
      assert.doesNotMatch(r.stdout + r.stderr, /pwned/);
    }
  });

  test('a syntax error in a required module names its file and line, before anything starts (exit 2)', async () => {
    const dir = project('syntax', {
      'lib/good.lua': 'return require("lib.bad")\n',
      'lib/bad.lua': 'local M = {}\n\nfunction M.x(\n  return 1\nend\nreturn M\n',
      'a.lua': 'local g = require("lib.good")\nprint("ran")\n',
    });
    const r = await cli(['run', 'a.lua'], { cwd: dir });
    assert.equal(r.code, 2, r.stdout + r.stderr);
    assert.match(r.stdout + r.stderr, /lib\/bad\.lua:4/);
    assert.doesNotMatch(r.stdout + r.stderr, /ran/);
    assert.equal(fs.existsSync(path.join(dir, '.topas')), false, 'nothing was started');
    const load = await cli(['load', 'a.lua', '--rate', '5/s', '--duration', '1s'], { cwd: dir });
    assert.equal(load.code, 2, load.stdout + load.stderr);
    assert.match(load.stdout + load.stderr, /lib\/bad\.lua:4/);
  });

  test('a runtime error in a module names the module line; built-in modules keep their names', async () => {
    const dir = project('runtime', {
      'lib/boom.lua': 'local M = {}\nfunction M.go()\n  error("kaboom")\nend\nreturn M\n',
      'net.lua': 'return { shadowed = true }\n',
      'a.lua': 'local net = require("net")\nexpect(net.shadowed):to_be_nil()\nexpect(type(net.get)):to_be("function")\nrequire("lib.boom").go()\n',
    });
    const r = await cli(['run', 'a.lua'], { cwd: dir });
    assert.equal(r.code, 1, r.stdout + r.stderr);
    assert.match(r.stdout + r.stderr, /lib\/boom\.lua:3: kaboom/);
  });

  test('module state does not leak between scenarios running together', async () => {
    const files: Record<string, string> = { 'lib/counter.lua': 'local n = 0\nreturn { inc = function() n = n + 1; return n end }\n' };
    for (let i = 1; i <= 6; i++) {
      files[`s${i}.lua`] = `local c = require("lib.counter")\nfor k = 1, 5 do expect(c.inc()):to_be(k); sleep(0.01) end\nCOUNTER_GLOBAL = ${i}\n`;
    }
    const dir = project('isolation', files);
    const r = await cli(['run', '.'], { cwd: dir });
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /6 passed, 0 failed/);
  });
});

describe('open() and data files', () => {
  test('open() and data.* refuse files outside the project folder, symlinks included', async () => {
    const outside = path.join(tmp, 'secret');
    fs.mkdirSync(outside, { recursive: true });
    fs.writeFileSync(path.join(outside, 'secret.csv'), 'a,b\nTOPSECRET,1\n');
    const dir = project('data-escape', {
      'open.lua': 'print(open("../secret/secret.csv"))\n',
      'csv.lua': 'print(data.csv("data/link.csv")[1][1])\n',
      'abs.lua': `print(open(${JSON.stringify(path.join(outside, 'secret.csv'))}))\n`,
      'missing.lua': 'data.json("data/none.json")\n',
    });
    fs.mkdirSync(path.join(dir, 'data'));
    fs.symlinkSync(path.join(outside, 'secret.csv'), path.join(dir, 'data', 'link.csv'));
    for (const [file, why] of [
      ['open.lua', /open\.lua:1: open: \.\.\/secret\/secret\.csv is outside the project folder/],
      ['csv.lua', /csv\.lua:1: data\.csv: data\/link\.csv leads to .*secret\.csv, outside the project folder/],
      ['abs.lua', /abs\.lua:1: open: .*secret\.csv is outside the project folder/],
      ['missing.lua', /missing\.lua:1: data\.json: data\/none\.json: no such file/],
    ] as const) {
      const r = await cli(['run', file], { cwd: dir });
      assert.equal(r.code, 1, `${file}: ${r.stdout}${r.stderr}`);
      assert.match(r.stdout + r.stderr, why, file);
      assert.doesNotMatch(r.stdout + r.stderr, /TOPSECRET/);
    }
  });

  test('data.csv: separators, quoted newlines, CRLF and a byte order mark; data.json values', async () => {
    const dir = project('csv-forms', {
      'data/semi.csv': '\ufeffid;note\r\n1;"two\r\nlines"\r\n\r\n2;"a ""q"""\r\n',
      'data/list.json': '[{"a":1},{"a":[1,2,{"b":"c"}]}]',
      'data/n.json': '42',
      'a.lua': [
        'local rows = data.csv("data/semi.csv", { header = true, separator = ";" })',
        'expect(#rows):to_be(2)',
        'expect(rows[1]):to_equal({ id = "1", note = "two\\r\\nlines" })',
        'expect(rows[2].note):to_be(\'a "q"\')',
        'expect(rows[3]):to_be_nil()',
        'expect(rows[0]):to_be_nil()',
        'local n = 0',
        'for i, r in pairs(rows) do n = n + i end',
        'expect(n):to_be(3)',
        'local l = data.json("data/list.json")',
        'expect(#l):to_be(2)',
        'expect(l[2].a[3].b):to_be("c")',
        'expect(data.json("data/n.json")):to_be(42)',
        'expect(data.csv("data/semi.csv", { header = true, separator = ";" })):to_be(rows)',
        'expect(require("data")):to_be(data)',
        'local ok, err = pcall(function() data.csv = nil end)',
        'expect(ok):to_be(false)',
        'ok, err = pcall(rawset, rows, 1, {})',
        'expect(ok):to_be(false)',
        '',
      ].join('\n'),
    });
    const r = await cli(['run', 'a.lua'], { cwd: dir });
    assert.equal(r.code, 0, r.stdout + r.stderr);
  });
});

describe('editor completion', () => {
  test('topas init: .luarc.json resolves lib/ modules beside the scenarios and knows open/data', async () => {
    const dir = path.join(tmp, 'init');
    fs.mkdirSync(dir);
    const r = await cli(['init'], { cwd: dir });
    assert.equal(r.code, 0, r.stdout + r.stderr);
    const rc = JSON.parse(fs.readFileSync(path.join(dir, '.luarc.json'), 'utf8'));
    assert.deepEqual(rc.runtime.path, ['?.lua', '?/init.lua', 'tests/?.lua', 'tests/?/init.lua']);
    for (const g of ['open', 'data']) assert.ok(rc.diagnostics.globals.includes(g), g);
    assert.ok(fs.existsSync(path.join(REPO_ROOT, 'lua-types', 'data.lua')));
  });
});
