import { Client } from 'pg';
import type { AppSpec, DatabaseSpec, ServiceSpec } from '../../spec/app-spec';
import type { ApplyServiceChange, EndpointMap, KillOptions, ServiceStatus, StartContext, Sut, SutState } from '../backend';
import { TopasError } from '../../errors';
import { formatDurationMs } from '../../util/duration';
import { sleep, waitForHttp } from '../readiness';
import { containerLogs, ensureImage, imageRef, versionOf, type Engine } from './engine';
import { ExitWatch, exitOf, inspectHostPorts, runContainer, startFailed, waitStrategyFor } from './container-runner';
import { initSqlFailure, logExcerpt, replicaStartFailure, withDetails } from '../start-errors';
import { LABEL, clearDetached, dockerName, markDetached, removeProxyHostDir, runLabels } from './labels';
import { ProxyHostClient, type ProxyHostInfo } from '../../shape/proxy-host';
import { markDependentsBypass, ShapeController } from '../../shape/shape-controller';
import { ProxyFleet, proxyUrl } from '../../shape/proxy-fleet';
import type { ProxyTarget } from '../../shape/shaping-proxy';
import { lifecycleOf, type SutLifecycle, DEFAULT_LOG_TAIL, databaseEntry, databaseProxyKey, serviceEntry, OpQueue, startDatabaseProxy, startDependentProxies, startReplicaProxies, RoundRobin, healBackoffMs, mergeReplicaLogs, postgresUrl, resolveValue, servingPool, sutErrors, type Address, type AddressView } from '../../sut';

/** Image for a database without one: overridable because a machine may only have a local build. */
export function defaultPostgresImage(): string {
  return process.env.TOPAS_POSTGRES_IMAGE || 'postgres:16-alpine';
}

const RECONCILE_INTERVAL_MS = 500;
/** After an old replica leaves the endpoint set, requests already handed its address finish first. */
const DRAIN_MS = 250;
const STOP_GRACE_S = 10;
/** one readiness attempt of a replica found running (attach, ps) */
const PROBE_ONCE_MS = 2000;

interface Replica {
  slot: number;
  id: string;
  name: string;
  ref: string;
  hostPorts: Map<number, number>;
  /** in the endpoint set */
  ready: boolean;
  /** died / killed: waiting for the reconcile loop to replace it */
  gone: boolean;
}

interface ServiceRt {
  spec: ServiceSpec;
  image: string;
  version?: string;
  /** env changed by apply_service, over the spec's env */
  envOverrides: Record<string, string>;
  declared: number;
  stopped: boolean;
  replicas: Replica[];
  rr: RoundRobin;
  ops: OpQueue;
  healFailures: number;
  nextHealAt: number;
}

interface DatabaseRt {
  spec: DatabaseSpec;
  ref: string;
  id?: string;
  hostPort?: number;
  ready: boolean;
  stopped: boolean;
  ops: OpQueue;
}

/** What `state()` persists so `attach` in another process can reopen the SUT. */
export interface DockerSutData {
  network: string;
  /** a kept run's proxy host and the gateway address its proxies listen on */
  proxyHost?: ProxyHostInfo;
  gateway?: string;
  services: Record<string, { declared: number; stopped: boolean; image: string; version?: string; envOverrides: Record<string, string> }>;
  databases: Record<string, { stopped: boolean }>;
}

export class DockerSut implements Sut {
  readonly backend = 'docker';
  private readonly svcs = new Map<string, ServiceRt>();
  private readonly dbs = new Map<string, DatabaseRt>();
  private readonly prefix: string;
  private counter = 0;
  private disposed = false;
  /** detached, or attached to a SUT another process kept */
  private kept: boolean;
  private disposing?: Promise<void>;
  private reconcileTimer?: NodeJS.Timeout;
  private reconciling = false;
  private readonly docker;
  // traffic shaping: scenarios reach replicas through per-replica proxies on 127.0.0.1; containers reach
  // the dependents' proxies on the run network's gateway address (set by startShaping)
  private readonly shapes: ShapeController;
  private readonly fleet: ProxyFleet;
  private gateway?: string;
  private proxyHost: ProxyHostClient | undefined;

  constructor(
    readonly spec: AppSpec,
    readonly runId: string,
    private readonly engine: Engine,
    private readonly ctx: StartContext,
    readonly network: string,
    private readonly startedAt: string,
    data?: DockerSutData,
  ) {
    this.docker = engine.docker;
    this.kept = data !== undefined;
    this.prefix = dockerName('topas', spec.name, runId);
    for (const s of spec.services) {
      const saved = data?.services[s.name];
      this.svcs.set(s.name, {
        spec: s,
        image: saved?.image ?? s.image ?? '',
        version: saved ? saved.version : s.version,
        envOverrides: saved?.envOverrides ?? {},
        declared: saved?.declared ?? s.replicas,
        stopped: saved?.stopped ?? false,
        replicas: [],
        rr: new RoundRobin(),
        ops: new OpQueue(),
        healFailures: 0,
        nextHealAt: 0,
      });
    }
    for (const d of spec.databases) {
      this.dbs.set(d.name, {
        spec: d,
        ref: d.image ? imageRef(d.image, d.version) : defaultPostgresImage(),
        ready: false,
        stopped: data?.databases[d.name]?.stopped ?? false,
        ops: new OpQueue(),
      });
    }
    this.shapes = new ShapeController({ services: [...this.svcs.keys(), ...this.dbs.keys()] });
    this.fleet = new ProxyFleet({ controller: this.shapes, scenarioHost: '127.0.0.1' });
  }

