import { EXIT_CODES, TopasError, internalLine, reportedError, stackOf, type SerializedError } from '../errors';
import type { Io } from '../io';
import type { AppSpec } from '../spec/app-spec';
import type { EndpointMap } from '../backends/backend';
import { createMasker } from '../spec/secrets';
import { reporterHooks, type ReporterHooks } from '../reporters/index';
import type { RunReport, SutServiceReport } from '../reporters/run-report';
import { formatDurationMs } from '../util/duration';
import { shapeChangeLine, type ShapeHistoryEntry } from '../shape/shape-controller';
import { RunRecordStore, type RunRecord } from './run-record';
import { Interrupts } from './interrupts';
import { captureSut } from './record-report';
import { renderReports, type ReporterRequest } from './render-reports';
import { acquireAppLock } from './schedule-service';
import { serveMetrics, type MetricsServer, type RunMetrics } from './run-metrics';
import { createSutRpcHandler } from './sut-rpc';
import type { RpcHandler } from './rpc-router';
import type { SutSession } from './sut-session';

export type RunKind = 'run' | 'load';

/** A call that changed the SUT while the run went on, as run.json keeps it (`sutChanges[]`). */
export interface SutChange {
  /** epoch ms */
  ts: number;
  /** `sut.applyService(api, {"version":"1.1.0"})`, then `sut.applyService done` when it returned */
  text: string;
}

/** The calls that change the SUT (marked on the run's timeline and recorded). */
const SUT_CHANGES = new Set(['sut.applyService', 'sut.scale', 'sut.stop', 'sut.start', 'sut.restart', 'sut.kill']);

export interface RunSessionOptions {
  io: Io;
  kind: RunKind;
  spec?: AppSpec;
  backend: string;
  env: Record<string, string>;
  keep: boolean;
  /** where `.topas/runs` lives */
  recordDir: string;
  /** an id chosen beforehand (`topas test schedule`) */
  runId?: string;
  /** what every write of run.json holds (schema version, kind, spec, targets, ...) */
  baseRecord: Record<string, unknown>;
  reporters: readonly ReporterRequest[];
  /** --debug: a run error keeps its JS stack */
  debug?: boolean;
}

/**
 * What `topas run` and `topas load` share, in the order it happens:
 *
 *   new RunSession()   run id, record store, masked log; nothing started yet
 *   guard(work)        Ctrl-C handling; inside it the work calls begin() (queue,
 *                      record `running`, reporters' onRunStart), serveMetrics(),
 *                      standUp() and then does what is specific to the command
 *   close()            the teardown steps the command registered (onTeardown),
 *                      then the SUT captured for the report and released
 *   finish()           the final record, the reporters
 *
 * A failure anywhere in `work` is recorded (error, exit code) rather than
 * thrown, so the teardown always runs; `await using` makes close() run even
 * when the command throws between creating the session and closing it.
 */
export class RunSession implements AsyncDisposable {
  readonly io: Io;
  readonly kind: RunKind;
  readonly spec?: AppSpec;
  readonly runId: string;
  readonly store: RunRecordStore;
  readonly recordDir: string;
  readonly startedAtMs: number;
  readonly mask: (s: string) => string;
  /** custom and built-in reporters' lifecycle hooks; they see masked values only */
  readonly hooks: ReporterHooks;
  readonly sutChanges: SutChange[] = [];
  /** the SUT, once standUp() stood it up or attached to `topas up`'s */
  sut?: SutSession;
  /** what ended the run outside the command's own verdict */
  error?: SerializedError;
  exitCode: number = EXIT_CODES.ok;
  /** the SUT as the run left it (captured by close()) */
  sutReport?: SutServiceReport[];
  private interruptsValue?: Interrupts;
  private standingUp = false;
  private releaseLock?: () => void;
  private metricsServer?: MetricsServer;
  private readonly teardownSteps: Array<() => unknown> = [];
  private readonly shapeListeners: Array<(e: ShapeHistoryEntry) => void> = [];
  private closing?: Promise<void>;

  constructor(private readonly opts: RunSessionOptions) {
    this.io = opts.io;
    this.kind = opts.kind;
    this.spec = opts.spec;
    this.recordDir = opts.recordDir;
    this.startedAtMs = opts.io.now();
    this.store = new RunRecordStore(opts.recordDir);
    this.runId = opts.runId ?? this.store.createRunId();
    this.mask = opts.spec ? createMasker(opts.spec) : (s: string) => s;
    this.hooks = reporterHooks(opts.reporters.map((r) => r.name), opts.io.cwd, (line) => this.log(line));
  }

