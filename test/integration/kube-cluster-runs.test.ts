import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { REPO_ROOT } from '../helpers/cli';
import { agentLeftovers, buildRunnerImage, kubeSkipReason, startKubeTestCluster, stopKubeTestCluster, until, type KubeTestCluster } from '../helpers/kube';
import type { Cluster } from '../../plugins/kubernetes/src/cluster';
import type { TestRunObject } from '../../plugins/kubernetes/src/testrun';

// Cluster mode as a user drives it: `topas test schedule --backend kubernetes`
// returns an id at once, `test logs --follow` streams the runner's lines while
// it runs (from this folder's record, and from the TestRun with --backend
// kubernetes), `test status` shows Running, then Passed; `--metrics-port`
// serves the run's metrics from what the TestRun reports; runs of one app wait
// for each other on the cluster (a Lease per app), whoever started them, and a
// holder that is gone does not block the queue.
const skip = kubeSkipReason();

const APP = ['name: queued', 'services:', '  - name: web', '    image: local/mock-app', '    version: "1.0.0"', '    port: 8080', '    ready: { http: /healthz, timeout: 60s }', ''].join('\n');
const TICKS = ['step("ticks", function()', '  for i = 1, 6 do', '    log.info("tick " .. i)', '    sleep("1s")', '  end', 'end)', ''].join('\n');
const HOLD = ['step("hold", function()', '  log.info("holding")', '  sleep(env("HOLD") or "8s")', 'end)', ''].join('\n');

interface Child {
  proc: ChildProcess;
  lines: Array<{ text: string; at: number }>;
  stderr: string;
  closed: Promise<number | null>;
}

