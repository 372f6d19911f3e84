import { TopasError } from '../errors';
import type { AppSpec } from '../spec/app-spec';
import { startInDependencyOrder } from '../spec/dependency-graph';
import { formatDurationMs } from '../util/duration';
import type { ApplyServiceChange, EndpointMap, KillOptions, ServiceStatus, StartContext, Sut, SutState } from '../backends/backend';
import { sleep } from '../backends/readiness';
import { markDependentsBypass, ShapeController } from '../shape/shape-controller';
import { ProxyFleet } from '../shape/proxy-fleet';
import { ProxyHostClient } from '../shape/proxy-host';
import { selfCommand } from '../util/self-command';
import type { DriverHost, ReplicaHandle, SutDriver } from './driver';
import { endpointMapOf, endpointOf, serviceStatuses } from './core-status';
import { Healer } from './healer';
import { lifecycleOf, type SutLifecycle } from './lifecycle';
import { CoreOperations } from './core-operations';
import { ReplicaTable, type Replica, type ServiceRuntime } from './replica-table';
import { resolveValue } from './references';
import { Rollouts } from './rollout';
import { CoreShaping } from './core-shaping';
import { errorMessage, sutErrors } from './sut-errors';
import { restoreServices, stateData, type CoreStateData } from './core-state';

export interface CoreOptions {
  /** time a retired replica keeps serving in-flight work before it is stopped */
  drainMs?: number;
  /** self-healing loop period */
  reconcileIntervalMs?: number;
}

/** a single readiness attempt (attach, ps): the time one answer may take */
const PROBE_ONCE_MS = 2000;

/**
 * A SUT on any driver: the replica table, rotation, endpoint map, status,
 * references, rollouts, scale, healing, shaping, per-service ordering, one
 * error table and one log format. The driver only starts and removes single
 * replicas and databases (src/sut/driver.ts).
 */
export class CoreSut implements Sut {
  readonly backend: string;
  readonly runId: string;
  readonly table: ReplicaTable;
  private readonly rollouts: Rollouts;
  private readonly healer: Healer;
  private readonly ops: CoreOperations;
  private readonly shapes: ShapeController;
  private readonly fleet: ProxyFleet;
  private readonly shaping_: CoreShaping;
  private proxyHost?: ProxyHostClient;
  /** the dependents' proxies' listen address, when dependents are shaped */
  private listenHost?: string;
  private startedAt = new Date().toISOString();
  closed = false;
  private detached = false;
  /** attached to a SUT another process kept */
  private kept = false;
  private readonly readOnly: boolean;
  private disposing?: Promise<void>;
  /** aborted by dispose: every wait in flight stops */
  private readonly opsAbort = new AbortController();
  private readonly listeners = new Set<(map: EndpointMap) => void>();

  constructor(
    readonly spec: AppSpec,
    private readonly driver: SutDriver,
    private readonly ctx: StartContext,
    opts: CoreOptions = {},
  ) {
    this.backend = driver.name;
    this.runId = ctx.runId;
    this.readOnly = ctx.readOnly === true;
    this.table = new ReplicaTable(spec);
    this.shapes = new ShapeController({ services: [...this.table.services.keys(), ...this.table.databases.keys()] });
    this.fleet = new ProxyFleet({ controller: this.shapes, scenarioHost: '127.0.0.1' });
    this.shaping_ = new CoreShaping(this.table, this.fleet, driver);
    const self = this;
    this.rollouts = new Rollouts(this.table, driver, {
      get closed() {
        return self.closed;
      },
      backend: this.backend,
      runId: this.runId,
      notify: () => this.notify(),
      persist: () => this.persist(),
      addProxies: (svc, h) => this.shaping_.addReplica(svc.config, h),
      dropProxies: (h) => this.fleet.dropReplica(h.key),
    }, opts.drainMs ?? driver.tuning?.drainMs ?? 250);
    this.healer = new Healer(this.table, driver, this.rollouts, {
      get closed() {
        return self.closed || self.detached;
      },
      signal: this.opsAbort.signal,
      log: (l) => this.log(l),
      notify: () => this.notify(),
      restartDatabase: (name) => this.ops.restartDatabase(name, false),
    }, opts.reconcileIntervalMs ?? driver.tuning?.reconcileIntervalMs ?? 250);
    this.ops = new CoreOperations(this.table, driver, this.rollouts, this.healer, {
      backend: this.backend,
      signal: this.opsAbort.signal,
      ensureOpen: () => this.ensureOpen(),
      log: (l) => this.log(l),
      notify: () => this.notify(),
      persist: () => this.persist(),
    });
    const host: DriverHost = {
      spec,
      ctx,
      resolve: (v) => resolveValue(spec, this.shaping_.insideView(), v),
      replicaGone: (h, why) => this.replicaGone(h, why),
      get closed() {
        return self.closed;
      },
      persist: () => this.persist(),
      log: (l) => this.log(l),
    };
    driver.bind(host);
  }