  // ---- shaping proxies -----------------------------------------------------

  /** The ShapeController of this run: `shape.*` calls land here. */
  shaping(): ShapeController {
    return this.shapes;
  }

  /**
   * Before anything starts (or right after attach): the scenario proxy of each
   * database and, given the network's gateway address (dependents shaped), the
   * proxies that containers' `${name.url}` references resolve to. They listen on
   * the gateway address, which is this host's side of the run's bridge network,
   * and forward to the replicas' ports published on 127.0.0.1.
   */
  async startShaping(gateway?: string): Promise<void> {
    const dbTarget = (db: DatabaseRt): ProxyTarget | undefined => (db.hostPort && db.ready ? { host: '127.0.0.1', port: db.hostPort } : undefined);
    for (const db of this.dbs.values()) await startDatabaseProxy(this.fleet, db.spec.name, () => dbTarget(db));
    for (const svc of this.svcs.values()) for (const r of svc.replicas) if (!r.gone) await this.startReplicaProxies(svc, r);
    if (!gateway) {
      markDependentsBypass(this.shapes, this.spec);
      return;
    }
    this.gateway = gateway;
    await startDependentProxies(this.fleet, {
      databases: [...this.dbs.keys()],
      databaseTarget: (name) => dbTarget(this.dbs.get(name)!),
      services: this.spec.services,
      serviceTargets: (name, port) => {
        const svc = this.svc(name);
        return servingPool(this.readyReplicas(svc), svc.replicas.filter((r) => !r.gone)).flatMap((r) => {
          const p = r.hostPorts.get(port === 'main' ? svc.spec.port : svc.spec.ports[port]);
          return p ? [{ host: '127.0.0.1', port: p }] : [];
        });
      },
      listenHost: gateway,
    });
  }

  private async startReplicaProxies(svc: ServiceRt, r: Replica): Promise<void> {
    await startReplicaProxies(this.fleet, svc.spec, r.id, (port) => {
      const p = r.hostPorts.get(port === 'main' ? svc.spec.port : svc.spec.ports[port]);
      return p ? { host: '127.0.0.1', port: p } : undefined;
    });
  }

  /** Image references the spec needs, for checking them all before anything starts. */
  imageRefs(): string[] {
    const refs = new Set<string>();
    for (const s of this.svcs.values()) refs.add(this.refOf(s));
    for (const d of this.dbs.values()) refs.add(d.ref);
    return [...refs];
  }

  // ---- start -------------------------------------------------------------

  /** Start one service (all its replicas) or database; used along the dependency graph. */
  async startComponent(name: string, signal?: AbortSignal): Promise<void> {
    const db = this.dbs.get(name);
    if (db) {
      await this.startDatabase(db, signal, true);
      return;
    }
    const svc = this.svc(name);
    await this.scaleTo(svc, svc.declared, signal);
  }

  private async startDatabase(db: DatabaseRt, signal: AbortSignal | undefined, first: boolean): Promise<void> {
    const d = db.spec;
    const label = `database ${d.name}`;
    let createdId: string | undefined;
    try {
      const started = await runContainer({
        name: dockerName(this.prefix, d.name, String(++this.counter)),
        image: db.ref,
        env: { POSTGRES_USER: d.credentials.user, POSTGRES_PASSWORD: d.credentials.password, POSTGRES_DB: d.credentials.dbname },
        labels: this.labels(d.name, 'database', 1, db.ref),
        network: this.network,
        aliases: [d.name],
        ports: [d.port],
        cmd: d.port === 5432 ? undefined : ['postgres', '-p', String(d.port)],
        startupTimeoutMs: d.ready.timeoutMs,
        onCreated: (id) => {
          createdId = id;
          db.id = id;
          if (this.disposed) void this.removeContainer(id);
        },
      });
      db.hostPort = started.hostPorts.get(d.port);
      await this.waitPostgres(db, signal);
      if (first && d.initSQL) await this.runInitSql(db);
      db.ready = true;
      this.ctx.log(`docker: ${label} ready on 127.0.0.1:${db.hostPort} (${db.ref})`);
    } catch (err) {
      const failed = startFailed(label, err, d.ready.timeoutMs);
      if (!createdId || failed.code === 'INTERRUPTED') throw failed;
      throw withDetails(failed, { excerpt: logExcerpt(await containerLogs(this.docker, createdId, 100), d.name, 10) });
    }
  }

  private async waitPostgres(db: DatabaseRt, signal?: AbortSignal): Promise<void> {
    const d = db.spec;
    const watch = new ExitWatch(this.docker, db.id!);
    const deadline = Date.now() + d.ready.timeoutMs;
    let last = 'no attempt yet';
    try {
      for (;;) {
        if (signal?.aborted || this.disposed) throw new TopasError('INTERRUPTED', `database ${d.name}: readiness wait interrupted`);
        const gone = watch.liveness();
        if (gone) throw new TopasError('SUT_START_FAILED', `database ${d.name}: exited while waiting for readiness: ${gone}`);
        const c = new Client({ ...this.dbConnInfo(db), connectionTimeoutMillis: 2000 });
        try {
          await c.connect();
          await c.query('SELECT 1');
          return;
        } catch (e) {
          last = (e as Error).message;
        } finally {
          await c.end().catch(() => {});
        }
        if (Date.now() >= deadline) {
          throw new TopasError('READINESS_TIMEOUT', `database ${d.name}: not ready after ${formatDurationMs(d.ready.timeoutMs)} (postgres connect: last result ${last})`);
        }
        await sleep(100, signal);
      }
    } finally {
      watch.stop();
    }
  }

