import * as fs from 'node:fs';
import * as os from 'node:os';
import * as k8s from '@kubernetes/client-node';
import { TopasError } from 'topas';

/**
 * Which cluster and namespace: `--kubeconfig`/`--context`/`--namespace` reach
 * the backend as TOPAS_KUBECONFIG, TOPAS_KUBE_CONTEXT and TOPAS_KUBE_NAMESPACE
 * in the environment topas hands it (StartContext.processEnv, SweepOptions.env,
 * probe's env: the command's Io.env, not this process's);
 * without them the usual places (KUBECONFIG, ~/.kube/config, in-cluster), the
 * current context and its namespace (else `default`).
 */
export interface ClusterOptions {
  kubeconfig?: string;
  context?: string;
  namespace?: string;
}

/** `env` undefined: a caller that hands no environment (a program using the backend directly), so this process's. */
export function clusterOptionsFromEnv(given: NodeJS.ProcessEnv | undefined): ClusterOptions {
  const env = given ?? process.env;
  return {
    ...(env.TOPAS_KUBECONFIG ? { kubeconfig: env.TOPAS_KUBECONFIG } : {}),
    ...(env.TOPAS_KUBE_CONTEXT ? { context: env.TOPAS_KUBE_CONTEXT } : {}),
    ...(env.TOPAS_KUBE_NAMESPACE ? { namespace: env.TOPAS_KUBE_NAMESPACE } : {}),
  };
}

export interface Cluster {
  kc: k8s.KubeConfig;
  context: string;
  namespace: string;
  /** what the state file records, so `down` and `ps` reach the same cluster */
  options: ClusterOptions;
  core: k8s.CoreV1Api;
  apps: k8s.AppsV1Api;
  batch: k8s.BatchV1Api;
  objects: k8s.KubernetesObjectApi;
}

export const KUBE_HINT = 'point KUBECONFIG (or --kubeconfig / TOPAS_KUBECONFIG) at a cluster; for a local test cluster: scripts/kube-control-plane.sh start';

/**
 * A kubeconfig exists in one of the usual places (else loadFromDefault would
 * invent localhost:8080). It reads process.env itself (KUBECONFIG, in-cluster),
 * so this looks where it will.
 */
function hasKubeconfig(opts: ClusterOptions): boolean {
  if (opts.kubeconfig) return true;
  if (process.env.KUBECONFIG) return process.env.KUBECONFIG.split(':').some((f) => f && fs.existsSync(f));
  if (process.env.KUBERNETES_SERVICE_HOST) return true;
  return fs.existsSync(`${os.homedir()}/.kube/config`);
}

export function connect(opts: ClusterOptions): Cluster {
  if (!hasKubeconfig(opts)) throw new TopasError('BACKEND_UNAVAILABLE', 'kubernetes: no kubeconfig found (KUBECONFIG, ~/.kube/config)', { hint: KUBE_HINT });
  const kc = new k8s.KubeConfig();
  try {
    if (opts.kubeconfig) kc.loadFromFile(opts.kubeconfig);
    else kc.loadFromDefault();
  } catch (err) {
    throw new TopasError('BACKEND_UNAVAILABLE', `kubernetes: the kubeconfig cannot be read: ${(err as Error).message}`, { hint: KUBE_HINT, cause: err });
  }
  if (opts.context) {
    if (!kc.getContextObject(opts.context)) {
      throw new TopasError('INVALID_FLAGS', `kubernetes: no context "${opts.context}" in the kubeconfig`, { hint: `contexts: ${kc.getContexts().map((c) => c.name).join(', ') || 'none'}` });
    }
    kc.setCurrentContext(opts.context);
  }
  const context = kc.getCurrentContext();
  const namespace = opts.namespace ?? kc.getContextObject(context)?.namespace ?? 'default';
  return {
    kc,
    context,
    namespace,
    options: { ...opts, namespace },
    core: kc.makeApiClient(k8s.CoreV1Api),
    apps: kc.makeApiClient(k8s.AppsV1Api),
    batch: kc.makeApiClient(k8s.BatchV1Api),
    objects: k8s.KubernetesObjectApi.makeApiClient(kc),
  };
}

/** HTTP status of a client-node ApiException, else undefined. */
export function statusOf(err: unknown): number | undefined {
  const code = (err as { code?: unknown })?.code;
  return typeof code === 'number' ? code : undefined;
}

/** The API server's message in an ApiException (its body is the Status object as text), else the error's. */
export function apiMessage(err: unknown): string {
  const body = (err as { body?: unknown })?.body;
  if (typeof body === 'string') {
    try {
      const parsed = JSON.parse(body) as { message?: string };
      if (parsed.message) return parsed.message;
    } catch {
      // not JSON: fall through
    }
  }
  return (err as Error)?.message ?? String(err);
}

// defined with the other waits (src/wait.ts); the backend imports it from here
export { withTimeout } from './wait';

/** This process as an owner: host, pid and kernel start time (a recycled pid is not the owner). */
export function selfOwner(): { host: string; pid: number; startTicks?: number } {
  return { host: os.hostname(), pid: process.pid, startTicks: startTicks(process.pid) };
}

function startTicks(pid: number): number | undefined {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    // the command name (field 2) may hold spaces: count fields after its closing paren
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return Number(fields[19]);
  } catch {
    return undefined;
  }
}

/** An owner recorded as `host:pid:startTicks` is known to be gone: same host, and that pid no longer runs (or runs another process). */
export function ownerGone(recorded: string | undefined): boolean {
  const [host, pidText, ticks] = (recorded ?? '').split(':');
  if (host !== os.hostname()) return false;
  const pid = Number(pidText);
  if (!Number.isInteger(pid) || pid <= 0) return true;
  try {
    process.kill(pid, 0);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ESRCH';
  }
  return ticks !== undefined && ticks !== '' && startTicks(pid) !== Number(ticks);
}
