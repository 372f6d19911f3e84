import { databaseEntry, serviceEntry, type AppSpec, type EndpointMap, type RemoteWorkers, type StartWorkerOptions, type TransportEvent, type WorkerTransport } from 'topas';
import type { Cluster } from './cluster';
import { groupFor, type PodWorkersContext } from './load-job';
import { parentName, serviceHost } from './manifests';

/**
 * The 'pods' worker transport (registered by the plugin's hook): a `topas
 * load` worker is a pod of the run's Indexed Job, and its messages go through
 * the API server (load-job.ts, channel.ts). The SUT hands the context
 * (Sut.remoteWorkers); core's load service uses this as it uses threads and
 * processes.
 */
export function podTransport<In, Out>(opts: StartWorkerOptions): WorkerTransport<In, Out> {
  const ctx = opts.context as PodWorkersContext | undefined;
  if (!ctx || !opts.run) throw new Error("the 'pods' transport starts the load workers of a SUT on a cluster (Sut.remoteWorkers)");
  const group = groupFor(ctx, opts.run.id, opts.run.workers);
  const w = group.workers[opts.run.index];
  if (!w) throw new Error(`load worker ${opts.run.index} of ${opts.run.workers}: no such worker in ${group.label}`);
  return {
    get label() {
      return `pod ${w.pod ?? `${group.name} #${w.index}`}`;
    },
    get gone() {
      return w.gone;
    },
    send(msg: In) {
      if (w.gone) return;
      // the run's variables go once, in a Secret (they may hold secrets); the channel carries the rest of the init
      const m = msg as { type?: string; init?: { env?: Record<string, string>; file: string } };
      if (m.type === 'load-init' && m.init) {
        group.setInit(m.init.env ?? {}, m.init.file);
        w.channel.send({ ...m, init: { ...m.init, env: {} } });
      } else w.channel.send(msg);
    },
    on(h: (ev: TransportEvent<Out>) => void) {
      w.handler = h as (ev: TransportEvent<unknown>) => void;
    },
    stop({ shutdown, graceMs = 5000 } = {}) {
      return group.stopWorker(w, shutdown, graceMs);
    },
  };
}

/**
 * What a SUT on a cluster hands `topas load` (Sut.remoteWorkers): the 'pods'
 * transport, its context, and the endpoints as the pods reach them (Service
 * DNS names; they do not change in a rollout).
 */
export function podWorkers(spec: AppSpec, runId: string, cluster: Cluster, log: (line: string) => void, env: NodeJS.ProcessEnv): RemoteWorkers {
  const context: PodWorkersContext = {
    cluster,
    app: spec.name,
    sutRunId: runId,
    env,
    log,
    parent: async () => {
      const name = parentName(spec.name, runId);
      const cm = await cluster.core.readNamespacedConfigMap({ name, namespace: cluster.namespace });
      return { name, uid: cm.metadata!.uid! };
    },
  };
  return { transport: 'pods', context, endpointMap: () => inClusterEndpoints(spec, runId, cluster.namespace) };
}

export function inClusterEndpoints(spec: AppSpec, runId: string, ns: string): EndpointMap {
  const map: EndpointMap = {};
  for (const s of spec.services) {
    const host = serviceHost(spec.name, s.name, runId, ns);
    map[s.name] = serviceEntry([host], Object.keys(s.ports), (h) => `${s.tls ? 'https' : 'http'}://${h}:${s.port}`, (h, p) => `${h}:${s.ports[p]}`);
  }
  for (const db of spec.databases) map[db.name] = databaseEntry({ ...db.credentials, host: serviceHost(spec.name, db.name, runId, ns), port: db.port });
  return map;
}
