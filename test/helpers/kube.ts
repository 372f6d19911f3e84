import { execFile, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as https from 'node:https';
import * as os from 'node:os';
import * as path from 'node:path';
import * as k8s from '@kubernetes/client-node';
import Docker from 'dockerode';
import { REPO_ROOT } from './cli';
import { AGENT_LABEL, NodeAgent, POD_LABEL } from '../../plugins/kubernetes/test-support/node-agent';
import { poll } from '../../plugins/kubernetes/src/wait';

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
    // the node lifecycle controller may taint a new Node not-ready before it sees the agent's Ready status, and lifts the taint a moment later
    const core = kc.makeApiClient(k8s.CoreV1Api);
    await until('the agent\'s Node without taints', async () => ((await core.readNode({ name: agent.nodeName })).spec?.taints ?? []).length === 0 || undefined, 60_000);
  } catch (err) {
    await agent.stop().catch(() => {});
    throw err;
  }
  return agent;
}

/** Containers (any state) and networks the agent labelled; with `podPrefix` (`<ns>/<pod name start>`), only the containers of those pods. */
export async function agentLeftovers(nodeName: string, podPrefix?: string): Promise<{ containers: string[]; networks: string[] }> {
  const docker = new Docker();
  const filters = { label: [`${AGENT_LABEL}=${nodeName}`] };
  const [containers, networks] = await Promise.all([docker.listContainers({ all: true, filters }), docker.listNetworks({ filters })]);
  const mine = podPrefix === undefined ? containers : containers.filter((c) => (c.Labels[POD_LABEL] ?? '').startsWith(podPrefix));
  return { containers: mine.map((c) => c.Names[0]), networks: networks.map((n) => n.Name) };
}

/** Polls `check` until it returns a value (not undefined), or fails after `timeoutMs` with `what`; errors count as "not yet". */
export function until<T>(what: string, check: () => Promise<T | undefined>, timeoutMs = 120_000): Promise<T> {
  return poll(check, {
    timeoutMs,
    retryErrors: true,
    onTimeout: (last) => new Error(`${what}: not reached within ${timeoutMs} ms${last ? ` (last error: ${(last as Error).message})` : ''}`),
  });
}

/** A fresh control plane, the tests' node agent, and a namespace of the test's own (its default ServiceAccount made). */
export interface KubeTestCluster {
  cp: ControlPlane;
  agent: NodeAgent;
  core: k8s.CoreV1Api;
  apps: k8s.AppsV1Api;
  batch: k8s.BatchV1Api;
  ns: string;
}

export async function startKubeTestCluster(ns: string): Promise<KubeTestCluster> {
  const cp = startControlPlane();
  process.stdout.write(`# control plane up in ${(cp.startMs / 1000).toFixed(1)} s (script start, incl. PKI)\n`);
  let agent: NodeAgent | undefined;
  try {
    const core = cp.kc.makeApiClient(k8s.CoreV1Api);
    agent = await startAgent(cp.kc);
    await core.createNamespace({ body: { metadata: { name: ns } } });
    await until('the default ServiceAccount', () => core.readNamespacedServiceAccount({ name: 'default', namespace: ns }));
    return { cp, agent, core, apps: cp.kc.makeApiClient(k8s.AppsV1Api), batch: cp.kc.makeApiClient(k8s.BatchV1Api), ns };
  } catch (err) {
    await agent?.stop().catch(() => {});
    cp.stop();
    throw err;
  }
}

export async function stopKubeTestCluster(c: KubeTestCluster | undefined): Promise<void> {
  if (!c) return;
  await c.agent.stop();
  c.cp.stop();
}

export interface TopasResult {
  code: number | null;
  stdout: string;
  stderr: string;
  ms: number;
}

/**
 * A private work dir for `topas` as a child process against the cluster: a copy
 * of the spec (`topas up` records .topas/state.json next to it) and a data dir
 * in which the plugin is linked as `topas plugins link` would (oclif reads linked
 * plugins from there). KUBECONFIG is unset: the cluster comes from the flags.
 */
export interface KubeCliWorkspace {
  work: string;
  appFile: string;
  env: NodeJS.ProcessEnv;
  /** asynchronous: the node agent runs in the test's process and must go on serving while topas runs */
  topas(...args: string[]): Promise<TopasResult>;
  /** the child itself, for tests that signal it */
  spawnTopas(args: string[]): ChildProcess;
  cleanup(): void;
}