  /** initSQL from the host through the mapped port, once, before any dependent starts. */
  private async runInitSql(db: DatabaseRt): Promise<void> {
    const c = new Client({ ...this.dbConnInfo(db), connectionTimeoutMillis: 5000 });
    await c.connect();
    try {
      await c.query(db.spec.initSQL!);
    } catch (err) {
      throw initSqlFailure(this.spec, db.spec, err);
    } finally {
      await c.end().catch(() => {});
    }
  }

  private dbConnInfo(db: DatabaseRt): { host: string; port: number; user: string; password: string; database: string } {
    const c = db.spec.credentials;
    return { host: '127.0.0.1', port: db.hostPort ?? 0, user: c.user, password: c.password, database: c.dbname };
  }

  private async startReplica(svc: ServiceRt, slot: number, signal?: AbortSignal): Promise<Replica> {
    const s = svc.spec;
    const ref = this.refOf(svc);
    const label = `service ${s.name} replica ${slot}`;
    const ready = s.ready;
    const ports = [...new Set([s.port, ...Object.values(s.ports), ...('port' in ready && ready.port ? [ready.port] : [])])];
    const name = dockerName(this.prefix, s.name, String(slot), String(++this.counter));
    let createdId: string | undefined;
    try {
      const started = await runContainer({
        name,
        image: ref,
        env: this.serviceEnv(svc),
        labels: this.labels(s.name, 'service', slot, ref),
        network: this.network,
        // the service name round-robins across replicas in the network's DNS; name-N is one replica
        aliases: [s.name, `${s.name}-${slot}`],
        ports,
        wait: waitStrategyFor(ready),
        startupTimeoutMs: ready.timeoutMs,
        onCreated: (id) => {
          createdId = id;
          if (this.disposed) void this.removeContainer(id);
        },
      });
      const replica: Replica = { slot, id: started.id, name, ref, hostPorts: started.hostPorts, ready: false, gone: false };
      await this.startReplicaProxies(svc, replica);
      if (ready.kind === 'http') {
        const watch = new ExitWatch(this.docker, started.id);
        try {
          await waitForHttp(`${probeScheme(s, ready.port ?? s.port)}://127.0.0.1:${started.hostPorts.get(ready.port ?? s.port)}`, {
            path: ready.path,
            timeoutMs: ready.timeoutMs,
            signal,
            label,
            liveness: watch.liveness,
          });
        } finally {
          watch.stop();
        }
      }
      if (this.disposed) throw new TopasError('INTERRUPTED', `${label}: the SUT was disposed while it started`);
      replica.ready = true;
      this.ctx.log(`docker: ${label} ready on 127.0.0.1:${started.hostPorts.get(s.port)} (${ref})`);
      return replica;
    } catch (err) {
      const failed = startFailed(label, err, ready.timeoutMs);
      if (!createdId) throw failed;
      // read before removing: the cause, the container's last log lines, what to check in topas.yaml
      const [logs, exited] = await Promise.all([containerLogs(this.docker, createdId, 100), exitOf(this.docker, createdId)]);
      await this.removeContainer(createdId);
      throw replicaStartFailure(failed, { spec: this.spec, service: s, replica: slot, backend: 'docker', exited, logs });
    }
  }

  private serviceEnv(svc: ServiceRt): Record<string, string> {
    const s = svc.spec;
    const env: Record<string, string> = { PORT: String(s.port) };
    for (const [n, p] of Object.entries(s.ports)) env[`PORT_${n.toUpperCase().replace(/[^A-Z0-9]/g, '_')}`] = String(p);
    const version = svc.version ?? versionOf(this.refOf(svc));
    env.TOPAS_VERSION = version;
    for (const [k, v] of Object.entries({ ...s.env, ...(this.ctx.env ?? {}), ...svc.envOverrides })) {
      env[k] = resolveValue(this.spec, this.view, v);
    }
    return env;
  }

  /** Addresses as a container sees them: the dependents' proxy on the gateway when shaped, else the network alias and declared port. */
  private readonly view: AddressView = {
    service: (name, port): Address | undefined => {
      const via = this.gateway ? this.fleet.dependentAddress(name, port) : undefined;
      if (via) return via;
      const s = this.svc(name).spec;
      const p = port === 'main' ? s.port : s.ports[port];
      return p === undefined ? undefined : { host: name, port: p };
    },
    database: (name): Address | undefined => {
      const via = this.gateway ? this.fleet.dependentAddress(name, 'db') : undefined;
      const d = this.dbs.get(name)!.spec;
      return via ?? { host: d.name, port: d.port };
    },
  };

  private labels(service: string, kind: 'service' | 'database', slot: number, ref: string): Record<string, string> {
    return {
      ...runLabels(this.spec.name, this.runId, this.spec.file, this.proxyHost?.info),
      [LABEL.service]: service,
      [LABEL.kind]: kind,
      [LABEL.replica]: String(slot),
      [LABEL.image]: ref,
    };
  }

  private refOf(svc: ServiceRt): string {
    if (!svc.image) {
      throw new TopasError('INVALID_APP_SPEC', `service ${svc.spec.name} has no image; the docker backend needs one`);
    }
    return imageRef(svc.image, svc.version);
  }

