import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as k8s from '@kubernetes/client-node';
import Docker from 'dockerode';
import { REPO_ROOT } from './cli';
import { AGENT_LABEL, NodeAgent } from '../../plugins/kubernetes/test-support/node-agent';

const SCRIPT = path.join(REPO_ROOT, 'scripts', 'kube-control-plane.sh');
const BINARIES = ['etcd', 'kube-apiserver', 'kube-controller-manager', 'kube-scheduler'];

function cacheDirs(): string[] {
  if (process.env.TOPAS_KUBE_CACHE) return [process.env.TOPAS_KUBE_CACHE];
  return ['/var/cache/topas/kube', path.join(process.env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache'), 'topas', 'kube')];
}

/** Why the cluster tests cannot run here (the control-plane binaries are not built), else undefined. */
export function kubeSkipReason(): string | undefined {
  for (const dir of cacheDirs()) if (BINARIES.every((b) => fs.existsSync(path.join(dir, b)))) return undefined;
  const reason = `no control-plane binaries in ${cacheDirs().join(' or ')}: build them with \`scripts/kube-control-plane.sh build\` (~8-11 min)`;
  process.stdout.write(`# kubernetes tests skipped: ${reason}\n`);
  return reason;
}

export interface ControlPlane {
  kubeconfig: string;
  runDir: string;
  kc: k8s.KubeConfig;
  startMs: number;
  stop(): void;
}

/** `scripts/kube-control-plane.sh start`: a fresh control plane on free ports with a private run dir. */
export function startControlPlane(): ControlPlane {
  const t0 = Date.now();
  const r = spawnSync('bash', [SCRIPT, 'start'], { encoding: 'utf8', env: process.env, timeout: 300_000 });
  if (r.status !== 0) throw new Error(`control plane did not start (exit ${r.status}):\n${r.stderr}`);
  const startMs = Date.now() - t0;
  const kubeconfig = r.stdout.trim().split('\n').pop()!;
  const kc = new k8s.KubeConfig();
  kc.loadFromFile(kubeconfig);
  const runDir = path.dirname(kubeconfig);
  return {
    kubeconfig,
    runDir,
    kc,
    startMs,
    stop() {
      spawnSync('bash', [SCRIPT, 'stop', runDir], { encoding: 'utf8', stdio: 'inherit', timeout: 60_000 });
    },
  };
}

export async function startAgent(kc: k8s.KubeConfig): Promise<NodeAgent> {
  const agent = new NodeAgent({ kubeconfig: kc, log: (l) => process.stderr.write(`# node-agent: ${l}\n`) });
  try {
    await agent.start();
  } catch (err) {
    await agent.stop().catch(() => {});
    throw err;
  }
  return agent;
}

/** Containers (any state) and networks the agent labelled. */
export async function agentLeftovers(nodeName: string): Promise<{ containers: string[]; networks: string[] }> {
  const docker = new Docker();
  const filters = { label: [`${AGENT_LABEL}=${nodeName}`] };
  const [containers, networks] = await Promise.all([docker.listContainers({ all: true, filters }), docker.listNetworks({ filters })]);
  return { containers: containers.map((c) => c.Names[0]), networks: networks.map((n) => n.Name) };
}

/** Polls `check` until it returns a value (not undefined), or fails after `timeoutMs` with `what`. */
export async function until<T>(what: string, check: () => Promise<T | undefined>, timeoutMs = 120_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v !== undefined) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`${what}: not reached within ${timeoutMs} ms${last ? ` (last error: ${(last as Error).message})` : ''}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}