describe('cluster mode: test schedule/logs/status, the queue per app, metrics', () => {
  if (skip) {
    test('needs the control-plane binaries', { skip }, () => {});
    return;
  }
  let kube: KubeTestCluster;
  let cluster: Cluster;
  let work: string;
  let env: NodeJS.ProcessEnv;
  const ns = `kcr-${process.pid}`;
  const children: ChildProcess[] = [];

  const cliArgs = (args: string[]) => [path.join(REPO_ROOT, 'bin', 'run.js'), ...args, '--kubeconfig', kube.cp.kubeconfig, '--namespace', ns];
  const start = (...args: string[]): Child => {
    const proc = spawn(process.execPath, cliArgs(args), { cwd: work, env, stdio: ['ignore', 'pipe', 'pipe'] });
    children.push(proc);
    const child: Child = { proc, lines: [], stderr: '', closed: new Promise((r) => proc.on('close', r)) };
    let partial = '';
    proc.stdout!.on('data', (c: Buffer) => {
      const parts = (partial + c.toString('utf8')).split('\n');
      partial = parts.pop() ?? '';
      for (const text of parts) child.lines.push({ text, at: Date.now() });
    });
    proc.stderr!.on('data', (c: Buffer) => (child.stderr += c));
    const timer = setTimeout(() => proc.kill('SIGKILL'), 600_000);
    void child.closed.then(() => clearTimeout(timer));
    return child;
  };
  const topas = async (...args: string[]) => {
    const t0 = Date.now();
    const c = start(...args);
    const code = await c.closed;
    return { code, stdout: c.lines.map((l) => l.text).join('\n'), stderr: c.stderr, ms: Date.now() - t0 };
  };
  const testRunsOfApp = async (): Promise<TestRunObject[]> => {
    const { TestRuns } = await import('../../plugins/kubernetes/src/testrun');
    return new TestRuns(cluster).list('topas.dev/app=queued').catch(() => []);
  };

  before(async () => {
    const runnerImage = buildRunnerImage();
    kube = await startKubeTestCluster(ns);
    const { connect } = await import('../../plugins/kubernetes/src/cluster');
    cluster = connect({ kubeconfig: kube.cp.kubeconfig, namespace: ns });
    work = fs.mkdtempSync(path.join(os.tmpdir(), 'kube-cluster-runs-'));
    fs.writeFileSync(path.join(work, 'topas.yaml'), APP);
    fs.writeFileSync(path.join(work, 'ticks.lua'), TICKS);
    fs.writeFileSync(path.join(work, 'hold.lua'), HOLD);
    const dataDir = path.join(work, 'data');
    fs.mkdirSync(dataDir);
    fs.writeFileSync(path.join(dataDir, 'package.json'), JSON.stringify({ private: true, oclif: { schema: 1, plugins: [{ type: 'link', name: 'topas-plugin-kubernetes', root: path.join(REPO_ROOT, 'plugins', 'kubernetes') }] } }));
    env = { ...process.env, TOPAS_DATA_DIR: dataDir, TMPDIR: work, NO_COLOR: '1', FORCE_COLOR: '0', TOPAS_RUNNER_IMAGE: runnerImage };
    delete env.KUBECONFIG;
  });

  after(async () => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    if (kube) {
      // nothing of the runs is left but the TestRuns kept as history (and the queue's Lease)
      const left = (await kube.core.listNamespacedConfigMap({ namespace: ns, labelSelector: 'app.kubernetes.io/managed-by=topas' })).items.map((c) => c.metadata?.name);
      assert.deepEqual(left, [], 'no run parent left');
      await until('the agent removed every container', async () => ((await agentLeftovers(kube.agent.nodeName)).containers.length === 0 ? true : undefined), 90_000).catch((e: Error) => process.stdout.write(`# ${e.message}\n`));
    }
    await stopKubeTestCluster(kube);
    if (work) fs.rmSync(work, { recursive: true, force: true });
  });

  test('schedule returns an id at once; logs --follow streams the runner\'s lines and ends with the run; status shows Running, then Passed; metrics on --metrics-port', async () => {
    const port = await freePort();
    const t0 = Date.now();
    const s = await topas('test', 'schedule', 'ticks.lua', '--app', 'topas.yaml', '--backend', 'kubernetes', '--metrics-port', String(port));
    assert.equal(s.code, 0, s.stderr);
    const id = s.stdout.trim();
    assert.match(id, /^\d{8}-\d{6}-/);
    assert.ok(s.ms < 20_000, `schedule took ${s.ms} ms`);

    const follower = start('test', 'logs', id, '--follow');
    const states: string[] = [];
    const scrapes: string[] = [];
    let done = false;
    const watchStatus = (async () => {
      while (!done) {
        const st = await topas('test', 'status', id, '--json');
        if (st.code === 0) states.push((JSON.parse(st.stdout) as { state: string }).state);
        await sleep(500);
      }
    })();
    const watchMetrics = (async () => {
      while (!done) {
        const body = await scrape(port).catch(() => undefined);
        if (body) scrapes.push(body);
        await sleep(200);
      }
    })();
    // once the runner logs, follow it from the cluster too (the TestRun, watched)
    await until('the first tick', async () => (follower.lines.some((l) => /tick 1/.test(l.text)) ? true : undefined), 400_000);
    const firstTickMs = follower.lines.find((l) => /tick 1/.test(l.text))!.at - t0;
    const clusterFollower = start('test', 'logs', id, '--follow', '--backend', 'kubernetes');

    const code = await follower.closed;
    const endedAt = Date.now();
    assert.equal(code, 0, follower.stderr);
    const ticks = follower.lines.filter((l) => /\[ticks\.lua\] tick \d/.test(l.text));
    assert.deepEqual(ticks.map((t) => /tick (\d)/.exec(t.text)![1]), ['1', '2', '3', '4', '5', '6']);
    // streamed while the runner ran, not printed at the end
    assert.ok(ticks[5].at - ticks[0].at >= 3000, `ticks arrived ${ticks[5].at - ticks[0].at} ms apart`);

    assert.equal(await clusterFollower.closed, 0, clusterFollower.stderr);
    const clusterTicks = clusterFollower.lines.filter((l) => /\[ticks\.lua\] tick \d/.test(l.text));
    assert.equal(clusterTicks.length, 6, clusterFollower.lines.map((l) => l.text).join('\n'));
    const clusterEndLagMs = clusterFollower.lines[clusterFollower.lines.length - 1].at - ticks[5].at;

    // the detached run is over once its record is final
    const final = await until('the record is final', async () => {
      const st = await topas('test', 'status', id, '--json');
      const j = JSON.parse(st.stdout) as { state: string; result: string; durationMs: number };
      return j.state === 'Pending' || j.state === 'Running' ? undefined : j;
    }, 120_000);
    done = true;
    await Promise.all([watchStatus, watchMetrics]);
    assert.equal(final.state, 'Passed', final.result);
    assert.equal(final.result, 'passed: 1/1 scenario(s) passed');
    assert.ok(final.durationMs > 6000, `duration ${final.durationMs}`);
    assert.ok(states.includes('Running'), `states seen: ${states.join(',')}`);

    // the cluster's view: the TestRun kept as history, by the same id
    const remote = await topas('test', 'status', id, '--backend', 'kubernetes', '--json');
    assert.equal(remote.code, 0, remote.stderr);
    const r = JSON.parse(remote.stdout) as { runId: string; state: string; result: string; durationMs: number; app: string };
    assert.deepEqual([r.runId, r.state, r.result, r.app], [id, 'Passed', 'passed: 1/1 scenario(s) passed', 'queued']);
    assert.ok(r.durationMs >= 6000, `runner duration ${r.durationMs}`);
    const list = await topas('test', 'status', '--backend', 'kubernetes');
    assert.equal(list.code, 0, list.stderr);
    assert.match(list.stdout, new RegExp(`${id}.*queued.*Passed`));

    // metrics: a runner was active while the ticks ran; the run ended passed
    const values = scrapes.map(parseMetrics);
    assert.ok(values.some((v) => v['topas_active_runners'] === 1), `no scrape saw an active runner (${scrapes.length} scrapes)`);
    const last = values.filter((v) => v['topas_runs_total{state="passed"}'] === 1).pop();
    assert.ok(last, `no scrape saw the passed run (${scrapes.length} scrapes; last: ${scrapes[scrapes.length - 1] ?? 'none'})`);
    assert.equal(last['topas_active_runners'], 0);
    assert.equal(last['topas_queue_depth'], 0);
    assert.equal(last['topas_test_duration_seconds_count'], 1);
    assert.ok(last['topas_test_duration_seconds_sum'] >= 6, `duration sum ${last['topas_test_duration_seconds_sum']}`);
    process.stdout.write(
      `# schedule returned in ${s.ms} ms; schedule to first runner line (tick 1) through \`test logs --follow\`: ${(firstTickMs / 1000).toFixed(1)} s; ` +
        `run ended to the cluster follower's last line: ${clusterEndLagMs} ms; local follower ended ${((endedAt - ticks[5].at) / 1000).toFixed(1)} s after tick 6; ${scrapes.length} metric scrapes\n`,
    );
  });

  test('two runs of one app from two processes: the second runner waits (TestRun Pending, `test status` Pending) until the first ended', async () => {
    const { TestRuns } = await import('../../plugins/kubernetes/src/testrun');
    const before = new Set((await testRunsOfApp()).map((t) => t.metadata!.name!));
    const a = start('run', 'hold.lua', '--app', 'topas.yaml', '--backend', 'kubernetes', '--env', 'HOLD=10s');
    const b = start('run', 'ticks.lua', '--app', 'topas.yaml', '--backend', 'kubernetes');
    const phases = new Map<string, string[]>();
    let pendingSeen: { name: string; runId: string; waitingFor: string; cli?: string; record?: string } | undefined;
    let done = false;
    const watcher = (async () => {
      while (!done) {
        for (const t of await testRunsOfApp()) {
          const name = t.metadata!.name!;
          if (before.has(name)) continue;
          const list = phases.get(name) ?? [];
          const phase = t.status?.phase ?? '-';
          if (list[list.length - 1] !== phase) list.push(phase);
          phases.set(name, list);
          if (phase === 'Pending' && t.status?.waitingFor && !pendingSeen) {
            pendingSeen = { name, runId: t.spec.runId, waitingFor: t.status.waitingFor };
            const st = await topas('test', 'status', t.spec.runId, '--backend', 'kubernetes', '--json');
            pendingSeen.cli = st.code === 0 ? (JSON.parse(st.stdout) as { state: string }).state : st.stderr;
            const local = await topas('test', 'status', t.spec.runId, '--json');
            pendingSeen.record = local.code === 0 ? (JSON.parse(local.stdout) as { state: string }).state : local.stderr;
          }
        }
        await sleep(300);
      }
    })();
    const [codeA, codeB] = await Promise.all([a.closed, b.closed]);
    done = true;
    await watcher;
    assert.equal(codeA, 0, a.stderr);
    assert.equal(codeB, 0, b.stderr);
    const runs = (await new TestRuns(cluster).list('topas.dev/app=queued')).filter((t) => !before.has(t.metadata!.name!));
    assert.equal(runs.length, 2, 'both TestRuns kept as history');
    const spans = runs.map((t) => ({ name: t.metadata!.name!, from: Date.parse(t.status!.startedAt!), to: Date.parse(t.status!.finishedAt!) })).sort((x, y) => x.from - y.from);
    assert.ok(spans[1].from >= spans[0].to, `the second runner started ${spans[1].from - spans[0].to} ms before the first ended`);
    assert.ok(pendingSeen, `no TestRun was seen Pending: ${JSON.stringify([...phases])}`);
    assert.equal(pendingSeen.name, spans[1].name, 'the one that waited ran second');
    assert.equal(pendingSeen.waitingFor, spans[0].name);
    assert.equal(pendingSeen.cli, 'Pending', '`test status --backend kubernetes` while it waited');
    assert.equal(pendingSeen.record, 'Pending', 'the local record while it waited');
    assert.deepEqual(phases.get(spans[1].name)?.filter((p) => p !== '-'), ['Pending', 'Running', 'Passed']);
    process.stdout.write(`# queue: first runner ended to second runner started: ${spans[1].from - spans[0].to} ms\n`);
  });

  test('a queue holder that is gone does not block: Ctrl-C of the holding run hands over at once; a silent holder loses the lease when it expires', async () => {
    const a = start('run', 'hold.lua', '--app', 'topas.yaml', '--backend', 'kubernetes', '--env', 'HOLD=300s');
    await until('the first run holds the queue', async () => ((await testRunsOfApp()).some((t) => t.status?.phase === 'Running' && !t.status.result) ? true : undefined), 300_000);
    const b = start('run', 'ticks.lua', '--app', 'topas.yaml', '--backend', 'kubernetes');
    const waiting = await until('the second run waits', async () => (await testRunsOfApp()).find((t) => t.status?.phase === 'Pending' && t.status.waitingFor), 300_000);
    const tInt = Date.now();
    a.proc.kill('SIGINT');
    assert.equal(await a.closed, 130, a.stderr);
    const running = await until('the second run got its turn', async () => {
      const t = (await testRunsOfApp()).find((x) => x.metadata!.name === waiting.metadata!.name);
      return t?.status?.startedAt ? Date.parse(t.status.startedAt) : undefined;
    }, 120_000);
    const handoverMs = running - tInt;
    assert.equal(await b.closed, 0, b.stderr);
    assert.ok(handoverMs < 30_000, `the waiting run started ${handoverMs} ms after Ctrl-C of the holder`);

    // a holder that stops renewing (its process frozen or killed) while its TestRun looks alive: the lease expires
    const { acquireAppQueue } = await import('../../plugins/kubernetes/src/run-queue');
    const { TestRuns, TESTRUN, TESTRUN_API_VERSION } = await import('../../plugins/kubernetes/src/testrun');
    const testRuns = new TestRuns(cluster);
    const ghost = 'ghost-holder';
    await testRuns.create({ apiVersion: TESTRUN_API_VERSION, kind: TESTRUN.kind, metadata: { name: ghost, namespace: ns }, spec: { app: 'silent', runId: ghost, configMap: '-', secret: '-', specFile: '-', cwd: '.', targets: [], parallel: 1, timeoutMs: 1000, continueOnFailure: false } });
    try {
      const held = await acquireAppQueue(cluster, 'silent', { testRun: ghost, pod: 'no-such-pod' }, { leaseS: 4, renewMs: 3_600_000 });
      assert.equal(held.waitedMs < 5000, true);
      const t1 = Date.now();
      let waitedBehind = '';
      const next = await acquireAppQueue(cluster, 'silent', { testRun: 'next', pod: 'p' }, { leaseS: 4, onWait: (h) => (waitedBehind = h.testRun) });
      const expiryMs = Date.now() - t1;
      assert.equal(waitedBehind, ghost);
      assert.ok(expiryMs >= 3500 && expiryMs < 15_000, `took over after ${expiryMs} ms`);
      // a released lease goes to the next waiter at its next look, not after expiry
      await next.release();
      const t2 = Date.now();
      const third = await acquireAppQueue(cluster, 'silent', { testRun: ghost, pod: 'no-such-pod' }, { leaseS: 60 });
      assert.ok(Date.now() - t2 < 3000);
      await third.release();
      await held.release();
      process.stdout.write(`# queue: Ctrl-C of the holder to the waiter's start ${handoverMs} ms; a silent holder (lease 4 s) lost the queue after ${expiryMs} ms\n`);
    } finally {
      await testRuns.delete(ghost);
    }
  });

  test('the holder\'s runner pod killed: the waiting run gets its turn, and the killed run\'s CLI says the runner failed (exit 3) instead of waiting', async () => {
    const a = start('run', 'hold.lua', '--app', 'topas.yaml', '--backend', 'kubernetes', '--env', 'HOLD=300s');
    const holder = await until('the first run holds the queue', async () => (await testRunsOfApp()).find((t) => t.status?.phase === 'Running' && !t.status.result), 300_000);
    const b = start('run', 'ticks.lua', '--app', 'topas.yaml', '--backend', 'kubernetes');
    const waiting = await until('the second run waits', async () => (await testRunsOfApp()).find((t) => t.status?.phase === 'Pending' && t.status.waitingFor === holder.metadata!.name), 300_000);
    const pod = (await kube.core.listNamespacedPod({ namespace: ns, labelSelector: `job-name=${holder.metadata!.name}` })).items[0];
    assert.ok(pod, 'the holder has a runner pod');
    const tKill = Date.now();
    await kube.core.deleteNamespacedPod({ name: pod.metadata!.name!, namespace: ns, gracePeriodSeconds: 0, body: { gracePeriodSeconds: 0 } });
    const started = await until('the second run got its turn', async () => {
      const t = (await testRunsOfApp()).find((x) => x.metadata!.name === waiting.metadata!.name);
      return t?.status?.startedAt ? Date.parse(t.status.startedAt) : undefined;
    }, 120_000);
    const codeA = await a.closed;
    const failedAfterMs = Date.now() - tKill;
    assert.equal(codeA, 3, a.stderr);
    assert.match(a.stderr, /runner/i);
    assert.equal(await b.closed, 0, b.stderr);
    assert.ok(started - tKill < 30_000, `the waiting run started ${started - tKill} ms after the holder's pod was killed`);
    process.stdout.write(`# queue: holder's runner pod killed to the waiter's start ${started - tKill} ms; the killed run's CLI ended (exit 3) ${failedAfterMs} ms after the kill\n`);
  });
});

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
  });
}

function scrape(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path: '/metrics', timeout: 2000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => (res.statusCode === 200 ? resolve(body) : reject(new Error(`HTTP ${res.statusCode}`))));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
  });
}

/** `name{labels} value` lines of the exposition format, by name with labels. */
function parseMetrics(body: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const line of body.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const i = line.lastIndexOf(' ');
    out[line.slice(0, i)] = Number(line.slice(i + 1));
  }
  return out;
}
