import * as fs from 'node:fs';
import { RunMetrics } from '../run/run-metrics';
import { RunSession } from '../run/run-session';
import { registerLiveLoadMetrics } from './live-metrics';
import { colorEnabled } from '../util/color';
import * as os from 'node:os';
import * as path from 'node:path';
import type { Spread } from '../workers/transport';
import { ask, clockOffset, closeWorker, post, spawnWorkerSlot, type WorkerSlot } from './worker-slot';
import { describeLostShare, type LostShare } from './lost-share';
import { EXIT_CODES, TopasError } from '../errors';
import type { Io } from '../io';
import type { AppSpec } from '../spec/app-spec';
import { maskDeep, registerEnvSecrets, registerSpecSecrets } from '../spec/secrets';
import { checkLuaSyntax } from '../lua/syntax-check';
import { VuHost, type Vu } from '../lua/vu-host';
import { findAppSpecFile } from '../run/targets';
import type { EndpointMap } from '../backends/backend';
import type { ShapeCall } from '../shape/shape-calls';
import type { LoadWorkerInit } from '../run/worker-protocol';
import type { LogLevel } from '../run/scenario-types';
import { formatDurationMs } from '../util/duration';
import { checkServiceEnvWithFlags } from '../util/limits';
import { mergeSnapshots, TimeSeriesBuilder, toSummaryFile, type MetricType, type MetricsSnapshot, type TimeSeries } from './metrics';
import { ArrivalSchedule, splitCount, targetRateAt } from './schedule';
import { resolveLoadPlan, type LoadFlags, type LoadPlan } from './load-plan';
import { abortingThreshold, evaluateThresholds, thresholdsPassed, type ThresholdResult } from './thresholds';
import { compareWithBaseline, figuresFromSnapshot, type BaselineComparison } from './baseline';
import { ProgressRenderer, progressState } from './progress';
import { describeJsonProblem, describePlan, readBaseline, recordedSpec, stringEnv } from './load-input';
import { ABORT_SLACK_MS, GRACEFUL_STOP_MS, UNCLONEABLE_SETUP_VALUE, wallNowMs } from './load-runner';
import { reportFromRecord, RUN_RECORD_SCHEMA_VERSION } from '../run/record-report';
import { checkReporterOutputs, parseReporterFlags, type ReporterRequest } from '../run/render-reports';
import { isPostmanCollectionFile, writeCollectionLoadScript, type CollectionLoadOptions } from '../postman/collection-load-script';
import { MAX_MESSAGE_CHARS, clipText, escapeControl } from '../util/terminal-text';

export interface LoadOptions {
  io: Io;
  /** the load script (relative to io.cwd or absolute) */
  file: string;
  app?: string;
  backend: string;
  flags: LoadFlags;
  /** workers (default: cores - 1, at most the VU count) */
  workers?: number;
  /** where the workers run: threads of this process (default) or processes of this machine */
  spread?: Spread;
  /** a lost worker fails the run (exit 1) instead of making it partial */
  requireAllWorkers?: boolean;
  /** a run id or a JSON file (run.json, summary JSON, k6 summary) */
  baseline?: string;
  /** 0.1 = 10% */
  maxRegression?: number;
  env: Record<string, string>;
  keep?: boolean;
  /** when `file` is a Postman collection: which folder, which environment */
  postman?: CollectionLoadOptions;
  /** --json: the summary as JSON on stdout */
  json?: boolean;
  /** how often the live line is redrawn (default 1s) */
  progressEveryMs?: number;
  /** --debug: a run error keeps its JS stack */
  debug?: boolean;
  /** serve Prometheus metrics (run metrics and live request metrics) on 127.0.0.1:<port> (0 = any free port) */
  metricsPort?: number;
  onMetricsServer?: (port: number) => void;
  /** --reporter name[:file]: rendered from the run record once it is written (default: the summary, as JSON with `json`) */
  reporters?: ReporterRequest[];
}

