import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { REPO_ROOT } from '../helpers/cli';
import { agentLeftovers, buildRunnerImage, kubeCliWorkspace, kubeSkipReason, runObjects, startKubeTestCluster, stopKubeTestCluster, until, type KubeCliWorkspace, type KubeTestCluster } from '../helpers/kube';

// Shaping on a cluster beyond a service's latency (kube-shape.test.ts has
// that): `topas run --backend kubernetes` stands up api (the mock app) and db
// (PostgreSQL, api's `${db.url}` names its shaping proxy), each with a proxy
// Deployment; from the runner pod the scenarios slow db (the runner's own SQL
// and api's queries), fault api's HTTP answers, limit its bandwidth, and a
// playbook's declarative `shaping:` step slows api on a signal.
const skip = kubeSkipReason();
const FIXTURE = path.join(REPO_ROOT, 'fixtures', 'kube-shape-db');

interface Report {
  runId: string;
  state: string;
  results: Array<{ name: string; state: string; error?: { message: string }; steps: Array<{ name: string; state: string; durationMs: number; error?: { message: string } }> }>;
  playbooks?: Array<{ name: string; state: string }>;
}

/** The RESULT line `name` of the scenarios, as key=value pairs. */
function result(out: string, name: string): Record<string, number> {
  const line = out.split('\n').find((l) => l.includes(`RESULT ${name} `));
  assert.ok(line, `no RESULT ${name} line in:\n${out}`);
  return Object.fromEntries([...line.matchAll(/(\w+)=([\d.]+)/g)].map((m) => [m[1], Number(m[2])]));
}

