import type { EndpointMap } from '../backends/backend';
import type { LogLevel } from '../run/scenario-types';
import type { LoadWorkerInit } from '../run/worker-protocol';
import { VuHost, type Vu, type VuCommandResult } from '../lua/vu-host';
import { MetricsRegistry, type MetricsSnapshot, type SecondBucket } from './metrics';
import { ArrivalDispatcher, ArrivalSchedule, splitCount, type DueIteration, type ExecutorConfig } from './schedule';

/** How long iterations still running at the end of the schedule may finish (k6's gracefulStop). */
export const GRACEFUL_STOP_MS = 30_000;
/** Log lines a worker forwards per second; more are counted and summarized. */
const LOG_LINES_PER_SEC = 50;
const MAX_DISTINCT_ERRORS = 20;

export interface LoadRunnerEvents {
  log(level: LogLevel, source: string, message: string): void;
  rpc(method: string, args: unknown[]): Promise<unknown>;
  /** once a second while running */
  metrics(m: { buckets: SecondBucket[]; snapshot: MetricsSnapshot; activeVus: number; allocatedVus: number }): void;
  done(m: { buckets: SecondBucket[]; snapshot: MetricsSnapshot; errors: Array<{ message: string; count: number }> }): void;
}

/** Wall clock with sub-ms precision, comparable across worker threads. */
export function wallNowMs(): number {
  return timeOrigin + performance.now();
}
// a getter call per read otherwise; it never changes within a thread
const timeOrigin = performance.timeOrigin;

/**
 * One worker's share of a load test: its VU pool in one Lua engine, its slice
 * of the arrival schedule (k % workers == worker), its metrics registry.
 */
export class LoadRunner {
  private host!: VuHost;
  private registry: MetricsRegistry;
  private readonly executor: ExecutorConfig;
  private readonly vus: Array<Vu | Promise<Vu> | undefined> = [];
  private dispatcher?: ArrivalDispatcher;
  private startMs = 0;
  private timer?: NodeJS.Timeout;
  private flushTimer?: NodeJS.Timeout;
  private graceTimer?: NodeJS.Timeout;
  private inFlight = 0;
  private busyVus = 0;
  private stopping = false;
  private finished = false;
  private readonly errors = new Map<string, number>();
  private logBudget = LOG_LINES_PER_SEC;
  private logsDropped = 0;
  /** custom metrics declared so far (VU init code declares them before the registry of the run exists) */
  private readonly customMetrics = new Map<string, 'counter' | 'trend' | 'rate' | 'gauge'>();

  constructor(
    private readonly init: LoadWorkerInit,
    private readonly events: LoadRunnerEvents,
  ) {
    this.executor = init.executor as ExecutorConfig;
    this.registry = new MetricsRegistry();
  }

