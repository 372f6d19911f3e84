import { randomBytes } from 'node:crypto';
import type * as k8s from '@kubernetes/client-node';
import type { PlaybookSummary, RemoteLostShare, RemoteRunHooks, RemoteRunRequest, RemoteRunResult, ScenarioEvent, ScenarioResult } from 'topas';
import { apiMessage, statusOf } from './cluster';
import { LABELS, labelValue, objectName, ownedBy, runLabels } from './manifests';
import { runnerImage, runnerJobSpec, type RunnerContext } from './runner-job';
import { createSyncService, syncPodProblem, SYNC_TOKEN_KEY } from './sync-deployment';
import { TESTRUN, TESTRUN_API_VERSION, TestRuns, gitParts, installTestRun, type TestRunObject, type TestRunSpec, type TestRunStatus } from './testrun';

const POLL_MS = 300;
const START_TIMEOUT_MS = 120_000;
/** the annotation (and label) the Job controller gives each pod of an Indexed Job */
const INDEX_ANNOTATION = 'batch.kubernetes.io/job-completion-index';

/**
 * `topas run --backend kubernetes --workers N`: the scenarios and a
 * playbook's instances placed over N runner pods (one Indexed Job; pod k
 * runs share k of N, found by JOB_COMPLETION_INDEX), each reporting through
 * a TestRun of its own. A playbook's instances meet in a sync Deployment
 * (`topas sync-server`) that the runners reach by its Service's DNS name, so
 * a barrier counts the instances of every pod. The CLI reads the N TestRuns
 * through the API server and merges them into one result.
 */
export async function runSpread(ctx: RunnerContext, req: RemoteRunRequest, hooks: RemoteRunHooks, workers: number): Promise<RemoteRunResult> {
  const { cluster } = ctx;
  const ns = cluster.namespace;
  await installTestRun(cluster, hooks.log);
  const name = objectName(ctx.app, 'runner', req.runId);
  const labels = { ...runLabels(ctx.app, ctx.sutState().runId), [LABELS.component]: 'runner', [LABELS.kind]: 'runner', 'topas.dev/test-run': labelValue(req.runId) };
  const own = <T extends { metadata?: k8s.V1ObjectMeta }>(o: T) => ownedBy(o, ctx.parent());
  const testRuns = new TestRuns(cluster);
  const made: Array<() => Promise<unknown>> = [];
  try {
    const files = Object.fromEntries(req.files.map((f, i) => [`f${i}`, f.content.toString('base64')]));
    const index = JSON.stringify(req.files.map((f, i) => ({ key: `f${i}`, path: f.path })));
    await cluster.core.createNamespacedConfigMap({ namespace: ns, body: own({ metadata: { name, namespace: ns, labels }, data: { 'index.json': index }, binaryData: files }) });
    made.push(() => cluster.core.deleteNamespacedConfigMap({ name, namespace: ns }));
    const token = randomBytes(24).toString('hex');
    // every runner pod fetches the Git source itself, all at the commit the CLI validated
    const git = gitParts(req.git, { pinned: true });
    await cluster.core.createNamespacedSecret({ namespace: ns, body: own({ metadata: { name, namespace: ns, labels }, type: 'Opaque', stringData: { 'env.json': JSON.stringify(req.env), [SYNC_TOKEN_KEY]: token, ...git.secret } }) });
    made.push(() => cluster.core.deleteNamespacedSecret({ name, namespace: ns }));
    const image = runnerImage(ctx.env);
    // only playbooks coordinate: scenarios alone need no sync service
    const sync = req.targets.some((t) => /\.ya?ml$/i.test(t)) ? await createSyncService(cluster, { app: ctx.app, runId: req.runId, namespace: ns, labels, image, secret: name }, own) : undefined;
    if (sync) made.push(...sync.undo);
    const sut = ctx.sutState();
    const names = Array.from({ length: workers }, (_, k) => `${name}-${k}`);
    for (const [k, trName] of names.entries()) {
      const spec: TestRunSpec = {
        app: ctx.app,
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
        shard: { index: k, count: workers },
        ...(sync ? { sync: { url: sync.url, run: req.runId } } : {}),
        ...(git.spec ? { git: git.spec } : {}),
      };
      await testRuns.create(own({ apiVersion: TESTRUN_API_VERSION, kind: TESTRUN.kind, metadata: { name: trName, namespace: ns, labels }, spec }) as TestRunObject);
      made.push(() => testRuns.delete(trName));
    }
    const createdAt = Date.now();
    const deadlineS = Math.ceil((req.timeoutMs * Math.max(1, req.targets.length)) / 1000) + 300;
    const jobSpec = runnerJobSpec({ ns, labels, image, deadlineS, args: ['--testrun', name, '--indexed'], attachOnly: true });
    await cluster.batch.createNamespacedJob({ namespace: ns, body: own({ apiVersion: 'batch/v1', kind: 'Job', metadata: { name, namespace: ns, labels }, spec: spreadJobSpec(jobSpec, workers) }) });
    made.push(() => cluster.batch.deleteNamespacedJob({ name, namespace: ns, body: { propagationPolicy: 'Background' } }));
    hooks.log(`kubernetes: ${workers} runner pods (Indexed Job ${name}, TestRuns ${names[0]}..${names.length - 1})${sync ? ` and sync Deployment ${sync.name} (${sync.url})` : ''} created in namespace ${ns}`);
    return await follow(ctx, { job: name, syncName: sync?.name, names, req, hooks, createdAt });
  } finally {
    for (const undo of made.reverse()) await undo().catch(() => undefined);
  }
}

