import type * as k8s from '@kubernetes/client-node';
import type { Cluster } from './cluster';
import { LABELS, objectName } from './manifests';

/** the sync server's port; a Service's port equals its targetPort (the tests' node agent has no kube-proxy) */
export const SYNC_PORT = 7070;
/** the key of the run's Secret that holds the sync token (the runners read it; the sync pod gets it as env) */
export const SYNC_TOKEN_KEY = 'sync-token';

export interface SyncDeploymentOptions {
  app: string;
  /** the test run's id: names the objects */
  runId: string;
  namespace: string;
  labels: Record<string, string>;
  image: string;
  /** the run's Secret holding SYNC_TOKEN_KEY */
  secret: string;
}

/**
 * The sync service of a playbook spread over runner pods: one pod of the
 * runner image running `topas sync-server`, behind a Service the runners
 * reach by its DNS name. Only runners that present the run's token (from the
 * run's Secret) are served.
 */
export function syncObjects(o: SyncDeploymentOptions): { deployment: k8s.V1Deployment; service: k8s.V1Service; url: string } {
  const name = objectName(o.app, 'sync', o.runId);
  const labels: Record<string, string> = { ...o.labels, [LABELS.component]: 'sync', [LABELS.kind]: 'sync' };
  const selector = { [LABELS.run]: labels[LABELS.run], [LABELS.component]: 'sync', 'topas.dev/test-run': labels['topas.dev/test-run'] };
  const deployment: k8s.V1Deployment = {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name, namespace: o.namespace, labels },
    spec: {
      replicas: 1,
      selector: { matchLabels: selector },
      template: {
        metadata: { labels },
        spec: {
          enableServiceLinks: false,
          automountServiceAccountToken: false,
          terminationGracePeriodSeconds: 2,
          containers: [
            {
              name: 'sync',
              image: o.image,
              imagePullPolicy: 'IfNotPresent',
              command: ['topas', 'sync-server', '--host', '0.0.0.0', '--port', String(SYNC_PORT)],
              env: [
                { name: 'TOPAS_SYNC_TOKEN', valueFrom: { secretKeyRef: { name: o.secret, key: SYNC_TOKEN_KEY } } },
                { name: 'NO_COLOR', value: '1' },
              ],
              ports: [{ name: 'sync', containerPort: SYNC_PORT }],
              readinessProbe: { httpGet: { path: '/healthz', port: SYNC_PORT }, periodSeconds: 1, timeoutSeconds: 1, failureThreshold: 3, successThreshold: 1 },
            },
          ],
        },
      },
    },
  };
  const service: k8s.V1Service = {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name, namespace: o.namespace, labels },
    spec: { selector, ports: [{ name: 'sync', port: SYNC_PORT, targetPort: SYNC_PORT }] },
  };
  return { deployment, service, url: `ws://${name}.${o.namespace}.svc.cluster.local:${SYNC_PORT}` };
}

/** Creates the sync Deployment and Service (owned by the run's parent); returns its URL and how to remove them. */
export async function createSyncService(cluster: Cluster, o: SyncDeploymentOptions, own: <T extends { metadata?: k8s.V1ObjectMeta }>(obj: T) => T): Promise<{ url: string; name: string; undo: Array<() => Promise<unknown>> }> {
  const { deployment, service, url } = syncObjects(o);
  const name = deployment.metadata!.name!;
  const ns = o.namespace;
  const undo: Array<() => Promise<unknown>> = [];
  await cluster.core.createNamespacedService({ namespace: ns, body: own(service) });
  undo.push(() => cluster.core.deleteNamespacedService({ name, namespace: ns }));
  await cluster.apps.createNamespacedDeployment({ namespace: ns, body: own(deployment) });
  undo.push(() => cluster.apps.deleteNamespacedDeployment({ name, namespace: ns, body: { propagationPolicy: 'Background' } }));
  return { url, name, undo };
}

/** Why the sync pod is not serving, when it cannot start (its image, a crash); undefined while it may still come up. */
export async function syncPodProblem(cluster: Cluster, name: string): Promise<string | undefined> {
  const pods = (await cluster.core.listNamespacedPod({ namespace: cluster.namespace, labelSelector: `${LABELS.component}=sync,topas.dev/test-run` })).items.filter((p) => p.metadata?.name?.startsWith(name));
  for (const p of pods) {
    const cs = p.status?.containerStatuses?.[0];
    const waiting = cs?.state?.waiting;
    if (waiting && /ErrImage|ImagePull|InvalidImageName|CrashLoopBackOff/.test(waiting.reason ?? '')) return `the sync pod ${p.metadata!.name} cannot start: ${waiting.reason}${waiting.message ? ` (${waiting.message})` : ''}`;
    if (cs?.state?.terminated) return `the sync pod ${p.metadata!.name} exited (${cs.state.terminated.exitCode}${cs.state.terminated.reason ? ` ${cs.state.terminated.reason}` : ''})`;
  }
  return undefined;
}
