import * as k8s from '@kubernetes/client-node';
import { TopasError } from 'topas';
import { statusOf, type Cluster } from './cluster';
import { parentName, runSelector } from './manifests';
import { TestRuns } from './testrun';
import { poll } from './wait';

const DELETE_WAIT_MS = 90_000;
const FORCE_AFTER_MS = 20_000;

/**
 * Removes every object of a run: the parent (the garbage collector follows its
 * owner references), then by label what is left (also what a crash made before
 * the parent existed), and waits until nothing with the run label remains.
 */
export async function deleteRun(cluster: Cluster, app: string, runId: string, log: (line: string) => void): Promise<void> {
  const namespace = cluster.namespace;
  const labelSelector = runSelector(runId);
  const background = { propagationPolicy: 'Background' };
  const ignore404 = (err: unknown): void => {
    if (statusOf(err) !== 404) throw err;
  };
  await cluster.core.deleteNamespacedConfigMap({ name: parentName(app, runId), namespace, body: background }).catch(ignore404);
  const testRuns = new TestRuns(cluster);
  for (const name of await testRuns.names(labelSelector)) await testRuns.delete(name);
  await Promise.all([
    cluster.apps.deleteCollectionNamespacedDeployment({ namespace, labelSelector, body: background }),
    cluster.apps.deleteCollectionNamespacedStatefulSet({ namespace, labelSelector, body: background }),
    cluster.batch.deleteCollectionNamespacedJob({ namespace, labelSelector, body: background }),
    cluster.core.deleteCollectionNamespacedSecret({ namespace, labelSelector }),
    cluster.core.deleteCollectionNamespacedConfigMap({ namespace, labelSelector }),
  ]);
  for (const s of (await cluster.core.listNamespacedService({ namespace, labelSelector })).items) {
    await cluster.core.deleteNamespacedService({ name: s.metadata!.name!, namespace }).catch(ignore404);
  }
  const t0 = Date.now();
  let left: string[] = [];
  await poll(
    async () => {
      left = await remaining(cluster, runId);
      if (left.length === 0) return true;
      // pods whose node never confirms (no kubelet runs them any more) stay Terminating: well after their grace period, force them
      if (Date.now() - t0 > FORCE_AFTER_MS) await cluster.core.deleteCollectionNamespacedPod({ namespace, labelSelector, gracePeriodSeconds: 0, body: { ...background, gracePeriodSeconds: 0 } }).catch(() => undefined);
      return false;
    },
    {
      timeoutMs: DELETE_WAIT_MS,
      intervalMs: 500,
      onTimeout: () => {
        log(`kubernetes: run ${runId}: still there after ${DELETE_WAIT_MS / 1000}s: ${left.join(', ')}`);
        return new TopasError('TIMEOUT', `kubernetes: run ${runId} was not removed completely`, { problems: left.map((l) => ({ path: namespace, message: l })) });
      },
    },
  );
}

function forbiddenAsNone(err: unknown): { items: [] } {
  if (statusOf(err) === 403) return { items: [] };
  throw err;
}

/**
 * `Kind/name` of every object that still carries the run label: what topas
 * made and what controllers made from it with its labels (ReplicaSets, pods,
 * a StatefulSet's ControllerRevisions, a Service's EndpointSlices), which the
 * garbage collector removes only after their owner is gone.
 */
export async function remaining(cluster: Cluster, runId: string): Promise<string[]> {
  const namespace = cluster.namespace;
  const labelSelector = runSelector(runId);
  const names = (kind: string, items: Array<{ metadata?: k8s.V1ObjectMeta }>) => items.map((i) => `${kind}/${i.metadata?.name}`);
  const [pods, deps, rs, sts, jobs, svcs, secrets, cms, revisions, slices] = await Promise.all([
    cluster.core.listNamespacedPod({ namespace, labelSelector }),
    cluster.apps.listNamespacedDeployment({ namespace, labelSelector }),
    cluster.apps.listNamespacedReplicaSet({ namespace, labelSelector }),
    cluster.apps.listNamespacedStatefulSet({ namespace, labelSelector }),
    cluster.batch.listNamespacedJob({ namespace, labelSelector }),
    cluster.core.listNamespacedService({ namespace, labelSelector }),
    cluster.core.listNamespacedSecret({ namespace, labelSelector }),
    cluster.core.listNamespacedConfigMap({ namespace, labelSelector }),
    // made by controllers, not topas: a user whose role may not list them still gets the rest checked
    cluster.apps.listNamespacedControllerRevision({ namespace, labelSelector }).catch(forbiddenAsNone),
    cluster.objects.list('discovery.k8s.io/v1', 'EndpointSlice', namespace, undefined, undefined, undefined, undefined, labelSelector).catch(forbiddenAsNone),
  ]);
  const testRuns = (await new TestRuns(cluster).names(labelSelector)).map((n) => `TestRun/${n}`);
  return [
    ...testRuns,
    ...names('Pod', pods.items),
    ...names('Deployment', deps.items),
    ...names('ReplicaSet', rs.items),
    ...names('StatefulSet', sts.items),
    ...names('Job', jobs.items),
    ...names('Service', svcs.items),
    ...names('Secret', secrets.items),
    ...names('ConfigMap', cms.items),
    ...names('ControllerRevision', revisions.items),
    ...names('EndpointSlice', slices.items),
  ];
}