  /** A `topas:` line on stderr and in the run's log, masked. */
  readonly log = (line: string): void => {
    const masked = this.mask(line);
    this.io.stderr.write(`topas: ${masked}\n`);
    this.store.appendLog(this.runId, { ts: this.io.now(), runId: this.runId, source: 'topas', level: 'info', message: masked });
  };

  /** Ctrl-C: the first one aborts the work and lets teardown finish, a second forces it. */
  get interrupts(): Interrupts {
    return (this.interruptsValue ??= new Interrupts(this.io));
  }

  get interrupted(): boolean {
    return this.interruptsValue?.interrupted ?? false;
  }

  /** run.json: the base record plus `fields` (written atomically, masked by the store). */
  writeRecord(fields: Record<string, unknown>): void {
    this.store.writeRun(this.runId, { schemaVersion: this.opts.baseRecord.schemaVersion, runId: this.runId, ...this.opts.baseRecord, ...fields } as unknown as RunRecord);
  }

  /**
   * The run starts: with `queue`, it waits (recorded `pending`) for the app's
   * lock first; then it is recorded `running` and the reporters are told.
   */
  async begin(opts: { queue?: boolean; running?: Record<string, unknown> } = {}): Promise<void> {
    if (opts.queue && this.spec && !(await this.backendQueues())) {
      this.writeRecord({ state: 'pending' });
      this.releaseLock = await acquireAppLock(this.recordDir, this.spec.name, this.interrupts.signal);
    }
    this.writeRecord({ state: 'running', ...opts.running });
    this.hooks.runStart({ runId: this.runId, kind: this.kind, app: this.spec?.name });
  }

  /**
   * A backend that keeps runs by itself (Backend.remoteRuns: a cluster) also
   * queues them there, one run of an app at a time across hosts: a local lock
   * would only make runs from this folder wait twice.
   */
  private async backendQueues(): Promise<boolean> {
    if (this.opts.backend === 'auto') return false;
    const { getBackend } = await import('../backends/registry');
    try {
      return getBackend(this.opts.backend).remoteRuns !== undefined;
    } catch {
      return false;
    }
  }

  /** Prometheus metrics on 127.0.0.1:<port> until the session closes. */
  async serveMetrics(metrics: RunMetrics, port: number, onPort?: (port: number) => void): Promise<void> {
    this.metricsServer = await serveMetrics(metrics, port);
    onPort?.(this.metricsServer.port);
    this.log(`metrics on http://127.0.0.1:${this.metricsServer.port}/metrics`);
  }

  /**
   * Stands the app up (or attaches to the one `topas up` left running); no
   * app spec, no SUT. Shaping changes are logged and passed to onShapeChange.
   */
  async standUp(): Promise<SutSession | undefined> {
    const spec = this.spec;
    if (!spec) return undefined;
    this.log(`standing up app ${spec.name}…`);
    const t0 = this.io.now();
    // loaded here: a run without an app needs no backend code (~190 ms of start-up)
    const { openSut } = await import('./sut-session');
    this.standingUp = true;
    this.sut = await openSut({ spec, backend: this.opts.backend, runId: this.runId, log: this.log, signal: this.interrupts.signal, env: this.opts.env, processEnv: this.opts.io.env, shapeDependents: !this.opts.keep, proxyHost: this.opts.keep });
    this.standingUp = false;
    this.log(`app ${spec.name} is up on backend ${this.sut.backend} in ${formatDurationMs(this.io.now() - t0)} (${this.sut.reason})`);
    this.sut.sut.shaping?.().onChange((e) => {
      this.log(shapeChangeLine(e));
      for (const fn of this.shapeListeners) fn(e);
    });
    return this.sut;
  }

  /** Called on every shaping change once the SUT is up (e.g. to re-point the VUs). */
  onShapeChange(fn: (e: ShapeHistoryEntry) => void): void {
    this.shapeListeners.push(fn);
  }