  // ---- attach ------------------------------------------------------------

  /**
   * Rebuild replica tables from the containers labelled with this run (another
   * process started them): what runs is the truth, whatever the state file says.
   * A running replica counts as ready once its readiness check answers now.
   */
  async adopt(): Promise<void> {
    const list = await this.docker.listContainers({ all: true, filters: { label: [`${LABEL.run}=${this.runId}`] } });
    const probes: Promise<void>[] = [];
    for (const info of list) {
      const l = info.Labels ?? {};
      const name = l[LABEL.service];
      const running = info.State === 'running';
      const { hostPorts } = await inspectHostPorts(this.docker, info.Id);
      const db = this.dbs.get(name);
      if (l[LABEL.kind] === 'database' && db) {
        db.id = info.Id;
        db.hostPort = hostPorts.get(db.spec.port);
        db.ready = running;
        continue;
      }
      const svc = this.svcs.get(name);
      if (!svc) continue;
      const slot = Number(l[LABEL.replica]) || svc.replicas.length + 1;
      const replica: Replica = {
        slot,
        id: info.Id,
        name: (info.Names?.[0] ?? '').replace(/^\//, ''),
        ref: l[LABEL.image] ?? info.Image,
        hostPorts,
        ready: running,
        gone: !running,
      };
      svc.replicas.push(replica);
      if (running) probes.push(this.probeReady(svc, replica));
      const n = /-(\d+)$/.exec(info.Names?.[0] ?? '');
      if (n) this.counter = Math.max(this.counter, Number(n[1]));
    }
    await Promise.all(probes);
  }

  /** One http readiness attempt of an adopted replica (others: running is ready, as docker's wait strategies are start-time only). */
  private async probeReady(svc: ServiceRt, r: Replica): Promise<void> {
    const ready = svc.spec.ready;
    if (ready.kind !== 'http') return;
    const port = r.hostPorts.get(ready.port ?? svc.spec.port);
    try {
      if (!port) throw new Error('port not published');
      await waitForHttp(`${probeScheme(svc.spec, ready.port ?? svc.spec.port)}://127.0.0.1:${port}`, { path: ready.path, timeoutMs: 1, attemptTimeoutMs: PROBE_ONCE_MS, label: `service ${svc.spec.name} replica ${r.slot}` });
    } catch {
      r.ready = false;
    }
  }

  /**
   * After adopt: replicas found running but not answering (a run died while they
   * started) get their readiness timeout, then the reconcile loop replaces them.
   */
  awaitUnready(): void {
    for (const svc of this.svcs.values()) {
      const ready = svc.spec.ready;
      if (ready.kind !== 'http') continue;
      for (const r of svc.replicas.filter((x) => !x.gone && !x.ready)) {
        void svc.ops.run(async () => {
          if (r.gone || r.ready || this.disposed) return;
          const label = `service ${svc.spec.name} replica ${r.slot}`;
          const watch = new ExitWatch(this.docker, r.id);
          try {
            await waitForHttp(`${probeScheme(svc.spec, ready.port ?? svc.spec.port)}://127.0.0.1:${r.hostPorts.get(ready.port ?? svc.spec.port)}`, { path: ready.path, timeoutMs: ready.timeoutMs, label, liveness: watch.liveness });
            r.ready = true;
          } catch (err) {
            if (this.disposed) return;
            this.ctx.log(`docker: ${label} did not become ready (${(err as Error).message}); replacing it`);
            r.gone = true;
          } finally {
            watch.stop();
          }
        }).catch(() => {});
      }
    }
  }

  /** An attached run of a kept SUT records every change of what is declared (StartContext.onState). */
  private saveState(): void {
    if (!this.ctx.onState || this.ctx.readOnly) return;
    try {
      this.ctx.onState(this.state());
    } catch (err) {
      this.ctx.log(`docker: cannot record the state of the kept SUT: ${(err as Error).message}`);
    }
  }

  // ---- self-healing -------------------------------------------------------

  startReconcile(): void {
    if (this.reconcileTimer || this.disposed) return;
    const tick = (): void => {
      void this.reconcileOnce().finally(() => {
        if (this.reconcileTimer && !this.disposed) {
          this.reconcileTimer = setTimeout(tick, RECONCILE_INTERVAL_MS);
          this.reconcileTimer.unref();
        }
      });
    };
    this.reconcileTimer = setTimeout(tick, RECONCILE_INTERVAL_MS);
    this.reconcileTimer.unref();
  }

  private stopReconcile(): void {
    if (this.reconcileTimer) clearTimeout(this.reconcileTimer);
    this.reconcileTimer = undefined;
  }

  /** One pass of the controller loop: replace dead replicas up to the declared count, restart a dead database. */
  private async reconcileOnce(): Promise<void> {
    if (this.reconciling || this.disposed) return;
    this.reconciling = true;
    try {
      let running: Set<string>;
      try {
        const list = await this.docker.listContainers({ all: true, filters: { label: [`${LABEL.run}=${this.runId}`] } });
        running = new Set(list.filter((c) => c.State === 'running').map((c) => c.Id));
      } catch {
        return; // engine hiccup: next tick
      }
      for (const svc of this.svcs.values()) {
        if (svc.stopped || svc.ops.busy > 0) continue;
        for (const r of svc.replicas) {
          if (!running.has(r.id)) {
            r.gone = true;
            r.ready = false;
          }
        }
        const alive = svc.replicas.filter((r) => !r.gone).length;
        if (alive === svc.declared && alive === svc.replicas.length) continue;
        if (Date.now() < svc.nextHealAt) continue;
        void svc.ops.run(() => this.heal(svc)).catch(() => {});
      }
      for (const db of this.dbs.values()) {
        if (db.stopped || db.ops.busy > 0 || !db.id || running.has(db.id)) continue;
        db.ready = false;
        void db.ops.run(async () => {
          this.ctx.log(`docker: database ${db.spec.name} is not running; starting it again`);
          await this.restartDatabaseContainer(db, false);
        }).catch((e: unknown) => this.ctx.log(`docker: database ${db.spec.name}: restart failed: ${(e as Error).message}`));
      }
    } finally {
      this.reconciling = false;
    }
  }

  private async heal(svc: ServiceRt): Promise<void> {
    if (this.disposed || svc.stopped) return;
    const dead = svc.replicas.filter((r) => r.gone);
    svc.replicas = svc.replicas.filter((r) => !r.gone);
    await Promise.all(dead.map((r) => this.removeContainer(r.id)));
    for (const r of dead) this.ctx.log(`docker: service ${svc.spec.name} replica ${r.slot} died; replacing it`);
    try {
      await this.scaleTo(svc, svc.declared);
      svc.healFailures = 0;
      svc.nextHealAt = 0;
    } catch (err) {
      svc.healFailures++;
      svc.nextHealAt = Date.now() + healBackoffMs(svc.healFailures);
      this.ctx.log(`docker: service ${svc.spec.name}: replacing replicas failed (${(err as Error).message}); retrying`);
      throw err;
    }
  }


  // ---- replica set changes -------------------------------------------------

  /** Start or stop replicas until `n` run; new ones in parallel. */
  private async scaleTo(svc: ServiceRt, n: number, signal?: AbortSignal): Promise<void> {
    const live = svc.replicas.filter((r) => !r.gone);
    if (n > live.length) {
      const used = new Set(live.map((r) => r.slot));
      const slots: number[] = [];
      for (let s = 1; slots.length < n - live.length; s++) if (!used.has(s)) slots.push(s);
      const results = await Promise.allSettled(slots.map((slot) => this.startReplica(svc, slot, signal)));
      for (const r of results) if (r.status === 'fulfilled') svc.replicas.push(r.value);
      const failed = results.find((r) => r.status === 'rejected');
      if (failed) throw (failed as PromiseRejectedResult).reason;
    } else if (n < live.length) {
      // replicas of an older image first (a rollout a dead run left half done), then the highest slots
      const current = this.refOf(svc);
      const victims = [...live].sort((a, b) => Number(a.ref === current) - Number(b.ref === current) || b.slot - a.slot).slice(0, live.length - n);
      for (const v of victims) v.ready = false;
      svc.replicas = svc.replicas.filter((r) => !victims.includes(r));
      await sleep(DRAIN_MS);
      await Promise.all(victims.map((v) => this.stopAndRemove(v.id)));
    }
  }

  /** Start new, wait ready, add it to the endpoint set, take the old one out, stop it. */
  private async rollReplica(svc: ServiceRt, old: Replica): Promise<void> {
    const fresh = await this.startReplica(svc, old.slot);
    svc.replicas.push(fresh);
    old.ready = false;
    svc.replicas = svc.replicas.filter((r) => r !== old);
    await sleep(DRAIN_MS);
    await this.stopAndRemove(old.id);
  }

  private async rollAll(svc: ServiceRt): Promise<void> {
    const olds = [...svc.replicas].sort((a, b) => a.slot - b.slot);
    for (const old of olds) {
      if (old.gone) {
        svc.replicas = svc.replicas.filter((r) => r !== old);
        await this.removeContainer(old.id);
        continue;
      }
      await this.rollReplica(svc, old);
    }
  }

  private async stopAndRemove(id: string): Promise<void> {
    try {
      await this.docker.getContainer(id).stop({ t: STOP_GRACE_S });
    } catch {
      /* already stopped or gone */
    }
    await this.removeContainer(id);
  }

  private async removeContainer(id: string): Promise<void> {
    await this.fleet.dropReplica(id);
    try {
      await this.docker.getContainer(id).remove({ force: true, v: true });
    } catch {
      /* gone already */
    }
  }

  private async restartDatabaseContainer(db: DatabaseRt, graceful: boolean): Promise<void> {
    const c = this.docker.getContainer(db.id!);
    db.ready = false;
    if (graceful) await c.restart({ t: STOP_GRACE_S });
    else await c.start().catch((e: { statusCode?: number }) => {
      if (e.statusCode !== 304) throw e;
    });
    // a published port without a fixed host port may move on every start
    db.hostPort = (await inspectHostPorts(this.docker, db.id!)).hostPorts.get(db.spec.port);
    await this.waitPostgres(db);
    db.ready = true;
  }

  // ---- Sut -----------------------------------------------------------------

  async services(): Promise<ServiceStatus[]> {
    const out: ServiceStatus[] = [];
    for (const db of this.dbs.values()) {
      out.push({
        name: db.spec.name,
        kind: 'database',
        replicas: db.id && !db.stopped ? 1 : 0,
        ready: db.ready,
        image: db.ref,
        version: versionOf(db.ref),
        endpoints: db.hostPort ? [this.dbUrl(db, true)] : [],
      });
    }
    for (const svc of this.svcs.values()) {
      const ready = this.readyReplicas(svc);
      const extraEndpoints: Record<string, string[]> = {};
      for (const [pn, p] of Object.entries(svc.spec.ports)) extraEndpoints[pn] = ready.map((r) => `127.0.0.1:${r.hostPorts.get(p)}`);
      const ref = svc.image ? this.refOf(svc) : undefined;
      const live = svc.replicas.filter((r) => !r.gone);
      // the versions that run (two during a rollout), else the declared one
      const running = [...new Set(live.map((r) => versionOf(r.ref)))];
      out.push({
        name: svc.spec.name,
        kind: 'service',
        replicas: live.length,
        ready: this.isReady(svc),
        image: ref,
        version: running.length ? running.join(', ') : (svc.version ?? (ref ? versionOf(ref) : undefined)),
        endpoints: ready.map((r) => this.directUrl(svc, r)),
        ...(Object.keys(extraEndpoints).length ? { extraEndpoints } : {}),
      });
    }
    return out;
  }

  endpoint(name: string, port?: string): string {
    const db = this.dbs.get(name);
    if (db) {
      if (!db.hostPort) throw sutErrors.databaseNotRunning(name);
      return this.dbUrl(db);
    }
    const svc = this.svc(name);
    const p = port === undefined ? undefined : svc.spec.ports[port];
    if (port !== undefined && p === undefined) throw sutErrors.unknownPort(name, port, Object.keys(svc.spec.ports));
    const r = svc.rr.pick(servingPool(this.readyReplicas(svc), svc.replicas.filter((x) => !x.gone)));
    if (!r) throw sutErrors.noRunningReplica(name);
    return port === undefined ? this.replicaUrl(svc, r) : this.replicaHostPort(r, port, p!);
  }

  endpointMap(): EndpointMap {
    const map: EndpointMap = {};
    for (const db of this.dbs.values()) {
      const via = this.fleet.replicaAddress(databaseProxyKey(db.spec.name), 'db');
      map[db.spec.name] = databaseEntry({ ...db.spec.credentials, host: via?.host ?? '127.0.0.1', port: via?.port ?? db.hostPort ?? 0 }, !!db.hostPort);
    }
    for (const svc of this.svcs.values()) {
      const pool = servingPool(this.readyReplicas(svc), svc.replicas.filter((r) => !r.gone));
      map[svc.spec.name] = serviceEntry(pool, Object.keys(svc.spec.ports), (r) => this.replicaUrl(svc, r), (r, pn) => this.replicaHostPort(r, pn, svc.spec.ports[pn]), svc.spec.tlsPorts);
    }
    return map;
  }

  async applyService(name: string, change: ApplyServiceChange): Promise<void> {
    const svc = this.svc(name);
    if (change.replicas !== undefined && (!Number.isInteger(change.replicas) || change.replicas < 0)) {
      throw sutErrors.badReplicaCount('apply_service', name, change.replicas);
    }
    await svc.ops.run(async () => {
      const before = { image: svc.image, version: svc.version, envOverrides: svc.envOverrides };
      const image = change.image ?? svc.image;
      const version = change.version ?? (change.image !== undefined && /:[^/]*$/.test(change.image) ? undefined : svc.version);
      const envOverrides = change.env ? { ...svc.envOverrides, ...change.env } : svc.envOverrides;
      const newRef = imageRef(image, version);
      const changed = newRef !== this.refOf(svc) || JSON.stringify(envOverrides) !== JSON.stringify(svc.envOverrides);
      if (changed) await ensureImage(this.docker, newRef, this.ctx.log);
      const target = change.replicas ?? svc.declared;
      svc.declared = target;
      if (svc.stopped) {
        Object.assign(svc, { image, version, envOverrides });
        this.saveState();
        return;
      }
      // recorded before the work: a run that dies midway leaves the intent, and the next attach finishes it
      if (changed) Object.assign(svc, { image, version, envOverrides });
      this.saveState();
      if (target < svc.replicas.length) await this.scaleTo(svc, target);
      if (changed) {
        try {
          await this.rollAll(svc);
        } catch (err) {
          // replicas not yet replaced keep the old config, and so do later heals
          Object.assign(svc, before);
          this.saveState();
          throw err;
        }
        this.ctx.log(`docker: service ${name} rolled out to ${newRef}`);
      }
      await this.scaleTo(svc, target);
    });
  }

  async waitReady(name: string, timeoutMs = 60_000): Promise<void> {
    const svc = this.svcs.get(name);
    const db = this.dbs.get(name);
    if (!svc && !db) this.svc(name);
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (this.disposed) throw new TopasError('SUT_NOT_UP', `the SUT was disposed while waiting for ${name}`);
      if (svc ? this.isReady(svc) : db!.stopped || db!.ready) return;
      if (Date.now() >= deadline) {
        throw new TopasError('READINESS_TIMEOUT', `${name}: not ready after ${formatDurationMs(timeoutMs)}`);
      }
      void this.reconcileOnce();
      await sleep(100);
    }
  }

