import type * as k8s from '@kubernetes/client-node';
import type { Problem } from 'topas';
import type { Cluster } from './cluster';

/**
 * The cluster's own account of why something is not ready: the recent Events
 * (core/v1, what `kubectl describe` shows) of a component's objects, for the
 * message of a start, rollout or heal that failed. A failed probe, an image
 * the node cannot get, a crash loop or a pod the scheduler cannot place is
 * named there, not in the Deployment's status.
 */
export const EVENTS_SHOWN = 6;

/** The object named `prefix` and the ones its controllers named after it (ReplicaSets, pods, a Job's pods). */
function belongsTo(name: string | undefined, prefixes: string[]): boolean {
  return name !== undefined && prefixes.some((p) => name === p || name.startsWith(`${p}-`));
}

function lastSeen(e: k8s.CoreV1Event): number {
  const t = e.lastTimestamp ?? e.eventTime ?? e.firstTimestamp ?? e.metadata?.creationTimestamp;
  return t ? new Date(t as unknown as string).getTime() : 0;
}

/**
 * The last events of the objects named by `prefixes`, oldest first: the
 * warnings when there are any (they say what is wrong), else the normal ones.
 * Events have no labels, so they are matched by the involved object's name,
 * which carries the run's hash.
 */
export async function recentEvents(cluster: Cluster, prefixes: string[], limit = EVENTS_SHOWN): Promise<k8s.CoreV1Event[]> {
  const mine = async (fieldSelector?: string) =>
    (await cluster.core.listNamespacedEvent({ namespace: cluster.namespace, ...(fieldSelector ? { fieldSelector } : {}) })).items
      .filter((e) => belongsTo(e.involvedObject?.name, prefixes))
      .sort((a, b) => lastSeen(a) - lastSeen(b));
  const warnings = await mine('type=Warning');
  return (warnings.length > 0 ? warnings : await mine()).slice(-limit);
}

/** One event as a line: `Warning Unhealthy pod/x-7d9f-abcde: Readiness probe failed: … (x12, 3s ago)`. */
export function eventLine(e: k8s.CoreV1Event, now = Date.now()): string {
  const count = e.count ?? e.series?.count ?? 1;
  const ago = Math.max(0, Math.round((now - lastSeen(e)) / 1000));
  const what = `${(e.involvedObject?.kind ?? 'object').toLowerCase()}/${e.involvedObject?.name ?? '?'}`;
  return `${e.type ?? 'Normal'} ${e.reason ?? ''} ${what}: ${(e.message ?? '').trim()} (${count > 1 ? `x${count}, ` : ''}${lastSeen(e) ? `${ago}s ago` : 'time unknown'})`;
}

/** The recent events as problems of a TopasError; never fails (an error message must not hide the error it explains). */
export async function eventProblems(cluster: Cluster, prefixes: string[], limit = EVENTS_SHOWN): Promise<Problem[]> {
  try {
    const events = await recentEvents(cluster, prefixes, limit);
    const now = Date.now();
    return events.map((e) => ({ path: 'event', message: eventLine(e, now) }));
  } catch {
    return [];
  }
}
