import * as fs from 'node:fs';
import { RunMetrics, serveMetrics, type MetricsServer } from '../run/run-metrics';
import { registerLiveLoadMetrics } from './live-metrics';
import { colorEnabled } from '../util/color';
import * as os from 'node:os';
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import { EXIT_CODES, TopasError, internalLine, reportedError, serializeError, stackOf, type SerializedError } from '../errors';
import type { Io } from '../io';
import type { AppSpec } from '../spec/app-spec';
import { createMasker, maskDeep, registerEnvSecrets, registerSpecSecrets } from '../spec/secrets';
import { checkLuaSyntax } from '../lua/syntax-check';
import { VuHost, type Vu } from '../lua/vu-host';
import { RunRecordStore } from '../run/run-record';
import { findAppSpecFile } from '../run/targets';
import type { SutSession } from '../run/sut-session';
import type { EndpointMap } from '../backends/backend';
import type { ShapeCall } from '../shape/shape-calls';
import { shapeChangeLine } from '../shape/shape-controller';
import { Interrupts } from '../run/interrupts';
import { createSutRpcHandler } from '../run/sut-rpc';
import type { FromLoadWorker, LoadWorkerInit, ToLoadWorker } from '../run/worker-protocol';
import type { LogLevel } from '../run/scenario-types';
import { formatDurationMs } from '../util/duration';
import { checkServiceEnvWithFlags } from '../util/limits';
import { mergeSnapshots, selectSeries, SeriesStats, TimeSeriesBuilder, toSummaryFile, type MetricType, type MetricsSnapshot, type SecondBucket, type TimeSeries } from './metrics';
import { ArrivalSchedule, resolveLoadPlan, splitCount, targetRateAt, type LoadFlags, type LoadPlan } from './schedule';
import { abortingThreshold, evaluateThresholds, thresholdsPassed, type ThresholdResult } from './thresholds';
import { compareWithBaseline, figuresFromBaselineJson, figuresFromSnapshot, type BaselineComparison, type Figures } from './baseline';
import { ProgressRenderer, renderSummary, type ProgressState } from './progress';
import { ABORT_SLACK_MS, GRACEFUL_STOP_MS, wallNowMs } from './load-runner';
import { captureSut, reportFromRecord, RUN_RECORD_SCHEMA_VERSION } from '../run/record-report';
import { reporterHooks } from '../reporters/index';
import { checkReporterOutputs, renderReports, type ReporterRequest } from '../run/render-reports';
import { isPostmanCollectionFile, writeCollectionLoadScript, type CollectionLoadOptions } from '../postman/collection-load-script';
import { MAX_MESSAGE_CHARS, clipText, escapeControl } from '../util/terminal-text';

export interface LoadOptions {
  io: Io;
  /** the load script (relative to io.cwd or absolute) */
  file: string;
  app?: string;
  backend: string;
  flags: LoadFlags;
  /** worker threads (default: cores, at most the VU count) */
  workers?: number;
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
  /** --reporter name[:file]: rendered from the run record once it is written */
  reporters?: ReporterRequest[];
}

export interface LoadSummaryJson {
  runId: string;
  state: 'passed' | 'failed' | 'interrupted' | 'error';
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
  errors: Array<{ message: string; count: number }>;
}

export interface LoadOutcome {
  exitCode: number;
  runId: string;
  snapshot: MetricsSnapshot;
  timeSeries: TimeSeries;
  summary: LoadSummaryJson;
}

