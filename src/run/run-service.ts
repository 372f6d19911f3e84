import * as os from 'node:os';
import * as path from 'node:path';
import { EXIT_CODES, TopasError, serializeError, type Problem, type SerializedError } from '../errors';
import type { Io } from '../io';
import type { AppSpec } from '../spec/app-spec';
import type { EndpointMap, RemoteRunRequest } from '../backends/backend';
import { loadAppSpec } from '../spec/load-app-spec';
import { maskDeep, registerEnvSecrets, registerSpecSecrets } from '../spec/secrets';
import { checkLuaSyntax } from '../lua/syntax-check';
import { ScenarioPool } from './scenario-pool';
import { boundedEvent, boundedMessage, boundedResult } from './bounded-result';
import { escapeControl } from '../util/terminal-text';
import { backendChecks } from '../backends/registry';
// the built-in backends register themselves (--backend local/docker is checked before anything starts)
import '../backends/index';
import { checkServiceEnvWithFlags } from '../util/limits';
import { RunRecordStore } from './run-record';
import { defaultTargets, findAppSpecFile, resolveTargets } from './targets';
import type { LogLine, RunState, ScenarioEvent, ScenarioResult, ScenarioTask } from './scenario-types';
import { remoteRunRequest, type RemoteGitInput } from './remote-run';
import { lostShareResults, resummarize } from './lost-shares';
import type { PlaybookSummary, RunReport } from '../reporters/run-report';
import { logExcerpt, RUN_RECORD_SCHEMA_VERSION } from './record-report';
import { checkReporterOutputs, type ReporterRequest } from './render-reports';
import { fetchGitSource, isHttpGitUrl, redactGitUrl, splitGitCredentials, type GitSource } from './git-source';
import { recordDirFor } from './schedule-service';
import { RunMetrics, remoteMetrics } from './run-metrics';
import { RunSession } from './run-session';
import { checkShapingTargets, loadPlaybook } from '../playbook/playbook';
import { DEFAULT_BARRIER_TIMEOUT_MS, runPlaybook, summarizePlaybook, type PlaybookUnit } from '../playbook/run-playbook';
import { SyncBroker } from '../sync/sync-broker';
import type { SyncGroup } from '../sync/sync-group';
import { routeRpc, type RpcHandler } from './rpc-router';
import { watchEndpoints } from './watch-endpoints';
// traffic shaping (src/shape): the SUT owns the proxies; the run routes shape.* to them, runs playbook shaping, records history
import { shapeChangeLine } from '../shape/shape-controller';
import type { Spread } from '../workers/transport';

export interface RunOptions {
  io: Io;
  targets: string[];
  app?: string;
  backend: string;
  parallel: number;
  workers?: number;
  /** where the scenario workers run: threads of this process (default) or processes of this machine; sync reaches them all through the coordinator */
  spread?: Spread;
  timeoutMs: number;
  reporters: ReporterRequest[];
  env: Record<string, string>;
  keep: boolean;
  continueOnFailure?: boolean;
  memoryLimitBytes?: number;
  /** id chosen beforehand (`topas test schedule`) */
  runId?: string;
  /** wait for the app's lock first: scheduled runs queue instead of colliding */
  queue?: boolean;
  /** serve Prometheus metrics on 127.0.0.1:<port> while running (0 = any free port) */
  metricsPort?: number;
  onMetricsServer?: (port: number) => void;
  /** scripts and playbooks from Git (system git, cached by commit) */
  git?: GitSource;
  /** --debug: a run error keeps its JS stack in the report and on stderr */
  debug?: boolean;
  /** told every scenario log line and progress event as the run goes (masked), e.g. by a runner that reports elsewhere */
  observer?: RunObserver;
  /** playbooks' sync groups live in this sync server (`topas sync-server`), shared with other runners of the run, instead of in this process */
  syncServer?: { url: string; token?: string; run: string };
  /** run only this share of the scenarios and playbook instances (runner `index` of `count`, from 0); the others run them */
  shard?: { index: number; count: number };
}

