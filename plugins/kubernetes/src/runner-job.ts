import * as fs from 'node:fs';
import * as path from 'node:path';
import type * as k8s from '@kubernetes/client-node';
import { type PlaybookSummary, type RemoteRunHooks, type RemoteRunRequest, type RemoteRunResult, type RemoteRunner, type ScenarioEvent, type ScenarioResult, type SutState } from 'topas';
import { apiMessage, statusOf, type Cluster } from './cluster';
import { LABELS, labelValue, objectName, ownedBy, runLabels } from './manifests';
import { RUNNER_ACCOUNT, TESTRUN, TESTRUN_API_VERSION, TEST_RUN_LABEL, TestRuns, gitParts, installTestRun, unseen, type TestRunObject, type TestRunSpec } from './testrun';

const POLL_MS = 300;
/** a finished runner Job (and its pod) goes by itself after this long, should nobody delete it */
const JOB_TTL_S = 600;
/** how long the runner's pod may take to start (image on the node, scheduling) before the run errs */
const START_TIMEOUT_MS = 120_000;
/** how long a runner may wait for its app's queue (another run of the app: src/run-queue.ts) within its Job's deadline */
export const QUEUE_ALLOWANCE_S = 6 * 3600;

/** The runner image: TOPAS_RUNNER_IMAGE, else `topas-runner:<topas version>` (scripts/build-runner-image.sh builds it). */
export function runnerImage(env: NodeJS.ProcessEnv): string {
  return env.TOPAS_RUNNER_IMAGE || `topas-runner:${topasVersion()}`;
}

/** topas's version: its package.json, found upwards from this file (source, dist/ or an installed package). */
export function topasVersion(): string {
  for (let dir = __dirname; dir !== path.dirname(dir); dir = path.dirname(dir)) {
    try {
      const pj = JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8')) as { name?: string; version?: string };
      if (pj.name === 'topas' && pj.version) return pj.version;
    } catch {
      // not here
    }
  }
  return 'latest';
}

/** The runner Job's spec (a run's Job, and a CronJob's jobTemplate): the runner image running `topas kube runner ARGS`. */
export function runnerJobSpec(o: { ns: string; labels: Record<string, string>; image: string; deadlineS: number; args: string[]; attachOnly: boolean }): k8s.V1JobSpec {
  return {
    backoffLimit: 0,
    ttlSecondsAfterFinished: JOB_TTL_S,
    activeDeadlineSeconds: o.deadlineS,
    template: {
      metadata: { labels: o.labels },
      spec: {
        restartPolicy: 'Never',
        serviceAccountName: RUNNER_ACCOUNT,
        enableServiceLinks: false,
        terminationGracePeriodSeconds: 5,
        containers: [
          {
            name: 'runner',
            image: o.image,
            imagePullPolicy: 'IfNotPresent',
            command: ['topas', 'kube', 'runner', ...o.args],
            env: [
              { name: 'TOPAS_KUBE_RUNNER', value: '1' },
              // a run's Job attaches to the CLI's SUT and never stands one up; a CronJob's stands its own up
              ...(o.attachOnly ? [{ name: 'TOPAS_KUBE_ATTACH_ONLY', value: '1' }] : []),
              { name: 'TOPAS_KUBE_NAMESPACE', value: o.ns },
              // its own image: the shaping proxies of an app a scheduled runner stands up run it too
              { name: 'TOPAS_RUNNER_IMAGE', value: o.image },
              { name: 'POD_NAME', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } },
              { name: 'NO_COLOR', value: '1' },
            ],
          },
        ],
      },
    },
  };
}

export interface RunnerContext {
  cluster: Cluster;
  app: string;
  /** the run's parent object: everything made here is owned by it */
  parent: () => { name: string; uid: string };
  sutState: () => SutState;
  env: NodeJS.ProcessEnv;
}

