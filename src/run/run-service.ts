import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { EXIT_CODES, TopasError, serializeError, type Problem, type SerializedError } from '../errors';
import type { Io } from '../io';
import type { AppSpec } from '../spec/app-spec';
import { loadAppSpec } from '../spec/load-app-spec';
import { createMasker, registerSecret } from '../spec/secrets';
import { checkLuaSyntax } from '../lua/syntax-check';
import { ScenarioPool } from './scenario-pool';
import { createSutRpcHandler } from './sut-rpc';
import { RunRecordStore, writeStateFile } from './run-record';
import { findAppSpecFile, resolveTargets } from './targets';
import { openSut, type SutSession } from './sut-session';
import { Interrupts } from './interrupts';
import type { RunState, ScenarioResult, ScenarioTask } from './scenario-types';
import type { RunReport } from '../reporters/run-report';
import { renderReports, type ReporterRequest } from './render-reports';
import { formatDurationMs } from '../util/duration';

export interface RunOptions {
  io: Io;
  targets: string[];
  app?: string;
  backend: string;
  parallel: number;
  workers?: number;
  timeoutMs: number;
  reporters: ReporterRequest[];
  env: Record<string, string>;
  keep: boolean;
  continueOnFailure?: boolean;
  memoryLimitBytes?: number;
}

export interface RunOutcome {
  exitCode: number;
  report: RunReport;
}

const DEFAULT_MEMORY_LIMIT_BYTES = 256 * 1024 * 1024;

/**
 * `topas run`: validate everything, stand the SUT up (or reuse `topas up`'s),
 * run each scenario (at most `parallel` at once) in worker threads, report,
 * tear down. Every path out of here tears down what it started.
 */
