import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { REPO_ROOT, captureIo, cli } from '../helpers/cli';
import { runCli } from '../../src/cli/main';
import { startHttpServer } from '../helpers/http-server';

// issue 19, "CLI gaps": what a new user types
function tempDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'topas-gaps-'));
}
const BIN = path.join(REPO_ROOT, 'bin', 'run.js');
const PASS = path.join(REPO_ROOT, 'fixtures/cli/no-app/pass.lua');
const ESC = /\x1b\[/;

describe('CLI gaps', () => {
  test('`topas init` says that a bare `topas run` runs tests/', async () => {
    const dir = tempDir();
    try {
      const r = await cli(['init'], { cwd: dir });
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /topas run\s+# runs every scenario in tests\//);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('a bare `topas run` without a topas.yaml is invalid input that says what it looked for', async () => {
    const dir = tempDir();
    try {
      const r = await cli(['run'], { cwd: dir });
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr, /runs tests\/ next to a topas\.yaml/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('--env-file reads dotenv (comments, quotes, export); --env wins over it', async () => {
    const dir = tempDir();
    try {
      fs.writeFileSync(
        path.join(dir, '.env'),
        ['# a comment', '', 'PLAIN=plain value # trailing comment', 'export EXPORTED=exported', "SINGLE='a # not a comment'", 'DOUBLE="line1\\nline2"', 'WINS=file', 'EMPTY='].join('\n'),
      );
      const r = await cli(['run', PASS.replace('pass.lua', 'env-file.lua'), '--env-file', '.env', '--env', 'WINS=flag', '--json'], { cwd: dir });
      assert.equal(r.code, 0, r.stderr + r.stdout);
      assert.equal(JSON.parse(r.stdout).results[0].state, 'passed', r.stdout);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('--env-file: a missing file and bad lines are invalid input naming file:line', async () => {
    const dir = tempDir();
    try {
      fs.writeFileSync(path.join(dir, 'bad.env'), ['OK=1', 'no equals sign', '1BAD=x', 'Q="unclosed'].join('\n'));
      const bad = await cli(['run', PASS, '--env-file', 'bad.env'], { cwd: dir });
      assert.equal(bad.code, 2, bad.stderr);
      assert.match(bad.stderr, /bad\.env:2: expected NAME=value/);
      assert.match(bad.stderr, /bad\.env:3: expected a variable name/);
      assert.match(bad.stderr, /bad\.env:4: unclosed " quote/);
      const missing = await cli(['run', PASS, '--env-file', 'nope.env'], { cwd: dir });
      assert.equal(missing.code, 2, missing.stderr);
      assert.match(missing.stderr, /--env-file nope\.env: no such file/);
      const load = await cli(['load', PASS, '--env-file', 'nope.env'], { cwd: dir });
      assert.equal(load.code, 2, load.stderr);
      assert.match(load.stderr, /--env-file nope\.env: no such file/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('NO_COLOR turns colour off on a terminal; FORCE_COLOR turns it on in a pipe (tables and errors)', async () => {
    const tty = captureIo({ env: { ...process.env, NO_COLOR: '1', FORCE_COLOR: undefined }, tty: true });
    assert.equal(await runCli(['run', PASS], tty.io), 0, tty.stderr);
    assert.match(tty.stdout, /1 passed/);
    assert.doesNotMatch(tty.stdout, ESC);

    const plainTty = captureIo({ env: { ...process.env, NO_COLOR: undefined, FORCE_COLOR: undefined }, tty: true });
    assert.equal(await runCli(['run', PASS], plainTty.io), 0, plainTty.stderr);
    assert.match(plainTty.stdout, ESC, 'a terminal gets colour by default');

    const forced = await cli(['run', PASS], { env: { ...process.env, NO_COLOR: undefined, FORCE_COLOR: '1' } });
    assert.equal(forced.code, 0, forced.stderr);
    assert.match(forced.stdout, /\x1b\[32m1 passed/);

    const err = await cli(['run', 'does-not-exist.lua'], { env: { ...process.env, NO_COLOR: undefined, FORCE_COLOR: '1' } });
    assert.equal(err.code, 2);
    assert.match(err.stderr, /\x1b\[31merror \[/);
    const errTty = captureIo({ env: { ...process.env, NO_COLOR: '1' }, tty: true });
    assert.equal(await runCli(['run', 'does-not-exist.lua'], errTty.io), 2);
    assert.doesNotMatch(errTty.stderr, ESC);
    const off = await cli(['run', PASS], { env: { ...process.env, NO_COLOR: undefined, FORCE_COLOR: '0' } });
    assert.doesNotMatch(off.stdout, ESC);
  });

  test('NO_COLOR / FORCE_COLOR in `topas load`: progress and the summary', async () => {
    const server = await startHttpServer((_req, res) => res.end('ok'));
    const dir = tempDir();
    try {
      const script = path.join(REPO_ROOT, 'fixtures/load/no-app/fixed.lua');
      const args = ['load', script, '--rate', '20/s', '--duration', '1s', '--threshold', 'http_req_failed: rate<0.5'];
      const forced = await cli(args, { cwd: dir, env: { ...process.env, TARGET: `${server.url}/x`, NO_COLOR: undefined, FORCE_COLOR: '1' } });
      assert.equal(forced.code, 0, forced.stderr);
      assert.match(forced.stdout, /\x1b\[32m✓/);
      const tty = captureIo({ cwd: dir, env: { ...process.env, TARGET: 'http://127.0.0.1:1/refused', NO_COLOR: '1' }, tty: true });
      await runCli([...args.slice(0, 6)], tty.io);
      assert.match(tty.stderr, /errors [1-9]/);
      // cursor movement stays (a terminal), colour goes
      assert.doesNotMatch(tty.stderr.replace(/\x1b\[\d*[AK]/g, ''), ESC);
      assert.doesNotMatch(tty.stdout, ESC);
      const forcedTty = captureIo({ cwd: dir, env: { ...process.env, TARGET: 'http://127.0.0.1:1/refused', NO_COLOR: undefined, FORCE_COLOR: '1' }, tty: true });
      await runCli([...args.slice(0, 6)], forcedTty.io);
      assert.match(forcedTty.stderr, /\x1b\[31merrors [1-9]/);
    } finally {
      await server.close();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('the app spec\'s top-level env (for scenarios) is validated; references there are refused', async () => {
    const dir = tempDir();
    try {
      fs.writeFileSync(path.join(dir, 'topas.yaml'), 'name: x\nenv:\n  DB: ${db.url}\n  "bad name": 1\nservices:\n  - name: api\n    command: ["node", "x.js"]\n    port: 8080\ndatabases:\n  - name: db\n');
      const r = await cli(['run', PASS, '--app', 'topas.yaml'], { cwd: dir });
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr, /env\.DB: references like \$\{db\.url\} are resolved in services' env only/);
      assert.match(r.stderr, /bad name/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('`topas help <command>` prints what `<command> --help` prints', () => {
    for (const cmd of [['run'], ['load'], ['test', 'schedule']]) {
      const a = spawnSync(process.execPath, [BIN, 'help', ...cmd], { encoding: 'utf8', timeout: 60_000 });
      const b = spawnSync(process.execPath, [BIN, ...cmd, '--help'], { encoding: 'utf8', timeout: 60_000 });
      assert.equal(a.status, 0, a.stderr);
      assert.equal(a.stdout, b.stdout);
      assert.match(a.stdout, /USAGE/);
    }
    const unknown = spawnSync(process.execPath, [BIN, 'help', 'nope'], { encoding: 'utf8', timeout: 60_000 });
    assert.equal(unknown.status, 2);
    assert.match(unknown.stderr, /nope not found/);
  });

  test('`test schedule` validates everything first: invalid input exits 2 at once and queues nothing', async () => {
    const dir = tempDir();
    try {
      fs.copyFileSync(path.join(REPO_ROOT, 'fixtures/cli/syntax/bad.lua'), path.join(dir, 'bad.lua'));
      fs.copyFileSync(PASS, path.join(dir, 'pass.lua'));
      fs.writeFileSync(path.join(dir, 'pb.yaml'), 'name: pb\nroles:\n  - name: a\n    script: missing.lua\n    instances: 1\n');
      const cases: Array<[string[], RegExp, string?]> = [
        [['bad.lua'], /LUA_SYNTAX/],
        [['pb.yaml'], /missing\.lua/],
        [['pass.lua', '--app', 'nope.yaml'], /nope\.yaml/],
        [['pass.lua', '--app', 'spec.yaml'], /INVALID_APP_SPEC/, 'services:\n  - name: api\n    port: 80a\n'],
        [['pass.lua', '--timeout', 'soon'], /--timeout/],
        [['pass.lua', '--env-file', 'nope.env'], /no such file/],
      ];
      for (const [args, expected, spec] of cases) {
        if (spec) fs.writeFileSync(path.join(dir, 'spec.yaml'), spec);
        const t0 = Date.now();
        const r = await cli(['test', 'schedule', ...args], { cwd: dir });
        assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}${r.stdout}`);
        assert.match(r.stderr, expected);
        assert.equal(r.stdout, '', 'no run id');
        assert.ok(Date.now() - t0 < 15_000);
      }
      assert.ok(!fs.existsSync(path.join(dir, '.topas', 'runs')) || fs.readdirSync(path.join(dir, '.topas', 'runs')).length === 0, 'nothing was queued');
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
