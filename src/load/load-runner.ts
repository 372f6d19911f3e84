import type { EndpointMap } from '../backends/backend';
import type { LogLevel } from '../run/scenario-types';
import type { LoadWorkerInit } from '../run/worker-protocol';
import { VuHost, WORKER_MEMORY_LIMIT_BYTES, type Vu, type VuCommandResult } from '../lua/vu-host';
import { MetricsRegistry, type MetricsSnapshot, type SecondBucket } from './metrics';
import { ArrivalDispatcher, ArrivalSchedule, splitCount, type DueIteration, type ExecutorConfig } from './schedule';

/** How long iterations still running at the end of the schedule may finish (k6's gracefulStop). */
export const GRACEFUL_STOP_MS = 30_000;
/** Log lines a worker forwards per second; more are counted and summarized. */
const LOG_LINES_PER_SEC = 50;
const MAX_DISTINCT_ERRORS = 20;
/**
 * Making VUs is the slow part of a big pool (each runs the script's top
 * level: ~0.3-0.5 ms for an empty script, more for a real one), so it is
 * budgeted. Before the start: at most this long for the pre-allocated VUs;
 * the rest are made while the load runs.
 */
export const PREPARE_BUDGET_MS = 3000;
/**
 * While the load runs, VUs are made when an iteration is due and none is
 * free (the iteration waits for its VU), at most this long per event-loop
 * turn (at least one VU), so timers, stop messages and the metrics flush
 * still run; never past the end of the schedule, when the iterations still
 * waiting for a VU are dropped (k6 drops them at once).
 */
const CREATE_PER_TURN_MS = 10;
/** The pool stops growing when the Lua heap (all VUs of the worker) passes this share of the worker cap: iterations need room too. */
const POOL_HEAP_SHARE = 0.5;
/** After the graceful stop interrupts the iterations still running, how long they get to unwind before the worker reports without them. */
export const ABORT_SLACK_MS = 2000;

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

