import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import Docker from 'dockerode';
import { REPO_ROOT } from '../helpers/cli';
import { agentLeftovers, buildRunnerImage, kubeSkipReason, labelledObjects, startKubeTestCluster, stopKubeTestCluster, until, type KubeTestCluster } from '../helpers/kube';
import { serveGitRepo, type GitHttpRepo } from '../helpers/git-http';
import type { TestRunObject, TestRuns as TestRunsType } from '../../plugins/kubernetes/src/testrun';

// A schedule from a Git repository over http(s) runs, at every firing, the
// branch's newest commit: the runner pod fetches it itself (isomorphic-git),
// nothing of the repository travels in the ConfigMap, the credentials of the
// URL only in the Secret. The repository is served by `git http-backend`
// from this process, on the node agent's network gateway (where its pods
// reach the host). A branch gone by the time of a firing fails the TestRun
// with a message `test status` and `test logs` show.
const skip = kubeSkipReason();

const APP = ['name: gitapp', 'services:', '  - name: web', '    image: local/mock-app', '    version: "1.0.0"', '    port: 8080', '    ready: { http: /healthz, timeout: 60s }', ''].join('\n');
const scenario = (label: string) => [`step("${label}", function()`, `  log.info("ran ${label}")`, 'end)', ''].join('\n');
const AUTH = { username: 'ci', password: 'tok-3141592653' };

