import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { TopasError, serializeError, type Io, type LogLine, type ScenarioEvent, type SutState } from 'topas';
import { RunRecordStore, runScenarios, writeRemoteFiles, writeStateFile } from 'topas/runner';
import { apiMessage, clusterOptionsFromEnv, connect, type Cluster } from './cluster';
import { LABELS, labelValue, parentName } from './manifests';
import { GIT_AUTH_KEY, TESTRUN, TESTRUN_API_VERSION, TEST_RUN_LABEL, TestRuns, type TestRunObject, type TestRunSpec, type TestRunStatus } from './testrun';
import { fetchGitInPod } from './git-fetch';
import { acquireAppQueue, type QueueTurn } from './run-queue';
import type { ScheduledRun } from './cron';
import { SYNC_TOKEN_KEY } from './sync-deployment';

/** log lines and events kept in the TestRun's status (the object must stay well under etcd's 1.5 MiB) */
const LOG_WINDOW = 300;
const EVENT_WINDOW = 300;
const STEP_WINDOW = 200;
const FLUSH_MS = 400;

/**
 * `topas kube runner --testrun NAME`, in the runner Job's pod: reads the
 * TestRun, its files (ConfigMap) and env (Secret) through the API server,
 * attaches to the SUT the CLI stood up (its Service DNS names: no host
 * traffic question inside the cluster) and runs the scenarios as `topas run`
 * does, writing log lines, step events and finally the results to the
 * TestRun's status. Resolves to the run's exit code.
 */
export async function runInCluster(testRunName: string, io: Io): Promise<number> {
  const cluster = connect(clusterOptionsFromEnv(io.env));
  const testRuns = new TestRuns(cluster);
  const tr = await testRuns.get(testRunName);
  return execute(cluster, tr, io, async (specFile) => {
    const sut = tr.spec.sut!;
    // attach to the CLI's SUT as `topas run` attaches to `topas up`'s: through .topas/state.json next to the spec
    const state: SutState = { backend: 'kubernetes', runId: sut.runId, app: tr.spec.app, specFile, startedAt: sut.startedAt, data: inClusterData(sut.data, cluster) };
    await requireSut(cluster, tr.spec.app, sut.runId);
    writeStateFile(path.dirname(specFile), state);
  });
}

/**
 * `topas kube runner --schedule NAME`, in a Job of the CronJob that `topas test
 * schedule --cron` made: records a TestRun of its own, stands the app up in the
 * cluster, runs the scenarios and tears the app down.
 */
export async function runScheduled(cronName: string, io: Io): Promise<number> {
  const cluster = connect(clusterOptionsFromEnv(io.env));
  const cm = await cluster.core.readNamespacedConfigMap({ name: cronName, namespace: cluster.namespace });
  const run = JSON.parse(cm.data?.['run.json'] ?? '{}') as ScheduledRun;
  const runId = new RunRecordStore(os.tmpdir()).createRunId();
  const name = `${cronName}-${Date.now().toString(36)}`.slice(0, 63);
  const labels = { ...(cm.metadata?.labels ?? {}), [LABELS.kind]: 'run', [LABELS.component]: 'runner', [TEST_RUN_LABEL]: labelValue(runId) };
  const spec: TestRunSpec = { app: run.app, runId, configMap: cronName, secret: cronName, specFile: run.specFile, cwd: run.cwd, targets: run.targets, parallel: run.parallel, timeoutMs: run.timeoutMs, continueOnFailure: run.continueOnFailure, ...(run.git ? { git: run.git } : {}) };
  const tr = await new TestRuns(cluster).create({ apiVersion: TESTRUN_API_VERSION, kind: TESTRUN.kind, metadata: { name, namespace: cluster.namespace, labels }, spec });
  io.stderr.write(`topas: TestRun ${name} (run ${runId}) of schedule ${cronName}\n`);
  try {
    return await execute(cluster, tr, io, async () => undefined, false);
  } finally {
    await new TestRuns(cluster).pruneHistory(run.app).catch((err: unknown) => io.stderr.write(`topas: older TestRuns of app ${run.app} not pruned: ${apiMessage(err)}\n`));
  }
}

