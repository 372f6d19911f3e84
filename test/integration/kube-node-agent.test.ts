import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as k8s from '@kubernetes/client-node';
import type { NodeAgent } from '../../plugins/kubernetes/test-support/node-agent';
import { agentLeftovers, kubeSkipReason, startKubeTestCluster, stopKubeTestCluster, until, type KubeTestCluster } from '../helpers/kube';

// The tests' kubelet stand-in on a real control plane: pods of a Deployment and
// of Jobs run as Docker containers (the locally built fixture images), report
// their status through the API server and reach a Service by its DNS name.
const skip = kubeSkipReason();

describe('node agent on a local control plane', () => {
  // a skipped test (not a suite) shows in the run's `skipped` count, with its reason
  if (skip) {
    test('needs the control-plane binaries', { skip }, () => {});
    return;
  }
  let kube: KubeTestCluster;
  let agent: NodeAgent;
  let core: k8s.CoreV1Api;
  let apps: k8s.AppsV1Api;
  let batch: k8s.BatchV1Api;
  const ns = `agent-${process.pid}`;

  before(async () => {
    kube = await startKubeTestCluster(ns);
    ({ agent, core, apps, batch } = kube);
  });

  after(() => stopKubeTestCluster(kube));

  test('the node registers and is Ready', async () => {
    const node = await core.readNode({ name: agent.nodeName });
    assert.equal(node.status?.conditions?.find((c) => c.type === 'Ready')?.status, 'True');
    assert.deepEqual(node.spec?.taints ?? [], []);
  });

  test('a Deployment of the fixture app becomes Available; a Job reaches it by Service name and completes; a failing Job reports its exit code', async () => {
    const labels = { app: 'web' };
    await core.createNamespacedService({ namespace: ns, body: { metadata: { name: 'web' }, spec: { selector: labels, ports: [{ name: 'http', port: 8080, targetPort: 8080 as unknown as k8s.IntOrString }] } } });
    await apps.createNamespacedDeployment({
      namespace: ns,
      body: {
        metadata: { name: 'web' },
        spec: {
          replicas: 2,
          selector: { matchLabels: labels },
          template: {
            metadata: { labels },
            spec: {
              containers: [
                {
                  name: 'app',
                  image: 'local/mock-app:1.0.0',
                  env: [{ name: 'PORT', value: '8080' }],
                  ports: [{ name: 'http', containerPort: 8080 }],
                  readinessProbe: { httpGet: { path: '/healthz', port: 'http' as unknown as k8s.IntOrString }, periodSeconds: 1 },
                },
              ],
            },
          },
        },
      },
    });
    const dep = await until('Deployment web Available', async () => {
      const d = await apps.readNamespacedDeployment({ name: 'web', namespace: ns });
      return d.status?.conditions?.some((c) => c.type === 'Available' && c.status === 'True') && d.status.readyReplicas === 2 ? d : undefined;
    });
    assert.equal(dep.status?.availableReplicas, 2);
    const pods = (await core.listNamespacedPod({ namespace: ns, labelSelector: 'app=web' })).items;
    assert.equal(pods.length, 2);
    for (const p of pods) {
      assert.equal(p.status?.phase, 'Running');
      assert.match(p.status?.podIP ?? '', /^\d+\.\d+\.\d+\.\d+$/);
      assert.equal(p.status?.conditions?.find((c) => c.type === 'Ready')?.status, 'True');
    }

    // inside the cluster, by the Service's short and full DNS names
    const script = `for (const h of ['web', 'web.${ns}.svc.cluster.local']) { const r = await fetch('http://' + h + ':8080/version'); if (r.status !== 200) process.exit(2); } process.exit(7);`;
    const job = (name: string, command: string[]) =>
      batch.createNamespacedJob({ namespace: ns, body: { metadata: { name }, spec: { backoffLimit: 0, template: { spec: { restartPolicy: 'Never', containers: [{ name: 'c', image: 'local/mock-app:1.0.0', command }] } } } } });
    await job('reach', ['node', '-e', `(async () => { ${script} })().catch(() => process.exit(3))`]);
    await job('ok', ['sh', '-c', 'echo done']);
    const finished = async (name: string) => {
      const j = await batch.readNamespacedJob({ name, namespace: ns });
      return j.status?.conditions?.find((c) => (c.type === 'Complete' || c.type === 'Failed') && c.status === 'True') ? j : undefined;
    };
    const ok = await until('Job ok finished', () => finished('ok'));
    assert.equal(ok.status?.succeeded, 1);
    const reach = await until('Job reach finished', () => finished('reach'));
    assert.equal(reach.status?.failed, 1, 'the reach Job exits 7 on purpose (after both names answered)');
    const reachPod = (await core.listNamespacedPod({ namespace: ns, labelSelector: 'job-name=reach' })).items[0];
    assert.equal(reachPod.status?.phase, 'Failed');
    assert.equal(reachPod.status?.containerStatuses?.[0].state?.terminated?.exitCode, 7, 'exit 7: both DNS names answered 200 (2 = bad status, 3 = not reachable)');
    const okPod = (await core.listNamespacedPod({ namespace: ns, labelSelector: 'job-name=ok' })).items[0];
    assert.equal(okPod.status?.phase, 'Succeeded');
    assert.equal(okPod.status?.containerStatuses?.[0].state?.terminated?.exitCode, 0);
    // logs come through the API server from the agent
    const log = await core.readNamespacedPodLog({ name: okPod.metadata!.name!, namespace: ns });
    assert.equal(String(log).trim(), 'done');

    // deleting the objects removes the containers
    await apps.deleteNamespacedDeployment({ name: 'web', namespace: ns, body: { propagationPolicy: 'Background' } });
    for (const name of ['ok', 'reach']) await batch.deleteNamespacedJob({ name, namespace: ns, body: { propagationPolicy: 'Background' } });
    await until('pods gone', async () => ((await core.listNamespacedPod({ namespace: ns })).items.length === 0 ? true : undefined));
    await until('containers gone', async () => ((await agentLeftovers(agent.nodeName)).containers.length === 0 ? true : undefined), 30_000);
  });

  test('a pod reaches the API server as under a kubelet: KUBERNETES_SERVICE_HOST/PORT and its service-account token, verified TLS', async () => {
    // in the pod: who am I (SelfSubjectReview), over TLS checked against the mounted CA and the host name
    const js = `const fs = require('fs'); const https = require('https');
      const d = '/var/run/secrets/kubernetes.io/serviceaccount/';
      const body = JSON.stringify({ apiVersion: 'authentication.k8s.io/v1', kind: 'SelfSubjectReview' });
      const req = https.request({ host: process.env.KUBERNETES_SERVICE_HOST, port: process.env.KUBERNETES_SERVICE_PORT, method: 'POST', path: '/apis/authentication.k8s.io/v1/selfsubjectreviews',
        ca: fs.readFileSync(d + 'ca.crt'), headers: { authorization: 'Bearer ' + fs.readFileSync(d + 'token', 'utf8'), 'content-type': 'application/json' } }, (res) => {
        let t = ''; res.on('data', (c) => (t += c)); res.on('end', () => { console.log(fs.readFileSync(d + 'namespace', 'utf8') + ' ' + JSON.parse(t).status.userInfo.username); process.exit(res.statusCode === 201 ? 0 : 2); });
      });
      req.on('error', (e) => { console.log(e.message); process.exit(3); });
      req.end(body);`;
    await batch.createNamespacedJob({ namespace: ns, body: { metadata: { name: 'whoami' }, spec: { backoffLimit: 0, template: { spec: { restartPolicy: 'Never', containers: [{ name: 'c', image: 'local/mock-app:1.0.0', command: ['node', '-e', js] }] } } } } });
    const job = await until('Job whoami finished', async () => {
      const j = await batch.readNamespacedJob({ name: 'whoami', namespace: ns });
      return (j.status?.succeeded ?? 0) + (j.status?.failed ?? 0) > 0 ? j : undefined;
    });
    const pod = (await core.listNamespacedPod({ namespace: ns, labelSelector: 'job-name=whoami' })).items[0];
    const log = String(await core.readNamespacedPodLog({ name: pod.metadata!.name!, namespace: ns })).trim();
    assert.equal(job.status?.succeeded, 1, `the pod said: ${log}`);
    assert.equal(log, `${ns} system:serviceaccount:${ns}:default`);
    await batch.deleteNamespacedJob({ name: 'whoami', namespace: ns, body: { propagationPolicy: 'Background' } });
    await until('pods gone', async () => ((await core.listNamespacedPod({ namespace: ns })).items.length === 0 ? true : undefined));
  });

  test('after stop, the agent leaves no container, network or Node', async () => {
    await agent.stop();
    const left = await agentLeftovers(agent.nodeName);
    assert.deepEqual(left, { containers: [], networks: [] });
    await assert.rejects(core.readNode({ name: agent.nodeName }), (err: { code?: number }) => err.code === 404);
  });
});
