import * as k8s from '@kubernetes/client-node';
import { TopasError, databaseEntry, serviceEntry, type AppSpec, type ShapeController, type ApplyServiceChange, type EndpointMap, type KillOptions, type RemoteRunner, type ServiceStatus, type ServiceSpec, type StartContext, type Sut, type SutLifecycle, type SutState } from 'topas';
import { KubeRemoteRunner, runnerImage } from './runner-job';
import { KubeShaping, NoShapingProxies, newShapeToken, readShapeToken, shapingWanted } from './kube-shaping';
import { proxyNotReady, shapeProxyObjects, shapeTokenSecret, type ShapeRenderOptions } from './shape-proxies';
import { apiMessage, selfOwner, statusOf, type Cluster, type ClusterOptions } from './cluster';
import {
  ANNOTATIONS,
  LABELS,
  databaseObjects,
  labelValue,
  objectName,
  ownedBy,
  parentConfigMap,
  parentName,
  serviceHost,
  serviceObjects,
  shapeProxyComponent,
} from './manifests';
import { eventProblems } from './events';
import { deleteRun } from './delete-run';
import { poll } from './wait';

const DELETE_WAIT_MS = 90_000;
const FIELD_MANAGER = 'topas';

/** What `topas up` records so `run`, `ps` and `down` find the run again. */
export interface KubeSutData {
  cluster: ClusterOptions;
  parent: string;
  /** per service: what applyService/scale changed since the spec */
  overrides: Record<string, { image?: string; version?: string; replicas?: number; env?: Record<string, string>; stoppedFrom?: number }>;
  /** every service and database has a shaping proxy (shape-proxies.ts); absent in runs made before there were any */
  shaping?: boolean;
}

export const NO_HOST_TRAFFIC =
  'the kubernetes backend does not reach services from this machine: topas never sends traffic to pod or Service IPs from outside the cluster; `topas run` runs scenarios in a runner Job inside it';

/** Set on the runner Job's container: this process runs inside the cluster and reaches Services by their DNS names. */
export function isInClusterRunner(env: NodeJS.ProcessEnv): boolean {
  return env.TOPAS_KUBE_RUNNER === '1';
}

/** A SUT on a cluster: the objects of one run in one namespace, owned by the run's ConfigMap. */
export class KubeSut implements Sut {
  readonly backend = 'kubernetes';
  private kept: boolean;
  private disposed = false;
  private parentUid?: string;
  private readonly overrides: KubeSutData['overrides'];
  private readonly render: ShapeRenderOptions;
  /** in the runner: the proxies' controller (`require("shape")`), once the run's token is known */
  private kubeShaping?: KubeShaping;
  /** `require("shape")` of scenarios: only in the runner of a run that has shaping proxies */
  shaping?: () => ShapeController;
  /** in the runner Job: Services are reached by their DNS names */
  private readonly inCluster: boolean;
  /** outside the cluster: scenarios go to a runner Job (`topas run`) */
  readonly remoteRunner?: RemoteRunner;

  constructor(
    readonly spec: AppSpec,
    readonly runId: string,
    private readonly cluster: Cluster,
    private readonly ctx: StartContext,
    private readonly startedAt: string,
    data?: KubeSutData,
  ) {
    this.kept = data !== undefined;
    this.overrides = data?.overrides ?? {};
    const env = ctx.processEnv;
    const shaping = data ? data.shaping === true : shapingWanted(env);
    this.render = { runId, namespace: cluster.namespace, env: ctx.env, postgresImage: env.TOPAS_POSTGRES_IMAGE || undefined, shaping, proxyImage: runnerImage(env) };
    this.inCluster = isInClusterRunner(env);
    if (this.inCluster && !shaping) {
      const none = new NoShapingProxies();
      this.shaping = () => none;
    }
    if (!this.inCluster) {
      this.remoteRunner = new KubeRemoteRunner({
        cluster,
        app: spec.name,
        parent: () => ({ name: parentName(spec.name, runId), uid: this.parentUid! }),
        sutState: () => this.state(),
        env,
      });
    }
  }

  get lifecycle(): SutLifecycle {
    return this.disposed ? 'disposed' : this.kept ? 'kept' : 'running';
  }

  private get ns(): string {
    return this.cluster.namespace;
  }

