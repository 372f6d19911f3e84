import * as k8s from '@kubernetes/client-node';
import { TopasError, isKeptApp, startInDependencyOrder, type AppSpec, type Problem, type Backend, type BackendEnv, type RemoteRunRequest, type RemoteRunStore, type ScheduleContext, type StartContext, type Sut, type SutState, type SweepOptions } from 'topas';
import { KUBE_HINT, apiMessage, clusterOptionsFromEnv, connect, ownerGone, withTimeout, type Cluster } from './cluster';
import { KubeSut, deleteRun, isInClusterRunner, type KubeSutData } from './kube-sut';
import { podWorkers } from './pod-transport';
import { scheduleCronJob } from './cron';
import { TestRunStore } from './testrun-store';
import { ANNOTATIONS, LABELS, MANAGED_BY, labelValue, objectName, shapeProxyComponent } from './manifests';

const PROBE_TIMEOUT_MS = 5000;

/**
 * The `kubernetes` backend (registered by this plugin through the
 * `topas:backends` hook): the app's services as Deployments and Services, its
 * databases as StatefulSets, in the namespace of the current context (or
 * --namespace), everything of a run labelled with it and owned by its
 * ConfigMap. Scenarios do not reach them from this machine (see NO_HOST_TRAFFIC).
 */
export class KubernetesBackend implements Backend {
  readonly name = 'kubernetes';

  /**
   * Names that would land on the same objects: each component's and each
   * shaping proxy's (`<name>-shape`) object name must be its own in the run.
   */
  validate(spec: AppSpec): Problem[] {
    const owners = new Map<string, string>();
    const problems: Problem[] = [];
    const components = [...spec.services.map((s, i) => ({ name: s.name, path: `services[${i}].name` })), ...spec.databases.map((d, i) => ({ name: d.name, path: `databases[${i}].name` }))];
    for (const c of components) owners.set(objectName(spec.name, c.name, 'x'), c.name);
    for (const c of components) {
      const proxy = objectName(spec.name, shapeProxyComponent(c.name), 'x');
      const other = owners.get(proxy);
      if (other !== undefined) problems.push({ path: components.find((o) => o.name === other)!.path, message: `"${other}" takes the object names of the shaping proxy of "${c.name}" on kubernetes (${c.name}-shape); rename it` });
    }
    return problems;
  }

  async probe(spec: AppSpec, opts?: BackendEnv): Promise<{ ok: boolean; reason: string }> {
    const noImage = spec.services.filter((s) => !s.image).map((s) => s.name);
    let cluster: Cluster;
    try {
      cluster = connect(clusterOptionsFromEnv(opts?.env));
      const v = await withTimeout(cluster.kc.makeApiClient(k8s.VersionApi).getCode(), PROBE_TIMEOUT_MS, 'kubernetes');
      if (noImage.length > 0) return { ok: false, reason: `services without an image: ${noImage.join(', ')}` };
      return { ok: true, reason: `cluster ${cluster.kc.getCurrentCluster()?.server} (${v.gitVersion}), namespace ${cluster.namespace}` };
    } catch (err) {
      return { ok: false, reason: apiMessage(err) };
    }
  }

  async start(spec: AppSpec, ctx: StartContext): Promise<Sut> {
    // the runner Job attaches to what the CLI stood up; it never stands up a SUT of its own inside the cluster
    if (ctx.processEnv.TOPAS_KUBE_ATTACH_ONLY === '1') throw new TopasError('SUT_NOT_UP', 'kubernetes runner: the SUT to attach to is gone');
    const cluster = connect(clusterOptionsFromEnv(ctx.processEnv));
    const sut = new KubeSut(spec, ctx.runId, cluster, ctx, new Date().toISOString());
    try {
      await sut.createParent();
      await startInDependencyOrder(spec, (name) => sut.startComponent(name, ctx.signal), { signal: ctx.signal });
      if (ctx.signal?.aborted) throw new TopasError('INTERRUPTED', 'start interrupted');
    } catch (err) {
      await sut.dispose().catch((e: Error) => ctx.log(`kubernetes: cleanup after a failed start: ${e.message}`));
      throw err;
    }
    return withPodWorkers(sut, cluster, ctx);
  }

