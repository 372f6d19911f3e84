import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { REPO_ROOT } from '../helpers/cli';
import { agentLeftovers, buildRunnerImage, kubeCliWorkspace, kubeSkipReason, runObjects, startKubeTestCluster, stopKubeTestCluster, until, type KubeCliWorkspace, type KubeTestCluster } from '../helpers/kube';

// A playbook spread over runner pods (`--workers 2`) whose second runner pod
// dies mid-run (its container killed through Docker, as an OOM kill or a lost
// node would): the instances that ran there failed, so the run fails with
// exit 1 (a scenario failed), naming the pod and its instances, as a dead
// worker process does under `--spread processes`; not exit 3 (the SUT stood
// up fine). And `topas test status --backend kubernetes --app F` shows only
// the runs of F's app among those of the namespace.
const skip = kubeSkipReason();
const FIXTURE = path.join(REPO_ROOT, 'fixtures', 'playbooks', 'spread');
const INDEX = 'batch.kubernetes.io/job-completion-index';

interface Report {
  runId: string;
  state: string;
  results: Array<{ name: string; state: string; instance: { id: string }; error?: { message: string } }>;
  playbooks: Array<{ state: string; roles: Array<{ name: string; ok: number; total: number }>; firstFailure?: { instance: string; error?: { message: string } } }>;
}