  private name(component: string): string {
    return objectName(this.spec.name, component, this.runId);
  }

  // ------------------------------------------------------------ start

  /** The run's parent ConfigMap; everything else is owned by it. */
  async createParent(): Promise<void> {
    const cm = parentConfigMap(this.spec, this.render, selfOwner(), this.startedAt);
    const made = await this.apply(cm);
    this.parentUid = made.metadata?.uid;
    if (this.render.shaping) {
      const token = newShapeToken();
      await this.apply(shapeTokenSecret(this.spec.name, this.render, token));
      this.useShaping(token);
    }
  }

  /** In the runner: `require("shape")` reaches the proxy pods with the run's token. */
  private useShaping(token: string): void {
    if (!this.inCluster) return;
    const ks = new KubeShaping(this.spec, this.render, token);
    this.kubeShaping = ks;
    this.shaping = () => ks.controller;
  }

  async adopt(): Promise<boolean> {
    try {
      const cm = await this.cluster.core.readNamespacedConfigMap({ name: parentName(this.spec.name, this.runId), namespace: this.ns });
      this.parentUid = cm.metadata?.uid;
      if (this.render.shaping && this.inCluster && !this.ctx.readOnly) {
        this.useShaping(await readShapeToken(this.cluster, this.spec.name, this.runId));
      }
      return true;
    } catch (err) {
      if (statusOf(err) === 404) return false;
      throw err;
    }
  }

  /** Server-side apply, owned by the run's parent (the parent itself is not owned). */
  private async apply<T extends k8s.KubernetesObject>(obj: T): Promise<T> {
    const body = obj.kind === 'ConfigMap' && obj.metadata?.name === parentName(this.spec.name, this.runId) ? obj : ownedBy(obj, { name: parentName(this.spec.name, this.runId), uid: this.parentUid! });
    try {
      return await this.cluster.objects.patch(body, undefined, undefined, FIELD_MANAGER, true, k8s.PatchStrategy.ServerSideApply);
    } catch (err) {
      throw new TopasError('SUT_START_FAILED', `kubernetes: ${obj.kind} ${obj.metadata?.name} was refused: ${apiMessage(err)}`, { cause: err });
    }
  }

  /**
   * Starts one service or database (its dependencies are up): applies its
   * objects and waits until it is ready; with shaping, its proxy starts
   * alongside and is ready too before any dependent starts.
   */
  async startComponent(component: string, signal?: AbortSignal): Promise<void> {
    const proxy = this.render.shaping ? shapeProxyObjects(this.spec, component, this.render) : undefined;
    if (proxy) {
      await this.apply(proxy.service);
      await this.apply(proxy.deployment);
    }
    await this.startOwn(component, signal);
    if (proxy) {
      const own = this.spec.databases.find((d) => d.name === component)?.ready.timeoutMs ?? this.spec.services.find((s) => s.name === component)?.ready.timeoutMs ?? 60_000;
      await this.waitReady(shapeProxyComponent(component), Math.max(own, 60_000), signal).catch((err: unknown) => {
        throw proxyNotReady(err, component, this.render.proxyImage);
      });
    }
  }

  private async startOwn(component: string, signal?: AbortSignal): Promise<void> {
    const db = this.spec.databases.find((d) => d.name === component);
    if (db) {
      const o = databaseObjects(this.spec, db, this.render);
      await this.apply(o.secret);
      await this.apply(o.service);
      await this.apply(o.statefulSet);
      await this.waitReady(component, db.ready.timeoutMs, signal);
      if (o.initJob) {
        this.ctx.log(`kubernetes: ${db.name}: applying initSQL (Job ${o.initJob.metadata!.name})`);
        await this.apply(o.initJob);
        await this.waitJob(o.initJob.metadata!.name!, db.ready.timeoutMs, signal);
      }
      return;
    }
    const svc = this.service(component);
    const o = serviceObjects(this.spec, svc, this.render, this.overrides[component]);
    await this.apply(o.secret);
    await this.apply(o.service);
    await this.apply(o.deployment);
    await this.waitReady(component, svc.ready.timeoutMs, signal);
  }

