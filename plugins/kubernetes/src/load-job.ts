import type * as k8s from '@kubernetes/client-node';
import type { TransportEvent } from 'topas';
import { apiMessage, statusOf, type Cluster } from './cluster';
import { ChannelEndpoint, type ChannelStore } from './channel';
import { LOADRUN, LOADRUN_API_VERSION, LoadRuns, configMapStore, followConfigMaps, followPods, installLoadRun, type LoadRunStatus, type LoadRunWorkerStatus } from './loadrun';
import { LABELS, labelValue, objectName, ownedBy, runLabels } from './manifests';
import { RUNNER_ACCOUNT } from './testrun';
import { runnerImage } from './runner-job';
import { collectLoadFiles, filesConfigMapData } from './load-files';

/**
 * The host's side of `topas load --backend kubernetes`: one LoadRun, one
 * channel ConfigMap per worker and one Indexed Job of N worker pods (the
 * runner image, `topas kube load-worker`), made when the run's first worker
 * starts, all labelled with the run and owned by its parent ConfigMap. The
 * CLI's load service sees N transports (pod-transport.ts); this group does
 * what they share: the objects, one watch of the channels, one of the pods.
 *
 * A worker whose pod ends (its container killed) is gone: its transport says
 * 'exit' and the run goes on without its share. The Job never brings it back
 * (backoffLimitPerIndex 0, so a failed index is not retried), and should a
 * replacement pod start all the same, it is not the channel's owner (the pod
 * the CLI saw first for that index) and exits without taking part.
 */

/** What the SUT hands the 'pods' transport (Sut.remoteWorkers.context). */
export interface PodWorkersContext {
  cluster: Cluster;
  app: string;
  /** the SUT's run id: the run label every object carries */
  sutRunId: string;
  /** the run's parent ConfigMap (everything here is owned by it) */
  parent: () => Promise<{ name: string; uid: string }>;
  env: NodeJS.ProcessEnv;
  log: (line: string) => void;
}

/** a finished Job (and its pods) goes by itself after this long, should nobody delete it */
const JOB_TTL_S = 600;
/** a worker that has said nothing this long after the Job was made never started */
const START_TIMEOUT_MS = 180_000;
const STATUS_EVERY_MS = 2000;
const INDEX_ANNOTATION = 'batch.kubernetes.io/job-completion-index';
/** the worker's pod ended or cannot start: the CLI's exit code for it when the container gave none */
const LOST = -1;

/** The ConfigMap with the files next to the script (Lua modules, data files). */
export function filesConfigMapName(loadRun: string): string {
  return `${loadRun}-files`;
}

/** The Secret with the run's variables, which the workers' init messages leave out. */
export function envSecretName(loadRun: string): string {
  return `${loadRun}-env`;
}

export function channelName(loadRun: string, index: number): string {
  return `${loadRun}-w${index}`;
}

export interface PodWorker {
  index: number;
  channel: ChannelEndpoint<unknown, unknown>;
  handler: (ev: TransportEvent<unknown>) => void;
  /** the pod the CLI saw first for this index: the only one that may take part */
  pod?: string;
  gone: boolean;
  stopped: boolean;
  exited: Promise<void>;
  markExited: () => void;
  status: LoadRunWorkerStatus;
  /** iterations in its last snapshot (the LoadRun's progress) */
  lastIterations: number;
}

type SerializedError = Extract<TransportEvent<unknown>, { type: 'error' }>['error'];

const groups = new Map<string, LoadRunGroup>();

/** The group of a run, made (and its objects created) by its first worker. */
export function groupFor(ctx: PodWorkersContext, runId: string, workers: number): LoadRunGroup {
  let g = groups.get(runId);
  if (!g) {
    g = new LoadRunGroup(ctx, runId, workers);
    groups.set(runId, g);
    const made = g;
    void made.start();
  }
  return g;
}