  private log(line: string): void {
    this.ctx.log(`${this.backend}: ${line}`);
  }

  /** Start everything in dependency order; on any failure (or abort) remove what was made, then rethrow. */
  static async start(spec: AppSpec, driver: SutDriver, ctx: StartContext, opts: CoreOptions = {}): Promise<CoreSut> {
    const sut = new CoreSut(spec, driver, ctx, opts);
    sut.persist();
    const signal = ctx.signal ? AbortSignal.any([ctx.signal, sut.opsAbort.signal]) : sut.opsAbort.signal;
    const onAbort = (): void => driver.abort?.();
    ctx.signal?.addEventListener('abort', onAbort, { once: true });
    const t0 = Date.now();
    try {
      const wanted = ctx.shapeDependents === true || ctx.proxyHost === true;
      // the SUT outlives this process: its dependents' proxies go to a host that lives as long as it.
      // That host (a process of its own) starts while the driver prepares; it is let go if unused.
      const hosting = wanted && ctx.proxyHost ? ProxyHostClient.start({ watchDir: driver.proxyHostDir(), command: selfCommand(), env: ctx.processEnv }) : undefined;
      let prep: Awaited<ReturnType<SutDriver['prepare']>>;
      try {
        prep = await driver.prepare({ signal, shapeDependents: wanted });
      } catch (e) {
        await (await hosting?.catch(() => undefined))?.exit();
        throw e;
      }
      const dependents = wanted && prep.dependents;
      if (hosting) {
        const host = await hosting.catch((e: unknown) => {
          if (dependents) throw e;
          return undefined;
        });
        if (dependents && host) {
          sut.proxyHost = host;
          sut.fleet.useHost(host);
        } else await host?.exit();
      }
      if (dependents) sut.listenHost = prep.listenHost ?? '';
      sut.persist();
      await sut.startShaping(dependents);
      sut.prepareReplicas(signal);
      await startInDependencyOrder(spec, (name) => sut.startNode(name, signal), { signal });
      if (ctx.signal?.aborted) throw new TopasError('INTERRUPTED', 'start interrupted');
    } catch (e) {
      sut.log(`start failed (${errorMessage(e).split('\n')[0]}); removing what was started`);
      await sut.dispose().catch(() => undefined);
      if (e instanceof TopasError) throw e;
      throw new TopasError('SUT_START_FAILED', `${driver.name} backend: ${errorMessage(e)}`, { cause: e });
    } finally {
      ctx.signal?.removeEventListener('abort', onAbort);
    }
    sut.log(`${spec.name} up in ${formatDurationMs(Date.now() - t0)}`);
    sut.healer.start();
    return sut;
  }