describe('a runner pod of a spread playbook lost mid-run; test status --app on a cluster', () => {
  if (skip) {
    test('needs the control-plane binaries', { skip }, () => {});
    return;
  }
  let c: KubeTestCluster;
  let ws: KubeCliWorkspace;
  const ns = `ksl-${process.pid}`;
  const flags = () => ['--backend', 'kubernetes', '--kubeconfig', c.cp.kubeconfig, '--namespace', ns];

  const assertNothingLeft = async (runId: string) => {
    await until('nothing with the run label remains', async () => ((await runObjects(c.cp.kc, ns, runId)).length === 0 ? true : undefined), 60_000).catch(async () => {
      assert.deepEqual(await runObjects(c.cp.kc, ns, runId), []);
    });
    await until('the agent removed every container', async () => ((await agentLeftovers(c.agent.nodeName)).containers.length === 0 ? true : undefined), 90_000);
  };

  before(async () => {
    buildRunnerImage();
    c = await startKubeTestCluster(ns);
    ws = kubeCliWorkspace(path.join(FIXTURE, 'topas.yaml'), 'kube-spread-lost-');
    for (const f of fs.readdirSync(FIXTURE).filter((n) => n.endsWith('.lua') || n.endsWith('.yaml'))) fs.copyFileSync(path.join(FIXTURE, f), path.join(ws.work, f));
    // a second app in the same namespace, for test status --app
    fs.writeFileSync(path.join(ws.work, 'other.yaml'), fs.readFileSync(path.join(FIXTURE, 'topas.yaml'), 'utf8').replace(/^name: spread$/m, 'name: spread-other'));
    fs.writeFileSync(path.join(ws.work, 'version.lua'), ['local net = require("net")', 'step("api answers", function()', '  expect(net.get("http://api/version").code):to_be(200)', 'end)', ''].join('\n'));
    // these tests shape nothing: no proxy pods to stand up
    ws.env.TOPAS_KUBE_SHAPING = 'off';
  });

  after(async () => {
    await stopKubeTestCluster(c);
    ws?.cleanup();
  });

  test('--workers 2, the second runner pod\'s container is killed: exit 1, its 6 instances fail naming the pod; the others\' barriers fail; nothing remains', async (t) => {
    const t0 = Date.now();
    const child = ws.spawnTopas(['run', 'spread-hold.yaml', ...flags(), '--workers', '2', '--reporter', 'table', '--reporter', 'json:lost.json']);
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (b: Buffer) => (stdout += b));
    child.stderr!.on('data', (b: Buffer) => (stderr += b));
    const closed = new Promise<number | null>((resolve) => child.on('close', resolve));
    try {
      await until('both runner pods started and the leader holds', async () => (/2 runner pods created to first step/.test(stderr) && /holding/.test(stderr) ? true : undefined), 180_000);
      // share 2 of 2 (index 1): worker-1, -3, -5, -7, -9, -11
      const pod = (await c.core.listNamespacedPod({ namespace: ns, labelSelector: 'job-name' })).items.find((p) => p.metadata?.annotations?.[INDEX] === '1');
      assert.ok(pod, 'the runner pod of index 1');
      const podName = pod.metadata!.name!;
      // the agent names the pod's container by its own label: only this test's pod
      const containers = (await agentLeftovers(c.agent.nodeName, `${ns}/${podName}`)).containers.map((n) => n.replace(/^\//, ''));
      assert.equal(containers.length, 1, `containers of ${podName}: ${containers.join(', ')}`);
      const killedAt = Date.now();
      const kill = spawnSync('docker', ['kill', containers[0]], { encoding: 'utf8', timeout: 30_000 });
      assert.equal(kill.status, 0, kill.stderr);
      const code = await Promise.race([closed, new Promise<null>((r) => setTimeout(() => r(null), 150_000).unref())]);
      const endedS = (Date.now() - killedAt) / 1000;
      assert.equal(code, 1, `exit ${code}\n${stderr.slice(-4000)}\n${stdout.slice(-3000)}`);

      const rep = JSON.parse(fs.readFileSync(path.join(ws.work, 'lost.json'), 'utf8')) as Report;
      assert.equal(rep.results.length, 12, JSON.stringify(rep.results.map((x) => x.instance.id)));
      const lostIds = ['worker-1', 'worker-3', 'worker-5', 'worker-7', 'worker-9', 'worker-11'];
      const lost = rep.results.filter((x) => lostIds.includes(x.instance.id));
      assert.equal(lost.length, 6);
      for (const x of lost) {
        assert.equal(x.state, 'error', `${x.instance.id}: ${x.state}`);
        assert.match(x.error?.message ?? '', new RegExp(`runner pod ${podName} \\(share 2 of 2\\) was lost \\(exited \\(\\d+\\) without a result`));
        assert.match(x.error?.message ?? '', /the 6 instance\(s\) it ran were stopped with it: spread-hold\/worker#1, spread-hold\/worker#3, .*worker#11/);
      }
      // the others could not pass the barriers that needed them
      assert.ok(rep.results.filter((x) => !lostIds.includes(x.instance.id)).every((x) => x.state !== 'passed'));
      assert.equal(rep.state, 'error');
      const pb = rep.playbooks[0];
      assert.deepEqual(pb.roles, [{ name: 'leader', ok: 0, total: 1 }, { name: 'worker', ok: 0, total: 11 }]);
      assert.ok(lostIds.includes(pb.firstFailure?.instance ?? ''), `first failure: ${JSON.stringify(pb.firstFailure)}`);
      // what the user reads: the pod and its instances
      assert.match(stdout + stderr, new RegExp(`runner pod ${podName} \\(share 2 of 2\\) was lost`));
      assert.doesNotMatch(stderr, /could not be stood up|RUNNER_FAILED/);
      // the pod's last lines once, as a topas line, not in each instance's error
      assert.equal(stderr.split(`kubernetes: runner pod ${podName} exited`).length, 2, stderr.slice(-3000));
      assert.ok(lost.every((x) => !(x.error?.message ?? '').includes('last lines')));
      t.diagnostic(`a lost instance's error: ${lost[0].error?.message}`);
      t.diagnostic(`runner pod ${podName} killed: the run ended ${endedS.toFixed(1)} s later with exit ${code}; whole run ${((Date.now() - t0) / 1000).toFixed(1)} s`);
      await assertNothingLeft(rep.runId);
    } finally {
      if (child.exitCode === null) {
        child.kill('SIGINT');
        await closed;
      }
    }
  });

  test('test status --backend kubernetes --app F: only the runs of F\'s app; without --app, every app\'s', async () => {
    const a = await ws.topas('run', 'version.lua', '--app', 'topas.yaml', ...flags(), '--reporter', 'json:a.json');
    assert.equal(a.code, 0, `${a.stderr}\n${a.stdout}`);
    const b = await ws.topas('run', 'version.lua', '--app', 'other.yaml', ...flags(), '--reporter', 'json:b.json');
    assert.equal(b.code, 0, `${b.stderr}\n${b.stdout}`);
    const idA = (JSON.parse(fs.readFileSync(path.join(ws.work, 'a.json'), 'utf8')) as Report).runId;
    const idB = (JSON.parse(fs.readFileSync(path.join(ws.work, 'b.json'), 'utf8')) as Report).runId;
    const status = async (...extra: string[]) => {
      const r = await ws.topas('test', 'status', ...flags(), ...extra, '--json');
      assert.equal(r.code, 0, r.stderr);
      return JSON.parse(r.stdout) as Array<{ runId: string; app: string; state: string }>;
    };
    const all = await status();
    assert.deepEqual(new Set(all.map((r) => r.app)), new Set(['spread', 'spread-other']));
    assert.ok(all.some((r) => r.runId === idA) && all.some((r) => r.runId === idB), JSON.stringify(all));
    const onlyA = await status('--app', 'topas.yaml');
    assert.deepEqual(onlyA.map((r) => [r.runId, r.app, r.state]), [[idA, 'spread', 'Passed']]);
    const onlyB = await status('--app', 'other.yaml');
    assert.deepEqual(onlyB.map((r) => [r.runId, r.app, r.state]), [[idB, 'spread-other', 'Passed']]);
    // a spec that is not there: the usual error, not every app's runs
    const missing = await ws.topas('test', 'status', ...flags(), '--app', 'nope.yaml');
    assert.notEqual(missing.code, 0);
    assert.match(missing.stderr, /app spec not found: nope\.yaml/);
    await assertNothingLeft(idA);
    await assertNothingLeft(idB);
  });
});
