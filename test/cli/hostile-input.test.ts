import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { cli } from '../helpers/cli';

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
});