  async scale(name: string, replicas: number): Promise<void> {
    if (!Number.isInteger(replicas) || replicas < 0) throw sutErrors.badReplicaCount('scale', name, replicas);
    await this.applyService(name, { replicas });
  }

  async stop(name: string): Promise<void> {
    const db = this.dbs.get(name);
    if (db) {
      await db.ops.run(async () => {
        db.stopped = true;
        db.ready = false;
        this.saveState();
        if (db.id) await this.docker.getContainer(db.id).stop({ t: STOP_GRACE_S }).catch(() => {});
      });
      return;
    }
    const svc = this.svc(name);
    await svc.ops.run(async () => {
      svc.stopped = true;
      this.saveState();
      const victims = svc.replicas;
      for (const v of victims) v.ready = false;
      svc.replicas = [];
      await sleep(DRAIN_MS);
      await Promise.all(victims.map((v) => this.stopAndRemove(v.id)));
    });
  }

  async start(name: string): Promise<void> {
    const db = this.dbs.get(name);
    if (db) {
      await db.ops.run(async () => {
        db.stopped = false;
        this.saveState();
        if (db.id) await this.restartDatabaseContainer(db, false);
        else await this.startDatabase(db, undefined, true);
      });
      return;
    }
    const svc = this.svc(name);
    await svc.ops.run(async () => {
      svc.stopped = false;
      this.saveState();
      await this.scaleTo(svc, svc.declared);
    });
  }

