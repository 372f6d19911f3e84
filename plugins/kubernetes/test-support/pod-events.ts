import * as crypto from 'node:crypto';
import * as k8s from '@kubernetes/client-node';

/** The pod an event is about, and the events recorded for it so far (by reason and message). */
export interface EventTarget {
  uid: string;
  namespace: string;
  name: string;
  containerName: string;
  events: Map<string, { name: string; count: number }>;
}

/**
 * Records core/v1 Events on pods as a kubelet does (source kubelet, this
 * node): the first time a reason and message are seen the Event is created,
 * repeats raise its count and last timestamp. Best effort: a lost event is no
 * failure of the pod.
 */
export class PodEvents {
  constructor(
    private readonly core: k8s.CoreV1Api,
    private readonly nodeName: string,
    private readonly debug: (line: string) => void,
  ) {}

  async record(pod: EventTarget, type: 'Normal' | 'Warning', reason: string, message: string): Promise<void> {
    const key = `${reason}\u0000${message}`;
    const now = new Date();
    const seen = pod.events.get(key);
    try {
      if (seen) {
        seen.count++;
        await this.core.patchNamespacedEvent({ name: seen.name, namespace: pod.namespace, body: { count: seen.count, lastTimestamp: now } }, k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch));
        return;
      }
      const name = `${pod.name}.${crypto.randomBytes(8).toString('hex')}`;
      pod.events.set(key, { name, count: 1 });
      await this.core.createNamespacedEvent({
        namespace: pod.namespace,
        body: {
          metadata: { name, namespace: pod.namespace },
          involvedObject: { apiVersion: 'v1', kind: 'Pod', namespace: pod.namespace, name: pod.name, uid: pod.uid, fieldPath: `spec.containers{${pod.containerName}}` },
          type,
          reason,
          message,
          count: 1,
          firstTimestamp: now,
          lastTimestamp: now,
          source: { component: 'kubelet', host: this.nodeName },
          reportingComponent: 'kubelet',
          reportingInstance: this.nodeName,
        },
      });
    } catch (err) {
      this.debug(`event ${reason} on ${pod.namespace}/${pod.name}: ${(err as Error).message}`);
    }
  }
}
