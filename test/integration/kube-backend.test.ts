import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as k8s from '@kubernetes/client-node';
import type { NodeAgent } from '../../plugins/kubernetes/test-support/node-agent';
import type { Sut, SutState } from '../../src/backends/backend';
import { loadAppSpec } from '../../src/spec/load-app-spec';
import { REPO_ROOT } from '../helpers/cli';
import { agentLeftovers, kubeCliWorkspace, kubeSkipReason, runObjects, startKubeTestCluster, stopKubeTestCluster, until, type ControlPlane, type KubeCliWorkspace, type KubeTestCluster, buildRunnerImage } from '../helpers/kube';

// `topas up|down --backend kubernetes` of the quickstart app on a real control
// plane, its pods run by the tests' node agent; then the SUT operations
// (scale, rolling upgrade, kill and heal, logs) through the backend. No
// traffic from this host to pod or Service IPs: the data path is checked by a
// Job inside the cluster.
const skip = kubeSkipReason();
const QUICKSTART = path.join(REPO_ROOT, 'fixtures', 'quickstart', 'topas.yaml');

describe('kubernetes backend: the quickstart on a local control plane', () => {
  // a skipped test (not a suite) shows in the run's `skipped` count, with its reason
  if (skip) {
    test('needs the control-plane binaries', { skip }, () => {});
    return;
  }
  let kube: KubeTestCluster;
  let cp: ControlPlane;
  let agent: NodeAgent;
  let core: k8s.CoreV1Api;
  let apps: k8s.AppsV1Api;
  let batch: k8s.BatchV1Api;
  let ws: KubeCliWorkspace;
  let work: string;
  let appFile: string;
  let topas: KubeCliWorkspace['topas'];
  let runId: string;
  const ns = `kb-${process.pid}`;

  before(async () => {
    // the shaping proxies next to each service and database run the runner image
    buildRunnerImage();
    kube = await startKubeTestCluster(ns);
    ({ cp, agent, core, apps, batch } = kube);
    // the cluster comes from the flags of `up` and `down`; `ps` finds it in .topas/state.json
    ws = kubeCliWorkspace(QUICKSTART, 'kube-backend-');
    ({ work, appFile, topas } = ws);
    // for the SUT operations through the backend in this process
    process.env.TOPAS_KUBECONFIG = cp.kubeconfig;
    process.env.TOPAS_KUBE_NAMESPACE = ns;
  });

  after(async () => {
    await stopKubeTestCluster(kube);
    ws?.cleanup();
  });

  test('topas up --backend kubernetes: every service Ready, objects labelled and owned by the run', async () => {
    const up = await topas('up', '--app', appFile, '--backend', 'kubernetes', '--kubeconfig', cp.kubeconfig, '--namespace', ns, '--json');
    assert.equal(up.code, 0, `${up.stderr}\n${up.stdout}`);
    process.stdout.write(`# topas up of the quickstart on the cluster: ${(up.ms / 1000).toFixed(1)} s (CLI process start to exit)\n`);
    const result = JSON.parse(up.stdout) as { backend: string; runId: string; services: Array<{ name: string; ready: boolean; replicas: number; endpoints: string[] }> };
    assert.equal(result.backend, 'kubernetes');
    runId = result.runId;
    assert.deepEqual(
      result.services.map((s) => [s.name, s.ready, s.replicas]),
      [
        ['api', true, 2],
        ['db', true, 1],
      ],
    );
    // in-cluster names, not host addresses
    assert.match(result.services[0].endpoints[0], new RegExp(`^http://quickstart-api-[0-9a-f]{6}\\.${ns}\\.svc\\.cluster\\.local:8080$`));
    const deps = await apps.listNamespacedDeployment({ namespace: ns, labelSelector: `topas.dev/run=${runId}` });
    // api's, and a shaping proxy's for api and db
    assert.deepEqual(deps.items.map((d) => d.metadata?.labels?.['topas.dev/component']).sort(), ['api', 'api-shape', 'db-shape']);
    for (const d of deps.items) assert.equal(d.metadata?.ownerReferences?.[0].kind, 'ConfigMap');
    const init = await batch.listNamespacedJob({ namespace: ns, labelSelector: `topas.dev/run=${runId}` });
    assert.equal(init.items[0].status?.succeeded, 1, 'initSQL ran');
    assert.equal(JSON.parse(fs.readFileSync(path.join(work, '.topas', 'state.json'), 'utf8')).backend, 'kubernetes');

    const ps = await topas('ps', '--app', appFile, '--json');
    assert.equal(ps.code, 0, ps.stderr);
    assert.ok((JSON.parse(ps.stdout) as { services: Array<{ ready: boolean }> }).services.every((s) => s.ready));
  });

  test('the api reaches PostgreSQL through ${db.url} (the Service DNS name), from inside the cluster', async () => {
    const api = (await apps.listNamespacedDeployment({ namespace: ns, labelSelector: `topas.dev/run=${runId},topas.dev/component=api` })).items[0].metadata!.name!;
    const host = `${api}.${ns}.svc.cluster.local`;
    const js = `(async () => {
      const base = 'http://${host}:8080';
      const post = await fetch(base + '/api/users', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name: 'carol', role: 'editor' }) });
      if (post.status !== 201) process.exit(10);
      const get = await fetch(base + '/api/users/carol');
      if ((await get.json()).role !== 'editor') process.exit(11);
      process.exit(0);
    })().catch(() => process.exit(12));`;
    await batch.createNamespacedJob({ namespace: ns, body: { metadata: { name: 'data-path' }, spec: { backoffLimit: 0, template: { spec: { restartPolicy: 'Never', containers: [{ name: 'c', image: 'local/mock-app:1.0.0', command: ['node', '-e', js] }] } } } } });
    const job = await until('Job data-path finished', async () => {
      const j = await batch.readNamespacedJob({ name: 'data-path', namespace: ns });
      return (j.status?.succeeded ?? 0) + (j.status?.failed ?? 0) > 0 ? j : undefined;
    });
    const pod = (await core.listNamespacedPod({ namespace: ns, labelSelector: 'job-name=data-path' })).items[0];
    assert.equal(job.status?.succeeded, 1, `exit code ${pod.status?.containerStatuses?.[0].state?.terminated?.exitCode} (10: POST failed, 11: wrong row, 12: unreachable)`);
    await batch.deleteNamespacedJob({ name: 'data-path', namespace: ns, body: { propagationPolicy: 'Background' } });
  });

  test('the SUT on the cluster: scale, zero-downtime rolling upgrade, kill and heal, stop and start, logs; no host endpoint', async () => {
    const { KubernetesBackend } = await import('../../plugins/kubernetes/src/kube-backend');
    const spec = await loadAppSpec(appFile);
    const state = JSON.parse(fs.readFileSync(path.join(work, '.topas', 'state.json'), 'utf8')) as SutState;
    const sut: Sut = await new KubernetesBackend().attach(spec, state, { runId: state.runId, workDir: '', log: () => {}, processEnv: process.env });
    const depName = (await apps.listNamespacedDeployment({ namespace: ns, labelSelector: `topas.dev/run=${runId},topas.dev/component=api` })).items[0].metadata!.name!;
    const readDep = () => apps.readNamespacedDeployment({ name: depName, namespace: ns });

    await sut.scale('api', 3);
    assert.equal((await readDep()).status?.readyReplicas, 3);

    // during the rollout the number of ready pods never drops below 3 (maxUnavailable 0)
    let lowest = Infinity;
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        const d = await readDep();
        lowest = Math.min(lowest, d.status?.availableReplicas ?? 0);
        await new Promise((r) => setTimeout(r, 100));
      }
    })();
    await sut.applyService('api', { version: '1.1.0' });
    sampling = false;
    await sampler;
    assert.ok(lowest >= 3, `available replicas dropped to ${lowest} during the rollout`);
    // the old pods may still be terminating (their node stops them gracefully): the rollout is done without them
    const apiPods = async () => (await core.listNamespacedPod({ namespace: ns, labelSelector: `topas.dev/run=${runId},topas.dev/component=api` })).items.filter((p) => !p.metadata?.deletionTimestamp);
    const pods = await apiPods();
    assert.equal(pods.length, 3);
    for (const p of pods) assert.equal(p.spec?.containers[0].image, 'local/mock-app:1.1.0');
    const status = await sut.services();
    assert.equal(status.find((s) => s.name === 'api')?.version, '1.1.0');

    const before = new Set(pods.map((p) => p.metadata!.uid));
    await sut.kill('api', { signal: 'SIGKILL' });
    const healed = await apiPods();
    assert.equal(healed.length, 3);
    assert.equal(healed.filter((p) => !before.has(p.metadata!.uid)).length, 1, 'one pod was replaced');
    assert.equal((await readDep()).status?.readyReplicas, 3);

    // stop is a scale to 0, start brings back the replicas it had
    await sut.stop('api');
    assert.equal((await apiPods()).length, 0);
    await sut.start('api');
    assert.equal((await readDep()).status?.readyReplicas, 3);

    const logs = await sut.logs('api', { tail: 50 });
    assert.match(logs, /^\[quickstart-api-/m);
    assert.throws(() => sut.endpoint('api'), /does not reach services from this machine/);
    await sut.detach();
  });

  test('topas down --backend kubernetes leaves no object with the run label and no container', async () => {
    const down = await topas('down', '--app', appFile, '--backend', 'kubernetes', '--kubeconfig', cp.kubeconfig, '--namespace', ns);
    assert.equal(down.code, 0, down.stderr);
    assert.match(down.stdout, /torn down: quickstart \(kubernetes/);
    // every kind the API server lists, found by discovery (not the plugin's own list): down waited for all of it
    assert.deepEqual(await runObjects(cp.kc, ns, runId), []);
    await until('the agent removed every container', async () => ((await agentLeftovers(agent.nodeName)).containers.length === 0 ? true : undefined), 30_000);
    assert.ok(!fs.existsSync(path.join(work, '.topas', 'state.json')));
  });
});