/**
 * `topas run --backend kubernetes`: the scenarios run in a Job in the cluster
 * (the runner image, `topas kube runner`), attached to the SUT this process
 * stood up. Files go in a ConfigMap, env in a Secret, the run is a TestRun;
 * what the runner writes to the TestRun's status comes back through the API
 * server only. Everything is owned by the run's parent and deleted when the
 * run ends, or on Ctrl-C.
 */
export class KubeRemoteRunner implements RemoteRunner {
  constructor(private readonly ctx: RunnerContext) {}

  async run(req: RemoteRunRequest, hooks: RemoteRunHooks): Promise<RemoteRunResult> {
    // --workers N: N runner pods, a playbook's instances meeting in a sync Deployment (spread-runner.ts)
    if ((req.workers ?? 1) > 1) return (await import('./spread-runner')).runSpread(this.ctx, req, hooks, req.workers!);
    const { cluster } = this.ctx;
    const ns = cluster.namespace;
    await installTestRun(cluster, hooks.log);
    const name = objectName(this.ctx.app, 'runner', req.runId);
    const labels = { ...runLabels(this.ctx.app, this.ctx.sutState().runId), [LABELS.component]: 'runner', [LABELS.kind]: 'runner', [TEST_RUN_LABEL]: labelValue(req.runId) };
    const owner = this.ctx.parent();
    const own = <T extends { metadata?: k8s.V1ObjectMeta }>(o: T) => ownedBy(o, owner);
    const testRuns = new TestRuns(cluster);
    const made: Array<() => Promise<unknown>> = [];
    const cleanup = async () => {
      for (const undo of made.reverse()) await undo().catch(() => undefined);
    };
    try {
      const files = Object.fromEntries(req.files.map((f, i) => [`f${i}`, f.content.toString('base64')]));
      const index = JSON.stringify(req.files.map((f, i) => ({ key: `f${i}`, path: f.path })));
      await cluster.core.createNamespacedConfigMap({ namespace: ns, body: own({ metadata: { name, namespace: ns, labels }, data: { 'index.json': index }, binaryData: files }) });
      made.push(() => cluster.core.deleteNamespacedConfigMap({ name, namespace: ns }));
      // a Git source's credentials go in the Secret only; the TestRun names the commit the CLI validated, which the runner fetches
      const git = gitParts(req.git, { pinned: true });
      await cluster.core.createNamespacedSecret({ namespace: ns, body: own({ metadata: { name, namespace: ns, labels }, type: 'Opaque', stringData: { 'env.json': JSON.stringify(req.env), ...git.secret } }) });
      made.push(() => cluster.core.deleteNamespacedSecret({ name, namespace: ns }));
      const sut = this.ctx.sutState();
      const spec: TestRunSpec = {
        app: this.ctx.app,
        runId: req.runId,
        configMap: name,
        secret: name,
        specFile: req.specFile,
        cwd: req.cwd,
        targets: req.targets,
        parallel: req.parallel,
        timeoutMs: req.timeoutMs,
        continueOnFailure: req.continueOnFailure,
        sut: { runId: sut.runId, startedAt: sut.startedAt, data: sut.data },
        ...(git.spec ? { git: git.spec } : {}),
      };
      await testRuns.create(own({ apiVersion: TESTRUN_API_VERSION, kind: TESTRUN.kind, metadata: { name, namespace: ns, labels }, spec }) as TestRunObject);
      // a run that ended keeps its TestRun as history (`topas test status --backend kubernetes`); an interrupted one goes
      made.push(async () => {
        const tr = await testRuns.get(name).catch(() => undefined);
        // interrupted: the runner may still write a result on its way out; the run is not one to keep
        if (!tr?.status?.result || hooks.signal.aborted) return testRuns.delete(name);
        await testRuns.keepAsHistory(name);
        await testRuns.pruneHistory(this.ctx.app);
      });
      const createdAt = Date.now();
      await cluster.batch.createNamespacedJob({ namespace: ns, body: own(this.job(name, labels, req)) });
      made.push(() => cluster.batch.deleteNamespacedJob({ name, namespace: ns, body: { propagationPolicy: 'Background' } }));
      hooks.log(`kubernetes: TestRun ${name} and runner Job ${name} (image ${runnerImage(this.ctx.env)}) created in namespace ${ns}`);
      return await this.follow(name, req, hooks, createdAt);
    } finally {
      await cleanup();
    }
  }

