import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fetchGitSource } from '../../src/run/git-source';

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