  /**
   * Reopen a SUT another process started: what runs is taken as it is (alive
   * replicas probed once, not restarted; dead ones replaced by the heal loop;
   * ones a crashed run was retiring stopped).
   */
  static async attach(spec: AppSpec, driver: SutDriver, state: SutState, ctx: StartContext, opts: CoreOptions = {}): Promise<CoreSut> {
    const data = (state.data ?? {}) as CoreStateData;
    const sut = new CoreSut(spec, driver, { ...ctx, runId: state.runId }, opts);
    sut.kept = true;
    sut.startedAt = state.startedAt;
    const saved = restoreServices(sut.table, data);
    // the services were started by another process: their references point at its proxy host, if it made one
    const host = data.proxyHost ? new ProxyHostClient(data.proxyHost) : undefined;
    const hosted = host?.alive() === true;
    // a reader does not talk to the host, but `down` must still end it
    if (host && hosted) sut.proxyHost = host;
    const adopted = await driver.adopt(saved);
    const retiring: Array<[ServiceRuntime, Replica]> = [];
    for (const a of adopted.replicas) {
      const svc = sut.table.services.get(a.replica.service);
      if (!svc) continue;
      const r: Replica = { h: a.replica, ready: false, retiring: a.retiring === true, gone: !a.alive };
      svc.replicas.push(r);
      if (r.retiring && a.alive) retiring.push([svc, r]);
    }
    for (const d of adopted.databases) {
      const db = sut.table.databases.get(d.name);
      if (!db) continue;
      db.handle = d;
      db.ready = !db.stopped;
    }
    // readiness as it is now, not as it was when the state was written
    await sut.rollouts.probeAll(PROBE_ONCE_MS, sut.opsAbort.signal);
    if (sut.readOnly) return sut;
    const dependents = hosted;
    if (dependents) {
      sut.fleet.useHost(host!);
      sut.listenHost = data.gateway;
    }
    sut.persist();
    try {
      await sut.startShaping(dependents);
      for (const svc of sut.table.services.values()) for (const r of sut.table.live(svc)) await sut.shaping_.addReplica(svc.config, r.h);
    } catch (e) {
      await sut.fleet.close();
      throw e;
    }
    // what a run that died midway was replacing or scaling away
    for (const [svc, r] of retiring) void svc.ops.run(() => sut.rollouts.stop(svc, r)).catch(() => undefined);
    // alive but not answering (a run died while it started): its readiness timeout, then it is replaced
    sut.rollouts.awaitUnready(sut.opsAbort.signal, (l) => sut.log(l));
    sut.healer.start();
    return sut;
  }

  private async startShaping(dependents: boolean): Promise<void> {
    await this.shaping_.start(dependents ? this.listenHost || undefined : undefined, dependents);
    if (!dependents) markDependentsBypass(this.shapes, this.spec);
  }

  /** Every declared replica made ready to start at once, if the driver can: only starts wait for dependencies. */
  private prepareReplicas(signal: AbortSignal): void {
    const prepare = this.driver.prepareReplica?.bind(this.driver);
    if (!prepare) return;
    for (const svc of this.table.services.values()) for (const index of this.table.missingSlots(svc, svc.declared)) prepare({ service: svc.config, index, signal });
  }

  private async startNode(name: string, signal: AbortSignal): Promise<void> {
    const db = this.table.databases.get(name);
    if (db) {
      db.handle = await this.driver.startDatabase(db.spec, { signal });
      db.ready = true;
      this.persist();
      this.log(`database ${name} ready on ${db.handle.host.host}:${db.handle.host.port}`);
      return;
    }
    const svc = this.table.service(name);
    await svc.ops.run(() => this.rollouts.scaleTo(svc, svc.declared, signal));
    this.log(`service ${name} ready (${svc.declared} replica(s))`);
  }

  private replicaGone(h: ReplicaHandle, why: string): void {
    const r = this.table.services.get(h.service)?.replicas.find((x) => x.h.key === h.key);
    if (!r || r.gone) return;
    r.gone = true;
    r.ready = false;
    if (r.retiring || this.closed) return;
    this.log(`service ${h.service} replica ${h.index} ${why}`);
    this.notify();
  }

  // ---------------------------------------------------------------- Sut

  private ensureOpen(): void {
    if (this.closed) throw sutErrors.disposed(this.backend, this.runId);
  }