  /** Makes the engine and the pre-allocated VUs (each runs the script's top level). */
  async prepare(): Promise<number> {
    this.host = await VuHost.create({
      file: this.init.file,
      baseDir: this.init.baseDir,
      env: this.init.env,
      endpoints: this.init.endpoints,
      rpc: (method, args) => this.events.rpc(method, args),
      log: (level, source, message) => this.log(level, source, message),
      requests: { request: (r) => this.registry.recordRequest(r), ws: (metric, value, name) => this.registry.add(metric, value, { name }) },
      onCheck: (name, ok) => this.registry.recordCheck(name, ok),
      custom: {
        define: (name, type) => {
          this.registry.define(name, type);
          this.customMetrics.set(name, type);
        },
        add: (name, v, tags) => this.registry.add(name, v, tags),
      },
    });
    const n = this.executor.executor === 'constant-vus' ? splitCount(this.executor.vus, this.init.workers, this.init.worker) : this.init.preAllocatedVus;
    for (let i = 0; i < n; i++) this.vus[i] = await this.makeVu(i);
    return n;
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

  /** Stops starting iterations; `abort` also interrupts those in flight. */
  stop(abort: boolean): void {
    if (!this.stopping) {
      this.stopping = true;
      if (this.timer) clearTimeout(this.timer);
      this.timer = undefined;
    }
    if (abort) for (const v of this.vus) if (v && !(v instanceof Promise)) this.host.interrupt(v);
    this.maybeFinish();
  }

  async close(): Promise<void> {
    for (const t of [this.timer, this.graceTimer]) if (t) clearTimeout(t);
    if (this.flushTimer) clearTimeout(this.flushTimer);
    await this.host?.close();
  }

  // ------------------------------------------------------------------ internals

  private relNow = (): number => wallNowMs() - this.startMs;

  private async makeVu(slot: number): Promise<Vu> {
    const id = this.init.worker + this.init.workers * slot + 1;
    const vu = await this.host.createVu(id);
    const r = await this.host.setContext(vu, this.init.data, id);
    if (!r.ok) throw new Error(r.error);
    return vu;
  }

  private begin(): void {
    this.timer = undefined;
    if (this.stopping) return this.maybeFinish();
    const ex = this.executor;
    const endMs = ex.executor === 'ramping-arrival-rate' ? ex.stages.reduce((n, s) => n + s.durationMs, 0) : ex.durationMs;
    this.graceTimer = setTimeout(() => this.stop(true), endMs + GRACEFUL_STOP_MS);
    if (ex.executor === 'constant-vus') {
      let k = this.init.worker;
      const W = this.init.workers;
      // each VU loops on its own; its two callbacks are made once, not per iteration
      for (let slot = 0; slot < this.vus.length; slot++) {
        let vu = this.vus[slot] as Vu;
        let t0 = 0;
        const next = (): void => {
          if (this.stopping || this.relNow() >= endMs) return this.maybeFinish();
          const n = k;
          k += W;
          this.busyVus++;
          this.inFlight++;
          t0 = performance.now();
          this.host.runIteration(vu, n, done);
        };
        const done = (r: VuCommandResult): void => {
          this.inFlight--;
          this.busyVus--;
          this.registry.recordIteration(performance.now() - t0, r.ok ? NO_OPTS : FAILED);
          if (!r.ok) {
            this.noteError(r.error);
            if (vu.state === 'dead') {
              return this.renew(slot, vu, (fresh) => {
                vu = fresh;
                next();
              });
            }
          }
          // an iteration that never waited would otherwise starve the event loop
          if (vu.asyncCalls > 0) next();
          else setImmediate(next);
        };
        next();
      }
      this.timer = setTimeout(() => this.stop(false), endMs);
      return;
    }
    const schedule = new ArrivalSchedule(ex);
    this.dispatcher = new ArrivalDispatcher(schedule, {
      worker: this.init.worker,
      workers: this.init.workers,
      preAllocatedVus: this.init.preAllocatedVus,
      maxVus: this.init.maxVus,
      now: this.relNow,
    });
    this.tick();
  }

  private tick = (): void => {
    this.timer = undefined;
    const d = this.dispatcher!;
    if (this.stopping) return;
    const due = d.poll();
    if (due.dropped.length) this.registry.recordDropped(due.dropped.length);
    for (const s of due.start) this.startDue(s);
    const next = d.nextDueMs();
    if (next === undefined) {
      this.stopping = true;
      this.maybeFinish();
      return;
    }
    this.timer = setTimeout(this.tick, Math.max(0, next - this.relNow()));
  };

  private startDue(s: DueIteration): void {
    const d = this.dispatcher!;
    const release = () => {
      // a VU that died (over its memory cap) makes way for a fresh one, made when its slot is next due
      const v = this.vus[s.vu];
      if (v !== undefined && !(v instanceof Promise) && v.state === 'dead') {
        this.vus[s.vu] = undefined;
        this.host.discardVu(v);
      }
      d.release(s.vu);
      this.maybeFinish();
    };
    const existing = this.vus[s.vu];
    if (existing && !(existing instanceof Promise)) {
      this.runOne(existing, s.k, release);
      return;
    }
    // the pool grows: make the VU, then run (its iteration starts late by the init time)
    const making = existing ?? this.makeVu(s.vu);
    this.vus[s.vu] = making;
    this.inFlight++;
    making.then(
      (vu) => {
        this.inFlight--;
        this.vus[s.vu] = vu;
        this.runOne(vu, s.k, release);
      },
      (err: Error) => {
        this.inFlight--;
        this.vus[s.vu] = undefined;
        this.noteError(`VU init failed: ${err.message}`);
        this.registry.recordIteration(0, { failed: true });
        release();
      },
    );
  }

  /** Discards a dead VU (over its memory cap) and makes a fresh one in its slot; `then` gets it. */
  private renew(slot: number, dead: Vu, then: (vu: Vu) => void): void {
    this.host.discardVu(dead);
    this.vus[slot] = undefined;
    if (this.stopping) return this.maybeFinish();
    this.inFlight++;
    const making = this.makeVu(slot);
    this.vus[slot] = making;
    making.then(
      (vu) => {
        this.inFlight--;
        this.vus[slot] = vu;
        then(vu);
      },
      (err: Error) => {
        this.inFlight--;
        this.vus[slot] = undefined;
        this.noteError(`VU init failed: ${err.message}`);
        this.maybeFinish();
      },
    );
  }

  private runOne(vu: Vu, n: number, then: (r: VuCommandResult, async: boolean) => void): void {
    this.inFlight++;
    const t0 = performance.now();
    this.host.runIteration(vu, n, (r) => {
      this.inFlight--;
      this.registry.recordIteration(performance.now() - t0, r.ok ? NO_OPTS : FAILED);
      if (!r.ok) this.noteError(r.error);
      then(r, vu.asyncCalls > 0);
    });
  }

  private noteError(message: string): void {
    const n = this.errors.get(message);
    if (n !== undefined) this.errors.set(message, n + 1);
    else if (this.errors.size < MAX_DISTINCT_ERRORS) {
      this.errors.set(message, 1);
      this.log('error', `worker-${this.init.worker}`, `iteration failed: ${message}`);
    } else this.errors.set('(other errors)', (this.errors.get('(other errors)') ?? 0) + 1);
  }

  private log(level: LogLevel, source: string, message: string): void {
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

  private maybeFinish(): void {
    if (!this.stopping || this.finished || this.inFlight > 0) return;
    this.finished = true;
    for (const t of [this.timer, this.graceTimer, this.flushTimer]) if (t) clearTimeout(t);
    this.sampleVus();
    this.events.done({
      buckets: this.registry.takeSeconds(true),
      snapshot: this.registry.snapshot(),
      errors: [...this.errors].map(([message, count]) => ({ message, count })),
    });
  }
}

const FAILED = Object.freeze({ failed: true });
const NO_OPTS = Object.freeze({});