export interface RunObserver {
  onLog?(line: LogLine): void;
  onEvent?(scenarioRunId: string, event: ScenarioEvent): void;
  /** a scenario (or playbook instance) ended, with its bounded, masked result */
  onScenarioEnd?(result: ScenarioResult): void;
}

export interface RunOutcome {
  exitCode: number;
  report: RunReport;
}

const DEFAULT_MEMORY_LIMIT_BYTES = 256 * 1024 * 1024;

/** One entry of the run queue: a scenario, or a playbook whose instances all start together. */
type RunUnit = { kind: 'scenario'; task: ScenarioTask } | PlaybookUnit;

interface Prepared {
  units: RunUnit[];
  spec?: AppSpec;
  specFile?: string;
  targetsForRecord: string[];
  /** what scenario names are relative to: cwd, or a Git source's checkout */
  namesDir: string;
  /** the scenario files and playbooks as resolved (absolute) */
  targetFiles: string[];
  /** a Git source, as fetched here */
  git?: RemoteGitInput;
}

/**
 * `topas run`: validate everything, stand the SUT up (or reuse `topas up`'s),
 * run the scenarios and playbooks (at most `parallel` units at once) in worker
 * threads, report, tear down. Every path out of here tears down what it started.
 */
export async function runScenarios(opts: RunOptions): Promise<RunOutcome> {
  const { io } = opts;
  const startedAtMs = io.now();
  registerEnvSecrets(opts.env);
  let prepared: Prepared;
  try {
    prepared = await prepare(opts);
  } catch (err) {
    // a scheduled run already has a record: it must not stay "pending"
    if (opts.runId) {
      const store = new RunRecordStore(recordDirFor(io, opts.app));
      if (store.hasRun(opts.runId)) {
        store.writeRun(opts.runId, { ...store.readRun(opts.runId), state: 'error', error: serializeError(err), durationMs: io.now() - startedAtMs, exitCode: err instanceof TopasError ? err.exitCode : 1 });
      }
    }
    throw err;
  }
  const { spec, specFile } = prepared;
  const units = opts.shard ? shardUnits(prepared.units, opts.shard) : prepared.units;
  // process-wide: the run record, log, reports and console mask them too
  if (spec) registerSpecSecrets(spec);

  const recordDir = opts.runId ? recordDirFor(io, opts.app) : spec ? spec.dir : io.cwd;
  const results: ScenarioResult[] = [];
  const playbookSummaries: PlaybookSummary[] = [];
  await using session = new RunSession({
    io,
    kind: 'run',
    spec,
    backend: opts.backend,
    env: opts.env,
    keep: opts.keep,
    recordDir,
    runId: opts.runId,
    reporters: opts.reporters,
    debug: opts.debug,
    baseRecord: {
      schemaVersion: RUN_RECORD_SCHEMA_VERSION,
      kind: 'run',
      spec: spec ? JSON.parse(JSON.stringify(spec)) : undefined,
      app: spec?.name,
      specFile,
      targets: prepared.targetsForRecord,
      // the commit that ran (a runner that fetches the source itself runs this one too)
      ...(prepared.git ? { git: gitRecord(prepared.git) } : {}),
      startedAt: new Date(startedAtMs).toISOString(),
      pid: process.pid,
      results: [] as ScenarioResult[],
      durationMs: 0,
    },
  });
  const { runId, store, mask, log, hooks } = session;
  const metrics = new RunMetrics();
  let pool: ScenarioPool | undefined;
  session.onTeardown(() => pool?.close().catch(() => undefined));

  await session.guard(async () => {
    await session.begin({ queue: opts.queue });
    if (opts.metricsPort !== undefined) await session.serveMetrics(metrics, opts.metricsPort, opts.onMetricsServer);
    const sut = (await session.standUp())?.sut;
    // a shaped service is reached through its proxies, an unshaped one directly: re-point scenarios on every change
    if (sut) {
      session.onShapeChange((e) => {
        pool?.setEndpoints(sut.endpointMap());
        // a run observed from elsewhere (the kubernetes runner Job's TestRun) shows its shape changes too
        opts.observer?.onLog?.({ ts: e.ts, runId, source: 'topas', level: 'info', message: mask(shapeChangeLine(e)) });
      });
    }
    if (session.interrupted) return;
    const onLog = (line: LogLine): void => {
      const message = boundedMessage(line.message, mask);
      store.appendLog(runId, { ...line, message });
      opts.observer?.onLog?.({ ...line, message });
      // the scenario's text must not drive the terminal (escape sequences, \r)
      io.stderr.write(`[${escapeControl(line.source)}] ${line.level === 'info' ? '' : `${line.level.toUpperCase()} `}${escapeControl(message, { multiline: true })}\n`);
    };
    const onEvent = (scenarioRunId: string, event: ScenarioEvent): void => {
      const ev = boundedEvent(event, mask);
      opts.observer?.onEvent?.(scenarioRunId, ev);
      if (ev.kind === 'step-end') hooks.stepEnd(maskDeep({ scenarioRunId, name: ev.name, state: ev.state, ...(ev.error ? { error: { message: ev.error.message, location: ev.error.location } } : {}) }, mask));
      if (ev.kind === 'step-end' && io.stderr.isTTY) io.stderr.write(`  ${ev.state === 'passed' ? '✓' : ev.state === 'failed' ? '✗' : '-'} ${escapeControl(ev.name)}\n`);
      store.appendLog(runId, { ts: ev.ts, runId: scenarioRunId, source: 'event', level: 'debug', message: JSON.stringify(ev) });
    };
    // a SUT this machine does not reach (a cluster): the scenarios run next to it, reported back here
    const remote = sut?.remoteRunner;
    if (remote && spec && specFile) {
      const request = remoteRunRequest(
        {
          runId,
          namesDir: prepared.namesDir,
          specFile,
          files: prepared.units.flatMap((u) => (u.kind === 'scenario' ? [u.task.file] : [u.playbook.file, ...u.tasks.map((t) => t.file)])),
          targets: prepared.targetFiles,
          parallel: opts.parallel,
          workers: opts.workers,
          timeoutMs: opts.timeoutMs,
          continueOnFailure: opts.continueOnFailure ?? false,
          env: opts.env,
          git: prepared.git,
        },
        log,
      );
      // --metrics-port: the same metrics, fed from what the remote runner reports
      const live = remoteMetrics(metrics, units.reduce((n, u) => n + (u.kind === 'playbook' ? u.tasks.length : 1), 0));
      const out = await remote.run(request, {
        signal: session.interrupts.signal,
        log,
        onLog,
        onEvent: live.tap(onEvent),
        onScenarioEnd: (id, state, durationMs) => live.ended(id, state as RunState, durationMs),
        // the backend's own queue (one run of an app at a time): the record says Pending while the run waits
        onPhase: (phase) => session.writeRecord({ state: phase }),
      });
      for (const r of out.results) {
        const bounded = boundedResult(r, mask);
        hooks.scenarioEnd(maskDeep(bounded, mask));
        live.ended(r.runId, r.state, r.durationMs);
        results.push(bounded);
      }
      // a lost runner's share did not pass: its instances fail the run (exit 1), named, as a dead worker process's do
      const lost = (out.lost ?? []).flatMap((l) => lostShareResults(shardUnits(prepared.units, l.shard), l, results, startedAtMs));
      for (const r of lost) {
        hooks.scenarioEnd(maskDeep(r, mask));
        live.ended(r.runId, r.state, r.durationMs);
        results.push(r);
      }
      live.close();
      playbookSummaries.push(...(lost.length ? resummarize(out.playbooks ?? [], prepared.units, results, prepared.namesDir) : (out.playbooks ?? [])));
      if (out.error && !session.interrupted) throw new TopasError(out.error.code === 'GIT_FETCH_FAILED' ? 'GIT_FETCH_FAILED' : 'RUNNER_FAILED', out.error.message, { hint: out.error.hint });
      return;
    }
    const brokers = new Map<string, { broker: SyncGroup; instance: string }>();
    const sutRpc: RpcHandler = session.sutRpc((map: EndpointMap) => pool?.setEndpoints(map));
    const maxConcurrent = units.reduce((n, u) => n + (u.kind === 'playbook' ? u.tasks.length : 1), 0);
    pool = new ScenarioPool({
      workers: Math.max(1, Math.min(opts.workers ?? os.availableParallelism(), maxConcurrent)),
      spread: opts.spread,
      rpc: routeRpc({ sut: sutRpc, sync: (id) => brokers.get(id), shape: () => sut?.shaping?.() }),
      onLog,
      onEvent,
    });
    const activePool = pool;
    if (opts.spread === 'processes') log(`scenarios run in ${activePool.workerLabels.length} worker processes (pids ${activePool.workerLabels.map((l) => l.replace(/^process /, '')).join(', ')})`);
    const unsubscribeEndpoints = sut ? watchEndpoints(sut, (map) => activePool.setEndpoints(map)) : undefined;
    session.onTeardown(() => unsubscribeEndpoints?.());
    session.interrupts.onInterrupt(() => {
      for (const b of brokers.values()) b.broker.close('the run was interrupted');
      activePool.cancelAll('interrupt');
    });
    const endpoints = sut ? sut.endpointMap() : {};
    const runTask = async (task: ScenarioTask): Promise<ScenarioResult> => {
      metrics.started();
      const r = boundedResult(await activePool.run({ ...task, endpoints }), mask);
      metrics.finished(r.state, r.durationMs);
      hooks.scenarioEnd(maskDeep(r, mask));
      opts.observer?.onScenarioEnd?.(maskDeep(r, mask));
      return r;
    };
    metrics.queued(maxConcurrent);
    const unitResults = await runLimited(
      units,
      opts.parallel,
      async (unit): Promise<ScenarioResult[]> => {
        if (unit.kind === 'scenario') {
          const broker = new SyncBroker([unit.task.instance.id], DEFAULT_BARRIER_TIMEOUT_MS);
          brokers.set(unit.task.runId, { broker, instance: unit.task.instance.id });
          const r = await runTask(unit.task);
          broker.close('the scenario ended');
          return [r];
        }
        // declarative shaping of a playbook spread over runners: by the first only
        const shapes = !opts.shard || opts.shard.index === 0 ? sut?.shaping?.() : undefined;
        const out = await runPlaybook(unit, { runTask, pool: activePool, brokers, sync: { server: opts.syncServer }, shapes, log });
        playbookSummaries.push(summarizePlaybook(unit.playbook, out, prepared.namesDir));
        return out;
      },
      () => session.interrupted,
    );
    const started = unitResults.flat().filter((r): r is ScenarioResult => r !== undefined);
    metrics.dropQueued(maxConcurrent - started.length);
    results.push(...started);
  });
  await session.close();

  const state = overallState(results, session.interrupted, session.error);
  if (session.interrupted) session.exitCode = EXIT_CODES.interrupted;
  else if (!session.error) session.exitCode = exitCodeFor(state);
  const exitCode = session.exitCode;
  const report: RunReport = {
    runId,
    app: spec?.name,
    backend: session.sut?.backend,
    startedAt: new Date(startedAtMs).toISOString(),
    durationMs: io.now() - startedAtMs,
    state,
    results,
    playbooks: playbookSummaries.length ? playbookSummaries : undefined,
    error: session.error,
  };
  const { backend: _backend, ...common } = session.finalRecord();
  session.finish({ ...report, ...common }, report, { kind: 'run', exitCode, sut: session.sutReport, logs: logExcerpt(store.readLog(runId)) });
  return { exitCode, report };
}