  shaping(): ShapeController {
    return this.shapes;
  }

  services(): Promise<ServiceStatus[]> {
    return serviceStatuses(this.table, this.driver);
  }

  endpoint(name: string, port?: string): string {
    return endpointOf(this.table, this.shaping_, name, port);
  }

  endpointMap(): EndpointMap {
    return endpointMapOf(this.table, this.shaping_);
  }

  onEndpointsChange(listener: (map: EndpointMap) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private notify(): void {
    // a proxy host learns the new replicas at once (its timer would, within 100 ms)
    void this.fleet.syncHost();
    if (this.listeners.size === 0) return;
    const map = this.endpointMap();
    for (const l of this.listeners) {
      try {
        l(map);
      } catch {
        /* a listener's failure is its own */
      }
    }
  }

  // what scenarios do to it: src/sut/core-operations.ts
  applyService(name: string, change: ApplyServiceChange): Promise<void> {
    return this.ops.applyService(name, change);
  }

  waitReady(name: string, timeoutMs?: number): Promise<void> {
    return this.ops.waitReady(name, timeoutMs);
  }

  scale(name: string, replicas: number): Promise<void> {
    return this.ops.scale(name, replicas);
  }

  stop(name: string): Promise<void> {
    return this.ops.stop(name);
  }

  start(name: string): Promise<void> {
    return this.ops.start(name);
  }

  restart(name: string): Promise<void> {
    return this.ops.restart(name);
  }

  kill(name: string, opts?: KillOptions): Promise<void> {
    return this.ops.kill(name, opts);
  }

  logs(name: string, opts?: { tail?: number }): Promise<string> {
    return this.ops.logs(name, opts);
  }

  exec(name: string, argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
    return this.ops.exec(name, argv);
  }

  state(): SutState {
    return {
      backend: this.backend,
      runId: this.runId,
      app: this.spec.name,
      specFile: this.spec.file,
      startedAt: this.startedAt,
      data: stateData(this.table, this.driver.state(), this.proxyHost?.info, this.proxyHost ? this.listenHost : undefined),
    };
  }

  /**
   * Record what runs: the driver's registry (for sweeps) and, for an attached
   * run of a kept SUT, its state. Synchronous, so a replica is on disk before
   * the next await.
   */
  private persist(): void {
    if (this.disposing || this.readOnly) return;
    try {
      const info = this.proxyHost?.info;
      this.driver.record?.({ kept: this.detached || this.kept, replicas: this.table.allReplicas().map((r) => r.h), proxyHost: info ? { pid: info.pid, startTicks: info.startTicks } : undefined });
      this.ctx.onState?.(this.state());
    } catch (e) {
      this.log(`cannot record the state of the SUT: ${errorMessage(e)}`);
    }
  }

  async detach(): Promise<void> {
    if (this.closed || this.detached) return;
    this.healer.stop();
    // operations in flight finish, so the persisted state is complete
    await Promise.all(this.table.queues().map((q) => q.idle()));
    this.detached = true;
    this.listeners.clear();
    // scenario proxies end with this process; dependents' proxies, if any, live on in the proxy host
    await this.fleet.close();
    if (!this.readOnly) await this.driver.detach?.();
    this.persist();
  }

  get lifecycle(): SutLifecycle {
    return lifecycleOf({ disposed: this.closed, kept: this.detached || this.kept });
  }

  dispose(): Promise<void> {
    this.disposing ??= this.teardown();
    return this.disposing;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.dispose();
  }

  private async teardown(): Promise<void> {
    this.closed = true;
    this.healer.stop();
    this.opsAbort.abort();
    this.listeners.clear();
    await this.fleet.close();
    // starts and rollouts in flight see the abort and settle (bounded) before what they made is removed
    await Promise.race([Promise.all(this.table.queues().map((q) => q.idle())), sleep(5000)]);
    await this.proxyHost?.exit();
    await this.driver.dispose();
    for (const s of this.table.services.values()) s.replicas = [];
  }
}