  async restart(name: string): Promise<void> {
    const db = this.dbs.get(name);
    if (db) {
      await db.ops.run(async () => {
        db.stopped = false;
        this.saveState();
        if (db.id) await this.restartDatabaseContainer(db, true);
        else await this.startDatabase(db, undefined, true);
      });
      return;
    }
    const svc = this.svc(name);
    await svc.ops.run(async () => {
      svc.stopped = false;
      this.saveState();
      await this.rollAll(svc);
      await this.scaleTo(svc, svc.declared);
    });
  }

  async kill(name: string, opts: KillOptions = {}): Promise<void> {
    const signal = opts.signal ?? 'SIGKILL';
    const db = this.dbs.get(name);
    let target: { id: string; mark: () => void } | undefined;
    if (db) {
      if (db.id && !db.stopped) target = { id: db.id, mark: () => (db.ready = false) };
    } else {
      const svc = this.svc(name);
      const live = svc.replicas.filter((r) => !r.gone).sort((a, b) => a.slot - b.slot);
      const r =
        opts.replica !== undefined
          ? (live.find((x) => x.slot === opts.replica) ?? live[opts.replica - 1])
          : live[Math.floor(Math.random() * live.length)];
      if (r) {
        target = {
          id: r.id,
          mark: () => {
            r.ready = false;
            r.gone = true;
          },
        };
      }
    }
    if (!target && db) throw sutErrors.databaseNotRunning(name);
    if (!target) {
      const running = this.svc(name).replicas.filter((r) => !r.gone).map((r) => r.slot).sort((a, b) => a - b);
      throw sutErrors.noRunningReplica(name, opts.replica, running);
    }
    await this.docker.getContainer(target.id).kill({ signal });
    // Known dead at once, so wait_ready right after a kill waits for the replacement.
    const deadline = Date.now() + 2000;
    while (Date.now() < deadline) {
      const st = await inspectHostPorts(this.docker, target.id).catch(() => undefined);
      if (!st?.running) {
        target.mark();
        break;
      }
      await sleep(25);
    }
    void this.reconcileOnce();
  }