  private job(name: string, labels: Record<string, string>, req: RemoteRunRequest): k8s.V1Job {
    const ns = this.ctx.cluster.namespace;
    // the whole run's time, plus room to start and to attach, and to wait for the app's queue
    const deadlineS = Math.ceil((req.timeoutMs * Math.max(1, req.targets.length)) / 1000) + 300 + QUEUE_ALLOWANCE_S;
    return {
      apiVersion: 'batch/v1',
      kind: 'Job',
      metadata: { name, namespace: ns, labels },
      spec: runnerJobSpec({ ns, labels, image: runnerImage(this.ctx.env), deadlineS, args: ['--testrun', name], attachOnly: true }),
    };
  }

  /** Reads the TestRun's status until it has a result: new log lines and events go to the hooks as they appear. */
  private async follow(name: string, req: RemoteRunRequest, hooks: RemoteRunHooks, createdAt: number): Promise<RemoteRunResult> {
    const { cluster } = this.ctx;
    const testRuns = new TestRuns(cluster);
    let logSeen = 0;
    let eventSeen = 0;
    let scenarioSeen = 0;
    let firstStepShown = false;
    let phaseShown: string | undefined;
    // the run's own time counts from when it got its turn, not from when it started waiting for it
    let runningSince: number | undefined;
    const overallMs = req.timeoutMs * Math.max(1, req.targets.length) + START_TIMEOUT_MS + 60_000;
    for (;;) {
      if (hooks.signal.aborted) {
        hooks.log('kubernetes: interrupted; deleting the runner Job and the TestRun');
        return { results: [], error: { name: 'TopasError', code: 'INTERRUPTED', message: 'interrupted' } };
      }
      let tr: TestRunObject;
      try {
        tr = await testRuns.get(name);
      } catch (err) {
        if (statusOf(err) === 404) return { results: [], error: { name: 'TopasError', code: 'RUNNER_FAILED', message: `kubernetes: TestRun ${name} was deleted while the run went on` } };
        throw err;
      }
      const st = tr.status ?? {};
      if (st.phase && st.phase !== phaseShown) {
        phaseShown = st.phase;
        if (st.phase === 'Pending') {
          const why = `waiting for its turn: TestRun ${st.waitingFor ?? '?'} of app ${this.ctx.app} runs (one run of an app at a time)`;
          hooks.log(`kubernetes: ${why}`);
          hooks.onPhase?.('pending', why);
        } else if (st.phase === 'Running') {
          runningSince = Date.now();
          hooks.onPhase?.('running');
        }
      }
      if (st.firstStepAt && !firstStepShown) {
        firstStepShown = true;
        hooks.log(`kubernetes: runner Job created to first step: ${Date.parse(st.firstStepAt) - createdAt} ms`);
      }
      const log = unseen(st.log, st.logTotal, logSeen);
      for (const l of log.entries) hooks.onLog({ ...l, level: l.level as 'info' });
      if (log.missed) hooks.log(`kubernetes: ${log.missed} log line(s) of the runner were missed (only the last ${st.log?.length ?? 0} are kept in the TestRun)`);
      logSeen = log.total;
      const events = unseen(st.events, st.eventTotal, eventSeen);
      for (const e of events.entries) hooks.onEvent(e.scenarioRunId, e.event as unknown as ScenarioEvent);
      eventSeen = events.total;
      const scenarios = unseen(st.scenarios, st.scenarioTotal, scenarioSeen);
      for (const s of scenarios.entries) hooks.onScenarioEnd?.(s.id, s.state, s.durationMs);
      scenarioSeen = scenarios.total;
      if (st.result) {
        const error = st.result.error as RemoteRunResult['error'];
        return { results: st.result.results as ScenarioResult[], playbooks: st.result.playbooks as PlaybookSummary[] | undefined, ...(error && st.result.state === 'error' && (st.result.results ?? []).length === 0 ? { error } : {}) };
      }
      const failure = await this.jobFailure(name, st.phase === undefined ? createdAt : undefined);
      if (failure) return { results: [], error: { name: 'TopasError', code: 'RUNNER_FAILED', message: failure.message, hint: failure.hint } };
      if (runningSince !== undefined && Date.now() - runningSince > overallMs) return { results: [], error: { name: 'TopasError', code: 'TIMEOUT', message: `kubernetes: the runner Job did not finish within ${Math.round(overallMs / 1000)} s` } };
      await new Promise((r) => setTimeout(r, POLL_MS));
    }
  }

