import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { REPO_ROOT } from '../helpers/cli';
import { agentLeftovers, kubeCliWorkspace, kubeSkipReason, runObjects, startKubeTestCluster, stopKubeTestCluster, until, type KubeCliWorkspace, type KubeTestCluster, buildRunnerImage } from '../helpers/kube';

// Shaping on a cluster, end to end through the API server: `topas run --backend
// kubernetes` stands up api (the mock app) and web (a dependent calling api
// through `${api.url}`), each with its shaping proxy Deployment; the scenario
// in the runner Job sets a latency on api with shape.latency, measures it on
// its own requests and on web's (web times its calls to api itself), and
// clears it. The host never sends traffic to a pod or Service: the proxies'
// control ports are reached from the runner pod by Service DNS name.
const skip = kubeSkipReason();
const FIXTURE = path.join(REPO_ROOT, 'fixtures', 'kube-shape');
const RELAY_IMAGE = 'topas-test/kube-shape-relay:1';

/** The RESULT line of the scenario, as key=value pairs. */
function result(stderr: string): Record<string, number> {
  const line = stderr.split('\n').find((l) => l.includes('RESULT kube-latency'));
  assert.ok(line, `no RESULT line in:\n${stderr}`);
  return Object.fromEntries([...line.matchAll(/(\w+)=([\d.]+)/g)].map((m) => [m[1], Number(m[2])]));
}

