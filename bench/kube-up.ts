/**
 * The kubernetes backend's figures for issue 15: control-plane start, and
 * `topas up` / `topas down` of the quickstart (PostgreSQL StatefulSet + its
 * initSQL Job, then 2 api pods) on it, pods run by the tests' node agent.
 *
 *   node dist/bench/kube-up.js [rounds=3]
 *
 * Each round starts a fresh control plane (scripts/kube-control-plane.sh
 * start: etcd, kube-apiserver, controller-manager, scheduler, incl. its PKI),
 * a node agent and a namespace, then runs the CLI as a child process:
 * `topas up` (process start to exit, every pod Ready) and `topas down` (until
 * nothing with the run label remains). Needs the binaries in
 * /var/cache/topas/kube (`scripts/kube-control-plane.sh build`) and the
 * fixture images (local/mock-app, local/postgres). Nothing is asserted.
 */
import { kubeCliWorkspace, kubeSkipReason, startAgent, startControlPlane } from '../test/helpers/kube';
import * as k8s from '@kubernetes/client-node';
import os from 'node:os';
import path from 'node:path';

const REPO_ROOT = path.resolve(__dirname, '..', '..');
const QUICKSTART = path.join(REPO_ROOT, 'fixtures', 'quickstart', 'topas.yaml');

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

async function round(i: number): Promise<{ controlPlane: number; up: number; down: number }> {
  const cp = startControlPlane();
  const ws = kubeCliWorkspace(QUICKSTART, 'bench-kube-up-');
  const agent = await startAgent(cp.kc);
  try {
    const ns = `bench-${process.pid}-${i}`;
    const core = cp.kc.makeApiClient(k8s.CoreV1Api);
    await core.createNamespace({ body: { metadata: { name: ns } } });
    const flags = ['--backend', 'kubernetes', '--kubeconfig', cp.kubeconfig, '--namespace', ns];
    // the namespace's default ServiceAccount comes from the controller-manager; pods wait for it
    for (let t = 0; t < 120; t++) {
      if (await core.readNamespacedServiceAccount({ name: 'default', namespace: ns }).then(() => true, () => false)) break;
      await new Promise((r) => setTimeout(r, 250));
    }
    const up = await ws.topas('up', '--app', ws.appFile, ...flags);
    if (up.code !== 0) throw new Error(`topas up failed (${up.code}):\n${up.stderr}`);
    const down = await ws.topas('down', '--app', ws.appFile, ...flags);
    if (down.code !== 0) throw new Error(`topas down failed (${down.code}):\n${down.stderr}`);
    return { controlPlane: cp.startMs, up: up.ms, down: down.ms };
  } finally {
    await agent.stop().catch(() => {});
    cp.stop();
    ws.cleanup();
  }
}

async function main(): Promise<void> {
  const skip = kubeSkipReason();
  if (skip) {
    process.exitCode = 1;
    return;
  }
  const rounds = Math.max(1, Number(process.argv[2] ?? 3) || 3);
  const rows: Array<{ controlPlane: number; up: number; down: number }> = [];
  for (let i = 0; i < rounds; i++) {
    const r = await round(i);
    rows.push(r);
    process.stdout.write(`round ${i + 1}: control plane ${(r.controlPlane / 1000).toFixed(1)} s, topas up ${(r.up / 1000).toFixed(1)} s, topas down ${(r.down / 1000).toFixed(1)} s\n`);
  }
  const m = (k: 'controlPlane' | 'up' | 'down') => (median(rows.map((r) => r[k])) / 1000).toFixed(1);
  process.stdout.write(`median of ${rounds}: control plane ${m('controlPlane')} s, topas up of the quickstart ${m('up')} s, topas down ${m('down')} s (CLI process start to exit; load average ${os.loadavg()[0].toFixed(1)})\n`);
}

main().catch((err: Error) => {
  process.stderr.write(`${err.stack ?? err.message}\n`);
  process.exitCode = 1;
});