  async logs(name: string, opts: { tail?: number } = {}): Promise<string> {
    const db = this.dbs.get(name);
    const tail = opts.tail ?? DEFAULT_LOG_TAIL;
    if (db) return db.id ? mergeReplicaLogs(name, [{ index: 1, text: await containerLogs(this.docker, db.id, tail) }], tail) : '';
    const svc = this.svc(name);
    const reps = [...svc.replicas].sort((a, b) => a.slot - b.slot);
    const parts = await Promise.all(reps.map(async (r) => ({ index: r.slot, text: await containerLogs(this.docker, r.id, tail) })));
    return mergeReplicaLogs(name, parts, tail);
  }

  async exec(name: string, argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
    const db = this.dbs.get(name);
    let id: string | undefined;
    if (db) id = db.id;
    else {
      const svc = this.svc(name);
      id = (this.readyReplicas(svc)[0] ?? svc.replicas.find((r) => !r.gone))?.id;
    }
    if (argv.length === 0) throw sutErrors.emptyExec(name);
    if (!id) throw sutErrors.nothingToExec(name);
    const r = await this.engine.client.container.exec(this.docker.getContainer(id), argv);
    return { code: r.exitCode, stdout: r.stdout, stderr: r.stderr };
  }

  state(): SutState {
    const data: DockerSutData = { network: this.network, services: {}, databases: {}, proxyHost: this.proxyHost?.info, gateway: this.proxyHost ? this.gateway : undefined };
    for (const [n, s] of this.svcs) {
      data.services[n] = { declared: s.declared, stopped: s.stopped, image: s.image, version: s.version, envOverrides: s.envOverrides };
    }
    for (const [n, d] of this.dbs) data.databases[n] = { stopped: d.stopped };
    return { backend: 'docker', runId: this.runId, app: this.spec.name, specFile: this.spec.file, startedAt: this.startedAt, data };
  }

  /** Dependents' proxies go to this proxy host (a kept run). */
  useProxyHost(host: ProxyHostClient): void {
    this.proxyHost = host;
    this.fleet.useHost(host);
  }

  get lifecycle(): SutLifecycle {
    return lifecycleOf({ disposed: this.disposed, kept: this.kept });
  }

