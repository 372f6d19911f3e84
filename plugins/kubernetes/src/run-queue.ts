import { createHash } from 'node:crypto';
import * as k8s from '@kubernetes/client-node';
import { TopasError } from 'topas';
import { apiMessage, statusOf, type Cluster } from './cluster';
import { LABELS, MANAGED_BY, labelValue } from './manifests';
import { TestRuns } from './testrun';
import { sleep } from './wait';

/**
 * One run of an app at a time on a cluster, whichever host started it: a
 * coordination.k8s.io Lease per app and namespace, taken by the runner (in
 * the runner Job's pod, also a CronJob's) before it runs anything. The holder
 * renews it every RENEW_MS; a holder that died stops renewing and loses it
 * LEASE_S later (measured on the waiter's clock from the last change it saw,
 * so skewed clocks do not matter), and sooner when its TestRun is gone or
 * ended and its pod is gone.
 */
export const LEASE_S = 15;
const RENEW_MS = 5000;
const POLL_MS = 1000;

export interface QueueHolder {
  testRun: string;
  pod: string;
}

export function queueLeaseName(app: string): string {
  const base = app
    .toLowerCase()
    .replace(/[^a-z0-9-]+/g, '-')
    .replace(/^-+|-+$/g, '')
    .slice(0, 40);
  return `topas-queue-${base ? `${base}-` : ''}${createHash('sha256').update(app).digest('hex').slice(0, 6)}`;
}

function identity(h: QueueHolder): string {
  return `${h.testRun}/${h.pod}`;
}

function parseIdentity(s: string | undefined): QueueHolder | undefined {
  if (!s) return undefined;
  const i = s.indexOf('/');
  return i < 0 ? { testRun: s, pod: '' } : { testRun: s.slice(0, i), pod: s.slice(i + 1) };
}

export interface QueueTurn {
  /** how long this run waited for its turn */
  waitedMs: number;
  release(): Promise<void>;
}

export interface AcquireOptions {
  signal?: AbortSignal;
  /** told each time the run starts waiting behind another holder */
  onWait?: (holder: QueueHolder) => void;
  log?: (line: string) => void;
  /** for tests: how long a silent holder keeps the lease (default LEASE_S) */
  leaseS?: number;
  renewMs?: number;
}

/** Waits for the app's turn, takes the Lease and renews it until released. */
export async function acquireAppQueue(cluster: Cluster, app: string, me: QueueHolder, opts: AcquireOptions = {}): Promise<QueueTurn> {
  const api = cluster.kc.makeApiClient(k8s.CoordinationV1Api);
  const ns = cluster.namespace;
  const name = queueLeaseName(app);
  const leaseS = opts.leaseS ?? LEASE_S;
  const t0 = Date.now();
  let observed: { rv: string; at: number } | undefined;
  let waitingBehind: string | undefined;
  const mine = (lease: k8s.V1Lease): k8s.V1Lease => {
    const now = new k8s.V1MicroTime();
    return { ...lease, spec: { ...lease.spec, holderIdentity: identity(me), leaseDurationSeconds: leaseS, acquireTime: now, renewTime: now, leaseTransitions: (lease.spec?.leaseTransitions ?? 0) + 1 } };
  };
  for (;;) {
    if (opts.signal?.aborted) throw new TopasError('INTERRUPTED', `interrupted while queued for app ${app}`);
    let lease: k8s.V1Lease | undefined;
    try {
      lease = await api.readNamespacedLease({ name, namespace: ns });
    } catch (err) {
      if (statusOf(err) !== 404) throw queueError(err, 'read');
    }
    try {
      if (!lease) {
        const body: k8s.V1Lease = mine({ apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', metadata: { name, namespace: ns, labels: { [LABELS.managedBy]: MANAGED_BY, [LABELS.app]: labelValue(app) } }, spec: { leaseTransitions: -1 } });
        await api.createNamespacedLease({ namespace: ns, body });
        break;
      }
      const rv = lease.metadata?.resourceVersion ?? '';
      if (observed?.rv !== rv) observed = { rv, at: Date.now() };
      const holder = parseIdentity(lease.spec?.holderIdentity);
      const silentMs = Date.now() - observed.at;
      const free = !holder || identity(holder) === identity(me) || silentMs > (lease.spec?.leaseDurationSeconds ?? leaseS) * 1000 || (await holderGone(cluster, holder));
      if (free) {
        if (holder && identity(holder) !== identity(me)) opts.log?.(`the queue of app ${app} was held by ${identity(holder)}, which is gone; taking it over`);
        await api.replaceNamespacedLease({ name, namespace: ns, body: mine(lease) });
        break;
      }
      if (waitingBehind !== identity(holder)) {
        waitingBehind = identity(holder);
        opts.onWait?.(holder);
      }
    } catch (err) {
      // another waiter took it first (409 on create or on a stale resourceVersion): look again
      if (statusOf(err) !== 409) throw queueError(err, 'take');
    }
    await sleep(POLL_MS, opts.signal).catch(() => undefined);
  }
  const waitedMs = Date.now() - t0;
  const renew = async () => {
    try {
      const lease = await api.readNamespacedLease({ name, namespace: ns });
      if (lease.spec?.holderIdentity !== identity(me)) {
        opts.log?.(`the queue of app ${app} was taken over by ${lease.spec?.holderIdentity ?? 'nobody'} (this runner did not renew in time)`);
        return;
      }
      await api.replaceNamespacedLease({ name, namespace: ns, body: { ...lease, spec: { ...lease.spec, renewTime: new k8s.V1MicroTime() } } });
    } catch (err) {
      opts.log?.(`the queue lease of app ${app} was not renewed: ${apiMessage(err)}`);
    }
  };
  const timer = setInterval(() => void renew(), opts.renewMs ?? RENEW_MS);
  timer.unref();
  let released = false;
  return {
    waitedMs,
    release: async () => {
      if (released) return;
      released = true;
      clearInterval(timer);
      try {
        const lease = await api.readNamespacedLease({ name, namespace: ns });
        if (lease.spec?.holderIdentity !== identity(me)) return;
        // the next waiter takes it at its next look, without waiting for the lease to expire
        await api.replaceNamespacedLease({ name, namespace: ns, body: { ...lease, spec: { ...lease.spec, holderIdentity: undefined, acquireTime: undefined, renewTime: undefined } } });
      } catch (err) {
        opts.log?.(`the queue lease of app ${app} was not released (it expires in ${leaseS} s): ${apiMessage(err)}`);
      }
    },
  };
}

/** The holder's TestRun is gone or ended, and its pod is gone or ended: it will never release. */
async function holderGone(cluster: Cluster, holder: QueueHolder): Promise<boolean> {
  const tr = await new TestRuns(cluster).get(holder.testRun).catch((err: unknown) => (statusOf(err) === 404 ? undefined : Promise.reject(err)));
  if (tr && !tr.status?.result) return false;
  if (!holder.pod) return true;
  try {
    const pod = await cluster.core.readNamespacedPod({ name: holder.pod, namespace: cluster.namespace });
    return pod.status?.phase === 'Succeeded' || pod.status?.phase === 'Failed';
  } catch (err) {
    if (statusOf(err) === 404) return true;
    throw err;
  }
}

function queueError(err: unknown, what: string): TopasError {
  return new TopasError('RUNNER_FAILED', `kubernetes: could not ${what} the app's queue lease: ${apiMessage(err)}`, {
    hint: statusOf(err) === 403 ? 'the runner may not use coordination.k8s.io leases: run `topas kube install` again' : undefined,
    cause: err,
  });
}