export class LoadRunGroup {
  readonly name: string;
  readonly labels: Record<string, string>;
  readonly workers: PodWorker[] = [];
  private created!: Promise<boolean>;
  private resolveCreated!: (ok: boolean) => void;
  private stops: Array<() => void> = [];
  private statusTimer?: NodeJS.Timeout;
  private startTimer?: NodeJS.Timeout;
  private disposed?: Promise<void>;
  private readonly loadRuns: LoadRuns;
  private phase: LoadRunStatus['phase'] = 'Starting';
  /** ms from the Job's creation to each worker's first message (its pod up and connected) */
  readonly firstMessageMs: number[] = [];
  private jobCreatedAt = 0;
  /** the figures the run logs at its end: when the workers were ready, when the load started, how late snapshots came */
  private readyAt: number[] = [];
  private loadStartedAt = 0;
  private readonly snapshotDelaysMs: number[] = [];
  /** the run's variables, from the first worker's init: they go in a Secret, never in a channel */
  private env?: Record<string, string>;
  private envKnown: Promise<void>;
  private resolveEnv!: () => void;

  constructor(
    private readonly ctx: PodWorkersContext,
    readonly runId: string,
    readonly count: number,
  ) {
    this.name = objectName(ctx.app, 'load', runId);
    this.labels = { ...runLabels(ctx.app, ctx.sutRunId), [LABELS.component]: 'load-worker', [LABELS.kind]: 'load', 'topas.dev/load-run': labelValue(runId) };
    this.loadRuns = new LoadRuns(ctx.cluster);
    this.created = new Promise((r) => (this.resolveCreated = r));
    this.envKnown = new Promise((r) => (this.resolveEnv = r));
    for (let i = 0; i < count; i++) {
      let markExited!: () => void;
      const exited = new Promise<void>((r) => (markExited = r));
      const w: PodWorker = {
        index: i,
        handler: () => undefined,
        gone: false,
        stopped: false,
        exited,
        markExited,
        status: { index: i, state: 'starting', messages: 0 },
        lastIterations: 0,
        channel: undefined as never,
      };
      w.channel = new ChannelEndpoint<unknown, unknown>(this.store(i), (msg) => this.fromWorker(w, msg), {
        side: 'down',
        onWriteError: (err) => ctx.log(`kubernetes: load worker ${i}: a message was not written (retried): ${apiMessage(err)}`),
      });
      this.workers.push(w);
    }
  }

  /** Writes wait until the objects exist; after a failed start, they go nowhere. */
  private store(index: number): ChannelStore {
    const real = configMapStore(this.ctx.cluster, channelName(this.name, index));
    return {
      write: async (fields) => {
        if (!(await this.created)) return;
        await real.write(fields);
      },
    };
  }

  /**
   * From the init the CLI sends every worker: the run's variables (--env,
   * the spec's env:; they may hold secrets) and the script's path on this
   * machine, whose neighbours (Lua modules, data files) the pods get.
   */
  setInit(env: Record<string, string>, script: string): void {
    if (this.env) return;
    this.env = env;
    this.script = script;
    this.resolveEnv();
  }

  private script = '';

  get label(): string {
    return `Job ${this.name}`;
  }