  private service(name: string): ServiceSpec {
    const svc = this.spec.services.find((s) => s.name === name);
    if (!svc) {
      if (this.spec.databases.some((d) => d.name === name)) throw new TopasError('INVALID_FLAGS', `${name} is a database; only services can be changed this way on kubernetes`);
      throw new TopasError('INVALID_FLAGS', `no service named "${name}" in app ${this.spec.name}`);
    }
    return svc;
  }

  // ------------------------------------------------------------ waiting

  /** Until the component's pods are all Ready and no old ones remain (a rollout is done), or the timeout. */
  async waitReady(name: string, timeoutMs?: number, signal?: AbortSignal): Promise<void> {
    const isDb = this.spec.databases.some((d) => d.name === name);
    const limitMs = timeoutMs ?? (isDb ? this.spec.databases.find((d) => d.name === name)!.ready.timeoutMs : this.service(name).ready.timeoutMs);
    await poll(() => this.rolledOut(name, isDb), {
      timeoutMs: limitMs,
      signal,
      onTimeout: async () =>
        new TopasError('READINESS_TIMEOUT', `kubernetes: ${name} was not ready within ${Math.round(limitMs / 1000)}s`, { problems: await this.podProblems(name), hint: 'check the image exists on the nodes and the `ready:` check of the service' }),
    });
  }

  private async rolledOut(name: string, isDb: boolean): Promise<boolean> {
    if (isDb) {
      const s = await this.cluster.apps.readNamespacedStatefulSet({ name: this.name(name), namespace: this.ns });
      const want = s.spec?.replicas ?? 1;
      const st = s.status;
      return (st?.observedGeneration ?? 0) >= (s.metadata?.generation ?? 0) && (st?.readyReplicas ?? 0) === want && (st?.replicas ?? 0) === want && (st?.updatedReplicas ?? want) === want;
    }
    const d = await this.cluster.apps.readNamespacedDeployment({ name: this.name(name), namespace: this.ns });
    const want = d.spec?.replicas ?? 1;
    const st = d.status;
    return (
      (st?.observedGeneration ?? 0) >= (d.metadata?.generation ?? 0) &&
      (st?.updatedReplicas ?? 0) === want &&
      (st?.replicas ?? 0) === want &&
      (st?.availableReplicas ?? 0) === want &&
      (st?.readyReplicas ?? 0) === want &&
      // pods still terminating from the previous revision are gone too
      (await this.pods(name)).length === want
    );
  }

  private async waitJob(jobName: string, timeoutMs: number, signal?: AbortSignal): Promise<void> {
    const failure = async (why: string): Promise<TopasError> => {
      const logs = await this.podLogs(`job-name=${jobName}`, 20).catch(() => '');
      const events = await eventProblems(this.cluster, [jobName]);
      return new TopasError('SUT_START_FAILED', `kubernetes: Job ${jobName} ${why}`, { problems: [...(logs ? [{ path: jobName, message: logs.trim() }] : []), ...events] });
    };
    await poll(
      async () => {
        const job = await this.cluster.batch.readNamespacedJob({ name: jobName, namespace: this.ns });
        if ((job.status?.succeeded ?? 0) > 0) return true;
        const failed = job.status?.conditions?.find((c) => c.type === 'Failed' && c.status === 'True');
        if (failed) throw await failure(`failed: ${failed.message ?? failed.reason}`);
        return false;
      },
      { timeoutMs: Math.max(timeoutMs, 30_000), signal, onTimeout: () => failure('did not complete in time') },
    );
  }

  /** Why pods are not ready: waiting reasons, exit codes (OOMKilled and the like), then the cluster's last events about them. */
  private async podProblems(name: string): Promise<{ path: string; message: string }[]> {
    const pods = await this.pods(name, true).catch(() => []);
    const events = await eventProblems(this.cluster, [this.name(name)]);
    if (pods.length === 0) return [{ path: name, message: 'no pods were created (is a node Ready? are there scheduling events?)' }, ...events];
    return [
      ...pods.map((p) => {
        const cs = p.status?.containerStatuses?.[0];
        const exited = (t: k8s.V1ContainerStateTerminated) => `exited ${t.exitCode}${t.reason ? ` (${t.reason})` : ''}`;
        const why = cs?.state?.waiting ? `waiting: ${cs.state.waiting.reason}${cs.state.waiting.message ? ` (${cs.state.waiting.message})` : ''}` : cs?.state?.terminated ? exited(cs.state.terminated) : !p.spec?.nodeName ? 'not scheduled' : `${p.status?.phase ?? 'Pending'}, not ready`;
        const last = cs?.lastState?.terminated ? `; last ${exited(cs.lastState.terminated)}, ${cs.restartCount ?? 0} restarts` : '';
        return { path: p.metadata!.name!, message: why + last };
      }),
      ...events,
    ];
  }

