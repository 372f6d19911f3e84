import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { remoteRunRequest, writeRemoteFiles, REMOTE_FILES_MAX_BYTES } from '../../src/run/remote-run';
import { runnerRbac, testRunCrd } from '../../plugins/kubernetes/src/testrun';

// What `topas run` hands a runner next to a remote SUT (a cluster's runner Job):
// the run's files under one root, names relative to the command's folder.
describe('remote run request', () => {
  const tree = (files: Record<string, string>) => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'remote-run-'));
    for (const [rel, text] of Object.entries(files)) {
      fs.mkdirSync(path.dirname(path.join(dir, rel)), { recursive: true });
      fs.writeFileSync(path.join(dir, rel), text);
    }
    return dir;
  };

  test('the spec, the scenarios and the files next to them, relative to one root; targets relative to cwd', () => {
    const dir = tree({ 'app/topas.yaml': 'name: a', 'app/tests/a.lua': 'step("x", function() end)', 'app/tests/lib/util.lua': 'return {}', 'app/tests/data.csv': 'a,b', 'app/tests/big.bin': 'x', 'app/tests/.hidden/x.lua': '', 'app/tests/node_modules/m.lua': '' });
    try {
      const lines: string[] = [];
      const req = remoteRunRequest(
        { runId: 'r1', namesDir: path.join(dir, 'app'), specFile: path.join(dir, 'app/topas.yaml'), files: [path.join(dir, 'app/tests/a.lua')], targets: [path.join(dir, 'app/tests/a.lua')], parallel: 2, timeoutMs: 1000, continueOnFailure: false, env: { K: 'v' } },
        (l) => lines.push(l),
      );
      assert.deepEqual(req.files.map((f) => f.path).sort(), ['tests/a.lua', 'tests/data.csv', 'tests/lib/util.lua', 'topas.yaml']);
      assert.equal(req.cwd, '.');
      assert.equal(req.specFile, 'topas.yaml');
      assert.deepEqual(req.targets, ['tests/a.lua']);
      assert.deepEqual(req.env, { K: 'v' });
      assert.deepEqual(lines, []);

      const out = fs.mkdtempSync(path.join(os.tmpdir(), 'remote-run-out-'));
      writeRemoteFiles(out, req.files);
      assert.equal(fs.readFileSync(path.join(out, 'tests/lib/util.lua'), 'utf8'), 'return {}');
      assert.throws(() => writeRemoteFiles(out, [{ path: '../escape.lua', content: Buffer.from('') }]), /leaves the run's folder/);
      fs.rmSync(out, { recursive: true, force: true });
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('a spec outside the scenarios folder widens the root; too many bytes are refused as invalid input', () => {
    const dir = tree({ 'topas.yaml': 'name: a', 'work/tests/a.lua': '', 'work/tests/huge.lua': 'x'.repeat(REMOTE_FILES_MAX_BYTES + 1) });
    try {
      const req = remoteRunRequest({ runId: 'r', namesDir: path.join(dir, 'work'), specFile: path.join(dir, 'topas.yaml'), files: [path.join(dir, 'work/tests/a.lua')], targets: [path.join(dir, 'work/tests/a.lua')], parallel: 1, timeoutMs: 1, continueOnFailure: false, env: {} }, () => {});
      assert.equal(req.cwd, 'work');
      assert.equal(req.specFile, 'topas.yaml');
      assert.deepEqual(req.targets, ['tests/a.lua']);
      assert.ok(!req.files.some((f) => f.path.endsWith('huge.lua')), 'what does not fit stays behind');
      assert.throws(
        () => remoteRunRequest({ runId: 'r', namesDir: dir, specFile: path.join(dir, 'topas.yaml'), files: [path.join(dir, 'work/tests/huge.lua')], targets: [], parallel: 1, timeoutMs: 1, continueOnFailure: false, env: {} }, () => {}),
        (err: { code?: string }) => err.code === 'INVALID_FLAGS',
      );
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('TestRun CRD and runner RBAC', () => {
  test('namespaced, v1alpha1 with a status subresource; the Role lets the runner write TestRun status and roll Deployments', () => {
    const crd = testRunCrd();
    assert.equal(crd.metadata?.name, 'testruns.topas.dev');
    assert.equal(crd.spec.scope, 'Namespaced');
    assert.deepEqual(crd.spec.versions[0].subresources, { status: {} });
    const [sa, role, binding] = runnerRbac('ns1') as Array<{ kind: string; metadata: { namespace: string }; rules?: Array<{ apiGroups: string[]; resources: string[]; verbs: string[] }>; subjects?: Array<{ name: string }> }>;
    assert.deepEqual([sa.kind, role.kind, binding.kind], ['ServiceAccount', 'Role', 'RoleBinding']);
    assert.ok(role.rules!.some((r) => r.apiGroups.includes('topas.dev') && r.resources.includes('testruns/status') && r.verbs.includes('patch')));
    assert.ok(role.rules!.some((r) => r.apiGroups.includes('apps') && r.resources.includes('deployments') && r.verbs.includes('patch')));
    assert.equal(binding.subjects![0].name, 'topas-runner');
  });
});

// An http(s) Git source: the runner fetches the repository itself, so only an
// app spec outside it travels; the credentials go apart (a Secret), the URL
// without them; a schedule keeps no commit (each firing runs the ref's newest).
describe('remote run request from an http(s) Git source', () => {
  const checkout = () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'remote-git-'));
    for (const [rel, text] of Object.entries({ 'e2e/topas.yaml': 'name: a', 'e2e/tests/a.lua': '', 'e2e/tests/lib.lua': 'return {}', 'e2e/big.txt': 'x'.repeat(REMOTE_FILES_MAX_BYTES + 1) })) {
      fs.mkdirSync(path.dirname(path.join(dir, rel)), { recursive: true });
      fs.writeFileSync(path.join(dir, rel), text);
    }
    return dir;
  };
  const input = (dir: string, specFile: string, url: string, targetArgs = ['tests']) => ({
    runId: 'r',
    namesDir: dir,
    specFile,
    files: [path.join(dir, 'e2e/tests/a.lua')],
    targets: [path.join(dir, 'e2e/tests/a.lua')],
    parallel: 1,
    timeoutMs: 1000,
    continueOnFailure: false,
    env: { K: 'v' },
    git: { source: { url, path: 'e2e', ref: 'main' }, commit: 'c'.repeat(40), dir, targetArgs, env: {} as NodeJS.ProcessEnv },
  });

  test('the spec in the repository: no files at all, paths under repo/, the targets as given; credentials out of the URL', () => {
    const dir = checkout();
    try {
      const req = remoteRunRequest(input(dir, path.join(dir, 'e2e/topas.yaml'), 'https://ci:t0k@example.com/org/tests.git'), () => {});
      assert.deepEqual(req.files, []);
      assert.deepEqual([req.cwd, req.specFile, req.targets], ['repo', 'repo/e2e/topas.yaml', ['e2e/tests/a.lua']]);
      assert.deepEqual(req.git, { url: 'https://example.com/org/tests.git', ref: 'main', commit: 'c'.repeat(40), path: 'e2e', dir: 'repo', targets: ['e2e/tests'], auth: { username: 'ci', password: 't0k' } });
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('a spec outside the repository travels under app/; TOPAS_GIT_TOKEN gives the credentials; a target leaving the repository or an ssh URL: files as before', () => {
    const dir = checkout();
    const outside = fs.mkdtempSync(path.join(os.tmpdir(), 'remote-git-app-'));
    try {
      fs.writeFileSync(path.join(outside, 'app.yaml'), 'name: b');
      const i = input(dir, path.join(outside, 'app.yaml'), 'http://git.local/tests.git', ['tests/a.lua']);
      i.git.env = { TOPAS_GIT_TOKEN: 'tkn' };
      const req = remoteRunRequest(i, () => {});
      assert.deepEqual(req.files.map((f) => [f.path, f.content.toString()]), [['app/app.yaml', 'name: b']]);
      assert.equal(req.specFile, 'app/app.yaml');
      assert.deepEqual(req.git?.targets, ['e2e/tests/a.lua']);
      assert.deepEqual(req.git?.auth, { username: 'x-access-token', password: 'tkn' });
      assert.equal(remoteRunRequest(input(dir, path.join(dir, 'e2e/topas.yaml'), 'http://git.local/t.git', ['../../etc']), () => {}).git, undefined);
      const ssh = remoteRunRequest(input(dir, path.join(dir, 'e2e/topas.yaml'), 'ssh://git@example.com/t.git'), () => {});
      assert.equal(ssh.git, undefined);
      assert.deepEqual(ssh.files.map((f) => f.path).sort(), ['e2e/tests/a.lua', 'e2e/tests/lib.lua', 'e2e/topas.yaml']);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
      fs.rmSync(outside, { recursive: true, force: true });
    }
  });

  test('credentials: split from the URL, redacted in text; a TestRun keeps the commit of a run, not of a schedule, and never the credentials', async () => {
    const { splitGitCredentials, redactGitUrl } = await import('../../src/run/git-source');
    const { gitParts, GIT_AUTH_KEY } = await import('../../plugins/kubernetes/src/testrun');
    assert.deepEqual(splitGitCredentials('https://u%40x:p%2Fw@h:8443/r.git'), { url: 'https://h:8443/r.git', auth: { username: 'u@x', password: 'p/w' } });
    assert.deepEqual(splitGitCredentials('https://h/r.git', { TOPAS_GIT_TOKEN: 't', TOPAS_GIT_USERNAME: 'oauth2' }), { url: 'https://h/r.git', auth: { username: 'oauth2', password: 't' } });
    assert.deepEqual(splitGitCredentials('ssh://git@h/r.git', { TOPAS_GIT_TOKEN: 't' }), { url: 'ssh://git@h/r.git' });
    assert.equal(redactGitUrl("fatal: unable to access 'https://u:secret@h/r.git/': 403"), "fatal: unable to access 'https://***@h/r.git/': 403");
    const git = { url: 'https://h/r.git', ref: 'main', commit: 'c'.repeat(40), dir: 'repo', targets: ['e2e'], auth: { username: 'u', password: 'p' } };
    const run = gitParts(git, { pinned: true });
    assert.deepEqual(run.spec, { url: 'https://h/r.git', ref: 'main', commit: 'c'.repeat(40), dir: 'repo', targets: ['e2e'] });
    assert.deepEqual(JSON.parse(run.secret[GIT_AUTH_KEY]), { username: 'u', password: 'p' });
    const schedule = gitParts(git, { pinned: false });
    assert.equal(schedule.spec?.commit, undefined);
    assert.deepEqual(gitParts(undefined, { pinned: true }), { spec: undefined, secret: {} });
  });
});