export async function runScenarios(opts: RunOptions): Promise<RunOutcome> {
  const { io } = opts;
  const startedAtMs = io.now();
  const targets = resolveTargets(opts.targets, io.cwd);
  if (targets.playbooks.length > 0) {
    throw new TopasError('INVALID_PLAYBOOK', 'playbook targets are not supported by this version of topas', {
      problems: targets.playbooks.map((p) => ({ path: path.relative(io.cwd, p), message: 'pass .lua scenarios, a folder or a glob' })),
    });
  }
  const specFile = findAppSpecFile({ app: opts.app, cwd: io.cwd, near: targets.luaFiles[0] });
  const spec = specFile ? await loadAppSpec(specFile) : undefined;

  // Lua syntax is input: reject it before anything is started.
  const problems: Problem[] = [];
  for (const file of targets.luaFiles) problems.push(...(await checkLuaSyntax(file, io.cwd)));
  if (problems.length > 0) throw new TopasError('LUA_SYNTAX', `${problems.length} scenario(s) do not compile`, { problems });

  const mask = spec ? createMasker(spec) : (s: string) => s;
  for (const [k, v] of Object.entries(opts.env)) if (/PASSWORD|SECRET|TOKEN|KEY/i.test(k)) registerSecret(v);

  const recordDir = spec ? spec.dir : io.cwd;
  const store = new RunRecordStore(recordDir);
  const runId = store.createRunId();
  const baseRecord = { runId, kind: 'run', app: spec?.name, specFile, targets: targets.luaFiles.map((f) => path.relative(io.cwd, f)), startedAt: new Date(startedAtMs).toISOString() };
  store.writeRun(runId, { ...baseRecord, state: 'running' });
  const log = (line: string) => {
    const masked = mask(line);
    io.stderr.write(`topas: ${masked}\n`);
    store.appendLog(runId, { ts: io.now(), runId, source: 'topas', level: 'info', message: masked });
  };

  const interrupts = new Interrupts(io);
  let session: SutSession | undefined;
  let pool: ScenarioPool | undefined;
  const results: ScenarioResult[] = [];
  let runError: SerializedError | undefined;
  let exitCode: number = EXIT_CODES.ok;
  try {
    const work = async () => {
      if (spec) {
        log(`standing up app ${spec.name}…`);
        const t0 = io.now();
        session = await openSut({ spec, backend: opts.backend, runId, log, signal: interrupts.signal, env: opts.env });
        log(`app ${spec.name} is up on backend ${session.backend} in ${formatDurationMs(io.now() - t0)} (${session.reason})`);
      }
      if (interrupts.interrupted) return;
      pool = new ScenarioPool({
        workers: Math.max(1, Math.min(opts.workers ?? os.availableParallelism(), opts.parallel, targets.luaFiles.length)),
        rpc: session ? createSutRpcHandler(session.sut, (map) => pool?.setEndpoints(map)) : noSutRpc,
        onLog: (line) => {
          const message = mask(line.message);
          store.appendLog(runId, { ...line, message });
          io.stderr.write(`[${line.source}] ${line.level === 'info' ? '' : `${line.level.toUpperCase()} `}${message}\n`);
        },
        onEvent: (scenarioRunId, ev) => {
          if (ev.kind === 'step-end' && io.stderr.isTTY) io.stderr.write(`  ${ev.state === 'passed' ? '✓' : ev.state === 'failed' ? '✗' : '-'} ${ev.name}\n`);
          store.appendLog(runId, { ts: ev.ts, runId: scenarioRunId, source: 'event', level: 'debug', message: JSON.stringify(ev) });
        },
      });
      const activePool = pool;
      interrupts.onInterrupt(() => activePool.cancelAll('interrupt'));
      const endpoints = session ? session.sut.endpointMap() : {};
      const tasks: ScenarioTask[] = targets.luaFiles.map((file, i) => ({
        runId: `${runId}-${i + 1}`,
        file,
        baseDir: io.cwd,
        name: path.relative(io.cwd, file),
        timeoutMs: opts.timeoutMs,
        env: { ...stringEnv(io.env), ...opts.env },
        instance: { id: `${path.basename(file, '.lua')}-1`, role: 'default', index: 1, count: 1, params: {} },
        endpoints,
        memoryLimitBytes: opts.memoryLimitBytes ?? DEFAULT_MEMORY_LIMIT_BYTES,
        continueOnFailure: opts.continueOnFailure ?? false,
      }));
      const ordered = await runLimited(tasks, opts.parallel, (task) => activePool.run(task), () => interrupts.interrupted);
      results.push(...ordered.filter((r): r is ScenarioResult => r !== undefined));
    };
    await Promise.race([work(), interrupts.forced]);
  } catch (err) {
    runError = serializeError(err);
    exitCode = err instanceof TopasError ? err.exitCode : EXIT_CODES.failed;
    if (err instanceof TopasError) log(err.format());
    else log(`unexpected error: ${(err as Error).stack ?? String(err)}`);
  } finally {
    await teardown();
  }

  async function teardown() {
    const p = pool as ScenarioPool | undefined;
    await p?.close().catch(() => undefined);
    const s = session as SutSession | undefined;
    if (!s) return;
    try {
      if (s.owned && !opts.keep) {
        log('tearing down…');
        await Promise.race([s.sut.dispose(), interrupts.forced.then(() => s.sut.dispose())]);
      } else if (s.owned && opts.keep) {
        writeStateFile(recordDir, s.sut.state());
        await s.sut.detach();
        log(`kept the SUT running (--keep); \`topas down\` tears it down`);
      } else {
        await s.sut.detach();
      }
    } catch (err) {
      log(`teardown failed: ${(err as Error).message}`);
      if (exitCode === EXIT_CODES.ok) exitCode = EXIT_CODES.sutFailed;
    } finally {
      interrupts.dispose();
    }
  }

  const state = overallState(results, interrupts.interrupted, runError);
  if (interrupts.interrupted) exitCode = EXIT_CODES.interrupted;
  else if (!runError) exitCode = exitCodeFor(state);
  const report: RunReport = {
    runId,
    app: spec?.name,
    backend: (session as SutSession | undefined)?.backend,
    startedAt: new Date(startedAtMs).toISOString(),
    durationMs: io.now() - startedAtMs,
    state,
    results,
    error: runError,
  };
  store.writeRun(runId, { ...baseRecord, ...report, exitCode });
  renderReports(report, opts.reporters, { io, mask });
  return { exitCode, report };
}

const noSutRpc = async (_runId: string, method: string): Promise<unknown> => {
  throw new TopasError('SUT_NOT_UP', `${method}: no app spec was found, so there is no system under test`, {
    hint: 'pass --app topas.yaml or put a topas.yaml next to your scenarios',
  });
};

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
  if (results.some((r) => r.state === 'failed')) return 'failed';
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

export function describeSpec(spec: AppSpec): string {
  return `${spec.name} (${spec.services.length} service(s), ${spec.databases.length} database(s))`;
}

export function ensureDir(dir: string): void {
  fs.mkdirSync(dir, { recursive: true });
}
