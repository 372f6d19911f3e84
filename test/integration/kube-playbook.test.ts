import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { REPO_ROOT } from '../helpers/cli';
import { agentLeftovers, kubeCliWorkspace, kubeSkipReason, runObjects, startKubeTestCluster, stopKubeTestCluster, until, type KubeCliWorkspace, type KubeTestCluster, buildRunnerImage } from '../helpers/kube';

// Playbooks on a cluster, end to end through the API server: `topas run
// playbook.yaml --backend kubernetes` runs the 12 instances of
// fixtures/playbooks/spread (barriers of all 12, a topic, a signal, calls to
// the SUT) in one runner pod, and with --workers 3 over three runner pods (an
// Indexed Job) that meet in a sync Deployment by its Service's DNS name.
const skip = kubeSkipReason();
const FIXTURE = path.join(REPO_ROOT, 'fixtures', 'playbooks', 'spread');

interface Report {
  runId: string;
  state: string;
  results: Array<{ name: string; state: string; instance: { id: string }; error?: { message: string }; steps: Array<{ name: string; state: string; durationMs: number }> }>;
  playbooks: Array<{ name: string; state: string; roles: Array<{ name: string; ok: number; total: number }>; firstFailure?: { instance: string; error?: { message: string } } }>;
}

describe('playbooks on --backend kubernetes: instances in runner pods, sync through the cluster', () => {
  if (skip) {
    test('needs the control-plane binaries', { skip }, () => {});
    return;
  }
  let c: KubeTestCluster;
  let ws: KubeCliWorkspace;
  const ns = `kp-${process.pid}`;
  const flags = () => ['--backend', 'kubernetes', '--kubeconfig', c.cp.kubeconfig, '--namespace', ns];
  const report = (file: string) => JSON.parse(fs.readFileSync(path.join(ws.work, file), 'utf8')) as Report;

  const assertNothingLeft = async (runId: string) => {
    await until('nothing with the run label remains', async () => ((await runObjects(c.cp.kc, ns, runId)).length === 0 ? true : undefined), 60_000).catch(async () => {
      assert.deepEqual(await runObjects(c.cp.kc, ns, runId), []);
    });
    await until('the agent removed every container', async () => ((await agentLeftovers(c.agent.nodeName)).containers.length === 0 ? true : undefined), 60_000);
  };

  /** one barrier of all 12 instances, round trip: the leader's "20 barriers of all" step / 20 */
  const barrierMs = (r: Report) => (r.results.find((x) => x.instance.id === 'leader-1')?.steps.find((s) => s.name === '20 barriers of all')?.durationMs ?? NaN) / 20;

  before(async () => {
    buildRunnerImage();
    c = await startKubeTestCluster(ns);
    ws = kubeCliWorkspace(path.join(FIXTURE, 'topas.yaml'), 'kube-playbook-');
    for (const f of fs.readdirSync(FIXTURE).filter((n) => n.endsWith('.lua') || n.endsWith('.yaml'))) fs.copyFileSync(path.join(FIXTURE, f), path.join(ws.work, f));
  });

  after(async () => {
    await stopKubeTestCluster(c);
    ws?.cleanup();
  });

  test('a playbook (12 instances, barriers of all, a topic, a signal) passes in one runner pod', async () => {
    const r = await ws.topas('run', 'spread.yaml', ...flags(), '--reporter', 'table', '--reporter', 'json:one.json');
    assert.equal(r.code, 0, `${r.stderr}\n${r.stdout}`);
    const rep = report('one.json');
    assert.equal(rep.state, 'passed');
    assert.equal(rep.results.length, 12);
    assert.deepEqual(rep.playbooks[0].roles, [
      { name: 'leader', ok: 1, total: 1 },
      { name: 'worker', ok: 11, total: 11 },
    ]);
    assert.match(r.stdout, /playbook spread passed: leader 1\/1, worker 11\/11/);
    const first = /runner Job created to first step: (\d+) ms/.exec(r.stderr);
    process.stdout.write(`# playbook in 1 runner pod: created to first step ${first?.[1] ?? '?'} ms; barrier of 12 (in-process broker) ${barrierMs(rep).toFixed(1)} ms; whole run ${(r.ms / 1000).toFixed(1)} s\n`);
    await assertNothingLeft(rep.runId);
  });

  test('--workers 3: the 12 instances over 3 runner pods meet at barriers of all 12 in the sync Deployment; one report', async () => {
    const r = await ws.topas('run', 'spread.yaml', ...flags(), '--workers', '3', '--reporter', 'table', '--reporter', 'json:three.json');
    assert.equal(r.code, 0, `${r.stderr}\n${r.stdout}`);
    assert.match(r.stderr, /3 runner pods \(Indexed Job \S+, TestRuns \S+-0\.\.2\) and sync Deployment \S+ \(ws:\/\/\S+\.svc\.cluster\.local:7070\)/);
    const rep = report('three.json');
    assert.equal(rep.state, 'passed');
    assert.equal(rep.results.length, 12);
    assert.equal(new Set(rep.results.map((x) => x.instance.id)).size, 12);
    assert.deepEqual(rep.playbooks[0].roles, [
      { name: 'leader', ok: 1, total: 1 },
      { name: 'worker', ok: 11, total: 11 },
    ]);
    // the workers say which pod they ran on (POD_NAME of the runner): three pods of the Indexed Job
    const pods = new Set([...r.stderr.matchAll(/worker-\d+ runs on (\S+)/g)].map((m) => m[1]));
    assert.equal(pods.size, 3, [...pods].join(', '));
    const first = /3 runner pods created to first step: (\d+)-(\d+) ms/.exec(r.stderr);
    assert.ok(first, r.stderr);
    process.stdout.write(`# playbook over 3 runner pods: created to first step ${first[1]}-${first[2]} ms; barrier of 12 over the sync Service ${barrierMs(rep).toFixed(1)} ms; whole run ${(r.ms / 1000).toFixed(1)} s\n`);
    await assertNothingLeft(rep.runId);
  });

  test('--workers 3, an instance fails: exit 1, its failure in the report, the other pods stop at once naming it', async () => {
    const r = await ws.topas('run', 'spread-failing.yaml', ...flags(), '--workers', '3', '--reporter', 'json:failing.json', '--reporter', 'junit:failing.xml');
    assert.equal(r.code, 1, `${r.stderr}\n${r.stdout}`);
    const rep = report('failing.json');
    assert.equal(rep.state, 'failed');
    assert.equal(rep.results.length, 12);
    const pb = rep.playbooks[0];
    assert.equal(pb.firstFailure?.instance, 'worker-5');
    assert.match(pb.firstFailure?.error?.message ?? '', /worker 5 gave up after the start/);
    assert.ok(rep.results.every((x) => x.state !== 'passed'), 'no instance passed a barrier that needed worker-5');
    // instances in the other pods failed naming it (barrier that cannot complete, or stopped because it failed)
    assert.ok(rep.results.filter((x) => x.instance.id !== 'worker-5').every((x) => /worker-5/.test(x.error?.message ?? '')), JSON.stringify(rep.results.map((x) => [x.instance.id, x.error?.message])));
    assert.match(fs.readFileSync(path.join(ws.work, 'failing.xml'), 'utf8'), /worker 5 gave up/);
    // well before the barrier timeout (60 s)
    process.stdout.write(`# failing playbook over 3 runner pods: whole run ${(r.ms / 1000).toFixed(1)} s\n`);
    await assertNothingLeft(rep.runId);
  });

  test('--workers 3, a runner pod is deleted mid-run: the barriers that need its instances fail at once, naming them; nothing remains', async () => {
    const t0 = Date.now();
    const child = ws.spawnTopas(['run', 'spread-hold.yaml', ...flags(), '--workers', '3', '--reporter', 'json:killed.json']);
    let stderr = '';
    child.stderr!.on('data', (b: Buffer) => (stderr += b));
    const closed = new Promise<number | null>((resolve) => child.on('close', resolve));
    await until('all 3 runner pods started and the leader holds', async () => (/3 runner pods created to first step/.test(stderr) && /holding/.test(stderr) ? true : undefined), 180_000);
    const pods = (await c.core.listNamespacedPod({ namespace: ns, labelSelector: 'job-name' })).items.filter((p) => p.metadata?.annotations?.['batch.kubernetes.io/job-completion-index'] === '1');
    assert.equal(pods.length, 1);
    const killedAt = Date.now();
    await c.core.deleteNamespacedPod({ name: pods[0].metadata!.name!, namespace: ns, gracePeriodSeconds: 0 });
    const code = await Promise.race([closed, new Promise<null>((r) => setTimeout(() => r(null), 120_000).unref())]);
    if (code === null) {
      child.kill('SIGINT');
      await closed;
    }
    // its instances failed (exit 1), the SUT stood up fine (not 3)
    assert.equal(code, 1, stderr.slice(-3000));
    const rep = report('killed.json');
    const lost = rep.results.filter((x) => ['worker-1', 'worker-4', 'worker-7', 'worker-10'].includes(x.instance.id));
    assert.ok(lost.length === 4 && lost.every((x) => x.state === 'error' && /runner pod .* \(share 2 of 3\) was lost \(deleted before it wrote a result\)/.test(x.error?.message ?? '')), JSON.stringify(lost.map((x) => [x.instance.id, x.state, x.error?.message])));
    // share 1 of 3 runs worker-1, worker-4, worker-7, worker-10: the other pods' instances fail naming one of them, well before the barrier timeout (100 s)
    const others = rep.results.filter((x) => !['worker-1', 'worker-4', 'worker-7', 'worker-10'].includes(x.instance.id));
    assert.equal(others.length, 8, `${JSON.stringify(rep.results.map((x) => x.instance.id))}\n${stderr.slice(-4000)}`);
    assert.ok(others.every((x) => x.state !== 'passed'));
    assert.ok(others.some((x) => /worker-(1|4|7|10)\b/.test(x.error?.message ?? '')), JSON.stringify(others.map((x) => x.error?.message)));
    assert.ok(Date.now() - killedAt < 60_000, `ended ${Date.now() - killedAt} ms after the pod was deleted`);
    process.stdout.write(`# runner pod deleted mid-run: the run ended ${((Date.now() - killedAt) / 1000).toFixed(1)} s later (exit ${code}); whole run ${((Date.now() - t0) / 1000).toFixed(1)} s\n`);
    await assertNothingLeft(rep.runId);
  });

  test('--workers 3, Ctrl-C mid-run: exit 130; the runner pods, the sync Deployment and the TestRuns are deleted', async () => {
    const child = ws.spawnTopas(['run', 'spread-hold.yaml', ...flags(), '--workers', '3', '--reporter', 'json:interrupted.json']);
    let stderr = '';
    child.stderr!.on('data', (b: Buffer) => (stderr += b));
    const closed = new Promise<number | null>((resolve) => child.on('close', resolve));
    await until('the leader holds', async () => (/holding/.test(stderr) ? true : undefined), 180_000);
    const t0 = Date.now();
    child.kill('SIGINT');
    const code = await Promise.race([closed, new Promise<null>((r) => setTimeout(() => r(null), 120_000).unref())]);
    if (code === null) child.kill('SIGKILL');
    assert.equal(code, 130, stderr.slice(-3000));
    const rep = report('interrupted.json');
    assert.equal(rep.state, 'interrupted');
    await assertNothingLeft(rep.runId);
    process.stdout.write(`# Ctrl-C of a run over 3 runner pods: ${((Date.now() - t0) / 1000).toFixed(1)} s to everything gone\n`);
  });
});