  async start(): Promise<void> {
    const { cluster, log } = this.ctx;
    const ns = cluster.namespace;
    try {
      const parent = await this.ctx.parent();
      const own = <T extends { metadata?: k8s.V1ObjectMeta }>(o: T) => ownedBy(o, parent);
      await installLoadRun(cluster, log);
      await this.loadRuns.create(own({ apiVersion: LOADRUN_API_VERSION, kind: LOADRUN.kind, metadata: { name: this.name, namespace: ns, labels: this.labels }, spec: { app: this.ctx.app, runId: this.runId, workers: this.count, job: this.name } }));
      // before the Job: a pod reads it as it starts
      await this.envKnown;
      await cluster.core.createNamespacedSecret({ namespace: ns, body: own({ metadata: { name: envSecretName(this.name), namespace: ns, labels: this.labels }, type: 'Opaque', stringData: { 'env.json': JSON.stringify(this.env ?? {}) } }) });
      const files = collectLoadFiles(this.script);
      if (files.left.length) log(`kubernetes: ${files.left.length} file(s) next to the load script do not fit into the run and stay behind (first: ${files.left[0]})`);
      await cluster.core.createNamespacedConfigMap({ namespace: ns, body: own({ metadata: { name: filesConfigMapName(this.name), namespace: ns, labels: this.labels }, ...filesConfigMapData(files.files) }) });
      for (let i = 0; i < this.count; i++) {
        await cluster.core.createNamespacedConfigMap({ namespace: ns, body: own({ metadata: { name: channelName(this.name, i), namespace: ns, labels: { ...this.labels, 'topas.dev/load-worker': String(i) } }, data: {} }) });
      }
      this.stops.push(followConfigMaps(cluster, { labelSelector: `topas.dev/load-run=${labelValue(this.runId)}` }, (ev) => this.onChannel(ev.type, ev.object)));
      this.stops.push(followPods(cluster, `topas.dev/load-run=${labelValue(this.runId)}`, (ev) => this.onPod(ev.type, ev.object)));
      await cluster.batch.createNamespacedJob({ namespace: ns, body: own(this.job()) });
      this.jobCreatedAt = Date.now();
      log(`kubernetes: LoadRun ${this.name} and an Indexed Job of ${this.count} load worker pod${this.count === 1 ? '' : 's'} (image ${runnerImage(this.ctx.env)}) created in namespace ${ns}`);
      this.resolveCreated(true);
    } catch (err) {
      this.resolveCreated(false);
      const e: SerializedError = { name: 'TopasError', message: `kubernetes: the load workers could not be made: ${apiMessage(err)}` };
      for (const w of this.workers) this.lose(w, e);
      return;
    }
    this.startTimer = setTimeout(() => {
      for (const w of this.workers) {
        if (w.status.messages === 0) this.lose(w, { name: 'WorkerError', message: `its pod did not start within ${START_TIMEOUT_MS / 1000} s${w.pod ? ` (pod ${w.pod})` : ' (no pod)'}` });
      }
    }, START_TIMEOUT_MS);
    this.startTimer.unref();
    this.statusTimer = setInterval(() => void this.writeStatus(), STATUS_EVERY_MS);
    this.statusTimer.unref();
  }

