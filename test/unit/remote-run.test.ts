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