/**
 * `topas test schedule --cron`: everything a backend that schedules by itself
 * needs (the same checks as `topas run` first, so invalid input exits 2).
 */
export async function remoteRequestFor(opts: RunOptions, runId: string): Promise<{ spec: AppSpec; request: RemoteRunRequest }> {
  const p = await prepare(opts);
  if (!p.spec || !p.specFile) throw new TopasError('INVALID_FLAGS', '--cron needs an app spec (topas.yaml): the scheduled runs stand it up', { hint: 'pass --app topas.yaml' });
  const request = remoteRunRequest(
    {
      runId,
      namesDir: p.namesDir,
      specFile: p.specFile,
      files: p.units.flatMap((u) => (u.kind === 'scenario' ? [u.task.file] : [u.playbook.file, ...u.tasks.map((t) => t.file)])),
      targets: p.targetFiles,
      parallel: opts.parallel,
      timeoutMs: opts.timeoutMs,
      continueOnFailure: opts.continueOnFailure ?? false,
      env: opts.env,
      git: p.git,
    },
    (line) => opts.io.stderr.write(`topas: ${line}\n`),
  );
  // only an http(s) source is fetched by the scheduled runs themselves; another one travels as files fetched now
  if (p.git && !request.git) {
    const why = isHttpGitUrl(p.git.source.url) ? 'the run reaches outside the repository' : 'it is not an http(s) URL, which the runner fetches itself';
    opts.io.stderr.write(`topas: --git ${redactGitUrl(p.git.source.url)}: ${why}; every scheduled run runs commit ${p.git.commit.slice(0, 12)}, fetched now\n`);
  }
  return { spec: p.spec, request };
}

