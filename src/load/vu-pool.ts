import type { LogLevel } from '../run/scenario-types';
import type { LoadWorkerInit } from '../run/worker-protocol';
import { VuHost, WORKER_MEMORY_LIMIT_BYTES, type Vu } from '../lua/vu-host';
import { MetricsRegistry } from './metrics';
import { splitCount, type ExecutorConfig } from './schedule';
import type { LoadRunnerEvents } from './load-runner';

/**
 * Making VUs is the slow part of a big pool (each runs the script's top
 * level: ~0.3-0.5 ms for an empty script, more for a real one), so it is
 * budgeted. Before the start: at most this long for the pre-allocated VUs;
 * the rest are made while the load runs.
 */
export const PREPARE_BUDGET_MS = 3000;
/** The pool stops growing when the Lua heap (all VUs of the worker) passes this share of the worker cap: iterations need room too. */
const POOL_HEAP_SHARE = 0.5;

/**
 * The bottom layer of a worker's LoadRunner: its engine, its VU pool and how
 * the pool is made and grows. The runner is layered (VuPool, IterationLoop,
 * LoadRunner) rather than made of objects that call each other because the
 * per-iteration paths read and write the counters below (inFlight, stopping)
 * on every iteration: as fields of one object they stay plain `this.x`.
 */
export abstract class VuPool {
  protected host!: VuHost;
  protected registry: MetricsRegistry;
  protected readonly executor: ExecutorConfig;
  protected readonly vus: Array<Vu | Promise<Vu> | undefined> = [];
  /** moving average of one VU's creation time */
  protected createMsAvg = 0.5;
  /** VUs being made now */
  private creating = 0;
  /** why the pool stopped growing, once it did (said once) */
  private poolStop: string | undefined;
  protected poolStopSaid = false;
  /** VUs the executor asked for (constant-vus: made while the load runs when the prepare budget ran out) */
  protected targetVus = 0;
  protected inFlight = 0;
  protected stopping = false;
  /** custom metrics declared so far (VU init code declares them before the registry of the run exists) */
  protected readonly customMetrics = new Map<string, 'counter' | 'trend' | 'rate' | 'gauge'>();
  /** off while setup or teardown runs */
  protected recording = true;

  constructor(
    protected readonly init: LoadWorkerInit,
    protected readonly events: LoadRunnerEvents,
  ) {
    this.executor = init.executor as ExecutorConfig;
    this.registry = new MetricsRegistry();
  }

  protected abstract log(level: LogLevel, source: string, message: string): void;
  protected abstract noteError(message: string): void;
  protected abstract maybeFinish(): void;

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
  protected heapFull(): boolean {
    if (!this.needsVus() || this.poolHasRoom()) return false;
    if (!this.poolStopSaid) {
      this.poolStopSaid = true;
      this.warnPoolStop(this.vus.length, this.executor.executor === 'constant-vus' ? this.targetVus : this.init.maxVus);
    }
    return true;
  }

  /** The pool is smaller than the executor may make. */
  private needsVus(): boolean {
    return this.vus.length < (this.executor.executor === 'constant-vus' ? this.targetVus : this.init.maxVus);
  }

  protected async makeVu(slot: number): Promise<Vu> {
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

  /** Discards a dead VU (over its memory cap) and makes a fresh one in its slot; `then` gets it. */
  protected renew(slot: number, dead: Vu, then: (vu: Vu) => void): void {
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
  protected fillSlot(slot: number, then: (vu: Vu) => void): void {
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
}
