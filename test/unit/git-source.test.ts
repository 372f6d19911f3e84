import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fetchGitSource, validateGitSource } from '../../src/run/git-source';
import { TopasError } from '../../src/errors';

test('git sources are fetched shallow by ref and cached by commit', async () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'topas-git-'));
  try {
    const repo = path.join(tmp, 'repo');
    fs.mkdirSync(path.join(repo, 'tests'), { recursive: true });
    const g = (...args: string[]) => execFileSync('git', ['-C', repo, ...args], { encoding: 'utf8' }).trim();
    execFileSync('git', ['init', '-q', '-b', 'main', repo]);
    fs.writeFileSync(path.join(repo, 'tests', 'a.lua'), 'print("v1")\n');
    g('add', '.');
    g('-c', 'user.email=t@t', '-c', 'user.name=t', 'commit', '-qm', 'v1');
    g('tag', 'v1');
    fs.writeFileSync(path.join(repo, 'tests', 'a.lua'), 'print("v2")\n');
    g('-c', 'user.email=t@t', '-c', 'user.name=t', 'commit', '-qam', 'v2');
    const env = { ...process.env, XDG_CACHE_HOME: path.join(tmp, 'cache') };
    const url = `file://${repo}`;

    const head = await fetchGitSource({ url, path: 'tests/a.lua', ref: 'main' }, env);
    assert.equal(fs.readFileSync(head.target, 'utf8'), 'print("v2")\n');
    assert.equal(head.cached, false);
    const again = await fetchGitSource({ url, path: 'tests/a.lua', ref: 'main' }, env);
    assert.equal(again.cached, true);
    assert.equal(again.commit, head.commit);

    const v1 = await fetchGitSource({ url, path: 'tests', ref: 'v1' }, env);
    assert.equal(fs.readFileSync(path.join(v1.target, 'a.lua'), 'utf8'), 'print("v1")\n');
    await assert.rejects(fetchGitSource({ url, path: 'nope.lua', ref: 'main' }, env), /does not exist/);
    await assert.rejects(fetchGitSource({ url, ref: 'no-such-branch' }, env), /not found/);
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
});

test('git URLs: only http(s), ssh, git, file and scp-style; never an option or another transport', () => {
  for (const ok of [
    'https://example.com/org/tests.git',
    'http://127.0.0.1:8080/r.git',
    'ssh://git@example.com:2222/org/r.git',
    'git://example.com/r.git',
    'file:///tmp/repo',
    'git@github.com:org/tests.git',
    'example.com:org/tests.git',
  ]) {
    assert.doesNotThrow(() => validateGitSource({ url: ok }), ok);
  }
  for (const bad of [
    '--upload-pack=touch /tmp/x;',
    '-oProxyCommand=x',
    'ext::sh -c touch% /tmp/x',
    'fd::3',
    'foo::bar',
    '/tmp/repo',
    './repo',
    'repo',
    'ftp://example.com/r.git',
    'ssh://-oProxyCommand=x/r',
    '-x@host:path',
    'https://example.com/r.git\n--upload-pack=x',
    '',
  ]) {
    assert.throws(
      () => validateGitSource({ url: bad }),
      (err: unknown) => err instanceof TopasError && err.code === 'INVALID_FLAGS' && err.exitCode === 2 && /--git\b/.test(err.message),
      JSON.stringify(bad),
    );
  }
});

test('git refs: branch, tag or commit; never an option', () => {
  for (const ok of ['main', 'v1.2.0', 'feature/x-y', 'release_1', 'a'.repeat(40), 'HEAD']) {
    assert.doesNotThrow(() => validateGitSource({ url: 'https://example.com/r.git', ref: ok }), ok);
  }
  for (const bad of ['--upload-pack=x', '-b', 'a..b', 'x y', 'x\ny', 'a~1', 'a^{}', 'a:b', 'a@{1}', '']) {
    assert.throws(
      () => validateGitSource({ url: 'https://example.com/r.git', ref: bad }),
      (err: unknown) => err instanceof TopasError && err.code === 'INVALID_FLAGS' && /--git-ref/.test(err.message),
      JSON.stringify(bad),
    );
  }
});
