import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as k8s from '@kubernetes/client-node';
import type { NodeAgent } from '../../plugins/kubernetes/test-support/node-agent';
import { REPO_ROOT } from '../helpers/cli';
import { agentLeftovers, buildRunnerImage, kubeSkipReason, startAgent, startControlPlane, until, type ControlPlane } from '../helpers/kube';

// Cluster mode end to end: `topas run --backend kubernetes` stands the
// quickstart up on a real control plane (pods run by the tests' node agent),
// runs the scenarios in a runner Job (the topas-runner image: the single
// executable) that reports through a TestRun's status, and the CLI renders
// the usual reports and exit codes from what it reads through the API server.
// Nothing here sends traffic from the host to a pod or Service IP.
const skip = kubeSkipReason();
const QUICKSTART = path.join(REPO_ROOT, 'fixtures', 'quickstart');

describe('topas run --backend kubernetes: scenarios in a runner Job, reported through a TestRun', () => {
  if (skip) {
    test('needs the control-plane binaries', { skip }, () => {});
    return;
  }
  let cp: ControlPlane;
  let agent: NodeAgent;
  let work: string;
  let env: NodeJS.ProcessEnv;
  const ns = `kr-${process.pid}`;

  const topasArgs = (...args: string[]) => [path.join(REPO_ROOT, 'bin', 'run.js'), ...args, '--kubeconfig', cp.kubeconfig, '--namespace', ns];
  // asynchronous: the node agent runs in this process and must go on serving while topas runs
  const topas = (...args: string[]) =>
    new Promise<{ code: number | null; stdout: string; stderr: string; ms: number }>((resolve) => {
      const t0 = Date.now();
      const child = spawn(process.execPath, topasArgs(...args), { cwd: work, env });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (c: Buffer) => (stdout += c));
      child.stderr.on('data', (c: Buffer) => (stderr += c));
      const timer = setTimeout(() => child.kill('SIGKILL'), 600_000);
      child.on('close', (code) => {
        clearTimeout(timer);
        resolve({ code, stdout, stderr, ms: Date.now() - t0 });
      });
    });

  /** Nothing with this run's label is left, and no container the agent made for it. */
  const assertNothingLeft = async (runId: string) => {
    const { remaining } = await import('../../plugins/kubernetes/src/kube-sut');
    const { connect } = await import('../../plugins/kubernetes/src/cluster');
    assert.deepEqual(await remaining(connect({ kubeconfig: cp.kubeconfig, namespace: ns }), runId), []);
    await until('the agent removed every container', async () => ((await agentLeftovers(agent.nodeName)).containers.length === 0 ? true : undefined), 60_000);
  };

  const runRecord = (runId: string) => JSON.parse(fs.readFileSync(path.join(work, '.topas', 'runs', runId, 'run.json'), 'utf8')) as { state: string; exitCode: number };

  before(async () => {
    const runnerImage = buildRunnerImage();
    cp = startControlPlane();
    process.stdout.write(`# control plane up in ${(cp.startMs / 1000).toFixed(1)} s\n`);
    agent = await startAgent(cp.kc);
    const core = cp.kc.makeApiClient(k8s.CoreV1Api);
    await core.createNamespace({ body: { metadata: { name: ns } } });
    await until('the default ServiceAccount', () => core.readNamespacedServiceAccount({ name: 'default', namespace: ns }));
    work = fs.mkdtempSync(path.join(os.tmpdir(), 'kube-run-'));
    fs.cpSync(QUICKSTART, work, { recursive: true });
    fs.writeFileSync(
      path.join(work, 'tests', 'failing.lua'),
      ['local net = require("net")', 'step("version is 9.9.9", function()', '  local r = net.get("http://api/version")', '  check("version is 9.9.9", r:json().version == "9.9.9")', 'end)', ''].join('\n'),
    );
    fs.writeFileSync(path.join(work, 'slow.lua'), ['step("wait", function()', '  log.info("waiting")', '  sleep("60s")', 'end)', ''].join('\n'));
    const dataDir = path.join(work, 'data');
    fs.mkdirSync(dataDir);
    fs.writeFileSync(path.join(dataDir, 'package.json'), JSON.stringify({ private: true, oclif: { schema: 1, plugins: [{ type: 'link', name: 'topas-plugin-kubernetes', root: path.join(REPO_ROOT, 'plugins', 'kubernetes') }] } }));
    env = { ...process.env, TOPAS_DATA_DIR: dataDir, TMPDIR: work, NO_COLOR: '1', TOPAS_RUNNER_IMAGE: runnerImage };
    delete env.KUBECONFIG;
  });

  after(async () => {
    await agent?.stop();
    cp?.stop();
    if (work) fs.rmSync(work, { recursive: true, force: true });
  });

  test('topas kube install: the TestRun CRD and the runner RBAC', async () => {
    const r = await topas('kube', 'install', '--json');
    assert.equal(r.code, 0, r.stderr);
    assert.equal(JSON.parse(r.stdout).crd, 'testruns.topas.dev');
    const ext = cp.kc.makeApiClient(k8s.ApiextensionsV1Api);
    const crd = await ext.readCustomResourceDefinition({ name: 'testruns.topas.dev' });
    assert.ok(crd.spec.versions[0].subresources?.status, 'status subresource');
    const rbac = cp.kc.makeApiClient(k8s.RbacAuthorizationV1Api);
    await rbac.readNamespacedRoleBinding({ name: 'topas-runner', namespace: ns });
    await cp.kc.makeApiClient(k8s.CoreV1Api).readNamespacedServiceAccount({ name: 'topas-runner', namespace: ns });
  });

  test('the quickstart passes end to end on --backend kubernetes; nothing of the run remains', async () => {
    const r = await topas('run', 'tests/quickstart.lua', '--app', 'topas.yaml', '--backend', 'kubernetes', '--reporter', 'table', '--reporter', 'json:report.json');
    assert.equal(r.code, 0, `${r.stderr}\n${r.stdout}`);
    const report = JSON.parse(fs.readFileSync(path.join(work, 'report.json'), 'utf8')) as { runId: string; state: string; backend: string; results: Array<{ name: string; state: string; steps: Array<{ name: string; state: string }> }> };
    assert.equal(report.state, 'passed');
    assert.equal(report.backend, 'kubernetes');
    assert.deepEqual(
      report.results[0].steps.map((s) => [s.name, s.state]),
      [
        ['seed users', 'passed'],
        ['read users over HTTP', 'passed'],
        ['create a user through the API', 'passed'],
        ['upgrade api to 1.1.0', 'passed'],
      ],
    );
    // the scenario's log line came back through the TestRun
    assert.match(r.stderr, /\[tests\/quickstart\.lua\] api version before: 1\.0\.0/);
    assert.match(r.stdout, /tests\/quickstart\.lua/);
    assert.equal(runRecord(report.runId).state, 'passed');
    const up = /app quickstart is up on backend kubernetes in (\S+)/.exec(r.stderr);
    const first = /runner Job created to first step: (\d+) ms/.exec(r.stderr);
    process.stdout.write(`# quickstart on the cluster: stand-up (topas up part of the run) ${up?.[1] ?? '?'}; runner Job created to first step ${first ? `${(Number(first[1]) / 1000).toFixed(1)} s` : '?'}; whole run ${(r.ms / 1000).toFixed(1)} s\n`);
    await assertNothingLeft(report.runId);
    // its TestRun stays as history, no longer owned by the run nor labelled with its SUT
    const { connect } = await import('../../plugins/kubernetes/src/cluster');
    const { TestRuns } = await import('../../plugins/kubernetes/src/testrun');
    const kept = await new TestRuns(connect({ kubeconfig: cp.kubeconfig, namespace: ns })).find(report.runId);
    assert.equal(kept?.status?.phase, 'Passed');
    assert.deepEqual(kept?.metadata?.ownerReferences ?? [], []);
  });

  test('a failing scenario: exit code 1 and a JUnit report with the failure', async () => {
    const r = await topas('run', 'tests/failing.lua', '--app', 'topas.yaml', '--backend', 'kubernetes', '--reporter', 'junit:junit.xml', '--reporter', 'json:failing.json');
    assert.equal(r.code, 1, `${r.stderr}\n${r.stdout}`);
    const junit = fs.readFileSync(path.join(work, 'junit.xml'), 'utf8');
    assert.match(junit, /<testsuites[^>]*failures="1"/);
    assert.match(junit, /version is 9\.9\.9/);
    const report = JSON.parse(fs.readFileSync(path.join(work, 'failing.json'), 'utf8')) as { runId: string; state: string };
    assert.equal(report.state, 'failed');
    await assertNothingLeft(report.runId);
  });

  test("test schedule --cron: a CronJob with that schedule; a Job made from it stands the app up in the cluster, passes and records a TestRun", async () => {
    const r = await topas('test', 'schedule', 'tests/quickstart.lua', '--app', 'topas.yaml', '--backend', 'kubernetes', '--cron', '*/15 * * * *', '--json');
    assert.equal(r.code, 0, `${r.stderr}\n${r.stdout}`);
    const { id } = JSON.parse(r.stdout) as { id: string };
    const batch = cp.kc.makeApiClient(k8s.BatchV1Api);
    const core = cp.kc.makeApiClient(k8s.CoreV1Api);
    const cron = await batch.readNamespacedCronJob({ name: id, namespace: ns });
    assert.equal(cron.spec?.schedule, '*/15 * * * *');
    assert.equal(cron.spec?.concurrencyPolicy, 'Forbid');
    const container = cron.spec?.jobTemplate.spec?.template.spec?.containers[0];
    assert.deepEqual(container?.command, ['topas', 'kube', 'runner', '--schedule', id]);
    assert.match(container?.image ?? '', /^topas-runner:/);

    // what the schedule would start, now (as `kubectl create job --from=cronjob/...`): the runner stands the quickstart up itself
    const t0 = Date.now();
    const { connect } = await import('../../plugins/kubernetes/src/cluster');
    const { TestRuns } = await import('../../plugins/kubernetes/src/testrun');
    const testRuns = new TestRuns(connect({ kubeconfig: cp.kubeconfig, namespace: ns }));
    try {
      await batch.createNamespacedJob({ namespace: ns, body: { metadata: { name: `${id}-now`, labels: cron.spec?.jobTemplate.metadata?.labels }, spec: cron.spec!.jobTemplate.spec! } });
      const outcome = await until(
        'the scheduled run finished',
        async () => {
          const finished = (await testRuns.list(`topas.dev/schedule=${id}`)).find((t) => t.status?.result);
          if (finished) return { done: finished, crash: '' };
          const job = await batch.readNamespacedJob({ name: `${id}-now`, namespace: ns });
          if ((job.status?.failed ?? 0) === 0) return undefined;
          // failed without a result: the runner's last lines say why
          const pod = (await core.listNamespacedPod({ namespace: ns, labelSelector: `job-name=${id}-now` })).items[0];
          return { done: undefined, crash: pod ? String(await core.readNamespacedPodLog({ name: pod.metadata!.name!, namespace: ns, tailLines: 20 })) : 'no pod' };
        },
        400_000,
      );
      assert.ok(outcome.done, `the scheduled runner failed without a result:\n${outcome.crash}`);
      const done = outcome.done;
      assert.equal(done.status?.phase, 'Passed', JSON.stringify(done.status?.result?.error ?? done.status?.log?.slice(-10)));
      process.stdout.write(`# scheduled run (the runner stands the quickstart up in the cluster, runs it, tears it down): ${((Date.now() - t0) / 1000).toFixed(1)} s from Job creation to its TestRun's result\n`);
    } finally {
      await batch.deleteNamespacedJob({ name: `${id}-now`, namespace: ns, body: { propagationPolicy: 'Background' } }).catch(() => undefined);
      await batch.deleteNamespacedCronJob({ name: id, namespace: ns, body: { propagationPolicy: 'Background' } });
      for (const name of await testRuns.names(`topas.dev/schedule=${id}`)) await testRuns.delete(name);
    }
    // the CronJob owns its ConfigMap and Secret: the garbage collector removes them; the scheduled run removed its SUT
    await until('the schedule\'s ConfigMap and Secret are gone', async () => {
      const cms = await core.listNamespacedConfigMap({ namespace: ns, labelSelector: `topas.dev/schedule=${id}` });
      const secrets = await core.listNamespacedSecret({ namespace: ns, labelSelector: `topas.dev/schedule=${id}` });
      return cms.items.length + secrets.items.length === 0 ? true : undefined;
    }, 60_000);
    assert.deepEqual((await core.listNamespacedConfigMap({ namespace: ns, labelSelector: 'app.kubernetes.io/managed-by=topas' })).items.map((c) => c.metadata?.name), []);
    await until('the agent removed every container', async () => ((await agentLeftovers(agent.nodeName)).containers.length === 0 ? true : undefined), 90_000);
  });

  test('Ctrl-C while the runner runs: exit 130, the TestRun, the Job and the SUT are deleted', async () => {
    const t0 = Date.now();
    const child = spawn(process.execPath, topasArgs('run', 'slow.lua', '--app', 'topas.yaml', '--backend', 'kubernetes'), { cwd: work, env });
    let stderr = '';
    child.stderr.on('data', (c: Buffer) => (stderr += c));
    const closed = new Promise<number | null>((resolve) => child.on('close', resolve));
    await until('the runner started the scenario', async () => (/\[slow\.lua\] waiting/.test(stderr) ? true : undefined), 300_000);
    child.kill('SIGINT');
    const code = await Promise.race([closed, new Promise<null>((r) => setTimeout(() => r(null), 180_000).unref())]);
    assert.equal(code, 130, stderr);
    const runs = fs.readdirSync(path.join(work, '.topas', 'runs')).filter((id) => runRecord(id).state === 'interrupted');
    assert.equal(runs.length, 1, 'one interrupted run recorded');
    await assertNothingLeft(runs[0]);
    const { connect } = await import('../../plugins/kubernetes/src/cluster');
    const { TestRuns } = await import('../../plugins/kubernetes/src/testrun');
    const cluster = connect({ kubeconfig: cp.kubeconfig, namespace: ns });
    // an interrupted run keeps no TestRun (those of the runs before it stay as history)
    assert.deepEqual(await new TestRuns(cluster).names(`topas.dev/test-run=${runs[0]}`), []);
    assert.deepEqual((await cluster.batch.listNamespacedJob({ namespace: ns })).items.map((j) => j.metadata?.name), []);
    process.stdout.write(`# interrupted run: ${((Date.now() - t0) / 1000).toFixed(1)} s from start to everything gone\n`);
  });
});