/**
 * `topas test schedule`: the same checks `topas run` makes before it touches a
 * backend, so invalid input exits 2 at once instead of queueing a run that errs.
 */
export async function checkRunInput(opts: RunOptions): Promise<void> {
  await prepare(opts);
}

/** Everything that can be checked before touching a backend: targets, app spec, playbooks, Lua syntax. */
async function prepare(opts: RunOptions): Promise<Prepared> {
  const { io } = opts;
  checkReporterOutputs(opts.reporters, io.cwd);
  let baseDir = io.cwd;
  // what require() and data files may not leave
  let rootDir = io.cwd;
  // scenario names and Lua locations: relative to cwd, or for a Git source to the repository's root
  let namesDir = io.cwd;
  let targetArgs = opts.targets;
  let git: RemoteGitInput | undefined;
  if (opts.git) {
    const fetched = await fetchGitSource(opts.git, io.env);
    baseDir = fetched.target;
    rootDir = fetched.dir;
    namesDir = fetched.dir;
    targetArgs = opts.targets.length ? opts.targets : ['.'];
    git = { source: opts.git, commit: fetched.commit, dir: fetched.dir, targetArgs, env: io.env };
  } else if (targetArgs.length === 0) {
    targetArgs = defaultTargets({ app: opts.app, cwd: io.cwd });
  }
  const targets = resolveTargets(targetArgs, baseDir);
  const playbooks = targets.playbooks.map((f) => loadPlaybook(f, { appOverridden: opts.app !== undefined }));
  const appFromPlaybook = playbooks.find((p) => p.app)?.app;
  const specFile = findAppSpecFile({ app: opts.app ?? appFromPlaybook, cwd: io.cwd, near: targets.luaFiles[0] ?? targets.playbooks[0] });
  // with --backend NAME, the spec's problems and that backend's come in one error
  const spec = specFile ? await loadAppSpec(specFile, { env: io.env, cwd: io.cwd, backendChecks: backendChecks(opts.backend) }) : undefined;
  if (spec) checkServiceEnvWithFlags(spec.services, opts.env);
  if (spec) checkShapingTargets(playbooks, spec);

  // Lua syntax is input: reject it before anything is started.
  const problems: Problem[] = [];
  const scripts = new Set([...targets.luaFiles, ...playbooks.flatMap((p) => p.roles.map((r) => r.script))]);
  for (const file of scripts) problems.push(...(await checkLuaSyntax(file, namesDir, rootDir)));
  if (problems.length > 0) throw new TopasError('LUA_SYNTAX', `${problems.length} scenario(s) do not compile`, { problems });

  const env = { ...stringEnv(io.env), ...spec?.env, ...opts.env };
  const common = {
    baseDir: namesDir,
    rootDir,
    env,
    endpoints: {},
    memoryLimitBytes: opts.memoryLimitBytes ?? DEFAULT_MEMORY_LIMIT_BYTES,
    continueOnFailure: opts.continueOnFailure ?? false,
  };
  let seq = 0;
  const units: RunUnit[] = [];
  for (const file of targets.luaFiles) {
    seq++;
    const name = path.relative(namesDir, file).split(path.sep).join('/');
    units.push({
      kind: 'scenario',
      task: { ...common, runId: `s${seq}`, file, name, timeoutMs: opts.timeoutMs, instance: { id: path.basename(file, '.lua'), role: 'default', index: 1, count: 1, params: {} } },
    });
  }
  for (const pb of playbooks) {
    seq++;
    const tasks: ScenarioTask[] = [];
    for (const role of pb.roles) {
      for (let i = 1; i <= role.instances; i++) {
        tasks.push({
          ...common,
          runId: `p${seq}-${role.name}-${i}`,
          file: role.script,
          name: `${pb.name}/${role.name}#${i}`,
          timeoutMs: pb.timeoutMs ?? opts.timeoutMs,
          instance: { id: `${role.name}-${i}`, role: role.name, index: i, count: role.instances, params: role.params },
        });
      }
    }
    units.push({ kind: 'playbook', playbook: pb, key: `p${seq}`, tasks, instances: tasks.map((t) => t.instance.id) });
  }
  return {
    units,
    spec,
    specFile,
    targetsForRecord: [...targets.luaFiles, ...targets.playbooks].map((f) => path.relative(namesDir, f)),
    namesDir,
    targetFiles: [...targets.luaFiles, ...targets.playbooks],
    ...(git ? { git } : {}),
  };
}