  async attach(spec: AppSpec, state: SutState, ctx: StartContext): Promise<Sut> {
    const data = state.data as KubeSutData | undefined;
    // the cluster the run was made on, unless this command names another one
    const cluster = connect({ ...(data?.cluster ?? {}), ...clusterOptionsFromEnv(ctx.processEnv) });
    const sut = new KubeSut(spec, state.runId, cluster, ctx, state.startedAt, data ?? { cluster: cluster.options, parent: '', overrides: {} });
    if (!(await sut.adopt()) && !ctx.readOnly) {
      throw new TopasError('SUT_NOT_UP', `kubernetes: run ${state.runId} (app ${state.app}) no longer exists in namespace ${cluster.namespace}`, { hint: 'start it again with `topas up`' });
    }
    return withPodWorkers(sut, cluster, ctx);
  }

  /** `topas test schedule --cron`: a CronJob whose runner stands the app up in the cluster for each run (src/cron.ts). */
  async scheduleCron(spec: AppSpec, request: RemoteRunRequest, cron: string, ctx: ScheduleContext): Promise<{ id: string; description: string }> {
    return scheduleCronJob(connect(clusterOptionsFromEnv(ctx.processEnv)), spec, request, cron, ctx);
  }

  /** `topas test status|logs --backend kubernetes`: the namespace's TestRuns (src/testrun-store.ts); runs queue on the cluster (src/run-queue.ts). */
  remoteRuns(opts: BackendEnv): RemoteRunStore {
    return new TestRunStore(connect(clusterOptionsFromEnv(opts.env ?? {})));
  }

  /**
   * Runs are found by their parent ConfigMaps in the namespace. A kept run
   * (`topas up`) goes only for `kept` of the same app and spec file; another
   * run only when its owner process (on this host) is gone.
   */
  async sweep(opts: SweepOptions): Promise<{ removed: string[] }> {
    let cluster: Cluster;
    let parents: k8s.V1ConfigMap[];
    try {
      cluster = connect(clusterOptionsFromEnv(opts.env));
      const labelSelector = `${LABELS.managedBy}=${MANAGED_BY},${LABELS.kind}=run${!opts.all && opts.app !== undefined ? `,${LABELS.app}=${labelValue(opts.app)}` : ''}`;
      parents = (await withTimeout(cluster.core.listNamespacedConfigMap({ namespace: cluster.namespace, labelSelector }), PROBE_TIMEOUT_MS, 'kubernetes')).items;
    } catch (err) {
      if (opts.all) opts.log?.(`kubernetes: not swept (${apiMessage(err)}); hint: ${KUBE_HINT}`);
      return { removed: [] };
    }
    const removed: string[] = [];
    for (const cm of parents) {
      const app = cm.data?.app ?? cm.metadata?.labels?.[LABELS.app] ?? '';
      const runId = cm.data?.runId ?? '';
      const kept = cm.metadata?.annotations?.[ANNOTATIONS.kept] === 'true';
      let reason: string;
      if (kept) {
        if (!isKeptApp(opts.kept, app, cm.data?.specFile)) continue;
        reason = 'kept SUT of this app';
      } else {
        if (!ownerGone(cm.metadata?.annotations?.[ANNOTATIONS.owner])) continue;
        if (!opts.all && app !== opts.app) continue;
        reason = 'owner gone';
      }
      await deleteRun(cluster, app, runId, opts.log ?? (() => {}));
      const what = `kubernetes run ${runId} (app ${app}, ${reason}) in namespace ${cluster.namespace}`;
      opts.log?.(`swept ${what}`);
      removed.push(what);
    }
    return { removed };
  }
}

/** Outside the cluster, `topas load`'s workers run as pods next to the SUT (pod-transport.ts); inside it (the runner Job) they stay where they are. */
function withPodWorkers(sut: KubeSut, cluster: Cluster, ctx: StartContext): Sut {
  if (isInClusterRunner(ctx.processEnv)) return sut;
  return Object.assign(sut, { remoteWorkers: podWorkers(sut.spec, sut.runId, cluster, ctx.log, ctx.processEnv) });
}