describe('test schedule --cron --git http(s) on kubernetes: each firing fetches the ref\'s newest commit in the runner pod', () => {
  if (skip) {
    test('needs the control-plane binaries', { skip }, () => {});
    return;
  }
  let kube: KubeTestCluster;
  let testRuns: TestRunsType;
  let repo: GitHttpRepo;
  let work: string;
  let env: NodeJS.ProcessEnv;
  const ns = `kg-${process.pid}`;

  const topas = (...args: string[]) =>
    new Promise<{ code: number | null; stdout: string; stderr: string; ms: number }>((resolve) => {
      const t0 = Date.now();
      const child = spawn(process.execPath, [path.join(REPO_ROOT, 'bin', 'run.js'), ...args, '--kubeconfig', kube.cp.kubeconfig, '--namespace', ns], { cwd: work, env });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (c: Buffer) => (stdout += c));
      child.stderr.on('data', (c: Buffer) => (stderr += c));
      const timer = setTimeout(() => child.kill('SIGKILL'), 300_000);
      child.on('close', (code) => {
        clearTimeout(timer);
        resolve({ code, stdout, stderr, ms: Date.now() - t0 });
      });
    });

  /** What the schedule would start now (`kubectl create job --from=cronjob/ID`), until its TestRun has a result. */
  const fire = async (id: string, jobName: string): Promise<{ tr: TestRunObject; ms: number }> => {
    const cron = await kube.batch.readNamespacedCronJob({ name: id, namespace: ns });
    // a CRD the CLI just installed: its list may answer 429 (storage initializing) for a moment
    const seen = new Set(await until('the TestRuns can be listed', () => testRuns.names(`topas.dev/schedule=${id}`), 30_000));
    const t0 = Date.now();
    await kube.batch.createNamespacedJob({ namespace: ns, body: { metadata: { name: jobName, labels: cron.spec?.jobTemplate.metadata?.labels }, spec: cron.spec!.jobTemplate.spec! } });
    const tr = await until(
      `the TestRun of Job ${jobName} has a result`,
      async () => (await testRuns.list(`topas.dev/schedule=${id}`)).find((t) => !seen.has(t.metadata!.name!) && t.status?.result),
      400_000,
    );
    return { tr, ms: Date.now() - t0 };
  };

  before(async () => {
    const runnerImage = buildRunnerImage();
    kube = await startKubeTestCluster(ns);
    const { connect } = await import('../../plugins/kubernetes/src/cluster');
    const { TestRuns } = await import('../../plugins/kubernetes/src/testrun');
    testRuns = new TestRuns(connect({ kubeconfig: kube.cp.kubeconfig, namespace: ns }));
    work = fs.mkdtempSync(path.join(os.tmpdir(), 'kube-git-'));
    // the node agent's network: its gateway is the host as the pods' containers see it
    const net = (await new Docker().getNetwork(kube.agent.network).inspect()) as { IPAM?: { Config?: Array<{ Gateway?: string }> } };
    const gateway = net.IPAM?.Config?.find((c) => c.Gateway)?.Gateway;
    assert.ok(gateway, `network ${kube.agent.network} has a gateway`);
    repo = await serveGitRepo({ root: path.join(work, 'git'), host: gateway, auth: AUTH });
    const dataDir = path.join(work, 'data');
    fs.mkdirSync(dataDir);
    fs.writeFileSync(path.join(dataDir, 'package.json'), JSON.stringify({ private: true, oclif: { schema: 1, plugins: [{ type: 'link', name: 'topas-plugin-kubernetes', root: path.join(REPO_ROOT, 'plugins', 'kubernetes') }] } }));
    // the host's git cache in the test's folder
    env = { ...process.env, TOPAS_DATA_DIR: dataDir, TMPDIR: work, XDG_CACHE_HOME: path.join(work, 'cache'), NO_COLOR: '1', FORCE_COLOR: '0', TOPAS_RUNNER_IMAGE: runnerImage };
    delete env.KUBECONFIG;
    delete env.TOPAS_GIT_TOKEN;
  });

  after(async () => {
    await repo?.close();
    await stopKubeTestCluster(kube);
    if (work) fs.rmSync(work, { recursive: true, force: true });
  });

  test('two firings with a push between: the second runs the new commit; each TestRun names its commit; the token only in the Secret; a branch gone: a failed TestRun that says so; nothing left', async () => {
    const c1 = repo.commit({ 'e2e/topas.yaml': APP, 'e2e/tests/check.lua': scenario('commit one'), 'e2e/data/big.txt': 'x'.repeat(900 * 1024) }, 'one');
    execFileSync('git', ['push', '-q', path.join(work, 'git', 'tests.git'), 'HEAD:refs/heads/feature'], { cwd: repo.work });
    const url = repo.url.replace('http://', `http://${AUTH.username}:${AUTH.password}@`);
    const s = await topas('test', 'schedule', 'tests', '--git', url, '--git-path', 'e2e', '--git-ref', 'main', '--backend', 'kubernetes', '--cron', '0 0 1 1 *', '--json');
    assert.equal(s.code, 0, s.stderr);
    assert.doesNotMatch(s.stderr, /commit .* fetched now/, 'an http(s) source is not pinned');
    const { id } = JSON.parse(s.stdout) as { id: string };
    try {
      // the repository (900 KiB: more than a ConfigMap carries) is not in the ConfigMap; the token is in no plain object
      const cron = await kube.batch.readNamespacedCronJob({ name: id, namespace: ns });
      const cm = await kube.core.readNamespacedConfigMap({ name: id, namespace: ns });
      const plain = JSON.stringify([cron, cm]);
      assert.doesNotMatch(plain, new RegExp(AUTH.password));
      assert.equal(Object.keys(cm.binaryData ?? {}).length, 0, 'no files travel: the app spec is in the repository');
      const run = JSON.parse(cm.data!['run.json']) as { git: { url: string; ref: string; commit?: string; targets: string[] }; specFile: string };
      assert.deepEqual([run.git.url, run.git.ref, run.git.commit, run.git.targets, run.specFile], [repo.url, 'main', undefined, ['e2e/tests'], 'repo/e2e/topas.yaml']);
      const secret = await kube.core.readNamespacedSecret({ name: id, namespace: ns });
      assert.deepEqual(JSON.parse(Buffer.from(secret.data!['git-auth.json'], 'base64').toString('utf8')), AUTH);

      const one = await fire(id, `${id}-a`);
      assert.equal(one.tr.status?.phase, 'Passed', JSON.stringify(one.tr.status?.result?.error ?? one.tr.status?.log?.slice(-10)));
      assert.equal(one.tr.status?.git?.commit, c1);
      assert.deepEqual(one.tr.status?.steps?.map((st) => st.name), ['commit one']);

      const c2 = repo.commit({ 'e2e/tests/check.lua': scenario('commit two') }, 'two');
      assert.notEqual(c2, c1);
      const two = await fire(id, `${id}-b`);
      assert.equal(two.tr.status?.phase, 'Passed', JSON.stringify(two.tr.status?.result?.error ?? two.tr.status?.log?.slice(-10)));
      assert.equal(two.tr.status?.git?.commit, c2, 'the second firing ran the newest commit of main');
      assert.deepEqual(two.tr.status?.steps?.map((st) => st.name), ['commit two']);
      const fetchLine = two.tr.status?.log?.find((l) => /^git: fetched/.test(l.message));
      assert.ok(fetchLine, 'the fetch is in the log');
      assert.match(fetchLine.message, new RegExp(`at ${c2} in \\d+ ms`));
      assert.doesNotMatch(JSON.stringify(two.tr), new RegExp(AUTH.password));
      // the server asks (401) before a client sends credentials; every request with them was served
      const withAuth = repo.requests.filter((r) => r.authorized);
      assert.ok(withAuth.length >= 4 && withAuth.every((r) => r.status < 400), JSON.stringify(repo.requests));

      const st = await topas('test', 'status', two.tr.spec.runId, '--backend', 'kubernetes', '--json');
      assert.equal(st.code, 0, st.stderr);
      const j = JSON.parse(st.stdout) as { state: string; result: string; git: { commit: string } };
      assert.equal(j.state, 'Passed');
      assert.equal(j.git.commit, c2);
      assert.equal(j.result, `passed: 1/1 scenario(s) passed (git ${c2.slice(0, 12)})`);
      process.stdout.write(`# firing to result: ${(one.ms / 1000).toFixed(1)} s, ${(two.ms / 1000).toFixed(1)} s; the pod's fetch (900 KiB repo): ${two.tr.status?.git?.fetchMs} ms, ${one.tr.status?.git?.fetchMs} ms\n`);
    } finally {
      await kube.batch.deleteNamespacedCronJob({ name: id, namespace: ns, body: { propagationPolicy: 'Background' } }).catch(() => undefined);
      for (const j of [`${id}-a`, `${id}-b`]) await kube.batch.deleteNamespacedJob({ name: j, namespace: ns, body: { propagationPolicy: 'Background' } }).catch(() => undefined);
      for (const name of await testRuns.names(`topas.dev/schedule=${id}`)) await testRuns.delete(name);
    }

    // (b) a schedule of branch `feature`, which is deleted before the firing
    const sf = await topas('test', 'schedule', 'tests', '--git', url, '--git-path', 'e2e', '--git-ref', 'feature', '--backend', 'kubernetes', '--cron', '0 0 1 1 *', '--json');
    assert.equal(sf.code, 0, sf.stderr);
    const idf = (JSON.parse(sf.stdout) as { id: string }).id;
    execFileSync('git', ['push', '-q', path.join(work, 'git', 'tests.git'), ':refs/heads/feature'], { cwd: repo.work });
    try {
      const bad = await fire(idf, `${idf}-a`);
      assert.equal(bad.tr.status?.phase, 'Error');
      assert.match(bad.tr.status?.message ?? '', /git: ref feature not found in http:\/\/[0-9.]+:\d+\/tests\.git/);
      assert.equal((bad.tr.status?.result?.error as { code?: string }).code, 'GIT_FETCH_FAILED');
      const st = await topas('test', 'status', bad.tr.spec.runId, '--backend', 'kubernetes', '--json');
      assert.equal(st.code, 0, st.stderr);
      const j = JSON.parse(st.stdout) as { state: string; result: string };
      assert.equal(j.state, 'Error');
      assert.match(j.result, /ref feature not found/);
      const logs = await topas('test', 'logs', bad.tr.spec.runId, '--backend', 'kubernetes');
      assert.match(`${logs.stdout}${logs.stderr}`, /ref feature not found/);
      assert.doesNotMatch(`${JSON.stringify(bad.tr)}${logs.stdout}${logs.stderr}`, new RegExp(AUTH.password));
    } finally {
      await kube.batch.deleteNamespacedCronJob({ name: idf, namespace: ns, body: { propagationPolicy: 'Background' } }).catch(() => undefined);
      await kube.batch.deleteNamespacedJob({ name: `${idf}-a`, namespace: ns, body: { propagationPolicy: 'Background' } }).catch(() => undefined);
      for (const name of await testRuns.names(`topas.dev/schedule=${idf}`)) await testRuns.delete(name);
    }

    // a file:// source (as ssh://): fetched here, its files in the ConfigMap; the CLI says once that every firing runs this commit
    const sl = await topas('test', 'schedule', 'tests', '--git', `file://${path.join(work, 'git', 'tests.git')}`, '--git-path', 'e2e', '--backend', 'kubernetes', '--cron', '0 0 1 1 *', '--json');
    assert.equal(sl.code, 0, sl.stderr);
    const idl = (JSON.parse(sl.stdout) as { id: string }).id;
    try {
      const notes = sl.stderr.split('\n').filter((l) => /every scheduled run runs commit [0-9a-f]{12}, fetched now/.test(l));
      assert.equal(notes.length, 1, sl.stderr);
      assert.match(notes[0], /not an http\(s\) URL/);
      const cm = await kube.core.readNamespacedConfigMap({ name: idl, namespace: ns });
      const run = JSON.parse(cm.data!['run.json']) as { git?: unknown };
      assert.equal(run.git, undefined);
      assert.ok((JSON.parse(cm.data!['index.json']) as Array<{ path: string }>).some((f) => f.path.endsWith('e2e/tests/check.lua')), cm.data!['index.json']);
    } finally {
      await kube.batch.deleteNamespacedCronJob({ name: idl, namespace: ns, body: { propagationPolicy: 'Background' } }).catch(() => undefined);
    }

    // (c) nothing of either schedule remains: CronJob, its ConfigMap and Secret (garbage collected), Jobs, pods, TestRuns, the SUTs the firings stood up
    for (const sid of [id, idf, idl]) {
      await until(`nothing labelled topas.dev/schedule=${sid}`, async () => ((await labelledObjects(kube.cp.kc, ns, `topas.dev/schedule=${sid}`)).length === 0 ? true : undefined), 90_000);
    }
    // the app's queue Lease stays by design (one per app and namespace)
    assert.deepEqual((await labelledObjects(kube.cp.kc, ns, 'topas.dev/app=gitapp')).filter((o) => !o.startsWith('Lease/')), []);
    await until('the agent removed every container', async () => ((await agentLeftovers(kube.agent.nodeName)).containers.length === 0 ? true : undefined), 90_000);
  });

  test('topas run --backend kubernetes --git: the runner pod fetches the commit the CLI validated; the run record and the TestRun name it', async () => {
    const c3 = repo.commit({ 'e2e/tests/check.lua': scenario('commit three') }, 'three');
    const url = repo.url.replace('http://', `http://${AUTH.username}:${AUTH.password}@`);
    const r = await topas('run', 'tests', '--git', url, '--git-path', 'e2e', '--git-ref', 'main', '--backend', 'kubernetes', '--reporter', `json:${path.join(work, 'run.json')}`);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, new RegExp(`git: fetched ${repo.url.replace(/[.]/g, '\\.')} main at ${c3} in \\d+ ms`));
    assert.doesNotMatch(`${r.stdout}${r.stderr}`, new RegExp(AUTH.password));
    const report = JSON.parse(fs.readFileSync(path.join(work, 'run.json'), 'utf8')) as { runId: string; state: string; results: Array<{ steps: Array<{ name: string }> }> };
    assert.equal(report.state, 'passed');
    assert.deepEqual(report.results[0].steps.map((st) => st.name), ['commit three']);
    // the TestRun stays as history: it names the commit the pod fetched, which is the one the CLI validated
    const tr = (await testRuns.list(`topas.dev/test-run=${report.runId}`))[0];
    assert.ok(tr, 'the TestRun of the run');
    assert.equal(tr.spec.git?.commit, c3);
    assert.equal(tr.status?.git?.commit, c3);
    assert.doesNotMatch(JSON.stringify(tr), new RegExp(AUTH.password));
    // the run record (next to the app spec, in the host's checkout) names it too, without the credentials
    const records = execFileSync('find', [path.join(work, 'cache'), '-path', `*/.topas/runs/${report.runId}/run.json`], { encoding: 'utf8' }).trim().split('\n').filter(Boolean);
    assert.equal(records.length, 1, 'one run record');
    const record = JSON.parse(fs.readFileSync(records[0], 'utf8')) as { git?: { url: string; ref: string; commit: string } };
    assert.deepEqual(record.git, { url: repo.url, ref: 'main', path: 'e2e', commit: c3 });
    await testRuns.delete(tr.metadata!.name!);
    assert.deepEqual(await labelledObjects(kube.cp.kc, ns, `topas.dev/test-run=${report.runId}`), []);
    process.stdout.write(`# topas run --git on kubernetes: ${(r.ms / 1000).toFixed(1)} s in all; the pod's fetch ${tr.status?.git?.fetchMs} ms\n`);
  });
});
