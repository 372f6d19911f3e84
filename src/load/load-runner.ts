import type { EndpointMap } from '../backends/backend';
import type { LogLevel } from '../run/scenario-types';
import type { LoadWorkerInit } from '../run/worker-protocol';
import type { VuCommandResult } from '../lua/vu-host';
import { MetricsRegistry, type MetricsSnapshot, type SecondBucket } from './metrics';
import { GRACEFUL_STOP_MS, IterationLoop } from './iteration-loop';
import { SetupHooks } from './setup-hooks';
import { wallNowMs } from './wall-clock';

export { GRACEFUL_STOP_MS } from './iteration-loop';
export { UNCLONEABLE_SETUP_VALUE } from './setup-hooks';
export { PREPARE_BUDGET_MS } from './vu-pool';
export { wallNowMs } from './wall-clock';

/** Log lines a worker forwards per second; more are counted and summarized. */
const LOG_LINES_PER_SEC = 50;
const MAX_DISTINCT_ERRORS = 20;
/** After the graceful stop interrupts the iterations still running, how long they get to unwind before the worker reports without them. */
export const ABORT_SLACK_MS = 2000;

export interface LoadRunnerEvents {
  log(level: LogLevel, source: string, message: string): void;
  rpc(method: string, args: unknown[]): Promise<unknown>;
  /** once a second while running */
  metrics(m: { buckets: SecondBucket[]; snapshot: MetricsSnapshot; activeVus: number; allocatedVus: number }): void;
  done(m: { buckets: SecondBucket[]; snapshot: MetricsSnapshot; errors: Array<{ message: string; count: number }> }): void;
}

/**
 * One worker's share of a load test: its VU pool in one Lua engine, its slice
 * of the arrival schedule (k % workers == worker), its metrics registry.
 * This top layer is what the worker drives (start, stop, the hooks) and what
 * it hears back (logs, errors, the metrics each second and at the end).
 */
export class LoadRunner extends IterationLoop {
  private flushTimer?: NodeJS.Timeout;
  private abortTimer?: NodeJS.Timeout;
  private abandoned = 0;
  private finished = false;
  private readonly errors = new Map<string, number>();
  private logBudget = LOG_LINES_PER_SEC;
  private logsDropped = 0;
  private readonly hooks: SetupHooks;

  constructor(init: LoadWorkerInit, events: LoadRunnerEvents) {
    super(init, events);
    this.hooks = new SetupHooks({
      host: () => this.host,
      init: this.init,
      vus: this.vus,
      setRecording: (on) => {
        this.recording = on;
      },
    });
  }

  setEndpoints(map: EndpointMap): void {
    this.host?.setEndpoints(map);
  }

  start(startMs: number): void {
    this.startMs = startMs;
    // a fresh registry: the metrics window and per-second buckets start now
    const reg = new MetricsRegistry({ startMs, now: wallNowMs });
    for (const [name, type] of this.customMetrics) reg.define(name, type);
    this.registry = reg;
    const delayMs = Math.max(0, startMs - wallNowMs());
    this.timer = setTimeout(() => this.begin(), delayMs);
    // flush just after each second of the run completes, so its bucket goes out at once
    this.flushTimer = setTimeout(() => {
      this.flush();
      this.flushTimer = setInterval(() => this.flush(), 1000);
    }, delayMs + 1020);
  }

  /**
   * Stops starting iterations; `abort` also interrupts those in flight (and
   * VUs still being made), and ABORT_SLACK_MS later the worker reports
   * without the ones that did not unwind.
   */
  override stop(abort: boolean): void {
    if (!this.stopping) {
      this.stopping = true;
      if (this.timer) clearTimeout(this.timer);
      this.timer = undefined;
    }
    if (abort && !this.aborting) {
      this.aborting = true;
      this.host?.interruptAll();
      this.abortTimer = setTimeout(() => {
        if (this.finished) return;
        this.abandoned = this.inFlight;
        this.inFlight = 0;
        this.maybeFinish();
      }, ABORT_SLACK_MS);
    }
    this.maybeFinish();
  }

  /** Runs the script's setup() in a VU of its own, which teardown() reuses. */
  runSetup(): Promise<VuCommandResult> {
    return this.hooks.runSetup();
  }

  /** setup()'s value becomes ctx.data of every VU: those made already, and those made from now on. */
  setData(data: unknown): Promise<void> {
    return this.hooks.setData(data);
  }

  runTeardown(data: unknown): Promise<VuCommandResult> {
    return this.hooks.runTeardown(data);
  }

  async close(): Promise<void> {
    for (const t of [this.timer, this.graceTimer, this.abortTimer]) if (t) clearTimeout(t);
    if (this.flushTimer) clearTimeout(this.flushTimer);
    await this.host?.close();
  }

  // ------------------------------------------------------------------ internals

  protected override noteError(message: string): void {
    const n = this.errors.get(message);
    if (n !== undefined) this.errors.set(message, n + 1);
    else if (this.errors.size < MAX_DISTINCT_ERRORS) {
      this.errors.set(message, 1);
      this.log('error', `worker-${this.init.worker}`, `iteration failed: ${message}`);
    } else this.errors.set('(other errors)', (this.errors.get('(other errors)') ?? 0) + 1);
  }

  protected override log(level: LogLevel, source: string, message: string): void {
    if (this.logBudget > 0) {
      this.logBudget--;
      this.events.log(level, source, message);
    } else this.logsDropped++;
  }

  /** `vus`: the VUs in use since the last sample (their peak), not the few busy at this instant */
  private sampleVus(): { active: number; allocated: number } {
    const active = this.dispatcher ? this.dispatcher.takePeakActiveVus() : this.busyVus;
    const allocated = this.dispatcher ? this.dispatcher.allocatedVus : this.vus.length;
    this.registry.setVus(active, allocated);
    return { active, allocated };
  }

  private flush(): void {
    this.logBudget = LOG_LINES_PER_SEC;
    if (this.logsDropped) {
      this.events.log('warn', `worker-${this.init.worker}`, `${this.logsDropped} log lines dropped (more than ${LOG_LINES_PER_SEC}/s)`);
      this.logsDropped = 0;
    }
    const vus = this.sampleVus();
    this.events.metrics({
      buckets: this.registry.takeSeconds(),
      snapshot: this.registry.snapshot(),
      activeVus: vus.active,
      allocatedVus: vus.allocated,
    });
  }

  protected override maybeFinish(): void {
    if (!this.stopping || this.finished || this.inFlight > 0) return;
    this.finished = true;
    for (const t of [this.timer, this.graceTimer, this.flushTimer, this.abortTimer]) if (t) clearTimeout(t);
    if (this.growTimer) clearTimeout(this.growTimer);
    if (this.executor.executor === 'constant-vus' && this.vus.length < this.targetVus && !this.poolStopSaid) {
      this.log('warn', `worker-${this.init.worker}`, `${this.vus.length} of ${this.targetVus} VUs were made by the end of the test: making one takes ~${this.createMsAvg.toFixed(2)} ms here (it runs the script's top level)`);
    }
    if (this.abandoned) this.noteError(`${this.abandoned} iteration${this.abandoned === 1 ? '' : 's'} still running ${ABORT_SLACK_MS / 1000}s after the graceful stop (${GRACEFUL_STOP_MS / 1000}s) interrupted them were abandoned`);
    this.sampleVus();
    this.events.done({
      buckets: this.registry.takeSeconds(true),
      snapshot: this.registry.snapshot(),
      errors: [...this.errors].map(([message, count]) => ({ message, count })),
    });
  }
}