  /**
   * `require("sut")` calls, served against the SUT: changes of the SUT are
   * recorded (`sutChanges`) and passed to `onChange` as they start and end.
   */
  sutRpc(onEndpointsChanged: (map: EndpointMap) => void, onChange?: (text: string) => void): RpcHandler {
    const sut = this.sut?.sut;
    if (!sut) return noSutRpc;
    const handler = createSutRpcHandler(sut, onEndpointsChanged, this.spec);
    const change = (text: string) => {
      this.sutChanges.push({ ts: this.io.now(), text: this.mask(text) });
      onChange?.(text);
    };
    return async (runId, method, args) => {
      if (!SUT_CHANGES.has(method)) return handler(runId, method, args);
      change(`${method}(${describeArgs(args)})`);
      try {
        return await handler(runId, method, args);
      } finally {
        change(`${method} done`);
      }
    };
  }

  /** Runs before the SUT is captured and released (worker pools, the script's teardown); the last registered runs first. */
  onTeardown(fn: () => unknown): void {
    this.teardownSteps.push(fn);
  }

  /**
   * Runs the command's work: a failure becomes the run's error and exit code
   * (logged, masked), a second Ctrl-C stops waiting for it.
   */
  async guard(work: () => Promise<void>): Promise<void> {
    try {
      await Promise.race([work(), this.interrupts.forced]);
    } catch (caught) {
      this.fail(caught);
    }
  }

  /** Records `caught` as what ended the run. */
  fail(caught: unknown): void {
    // a start that failed disposed what it made before it threw
    const err = this.standingUp && this.interrupted ? new TopasError('INTERRUPTED', 'interrupted while standing up; everything started was torn down', { cause: caught }) : caught;
    this.error = reportedError(err, this.opts.debug);
    this.exitCode = err instanceof TopasError ? err.exitCode : EXIT_CODES.failed;
    if (err instanceof TopasError) this.log(err.format());
    else this.log(`error [INTERNAL]: ${internalLine(err)}`);
    if (this.opts.debug) this.log(stackOf(err));
  }

  /** Tears down once: the registered steps, then the SUT (captured for the report, then released); exit 3 when it would not go. */
  close(): Promise<void> {
    return (this.closing ??= this.teardown());
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  private async teardown(): Promise<void> {
    const interrupts = this.interrupts;
    try {
      // last registered, first undone (what was set up later may depend on what came before)
      for (const step of [...this.teardownSteps].reverse()) {
        try {
          await step();
        } catch (err) {
          this.log(`teardown step failed: ${(err as Error).message}`);
        }
      }
      this.sutReport = await captureSut(this.sut?.sut);
      if (this.sut) {
        const { releaseSut } = await import('./sut-session');
        const released = await releaseSut(this.sut, { keep: this.opts.keep, stateDir: this.spec?.dir ?? this.recordDir, log: this.log, forced: interrupts.forced });
        if (!released && this.exitCode === EXIT_CODES.ok) this.exitCode = EXIT_CODES.sutFailed;
      }
    } finally {
      this.releaseLock?.();
      interrupts.dispose();
      await this.metricsServer?.close().catch(() => undefined);
    }
  }

  /** What every kind's final record holds besides its own fields. */
  finalRecord(): Record<string, unknown> {
    const shaping = this.sut?.sut.shaping?.().history();
    return {
      backend: this.sut?.backend,
      exitCode: this.exitCode,
      ...(this.sutReport ? { sut: this.sutReport } : {}),
      ...(shaping?.length ? { shaping } : {}),
      ...(this.sutChanges.length ? { sutChanges: this.sutChanges } : {}),
    };
  }

  /** The final record, then every reporter requested (and their onRunEnd). */
  finish(record: Record<string, unknown>, report: RunReport | (() => RunReport), details?: Pick<RunReport, 'kind' | 'exitCode' | 'sut' | 'logs'>): void {
    this.writeRecord(record);
    renderReports(typeof report === 'function' ? report() : report, [...this.opts.reporters], { io: this.io, mask: this.mask, details });
  }
}

const noSutRpc: RpcHandler = async (_runId, method) => {
  throw new TopasError('SUT_NOT_UP', `${method}: no app spec was found, so there is no system under test`, {
    hint: 'pass --app topas.yaml or put a topas.yaml next to your scenarios',
  });
};

function describeArgs(args: unknown[]): string {
  const s = args.map((a) => (typeof a === 'string' ? a : JSON.stringify(a))).join(', ');
  return s.length > 120 ? `${s.slice(0, 117)}...` : s;
}
