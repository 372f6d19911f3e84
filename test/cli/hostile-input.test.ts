import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { REPO_ROOT, cli } from '../helpers/cli';
import { writeCollectionLoadScript } from '../../src/postman/collection-load-script';

describe('topas run: hostile input never runs commands', () => {
  for (const form of ['separate', 'equals'] as const) {
    test(`--git with an option-looking URL (${form}) is invalid input and runs nothing`, async () => {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'topas-inject-'));
      const marker = path.join(dir, 'pwned');
      const evil = `--upload-pack=touch ${marker};`;
      try {
        const args = form === 'separate' ? ['--git', evil] : [`--git=${evil}`];
        const r = await cli(['run', 'fixtures/hostile/ok.lua', ...args], { env: { ...process.env, XDG_CACHE_HOME: path.join(dir, 'cache') } });
        assert.equal(fs.existsSync(marker), false, 'the injected command ran');
        assert.equal(r.code, 2, r.stderr + r.stdout);
        assert.match(r.stderr, /--git\b.*must not start with "-"/);
      } finally {
        fs.rmSync(dir, { recursive: true, force: true });
      }
    });
  }

  test('--git-ref that looks like an option is invalid input and runs nothing', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'topas-inject-'));
    const marker = path.join(dir, 'pwned');
    try {
      const r = await cli(['run', 'fixtures/hostile/ok.lua', '--git', `file://${dir}/repo`, `--git-ref=--upload-pack=touch ${marker};`], {
        env: { ...process.env, XDG_CACHE_HOME: path.join(dir, 'cache') },
      });
      assert.equal(fs.existsSync(marker), false, 'the injected command ran');
      assert.equal(r.code, 2, r.stderr + r.stdout);
      assert.match(r.stderr, /--git-ref.*must not start with "-"/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('an ext:: transport URL is invalid input and runs nothing', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'topas-inject-'));
    const marker = path.join(dir, 'pwned');
    try {
      const r = await cli(['run', 'fixtures/hostile/ok.lua', '--git', `ext::sh -c touch% ${marker}`], { env: { ...process.env, XDG_CACHE_HOME: path.join(dir, 'cache') } });
      assert.equal(fs.existsSync(marker), false, 'the injected command ran');
      assert.equal(r.code, 2, r.stderr + r.stdout);
      assert.match(r.stderr, /--git\b.*transport/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('one scenario can neither crash nor patch the engine for the next (--parallel 1: one worker)', async (t) => {
    const r = await cli(['run', 'fixtures/hostile/a-crash.lua', 'fixtures/hostile/b-deep-json.lua', 'fixtures/hostile/c-patch-libs.lua', 'fixtures/hostile/d-victim.lua', '--parallel', '1', '--reporter', 'json']);
    t.diagnostic(`elapsed ${r.elapsedMs} ms`);
    assert.equal(r.code, 1, r.stderr + r.stdout);
    const report = JSON.parse(r.stdout) as { results: Array<{ file: string; state: string; error?: { message: string } }> };
    const byFile = new Map(report.results.map((x) => [path.basename(x.file), x]));
    for (const f of ['b-deep-json.lua', 'c-patch-libs.lua', 'd-victim.lua']) assert.equal(byFile.get(f)?.state, 'passed', `${f}: ${byFile.get(f)?.error?.message}`);
    assert.equal(byFile.get('a-crash.lua')?.state, 'error');
    assert.match(byFile.get('a-crash.lua')?.error?.message ?? '', /crashed the Lua engine/);
  });

  test('text meant to drive the terminal reaches the console and the table escaped; JSON keeps it exactly', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'topas-ansi-'));
    try {
      const json = path.join(dir, 'r.json');
      const r = await cli(['run', path.join(REPO_ROOT, 'fixtures/hostile/e-terminal-injection.lua'), '--reporter', 'table', '--reporter', `json:${json}`], { cwd: dir });
      assert.equal(r.code, 1, r.stderr + r.stdout);
      // nothing that a terminal acts on: ESC, BEL, CR, C1 controls
      assert.doesNotMatch(r.stderr + r.stdout, /[\x00-\x08\x0b-\x1f\x7f-\x9f]/);
      assert.ok(r.stderr.includes('\\x1b[2J\\x1b[31mRED\\x1b]0;pwned\\x07 \\r overwritten'), r.stderr);
      assert.ok(r.stdout.includes('step \\x1b[31mred\\x1b[0m\\nfake line'), 'a step name stays on one line');
      assert.match(r.stdout, /\\x1b\[2J\\x1b\]0;title\\x07cleared\\r\n\s+fake: PASS/, 'a message keeps its lines');
      const report = JSON.parse(fs.readFileSync(json, 'utf8')) as { results: Array<{ steps: Array<{ name: string }> }> };
      assert.equal(report.results[0].steps[0].name, 'step \x1b[31mred\x1b[0m\nfake line', 'the record keeps the real name');
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('a load script printing escape sequences reaches the console escaped', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'topas-ansi-load-'));
    try {
      const r = await cli(['load', path.join(REPO_ROOT, 'fixtures/hostile/load-terminal-injection.lua')], { cwd: dir });
      assert.equal(r.code, 0, r.stderr + r.stdout);
      assert.ok(r.stderr.includes('\\x1b[2J\\x1b]0;pwned\\x07 \\r overwritten'), r.stderr);
      assert.doesNotMatch(r.stderr, /\x1b\[2J|\x07/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('a scenario file named with an escape sequence or a newline is shown escaped', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'topas-names-'));
    try {
      fs.writeFileSync(path.join(dir, 'esc\x1b[31mred.lua'), 'error("boom")\n');
      fs.writeFileSync(path.join(dir, 'new\nline.lua'), 'step("ok", function() end)\n');
      fs.writeFileSync(path.join(dir, 'with space ünï€ode 🚀.lua'), 'step("ok", function() end)\n');
      const r = await cli(['run', dir, '--reporter', 'table'], { cwd: dir });
      assert.equal(r.code, 1, r.stderr + r.stdout);
      assert.doesNotMatch(r.stderr + r.stdout, /[\x00-\x08\x0b-\x1f\x7f-\x9f]/);
      assert.match(r.stdout, /esc\\x1b\[31mred\.lua/);
      assert.match(r.stdout, /new\\nline\.lua/);
      assert.match(r.stdout, /with space ünï€ode 🚀\.lua/);
      assert.match(r.stdout, /2 passed, 1 failed/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('the generated Postman load script is never written through a folder or symlink someone else planted in the temp dir', () => {
    const collection = path.join(REPO_ROOT, 'fixtures', 'postman', 'mock-app.postman_collection.json');
    const savedTmp = process.env.TMPDIR;
    const clean = fs.mkdtempSync(path.join(os.tmpdir(), 'topas-pm-clean-'));
    const shared = fs.mkdtempSync(path.join(os.tmpdir(), 'topas-pm-shared-'));
    try {
      process.env.TMPDIR = clean;
      const name = path.basename(writeCollectionLoadScript(collection, {}, REPO_ROOT));
      // the trap: a world-writable folder of the expected name, the script's name a symlink to a victim
      const victim = path.join(shared, 'victim.txt');
      fs.writeFileSync(victim, 'precious\n');
      const planted = path.join(shared, 'topas-postman-load');
      fs.mkdirSync(planted);
      fs.chmodSync(planted, 0o777);
      fs.symlinkSync(victim, path.join(planted, name));
      process.env.TMPDIR = shared;
      const script = writeCollectionLoadScript(collection, {}, REPO_ROOT);
      assert.equal(fs.readFileSync(victim, 'utf8'), 'precious\n', 'the victim was overwritten through the symlink');
      assert.notEqual(path.dirname(script), planted);
      assert.equal(fs.statSync(path.dirname(script)).mode & 0o077, 0, 'the script folder is private');
      assert.match(fs.readFileSync(script, 'utf8'), /postman\.replay/);
    } finally {
      if (savedTmp === undefined) delete process.env.TMPDIR;
      else process.env.TMPDIR = savedTmp;
      fs.rmSync(clean, { recursive: true, force: true });
      fs.rmSync(shared, { recursive: true, force: true });
    }
  });

  test('a 1 MiB step name, a 1 MiB check name and a 5 MiB error are cut to size in every report', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'topas-huge-'));
    try {
      const json = path.join(dir, 'r.json');
      const r = await cli(['run', path.join(REPO_ROOT, 'fixtures/hostile/f-huge-texts.lua'), '--reporter', 'table', '--reporter', `json:${json}`, '--reporter', `junit:${path.join(dir, 'r.xml')}`], { cwd: dir });
      assert.equal(r.code, 1, r.stderr.slice(0, 2000));
      assert.ok(r.stdout.length + r.stderr.length < 300_000, `console output of ${r.stdout.length + r.stderr.length} characters`);
      for (const f of ['r.json', 'r.xml']) assert.ok(fs.statSync(path.join(dir, f)).size < 300_000, `${f}: ${fs.statSync(path.join(dir, f)).size} bytes`);
      const runs = path.join(dir, '.topas', 'runs');
      for (const id of fs.readdirSync(runs)) for (const f of fs.readdirSync(path.join(runs, id))) assert.ok(fs.statSync(path.join(runs, id, f)).size < 500_000, `${f}: ${fs.statSync(path.join(runs, id, f)).size} bytes`);
      const report = JSON.parse(fs.readFileSync(json, 'utf8')) as { results: Array<{ steps: Array<{ name: string; error?: { message: string } }>; checks: Array<{ name: string }> }> };
      const [big, failing] = report.results[0].steps;
      assert.match(big.name, /^N{1024}… \(1047552 more characters cut\)$/);
      assert.match(report.results[0].checks[0].name, /^C{1024}… \(1047558 more characters cut\)$/);
      assert.match(failing.error?.message ?? '', /E… \(\d+ more characters cut\)$/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('a memory bomb inside a step fails that step naming the memory limit; the next scenario runs', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'topas-bomb-'));
    try {
      const r = await cli(['run', path.join(REPO_ROOT, 'fixtures/hostile/g-memory-bomb.lua'), path.join(REPO_ROOT, 'fixtures/hostile/d-victim.lua'), '--parallel', '1', '--workers', '1', '--reporter', 'json'], { cwd: dir });
      assert.equal(r.code, 1, r.stderr + r.stdout);
      const report = JSON.parse(r.stdout) as { results: Array<{ file: string; state: string; steps: Array<{ error?: { message: string } }> }> };
      const byFile = new Map(report.results.map((x) => [path.basename(x.file), x]));
      assert.match(byFile.get('g-memory-bomb.lua')?.steps[0].error?.message ?? '', /not enough memory \(memory limit of .+ reached\)/);
      assert.equal(byFile.get('d-victim.lua')?.state, 'passed');
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