/**
 * The Indexed Job of N runner pods. A failed (or deleted) pod fails its index
 * only (backoffLimitPerIndex 0, no retry: its share's instances are over);
 * with a Job-wide backoffLimit the controller would delete the other pods.
 */
export function spreadJobSpec(base: k8s.V1JobSpec, workers: number): k8s.V1JobSpec {
  const { backoffLimit: _whole, ...rest } = base;
  return { ...rest, completionMode: 'Indexed', completions: workers, parallelism: workers, backoffLimitPerIndex: 0 };
}

interface Shard {
  name: string;
  logSeen: number;
  eventSeen: number;
  result?: NonNullable<TestRunStatus['result']>;
  /** the pod ended without a result, or never started */
  failure?: string;
  /** when the failure was seen (epoch ms) */
  failedAtMs?: number;
  /** the failed pod's last log lines, shown once (not in each of its instances' errors) */
  lastLines?: string;
  failureShown?: boolean;
  /** the runner pod seen for this share (a deleted pod leaves no trace but its absence) */
  pod?: string;
  firstStepAt?: string;
}

async function follow(ctx: RunnerContext, o: { job: string; syncName?: string; names: string[]; req: RemoteRunRequest; hooks: RemoteRunHooks; createdAt: number }): Promise<RemoteRunResult> {
  const { cluster } = ctx;
  const { hooks } = o;
  const testRuns = new TestRuns(cluster);
  const shards: Shard[] = o.names.map((name) => ({ name, logSeen: 0, eventSeen: 0 }));
  const overallMs = o.req.timeoutMs * Math.max(1, o.req.targets.length) + START_TIMEOUT_MS + 60_000;
  let firstStepShown = false;
  for (;;) {
    if (hooks.signal.aborted) {
      hooks.log('kubernetes: interrupted; deleting the runner pods, the sync Deployment and the TestRuns');
      return { results: [], error: { name: 'TopasError', code: 'INTERRUPTED', message: 'interrupted' } };
    }
    for (const s of shards) {
      if (s.result || s.failure) continue;
      let tr: TestRunObject;
      try {
        tr = await testRuns.get(s.name);
      } catch (err) {
        if (statusOf(err) === 404) return { results: [], error: { name: 'TopasError', code: 'RUNNER_FAILED', message: `kubernetes: TestRun ${s.name} was deleted while the run went on` } };
        throw err;
      }
      const st = tr.status ?? {};
      if (st.firstStepAt) s.firstStepAt = st.firstStepAt;
      const log = st.log ?? [];
      const logTotal = st.logTotal ?? log.length;
      for (let i = Math.max(0, s.logSeen - (logTotal - log.length)); i < log.length; i++) hooks.onLog({ ...log[i], level: log[i].level as 'info' });
      if (logTotal - log.length > s.logSeen) hooks.log(`kubernetes: ${logTotal - log.length - s.logSeen} log line(s) of ${s.name} were missed`);
      s.logSeen = logTotal;
      const events = st.events ?? [];
      const eventTotal = st.eventTotal ?? events.length;
      for (let i = Math.max(0, s.eventSeen - (eventTotal - events.length)); i < events.length; i++) hooks.onEvent(events[i].scenarioRunId, events[i].event as unknown as ScenarioEvent);
      s.eventSeen = eventTotal;
      if (st.result) s.result = st.result;
    }
    if (!firstStepShown && shards.every((s) => s.firstStepAt || s.result)) {
      firstStepShown = true;
      const ms = shards.filter((s) => s.firstStepAt).map((s) => Date.parse(s.firstStepAt!) - o.createdAt);
      if (ms.length) hooks.log(`kubernetes: ${shards.length} runner pods created to first step: ${Math.min(...ms)}-${Math.max(...ms)} ms`);
    }
    if (shards.every((s) => s.result || s.failure)) return merge(shards);
    const problem = await podProblems(ctx, o.job, shards, o.createdAt);
    for (const s of shards) {
      if (!s.failure || s.failureShown) continue;
      s.failureShown = true;
      hooks.log(`kubernetes: runner pod ${s.pod ?? `of TestRun ${s.name}`} ${s.failure}${s.lastLines ? `; its last lines:\n${s.lastLines}` : ''}`);
    }
    const syncProblem = o.syncName ? await syncPodProblem(cluster, o.syncName).catch(() => undefined) : undefined;
    if (syncProblem) return { ...merge(shards), error: { name: 'TopasError', code: 'RUNNER_FAILED', message: `kubernetes: ${syncProblem}`, hint: 'build the runner image with scripts/build-runner-image.sh, or set TOPAS_RUNNER_IMAGE' } };
    if (problem) return { ...merge(shards), error: { name: 'TopasError', code: 'RUNNER_FAILED', message: problem.message, hint: problem.hint } };
    if (Date.now() - o.createdAt > overallMs) return { ...merge(shards), error: { name: 'TopasError', code: 'TIMEOUT', message: `kubernetes: the runner pods did not finish within ${Math.round(overallMs / 1000)} s` } };
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
}

/**
 * Runner pods that cannot start (image) fail the run at once; one that ended
 * without writing a result is marked so the others are still followed (their
 * barriers fail, naming its instances, through the sync server).
 */
async function podProblems(ctx: RunnerContext, job: string, shards: Shard[], createdAt: number): Promise<{ message: string; hint?: string } | undefined> {
  const { cluster } = ctx;
  const ns = cluster.namespace;
  const pods = (await cluster.core.listNamespacedPod({ namespace: ns, labelSelector: `job-name=${job}` })).items;
  const testRuns = new TestRuns(cluster);
  const present = new Set(pods.map((p) => p.metadata?.name));
  for (const shard of shards) {
    if (!shard.pod || present.has(shard.pod) || shard.result || shard.failure) continue;
    // deleted (evicted, its node lost): the Job makes no other (backoffLimit 0); its last status write may have landed
    const tr = await testRuns.get(shard.name).catch(() => undefined);
    if (tr?.status?.result) continue;
    shard.failure = `deleted before it wrote a result`;
    shard.failedAtMs = Date.now();
  }
  for (const pod of pods) {
    const k = Number(pod.metadata?.annotations?.[INDEX_ANNOTATION] ?? pod.metadata?.labels?.[INDEX_ANNOTATION]);
    const shard = shards[k];
    if (!shard || shard.result || shard.failure) continue;
    shard.pod = pod.metadata?.name;
    const cs = pod.status?.containerStatuses?.[0];
    const waiting = cs?.state?.waiting;
    if (waiting && /ErrImage|ImagePull|InvalidImageName/.test(waiting.reason ?? '')) {
      return { message: `kubernetes: the runner image cannot start: ${waiting.reason}${waiting.message ? ` (${waiting.message})` : ''}`, hint: 'build it with scripts/build-runner-image.sh, or set TOPAS_RUNNER_IMAGE' };
    }
    if (pod.status?.phase === 'Failed' || pod.status?.phase === 'Succeeded') {
      // the last status write may trail the exit
      const tr = await testRuns.get(shard.name).catch(() => undefined);
      if (tr?.status?.result) continue;
      const logs = await cluster.core.readNamespacedPodLog({ name: pod.metadata!.name!, namespace: ns, tailLines: 20 }).catch((e: unknown) => `(no logs: ${apiMessage(e)})`);
      shard.failure = `exited (${cs?.state?.terminated?.exitCode ?? '?'}) without a result`;
      shard.lastLines = String(logs).trim();
      // its instances ended when it did: before the others' barriers failed for want of them
      const finishedMs = new Date(cs?.state?.terminated?.finishedAt ?? Date.now()).getTime();
      shard.failedAtMs = Number.isFinite(finishedMs) ? finishedMs : Date.now();
    }
  }
  const notStarted = shards.filter((s) => !s.result && !s.failure && !s.firstStepAt);
  if (notStarted.length && Date.now() - createdAt > START_TIMEOUT_MS && pods.every((p) => p.status?.phase !== 'Running')) {
    return { message: `kubernetes: ${notStarted.length} runner pod(s) did not start within ${START_TIMEOUT_MS / 1000} s (${pods.map((p) => `${p.metadata?.name}: ${p.status?.phase}`).join(', ') || 'no pods'})` };
  }
  return undefined;
}

/**
 * The shards' results as one run's: results in share order, playbooks merged.
 * A shard whose pod was lost before it reported is `lost` (its share did not
 * pass: the CLI fails those instances, exit 1, as for a dead worker process);
 * a runner that reported an error with no results is the run's error.
 */
export function merge(shards: Array<{ name: string; pod?: string; result?: NonNullable<TestRunStatus['result']>; failure?: string; failedAtMs?: number }>): RemoteRunResult {
  const results = shards.flatMap((s) => (s.result?.results ?? []) as ScenarioResult[]);
  const playbooks = mergePlaybookSummaries(shards.flatMap((s) => (s.result?.playbooks ?? []) as PlaybookSummary[])).map((pb) => withFirstCause(pb, results));
  const lost: RemoteLostShare[] = shards.flatMap((s, index) =>
    s.failure === undefined || s.result ? [] : [{ shard: { index, count: shards.length }, runner: `runner pod ${s.pod ?? `of TestRun ${s.name}`} (share ${index + 1} of ${shards.length})`, reason: s.failure, lostAtMs: s.failedAtMs ?? Date.now() }],
  );
  const errored = shards.find((s) => s.result?.state === 'error' && (s.result.results ?? []).length === 0 && s.result.error);
  const error = errored ? (errored.result!.error as RemoteRunResult['error']) : undefined;
  return { results, ...(playbooks.length ? { playbooks } : {}), ...(lost.length ? { lost } : {}), ...(error ? { error } : {}) };
}

/**
 * The failure that caused the others: each runner names the first failure it
 * saw, but an instance whose barrier failed because of another runner's
 * failure fails too; the cause is the one that ended first.
 */
function withFirstCause(pb: PlaybookSummary, results: ScenarioResult[]): PlaybookSummary {
  if (pb.state === 'passed') return pb;
  const endMs = (r: ScenarioResult) => Date.parse(r.startedAt) + r.durationMs;
  const failed = results.filter((r) => r.name.startsWith(`${pb.name}/`) && r.state !== 'passed' && r.state !== 'interrupted');
  const first = failed.reduce<ScenarioResult | undefined>((a, r) => (!a || endMs(r) < endMs(a) ? r : a), undefined);
  return first ? { ...pb, state: first.state, firstFailure: { instance: first.instance.id, ...(first.error ? { error: first.error } : {}) } } : pb;
}

/**
 * The playbooks of several runners (shares of one run) as one: roles added
 * up, and the failure that was not a consequence (an instance stopped because
 * another failed is `interrupted`) named first.
 */
export function mergePlaybookSummaries(parts: PlaybookSummary[]): PlaybookSummary[] {
  const byKey = new Map<string, PlaybookSummary[]>();
  for (const p of parts) byKey.set(`${p.file}\n${p.name}`, [...(byKey.get(`${p.file}\n${p.name}`) ?? []), p]);
  const rank = (s: PlaybookSummary['state']) => (s === 'passed' ? 0 : s === 'interrupted' ? 1 : 2);
  return [...byKey.values()].map((same) => {
    const roles = new Map<string, { name: string; ok: number; total: number }>();
    for (const s of same) {
      for (const r of s.roles) {
        const acc = roles.get(r.name) ?? { name: r.name, ok: 0, total: 0 };
        acc.ok += r.ok;
        acc.total += r.total;
        roles.set(r.name, acc);
      }
    }
    const worst = same.reduce((a, b) => (rank(b.state) > rank(a.state) ? b : a));
    return { name: worst.name, file: worst.file, state: worst.state, roles: [...roles.values()], ...(worst.firstFailure ? { firstFailure: worst.firstFailure } : {}) };
  });
}