export const UNCLONEABLE_SETUP_VALUE = 'setup() returned something that cannot be handed to the VUs (functions or userdata); return plain tables, strings and numbers';

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
  private abortTimer?: NodeJS.Timeout;
  /** ms since the load start at which the schedule ends */
  private endMs = 0;
  /** moving average of one VU's creation time */
  private createMsAvg = 0.5;
  /** VUs being made now */
  private creating = 0;
  /** why the pool stopped growing, once it did (said once) */
  private poolStop: string | undefined;
  /** VUs the executor asked for (constant-vus: made while the load runs when the prepare budget ran out) */
  private targetVus = 0;
  private aborting = false;
  private abandoned = 0;
  private inFlight = 0;
  private busyVus = 0;
  private stopping = false;
  private finished = false;
  private readonly errors = new Map<string, number>();
  private logBudget = LOG_LINES_PER_SEC;
  private logsDropped = 0;
  /** custom metrics declared so far (VU init code declares them before the registry of the run exists) */
  private readonly customMetrics = new Map<string, 'counter' | 'trend' | 'rate' | 'gauge'>();
  /** the VU that runs setup() and teardown() in this worker */
  private hookVu?: Vu;
  /** off while setup or teardown runs */
  private recording = true;

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
      source: this.init.source,
      baseDir: this.init.baseDir,
      env: this.init.env,
      endpoints: this.init.endpoints,
      rpc: (method, args) => this.events.rpc(method, args),
      log: (level, source, message) => this.log(level, source, message),
      requests: {
        request: (r) => {
          if (this.recording) this.registry.recordRequest(r);
        },
        ws: (metric, value, name) => {
          if (this.recording) this.registry.add(metric, value, { name });
        },
      },
      onCheck: (name, ok) => {
        if (this.recording) this.registry.recordCheck(name, ok);
      },
      custom: {
        define: (name, type) => {
          this.registry.define(name, type);
          this.customMetrics.set(name, type);
        },
        add: (name, v, tags) => {
          if (this.recording) this.registry.add(name, v, tags);
        },
      },
    });
    const n = this.executor.executor === 'constant-vus' ? splitCount(this.executor.vus, this.init.workers, this.init.worker) : this.init.preAllocatedVus;
    this.targetVus = n;
    // a big pool is made in part now and grows while the load runs: the start must not wait minutes
    const deadline = performance.now() + PREPARE_BUDGET_MS;
    let made = 0;
    while (made < n && !this.stopping) {
      if (made > 0 && (performance.now() >= deadline || !this.poolHasRoom())) break;
      this.vus[made] = await this.makeVu(made);
      made++;
      // let a stop or shutdown message in
      if (made % 256 === 0) await new Promise<void>((r) => setImmediate(r));
    }
    if (made < n && this.poolStop) {
      this.warnPoolStop(made, n);
      this.poolStopSaid = true;
    }
    return made;
  }

  /**
   * Room on the Lua heap for another VU (when the heap can be read). Checked
   * before each VU is made, so it is not permanent: iterations that free
   * what they held make room again.
   */
  private poolHasRoom(): boolean {
    const heap = this.host.heapBytes();
    if (heap === undefined || heap < WORKER_MEMORY_LIMIT_BYTES * POOL_HEAP_SHARE) return true;
    this.poolStop ??= `the Lua heap of this worker holds ${Math.round(heap / 1048576)} MiB (the VUs' top-level code and what iterations keep), past half of the worker's ${WORKER_MEMORY_LIMIT_BYTES / 1048576} MiB cap`;
    return false;
  }

  private warnPoolStop(made: number, wanted: number): void {
    this.log('warn', `worker-${this.init.worker}`, `the VU pool stopped at ${made} of ${wanted} VUs: ${this.poolStop}`);
  }

  /** The heap has no room for more VUs (said once). */
  private heapFull(): boolean {
    if (!this.needsVus() || this.poolHasRoom()) return false;
    if (!this.poolStopSaid) {
      this.poolStopSaid = true;
      this.warnPoolStop(this.vus.length, this.executor.executor === 'constant-vus' ? this.targetVus : this.init.maxVus);
    }
    return true;
  }

  private poolStopSaid = false;

  /** The pool is smaller than the executor may make. */
  private needsVus(): boolean {
    return this.vus.length < (this.executor.executor === 'constant-vus' ? this.targetVus : this.init.maxVus);
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
  stop(abort: boolean): void {
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

  // setup() and teardown() here, not on the coordinator: the SUT is one only the workers reach (a cluster)

  /** Runs the script's setup() in a VU of its own, which teardown() reuses. */
  runSetup(): Promise<VuCommandResult> {
    return this.outsideLoad(async (vu) => {
      const r = await this.host.setup(vu);
      if (!r.ok) return r;
      try {
        // what goes to the coordinator and the other workers must survive the trip
        structuredClone(r.value);
      } catch {
        return { ok: false, error: UNCLONEABLE_SETUP_VALUE };
      }
      return r;
    });
  }

  /** setup()'s value becomes ctx.data of every VU: those made already, and those made from now on. */
  async setData(data: unknown): Promise<void> {
    this.init.data = data;
    for (let slot = 0; slot < this.vus.length; slot++) {
      const vu = this.vus[slot];
      // one being made reads init.data when it is set up
      if (!vu || vu instanceof Promise) continue;
      const r = await this.host.setContext(vu, data, this.init.worker + this.init.workers * slot + 1);
      if (!r.ok) throw new Error(r.error);
    }
  }

  runTeardown(data: unknown): Promise<VuCommandResult> {
    return this.outsideLoad(async (vu) => this.host.teardown(vu, data));
  }

  /** what setup and teardown do is not load: their requests and checks stay out of the metrics, as on the coordinator */
  private async outsideLoad(run: (vu: Vu) => Promise<VuCommandResult>): Promise<VuCommandResult> {
    this.recording = false;
    try {
      this.hookVu ??= await this.host.createVu(0);
      return await run(this.hookVu);
    } catch (err) {
      return { ok: false, error: (err as Error).message };
    } finally {
      this.recording = true;
    }
  }

  async close(): Promise<void> {
    for (const t of [this.timer, this.graceTimer, this.abortTimer]) if (t) clearTimeout(t);
    if (this.flushTimer) clearTimeout(this.flushTimer);
    await this.host?.close();
  }

  // ------------------------------------------------------------------ internals

  private relNow = (): number => wallNowMs() - this.startMs;

  private async makeVu(slot: number): Promise<Vu> {
    const id = this.init.worker + this.init.workers * slot + 1;
    const t0 = performance.now();
    this.creating++;
    try {
      // the top level runs synchronously in createVu (unless it waits on I/O): that is the cost;
      // the time to the promise's end would count every VU made in the same turn
      const creating = this.host.createVu(id);
      this.createMsAvg = this.createMsAvg * 0.8 + Math.max(0.01, performance.now() - t0) * 0.2;
      const vu = await creating;
      const r = await this.host.setContext(vu, this.init.data, id);
      if (!r.ok) throw new Error(r.error);
      return vu;
    } finally {
      this.creating--;
    }
  }

  private begin(): void {
    this.timer = undefined;
    if (this.stopping) return this.maybeFinish();
    const ex = this.executor;
    const endMs = ex.executor === 'ramping-arrival-rate' ? ex.stages.reduce((n, s) => n + s.durationMs, 0) : ex.durationMs;
    this.endMs = endMs;
    this.graceTimer = setTimeout(() => this.stop(true), endMs + GRACEFUL_STOP_MS);
    if (ex.executor === 'constant-vus') {
      const k = { next: this.init.worker };
      for (let slot = 0; slot < this.vus.length; slot++) this.loopVu(slot, k);
      // VUs the prepare budget left unmade are made now, within the creation budget, until the end
      if (this.vus.length < this.targetVus) this.growConstant(k);
      this.timer = setTimeout(() => this.stop(false), endMs);
      return;
    }
    const schedule = new ArrivalSchedule(ex);
    this.dispatcher = new ArrivalDispatcher(schedule, {
      worker: this.init.worker,
      workers: this.init.workers,
      // the VUs made so far; the dispatcher grows the pool from there
      preAllocatedVus: Math.min(this.vus.length, this.init.maxVus),
      maxVus: this.init.maxVus,
      now: this.relNow,
    });
    this.tick();
  }

  private growTimer?: NodeJS.Timeout;

  private growConstant(k: { next: number }): void {
    this.growTimer = undefined;
    if (this.stopping || this.relNow() >= this.endMs) return this.maybeFinish();
    const t0 = performance.now();
    let made = 0;
    while (this.vus.length < this.targetVus && (made === 0 || performance.now() - t0 < CREATE_PER_TURN_MS)) {
      if (this.heapFull()) break;
      made++;
      const slot = this.vus.length;
      this.fillSlot(slot, () => this.loopVu(slot, k));
    }
    // next turn; with the heap full, look again a little later, not in a busy loop
    if (this.vus.length < this.targetVus) this.growTimer = setTimeout(() => this.growConstant(k), made === 0 ? 10 : 0);
  }

  /** One constant-vus VU looping on its own; its two callbacks are made once, not per iteration. */
  private loopVu(slot: number, k: { next: number }): void {
    const W = this.init.workers;
    const endMs = this.endMs;
    let vu = this.vus[slot] as Vu;
    let t0 = 0;
    const next = (): void => {
      if (this.stopping || this.relNow() >= endMs) return this.maybeFinish();
      const n = k.next;
      k.next += W;
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

  private tick = (): void => {
    this.timer = undefined;
    const d = this.dispatcher!;
    if (this.stopping) return;
    // with the heap full, an iteration that finds no free VU is dropped at once
    const due = d.poll(this.heapFull() ? 0 : Infinity);
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
    // the pool grows: the iteration waits for its VU, made in turn (it starts late by the wait)
    this.inFlight++;
    this.waiting.push({ s, release });
    if (!this.pumpScheduled) {
      this.pumpScheduled = true;
      setImmediate(this.pump);
    }
  }

  /** Iterations due that wait for their VU to be made, oldest first (read from waitingHead). */
  private waiting: Array<{ s: DueIteration; release: () => void }> = [];
  private waitingHead = 0;
  private pumpScheduled = false;

  /** Makes VUs for waiting iterations, CREATE_PER_TURN_MS per turn; at the end (or the heap full) the rest are dropped. */
  private pump = (): void => {
    this.pumpScheduled = false;
    const t0 = performance.now();
    let made = 0;
    while (this.waitingHead < this.waiting.length) {
      const w = this.waiting[this.waitingHead];
      if (this.aborting || this.relNow() >= this.endMs || this.heapFull()) {
        this.waitingHead++;
        this.inFlight--;
        this.registry.recordDropped(1);
        w.release();
        continue;
      }
      if (made > 0 && performance.now() - t0 >= CREATE_PER_TURN_MS) break;
      this.waitingHead++;
      made++;
      this.makeFor(w.s, w.release);
    }
    if (this.waitingHead >= this.waiting.length) {
      this.waiting = [];
      this.waitingHead = 0;
    } else {
      if (this.waitingHead > 1024) {
        this.waiting = this.waiting.slice(this.waitingHead);
        this.waitingHead = 0;
      }
      this.pumpScheduled = true;
      setImmediate(this.pump);
    }
  };

  /** Makes the VU of a waiting iteration, then runs it (inFlight already counts it). */
  private makeFor(s: DueIteration, release: () => void): void {
    const existing = this.vus[s.vu];
    if (existing && !(existing instanceof Promise)) {
      this.inFlight--;
      this.runOne(existing, s.k, release);
      return;
    }
    const making = existing ?? this.makeVu(s.vu);
    this.vus[s.vu] = making;
    making.then(
      (vu) => {
        this.inFlight--;
        this.vus[s.vu] = vu;
        // interrupted while it was made: the iteration never started
        if (this.aborting) {
          this.registry.recordDropped(1);
          release();
        } else this.runOne(vu, s.k, release);
      },
      (err: Error) => {
        this.inFlight--;
        this.vus[s.vu] = undefined;
        if (this.aborting) this.registry.recordDropped(1);
        else {
          this.noteError(`VU init failed: ${err.message}`);
          this.registry.recordIteration(0, { failed: true });
        }
        release();
      },
    );
  }

  /** Discards a dead VU (over its memory cap) and makes a fresh one in its slot; `then` gets it. */
  private renew(slot: number, dead: Vu, then: (vu: Vu) => void): void {
    this.host.discardVu(dead);
    this.vus[slot] = undefined;
    if (this.stopping) return this.maybeFinish();
    this.fillSlot(slot, then);
  }

  /**
   * Makes the VU of a slot while the load runs (inFlight counts it until it
   * is made, so the run does not finish under it); `then` gets it unless the
   * run is stopping by then. A VU whose top level fails leaves the slot empty
   * and is an iteration error.
   */
  private fillSlot(slot: number, then: (vu: Vu) => void): void {
    this.inFlight++;
    const making = this.makeVu(slot);
    this.vus[slot] = making;
    making.then(
      (vu) => {
        this.inFlight--;
        this.vus[slot] = vu;
        if (this.stopping) this.maybeFinish();
        else then(vu);
      },
      (err: Error) => {
        this.inFlight--;
        this.vus[slot] = undefined;
        if (!this.stopping) this.noteError(`VU init failed: ${err.message}`);
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

const FAILED = Object.freeze({ failed: true });
const NO_OPTS = Object.freeze({});