  /** The runner ended (or never started) without a result: why, with its pod's last log lines. */
  private async jobFailure(name: string, startedWaitingAt?: number): Promise<{ message: string; hint?: string } | undefined> {
    const { cluster } = this.ctx;
    const ns = cluster.namespace;
    const pods = (await cluster.core.listNamespacedPod({ namespace: ns, labelSelector: `job-name=${name}` })).items;
    const pod = pods[0];
    const cs = pod?.status?.containerStatuses?.[0];
    const waiting = cs?.state?.waiting;
    if (waiting && /ErrImage|ImagePull|InvalidImageName/.test(waiting.reason ?? '')) {
      return { message: `kubernetes: the runner image cannot start: ${waiting.reason}${waiting.message ? ` (${waiting.message})` : ''}`, hint: 'build it with scripts/build-runner-image.sh, or set TOPAS_RUNNER_IMAGE' };
    }
    if (!pod && startedWaitingAt === undefined) {
      // the runner's pod is gone (deleted, evicted, its node lost) and the Job gave up: no result will come
      const job = await cluster.batch.readNamespacedJob({ name, namespace: ns }).catch(() => undefined);
      const failed = job?.status?.conditions?.find((c) => c.type === 'Failed' && c.status === 'True');
      if (failed) return { message: `kubernetes: the runner Job failed without a result (${failed.reason ?? 'Failed'}${failed.message ? `: ${failed.message}` : ''})` };
    }
    const ended = pod?.status?.phase === 'Failed' || pod?.status?.phase === 'Succeeded';
    if (ended) {
      // the last status write may trail the exit: read the TestRun once more before calling it a crash
      const tr = await new TestRuns(cluster).get(name).catch(() => undefined);
      if (tr?.status?.result) return undefined;
      const logs = await cluster.core.readNamespacedPodLog({ name: pod.metadata!.name!, namespace: ns, tailLines: 20 }).catch((e: unknown) => `(no logs: ${apiMessage(e)})`);
      return { message: `kubernetes: the runner exited (${cs?.state?.terminated?.exitCode ?? '?'}) without a result; its last lines:\n${String(logs).trim()}` };
    }
    if (startedWaitingAt !== undefined && Date.now() - startedWaitingAt > START_TIMEOUT_MS) {
      const job = await cluster.batch.readNamespacedJob({ name, namespace: ns }).catch(() => undefined);
      const cond = job?.status?.conditions?.find((c) => c.status === 'True');
      return { message: `kubernetes: the runner did not start within ${START_TIMEOUT_MS / 1000} s (${pod ? `pod ${pod.status?.phase}${waiting ? `, ${waiting.reason}` : ''}` : 'no pod'}${cond ? `; Job ${cond.type}: ${cond.message ?? cond.reason}` : ''})` };
    }
    return undefined;
  }
}
