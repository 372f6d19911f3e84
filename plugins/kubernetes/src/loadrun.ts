import * as k8s from '@kubernetes/client-node';
import { TopasError } from 'topas';
import { apiMessage, statusOf, type Cluster } from './cluster';
import { LABELS, MANAGED_BY } from './manifests';
import { runnerRbac } from './testrun';
import type { ChannelStore } from './channel';

/**
 * The LoadRun custom resource (loadruns.topas.dev): one per `topas load
 * --backend kubernetes`, owned by the run's parent. Its spec says what runs
 * (workers, the Job, the executor); its status, written by the CLI, shows the
 * run's progress to `kubectl get loadruns` (phase, per worker its pod, state
 * and last report). The messages themselves go through one ConfigMap per
 * worker (channel.ts), so the LoadRun stays small and is written seldom.
 */
export const LOADRUN = { group: 'topas.dev', version: 'v1alpha1', plural: 'loadruns', kind: 'LoadRun' } as const;
export const LOADRUN_API_VERSION = `${LOADRUN.group}/${LOADRUN.version}`;
const FIELD_MANAGER = 'topas';

export interface LoadRunSpec {
  app: string;
  runId: string;
  workers: number;
  job: string;
  /** the plan in words: "300/s for 10s" */
  describe?: string;
}

export interface LoadRunWorkerStatus {
  index: number;
  pod?: string;
  /** starting, ready, running, done, lost, stopped */
  state: string;
  /** messages from the worker so far */
  messages: number;
  lastReportAt?: string;
  reason?: string;
}

export interface LoadRunStatus {
  phase?: 'Starting' | 'Running' | 'Finished' | 'Partial' | 'Stopped';
  startedAt?: string;
  workers?: LoadRunWorkerStatus[];
  /** iterations the workers reported so far (their cumulative snapshots, summed) */
  iterations?: number;
  message?: string;
}

export interface LoadRunObject extends k8s.KubernetesObject {
  spec: LoadRunSpec;
  status?: LoadRunStatus;
}

export function loadRunCrd(): k8s.V1CustomResourceDefinition {
  const open: k8s.V1JSONSchemaProps = { type: 'object', x_kubernetes_preserve_unknown_fields: true };
  return {
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    metadata: { name: `${LOADRUN.plural}.${LOADRUN.group}`, labels: { [LABELS.managedBy]: MANAGED_BY } },
    spec: {
      group: LOADRUN.group,
      scope: 'Namespaced',
      names: { plural: LOADRUN.plural, singular: 'loadrun', kind: LOADRUN.kind, shortNames: ['lr'], categories: ['topas'] },
      versions: [
        {
          name: LOADRUN.version,
          served: true,
          storage: true,
          subresources: { status: {} },
          additionalPrinterColumns: [
            { name: 'Workers', type: 'integer', jsonPath: '.spec.workers' },
            { name: 'Phase', type: 'string', jsonPath: '.status.phase' },
            { name: 'Iterations', type: 'integer', jsonPath: '.status.iterations' },
            { name: 'Age', type: 'date', jsonPath: '.metadata.creationTimestamp' },
          ],
          schema: { openAPIV3Schema: { type: 'object', properties: { spec: open, status: open } } },
        },
      ],
    },
  };
}

/**
 * The LoadRun CRD (waits until Established) and the runner's ServiceAccount
 * and RBAC (the worker pods run as it: they read and patch their channel
 * ConfigMap, read the env Secret and their own pod). Not the TestRun CRD: a
 * CRD that appears just before a run ends may still be refused while the API
 * server initializes its storage (429), and the run's teardown lists TestRuns.
 */
export async function installLoadRun(cluster: Cluster, log: (line: string) => void): Promise<void> {
  try {
    for (const o of runnerRbac(cluster.namespace)) await cluster.objects.patch(o, undefined, undefined, FIELD_MANAGER, true, k8s.PatchStrategy.ServerSideApply);
  } catch (err) {
    throw new TopasError('BACKEND_UNAVAILABLE', `kubernetes: could not install the runner's ServiceAccount, Role and RoleBinding in namespace ${cluster.namespace}: ${apiMessage(err)}`, { cause: err });
  }
  const ext = cluster.kc.makeApiClient(k8s.ApiextensionsV1Api);
  const crd = loadRunCrd();
  const name = crd.metadata!.name!;
  const existing = await ext.readCustomResourceDefinition({ name }).catch(() => undefined);
  try {
    await cluster.objects.patch(crd, undefined, undefined, FIELD_MANAGER, true, k8s.PatchStrategy.ServerSideApply);
    if (!existing) log(`installed CustomResourceDefinition ${name}`);
  } catch (err) {
    if (!existing) throw new TopasError('BACKEND_UNAVAILABLE', `kubernetes: could not install the LoadRun CRD: ${apiMessage(err)}`, { hint: statusOf(err) === 403 ? 'ask a cluster admin to run `topas kube install --namespace <ns>` once' : undefined, cause: err });
  }
  const deadline = Date.now() + 30_000;
  for (;;) {
    const c = await ext.readCustomResourceDefinition({ name });
    if (c.status?.conditions?.some((x) => x.type === 'Established' && x.status === 'True')) return;
    if (Date.now() > deadline) throw new TopasError('BACKEND_UNAVAILABLE', 'kubernetes: the LoadRun CRD was not Established within 30 s');
    await new Promise((r) => setTimeout(r, 200));
  }
}