const GRACE_MS = 5000;
/** Past duration + gracefulStop + the workers' abort slack, a worker that has not reported is stuck (a Lua loop that never yields): it is stopped. */
const HARD_STOP_SLACK_MS = 5000;
const MUTATING = new Set(['sut.applyService', 'sut.scale', 'sut.stop', 'sut.start', 'sut.restart', 'sut.kill']);

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
  const spec: AppSpec | undefined = specFile ? await (await import('../spec/load-app-spec')).loadAppSpec(specFile) : undefined;
  // process-wide: the run record, log, summary and console mask them too
  if (spec) registerSpecSecrets(spec);
  registerEnvSecrets(opts.env);
  if (spec) {
    await import('../backends/index');
    (await import('../backends/registry')).checkBackendName(opts.backend);
    checkServiceEnvWithFlags(spec.services, opts.env);
  }
  const mask = spec ? createMasker(spec) : (s: string) => s;
  const env = { ...stringEnv(io.env), ...spec?.env, ...opts.env };
  const baselineFigures = opts.baseline !== undefined ? readBaseline(opts.baseline, spec?.dir ?? io.cwd, io.cwd) : undefined;
  if (opts.maxRegression !== undefined && !(opts.maxRegression >= 0)) throw new TopasError('INVALID_FLAGS', `--max-regression must be >= 0, got ${opts.maxRegression}`);

  // the main thread's own VU: reads `options`, runs setup and teardown
  let rpcImpl: (method: string, args: unknown[]) => Promise<unknown> = async (method) => {
    throw new TopasError('SUT_NOT_UP', `${method}: the system under test is not up yet (the script's top level runs before it is)`);
  };
  const customTypes: Record<string, MetricType> = {};
  const recordDir = spec ? spec.dir : io.cwd;
  const store = new RunRecordStore(recordDir);
  const runId = store.createRunId();
  const log = (line: string) => {
    const masked = mask(line);
    io.stderr.write(`topas: ${masked}\n`);
    store.appendLog(runId, { ts: io.now(), runId, source: 'topas', level: 'info', message: masked });
  };
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

  const baseRecord = { schemaVersion: RUN_RECORD_SCHEMA_VERSION, runId, kind: 'load', spec: spec ? recordedSpec(spec) : undefined, app: spec?.name, specFile, file: path.relative(io.cwd, requested), startedAt: new Date(startedAtMs).toISOString(), pid: process.pid };
  store.writeRun(runId, { ...baseRecord, state: 'running', load: { plan } });
  // custom reporters' lifecycle hooks: run start, each second of load
  const hooks = reporterHooks((opts.reporters ?? []).map((r) => r.name), io.cwd, log);
  hooks.runStart({ runId, kind: 'load', app: spec?.name });
  let secondsReported = 0;

  const interrupts = new Interrupts(io);
  let session: SutSession | undefined;
  const slots: WorkerSlot[] = [];
  let runError: (SerializedError & { exitCode?: number }) | undefined;
  let exitCode: number = EXIT_CODES.ok;
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
  const loseWorker = (s: WorkerSlot, why: string) => {
    if (s.finished) return;
    s.finished = true;
    const atMs = Math.max(0, wallNowMs() - loadStartMs);
    const kept = s.lastReportMs !== undefined ? `its metrics up to ${formatDurationMs(Math.max(0, s.lastReportMs - loadStartMs))} are kept` : 'it had reported no metrics yet';
    const line = `load worker ${s.index} of ${slots.length} died ${formatDurationMs(atMs)} into the load (${why}); ${kept}, the rest of its share of the load is missing`;
    lostWorkers.push(line);
    log(`error: ${line}`);
    s.errors = [...s.errors, { message: `load worker ${s.index} died: ${why}`, count: 1 }];
    if (!s.gone) void s.worker.terminate();
    s.gone = true;
    s.activeVus = 0;
    s.resolveDone();
  };
  let data: unknown;
  let setupDone = false;
  let standingUp = false;
  let liveRates = { iterations: 0, requests: 0 };
  let metricsServer: MetricsServer | undefined;
  let sutReport: Awaited<ReturnType<typeof captureSut>>;

  try {
    if (opts.metricsPort !== undefined) {
      const runMetrics = new RunMetrics();
      registerLiveLoadMetrics(runMetrics.registry, {
        snapshot: () => (slots.some((x) => x.snapshot) ? mergeSnapshots(slots.map((x) => x.snapshot).filter((x): x is MetricsSnapshot => !!x)) : merged),
        currentRates: () => liveRates,
      });
      metricsServer = await serveMetrics(runMetrics, opts.metricsPort);
      opts.onMetricsServer?.(metricsServer.port);
      log(`metrics on http://127.0.0.1:${metricsServer.port}/metrics`);
    }
    const work = async () => {
      if (spec) {
        log(`standing up app ${spec.name}…`);
        const t0 = io.now();
        const { openSut } = await import('../run/sut-session');
        standingUp = true;
        session = await openSut({ spec, backend: opts.backend, runId, log, signal: interrupts.signal, env: opts.env, processEnv: io.env, shapeDependents: !opts.keep, proxyHost: Boolean(opts.keep) });
        standingUp = false;
        log(`app ${spec.name} is up on backend ${session.backend} in ${formatDurationMs(io.now() - t0)} (${session.reason})`);
        const sut = session.sut;
        const pushEndpoints = (map: EndpointMap) => {
          host.setEndpoints(map);
          for (const s of slots) post(s, { type: 'endpoints', endpoints: map });
        };
        const sutRpc = createSutRpcHandler(sut, pushEndpoints, spec);
        host.setEndpoints(sut.endpointMap());
        const shaping = sut.shaping?.();
        // a shaped service is reached through its proxies, an unshaped one directly: re-point the VUs on every change, and mark it in the time series
        shaping?.onChange((e) => {
          log(shapeChangeLine(e));
          timeSeries.mark(io.now(), `shape ${e.service}: ${e.description}`);
          pushEndpoints(sut.endpointMap());
        });
        rpcImpl = async (method, args) => {
          if (method === 'shape.apply') {
            if (!shaping) throw new TopasError('SUT_NOT_UP', `${method}: backend ${session?.backend} has no shaping proxies`);
            shaping.applyCall(args[0] as ShapeCall);
            await shaping.settled();
            return undefined;
          }
          if (!method.startsWith('sut.')) throw new TopasError('INTERNAL', `${method} is not available under \`topas load\``);
          const mutating = MUTATING.has(method);
          if (mutating) timeSeries.mark(io.now(), `${method}(${describeArgs(args)})`);
          try {
            return await sutRpc(runId, method, args);
          } finally {
            if (mutating) timeSeries.mark(io.now(), `${method} done`);
          }
        };
      } else {
        rpcImpl = async (method) => {
          throw new TopasError('SUT_NOT_UP', `${method}: no app spec was found, so there is no system under test`, { hint: 'pass --app topas.yaml or put a topas.yaml next to the script' });
        };
      }
      if (interrupts.interrupted) return;

      const setup = await host.setup(mainVu!);
      if (!setup.ok) throw new TopasError('SCENARIO_FAILED', `setup() failed: ${setup.error}`);
      data = setup.value;
      setupDone = true;
      try {
        structuredClone(data);
      } catch {
        throw new TopasError('SCENARIO_FAILED', 'setup() returned something that cannot be handed to the VUs (functions or userdata); return plain tables, strings and numbers');
      }
      if (interrupts.interrupted) return;

      const endpoints = session ? session.sut.endpointMap() : {};
      for (let w = 0; w < workers; w++) {
        const init: LoadWorkerInit = {
          file,
          baseDir: io.cwd,
          env,
          endpoints,
          worker: w,
          workers,
          executor: ex,
          preAllocatedVus: ex.executor === 'constant-vus' ? 0 : Math.max(1, splitCount(ex.preAllocatedVus, workers, w)),
          maxVus: ex.executor === 'constant-vus' ? 0 : Math.max(1, splitCount(ex.maxVus, workers, w)),
          data,
        };
        slots.push(spawnWorker(w, init));
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

      loadStartMs = Math.ceil(wallNowMs()) + 50;
      timeSeries = new TimeSeriesBuilder(loadStartMs);
      for (const s of slots) post(s, { type: 'load-start', startMs: loadStartMs });
      log(`load: ${describePlan(plan)} on ${workers} worker thread${workers > 1 ? 's' : ''}`);

      const rateAt = (sec: number) => targetRateAt(ex, schedule, sec * 1000);
      const refresh = (final: boolean) => {
        merged = mergeSnapshots(slots.map((s) => s.snapshot).filter((s): s is MetricsSnapshot => !!s));
        let elapsedMs = Math.max(0, wallNowMs() - loadStartMs);
        // a run that went to its end shows the full schedule, not the ms its clock read short
        if (final && !aborted && !interrupts.interrupted) elapsedMs = Math.max(elapsedMs, plan.durationMs);
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
    };
    await Promise.race([work(), interrupts.forced]);
  } catch (caught) {
    // a start that failed disposed what it made before it threw
    const err = standingUp && interrupts.interrupted ? new TopasError('INTERRUPTED', 'interrupted while standing up; everything started was torn down', { cause: caught }) : caught;
    runError = reportedError(err, opts.debug);
    exitCode = err instanceof TopasError ? err.exitCode : EXIT_CODES.failed;
    if (err instanceof TopasError) log(err.format());
    else log(`error [INTERNAL]: ${internalLine(err)}`);
    if (opts.debug) log(stackOf(err));
  } finally {
    if (progressTimer) clearTimeout(progressTimer);
    if (hardStopTimer) clearTimeout(hardStopTimer);
    await teardown();
    await metricsServer?.close();
  }

  async function teardown() {
    // the script's teardown(data) runs once, while the SUT is still up
    // k6 semantics: teardown(data) runs when setup succeeded, also after an abort or Ctrl-C
    if (setupDone && mainVu?.info?.hasTeardown) {
      const t = await Promise.race([host.teardown(mainVu, data), interrupts.forced.then(() => ({ ok: false as const, error: 'forced' }))]);
      if (!t.ok) log(`teardown() failed: ${t.error}`);
    }
    await host.close().catch(() => undefined);
    await Promise.all(slots.map((s) => closeWorker(s)));
    sutReport = await captureSut((session as SutSession | undefined)?.sut);
    try {
      const released = !session || (await (await import('../run/sut-session')).releaseSut(session as SutSession, { keep: Boolean(opts.keep), stateDir: spec?.dir ?? recordDir, log, forced: interrupts.forced }));
      if (!released && exitCode === EXIT_CODES.ok) exitCode = EXIT_CODES.sutFailed;
    } finally {
      interrupts.dispose();
    }
  }

  // the rate of counters is per second of load: the schedule's length when it ran to its end
  const ranToEnd = loadStartMs > 0 && !aborted && !interrupts.interrupted && !runError;
  const durationMs = loadStartMs === 0 ? 0 : ranToEnd ? plan.durationMs : Math.max(1, Math.round((loadEndMs || wallNowMs()) - loadStartMs));
  const thresholds = loadStartMs > 0 && !runError ? evaluateThresholds(plan.thresholds, merged, { durationMs }) : [];
  let baseline: BaselineComparison | undefined;
  if (baselineFigures && loadStartMs > 0 && !runError) baseline = compareWithBaseline(figuresFromSnapshot(merged, durationMs), baselineFigures, { maxRegression: opts.maxRegression });
  const failedGate = !thresholdsPassed(thresholds) || (baseline !== undefined && !baseline.ok) || aborted !== undefined;
  // a lost worker is an error of the run, not a verdict on the SUT: its thresholds were judged on part of the load
  if (interrupts.interrupted) exitCode = EXIT_CODES.interrupted;
  else if (!runError && lostWorkers.length) exitCode = EXIT_CODES.failed;
  else if (!runError && failedGate) exitCode = EXIT_CODES.thresholdsFailed;
  const state: LoadSummaryJson['state'] = interrupts.interrupted ? 'interrupted' : runError || lostWorkers.length ? 'error' : failedGate ? 'failed' : 'passed';
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
    ...(lostWorkers.length ? { lostWorkers } : {}),
    errors: [...errors].map(([message, count]) => ({ message: mask(message), count })),
  }, mask);
  store.writeRun(runId, {
    ...baseRecord,
    state: state === 'interrupted' ? 'interrupted' : state === 'error' ? 'error' : state === 'failed' ? 'failed' : 'passed',
    backend: (session as SutSession | undefined)?.backend,
    durationMs: io.now() - startedAtMs,
    exitCode,
    ...(runError ? { error: runError } : {}),
    ...(sutReport ? { sut: sutReport } : {}),
    load: { plan, describe: describePlan(plan), durationMs, snapshot: merged, summary: summaryFile, timeSeries: series, thresholds, baseline, aborted, errors: summary.errors, ...(summary.lostWorkers ? { lostWorkers: summary.lostWorkers } : {}) },
  });

  if (opts.json) io.stdout.write(mask(JSON.stringify(summary, null, 2)) + '\n');
  else if (loadStartMs > 0) {
    io.stdout.write(mask(renderSummary(merged, { durationMs: Math.max(1, durationMs), thresholds, baseline, color: colorEnabled(io.env, io.stdout) })));
    if (aborted) io.stdout.write(`aborted: ${mask(aborted)}\n`);
    for (const l of lostWorkers) io.stdout.write(`partial results: ${mask(l)}\n`);
    if (summary.errors.length) io.stdout.write(`iteration errors:\n${summary.errors.map((e) => `  ${e.count} × ${e.message}`).join('\n')}\n`);
    io.stdout.write(`run ${runId}: ${state}\n`);
  }
  if (opts.reporters?.length) renderReports(reportFromRecord(store.readRun(runId), { logs: store.readLog(runId) }), opts.reporters, { io, mask });
  return { exitCode, runId, snapshot: merged, timeSeries: series, summary };

  // ------------------------------------------------------------------ workers

  function spawnWorker(index: number, init: LoadWorkerInit): WorkerSlot {
    const worker = new Worker(path.join(__dirname, 'load-worker.js'));
    let readyResolve!: () => void;
    let doneResolve!: () => void;
    const slot: WorkerSlot = {
      index,
      worker,
      gone: false,
      finished: false,
      errors: [],
      events: { ready: new Promise<void>((r) => (readyResolve = r)), done: new Promise<void>((r) => (doneResolve = r)) },
      resolveDone: () => doneResolve(),
    };
    worker.on('message', (msg: FromLoadWorker) => {
      switch (msg.type) {
        case 'load-ready':
          readyResolve();
          break;
        case 'load-metrics':
          if (slot.finished) break;
          slot.lastReportMs = wallNowMs();
          slot.snapshot = msg.snapshot as MetricsSnapshot;
          slot.activeVus = msg.activeVus;
          slot.allocatedVus = msg.allocatedVus;
          slot.onMetrics?.(msg.buckets as SecondBucket[]);
          break;
        case 'load-done':
          if (slot.finished) break;
          slot.finished = true;
          slot.snapshot = msg.snapshot as MetricsSnapshot;
          slot.activeVus = 0;
          slot.errors = msg.errors;
          slot.onMetrics?.(msg.buckets as SecondBucket[]);
          doneResolve();
          break;
        case 'log':
          scriptLog(msg.line.level, msg.line.source, msg.line.message);
          break;
        case 'rpc-call':
          rpcImpl(msg.method, msg.args).then(
            (value) => post(slot, { type: 'rpc-result', callId: msg.callId, ok: true, value }),
            (err) => post(slot, { type: 'rpc-result', callId: msg.callId, ok: false, error: serializeError(err) }),
          );
          break;
        case 'fatal':
          slot.onFatal?.(msg.error);
          break;
      }
    });
    // an uncaught error in the worker comes as 'error', then 'exit': the first one says why
    worker.on('error', (err) => {
      if (!slot.gone) slot.onFatal?.(serializeError(err));
      slot.gone = true;
    });
    worker.on('exit', (code) => {
      if (!slot.gone) slot.onFatal?.({ name: 'WorkerError', message: `exited unexpectedly (code ${code})` });
      slot.gone = true;
    });
    post(slot, { type: 'load-init', init });
    return slot;
  }
}