  /** The component's pods, oldest first; without `all`, only those not being deleted. */
  private async pods(component: string, all = false): Promise<k8s.V1Pod[]> {
    const list = await this.cluster.core.listNamespacedPod({ namespace: this.ns, labelSelector: `${LABELS.run}=${labelValue(this.runId)},${LABELS.component}=${labelValue(component)}` });
    return list.items
      .filter((p) => all || !p.metadata?.deletionTimestamp)
      .sort((a, b) => String(a.metadata?.creationTimestamp?.toISOString?.() ?? '').localeCompare(String(b.metadata?.creationTimestamp?.toISOString?.() ?? '')) || a.metadata!.name!.localeCompare(b.metadata!.name!));
  }

  // ------------------------------------------------------------ operations

  async services(): Promise<ServiceStatus[]> {
    const out: ServiceStatus[] = [];
    for (const s of this.spec.services) {
      const d = await this.cluster.apps.readNamespacedDeployment({ name: this.name(s.name), namespace: this.ns }).catch(() => undefined);
      const want = d?.spec?.replicas ?? 0;
      const image = d?.spec?.template.spec?.containers[0]?.image;
      const host = serviceHost(this.spec.name, s.name, this.runId, this.ns);
      const extra = Object.fromEntries(Object.entries(s.ports).map(([n, p]) => [n, [`${host}:${p}`]]));
      out.push({
        name: s.name,
        kind: 'service',
        replicas: want,
        ready: want > 0 && (d?.status?.readyReplicas ?? 0) >= want,
        version: d?.spec?.template.metadata?.labels?.[LABELS.version],
        image,
        // in-cluster addresses: what pods (and a runner Job) use; not reachable from this machine
        endpoints: [`${s.tls ? 'https' : 'http'}://${host}:${s.port}`],
        ...(Object.keys(extra).length ? { extraEndpoints: extra } : {}),
      });
    }
    for (const db of this.spec.databases) {
      const s = await this.cluster.apps.readNamespacedStatefulSet({ name: this.name(db.name), namespace: this.ns }).catch(() => undefined);
      const want = s?.spec?.replicas ?? 0;
      const c = db.credentials;
      out.push({
        name: db.name,
        kind: 'database',
        replicas: want,
        ready: want > 0 && (s?.status?.readyReplicas ?? 0) >= want,
        image: s?.spec?.template.spec?.containers[0]?.image,
        version: s?.spec?.template.metadata?.labels?.[LABELS.version],
        endpoints: [`postgres://${encodeURIComponent(c.user)}:${encodeURIComponent(c.password)}@${serviceHost(this.spec.name, db.name, this.runId, this.ns)}:${db.port}/${encodeURIComponent(c.dbname)}`],
      });
    }
    return out;
  }

  /** In the runner Job: the component's Service DNS name; outside the cluster there is none (NO_HOST_TRAFFIC). */
  endpoint(name: string, port?: string): string {
    if (!this.inCluster) throw new TopasError('BACKEND_UNAVAILABLE', NO_HOST_TRAFFIC, { hint: '`topas run --backend kubernetes` runs scenarios inside the cluster; `topas up|ps|down` work from here' });
    const entry = this.endpointMap()[name];
    if (!entry) throw new TopasError('INVALID_FLAGS', `no service or database named "${name}" in app ${this.spec.name}`);
    if (port !== undefined) {
      const addr = entry.extra[port]?.[0];
      if (!addr) throw new TopasError('INVALID_FLAGS', `service ${name} has no port named "${port}"`);
      return addr;
    }
    return entry.urls[0];
  }

