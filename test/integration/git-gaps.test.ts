import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { REPO_ROOT, cli } from '../helpers/cli';

// issue 19, CLI gaps of Git sources: names, --app over a playbook's app:, a HEAD that points nowhere
function makeRepo(root: string, files: Record<string, string>): string {
  const repo = path.join(root, 'repo');
  execFileSync('git', ['init', '-q', '-b', 'main', repo]);
  for (const [rel, text] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(repo, rel)), { recursive: true });
    fs.writeFileSync(path.join(repo, rel), text);
  }
  const g = (...args: string[]) => execFileSync('git', ['-C', repo, '-c', 'user.email=t@t', '-c', 'user.name=t', ...args]);
  g('add', '.');
  g('commit', '-qm', 'scenarios');
  return repo;
}

describe('topas run --git', () => {
  test('scenarios are named by their path inside the repository', async () => {
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'topas-git-gaps-'));
    try {
      const repo = makeRepo(tmp, { 'e2e/smoke/a.lua': 'step("a", function() check("ok", true) end)\n', 'e2e/b.lua': 'step("b", function() error("boom") end)\n' });
      const env = { ...process.env, XDG_CACHE_HOME: path.join(tmp, 'cache') };
      const r = await cli(['run', '--git', `file://${repo}`, '--git-path', 'e2e', '--json'], { cwd: tmp, env });
      assert.equal(r.code, 1, r.stderr + r.stdout);
      const report = JSON.parse(r.stdout);
      assert.deepEqual(report.results.map((x: { name: string }) => x.name).sort(), ['e2e/b.lua', 'e2e/smoke/a.lua']);
      const failed = report.results.find((x: { name: string }) => x.name === 'e2e/b.lua');
      assert.match(failed.error.location, /^e2e\/b\.lua:1$/);
      assert.doesNotMatch(r.stdout, /\.cache|\.\.\//);
    } finally {
      fs.rmSync(tmp, { recursive: true, force: true });
    }
  });

  test('--app overrides a Git playbook\'s app:', async () => {
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'topas-git-gaps-'));
    try {
      const repo = makeRepo(tmp, {
        'pb.yaml': 'name: pb\napp: ../deploy/topas.yaml\nroles:\n  - name: a\n    script: a.lua\n    instances: 2\n',
        'a.lua': 'local sut = require("sut")\nstep("app", function() expect(sut.endpoint("api")):to_match("^http://") end)\n',
      });
      const env = { ...process.env, XDG_CACHE_HOME: path.join(tmp, 'cache') };
      const app = path.join(REPO_ROOT, 'fixtures/cli/gaps/topas.yaml');
      const r = await cli(['run', 'pb.yaml', '--git', `file://${repo}`, '--app', app, '--backend', 'local', '--json'], { cwd: tmp, env });
      assert.equal(r.code, 0, r.stderr + r.stdout);
      const report = JSON.parse(r.stdout);
      assert.equal(report.app, 'gapsapp');
      assert.equal(report.results.length, 2);
      // without --app the playbook's app: is still checked
      const without = await cli(['run', 'pb.yaml', '--git', `file://${repo}`], { cwd: tmp, env });
      assert.equal(without.code, 2, without.stderr);
      assert.match(without.stderr, /deploy\/topas\.yaml does not exist/);
    } finally {
      fs.rmSync(tmp, { recursive: true, force: true });
    }
  });

  test('a repository whose HEAD points nowhere is invalid input with a clear message', async () => {
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'topas-git-gaps-'));
    try {
      const repo = makeRepo(tmp, { 'a.lua': 'check("ok", true)\n' });
      execFileSync('git', ['-C', repo, 'symbolic-ref', 'HEAD', 'refs/heads/gone']);
      const env = { ...process.env, XDG_CACHE_HOME: path.join(tmp, 'cache') };
      const r = await cli(['run', '--git', `file://${repo}`], { cwd: tmp, env });
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr, /HEAD points nowhere/);
      assert.match(r.stderr, /--git-ref.*main/);
      const empty = path.join(tmp, 'empty');
      execFileSync('git', ['init', '-q', empty]);
      const e = await cli(['run', '--git', `file://${empty}`], { cwd: tmp, env });
      assert.equal(e.code, 2, e.stderr);
      assert.match(e.stderr, /HEAD points nowhere/);
      assert.match(e.stderr, /no commits at all/);
    } finally {
      fs.rmSync(tmp, { recursive: true, force: true });
    }
  });
});
