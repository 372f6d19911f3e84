import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { Backend } from '../../src/backends/backend';
import { registerBackend } from '../../src/backends/registry';
import { TopasError } from '../../src/errors';
import { removeStateFile, writeStateFile } from '../../src/run/run-record';
import { cli } from '../helpers/cli';

const VARS = ['TOPAS_KUBECONFIG', 'TOPAS_KUBE_CONTEXT', 'TOPAS_KUBE_NAMESPACE'] as const;
const pick = (env: NodeJS.ProcessEnv | undefined) => Object.fromEntries(VARS.map((k) => [k, env?.[k]]));

/** What a backend was handed (probe's, start's and sweep's env) and what process.env held at that moment. */
const seen: Array<{ call: string; given: Record<string, string | undefined>; processEnv: Record<string, string | undefined> }> = [];

// a backend that records the environment each call receives, and starts nothing
const capture: Backend = {
  name: 'capture-env',
  async probe(_spec, opts) {
    seen.push({ call: 'probe', given: pick(opts?.env), processEnv: pick(process.env) });
    return { ok: false, reason: 'the capture backend runs nothing' };
  },
  async start() {
    throw new Error('never started');
  },
  async attach(_spec, _state, ctx) {
    seen.push({ call: 'attach', given: pick(ctx.processEnv), processEnv: pick(process.env) });
    throw new TopasError('SUT_NOT_UP', 'the capture backend runs nothing');
  },
  async sweep(opts) {
    seen.push({ call: 'sweep', given: pick(opts.env), processEnv: pick(process.env) });
    return { removed: [] };
  },
};

let dir: string;
let spec: string;
const before_ = pick(process.env);

before(() => {
  registerBackend('capture-env', () => capture);
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'topas-cluster-flags-'));
  spec = path.join(dir, 'topas.yaml');
  fs.writeFileSync(spec, 'name: cluster-flags\nservices:\n  - name: api\n    image: local/mock-app\n    port: 8080\n');
});

after(() => fs.rmSync(dir, { recursive: true, force: true }));

const FLAGS = ['--kubeconfig', 'kube/config', '--context', 'ctx-a', '--namespace', 'ns-b'];

test('up, down and ps: --kubeconfig/--context/--namespace reach the backend in its env, never in process.env', async () => {
  const expected = { TOPAS_KUBECONFIG: path.join(dir, 'kube', 'config'), TOPAS_KUBE_CONTEXT: 'ctx-a', TOPAS_KUBE_NAMESPACE: 'ns-b' };
  seen.length = 0;
  const up = await cli(['up', '--app', spec, '--backend', 'capture-env', ...FLAGS], { cwd: dir });
  assert.equal(up.code, 3, up.stderr);
  assert.match(up.stderr, /the capture backend runs nothing/);

  const down = await cli(['down', '--app', spec, '--backend', 'capture-env', ...FLAGS], { cwd: dir });
  assert.equal(down.code, 0, down.stderr);

  writeStateFile(dir, { backend: 'capture-env', runId: 'r1', app: 'cluster-flags', specFile: spec, startedAt: new Date().toISOString(), data: {} });
  const ps = await cli(['ps', '--app', spec, ...FLAGS], { cwd: dir });
  assert.equal(ps.code, 3, ps.stderr);
  removeStateFile(dir);

  assert.deepEqual(
    seen.map((s) => s.call),
    ['probe', 'sweep', 'attach'],
  );
  for (const s of seen) {
    assert.deepEqual(s.given, expected, `${s.call}: the flags, a relative --kubeconfig resolved against the command's cwd`);
    assert.deepEqual(s.processEnv, before_, `${s.call}: process.env untouched while the command runs`);
  }
  assert.deepEqual(pick(process.env), before_, 'process.env untouched afterwards');
});

test('without the flags the backend sees the Io env as it is', async () => {
  seen.length = 0;
  const env = { ...process.env, TOPAS_KUBE_NAMESPACE: 'from-env' };
  const down = await cli(['down', '--app', spec, '--backend', 'capture-env'], { cwd: dir, env });
  assert.equal(down.code, 0, down.stderr);
  assert.equal(seen[0]?.given.TOPAS_KUBE_NAMESPACE, 'from-env');
  assert.equal(process.env.TOPAS_KUBE_NAMESPACE, before_.TOPAS_KUBE_NAMESPACE);
});

test('the kubernetes plugin reads its cluster from the env it is handed (probe, sweep), not from process.env', async () => {
  const { KubernetesBackend } = await import('../../plugins/kubernetes/src/kube-backend');
  const kubeconfig = path.join(dir, 'no-such-kubeconfig');
  const backend = new KubernetesBackend();
  const probe = await backend.probe({ name: 'x', file: spec, dir, services: [], databases: [] }, { env: { TOPAS_KUBECONFIG: kubeconfig } });
  assert.equal(probe.ok, false);
  assert.ok(probe.reason.includes(kubeconfig), `the plugin tried the kubeconfig it was handed: ${probe.reason}`);
  const lines: string[] = [];
  const swept = await backend.sweep({ all: true, log: (l) => lines.push(l), env: { TOPAS_KUBECONFIG: kubeconfig } });
  assert.deepEqual(swept.removed, []);
  assert.ok(lines.some((l) => l.includes(kubeconfig)), lines.join('\n'));
});