  /** Service DNS names (the cluster balances over the ready pods), so the map does not change in a rollout. */
  endpointMap(): EndpointMap {
    if (!this.inCluster) return this.endpoint('') as never;
    const map: EndpointMap = {};
    // a shaped component is reached through its proxy's Service (kube-shaping.ts); the map changes with each shape
    const hostOf = (name: string) => this.kubeShaping?.host(name) ?? serviceHost(this.spec.name, name, this.runId, this.ns);
    for (const s of this.spec.services) {
      const host = hostOf(s.name);
      map[s.name] = serviceEntry([host], Object.keys(s.ports), (h) => `${s.tls ? 'https' : 'http'}://${h}:${s.port}`, (h, p) => `${h}:${s.ports[p]}`);
    }
    for (const db of this.spec.databases) {
      map[db.name] = databaseEntry({ ...db.credentials, host: hostOf(db.name), port: db.port });
    }
    return map;
  }

  /** A rolling update (maxUnavailable 0) of the service's Deployment; returns when the rollout is done. */
  async applyService(name: string, change: ApplyServiceChange): Promise<void> {
    this.service(name);
    const o = { ...this.overrides[name] };
    if (change.image !== undefined) o.image = change.image;
    if (change.version !== undefined) o.version = change.version;
    if (change.replicas !== undefined) o.replicas = change.replicas;
    if (change.env !== undefined) o.env = { ...o.env, ...change.env };
    await this.applyDeployment(name, o);
    await this.waitReady(name);
  }

  private async applyDeployment(name: string, o: KubeSutData['overrides'][string], restartedAt?: string): Promise<void> {
    this.overrides[name] = o;
    const objs = serviceObjects(this.spec, this.service(name), this.render, o);
    if (restartedAt) objs.deployment.spec!.template.metadata!.annotations![ANNOTATIONS.restartedAt] = restartedAt;
    await this.apply(objs.secret);
    await this.apply(objs.deployment);
    this.ctx.onState?.(this.state());
  }