/** Fetches the run's files and env, runs it as `topas run` does, and keeps the TestRun's status up to date. */
async function execute(cluster: Cluster, tr: TestRunObject, io: Io, beforeRun: (specFile: string) => Promise<void>, attached = true): Promise<number> {
  const testRunName = tr.metadata!.name!;
  const status = new StatusWriter(new TestRuns(cluster), testRunName);
  let turn: QueueTurn | undefined;
  try {
    // one run of an app at a time on the cluster, from whichever host: wait (phase Pending) for the app's queue
    const log = (l: string) => io.stderr.write(`topas: ${l}\n`);
    // the pods of a spread run (--workers N) are one run: they queue as one holder, share 0's TestRun
    // (a pod of it may not wait behind its siblings, whose instances meet it at barriers), and share 0 releases
    const shard = tr.spec.shard;
    const holder = shard ? { testRun: testRunName.replace(/-\d+$/, '-0'), pod: '' } : { testRun: testRunName, pod: io.env.POD_NAME ?? '' };
    turn = await acquireAppQueue(cluster, tr.spec.app, holder, {
      log,
      onWait: (holder) => {
        log(`waiting for TestRun ${holder.testRun} of app ${tr.spec.app} to end (one run of an app at a time)`);
        status.set({ phase: 'Pending', waitingFor: holder.testRun });
        void status.flush().catch(() => undefined);
      },
    });
    if (turn.waitedMs > 1000) log(`waited ${Math.round(turn.waitedMs / 1000)} s for the queue of app ${tr.spec.app}`);
    status.set({ phase: 'Running', startedAt: new Date().toISOString(), waitingFor: null });
    await status.flush();
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'topas-runner-'));
    await fetchInputs(cluster, tr, dir);
    const { env, syncToken, gitAuth } = await readEnv(cluster, tr.spec.secret);
    if (tr.spec.git) await fetchGit(tr, dir, gitAuth, status, log);
    const cwd = path.resolve(dir, tr.spec.cwd);
    const specFile = path.resolve(dir, tr.spec.specFile);
    await beforeRun(specFile);
    const outcome = await runScenarios({
      io: { ...io, cwd },
      targets: tr.spec.targets,
      app: specFile,
      backend: 'kubernetes',
      parallel: tr.spec.parallel,
      timeoutMs: tr.spec.timeoutMs,
      reporters: [{ name: 'table' }],
      env,
      // attached: the CLI's SUT is not this process's to remove; scheduled: stood up here, torn down here
      keep: attached,
      continueOnFailure: tr.spec.continueOnFailure,
      runId: attached ? tr.spec.runId : undefined,
      observer: { onLog: (l) => status.log(l), onEvent: (id, ev) => status.event(id, ev), onScenarioEnd: (r) => status.scenarioEnd(r.runId, r.state, r.durationMs) },
      // a run spread over runner pods: this pod's share, playbooks' sync in the run's sync Deployment
      ...(tr.spec.shard ? { shard: tr.spec.shard } : {}),
      ...(tr.spec.sync ? { syncServer: { url: tr.spec.sync.url, run: tr.spec.sync.run, token: syncToken } } : {}),
    });
    const r = outcome.report;
    status.set({
      phase: r.state === 'passed' ? 'Passed' : r.state === 'failed' ? 'Failed' : 'Error',
      finishedAt: new Date().toISOString(),
      result: { state: r.state, exitCode: outcome.exitCode, results: r.results, ...(r.playbooks ? { playbooks: r.playbooks } : {}), ...(r.error ? { error: r.error } : {}) },
    });
    await status.flush();
    return outcome.exitCode;
  } catch (err) {
    const { stack: _stack, ...e } = serializeError(err);
    status.set({ phase: 'Error', finishedAt: new Date().toISOString(), message: e.message, result: { state: 'error', exitCode: err instanceof TopasError ? err.exitCode : 1, results: [], error: e } });
    await status.flush().catch(() => undefined);
    throw err;
  } finally {
    status.stop();
    if (!tr.spec.shard || tr.spec.shard.index === 0) await turn?.release();
  }
}

/** The SUT's recorded cluster, as seen from inside it: its namespace, no kubeconfig or context of the CLI's machine. */
function inClusterData(data: unknown, cluster: Cluster): unknown {
  const d = (data ?? {}) as Record<string, unknown>;
  return { ...d, cluster: { namespace: cluster.namespace } };
}

/** The runner only attaches: a SUT that is gone is an error, never a reason to stand a new one up inside the cluster. */
async function requireSut(cluster: Cluster, app: string, sutRunId: string): Promise<void> {
  try {
    await cluster.core.readNamespacedConfigMap({ name: parentName(app, sutRunId), namespace: cluster.namespace });
  } catch (err) {
    throw new TopasError('SUT_NOT_UP', `kubernetes runner: the SUT of run ${sutRunId} is not in namespace ${cluster.namespace}: ${apiMessage(err)}`);
  }
}

async function fetchInputs(cluster: Cluster, tr: TestRunObject, dir: string): Promise<void> {
  const cm = await cluster.core.readNamespacedConfigMap({ name: tr.spec.configMap, namespace: cluster.namespace });
  const index = JSON.parse(cm.data?.['index.json'] ?? '[]') as Array<{ key: string; path: string }>;
  writeRemoteFiles(
    dir,
    index.map((e) => ({ path: e.path, content: Buffer.from(cm.binaryData?.[e.key] ?? '', 'base64') })),
  );
}