describe('shaping on the kubernetes backend: proxy Deployments, shape.* from the runner pod', () => {
  if (skip) {
    test('needs the control-plane binaries', { skip }, () => {});
    return;
  }
  let kube: KubeTestCluster;
  let ws: KubeCliWorkspace;
  const ns = `ks-${process.pid}`;
  let upWithProxiesS = NaN;
  const cluster = () => ['--kubeconfig', kube.cp.kubeconfig, '--namespace', ns];

  /** Nothing with the run's label, and no container of the agent's, remains. */
  const assertNothingLeft = async (runId: string) => {
    // every kind the API server lists, found by discovery: the proxies' Deployments, Services, Secret, pods included
    assert.deepEqual(await runObjects(kube.cp.kc, ns, runId), []);
    await until('the agent removed every container', async () => ((await agentLeftovers(kube.agent.nodeName)).containers.length === 0 ? true : undefined), 90_000);
  };

  before(async () => {
    buildRunnerImage();
    const relay = spawnSync('docker', ['build', '-q', '-t', RELAY_IMAGE, path.join(FIXTURE, 'relay')], { encoding: 'utf8', env: { ...process.env, DOCKER_BUILDKIT: '0' }, timeout: 300_000 });
    if (relay.status !== 0) throw new Error(`relay image: ${relay.stderr}`);
    kube = await startKubeTestCluster(ns);
    ws = kubeCliWorkspace(path.join(FIXTURE, 'topas.yaml'), 'kube-shape-');
    fs.cpSync(path.join(FIXTURE, 'tests'), path.join(ws.work, 'tests'), { recursive: true });
    fs.writeFileSync(path.join(ws.work, 'leave-shaped.lua'), ['local shape = require("shape")', 'step("leave api shaped", function()', '  shape.latency("api", "300ms")', 'end)', ''].join('\n'));
  });

  after(async () => {
    await stopKubeTestCluster(kube);
    ws?.cleanup();
  });

  test('topas run: latency on api from the runner, seen by the runner and by web through ${api.url}; reset clears it; nothing remains', async (t) => {
    const r = await ws.topas('run', 'tests/latency.lua', '--app', 'topas.yaml', '--backend', 'kubernetes', ...cluster(), '--reporter', 'json:report.json');
    assert.equal(r.code, 0, `${r.stderr}\n${r.stdout}`);
    const figures = result(r.stderr);
    t.diagnostic(`requested 200 ms: runner p50 ${figures.runner_base_p50_ms} -> ${figures.runner_shaped_p50_ms} ms (+${figures.runner_delta_ms}), after reset ${figures.runner_after_reset_p50_ms}; dependent web -> api p50 ${figures.dependent_base_p50_ms} -> ${figures.dependent_shaped_p50_ms} ms (+${figures.dependent_delta_ms}), after reset ${figures.dependent_after_reset_p50_ms}; whole run ${(r.ms / 1000).toFixed(1)} s`);
    // the runner's shape log lines came back through the TestRun
    assert.match(r.stderr, /shape: api -> latency 200ms/);
    const report = JSON.parse(fs.readFileSync(path.join(ws.work, 'report.json'), 'utf8')) as { runId: string; state: string };
    assert.equal(report.state, 'passed');
    await assertNothingLeft(report.runId);
  });

  test('topas up: a proxy per component, owned by the run; runs attach and shape it; a shape left by a run is reset at its end; down removes the proxies', async () => {
    const up = await ws.topas('up', '--app', 'topas.yaml', '--backend', 'kubernetes', ...cluster(), '--json');
    assert.equal(up.code, 0, `${up.stderr}\n${up.stdout}`);
    upWithProxiesS = up.ms / 1000;
    const runId = (JSON.parse(up.stdout) as { runId: string }).runId;
    const deps = (await kube.apps.listNamespacedDeployment({ namespace: ns, labelSelector: `topas.dev/run=${runId}` })).items;
    assert.deepEqual(deps.map((d) => d.metadata!.labels!['topas.dev/component']).sort(), ['api', 'api-shape', 'web', 'web-shape']);
    for (const d of deps) assert.equal(d.metadata?.ownerReferences?.[0].kind, 'ConfigMap', `${d.metadata?.name} is owned by the run's parent`);
    const webEnv = (await kube.core.listNamespacedSecret({ namespace: ns, labelSelector: `topas.dev/run=${runId},topas.dev/component=web` })).items[0];
    assert.match(Buffer.from(webEnv.data!.UPSTREAM_URL, 'base64').toString(), new RegExp(`^http://kshape-api-shape-[0-9a-f]{6}\\.${ns}\\.svc\\.cluster\\.local:8080$`));
    // `ps` shows the app's components, not the proxies
    const ps = await ws.topas('ps', '--app', 'topas.yaml', '--json');
    assert.deepEqual((JSON.parse(ps.stdout) as { services: Array<{ name: string }> }).services.map((s) => s.name), ['api', 'web']);

    const left = await ws.topas('run', 'leave-shaped.lua', '--app', 'topas.yaml', '--backend', 'kubernetes', ...cluster());
    assert.equal(left.code, 0, `${left.stderr}\n${left.stdout}`);
    // the next run starts unshaped: its baselines (asserted in the scenario against the shaped figures) are not 300 ms slower
    const r = await ws.topas('run', 'tests/latency.lua', '--app', 'topas.yaml', '--backend', 'kubernetes', ...cluster());
    assert.equal(r.code, 0, `${r.stderr}\n${r.stdout}`);
    const figures = result(r.stderr);
    assert.ok(figures.dependent_base_p50_ms < 100 && figures.runner_base_p50_ms < 100, `baselines after a run that left api shaped: ${JSON.stringify(figures)}`);

    const down = await ws.topas('down', '--app', 'topas.yaml', '--backend', 'kubernetes', ...cluster());
    assert.equal(down.code, 0, down.stderr);
    await assertNothingLeft(runId);
  });

  test('TOPAS_KUBE_SHAPING=off: no proxies, references name the components themselves, shape.* says why it cannot shape', async (t) => {
    ws.env.TOPAS_KUBE_SHAPING = 'off';
    try {
      const up = await ws.topas('up', '--app', 'topas.yaml', '--backend', 'kubernetes', ...cluster(), '--json');
      assert.equal(up.code, 0, `${up.stderr}\n${up.stdout}`);
      t.diagnostic(`topas up of api + web without shaping proxies: ${(up.ms / 1000).toFixed(1)} s (with them: ${upWithProxiesS.toFixed(1)} s in the test above)`);
      const runId = (JSON.parse(up.stdout) as { runId: string }).runId;
      const deps = (await kube.apps.listNamespacedDeployment({ namespace: ns, labelSelector: `topas.dev/run=${runId}` })).items;
      assert.deepEqual(deps.map((d) => d.metadata!.labels!['topas.dev/component']).sort(), ['api', 'web']);
      const webEnv = (await kube.core.listNamespacedSecret({ namespace: ns, labelSelector: `topas.dev/run=${runId},topas.dev/component=web` })).items[0];
      assert.match(Buffer.from(webEnv.data!.UPSTREAM_URL, 'base64').toString(), new RegExp(`^http://kshape-api-[0-9a-f]{6}\\.${ns}\\.svc`));
      const r = await ws.topas('run', 'leave-shaped.lua', '--app', 'topas.yaml', '--backend', 'kubernetes', ...cluster());
      assert.equal(r.code, 1, `${r.stderr}\n${r.stdout}`);
      assert.match(r.stdout + r.stderr, /has no shaping proxies \(it was stood up with TOPAS_KUBE_SHAPING=off/);
      const down = await ws.topas('down', '--app', 'topas.yaml', '--backend', 'kubernetes', ...cluster());
      assert.equal(down.code, 0, down.stderr);
      await assertNothingLeft(runId);
    } finally {
      delete ws.env.TOPAS_KUBE_SHAPING;
    }
  });
});
