import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as k8s from '@kubernetes/client-node';
import Docker from 'dockerode';
import { POD_LABEL, type NodeAgent } from '../../plugins/kubernetes/test-support/node-agent';
import { REPO_ROOT } from '../helpers/cli';
import { agentLeftovers, kubeSkipReason, startAgent, startControlPlane, until, type ControlPlane, buildRunnerImage } from '../helpers/kube';

// `topas load --backend kubernetes --workers 3` (issue 16, the cluster half):
// the fixture app stood up on a real control plane (pods run by the tests'
// node agent as Docker containers), the load workers an Indexed Job of the
// runner image, every message (init, start, snapshots, stop) through the API
// server, and the host merging their histograms into one summary. Nothing
// here sends traffic from the host to a pod or Service IP.
const skip = kubeSkipReason();
const RATE = 300;
const DURATION_S = 10;
const PLANNED = RATE * DURATION_S;
const KILL_AT_MS = 5000;

describe('topas load --backend kubernetes: an Indexed Job of load worker pods, messages through the API server', () => {
  if (skip) {
    test('needs the control-plane binaries', { skip }, () => {});
    return;
  }
  let cp: ControlPlane;
  let agent: NodeAgent;
  let work: string;
  let env: NodeJS.ProcessEnv;
  const ns = `kl-${process.pid}`;

  const topasArgs = (...args: string[]) => [path.join(REPO_ROOT, 'bin', 'run.js'), ...args, '--kubeconfig', cp.kubeconfig, '--namespace', ns];
  const topas = (args: string[], onStderr?: (text: string, child: ChildProcess) => void) =>
    new Promise<{ code: number | null; stdout: string; stderr: string; ms: number }>((resolve) => {
      const t0 = Date.now();
      // asynchronous: the node agent runs in this process and must go on serving while topas runs
      const child = spawn(process.execPath, topasArgs(...args), { cwd: work, env });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (c: Buffer) => (stdout += c));
      child.stderr.on('data', (c: Buffer) => {
        stderr += c;
        onStderr?.(stderr, child);
      });
      const timer = setTimeout(() => child.kill('SIGKILL'), 400_000);
      child.on('close', (code) => {
        clearTimeout(timer);
        resolve({ code, stdout, stderr, ms: Date.now() - t0 });
      });
    });

  /** Nothing with the run's label is left (LoadRuns included), and no container the agent made for it. */
  const assertNothingLeft = async (runId: string) => {
    const { remaining } = await import('../../plugins/kubernetes/src/kube-sut');
    const { connect } = await import('../../plugins/kubernetes/src/cluster');
    const { LoadRuns } = await import('../../plugins/kubernetes/src/loadrun');
    const { runSelector } = await import('../../plugins/kubernetes/src/manifests');
    const cluster = connect({ kubeconfig: cp.kubeconfig, namespace: ns });
    assert.deepEqual(await remaining(cluster, runId), []);
    // owned by the run's parent: the garbage collector takes what the CLI did not delete itself
    await until('no LoadRun of the run', async () => ((await new LoadRuns(cluster).names(runSelector(runId))).length === 0 ? true : undefined), 30_000);
    await until('the agent removed every container', async () => ((await agentLeftovers(agent.nodeName)).containers.length === 0 ? true : undefined), 60_000);
  };

  before(async () => {
    const image = buildRunnerImage();
    cp = startControlPlane();
    process.stdout.write(`# control plane up in ${(cp.startMs / 1000).toFixed(1)} s\n`);
    agent = await startAgent(cp.kc);
    const core = cp.kc.makeApiClient(k8s.CoreV1Api);
    await core.createNamespace({ body: { metadata: { name: ns } } });
    await until('the default ServiceAccount', () => core.readNamespacedServiceAccount({ name: 'default', namespace: ns }));
    work = fs.mkdtempSync(path.join(os.tmpdir(), 'kube-load-'));
    fs.writeFileSync(
      path.join(work, 'topas.yaml'),
      ['name: loadk', 'services:', '  - name: api', '    image: local/mock-app', '    version: "1.0.0"', '    port: 8080', '    replicas: 2', '    ready: { http: /healthz, timeout: 60s }', ''].join('\n'),
    );
    // the script reaches the service by its name (inside the pods, its Service's DNS name); a module and a data file
    // next to it reach the pods with it
    fs.mkdirSync(path.join(work, 'load', 'lib'), { recursive: true });
    fs.writeFileSync(path.join(work, 'load', 'lib', 'paths.lua'), 'return { fixed = "/fixed" }\n');
    fs.writeFileSync(path.join(work, 'load', 'targets.csv'), 'service\napi\n');
    fs.writeFileSync(
      path.join(work, 'load', 'load.lua'),
      [
        'local net = require("net")',
        'local paths = require("lib.paths")',
        'local targets = data.csv("targets.csv", { header = true })',
        'options = { thresholds = { http_req_failed = { "rate<0.01" } } }',
        // setup and teardown reach the SUT by its name too: they run in a worker pod, not on the host
        'function setup()',
        '  local r = net.get("http://api/healthz")',
        '  assert(r.code == 200, "setup could not reach api: " .. tostring(r.code))',
        '  return { token = "tok-" .. r.code }',
        'end',
        'function iteration(ctx)',
        '  local r = net.get("http://" .. targets[1].service .. paths.fixed)',
        '  check("status 200", r.code == 200)',
        '  check("ctx.data from setup", ctx.data ~= nil and ctx.data.token == "tok-200")',
        'end',
        'function teardown(data)',
        '  local r = net.get("http://api/healthz")',
        '  print("teardown: " .. data.token .. ", api answered " .. r.code)',
        'end',
        '',
      ].join('\n'),
    );
    const dataDir = path.join(work, 'data');
    fs.mkdirSync(dataDir);
    fs.writeFileSync(path.join(dataDir, 'package.json'), JSON.stringify({ private: true, oclif: { schema: 1, plugins: [{ type: 'link', name: 'topas-plugin-kubernetes', root: path.join(REPO_ROOT, 'plugins', 'kubernetes') }] } }));
    env = { ...process.env, TOPAS_DATA_DIR: dataDir, TMPDIR: work, NO_COLOR: '1', FORCE_COLOR: '0', TOPAS_RUNNER_IMAGE: image };
    delete env.KUBECONFIG;
  });

  after(async () => {
    await agent?.stop();
    cp?.stop();
    if (work) fs.rmSync(work, { recursive: true, force: true });
  });

  const ARGS = ['load', 'load/load.lua', '--app', 'topas.yaml', '--backend', 'kubernetes', '--workers', '3', '--rate', `${RATE}/s`, '--duration', `${DURATION_S}s`, '--max-vus', '600', '--json'];

  const figures = (stderr: string) => /kubernetes: load workers: (.*)/.exec(stderr)?.[1] ?? '(no figures)';

  test(`${RATE}/s for ${DURATION_S}s on 3 worker pods: every iteration, none dropped, one merged summary; nothing of the run remains`, async () => {
    const r = await topas(ARGS);
    assert.equal(r.code, 0, `${r.stderr}\n${r.stdout}`);
    const s = JSON.parse(r.stdout);
    const count = s.metrics.iterations.values.count;
    const dropped = s.metrics.dropped_iterations?.values.count ?? 0;
    process.stdout.write(`# ${RATE}/s x ${DURATION_S}s on 3 pods: ${count} iterations (${(count / DURATION_S).toFixed(1)}/s), ${dropped} dropped, http_reqs ${s.metrics.http_reqs?.values.count}, p95 ${s.metrics.http_req_duration?.values['p(95)']} ms; ${figures(r.stderr)}; whole command ${(r.ms / 1000).toFixed(1)} s\n`);
    const record = JSON.parse(fs.readFileSync(path.join(work, '.topas', 'runs', s.runId, 'run.json'), 'utf8'));
    const points = record.load.timeSeries.points as Array<{ achievedRate: number; dropped?: number }>;
    process.stdout.write(`#   per second: ${points.map((p) => `${p.achievedRate}${p.dropped ? `(-${p.dropped})` : ''}`).join(' ')}\n`);
    assert.equal(s.state, 'passed');
    assert.match(r.stderr, /Indexed Job of 3 load worker pods/);
    assert.match(r.stderr, /on 3 worker pods \(pod loadk-load-[0-9a-f]{6}-0-\w+, pod loadk-load-[0-9a-f]{6}-1-\w+, pod loadk-load-[0-9a-f]{6}-2-\w+\)/);
    assert.ok(Math.abs(count - PLANNED) <= PLANNED * 0.02, `${count} iterations of ${PLANNED}`);
    assert.equal(dropped, 0);
    assert.equal(s.metrics.http_req_failed?.values.rate ?? 0, 0);
    // setup's value reached every VU of every pod; setup's and teardown's requests are not load
    assert.equal(s.metrics.checks?.values.rate, 1, JSON.stringify(s.metrics.checks));
    assert.equal(s.metrics.http_reqs?.values.count, count);
    assert.match(r.stderr, /teardown: tok-200, api answered 200/);
    // the per-second series (the CLI's seconds) adds up to the total: one view of three workers
    assert.equal(record.load.timeSeries.points.reduce((n: number, p: { achievedRate: number }) => n + p.achievedRate, 0), count);
    await assertNothingLeft(s.runId);
  });

  /** The container of worker `index`'s pod, as the node agent runs it. */
  const workerContainer = async (index: number) => {
    const docker = new Docker();
    const all = await docker.listContainers({ filters: { label: [`${POD_LABEL}`] } });
    return all.find((c) => new RegExp(`^${ns}/loadk-load-[0-9a-f]{6}-${index}-`).test(c.Labels[POD_LABEL] ?? ''));
  };

  for (const requireAll of [false, true]) {
    test(`killing worker 1's container at ${KILL_AT_MS / 1000}s${requireAll ? ' with --require-all-workers: exit 1' : ': partial, 2/3 of the rate from then, exit 0'}`, async () => {
      let startedAt = 0;
      let killed: Promise<void> | undefined;
      const r = await topas(requireAll ? [...ARGS, '--require-all-workers'] : ARGS, (text) => {
        if (startedAt || !/on 3 worker pods/.test(text)) return;
        // the CLI tells the workers to start 1 s after this line
        startedAt = Date.now() + 1000;
        killed = (async () => {
          await new Promise((res) => setTimeout(res, 1000 + KILL_AT_MS));
          const c = await workerContainer(1);
          assert.ok(c, 'worker 1 runs in a container of the node agent');
          await new Docker().getContainer(c.Id).kill();
        })();
      });
      await killed;
      const s = JSON.parse(r.stdout);
      process.stdout.write(`# killed worker 1's container at ${KILL_AT_MS} ms${requireAll ? ' (--require-all-workers)' : ''}: exit ${r.code}, state ${s.state}, ${s.metrics.iterations.values.count} iterations, ${s.metrics.dropped_iterations?.values.count ?? 0} dropped, lost ${JSON.stringify(s.lost)}; ${figures(r.stderr)}\n`);
      assert.equal(s.lost?.length, 1, r.stderr);
      assert.equal(s.lost[0].worker, 1);
      assert.equal(s.lost[0].workers, 3);
      assert.match(s.lost[0].label, /^pod loadk-load-[0-9a-f]{6}-1-/);
      // found gone within ~2 s of the kill (the node agent reports the exit, the watch brings it)
      assert.ok(s.lost[0].atMs >= KILL_AT_MS - 500 && s.lost[0].atMs <= KILL_AT_MS + 3000, JSON.stringify(s.lost));
      assert.match(s.lostWorkers[0], /1\/3 of the rate \(iterations k with k % 3 = 1, ~100\/s\)/);
      if (requireAll) {
        assert.equal(r.code, 1, r.stderr);
        assert.equal(s.state, 'error');
      } else {
        assert.equal(r.code, 0, r.stderr);
        assert.equal(s.state, 'partial');
        const count = s.metrics.iterations.values.count + (s.metrics.dropped_iterations?.values.count ?? 0);
        // two thirds of the whole run, and the lost third up to its last report
        const expected = (PLANNED * 2) / 3 + (PLANNED / 3) * (s.lost[0].keptUntilMs / (DURATION_S * 1000));
        assert.ok(Math.abs(count - expected) <= PLANNED * 0.03, `${count} iterations, expected ~${Math.round(expected)}`);
      }
      await assertNothingLeft(s.runId);
    });
  }

  test('the LoadRun shows the progress while the load runs; Ctrl-C mid-run: exit 130 and everything the run made is deleted', async () => {
    let sent = false;
    let status: Promise<{ phase?: string; iterations?: number; workers?: Array<{ pod?: string; state: string; messages: number }> }> | undefined;
    const objects = cp.kc.makeApiClient(k8s.CustomObjectsApi);
    const r = await topas(ARGS, (text, child) => {
      if (sent || !/on 3 worker pods/.test(text)) return;
      sent = true;
      // the status is written at the pace of the workers' reports: look until it shows all three at work
      // (within the 10 s load), then interrupt
      status = (async () => {
        const t0 = Date.now();
        let st: { phase?: string; iterations?: number; workers?: Array<{ pod?: string; state: string; messages: number }> } = {};
        while (Date.now() - t0 < 8000) {
          await new Promise((res) => setTimeout(res, 500));
          const list = (await objects.listNamespacedCustomObject({ group: 'topas.dev', version: 'v1alpha1', plural: 'loadruns', namespace: ns })) as { items: Array<{ status?: never }> };
          st = list.items[0]?.status ?? {};
          if (st.phase === 'Running' && (st.iterations ?? 0) > 0 && st.workers?.length === 3 && st.workers.every((w) => w.state === 'running' && w.messages > 0)) break;
        }
        child.kill('SIGINT');
        return st;
      })();
    });
    const st = await status!;
    process.stdout.write(`# LoadRun status during the load: ${JSON.stringify(st)}\n`);
    assert.equal(st.phase, 'Running');
    assert.ok((st.iterations ?? 0) > 0, `iterations ${st.iterations}`);
    assert.deepEqual(st.workers?.map((w) => w.state), ['running', 'running', 'running']);
    assert.ok(st.workers?.every((w) => /^loadk-load-[0-9a-f]{6}-\d-\w+$/.test(w.pod ?? '') && w.messages > 0), JSON.stringify(st.workers));
    assert.equal(r.code, 130, r.stderr);
    const runId = /run (\S+)/.exec(r.stderr)?.[1];
    const s = r.stdout.trim() ? JSON.parse(r.stdout) : undefined;
    const id = s?.runId ?? runId;
    assert.ok(id, r.stderr);
    await assertNothingLeft(id);
  });

  test('Ctrl-C while the worker pods start (before the readiness barrier): exit 130, nothing of the run remains', async () => {
    let sent = false;
    const r = await topas(ARGS, (text, child) => {
      if (sent || !/Indexed Job of 3 load worker pods/.test(text)) return;
      sent = true;
      child.kill('SIGINT');
    });
    assert.equal(r.code, 130, r.stderr);
    const id = (r.stdout.trim() ? JSON.parse(r.stdout) : {}).runId ?? /run (\S+)/.exec(r.stderr)?.[1];
    assert.ok(id, r.stderr);
    await assertNothingLeft(id);
  });
});
