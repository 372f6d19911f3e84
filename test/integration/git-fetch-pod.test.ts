import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fetchGitInPod } from '../../plugins/kubernetes/src/git-fetch';
import { fetchGitSource } from '../../src/run/git-source';
import { serveGitRepo, type GitHttpRepo } from '../helpers/git-http';

// The runner pod's own fetch (isomorphic-git, no git binary) against a real
// smart-HTTP server (`git http-backend`): a branch's newest commit, a pinned
// commit, a tag, and the errors a user sees (unknown ref, refused
// credentials, unreachable host), never with the credentials in them.
describe('fetchGitInPod: isomorphic-git over smart HTTP', () => {
  let root: string;
  let repo: GitHttpRepo;
  let locked: GitHttpRepo;
  let first: string;
  let second: string;
  const auth = { username: 'ci', password: 's3cret-token' };

  before(async () => {
    root = fs.mkdtempSync(path.join(os.tmpdir(), 'git-fetch-pod-'));
    repo = await serveGitRepo({ root: path.join(root, 'open'), host: '127.0.0.1' });
    first = repo.commit({ 'tests/a.lua': 'step("one", function() end)\n' }, 'one');
    execTag(repo, 'v1');
    second = repo.commit({ 'tests/a.lua': 'step("two", function() end)\n', 'big/blob.txt': 'x'.repeat(900 * 1024) }, 'two');
    locked = await serveGitRepo({ root: path.join(root, 'locked'), host: '127.0.0.1', auth });
    locked.commit({ 'a.lua': 'step("locked", function() end)\n' }, 'one');
  });
  after(async () => {
    await repo?.close();
    await locked?.close();
    fs.rmSync(root, { recursive: true, force: true });
  });

  const dest = () => fs.mkdtempSync(path.join(root, 'dest-'));

  test("a branch: its newest commit, shallow, checked out (a file over the ConfigMap limit too)", async () => {
    const dir = dest();
    const r = await fetchGitInPod({ url: repo.url, ref: 'main' }, dir);
    assert.equal(r.commit, second);
    assert.match(fs.readFileSync(path.join(dir, 'tests/a.lua'), 'utf8'), /"two"/);
    assert.equal(fs.statSync(path.join(dir, 'big/blob.txt')).size, 900 * 1024);
    assert.equal(fs.readFileSync(path.join(dir, '.git', 'shallow'), 'utf8').trim(), second, 'depth 1');
    process.stdout.write(`# pod-side fetch (isomorphic-git, 900 KiB repo, 127.0.0.1): ${r.fetchMs} ms\n`);
  });

  test('no ref: the remote HEAD; a pinned commit that is the tip; a tag (peeled)', async () => {
    assert.equal((await fetchGitInPod({ url: repo.url }, dest())).commit, second);
    assert.equal((await fetchGitInPod({ url: repo.url, ref: 'main', commit: second }, dest())).commit, second);
    const dir = dest();
    assert.equal((await fetchGitInPod({ url: repo.url, ref: 'v1' }, dir)).commit, first);
    assert.match(fs.readFileSync(path.join(dir, 'tests/a.lua'), 'utf8'), /"one"/);
  });

  test('a pinned commit the branch moved past: exactly that commit (git http-backend serves reachable commits over HTTP)', async () => {
    const dir = dest();
    assert.equal((await fetchGitInPod({ url: repo.url, ref: 'main', commit: first }, dir)).commit, first);
    assert.match(fs.readFileSync(path.join(dir, 'tests/a.lua'), 'utf8'), /"one"/);
    assert.equal(fs.existsSync(path.join(dir, 'big')), false);
  });

  test('an unknown ref; refused or missing credentials; an unreachable host: GIT_FETCH_FAILED, the secret never in the message', async () => {
    await assert.rejects(fetchGitInPod({ url: repo.url, ref: 'no-such-branch' }, dest()), (err: Error & { code?: string }) => {
      assert.equal(err.code, 'GIT_FETCH_FAILED');
      assert.match(err.message, /ref no-such-branch not found/);
      return true;
    });
    const r = await fetchGitInPod({ url: locked.url, ref: 'main', auth }, dest());
    assert.match(r.commit, /^[0-9a-f]{40}$/);
    await assert.rejects(fetchGitInPod({ url: locked.url, ref: 'main', auth: { username: 'ci', password: 'wrong-token' } }, dest()), (err: Error & { code?: string; hint?: string }) => {
      assert.equal(err.code, 'GIT_FETCH_FAILED');
      assert.match(err.message, /refused the credentials/);
      assert.doesNotMatch(`${err.message} ${err.hint}`, /wrong-token|s3cret/);
      return true;
    });
    await assert.rejects(fetchGitInPod({ url: locked.url, ref: 'main' }, dest()), /refused access without credentials/);
    // a port nothing listens on
    const closed = await serveGitRepo({ root: path.join(root, 'gone'), host: '127.0.0.1' });
    await closed.close();
    await assert.rejects(fetchGitInPod({ url: closed.url, ref: 'main' }, dest()), (err: Error & { code?: string }) => {
      assert.equal(err.code, 'GIT_FETCH_FAILED');
      assert.match(err.message, /cannot reach .* ECONNREFUSED/);
      return true;
    });
  });

  test("the host's fetch (system git) with TOPAS_GIT_TOKEN: the token as a header, never on git's command line; refused without it, the URL's credentials redacted", async () => {
    const cache = path.join(root, 'host-cache');
    const env = { ...process.env, XDG_CACHE_HOME: cache, TOPAS_GIT_TOKEN: auth.password, TOPAS_GIT_USERNAME: auth.username };
    const ok = await fetchGitSource({ url: locked.url, ref: 'main' }, env);
    assert.match(fs.readFileSync(path.join(ok.dir, 'a.lua'), 'utf8'), /locked/);
    const noToken = { ...process.env, XDG_CACHE_HOME: cache, TOPAS_GIT_TOKEN: '' };
    await assert.rejects(fetchGitSource({ url: locked.url, ref: 'main' }, noToken), (err: Error & { code?: string }) => err.code === 'FILE_NOT_FOUND');
    const wrong = locked.url.replace('http://', 'http://ci:wrong-secret@');
    await assert.rejects(fetchGitSource({ url: wrong, ref: 'main' }, noToken), (err: Error) => {
      assert.doesNotMatch(err.message, /wrong-secret/);
      return true;
    });
  });
});

function execTag(repo: GitHttpRepo, tag: string): void {
  const { execFileSync } = require('node:child_process') as typeof import('node:child_process');
  const env = { ...process.env, GIT_COMMITTER_NAME: 't', GIT_COMMITTER_EMAIL: 't@example.com' };
  execFileSync('git', ['tag', '-a', '-m', tag, tag], { cwd: repo.work, env });
  execFileSync('git', ['push', '-q', path.join(path.dirname(repo.work), 'tests.git'), `refs/tags/${tag}`], { cwd: repo.work, env });
}