export interface LoadSummaryJson {
  runId: string;
  /** partial: a worker was lost and the run went on without its share (lost says which, from when) */
  state: 'passed' | 'failed' | 'interrupted' | 'error' | 'partial';
  exitCode: number;
  durationMs: number;
  executor: LoadPlan['executor'];
  /** k6 handleSummary shape: metrics[key].values[stat] */
  metrics: ReturnType<typeof toSummaryFile>['metrics'];
  thresholds: ThresholdResult[];
  baseline?: BaselineComparison;
  aborted?: string;
  /** load worker threads that died while the load ran: the metrics are partial */
  lostWorkers?: string[];
  /** the same, as data: which share of the load was lost and from when */
  lost?: LostShare[];
  errors: Array<{ message: string; count: number }>;
}

export interface LoadOutcome {
  exitCode: number;
  runId: string;
  snapshot: MetricsSnapshot;
  timeSeries: TimeSeries;
  summary: LoadSummaryJson;
}

/** Past duration + gracefulStop + the workers' abort slack, a worker that has not reported is stuck (a Lua loop that never yields): it is stopped. */
const HARD_STOP_SLACK_MS = 5000;
/** how far ahead of now remote workers (Sut.remoteWorkers) are told to start */
const REMOTE_START_LEAD_MS = 1000;

/**
 * `topas load`: validate the script and options, stand the SUT up (as `topas
 * run` does), run setup once, spread the load over worker threads, merge their
 * metrics every second (progress, abort_on_fail), run teardown once, write the
 * run record and decide the exit code from the thresholds and the baseline.
 */
