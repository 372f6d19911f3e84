import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type * as k8s from '@kubernetes/client-node';
import { EXIT_CODES } from '../../src/errors';
import { agentLeftovers, buildRunnerImage, kubeCliWorkspace, kubeSkipReason, labelledObjects, startKubeTestCluster, stopKubeTestCluster, until, type KubeCliWorkspace, type KubeTestCluster } from '../helpers/kube';

// What a run leaves on a cluster when it does not end well: a start whose pod
// never gets ready (the failure names the cluster's events), Ctrl-C while
// `topas up` waits for readiness, and a run whose topas process was killed
// (`topas down` sweeps it by its labels). Each time nothing with the run's
// labels may remain in the namespace, of any kind, and no container the
// node agent made for its pods.
const skip = kubeSkipReason();

/** One service of the mock app whose readiness path answers 404: its pods run but never get Ready. */
function neverReadySpec(app: string, timeout: string): string {
  return [
    `name: ${app}`,
    'services:',
    '  - name: web',
    '    image: local/mock-app',
    '    version: "1.0.0"',
    '    port: 8080',
    `    ready: { http: /never-ready, timeout: ${timeout} }`,
    '',
  ].join('\n');
}

describe('kubernetes: failed, interrupted and crashed runs leave nothing behind', () => {
  if (skip) {
    test('needs the control-plane binaries', { skip }, () => {});
    return;
  }
  let kube: KubeTestCluster;
  let specDir: string;
  const workspaces: KubeCliWorkspace[] = [];
  const children: ChildProcess[] = [];
  const ns = `klife-${process.pid}`;

  const workspace = (app: string, timeout: string): KubeCliWorkspace => {
    const file = path.join(specDir, app, 'topas.yaml');
    fs.mkdirSync(path.dirname(file));
    fs.writeFileSync(file, neverReadySpec(app, timeout));
    const ws = kubeCliWorkspace(file, `kube-life-${app}-`);
    workspaces.push(ws);
    return ws;
  };
  const clusterFlags = () => ['--backend', 'kubernetes', '--kubeconfig', kube.cp.kubeconfig, '--namespace', ns];

  /** Every object with the app's label (any kind), and the agent's containers of its pods. */
  const leftovers = async (app: string) => ({
    objects: await labelledObjects(kube.cp.kc, ns, `topas.dev/app=${app}`),
    containers: (await agentLeftovers(kube.agent.nodeName, `${ns}/${app}-`)).containers,
  });
  /** Nothing left: objects at once (topas waits for their removal before it exits); containers once the agent has seen the pods go. */
  const assertNothingLeft = async (app: string) => {
    assert.deepEqual(await labelledObjects(kube.cp.kc, ns, `topas.dev/app=${app}`), [], `objects of ${app} left in ${ns}`);
    await until(`the agent removed the containers of ${app}`, async () => ((await leftovers(app)).containers.length === 0 ? true : undefined), 60_000).catch(async (err: Error) =>
      assert.fail(`${err.message}: ${(await leftovers(app)).containers.join(', ')}`),
    );
  };
  /** Until the app's first pod runs (its container started) but is not Ready: `topas up` is waiting for readiness. */
  const waitingForReadiness = (app: string) =>
    until(
      `a running, unready pod of ${app}`,
      async () => {
        const pods = (await kube.core.listNamespacedPod({ namespace: ns, labelSelector: `topas.dev/app=${app}` })).items;
        const running = pods.find((p: k8s.V1Pod) => p.status?.phase === 'Running' && p.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'False'));
        return running && (await leftovers(app)).containers.length > 0 ? running : undefined;
      },
      180_000,
    );
  const exited = (child: ChildProcess, timeoutMs: number) =>
    new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve, reject) => {
      if (child.exitCode !== null || child.signalCode !== null) return resolve({ code: child.exitCode, signal: child.signalCode });
      const t = setTimeout(() => reject(new Error(`topas did not exit within ${timeoutMs} ms`)), timeoutMs);
      child.once('exit', (code, signal) => {
        clearTimeout(t);
        resolve({ code, signal });
      });
    });
  const collect = (child: ChildProcess) => {
    const out = { stdout: '', stderr: '' };
    child.stdout?.on('data', (c: Buffer) => (out.stdout += c.toString()));
    child.stderr?.on('data', (c: Buffer) => (out.stderr += c.toString()));
    return out;
  };

  before(async () => {
    // the shaping proxies next to each service run the runner image
    buildRunnerImage();
    kube = await startKubeTestCluster(ns);
    specDir = fs.mkdtempSync(path.join(os.tmpdir(), 'kube-life-specs-'));
  });

  after(async () => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    await stopKubeTestCluster(kube);
    for (const ws of workspaces) ws.cleanup();
    if (specDir) fs.rmSync(specDir, { recursive: true, force: true });
  });

  test('a service that never gets ready: `topas up` fails naming the pod and the cluster events (the failed probe), and removes the run', async () => {
    const ws = workspace('stuck', '25s');
    const up = await ws.topas('up', '--app', ws.appFile, ...clusterFlags());
    assert.equal(up.code, EXIT_CODES.sutFailed, `${up.stderr}\n${up.stdout}`);
    assert.match(up.stderr, /web was not ready within 25s/);
    // the pod's state, then the events the node agent recorded as a kubelet does
    assert.match(up.stderr, /stuck-web-[0-9a-f]{6}-\S+: Running, not ready/);
    assert.match(up.stderr, /event: Warning Unhealthy pod\/stuck-web-[0-9a-f]{6}-\S+: Readiness probe failed: HTTP probe failed with statuscode: 404 \((x\d+, )?\d+s ago\)/);
    await assertNothingLeft('stuck');
  });

  test('Ctrl-C while `topas up` waits for readiness: it exits as interrupted, and no object or container of the run remains', async () => {
    const ws = workspace('slow', '5m');
    const child = ws.spawnTopas(['up', '--app', ws.appFile, ...clusterFlags()]);
    children.push(child);
    const out = collect(child);
    await waitingForReadiness('slow');
    assert.equal(child.exitCode, null, `topas ended before the interrupt: ${out.stderr}`);
    child.kill('SIGINT');
    const end = await exited(child, 180_000);
    assert.equal(end.code, EXIT_CODES.interrupted, `exit ${end.code} (${end.signal}):\n${out.stderr}`);
    assert.match(out.stderr, /interrupted/);
    await assertNothingLeft('slow');
    assert.ok(!fs.existsSync(path.join(path.dirname(ws.appFile), '.topas', 'state.json')), 'no state recorded for an interrupted up');
  });

  test('a run whose topas was killed: `topas down --backend kubernetes` sweeps it by its labels; a live run of the same app is left alone', async () => {
    const ws = workspace('crashed', '5m');
    // a live run first: another process, still waiting; down must not touch it
    const live = ws.spawnTopas(['up', '--app', ws.appFile, ...clusterFlags()]);
    children.push(live);
    const liveOut = collect(live);
    const livePod = await waitingForReadiness('crashed');
    const liveRun = livePod.metadata!.labels!['topas.dev/run'];

    const killed = ws.spawnTopas(['up', '--app', ws.appFile, ...clusterFlags()]);
    children.push(killed);
    await until('a pod of the second run', async () => {
      const pods = (await kube.core.listNamespacedPod({ namespace: ns, labelSelector: `topas.dev/app=crashed` })).items;
      return pods.find((p) => p.metadata?.labels?.['topas.dev/run'] !== liveRun && p.status?.phase === 'Running');
    }, 180_000);
    killed.kill('SIGKILL');
    await exited(killed, 30_000);
    const killedRuns = new Set((await kube.core.listNamespacedConfigMap({ namespace: ns, labelSelector: 'topas.dev/app=crashed' })).items.map((c) => c.metadata?.labels?.['topas.dev/run']).filter((r) => r !== liveRun));
    assert.equal(killedRuns.size, 1, 'the killed run left its objects');

    const down = await ws.topas('down', '--app', ws.appFile, ...clusterFlags());
    assert.equal(down.code, 0, down.stderr);
    assert.match(down.stdout, /swept 1 leftover\(s\):\n {2}kubernetes run \S+ \(app crashed, owner gone\)/);
    const [killedRun] = [...killedRuns];
    assert.deepEqual(await labelledObjects(kube.cp.kc, ns, `topas.dev/run=${killedRun}`), [], 'objects of the killed run');
    assert.ok((await labelledObjects(kube.cp.kc, ns, `topas.dev/run=${liveRun}`)).some((o) => o.startsWith('Deployment/')), 'the live run keeps its Deployment');
    assert.equal(live.exitCode, null, `the live run ended: ${liveOut.stderr}`);

    // the live one, interrupted, cleans up after itself
    live.kill('SIGINT');
    assert.equal((await exited(live, 180_000)).code, EXIT_CODES.interrupted, liveOut.stderr);
    await assertNothingLeft('crashed');
  });
});