async function readEnv(cluster: Cluster, secret: string): Promise<{ env: Record<string, string>; syncToken?: string; gitAuth?: { username: string; password: string } }> {
  const s = await cluster.core.readNamespacedSecret({ name: secret, namespace: cluster.namespace });
  const decode = (key: string) => (s.data?.[key] ? Buffer.from(s.data[key], 'base64').toString('utf8') : undefined);
  const raw = decode('env.json');
  const token = decode(SYNC_TOKEN_KEY);
  const auth = decode(GIT_AUTH_KEY);
  return {
    env: raw ? (JSON.parse(raw) as Record<string, string>) : {},
    ...(token ? { syncToken: token } : {}),
    ...(auth ? { gitAuth: JSON.parse(auth) as { username: string; password: string } } : {}),
  };
}

/**
 * The run's Git source, fetched here (a run: the commit the CLI validated; a
 * CronJob's firing: the ref's newest), into the folder the run's paths name.
 * The commit goes to the TestRun's status and log; a failure too, before the
 * run errs with it.
 */
async function fetchGit(tr: TestRunObject, dir: string, auth: { username: string; password: string } | undefined, status: StatusWriter, log: (l: string) => void): Promise<void> {
  const git = tr.spec.git!;
  const line = (level: LogLine['level'], message: string) => {
    log(message);
    status.log({ ts: Date.now(), runId: tr.spec.runId, source: 'topas', level, message });
  };
  const target = path.resolve(dir, git.dir);
  if (!target.startsWith(path.resolve(dir) + path.sep)) throw new TopasError('INVALID_FLAGS', `git: the checkout folder ${git.dir} leaves the run's folder`);
  try {
    const { commit, fetchMs } = await fetchGitInPod({ url: git.url, ...(git.ref ? { ref: git.ref } : {}), ...(git.commit ? { commit: git.commit } : {}), ...(auth ? { auth } : {}) }, target);
    status.set({ git: { url: git.url, ...(git.ref ? { ref: git.ref } : {}), commit, fetchMs } });
    line('info', `git: fetched ${git.url}${git.ref ? ` ${git.ref}` : ''} at ${commit} in ${fetchMs} ms`);
  } catch (err) {
    line('error', err instanceof TopasError ? err.format() : String(err));
    throw err;
  }
}

/**
 * The TestRun's status, written in batches (at most every FLUSH_MS) with
 * merge patches: windows of the last log lines and events with running
 * totals, so a reader that polls knows what it has not seen yet.
 */
class StatusWriter {
  private readonly status: TestRunStatus = { log: [], logTotal: 0, events: [], eventTotal: 0, steps: [], scenarios: [], scenarioTotal: 0 };
  private dirty = false;
  private timer?: NodeJS.Timeout;
  private writing: Promise<void> = Promise.resolve();

  constructor(
    private readonly testRuns: TestRuns,
    private readonly name: string,
  ) {}

  set(fields: TestRunStatus): void {
    Object.assign(this.status, fields);
    this.schedule();
  }

  log(line: LogLine): void {
    const log = this.status.log!;
    log.push({ ts: line.ts, runId: line.runId, source: line.source, level: line.level, message: line.message });
    if (log.length > LOG_WINDOW) log.splice(0, log.length - LOG_WINDOW);
    this.status.logTotal = (this.status.logTotal ?? 0) + 1;
    this.schedule();
  }

  event(scenarioRunId: string, ev: ScenarioEvent): void {
    const events = this.status.events!;
    events.push({ scenarioRunId, event: ev as unknown as Record<string, unknown> });
    if (events.length > EVENT_WINDOW) events.splice(0, events.length - EVENT_WINDOW);
    this.status.eventTotal = (this.status.eventTotal ?? 0) + 1;
    if (ev.kind === 'step-start' && !this.status.firstStepAt) this.status.firstStepAt = new Date(ev.ts).toISOString();
    if (ev.kind === 'step-end') {
      const steps = this.status.steps!;
      steps.push({ scenario: scenarioRunId, name: ev.name, state: ev.state });
      if (steps.length > STEP_WINDOW) steps.splice(0, steps.length - STEP_WINDOW);
    }
    this.schedule();
  }

  scenarioEnd(id: string, state: string, durationMs: number): void {
    const scenarios = this.status.scenarios!;
    scenarios.push({ id, state, durationMs });
    if (scenarios.length > STEP_WINDOW) scenarios.splice(0, scenarios.length - STEP_WINDOW);
    this.status.scenarioTotal = (this.status.scenarioTotal ?? 0) + 1;
    this.schedule();
  }

  private schedule(): void {
    this.dirty = true;
    if (this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.flush().catch((err: Error) => process.stderr.write(`topas runner: status not written: ${apiMessage(err)}\n`));
    }, FLUSH_MS);
  }

  /** Writes what changed; writes never overlap. */
  flush(): Promise<void> {
    this.writing = this.writing.then(async () => {
      if (!this.dirty) return;
      this.dirty = false;
      await this.testRuns.patchStatus(this.name, JSON.parse(JSON.stringify(this.status)) as TestRunStatus);
    });
    return this.writing;
  }

  stop(): void {
    if (this.timer) clearTimeout(this.timer);
  }
}