export function kubeCliWorkspace(specFile: string, prefix = 'kube-cli-'): KubeCliWorkspace {
  const work = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  const appFile = path.join(work, path.basename(specFile));
  fs.copyFileSync(specFile, appFile);
  const dataDir = path.join(work, 'data');
  fs.mkdirSync(dataDir);
  fs.writeFileSync(path.join(dataDir, 'package.json'), JSON.stringify({ private: true, oclif: { schema: 1, plugins: [{ type: 'link', name: 'topas-plugin-kubernetes', root: path.join(REPO_ROOT, 'plugins', 'kubernetes') }] } }));
  const env: NodeJS.ProcessEnv = { ...process.env, TOPAS_DATA_DIR: dataDir, TMPDIR: work, NO_COLOR: '1' };
  delete env.KUBECONFIG;
  const bin = path.join(REPO_ROOT, 'bin', 'run.js');
  return {
    work,
    appFile,
    env,
    topas: async (...args: string[]) => {
      const t0 = Date.now();
      const r = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
        execFile(process.execPath, [bin, ...args], { cwd: work, env, encoding: 'utf8', timeout: 300_000 }, (err, stdout, stderr) =>
          resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
        );
      });
      return { ...r, ms: Date.now() - t0 };
    },
    spawnTopas: (args: string[]) => spawn(process.execPath, [bin, ...args], { cwd: work, env, stdio: ['ignore', 'pipe', 'pipe'] }),
    cleanup: () => fs.rmSync(work, { recursive: true, force: true }),
  };
}

/**
 * `Kind/name` of every object in the namespace that carries the run's label, of
 * every namespaced kind the API server lists (found by discovery, not the
 * plugin's own list of kinds, so what the plugin forgets shows up too).
 */
export function runObjects(kc: k8s.KubeConfig, ns: string, runId: string): Promise<string[]> {
  return labelledObjects(kc, ns, `topas.dev/run=${runId}`);
}

/** The same for any label selector, e.g. `topas.dev/app=<app>` when the run id is not known (a start that failed). */
export async function labelledObjects(kc: k8s.KubeConfig, ns: string, labelSelector: string): Promise<string[]> {
  const selector = encodeURIComponent(labelSelector);
  const groups = (await getJson<{ groups: Array<{ preferredVersion: { groupVersion: string } }> }>(kc, '/apis')).groups;
  const versions = ['/api/v1', ...groups.map((g) => `/apis/${g.preferredVersion.groupVersion}`)];
  const out: string[] = [];
  for (const gv of versions) {
    const resources = (await getJson<{ resources: Array<{ name: string; kind: string; namespaced: boolean; verbs: string[] }> }>(kc, gv)).resources;
    for (const r of resources) {
      if (!r.namespaced || r.name.includes('/') || !r.verbs.includes('list')) continue;
      const list = await getJson<{ items: Array<{ metadata: { name: string } }> }>(kc, `${gv}/namespaces/${ns}/${r.name}?labelSelector=${selector}`);
      out.push(...list.items.map((i) => `${r.kind}/${i.metadata.name}`));
    }
  }
  return out.sort();
}

/** GET on the API server with the kubeconfig's credentials (127.0.0.1: the test's own control plane). */
async function getJson<T>(kc: k8s.KubeConfig, urlPath: string): Promise<T> {
  const opts: https.RequestOptions = {};
  await kc.applyToHTTPSOptions(opts);
  const url = new URL(urlPath, kc.getCurrentCluster()!.server);
  return new Promise<T>((resolve, reject) => {
    const req = https.get(url, { ...opts, timeout: 30_000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => {
        if ((res.statusCode ?? 0) >= 300) reject(new Error(`GET ${urlPath}: HTTP ${res.statusCode}: ${body.slice(0, 300)}`));
        else resolve(JSON.parse(body) as T);
      });
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${urlPath}: no answer`)));
    req.on('error', reject);
  });
}

/**
 * scripts/build-runner-image.sh (cached by its inputs' hash): returns this
 * build's own tag, topas-runner:<version>-<hash>. Tests pass it on as
 * TOPAS_RUNNER_IMAGE, because topas-runner:<version> is one name for every
 * checkout on the machine and another checkout's tests may move it mid-run
 * (it is also set in this process's env, which the tests' CLIs inherit).
 */
export function buildRunnerImage(): string {
  const img = spawnSync('bash', [path.join(REPO_ROOT, 'scripts', 'build-runner-image.sh')], { encoding: 'utf8', timeout: 1_200_000 });
  if (img.status !== 0) throw new Error(`runner image: ${img.stderr}`);
  process.stdout.write(`# ${img.stderr.trim().split('\n').pop()}\n`);
  const tag = img.stdout.trim().split('\n').pop() ?? '';
  if (!tag.startsWith('topas-runner:') && !process.env.TOPAS_RUNNER_IMAGE) throw new Error(`runner image: no tag on stdout (${img.stdout})`);
  // this test process's own env: the CLIs it starts and the backends it calls in-process inherit it
  process.env.TOPAS_RUNNER_IMAGE = tag;
  return tag;
}