export class LoadRuns {
  private readonly api: k8s.CustomObjectsApi;
  constructor(private readonly cluster: Cluster) {
    this.api = cluster.kc.makeApiClient(k8s.CustomObjectsApi);
  }

  private get base() {
    return { group: LOADRUN.group, version: LOADRUN.version, plural: LOADRUN.plural, namespace: this.cluster.namespace };
  }

  async create(obj: LoadRunObject): Promise<LoadRunObject> {
    // a new CRD's objects may be refused for a moment while the API server learns it
    const deadline = Date.now() + 10_000;
    for (;;) {
      try {
        return (await this.api.createNamespacedCustomObject({ ...this.base, body: obj })) as LoadRunObject;
      } catch (err) {
        if (statusOf(err) !== 404 || Date.now() > deadline) throw err;
        await new Promise((r) => setTimeout(r, 250));
      }
    }
  }

  async patchStatus(name: string, status: LoadRunStatus): Promise<void> {
    await this.api.patchNamespacedCustomObjectStatus({ ...this.base, name, body: { status } }, k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch));
  }

  async delete(name: string): Promise<void> {
    try {
      await this.api.deleteNamespacedCustomObject({ ...this.base, name, body: { propagationPolicy: 'Background' } });
    } catch (err) {
      if (statusOf(err) !== 404) throw err;
    }
  }

  /** LoadRuns with this label selector; [] when the CRD is not installed. */
  async names(labelSelector: string): Promise<string[]> {
    try {
      const out = (await this.api.listNamespacedCustomObject({ ...this.base, labelSelector })) as { items: LoadRunObject[] };
      return out.items.map((t) => t.metadata!.name!);
    } catch (err) {
      if (statusOf(err) === 404) return [];
      throw err;
    }
  }
}

/** A channel ConfigMap as a ChannelStore: merge patches of its data. */
export function configMapStore(cluster: Cluster, name: string): ChannelStore {
  return {
    async write(fields) {
      await cluster.core.patchNamespacedConfigMap({ name, namespace: cluster.namespace, body: { data: fields } }, k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch));
    },
  };
}

export type WatchEvent<T> = { type: 'ADDED' | 'MODIFIED' | 'DELETED'; object: T };

/**
 * Follows objects through the API server: a list (its items come as ADDED),
 * then a watch from the list's resourceVersion; when the watch ends (the
 * server closes watches after a while, or the connection breaks), again after
 * a short pause. Consumers see states, so a re-list is just another look.
 * Returns a function that stops it.
 */
export function follow<T extends k8s.KubernetesObject>(
  cluster: Cluster,
  o: { path: string; list: () => Promise<{ items: T[]; metadata?: { resourceVersion?: string } }>; query: Record<string, string> },
  onEvent: (ev: WatchEvent<T>) => void,
  onError?: (err: unknown) => void,
): () => void {
  let stopped = false;
  let current: AbortController | undefined;
  const watcher = new k8s.Watch(cluster.kc);
  const loop = async () => {
    while (!stopped) {
      try {
        const listed = await o.list();
        if (stopped) return;
        for (const item of listed.items) onEvent({ type: 'ADDED', object: item });
        await new Promise<void>((resolve) => {
          watcher
            .watch(o.path, { ...o.query, resourceVersion: listed.metadata?.resourceVersion, allowWatchBookmarks: true }, (type, obj) => {
              if (type === 'ADDED' || type === 'MODIFIED' || type === 'DELETED') onEvent({ type, object: obj as T });
            }, (err) => {
              if (err && !stopped) onError?.(err);
              resolve();
            })
            .then(
              (ac) => {
                current = ac;
                if (stopped) ac.abort();
              },
              (err: unknown) => {
                if (!stopped) onError?.(err);
                resolve();
              },
            );
        });
      } catch (err) {
        if (!stopped) onError?.(err);
      }
      if (!stopped) await new Promise((r) => setTimeout(r, 250));
    }
  };
  void loop();
  return () => {
    stopped = true;
    current?.abort();
  };
}

/** Follows the ConfigMaps of a label or field selector. */
export function followConfigMaps(cluster: Cluster, selector: { labelSelector?: string; fieldSelector?: string }, onEvent: (ev: WatchEvent<k8s.V1ConfigMap>) => void, onError?: (err: unknown) => void): () => void {
  const namespace = cluster.namespace;
  return follow(cluster, { path: `/api/v1/namespaces/${namespace}/configmaps`, list: () => cluster.core.listNamespacedConfigMap({ namespace, ...selector }), query: { ...selector } }, onEvent, onError);
}

/** Follows the pods of a label selector. */
export function followPods(cluster: Cluster, labelSelector: string, onEvent: (ev: WatchEvent<k8s.V1Pod>) => void, onError?: (err: unknown) => void): () => void {
  const namespace = cluster.namespace;
  return follow(cluster, { path: `/api/v1/namespaces/${namespace}/pods`, list: () => cluster.core.listNamespacedPod({ namespace, labelSelector }), query: { labelSelector } }, onEvent, onError);
}