interface WorkerSlot {
  index: number;
  worker: Worker;
  gone: boolean;
  /** reported load-done, or was lost */
  finished: boolean;
  /** wall clock of its last metrics report */
  lastReportMs?: number;
  resolveDone(): void;
  snapshot?: MetricsSnapshot;
  activeVus?: number;
  /** VUs the worker has made so far: summed, the summary's vus_max */
  allocatedVus?: number;
  errors: Array<{ message: string; count: number }>;
  events: { ready: Promise<void>; done: Promise<void> };
  onMetrics?: (buckets: SecondBucket[]) => void;
  onFatal?: (e: SerializedError) => void;
}

function post(slot: WorkerSlot, msg: ToLoadWorker): void {
  if (slot.gone) return;
  try {
    slot.worker.postMessage(msg);
  } catch {
    // gone already
  }
}

async function closeWorker(slot: WorkerSlot): Promise<void> {
  if (slot.gone) return;
  const exited = new Promise<void>((resolve) => slot.worker.once('exit', () => resolve()));
  slot.gone = true;
  try {
    slot.worker.postMessage({ type: 'shutdown' } satisfies ToLoadWorker);
  } catch {
    // already gone
  }
  const timer = setTimeout(() => void slot.worker.terminate(), GRACE_MS);
  await exited;
  clearTimeout(timer);
}

