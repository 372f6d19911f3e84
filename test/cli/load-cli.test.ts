import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { captureIo, cli, REPO_ROOT } from '../helpers/cli';
import { startHttpServer, type TestHttpServer } from '../helpers/http-server';
import { runCli } from '../../src/cli/main';

const SCRIPTS = path.join(REPO_ROOT, 'fixtures', 'load', 'no-app');
let server: TestHttpServer;
let cwd: string;

before(async () => {
  cwd = fs.mkdtempSync(path.join(os.tmpdir(), 'topas-load-cli-'));
  server = await startHttpServer((_req, res) => res.end('ok'));
});

after(async () => {
  await server.close();
  fs.rmSync(cwd, { recursive: true, force: true });
});

describe('topas load (CLI)', () => {
  test('--help shows the load flags and the exit codes', async () => {
    // oclif prints help on the real stdout: run the binary
    const r = spawnSync(process.execPath, [path.join(REPO_ROOT, 'bin', 'run.js'), 'load', '--help'], { encoding: 'utf8', timeout: 60_000 });
    assert.equal(r.status, 0, r.stderr);
    for (const flag of ['--rate', '--duration', '--ramp', '--max-vus', '--threshold', '--workers', '--baseline', '--max-regression', '--json']) {
      assert.ok(r.stdout.includes(flag), `${flag} missing from:\n${r.stdout}`);
    }
    assert.match(r.stdout, /4 thresholds failed/);
  });

  test('not a terminal: plain progress lines, then the summary table', async () => {
    const r = await cli(['load', path.join(SCRIPTS, 'fixed.lua'), '--rate', '50/s', '--duration', '2s'], { cwd, env: { ...process.env, TARGET: `${server.url}/fixed` } });
    assert.equal(r.code, 0, r.stderr);
    assert.doesNotMatch(r.stderr, /\x1b\[/);
    assert.match(r.stderr, /2\.00s\/2\.00s \(100%\)\s+rate \d+\/50 it\/s/);
    assert.match(r.stdout, /http_req_duration/);
    assert.match(r.stdout, /iterations\s*│ count=100 /);
    assert.match(r.stdout, /run \S+: passed/);
  });

  test('on a terminal the progress line is redrawn in place', async () => {
    const cap = captureIo({ cwd, env: { ...process.env, TARGET: `${server.url}/fixed` }, tty: true });
    const code = await runCli(['load', path.join(SCRIPTS, 'fixed.lua'), '--rate', '20/s', '--duration', '3s'], cap.io);
    assert.equal(code, 0, cap.stderr);
    // cursor up + clear line: the same line rewritten
    assert.match(cap.stderr, /\x1b\[1A\r\x1b\[2K\d/);
    assert.match(cap.stderr, /3\.00s\/3\.00s \(100%\)/);
  });

  test('a script without iteration() or with a syntax error exits 2', async () => {
    const none = await cli(['load', path.join(SCRIPTS, 'no-iteration.lua')], { cwd });
    assert.equal(none.code, 2, none.stderr);
    assert.match(none.stderr, /defines no iteration\(ctx\) function/);
    const bad = await cli(['load', path.join(SCRIPTS, 'bad-syntax.lua')], { cwd });
    assert.equal(bad.code, 2, bad.stderr);
    assert.match(bad.stderr, /bad-syntax\.lua:3/);
  });
});