  async detach(): Promise<void> {
    this.kept = true;
    this.stopReconcile();
    // scenario proxies end with this process; dependents' proxies, if any, live on in the proxy host
    await this.fleet.close();
    if (!this.ctx.readOnly) await markDetached(this.docker, this.spec.name, this.runId, this.spec.file);
  }

  /** `down` of a kept run: the host goes with it, though a reader never talked to it. */
  keepProxyHost(host: ProxyHostClient): void {
    this.proxyHost = host;
  }

  /** Remove every container and the network of this run (by label, so also what a crash left). Idempotent. */
  dispose(): Promise<void> {
    this.disposing ??= this.removeAll();
    return this.disposing;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.dispose();
  }

  /** Stop a start in progress: remove what exists now so pending waits fail at once. */
  abortStart(): void {
    this.disposed = true;
    void this.fleet.close();
    void removeRun(this.engine, this.runId).catch(() => {});
  }

  private async removeAll(): Promise<void> {
    this.disposed = true;
    this.stopReconcile();
    // let operations in flight notice `disposed` and settle (bounded)
    await Promise.race([
      Promise.allSettled([...this.svcs.values(), ...this.dbs.values()].map((rt) => rt.ops.idle())),
      sleep(2000),
    ]);
    await this.fleet.close();
    await removeRun(this.engine, this.runId);
    await this.proxyHost?.exit();
    removeProxyHostDir(this.runId);
    await clearDetached(this.docker, this.runId).catch((err: Error) => this.ctx.log(`docker: kept marker of run ${this.runId} not removed: ${err.message}`));
    this.ctx.log(`docker: removed the containers and network of run ${this.runId}`);
  }

  // ---- helpers -------------------------------------------------------------

  private svc(name: string): ServiceRt {
    const s = this.svcs.get(name);
    if (!s) throw sutErrors.unknownTarget(this.spec.name, name, [...this.svcs.keys(), ...this.dbs.keys()]);
    return s;
  }

  private readyReplicas(svc: ServiceRt): Replica[] {
    return svc.replicas.filter((r) => r.ready && !r.gone).sort((a, b) => a.slot - b.slot);
  }

  private isReady(svc: ServiceRt): boolean {
    if (svc.stopped) return true;
    return svc.ops.busy === 0 && this.readyReplicas(svc).length >= svc.declared && svc.replicas.every((r) => !r.gone);
  }

  /** A replica's base URL as scenarios reach it: through its shaping proxy (direct when it has none). */
  private replicaUrl(svc: ServiceRt, r: Replica): string {
    const a = this.fleet.replicaAddress(r.id, 'main');
    return a ? proxyUrl(a, svc.spec.tls ? 'https' : 'http') : this.directUrl(svc, r);
  }

  /** Unproxied, for `ps`/`sut.services()` and diagnostics. */
  private directUrl(svc: ServiceRt, r: Replica): string {
    return `${svc.spec.tls ? 'https' : 'http'}://127.0.0.1:${r.hostPorts.get(svc.spec.port)}`;
  }

  private replicaHostPort(r: Replica, portName: string, port: number): string {
    const a = this.fleet.replicaAddress(r.id, portName);
    return a ? `${a.host}:${a.port}` : `127.0.0.1:${r.hostPorts.get(port)}`;
  }

  /** As scenarios reach the database (its proxy), or `direct`. */
  private dbUrl(db: DatabaseRt, direct = false): string {
    const via = direct ? undefined : this.fleet.replicaAddress(databaseProxyKey(db.spec.name), 'db');
    return postgresUrl(db.spec.credentials, via?.host ?? '127.0.0.1', via?.port ?? db.hostPort ?? 0);
  }
}

/** Force-remove the containers of a run, then its network(s). Returns what was removed. */
export async function removeRun(engine: Engine, runId: string): Promise<{ containers: number; networks: number }> {
  const docker = engine.docker;
  const filter = { label: [`${LABEL.run}=${runId}`] };
  const containers = await docker.listContainers({ all: true, filters: filter });
  await Promise.all(
    containers.map((c) =>
      docker
        .getContainer(c.Id)
        .remove({ force: true, v: true })
        .catch(() => {}),
    ),
  );
  // a removal already under way elsewhere (409) is not done yet: wait for it, bounded, so `down` returns when all is gone
  for (let attempt = 0; attempt < 50 && containers.length > 0; attempt++) {
    if ((await docker.listContainers({ all: true, filters: filter })).length === 0) break;
    await sleep(100);
  }
  const networks = await docker.listNetworks({ filters: filter });
  let removedNetworks = 0;
  for (const n of networks) {
    // a container removal may lag a moment behind; retry briefly (bounded)
    for (let attempt = 0; attempt < 20; attempt++) {
      try {
        await docker.getNetwork(n.Id).remove();
        removedNetworks++;
        break;
      } catch (err) {
        if ((err as { statusCode?: number }).statusCode === 404) break;
        await sleep(100);
      }
    }
  }
  return { containers: containers.length, networks: removedNetworks };
}

/** https for a readiness port marked TLS (`tls: true`, or `{ port, tls: true }`), else http */
function probeScheme(s: ServiceSpec, port: number): 'http' | 'https' {
  if (port === s.port) return s.tls ? 'https' : 'http';
  const named = Object.entries(s.ports).find(([, p]) => p === port);
  return named && s.tlsPorts?.includes(named[0]) ? 'https' : 'http';
}