  async scale(name: string, replicas: number): Promise<void> {
    if (this.spec.databases.some((d) => d.name === name)) {
      await this.cluster.apps.patchNamespacedStatefulSetScale({ name: this.name(name), namespace: this.ns, body: { spec: { replicas } } }, k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch));
      await this.waitReplicas(name, replicas);
      return;
    }
    await this.applyDeployment(name, { ...this.overrides[name], replicas });
    await this.waitReplicas(name, replicas);
  }

  private async waitReplicas(name: string, replicas: number): Promise<void> {
    if (replicas > 0) return this.waitReady(name);
    await poll(async () => (await this.pods(name, true)).length === 0, {
      timeoutMs: DELETE_WAIT_MS,
      onTimeout: () => new TopasError('TIMEOUT', `kubernetes: ${name}: pods still there after scaling to 0`),
    });
  }

  async stop(name: string): Promise<void> {
    const isDb = this.spec.databases.some((d) => d.name === name);
    const current = isDb ? 1 : (this.overrides[name]?.replicas ?? this.service(name).replicas);
    if (!isDb) this.overrides[name] = { ...this.overrides[name], stoppedFrom: current };
    await this.scale(name, 0);
  }

  async start(name: string): Promise<void> {
    const isDb = this.spec.databases.some((d) => d.name === name);
    const back = isDb ? 1 : (this.overrides[name]?.stoppedFrom ?? this.service(name).replicas);
    await this.scale(name, back);
  }

  async restart(name: string): Promise<void> {
    if (this.spec.databases.some((d) => d.name === name)) {
      for (const p of await this.pods(name)) await this.cluster.core.deleteNamespacedPod({ name: p.metadata!.name!, namespace: this.ns });
      return this.waitReady(name);
    }
    await this.applyDeployment(name, { ...this.overrides[name] }, new Date().toISOString());
    await this.waitReady(name);
  }

  /** Deletes one pod (SIGKILL: no grace period) and waits until its controller has replaced it and all are Ready. */
  async kill(name: string, opts: KillOptions = {}): Promise<void> {
    const pods = await this.pods(name);
    const victim = opts.replica ? pods[opts.replica - 1] : pods[0];
    if (!victim) throw new TopasError('SUT_NOT_UP', `kubernetes: ${name} has no running pod${opts.replica ? ` #${opts.replica}` : ''}`);
    const gracePeriodSeconds = opts.signal === 'SIGKILL' ? 0 : 1;
    await this.cluster.core.deleteNamespacedPod({ name: victim.metadata!.name!, namespace: this.ns, gracePeriodSeconds });
    await poll(async () => !(await this.pods(name, true)).some((p) => p.metadata?.uid === victim.metadata?.uid), {
      timeoutMs: DELETE_WAIT_MS,
      onTimeout: () => new TopasError('TIMEOUT', `kubernetes: pod ${victim.metadata!.name} was not removed`),
    });
    // the Deployment's status may still count the victim as ready: the heal is done when as many
    // pods as before run, the replacement among them, all Ready, and the rollout agrees
    const want = pods.length;
    const ready = (p: k8s.V1Pod) => p.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false;
    await poll(
      async () => {
        const now = await this.pods(name);
        return now.length >= want && now.some((p) => p.metadata?.uid !== victim.metadata?.uid && !pods.some((q) => q.metadata?.uid === p.metadata?.uid)) && now.every(ready);
      },
      {
        timeoutMs: this.service(name).ready.timeoutMs,
        onTimeout: async () => new TopasError('READINESS_TIMEOUT', `kubernetes: ${name} did not heal after pod ${victim.metadata!.name} was killed`, { problems: await this.podProblems(name) }),
      },
    );
    await this.waitReady(name);
  }

  async logs(name: string, opts: { tail?: number } = {}): Promise<string> {
    return this.podLogs(`${LABELS.run}=${labelValue(this.runId)},${LABELS.component}=${labelValue(name)}`, opts.tail ?? 200);
  }

  /** Logs of every pod the selector matches, through the API server, each line prefixed with its pod. */
  private async podLogs(selector: string, tail: number): Promise<string> {
    const list = await this.cluster.core.listNamespacedPod({ namespace: this.ns, labelSelector: selector });
    const parts: string[] = [];
    for (const p of list.items) {
      try {
        const text = await this.cluster.core.readNamespacedPodLog({ name: p.metadata!.name!, namespace: this.ns, tailLines: tail });
        parts.push(...String(text).split('\n').filter(Boolean).map((l) => `[${p.metadata!.name}] ${l}`));
      } catch (err) {
        parts.push(`[${p.metadata!.name}] (no logs: ${apiMessage(err)})`);
      }
    }
    return parts.join('\n') + (parts.length ? '\n' : '');
  }

  async exec(): Promise<{ code: number; stdout: string; stderr: string }> {
    throw new TopasError('BACKEND_UNAVAILABLE', 'kubernetes: exec into a pod is not supported yet');
  }

  state(): SutState {
    const data: KubeSutData = { cluster: this.cluster.options, parent: parentName(this.spec.name, this.runId), overrides: this.overrides, shaping: this.render.shaping === true };
    return { backend: 'kubernetes', runId: this.runId, app: this.spec.name, specFile: this.spec.file, startedAt: this.startedAt, data };
  }

  /** Lets the run live on (`topas up`): marks its parent kept, so sweeps leave it to `topas down` of this app. */
  async detach(): Promise<void> {
    if (this.disposed || this.ctx.readOnly) return;
    // the runner's shapes end with its run; the proxies stay with the SUT
    const reset = await this.kubeShaping?.resetShaped().catch((err: Error) => {
      this.ctx.log(`kubernetes: shapes not reset: ${err.message}`);
      return [];
    });
    if (reset?.length) this.ctx.log(`kubernetes: shapes of ${reset.join(', ')} reset at the end of the run`);
    // the runner Job attaches to a run the CLI owns: it neither keeps nor removes it
    if (!this.kept && !this.inCluster) {
      await this.cluster.core.patchNamespacedConfigMap(
        { name: parentName(this.spec.name, this.runId), namespace: this.ns, body: { metadata: { annotations: { [ANNOTATIONS.kept]: 'true' } } } },
        k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch),
      );
    }
    this.kept = true;
  }

  async dispose(): Promise<void> {
    if (this.disposed) return;
    this.disposed = true;
    await deleteRun(this.cluster, this.spec.name, this.runId, this.ctx.log);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.dispose();
  }
}

// removing a run is its own concept (delete-run.ts); these names stay importable from here
export { deleteRun, remaining } from './delete-run';