function abortedPromise(signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) resolve();
    else signal.addEventListener('abort', () => resolve(), { once: true });
  });
}

function progressState(
  merged: MetricsSnapshot,
  ts: TimeSeriesBuilder,
  elapsedMs: number,
  totalMs: number,
  rateAt: (sec: number) => number,
  slots: WorkerSlot[],
  maxVus: number,
): ProgressState {
  const sec = Math.floor(elapsedMs / 1000) - 1;
  const last = sec >= 0 ? ts.point(sec, rateAt) : undefined;
  const get = (metric: string, stat: string) => {
    const sel = selectSeries(merged, metric);
    return sel ? new SeriesStats(sel.data, Math.max(1, elapsedMs)).get(stat) : undefined;
  };
  const reqFailed = selectSeries(merged, 'http_req_failed');
  const failedIterations = 0;
  return {
    elapsedMs: Math.min(elapsedMs, Math.max(totalMs, elapsedMs)),
    totalMs,
    targetRate: rateAt(Math.min(elapsedMs, Math.max(0, totalMs - 1)) / 1000),
    achievedRate: last?.achievedRate ?? 0,
    activeVus: slots.reduce((n, s) => n + (s.activeVus ?? 0), 0),
    // vus_max as the summary has it (VUs made so far), the cap until a worker reports
    maxVus: slots.some((s) => s.allocatedVus !== undefined) ? slots.reduce((n, s) => n + (s.allocatedVus ?? 0), 0) : maxVus,
    p95Ms: last?.p95Ms ?? get('http_req_duration', 'p(95)'),
    errors: (reqFailed && reqFailed.data.kind === 'rate' ? reqFailed.data.passes : 0) + failedIterations,
    requests: get('http_reqs', 'count') ?? 0,
    dropped: get('dropped_iterations', 'count') ?? 0,
  };
}