  private job(): k8s.V1Job {
    const ns = this.ctx.cluster.namespace;
    return {
      apiVersion: 'batch/v1',
      kind: 'Job',
      metadata: { name: this.name, namespace: ns, labels: this.labels },
      spec: {
        completionMode: 'Indexed',
        completions: this.count,
        parallelism: this.count,
        // a worker that died stays dead: its index is not retried, and the others go on
        backoffLimitPerIndex: 0,
        maxFailedIndexes: this.count,
        ttlSecondsAfterFinished: JOB_TTL_S,
        template: {
          metadata: { labels: this.labels },
          spec: {
            restartPolicy: 'Never',
            serviceAccountName: RUNNER_ACCOUNT,
            enableServiceLinks: false,
            terminationGracePeriodSeconds: 5,
            containers: [
              {
                name: 'load-worker',
                image: runnerImage(this.ctx.env),
                imagePullPolicy: 'IfNotPresent',
                command: ['topas', 'kube', 'load-worker', '--loadrun', this.name],
                env: [
                  { name: 'TOPAS_KUBE_RUNNER', value: '1' },
                  { name: 'TOPAS_KUBE_NAMESPACE', value: ns },
                  { name: 'POD_NAME', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } },
                  { name: 'NO_COLOR', value: '1' },
                ],
              },
            ],
          },
        },
      },
    };
  }

  private onChannel(type: string, cm: k8s.V1ConfigMap): void {
    const index = Number(cm.metadata?.labels?.['topas.dev/load-worker']);
    const w = this.workers[index];
    if (!w || w.gone) return;
    if (type === 'DELETED') return this.lose(w, { name: 'WorkerError', message: `its channel ConfigMap ${cm.metadata?.name} was deleted` });
    w.channel.receive(cm.data);
  }

  private fromWorker(w: PodWorker, msg: unknown): void {
    if (w.gone) return;
    if (w.status.messages === 0 && this.jobCreatedAt) this.firstMessageMs[w.index] = Date.now() - this.jobCreatedAt;
    w.status.messages++;
    w.status.lastReportAt = new Date().toISOString();
    const m = msg as { type?: string; snapshot?: { startMs?: number; endMs?: number; metrics?: Record<string, { total?: { sum?: number } }> } };
    if (m.type === 'load-ready') {
      w.status.state = 'ready';
      this.readyAt[w.index] = Date.now();
    }
    if (m.type === 'load-metrics') {
      w.status.state = 'running';
      // the worker stamps a snapshot when it takes it; pods of one node read the CLI's clock
      if (m.snapshot?.endMs) this.snapshotDelaysMs.push(Date.now() - m.snapshot.endMs);
      if (!this.loadStartedAt && m.snapshot?.startMs) this.loadStartedAt = m.snapshot.startMs;
      w.lastIterations = m.snapshot?.metrics?.iterations?.total?.sum ?? w.lastIterations;
    }
    if (m.type === 'load-done') {
      w.status.state = 'done';
      w.lastIterations = m.snapshot?.metrics?.iterations?.total?.sum ?? w.lastIterations;
    }
    w.handler({ type: 'message', message: msg });
  }

  private onPod(type: string, pod: k8s.V1Pod): void {
    const index = Number(pod.metadata?.annotations?.[INDEX_ANNOTATION] ?? pod.metadata?.labels?.[INDEX_ANNOTATION]);
    const w = this.workers[index];
    const name = pod.metadata?.name;
    if (!w || !name || w.gone) return;
    if (w.pod === undefined) {
      if (type === 'DELETED') return;
      // the first pod of an index owns its channel: a replacement reads another owner and leaves
      w.pod = name;
      w.status.pod = name;
      void this.writeOwner(index, name);
    }
    if (w.pod !== name) return;
    const cs = pod.status?.containerStatuses?.[0];
    const term = cs?.state?.terminated;
    const waiting = cs?.state?.waiting;
    if (type === 'DELETED') return this.exit(w, LOST, `its pod ${name} was deleted`);
    if (term || pod.status?.phase === 'Failed' || pod.status?.phase === 'Succeeded') {
      const code = term?.exitCode ?? (pod.status?.phase === 'Succeeded' ? 0 : LOST);
      return this.exit(w, code, `its pod ${name} ended (${term?.reason ?? pod.status?.phase}${term ? `, exit code ${term.exitCode}` : ''})`);
    }
    if (waiting && /ErrImage|ImagePull|InvalidImageName|CreateContainer/.test(waiting.reason ?? '')) {
      this.lose(w, { name: 'WorkerError', message: `its pod ${name} cannot start: ${waiting.reason}${waiting.message ? ` (${waiting.message})` : ''}; build the image with scripts/build-runner-image.sh, or set TOPAS_RUNNER_IMAGE` });
    }
  }

  private async writeOwner(index: number, pod: string): Promise<void> {
    await this.created;
    await configMapStore(this.ctx.cluster, channelName(this.name, index))
      .write({ owner: pod })
      .catch((err: unknown) => this.ctx.log(`kubernetes: load worker ${index}: owner not written: ${apiMessage(err)}`));
  }

  /** The worker's pod ended: after a stop that is its end, else it was lost. */
  private exit(w: PodWorker, code: number, why: string): void {
    if (w.gone) return;
    if (!w.stopped && code !== 0) w.handler({ type: 'error', error: { name: 'WorkerError', message: why } });
    this.markGone(w, code);
  }

  private lose(w: PodWorker, error: SerializedError): void {
    if (w.gone) return;
    w.status.reason = error.message;
    w.handler({ type: 'error', error });
    this.markGone(w, LOST);
  }

  private markGone(w: PodWorker, code: number): void {
    w.gone = true;
    w.channel.close();
    if (!w.stopped) {
      w.status.state = 'lost';
      // a pod of this index that starts later reads this and leaves
      void this.created.then(async (ok) => {
        if (ok) await configMapStore(this.ctx.cluster, channelName(this.name, w.index)).write({ closed: 'lost' }).catch(() => undefined);
      });
    } else if (w.status.state !== 'lost') w.status.state = 'stopped';
    w.handler({ type: 'exit', code: code === LOST ? null : code, ...(code === 137 ? { signal: 'SIGKILL' } : {}) });
    w.markExited();
    void this.writeStatus();
  }

  /** A transport's stop: `shutdown` sent, `graceMs` for its pod to end, then it counts as gone; the last one removes the run's objects. */
  async stopWorker(w: PodWorker, shutdown: unknown, graceMs: number): Promise<void> {
    if (!w.gone) {
      w.stopped = true;
      if (shutdown !== undefined) w.channel.send(shutdown);
      const timer = setTimeout(() => this.markGone(w, LOST), shutdown === undefined ? 0 : graceMs);
      await w.exited;
      clearTimeout(timer);
    }
    w.stopped = true;
    if (this.workers.every((x) => x.stopped || x.gone)) await this.dispose();
  }

  private async writeStatus(): Promise<void> {
    if (!(await this.created) || this.disposed) return;
    const ws = this.workers.map((w) => w.status);
    if (ws.some((s) => s.state === 'running')) this.phase = 'Running';
    if (ws.every((s) => s.state === 'done' || s.state === 'stopped' || s.state === 'lost')) this.phase = ws.some((s) => s.state === 'lost') ? 'Partial' : 'Finished';
    const iterations = this.workers.reduce((n, w) => n + w.lastIterations, 0);
    await this.loadRuns.patchStatus(this.name, { phase: this.phase, workers: ws, iterations }).catch(() => undefined);
  }

  /** Stops the watches and deletes the run's objects (the Job's pods with it), waiting until its pods are gone. */
  dispose(): Promise<void> {
    this.disposed ??= (async () => {
      if (this.statusTimer) clearInterval(this.statusTimer);
      if (this.startTimer) clearTimeout(this.startTimer);
      groups.delete(this.runId);
      for (const w of this.workers) w.channel.close();
      if (!(await this.created)) {
        for (const s of this.stops) s();
        return;
      }
      await this.writeStatusFinal();
      this.logFigures();
      for (const s of this.stops) s();
      const { cluster } = this.ctx;
      const namespace = cluster.namespace;
      const labelSelector = `topas.dev/load-run=${labelValue(this.runId)}`;
      const ignore = (err: unknown) => {
        if (statusOf(err) !== 404) this.ctx.log(`kubernetes: load run cleanup: ${apiMessage(err)}`);
      };
      await cluster.batch.deleteNamespacedJob({ name: this.name, namespace, body: { propagationPolicy: 'Background' } }).catch(ignore);
      await cluster.core.deleteCollectionNamespacedConfigMap({ namespace, labelSelector }).catch(ignore);
      await cluster.core.deleteCollectionNamespacedSecret({ namespace, labelSelector }).catch(ignore);
      await this.loadRuns.delete(this.name).catch(ignore);
      // the pods go with the Job; those that do not end in time (a node that never confirms) are forced
      const deadline = Date.now() + 30_000;
      for (;;) {
        const pods = await cluster.core.listNamespacedPod({ namespace, labelSelector }).catch(() => ({ items: [] as k8s.V1Pod[] }));
        if (pods.items.length === 0) break;
        if (Date.now() > deadline) {
          await cluster.core.deleteCollectionNamespacedPod({ namespace, labelSelector, gracePeriodSeconds: 0 }).catch(ignore);
          break;
        }
        await new Promise((r) => setTimeout(r, 300));
      }
    })();
    return this.disposed;
  }

  private logFigures(): void {
    if (!this.jobCreatedAt || this.readyAt.length === 0) return;
    const ready = this.readyAt.filter((t) => t !== undefined);
    const d = [...this.snapshotDelaysMs].sort((a, b) => a - b);
    const at = (q: number) => d[Math.min(d.length - 1, Math.floor(q * d.length))];
    const parts = [`Job created to ${ready.length === this.count ? 'all' : `${ready.length} of ${this.count}`} workers ready ${Math.max(...ready) - this.jobCreatedAt} ms`];
    if (this.loadStartedAt) parts.push(`to the first iteration ${Math.round(this.loadStartedAt - this.jobCreatedAt)} ms`);
    if (d.length) parts.push(`snapshots through the API server: median ${Math.round(at(0.5))} ms, p95 ${Math.round(at(0.95))} ms, max ${Math.round(d[d.length - 1])} ms (${d.length})`);
    const writes = this.workers.reduce((n, w) => n + w.channel.writes, 0);
    this.ctx.log(`kubernetes: load workers: ${parts.join('; ')}; ${writes} channel writes by the CLI`);
  }

  private async writeStatusFinal(): Promise<void> {
    const ws = this.workers.map((w) => w.status);
    this.phase = ws.some((s) => s.state === 'lost') ? 'Partial' : ws.every((s) => s.state === 'done' || s.state === 'stopped') ? 'Finished' : 'Stopped';
    await this.loadRuns.patchStatus(this.name, { phase: this.phase, workers: ws, iterations: this.workers.reduce((n, w) => n + w.lastIterations, 0) }).catch(() => undefined);
  }
}