describe('shaping a database, HTTP faults, bandwidth and a playbook\'s shaping: on the kubernetes backend', () => {
  if (skip) {
    test('needs the control-plane binaries', { skip }, () => {});
    return;
  }
  let kube: KubeTestCluster;
  let ws: KubeCliWorkspace;
  const ns = `ksd-${process.pid}`;
  const cluster = () => ['--backend', 'kubernetes', '--kubeconfig', kube.cp.kubeconfig, '--namespace', ns];
  const report = (file: string) => JSON.parse(fs.readFileSync(path.join(ws.work, file), 'utf8')) as Report;

  /** Nothing with the run's label, and no container of the agent's, remains. */
  const assertNothingLeft = async (runId: string) => {
    await until('nothing with the run label remains', async () => ((await runObjects(kube.cp.kc, ns, runId)).length === 0 ? true : undefined), 60_000).catch(async () => {
      assert.deepEqual(await runObjects(kube.cp.kc, ns, runId), []);
    });
    await until('the agent removed every container', async () => ((await agentLeftovers(kube.agent.nodeName)).containers.length === 0 ? true : undefined), 90_000);
  };

  before(async () => {
    buildRunnerImage();
    kube = await startKubeTestCluster(ns);
    ws = kubeCliWorkspace(path.join(FIXTURE, 'topas.yaml'), 'kube-shape-db-');
    fs.cpSync(path.join(FIXTURE, 'tests'), path.join(ws.work, 'tests'), { recursive: true });
    for (const f of ['shaped-playbook.yaml', 'pb-client.lua']) fs.copyFileSync(path.join(FIXTURE, f), path.join(ws.work, f));
  });

  after(async () => {
    await stopKubeTestCluster(kube);
    ws?.cleanup();
  });

  test('topas run: latency on db slows the runner\'s SQL and api\'s queries; http_fault fails the configured share of api\'s answers; bandwidth stretches a download; reset clears each; nothing remains', async (t) => {
    const r = await ws.topas('run', 'tests/db-latency.lua', 'tests/http-fault.lua', 'tests/bandwidth.lua', '--app', 'topas.yaml', ...cluster(), '--reporter', 'json:report.json');
    const out = `${r.stderr}\n${r.stdout}`;
    const rep = fs.existsSync(path.join(ws.work, 'report.json')) ? report('report.json') : undefined;
    const failures = (rep?.results ?? []).flatMap((x) => x.steps.filter((s) => s.state !== 'passed').map((s) => `${x.name} / ${s.name}: ${s.error?.message}`));
    assert.equal(r.code, 0, `${failures.join('\n')}\n${out}`);

    // the runner's SQL, from the steps' durations: 20 queries each
    const steps = Object.fromEntries(rep!.results.find((x) => x.name.includes('db-latency'))!.steps.map((s) => [s.name, s.durationMs]));
    // each step also takes api's p50 (11 requests): that part is measured in the scenario itself and taken off
    const db = result(out, 'kube-db-latency');
    const perQuery = (step: string, apiMs: number) => (steps[step] - 11 * apiMs) / 20;
    const base = perQuery('sql unshaped', db.api_base_p50_ms);
    const shaped = perQuery('sql shaped', db.api_shaped_p50_ms);
    const afterReset = perQuery('sql after reset', db.api_after_reset_p50_ms);
    t.diagnostic(`db latency 100 ms: runner SQL ~${base.toFixed(1)} -> ${shaped.toFixed(1)} ms a query (+${(shaped - base).toFixed(1)}), after reset ${afterReset.toFixed(1)}; api /api/users p50 ${db.api_base_p50_ms} -> ${db.api_shaped_p50_ms} ms (+${db.api_delta_ms}), after reset ${db.api_after_reset_p50_ms}`);
    // unshaped: the lower of before and after (a slow moment of the shared machine in one of them is not the shape)
    const unshaped = Math.min(base, afterReset);
    assert.ok(shaped - unshaped > 90 && shaped - unshaped < 150, `runner SQL per query: ${base} -> ${shaped} ms, after reset ${afterReset} (steps ${JSON.stringify(steps)})`);
    assert.ok(afterReset < base + 20, `runner SQL after reset: ${afterReset} ms a query (before: ${base})`);

    const fault = result(out, 'kube-http-fault');
    t.diagnostic(`http_fault 503 at rate 0.5: ${fault.failed}/${fault.total} answered 503 (${((100 * fault.failed) / fault.total).toFixed(1)}%), other ${fault.other}; after reset ${fault.after_reset_failed}/${fault.after_reset_total}`);
    const bw = result(out, 'kube-bandwidth');
    t.diagnostic(`bandwidth 2mbit, 1 MB: ${bw.unshaped_ms} ms unshaped -> ${bw.shaped_ms} ms shaped (4000 expected), ${bw.after_reset_ms} ms after reset`);
    // the runner's shape lines came back through the TestRun
    assert.match(out, /shape: db -> latency 100ms/);
    assert.match(out, /shape: api -> .*503/);
    assert.equal(rep!.state, 'passed');
    await assertNothingLeft(rep!.runId);
  });

  test('a playbook with a `shaping:` section, run with --backend kubernetes: its step slows api on the client\'s signal; nothing remains', async (t) => {
    const r = await ws.topas('run', 'shaped-playbook.yaml', ...cluster(), '--reporter', 'json:playbook.json');
    const out = `${r.stderr}\n${r.stdout}`;
    assert.equal(r.code, 0, out);
    const pb = result(out, 'kube-playbook-shaping');
    t.diagnostic(`playbook shaping on "slow-api" (200 ms): api p50 ${pb.base_p50_ms} -> ${pb.shaped_p50_ms} ms (first slowed request ${pb.first_slowed_ms} ms), after reset ${pb.after_reset_p50_ms}`);
    // the shape change of the step (the client itself only resets), from the runner pod through the TestRun
    assert.match(out, /shape: api -> latency 200ms/);
    const rep = report('playbook.json');
    assert.equal(rep.state, 'passed');
    assert.equal(rep.playbooks?.[0]?.state, 'passed');
    await assertNothingLeft(rep.runId);
  });
});