function describePlan(p: LoadPlan): string {
  const e = p.executor;
  const per = (rate: number, unitMs: number) => `${rate}/${unitMs === 1000 ? 's' : formatDurationMs(unitMs)}`;
  switch (e.executor) {
    case 'constant-arrival-rate':
      return `constant arrival rate ${per(e.rate, e.timeUnitMs)} for ${formatDurationMs(e.durationMs)}, up to ${e.maxVus} VUs`;
    case 'ramping-arrival-rate':
      return `ramping arrival rate (${e.stages.map((s) => `${per(s.target, e.timeUnitMs)} in ${formatDurationMs(s.durationMs)}`).join(', ')}), up to ${e.maxVus} VUs`;
    case 'constant-vus':
      return `${e.vus} constant VUs for ${formatDurationMs(e.durationMs)}`;
  }
}

function describeArgs(args: unknown[]): string {
  const s = args.map((a) => (typeof a === 'string' ? a : JSON.stringify(a))).join(', ');
  return s.length > 120 ? `${s.slice(0, 117)}...` : s;
}

/** --baseline: an existing file, else a run id of this app's records. */
function readBaseline(value: string, recordDir: string, cwd: string): Figures {
  const asFile = path.resolve(cwd, value);
  if (fs.existsSync(asFile) && fs.statSync(asFile).isFile()) {
    let json: unknown;
    try {
      json = JSON.parse(fs.readFileSync(asFile, 'utf8'));
    } catch (err) {
      throw new TopasError('INVALID_FLAGS', `--baseline ${value}: not JSON (${(err as Error).message})`);
    }
    return figuresFromBaselineJson(json, `--baseline ${value}`);
  }
  const store = new RunRecordStore(recordDir);
  let record;
  try {
    record = store.readRun(value);
  } catch {
    throw new TopasError('INVALID_FLAGS', `--baseline ${value}: no such file, and no run "${value}" in ${store.runsDir}`, { hint: 'pass a run id from `topas test status` or a JSON file' });
  }
  return figuresFromBaselineJson(record, `--baseline ${value}`);
}

function stringEnv(env: NodeJS.ProcessEnv): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(env)) if (v !== undefined) out[k] = v;
  return out;
}

/** Why a .json file is not a Postman collection, for the message. */
function describeJsonProblem(file: string): string {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    return `cannot read: ${(err as Error).message}`;
  }
  try {
    JSON.parse(text);
  } catch (err) {
    // the parser quotes the input: binary bytes must not reach the terminal
    return `not valid JSON: ${(err as Error).message.replace(/[\x00-\x08\x0b-\x1f\x7f]/g, '?')}`;
  }
  return 'valid JSON, but no Postman collection schema in info.schema';
}

/** The spec as the record keeps it: plain data (the record writer masks its secrets). */
function recordedSpec(spec: AppSpec): unknown {
  try {
    return JSON.parse(JSON.stringify(spec));
  } catch {
    return undefined;
  }
}