/** A Git source as the run record shows it: without credentials. */
function gitRecord(git: RemoteGitInput): { url: string; ref?: string; path?: string; commit: string } {
  return { url: redactGitUrl(splitGitCredentials(git.source.url).url), ...(git.source.ref ? { ref: git.source.ref } : {}), ...(git.source.path ? { path: git.source.path } : {}), commit: git.commit };
}

/**
 * This runner's share of a run spread over several: scenarios and playbook
 * instances dealt round-robin in order; a playbook keeps every instance's id
 * (its barriers count them all) but runs only its share.
 */
export function shardUnits(units: RunUnit[], shard: { index: number; count: number }): RunUnit[] {
  let k = 0;
  const mine = () => k++ % shard.count === shard.index;
  const out: RunUnit[] = [];
  for (const u of units) {
    if (u.kind === 'scenario') {
      if (mine()) out.push(u);
      continue;
    }
    const tasks = u.tasks.filter(() => mine());
    if (tasks.length) out.push({ ...u, tasks });
  }
  return out;
}

function stringEnv(env: NodeJS.ProcessEnv): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(env)) if (v !== undefined) out[k] = v;
  return out;
}

/** Runs at most `limit` at once; results keep submission order. Stops launching when `stop()` says so. */
export async function runLimited<T, R>(items: T[], limit: number, fn: (item: T) => Promise<R>, stop: () => boolean): Promise<Array<R | undefined>> {
  const out: Array<R | undefined> = new Array(items.length).fill(undefined);
  let next = 0;
  const lane = async () => {
    while (next < items.length && !stop()) {
      const i = next++;
      out[i] = await fn(items[i]);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, lane));
  return out;
}

function overallState(results: ScenarioResult[], interrupted: boolean, err?: SerializedError): RunState {
  if (interrupted) return 'interrupted';
  if (err) return 'error';
  if (results.some((r) => r.state === 'timedOut')) return 'timedOut';
  if (results.some((r) => r.state === 'error')) return 'error';
  if (results.some((r) => r.state === 'failed' || r.state === 'interrupted')) return 'failed';
  return 'passed';
}

function exitCodeFor(state: RunState): number {
  switch (state) {
    case 'passed':
      return EXIT_CODES.ok;
    case 'timedOut':
      return EXIT_CODES.timedOut;
    case 'interrupted':
      return EXIT_CODES.interrupted;
    default:
      return EXIT_CODES.failed;
  }
}