export async function runLoad(opts: LoadOptions): Promise<LoadOutcome> {
  const { io } = opts;
  const startedAtMs = io.now();
  if (opts.reporters?.length) checkReporterOutputs(opts.reporters, io.cwd);
  const requested = path.resolve(io.cwd, opts.file);
  if (!fs.existsSync(requested)) throw new TopasError('FILE_NOT_FOUND', `load script ${opts.file} not found`);
  const stat = fs.statSync(requested);
  if (stat.isDirectory()) throw new TopasError('FILE_NOT_FOUND', `load script ${opts.file} is a folder; give a .lua load script or a Postman collection`);
  if (!stat.isFile()) throw new TopasError('FILE_NOT_FOUND', `load script ${opts.file} is not a regular file`);
  // a Postman collection runs as the iteration, through a generated load script
  if (/\.json$/i.test(requested) && !isPostmanCollectionFile(requested)) {
    throw new TopasError('INVALID_FLAGS', `${opts.file} is not a Postman collection (v2 JSON with info.schema)`, {
      problems: [{ path: opts.file, message: describeJsonProblem(requested) }],
      hint: 'give a .lua load script, or a collection exported from Postman',
    });
  }
  const file = isPostmanCollectionFile(requested) ? writeCollectionLoadScript(requested, opts.postman ?? {}, io.cwd) : requested;
  if (file === requested && (opts.postman?.folder !== undefined || opts.postman?.environment !== undefined)) {
    throw new TopasError('INVALID_FLAGS', `--folder and --environment apply to a Postman collection; ${opts.file} is not one`);
  }
  const syntax = await checkLuaSyntax(file, io.cwd);
  if (syntax.length) throw new TopasError('LUA_SYNTAX', `${opts.file} does not compile`, { problems: syntax });
  const specFile = findAppSpecFile({ app: opts.app, cwd: io.cwd, near: requested });
  // the spec's schema, YAML and the backends load only when there is an app (~190 ms of start-up otherwise)
  let spec: AppSpec | undefined;
  if (specFile) {
    await import('../backends/index');
    // with --backend NAME, the spec's problems and that backend's come in one error
    const backendChecks = (await import('../backends/registry')).backendChecks(opts.backend);
    spec = await (await import('../spec/load-app-spec')).loadAppSpec(specFile, { env: io.env, cwd: io.cwd, backendChecks });
  }
  // process-wide: the run record, log, summary and console mask them too
  if (spec) registerSpecSecrets(spec);
  registerEnvSecrets(opts.env);
  if (spec) checkServiceEnvWithFlags(spec.services, opts.env);
  const env = { ...stringEnv(io.env), ...spec?.env, ...opts.env };
  const baselineFigures = opts.baseline !== undefined ? readBaseline(opts.baseline, spec?.dir ?? io.cwd, io.cwd) : undefined;
  if (opts.maxRegression !== undefined && !(opts.maxRegression >= 0)) throw new TopasError('INVALID_FLAGS', `--max-regression must be >= 0, got ${opts.maxRegression}`);

  // the main thread's own VU: reads `options`, runs setup and teardown
  let rpcImpl: (method: string, args: unknown[]) => Promise<unknown> = async (method) => {
    throw new TopasError('SUT_NOT_UP', `${method}: the system under test is not up yet (the script's top level runs before it is)`);
  };
  const customTypes: Record<string, MetricType> = {};
  const reporters = opts.reporters ?? parseReporterFlags([], Boolean(opts.json), 'load');
  await using session = new RunSession({
    io,
    kind: 'load',
    spec,
    backend: opts.backend,
    env: opts.env,
    keep: Boolean(opts.keep),
    recordDir: spec ? spec.dir : io.cwd,
    reporters,
    debug: opts.debug,
    baseRecord: { schemaVersion: RUN_RECORD_SCHEMA_VERSION, kind: 'load', spec: spec ? recordedSpec(spec) : undefined, app: spec?.name, specFile, file: path.relative(io.cwd, requested), startedAt: new Date(startedAtMs).toISOString(), pid: process.pid },
  });
  const { runId, store, mask, log, hooks } = session;
  const scriptLog = (level: LogLevel, source: string, message: string) => {
    const m = clipText(mask(message), MAX_MESSAGE_CHARS);
    store.appendLog(runId, { ts: io.now(), runId, source, level, message: m });
    // the script's text must not drive the terminal (escape sequences, \r)
    io.stderr.write(`[${source}] ${level === 'info' ? '' : `${level.toUpperCase()} `}${escapeControl(m, { multiline: true })}\n`);
  };
  const host = await VuHost.create({
    file,
    baseDir: io.cwd,
    env,
    endpoints: {},
    rpc: (method, args) => rpcImpl(method, args),
    log: scriptLog,
    custom: { define: (name, type) => void (customTypes[name] = type), add: () => undefined },
  });
  let plan: LoadPlan;
  let mainVu: Vu | undefined;
  try {
    let info;
    try {
      mainVu = await host.createVu(0);
      info = mainVu.info!;
    } catch (err) {
      throw new TopasError('SCENARIO_FAILED', `the top level of ${opts.file} failed: ${(err as Error).message}`, {
        hint: 'the top level runs once per VU before load starts (k6 init code); call the SUT from setup() or iteration()',
      });
    }
    if (!info.hasIteration) throw new TopasError('INVALID_FLAGS', `${opts.file} defines no iteration(ctx) function`, { hint: 'a load script defines `function iteration(ctx) ... end`' });
    plan = resolveLoadPlan(info.options, opts.flags, customTypes);
  } catch (err) {
    await host.close();
    throw err;
  }
  const ex = plan.executor;
  const schedule = ex.executor === 'constant-vus' ? undefined : new ArrivalSchedule(ex);
  const maxVus = ex.executor === 'constant-vus' ? ex.vus : ex.maxVus;
  // one core stays for the main thread and, often, the SUT itself (the local backend runs it here)
  const workers = Math.max(1, Math.min(opts.workers ?? os.availableParallelism() - 1, maxVus));

  let secondsReported = 0;
  const interrupts = session.interrupts;
  const slots: WorkerSlot[] = [];
  let loadStartMs = 0;
  let loadEndMs = 0;
  let aborted: string | undefined;
  let timeSeries = new TimeSeriesBuilder(io.now());
  let merged: MetricsSnapshot = mergeSnapshots([]);
  const errors = new Map<string, number>();
  const progress = new ProgressRenderer(io.stderr, { tty: !!io.stderr.isTTY, color: colorEnabled(io.env, io.stderr) });
  let progressTimer: NodeJS.Timeout | undefined;
  let hardStopTimer: NodeJS.Timeout | undefined;
  /** workers lost while the load ran: the results are partial */
  const lostWorkers: string[] = [];
  const lost: LostShare[] = [];
  const loseWorker = (s: WorkerSlot, why: string) => {
    if (s.finished) return;
    s.finished = true;
    const share: LostShare = { worker: s.index, workers: slots.length, label: s.worker.label, atMs: Math.round(Math.max(0, wallNowMs() - loadStartMs)), ...(s.lastReportMs !== undefined ? { keptUntilMs: Math.round(Math.max(0, s.lastReportMs - loadStartMs)) } : {}), reason: why };
    lost.push(share);
    const line = describeLostShare(share, plan.executor);
    lostWorkers.push(line);
    log(`error: ${line}`);
    s.errors = [...s.errors, { message: `load worker ${s.index} died: ${why}`, count: 1 }];
    if (!s.gone) void s.worker.stop();
    s.gone = true;
    s.activeVus = 0;
    s.resolveDone();
  };
  let data: unknown;
  let setupDone = false;
  /** the SUT is one only the workers reach (a cluster): setup() and teardown() run in a worker, this one */
  let hooksInWorker = false;
  let setupSlot: WorkerSlot | undefined;
  const teardownInWorker = async (): Promise<{ ok: boolean; error?: string }> => {
    // the worker that ran setup, or, if it was lost, another one
    const s = [setupSlot, ...slots].find((x) => x && !x.gone);
    if (!s) return { ok: false, error: 'no load worker is left to run it' };
    return ask(s, { type: 'load-teardown', data }, 'load-teardown-done').catch((err: Error) => ({ ok: false, error: `load worker ${s.index} (${s.worker.label}) went while it ran: ${err.message}` }));
  };
  let liveRates = { iterations: 0, requests: 0 };
  // before the SUT goes: the script's teardown(data) runs once, while the SUT is still up
  session.onTeardown(async () => {
    if (progressTimer) clearTimeout(progressTimer);
    if (hardStopTimer) clearTimeout(hardStopTimer);
    // k6 semantics: teardown(data) runs when setup succeeded, also after an abort or Ctrl-C
    if (setupDone && mainVu?.info?.hasTeardown) {
      const t = await Promise.race([hooksInWorker ? teardownInWorker() : host.teardown(mainVu, data), interrupts.forced.then(() => ({ ok: false as const, error: 'forced' }))]);
      if (!t.ok) log(`teardown() failed: ${t.error}`);
    }
    await host.close().catch(() => undefined);
    await Promise.all(slots.map((s) => closeWorker(s)));
  });

  await session.guard(async () => {
    await session.begin({ running: { load: { plan } } });
    if (opts.metricsPort !== undefined) {
      const runMetrics = new RunMetrics();
      registerLiveLoadMetrics(runMetrics.registry, {
        snapshot: () => (slots.some((x) => x.snapshot) ? mergeSnapshots(slots.map((x) => x.snapshot).filter((x): x is MetricsSnapshot => !!x)) : merged),
        currentRates: () => liveRates,
      });
      await session.serveMetrics(runMetrics, opts.metricsPort, opts.onMetricsServer);
    }
    const sut = (await session.standUp())?.sut;
    if (sut) {
      const pushEndpoints = (map: EndpointMap) => {
        if (!sut.remoteWorkers) host.setEndpoints(map);
        for (const s of slots) post(s, { type: 'endpoints', endpoints: map });
      };
      // SUT changes are marked in the time series as they start and end
      const sutRpc = session.sutRpc(pushEndpoints, (text) => timeSeries.mark(io.now(), text));
      // workers next to a SUT this machine does not reach (a cluster) see it by other names; this process's VU (setup, teardown) has no view of it
      const remote = sut.remoteWorkers;
      const workerView = () => (remote ? remote.endpointMap() : sut.endpointMap());
      if (!remote) host.setEndpoints(sut.endpointMap());
      const shaping = sut.shaping?.();
      // a shaped service is reached through its proxies, an unshaped one directly: re-point the VUs on every change, and mark it in the time series
      session.onShapeChange((e) => {
        timeSeries.mark(io.now(), `shape ${e.service}: ${e.description}`);
        pushEndpoints(workerView());
      });
      rpcImpl = async (method, args) => {
        if (method === 'shape.apply') {
          if (!shaping) throw new TopasError('SUT_NOT_UP', `${method}: backend ${session.sut?.backend} has no shaping proxies`);
          shaping.applyCall(args[0] as ShapeCall);
          await shaping.settled();
          return undefined;
        }
        if (!method.startsWith('sut.')) throw new TopasError('INTERNAL', `${method} is not available under \`topas load\``);
        return sutRpc(runId, method, args);
      };
    } else {
      rpcImpl = async (method) => {
        throw new TopasError('SUT_NOT_UP', `${method}: no app spec was found, so there is no system under test`, { hint: 'pass --app topas.yaml or put a topas.yaml next to the script' });
      };
    }
    if (interrupts.interrupted) return;

    const remote = sut?.remoteWorkers;
    hooksInWorker = Boolean(remote);
    if (!hooksInWorker) {
      const setup = await host.setup(mainVu!);
      if (!setup.ok) throw new TopasError('SCENARIO_FAILED', `setup() failed: ${setup.error}`);
      data = setup.value;
      setupDone = true;
      try {
        structuredClone(data);
      } catch {
        throw new TopasError('SCENARIO_FAILED', UNCLONEABLE_SETUP_VALUE);
      }
    }
    if (interrupts.interrupted) return;

    const endpoints = remote ? remote.endpointMap() : sut ? sut.endpointMap() : {};
    const spread = remote ? remote.transport : (opts.spread ?? 'threads');
    // read once here: a worker elsewhere gets the text, not the path to read
    const source = fs.readFileSync(file, 'utf8');
    for (let w = 0; w < workers; w++) {
      const init: LoadWorkerInit = {
        file,
        source,
        baseDir: io.cwd,
        // a worker elsewhere gets the run's own variables (the spec's env:, --env), not this machine's environment
        env: remote ? { ...spec?.env, ...opts.env } : env,
        endpoints,
        worker: w,
        workers,
        executor: ex,
        preAllocatedVus: ex.executor === 'constant-vus' ? 0 : Math.max(1, splitCount(ex.preAllocatedVus, workers, w)),
        maxVus: ex.executor === 'constant-vus' ? 0 : Math.max(1, splitCount(ex.maxVus, workers, w)),
        // with setup() in a worker, its value comes once it ran (load-data)
        data: hooksInWorker ? undefined : data,
      };
      slots.push(spawnWorkerSlot(w, init, { spread, runId, ...(remote ? { context: remote.context } : {}), log: scriptLog, rpc: (method, args) => rpcImpl(method, args) }));
    }
    const slotEvents = (s: WorkerSlot) => s.events;
    // before the load starts, a worker that fails (its VUs' top level threw) fails the run;
    // after, it is lost: the run ends with what the others and its last reports hold (lostWorker)
    const failed = (s: WorkerSlot) =>
      new Promise<never>((_, reject) => {
        s.onFatal = (e) => {
          if (loadStartMs > 0) loseWorker(s, e.message);
          else reject(new TopasError('INTERNAL', `load worker ${s.index} failed: ${e.message}`));
        };
      });
    const anyFatal = Promise.race(slots.map(failed));
    anyFatal.catch(() => undefined);
    const stopOnInterrupt = () => {
      for (const s of slots) post(s, { type: 'load-stop', abort: true });
    };
    interrupts.onInterrupt(stopOnInterrupt);
    await Promise.race([Promise.all(slots.map((s) => slotEvents(s).ready)), anyFatal, abortedPromise(interrupts.signal)]);
    if (interrupts.interrupted) return;
    if (hooksInWorker) {
      if (mainVu!.info!.hasSetup) {
        setupSlot = slots[0];
        const setup = await Promise.race([ask(setupSlot, { type: 'load-setup' }, 'load-setup-done'), anyFatal, abortedPromise(interrupts.signal).then(() => undefined)]);
        if (!setup || interrupts.interrupted) return;
        if (!setup.ok) throw new TopasError('SCENARIO_FAILED', `setup() failed (in load worker ${setupSlot.worker.label}): ${setup.error}`);
        data = setup.value;
        setupDone = true;
        await Promise.race([Promise.all(slots.map((s) => ask(s, { type: 'load-data', data }, 'load-data-set'))), anyFatal]);
      } else setupDone = true;
      if (interrupts.interrupted) return;
    }

    // each worker starts at the same instant of this clock, told in its own: its per-second buckets are this clock's seconds
    const probeStartMs = wallNowMs();
    const offsets = await Promise.race([Promise.all(slots.map((s) => clockOffset(s))), anyFatal]);
    // the start message must reach every worker before the instant it names: a remote worker's crosses an API server
    // (writes and watch events: tens of ms, more on a busy cluster), so at least twice the slowest probe's round trip
    loadStartMs = Math.ceil(wallNowMs()) + (remote ? Math.max(REMOTE_START_LEAD_MS, Math.ceil(2 * (wallNowMs() - probeStartMs))) : 50);
    timeSeries = new TimeSeriesBuilder(loadStartMs);
    slots.forEach((s, i) => post(s, { type: 'load-start', startMs: loadStartMs + offsets[i] }));
    log(`load: ${describePlan(plan)} on ${workers} worker ${remote ? `${remote.transport} (${slots.map((s) => s.worker.label).join(', ')})` : opts.spread === 'processes' ? `process${workers > 1 ? 'es' : ''} (pids ${slots.map((s) => s.worker.pid).join(', ')})` : `thread${workers > 1 ? 's' : ''}`}`);

    const rateAt = (sec: number) => targetRateAt(ex, schedule, sec * 1000);
    const refresh = (final: boolean) => {
      merged = mergeSnapshots(slots.map((s) => s.snapshot).filter((s): s is MetricsSnapshot => !!s));
      let elapsedMs = Math.max(0, wallNowMs() - loadStartMs);
      // a run that went to its end shows its schedule, not the ms its clock read short or the ms the last reports took
      if (final && !aborted && !interrupts.interrupted) elapsedMs = plan.durationMs;
      const state = progressState(merged, timeSeries, elapsedMs, plan.durationMs, rateAt, slots, maxVus);
      const lastSec = Math.floor(elapsedMs / 1000) - 1;
      liveRates = { iterations: state.achievedRate, requests: (lastSec >= 0 ? timeSeries.point(lastSec, rateAt)?.requests : 0) ?? 0 };
      // a second is reported once it is over (the workers send it just after)
      for (const done = final ? Math.ceil(elapsedMs / 1000) : Math.floor(elapsedMs / 1000) - 1; secondsReported < done; secondsReported++) {
        const point = timeSeries.point(secondsReported, rateAt);
        if (point) hooks.loadSecond(point);
      }
      if (final) progress.finish(state);
      else progress.update(state);
      if (!aborted && !final) {
        const bad = abortingThreshold(plan.thresholds, merged, elapsedMs, { durationMs: Math.max(1, elapsedMs) });
        if (bad) {
          aborted = `threshold ${bad.key} ${bad.expression} failed (abort_on_fail)`;
          log(`aborting: ${aborted}`);
          for (const s of slots) post(s, { type: 'load-stop', abort: true });
        }
      }
    };
    for (const s of slots) {
      s.onMetrics = (buckets) => timeSeries.add(buckets);
    }
    // redraw just after each second of the run, once the workers sent it
    const everyMs = opts.progressEveryMs ?? 1000;
    progressTimer = setTimeout(() => {
      refresh(false);
      progressTimer = setInterval(() => refresh(false), everyMs);
    }, Math.max(0, loadStartMs - wallNowMs()) + 1100);
    hardStopTimer = setTimeout(() => {
      for (const s of slots) if (!s.finished) loseWorker(s, `still running ${formatDurationMs(GRACEFUL_STOP_MS + ABORT_SLACK_MS + HARD_STOP_SLACK_MS)} after the end of the schedule, stopped: does an iteration loop without ever waiting?`);
    }, Math.max(0, loadStartMs - wallNowMs()) + plan.durationMs + GRACEFUL_STOP_MS + ABORT_SLACK_MS + HARD_STOP_SLACK_MS);
    await Promise.race([Promise.all(slots.map((s) => slotEvents(s).done)), anyFatal]);
    clearTimeout(hardStopTimer);
    loadEndMs = wallNowMs();
    clearTimeout(progressTimer);
    progressTimer = undefined;
    for (const s of slots) for (const e of s.errors) errors.set(e.message, (errors.get(e.message) ?? 0) + e.count);
    refresh(true);
  });
  await session.close();
  const runError = session.error;

  // the rate of counters is per second of load: the schedule's length when it ran to its end
  const ranToEnd = loadStartMs > 0 && !aborted && !interrupts.interrupted && !runError;
  const durationMs = loadStartMs === 0 ? 0 : ranToEnd ? plan.durationMs : Math.max(1, Math.round((loadEndMs || wallNowMs()) - loadStartMs));
  const thresholds = loadStartMs > 0 && !runError ? evaluateThresholds(plan.thresholds, merged, { durationMs }) : [];
  let baseline: BaselineComparison | undefined;
  if (baselineFigures && loadStartMs > 0 && !runError) baseline = compareWithBaseline(figuresFromSnapshot(merged, durationMs), baselineFigures, { maxRegression: opts.maxRegression });
  const failedGate = !thresholdsPassed(thresholds) || (baseline !== undefined && !baseline.ok) || aborted !== undefined;
  // a lost worker makes the run partial: the thresholds are judged on what arrived, and decide the exit code;
  // with --require-all-workers it is an error of the run (exit 1), not a verdict on the SUT
  const lostFails = lostWorkers.length > 0 && Boolean(opts.requireAllWorkers);
  if (interrupts.interrupted) session.exitCode = EXIT_CODES.interrupted;
  else if (!runError && lostFails) session.exitCode = EXIT_CODES.failed;
  else if (!runError && failedGate) session.exitCode = EXIT_CODES.thresholdsFailed;
  const exitCode = session.exitCode;
  const state: LoadSummaryJson['state'] = interrupts.interrupted ? 'interrupted' : runError || lostFails ? 'error' : failedGate ? 'failed' : lostWorkers.length ? 'partial' : 'passed';
  const series = timeSeries.build((sec) => targetRateAt(ex, schedule, sec * 1000));
  const summaryFile = toSummaryFile(merged, { durationMs: Math.max(1, durationMs) });
  // metric names carry URLs, errors carry messages: masked before they are stored or printed
  const summary: LoadSummaryJson = maskDeep<LoadSummaryJson>({
    runId,
    state,
    exitCode,
    durationMs,
    executor: ex,
    metrics: summaryFile.metrics,
    thresholds,
    ...(baseline ? { baseline } : {}),
    ...(aborted ? { aborted } : {}),
    ...(lostWorkers.length ? { lostWorkers, lost } : {}),
    errors: [...errors].map(([message, count]) => ({ message: mask(message), count })),
  }, mask);
  // the reporters (the summary on stdout by default) render what the record holds, as `topas report` would
  session.finish(
    {
      state,
      ...session.finalRecord(),
      durationMs: io.now() - startedAtMs,
      ...(runError ? { error: runError } : {}),
      load: { plan, describe: describePlan(plan), durationMs, snapshot: merged, summary: summaryFile, timeSeries: series, thresholds, baseline, aborted, errors: summary.errors, ...(summary.lostWorkers ? { lostWorkers: summary.lostWorkers, lost: summary.lost } : {}) },
    },
    () => reportFromRecord(store.readRun(runId), { logs: store.readLog(runId) }),
  );
  return { exitCode, runId, snapshot: merged, timeSeries: series, summary };
}

function abortedPromise(signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) resolve();
    else signal.addEventListener('abort', () => resolve(), { once: true });
  });
}
