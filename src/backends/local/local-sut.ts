import { spawn, type ChildProcess } from 'node:child_process';
import { nodeExecutable } from '../../sea/node-executable';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { TopasError } from '../../errors';
import type { AppSpec, DatabaseSpec, ServiceSpec } from '../../spec/app-spec';
import { startInDependencyOrder } from '../../spec/dependency-graph';
import { formatDurationMs } from '../../util/duration';
import type { ApplyServiceChange, EndpointMap, KillOptions, ServiceStatus, StartContext, Sut, SutState } from '../backend';
import { sleep, waitForHttp, waitForLog, waitForTcp, type ProbeOptions } from '../readiness';
import { commandHint, replicaStartFailure } from '../start-errors';
import { PostgresCluster, postgresBaseDir, type PostgresClusterState } from './postgres-cluster';
import { findRunProcesses, freePort, isAlive, processStartTicks, readTail, signalGroup, stopGroup, waitForExit } from './processes';
import { currentOwner, readRunRecords, removeRunRecord, writeRunRecord, type RunRecord } from './run-registry';
import { markDependentsBypass, ShapeController } from '../../shape/shape-controller';
import { ProxyFleet, proxyUrl } from '../../shape/proxy-fleet';
import { ProxyHostClient, type ProxyHostInfo } from '../../shape/proxy-host';
import { selfCommand } from '../../util/self-command';
import type { ProxyTarget } from '../../shape/shaping-proxy';
import { lifecycleOf, type SutLifecycle, DEFAULT_LOG_TAIL, databaseEntry, databaseProxyKey, serviceEntry, OpQueue, startDatabaseProxy, startDependentProxies, startReplicaProxies, RoundRobin, errorMessage, healBackoffMs, mergeReplicaLogs, postgresUrl, resolveValue, servingPool, sutErrors, type Address, type AddressView } from '../../sut';

export interface LocalSutOptions {
  /** SIGTERM -> SIGKILL grace when stopping a replica; default 5s */
  graceMs?: number;
  /** time a retired replica keeps serving in-flight work before SIGTERM; default 300ms */
  drainMs?: number;
  /** self-healing loop period; default 200ms */
  reconcileIntervalMs?: number;
}

/** One running process of a service. */
interface Replica {
  /** 1-based slot; a replacement takes the slot of the replica it replaces */
  index: number;
  seq: number;
  pid: number;
  startTicks?: number;
  port: number;
  ports: Record<string, number>;
  logFile: string;
  version?: string;
  /** absent after attach (then liveness is checked by pid) */
  child?: ChildProcess;
  ready: boolean;
  /** out of the endpoint set, being stopped on purpose */
  retiring: boolean;
  exit?: { code: number | null; signal: NodeJS.Signals | null };
}

interface ServiceRuntime {
  /** the spec as changed by applyService (version, image, env) */
  config: ServiceSpec;
  declared: number;
  /** what `start` brings back after `stop` */
  lastDeclared: number;
  replicas: Replica[];
  lock: OpQueue;
  rr: RoundRobin;
  lastError?: string;
  failures: number;
  healAfter: number;
}

interface PersistedReplica {
  index: number;
  seq: number;
  pid: number;
  startTicks?: number;
  port: number;
  ports: Record<string, number>;
  logFile: string;
  version?: string;
  /** replaced or scaled away, being stopped: an attach finishes the stop */
  retiring?: boolean;
}

/** `SutState.data` of the local backend. */
export interface LocalStateData {
  workDir: string;
  /** folders outside workDir to remove on dispose (a PostgreSQL data dir in tmp) */
  extraDirs: string[];
  postgres?: PostgresClusterState;
  extraEnv: Record<string, string>;
  seq: number;
  /** the detached host of the dependents' shaping proxies (a SUT kept by `topas up` / --keep) */
  proxyHost?: ProxyHostInfo;
  services: Record<
    string,
    { declared: number; lastDeclared: number; version?: string; image?: string; env: Record<string, string>; replicas: PersistedReplica[] }
  >;
}

const HOST = '127.0.0.1';
const EXEC_TIMEOUT_MS = 120_000;
const DEFAULT_WAIT_READY_MS = 60_000;
/** a single readiness attempt (attach, ps): the time one answer may take */
const PROBE_ONCE_MS = 2000;

function portEnvName(name: string): string {
  return `PORT_${name.toUpperCase().replace(/[^A-Z0-9]/g, '_')}`;
}

function describeExit(exit: Replica['exit']): string {
  if (!exit) return 'exited';
  if (exit.signal) return `killed by ${exit.signal}`;
  if (exit.code === null) return 'exited';
  return `exit code ${exit.code}`;
}

/**
 * A SUT on the local backend: services as detached process groups on free ports,
 * databases in one embedded PostgreSQL cluster, a reconcile loop that replaces
 * replicas that died.
 */
export class LocalSut implements Sut {
  readonly backend = 'local';
  readonly runId: string;
  private readonly svcs = new Map<string, ServiceRuntime>();
  private readonly dbs = new Map<string, DatabaseSpec>();
  private pg?: PostgresCluster;
  private pgStart?: Promise<PostgresCluster>;
  private readonly workDir: string;
  private readonly logDir: string;
  private extraDirs: string[] = [];
  private extraEnv: Record<string, string>;
  private seq = 0;
  private startedAt = new Date().toISOString();
  private loop?: NodeJS.Timeout;
  private closed = false;
  private detached = false;
  /** attached to a SUT kept by `topas up` / --keep: it stays kept (detached) in the registry */
  private kept = false;
  /** attached only to look or tear down (StartContext.readOnly) */
  private readonly readOnly: boolean;
  private disposing?: Promise<void>;
  /** aborted by dispose/detach: every readiness wait in flight stops */
  private readonly opsAbort = new AbortController();
  private readonly graceMs: number;
  private readonly drainMs: number;
  private readonly reconcileIntervalMs: number;
  private readonly endpointListeners = new Set<(map: EndpointMap) => void>();
  // traffic shaping: scenarios always reach services through these proxies; dependents when shapeDependents
  private readonly shapes: ShapeController;
  private readonly fleet: ProxyFleet;
  private readonly shapeDependents: boolean;
  private proxyHost: ProxyHostClient | undefined;

  private constructor(
    readonly spec: AppSpec,
    private readonly ctx: StartContext,
    opts: LocalSutOptions,
  ) {
    this.runId = ctx.runId;
    this.workDir = ctx.workDir;
    this.logDir = path.join(ctx.workDir, 'logs');
    this.extraEnv = { ...(ctx.env ?? {}) };
    this.graceMs = opts.graceMs ?? 5000;
    this.drainMs = opts.drainMs ?? 300;
    this.reconcileIntervalMs = opts.reconcileIntervalMs ?? 200;
    this.readOnly = ctx.readOnly === true;
    for (const s of spec.services) {
      this.svcs.set(s.name, {
        config: { ...s, env: { ...s.env }, ports: { ...s.ports } },
        declared: s.replicas,
        lastDeclared: Math.max(s.replicas, 1),
        replicas: [],
        lock: new OpQueue(),
        rr: new RoundRobin(),
        failures: 0,
        healAfter: 0,
      });
    }
    for (const d of spec.databases) this.dbs.set(d.name, d);
    this.shapes = new ShapeController({ services: [...this.svcs.keys(), ...this.dbs.keys()] });
    this.fleet = new ProxyFleet({ controller: this.shapes, scenarioHost: HOST });
    this.shapeDependents = ctx.shapeDependents === true || ctx.proxyHost === true;
    if (!this.shapeDependents) markDependentsBypass(this.shapes, spec);
  }

  /** Start everything; on any failure (or abort) tear down what was made, then rethrow. */
  static async start(spec: AppSpec, ctx: StartContext, opts: LocalSutOptions = {}): Promise<LocalSut> {
    const missing = spec.services.filter((s) => !s.command || s.command.length === 0).map((s) => s.name);
    if (missing.length) {
      throw new TopasError('BACKEND_UNAVAILABLE', `local backend: service(s) ${missing.join(', ')} have no command`, {
        hint: 'the local backend runs services as processes: give each service a `command`, or use --backend docker',
      });
    }
    const sut = new LocalSut(spec, ctx, opts);
    fs.mkdirSync(sut.logDir, { recursive: true });
    sut.persist();
    const signal = ctx.signal ? AbortSignal.any([ctx.signal, sut.opsAbort.signal]) : sut.opsAbort.signal;
    const t0 = Date.now();
    try {
      if (ctx.proxyHost) {
        sut.proxyHost = await ProxyHostClient.start({ watchDir: sut.workDir, command: selfCommand() });
        sut.fleet.useHost(sut.proxyHost);
        sut.persist();
      }
      await sut.startServiceProxies();
      await startInDependencyOrder(spec, (name) => sut.startNode(name, signal), { signal });
    } catch (e) {
      ctx.log(`local: start failed (${errorMessage(e).split('\n')[0]}); removing what was started`);
      await sut.dispose();
      if (e instanceof TopasError) throw e;
      throw new TopasError('SUT_START_FAILED', `local backend: ${errorMessage(e)}`, { cause: e });
    }
    ctx.log(`local: ${spec.name} up in ${formatDurationMs(Date.now() - t0)}`);
    sut.startLoop();
    return sut;
  }

  /**
   * Reopen a run from its persisted state (another process started it); operations work by pid.
   * Replicas are taken as they are: alive ones are kept (probed for readiness, not restarted),
   * dead ones replaced by the loop, ones a crashed run was retiring stopped.
   */
  static async attach(spec: AppSpec, state: SutState, ctx: StartContext, opts: LocalSutOptions = {}): Promise<LocalSut> {
    if (state.backend !== 'local') throw new TopasError('SUT_NOT_UP', `state belongs to backend "${state.backend}", not local`);
    const data = state.data as LocalStateData;
    // the services were started by another process: their references point at its proxy host, if it made one, else directly at replicas
    const host = data.proxyHost ? new ProxyHostClient(data.proxyHost) : undefined;
    const hosted = host?.alive() === true;
    const readOnly = ctx.readOnly === true;
    const sut = new LocalSut(spec, { ...ctx, runId: state.runId, workDir: data.workDir, shapeDependents: false, proxyHost: hosted && !readOnly }, opts);
    sut.kept = true;
    // a reader does not talk to the host, but `down` must still end it
    if (host && hosted) sut.proxyHost = host;
    if (host && hosted && !readOnly) sut.fleet.useHost(host);
    sut.startedAt = state.startedAt;
    sut.extraDirs = [...data.extraDirs];
    sut.extraEnv = { ...data.extraEnv, ...(ctx.env ?? {}) };
    sut.seq = data.seq;
    if (data.postgres) {
      sut.pg = PostgresCluster.fromState(data.postgres);
      // a reader shows it gone and `down` still removes the rest (replicas, proxy host, folders)
      if (!sut.pg.alive() && !readOnly) throw new TopasError('SUT_NOT_UP', `local run ${state.runId}: its PostgreSQL (pid ${data.postgres.pid}) is not running`);
    }
    const retiring: Array<[ServiceRuntime, Replica]> = [];
    for (const [name, s] of Object.entries(data.services)) {
      const svc = sut.svcs.get(name);
      if (!svc) continue;
      svc.declared = s.declared;
      svc.lastDeclared = s.lastDeclared;
      svc.config.version = s.version;
      svc.config.image = s.image;
      svc.config.env = { ...s.env };
      for (const p of s.replicas) {
        const alive = isAlive(p);
        const r: Replica = { ...p, retiring: p.retiring === true, ready: false, exit: alive ? undefined : { code: null, signal: null } };
        svc.replicas.push(r);
        if (r.retiring && alive) retiring.push([svc, r]);
      }
    }
    sut.adoptUnrecorded();
    // readiness as it is now, not as it was when the state was written
    await Promise.all([...sut.svcs.values()].flatMap((svc) => sut.live(svc).map((r) => sut.probeReady(svc, r))));
    if (readOnly) return sut;
    fs.mkdirSync(sut.logDir, { recursive: true });
    sut.persist();
    try {
      await sut.startServiceProxies();
      for (const svc of sut.svcs.values()) for (const r of svc.replicas) if (!r.exit && !r.retiring) await sut.startReplicaProxies(svc, r);
    } catch (e) {
      await sut.fleet.close();
      throw e;
    }
    // what a run that died midway was replacing or scaling away
    for (const [svc, r] of retiring) void svc.lock.run(() => sut.stopReplica(svc, r)).catch(() => undefined);
    // alive but not answering (a run died while it started): give it its readiness timeout, then replace it
    for (const svc of sut.svcs.values()) {
      for (const r of sut.live(svc).filter((x) => !x.ready)) {
        void svc.lock
          .run(async () => {
            if (r.exit || r.retiring || r.ready) return;
            try {
              await sut.waitReplicaReady(svc, r, sut.opsAbort.signal);
              sut.notifyEndpoints();
            } catch (e) {
              if (sut.closed) return;
              sut.ctx.log(`local: service ${svc.config.name} replica ${r.index} (pid ${r.pid}) did not become ready (${errorMessage(e)}); replacing it`);
              await sut.stopReplica(svc, r, 0);
            }
          })
          .catch(() => undefined);
      }
    }
    sut.startLoop();
    return sut;
  }

  /**
   * Replicas that run but that no state lists: a run attached to the kept SUT was
   * killed between spawning one and recording it. They carry the run id, their
   * service, slot and ports in their environment: take them on as they are.
   */
  private adoptUnrecorded(): void {
    const known = new Set([...this.svcs.values()].flatMap((svc) => svc.replicas.map((r) => r.pid)));
    for (const p of findRunProcesses(this.runId)) {
      const svc = this.svcs.get(p.env.TOPAS_SERVICE ?? '');
      if (known.has(p.pid) || !svc) continue;
      const ports: Record<string, number> = {};
      for (const name of Object.keys(svc.config.ports)) ports[name] = Number(p.env[portEnvName(name)]);
      const r: Replica = {
        index: Number(p.env.TOPAS_REPLICA) || 1,
        seq: ++this.seq,
        pid: p.pid,
        startTicks: p.startTicks,
        port: Number(p.env.PORT),
        ports,
        logFile: p.stdout ?? path.join(this.logDir, `${svc.config.name}-${p.env.TOPAS_REPLICA ?? 'x'}-${p.pid}.log`),
        version: p.env.TOPAS_VERSION,
        ready: false,
        retiring: false,
      };
      svc.replicas.push(r);
      this.ctx.log(`local: service ${svc.config.name} replica ${r.index} (pid ${r.pid}) runs but was not recorded; taking it on`);
    }
  }

  /** One readiness check of a replica found running (attach): sets `ready` to what it answers now. */
  private async probeReady(svc: ServiceRuntime, r: Replica): Promise<void> {
    try {
      await this.waitReplicaReady(svc, r, this.opsAbort.signal, PROBE_ONCE_MS);
    } catch {
      r.ready = false;
    }
  }

  // ---------------------------------------------------------------- shaping proxies

  /** The ShapeController of this run: `shape.*` calls land here. */
  shaping(): ShapeController {
    return this.shapes;
  }

  private replicaKey(svc: ServiceRuntime, r: Replica): string {
    return `${svc.config.name}#${r.seq}`;
  }

  /**
   * Before anything starts: the scenario proxy of each database and, when
   * dependents are shaped, the proxy each service's and database's references
   * resolve to (their targets appear as replicas come up).
   */
  private async startServiceProxies(): Promise<void> {
    const pgTarget = (): ProxyTarget | undefined => (this.pg ? { host: HOST, port: this.pg.state.port } : undefined);
    for (const db of this.dbs.keys()) await startDatabaseProxy(this.fleet, db, pgTarget);
    if (!this.shapeDependents) return;
    await startDependentProxies(this.fleet, {
      databases: [...this.dbs.keys()],
      databaseTarget: pgTarget,
      services: [...this.svcs.values()].map((svc) => svc.config),
      serviceTargets: (name, port) => this.pool(this.svc(name)).map((r) => ({ host: HOST, port: port === 'main' ? r.port : r.ports[port] })),
    });
  }

  /** The scenario proxies of one replica. */
  private async startReplicaProxies(svc: ServiceRuntime, r: Replica): Promise<void> {
    await startReplicaProxies(this.fleet, svc.config, this.replicaKey(svc, r), (port) => ({ host: HOST, port: port === 'main' ? r.port : r.ports[port] }));
  }

  /** A replica's base URL as scenarios reach it: through its proxy (direct when it has none). */
  private replicaUrl(svc: ServiceRuntime, r: Replica): string {
    const a = this.fleet.replicaAddress(this.replicaKey(svc, r), 'main');
    const scheme = svc.config.tls ? 'https' : 'http';
    return a ? proxyUrl(a, scheme) : `${scheme}://${HOST}:${r.port}`;
  }

  private replicaPort(svc: ServiceRuntime, r: Replica, name: string): string {
    const a = this.fleet.replicaAddress(this.replicaKey(svc, r), name);
    return a ? `${a.host}:${a.port}` : `${HOST}:${r.ports[name]}`;
  }

  /** Connection info of a database as scenarios reach it (through its proxy). */
  private dbScenarioInfo(db: DatabaseSpec): { host: string; port: number; user: string; password: string; dbname: string } {
    const info = this.dbInfo(db);
    const a = this.fleet.replicaAddress(databaseProxyKey(db.name), 'db');
    return a ? { ...info, host: a.host, port: a.port } : info;
  }

  // ---------------------------------------------------------------- start

  private async startNode(name: string, signal: AbortSignal): Promise<void> {
    const db = this.dbs.get(name);
    if (db) {
      const pg = await this.ensurePostgres(signal);
      await pg.createDatabase(db, this.spec);
      this.ctx.log(`local: database ${name} ready on ${HOST}:${pg.state.port}`);
      return;
    }
    const svc = this.svc(name);
    await svc.lock.run(() => this.scaleTo(svc, svc.declared, signal));
    this.ctx.log(`local: service ${name} ready (${svc.declared} replica(s))`);
  }

  private ensurePostgres(signal: AbortSignal): Promise<PostgresCluster> {
    if (!this.pgStart) {
      // as root, postgres runs as its own user: its files go where it can reach them
      const { dir: base, outside } = postgresBaseDir(path.join(this.workDir, 'postgres'), this.workDir, this.runId);
      if (outside) {
        this.extraDirs.push(base);
        // recorded at once: a run killed while initdb runs must still name it for the sweep
        this.persist();
      }
      const timeoutMs = Math.max(...this.spec.databases.map((d) => d.ready.timeoutMs), 30_000);
      this.pgStart = PostgresCluster.start(base, {
        ownedRoot: this.extraDirs.includes(base) ? base : this.workDir,
        timeoutMs,
        signal,
        onStarted: (s) => {
          this.pg = PostgresCluster.fromState(s);
          this.persist();
        },
      }).then((pg) => {
        this.pg = pg;
        this.persist();
        return pg;
      });
    }
    return this.pgStart;
  }

  // ---------------------------------------------------------------- replicas

  private svc(name: string): ServiceRuntime {
    const svc = this.svcs.get(name);
    if (!svc) throw sutErrors.unknownTarget(this.spec.name, name, [...this.svcs.keys(), ...this.dbs.keys()]);
    return svc;
  }

  private live(svc: ServiceRuntime): Replica[] {
    return svc.replicas.filter((r) => !r.retiring && !r.exit).sort((a, b) => a.index - b.index);
  }

  private serving(svc: ServiceRuntime): Replica[] {
    return this.live(svc).filter((r) => r.ready);
  }

  private pool(svc: ServiceRuntime): Replica[] {
    return servingPool(this.serving(svc), this.live(svc));
  }

  private dbInfo(db: DatabaseSpec): { host: string; port: number; user: string; password: string; dbname: string } {
    if (!this.pg) throw new TopasError('SUT_NOT_UP', `database ${db.name} is not started`);
    return { host: HOST, port: this.pg.state.port, ...db.credentials };
  }

  private dbUrl(db: DatabaseSpec, i = this.dbInfo(db)): string {
    return postgresUrl(i, i.host, i.port);
  }

  /** Addresses as a local process sees them: the dependents' proxy when shaped, else 127.0.0.1 and a replica's port. */
  private readonly view: AddressView = {
    service: (name, port): Address | undefined => {
      const via = this.shapeDependents ? this.fleet.dependentAddress(name, port) : undefined;
      if (via) return via;
      const r = this.pool(this.svc(name))[0];
      const p = r && (port === 'main' ? r.port : r.ports[port]);
      return p === undefined ? undefined : { host: HOST, port: p };
    },
    database: (name): Address | undefined => {
      const via = this.shapeDependents ? this.fleet.dependentAddress(name, 'db') : undefined;
      return via ?? (this.pg ? { host: HOST, port: this.pg.state.port } : undefined);
    },
  };

  private baseEnv(): Record<string, string> {
    const env: Record<string, string> = {};
    for (const [k, v] of Object.entries(process.env)) {
      // the test runner's marker would make a node child think it is a test file
      if (v !== undefined && k !== 'NODE_TEST_CONTEXT') env[k] = v;
    }
    return env;
  }

  private replicaEnv(svc: ServiceRuntime, index: number, port: number | undefined, ports: Record<string, number>): Record<string, string> {
    const env = this.baseEnv();
    for (const [k, v] of Object.entries(svc.config.env)) env[k] = resolveValue(this.spec, this.view, v);
    Object.assign(env, this.extraEnv);
    if (port !== undefined) env.PORT = String(port);
    for (const [name, p] of Object.entries(ports)) env[portEnvName(name)] = String(p);
    env.TOPAS_SERVICE = svc.config.name;
    env.TOPAS_REPLICA = String(index);
    env.TOPAS_RUN_ID = this.runId;
    if (svc.config.version !== undefined) env.TOPAS_VERSION = svc.config.version;
    else delete env.TOPAS_VERSION;
    return env;
  }

  private serviceCwd(svc: ServiceRuntime): string {
    return path.resolve(this.spec.dir, svc.config.cwd ?? '.');
  }

  private argv(svc: ServiceRuntime): string[] {
    const argv = (svc.config.command ?? []).map((a) => resolveValue(this.spec, this.view, a));
    // same node as topas: works without node on PATH and matches the tested version
    if (argv[0] === 'node') argv[0] = nodeExecutable();
    return argv;
  }

  private async spawnReplica(svc: ServiceRuntime, index: number): Promise<Replica> {
    if (this.closed) throw sutErrors.disposed('local', this.runId);
    const port = await freePort();
    const ports: Record<string, number> = {};
    for (const name of Object.keys(svc.config.ports)) ports[name] = await freePort();
    const env = this.replicaEnv(svc, index, port, ports);
    const argv = this.argv(svc);
    const seq = ++this.seq;
    const logFile = path.join(this.logDir, `${svc.config.name}-${index}-${seq}.log`);
    const fd = fs.openSync(logFile, 'a');
    let child: ChildProcess;
    try {
      // detached: own process group (signals reach grandchildren) that survives `topas up` exiting;
      // output to a file, not a pipe, for the same reason
      child = spawn(argv[0], argv.slice(1), { cwd: this.serviceCwd(svc), env, detached: true, stdio: ['ignore', fd, fd] });
    } finally {
      fs.closeSync(fd);
    }
    child.unref();
    const label = `service ${svc.config.name} replica ${index}`;
    const spawned = new Promise<void>((resolve, reject) => {
      child.once('spawn', resolve);
      child.once('error', (e: NodeJS.ErrnoException) =>
        reject(
          new TopasError('SUT_START_FAILED', `${label}: cannot start \`${svc.config.command!.join(' ')}\` in ${this.serviceCwd(svc)}: ${e.message}`, {
            hint: commandHint(this.spec, svc.config, this.serviceCwd(svc), e.code),
          }),
        ),
      );
    });
    // recorded the moment it has a pid, before anything is awaited: a run killed right
    // after this still leaves it in the registry and the kept state, for `down` to find
    const r: Replica | undefined =
      child.pid === undefined
        ? undefined
        : {
            index,
            seq,
            pid: child.pid,
            startTicks: processStartTicks(child.pid),
            port,
            ports,
            logFile,
            version: svc.config.version,
            child,
            ready: false,
            retiring: false,
          };
    if (r) {
      svc.replicas.push(r);
      this.persist();
    }
    try {
      await spawned;
    } catch (e) {
      if (r) {
        svc.replicas = svc.replicas.filter((x) => x !== r);
        this.persist();
      }
      throw e;
    }
    if (!r) throw new TopasError('SUT_START_FAILED', `${label}: cannot start \`${svc.config.command!.join(' ')}\`: no pid`);
    child.on('exit', (code, sig) => {
      r.exit = { code, signal: sig };
      r.ready = false;
      if (!r.retiring && !this.closed) {
        this.ctx.log(`local: ${label} (pid ${r.pid}) ${describeExit(r.exit)}`);
        this.notifyEndpoints();
      }
    });
    if (this.closed) {
      await this.stopReplica(svc, r, 0);
      throw sutErrors.disposed('local', this.runId);
    }
    try {
      await this.startReplicaProxies(svc, r);
    } catch (e) {
      await this.stopReplica(svc, r, 0);
      throw e;
    }
    return r;
  }

  private replicaGone(r: Replica): boolean {
    if (r.exit) return true;
    if (!r.child && !isAlive(r)) {
      r.exit = { code: null, signal: null };
      r.ready = false;
      return true;
    }
    return false;
  }

  /** Until the replica is ready; with `onceMs`, one attempt that may take that long. */
  private async waitReplicaReady(svc: ServiceRuntime, r: Replica, signal: AbortSignal, onceMs?: number): Promise<void> {
    const ready = svc.config.ready;
    const opts: ProbeOptions = {
      // a deadline already passed after the first attempt: poll makes exactly one
      timeoutMs: onceMs !== undefined ? 1 : ready.timeoutMs,
      signal,
      label: `service ${svc.config.name} replica ${r.index}`,
      liveness: () => (this.replicaGone(r) ? describeExit(r.exit) : undefined),
    };
    try {
      await this.probeReplica(svc, r, opts, onceMs);
    } catch (e) {
      // the cause, the replica's last log lines and what to check in topas.yaml
      throw replicaStartFailure(e, { spec: this.spec, service: svc.config, replica: r.index, backend: 'local', exited: r.exit ? describeExit(r.exit) : undefined, logs: readTail(r.logFile) });
    }
    r.ready = true;
  }

  private async probeReplica(svc: ServiceRuntime, r: Replica, opts: ProbeOptions, onceMs?: number): Promise<void> {
    const ready = svc.config.ready;
    let port = r.port;
    let tls = svc.config.tls === true;
    if (ready.kind === 'http' || ready.kind === 'tcp') {
      // a readiness port is written as the declared (container) port: map it to this replica's local one
      const named = Object.entries(svc.config.ports).find(([, p]) => p === ready.port && ready.port !== svc.config.port);
      if (named) {
        port = r.ports[named[0]];
        tls = svc.config.tlsPorts?.includes(named[0]) ?? false;
      }
    }
    switch (ready.kind) {
      case 'http':
        await waitForHttp(`${tls ? 'https' : 'http'}://${HOST}:${port}`, { ...opts, path: ready.path, ...(onceMs !== undefined ? { attemptTimeoutMs: onceMs } : {}) });
        break;
      case 'tcp':
        await waitForTcp(HOST, port, onceMs !== undefined ? { ...opts, timeoutMs: onceMs } : opts);
        break;
      case 'log':
        await waitForLog(() => readTail(r.logFile), ready.pattern, opts);
        break;
      case 'none': {
        const gone = opts.liveness!();
        if (gone) throw new TopasError('SUT_START_FAILED', `${opts.label}: ${gone}`);
        break;
      }
    }
  }

  /** Spawn a replica into a slot and wait until it is ready; on failure it is stopped and removed. */
  private async startReplicaReady(svc: ServiceRuntime, index: number, signal: AbortSignal): Promise<Replica> {
    const r = await this.spawnReplica(svc, index);
    try {
      await this.waitReplicaReady(svc, r, signal);
    } catch (e) {
      await this.stopReplica(svc, r, 0);
      throw e;
    }
    this.notifyEndpoints();
    return r;
  }

  /** Out of the endpoint set, SIGTERM the group, SIGKILL after the grace, forget it. */
  private async stopReplica(svc: ServiceRuntime, r: Replica, graceMs = this.graceMs): Promise<void> {
    r.retiring = true;
    r.ready = false;
    await stopGroup(r, graceMs);
    await this.fleet.dropReplica(this.replicaKey(svc, r));
    svc.replicas = svc.replicas.filter((x) => x !== r);
    r.child?.removeAllListeners('exit');
    this.persist();
  }

  private missingSlots(svc: ServiceRuntime, n: number): number[] {
    const taken = new Set(this.live(svc).map((r) => r.index));
    const out: number[] = [];
    for (let i = 1; out.length + taken.size < n && i <= n + taken.size; i++) if (!taken.has(i)) out.push(i);
    return out;
  }

  /** Called under the service lock: make the live replica count equal n. */
  private async scaleTo(svc: ServiceRuntime, n: number, signal: AbortSignal): Promise<void> {
    svc.declared = n;
    if (n > 0) svc.lastDeclared = n;
    // what is declared is recorded before the work: a run that dies midway leaves the intent, and the next one finishes it
    this.persist();
    await this.removeDead(svc);
    const live = this.live(svc);
    if (live.length > n) {
      const extra = [...live].sort((a, b) => b.index - a.index).slice(0, live.length - n);
      for (const r of extra) {
        r.retiring = true;
        r.ready = false;
      }
      this.notifyEndpoints();
      await Promise.all(extra.map((r) => this.stopReplica(svc, r)));
    } else if (live.length < n) {
      const results = await Promise.allSettled(this.missingSlots(svc, n).map((i) => this.startReplicaReady(svc, i, signal)));
      const failed = results.find((x): x is PromiseRejectedResult => x.status === 'rejected');
      if (failed) throw failed.reason;
    }
    this.persist();
  }

  private async removeDead(svc: ServiceRuntime): Promise<void> {
    const dead = svc.replicas.filter((r) => !r.retiring && this.replicaGone(r));
    // the leader is gone; SIGKILL what may be left of its group
    await Promise.all(dead.map((r) => this.stopReplica(svc, r, 0)));
  }

  /** Called under the service lock: replace every live replica one by one, the new one ready before the old one goes. */
  private async roll(svc: ServiceRuntime, signal: AbortSignal): Promise<void> {
    for (const old of this.live(svc)) {
      if (this.replicaGone(old)) continue;
      await this.startReplicaReady(svc, old.index, signal);
      old.retiring = true;
      old.ready = false;
      this.notifyEndpoints();
      // requests already routed to the old one finish before it is asked to stop
      await sleep(this.drainMs, signal);
      await this.stopReplica(svc, old);
    }
    await this.scaleTo(svc, svc.declared, signal);
  }

  // ---------------------------------------------------------------- self-healing

  private startLoop(): void {
    this.loop = setInterval(() => this.reconcile(), this.reconcileIntervalMs);
    this.loop.unref();
  }

  private reconcile(): void {
    if (this.closed || this.detached) return;
    const now = Date.now();
    for (const svc of this.svcs.values()) {
      if (svc.lock.busy > 0 || now < svc.healAfter) continue;
      const dead = svc.replicas.some((r) => !r.retiring && this.replicaGone(r));
      if (!dead && this.live(svc).length >= svc.declared) continue;
      void svc.lock
        .run(async () => {
          const before = this.live(svc).length;
          await this.scaleTo(svc, svc.declared, this.opsAbort.signal);
          if (before < svc.declared) this.ctx.log(`local: service ${svc.config.name} healed to ${svc.declared} replica(s)`);
          svc.failures = 0;
          svc.lastError = undefined;
        })
        .catch((e: unknown) => {
          if (this.closed) return;
          svc.failures++;
          svc.lastError = errorMessage(e);
          const backoffMs = healBackoffMs(svc.failures);
          svc.healAfter = Date.now() + backoffMs;
          this.ctx.log(`local: replacing a replica of ${svc.config.name} failed (retry in ${formatDurationMs(backoffMs)}): ${svc.lastError}`);
        });
    }
  }

  // ---------------------------------------------------------------- Sut

  private ensureOpen(): void {
    if (this.closed) throw sutErrors.disposed('local', this.runId);
  }

  async services(): Promise<ServiceStatus[]> {
    const out: ServiceStatus[] = [];
    for (const svc of this.svcs.values()) {
      const live = this.live(svc);
      const serving = this.serving(svc);
      const extra: Record<string, string[]> = {};
      for (const name of Object.keys(svc.config.ports)) extra[name] = live.map((r) => `${HOST}:${r.ports[name]}`);
      out.push({
        name: svc.config.name,
        kind: 'service',
        replicas: live.length,
        ready: serving.length >= svc.declared && live.length === serving.length,
        version: svc.config.version,
        image: svc.config.image,
        endpoints: live.map((r) => `${svc.config.tls ? 'https' : 'http'}://${HOST}:${r.port}`),
        ...(Object.keys(extra).length ? { extraEndpoints: extra } : {}),
      });
    }
    for (const db of this.dbs.values()) {
      const up = this.pg?.alive() ?? false;
      out.push({ name: db.name, kind: 'database', replicas: up ? 1 : 0, ready: up, image: db.image, endpoints: up ? [this.dbUrl(db)] : [] });
    }
    return out;
  }

  endpoint(name: string, port?: string): string {
    const db = this.dbs.get(name);
    if (db) return this.dbUrl(db, this.dbScenarioInfo(db));
    const svc = this.svc(name);
    if (port !== undefined && svc.config.ports[port] === undefined) throw sutErrors.unknownPort(name, port, Object.keys(svc.config.ports));
    const r = svc.rr.pick(this.pool(svc));
    if (!r) throw sutErrors.noRunningReplica(name);
    if (port === undefined) return this.replicaUrl(svc, r);
    return svc.config.tlsPorts?.includes(port) ? `https://${this.replicaPort(svc, r, port)}` : this.replicaPort(svc, r, port);
  }

  endpointMap(): EndpointMap {
    const map: EndpointMap = {};
    for (const svc of this.svcs.values()) {
      map[svc.config.name] = serviceEntry(this.pool(svc), Object.keys(svc.config.ports), (r) => this.replicaUrl(svc, r), (r, name) => this.replicaPort(svc, r, name), svc.config.tlsPorts);
    }
    for (const db of this.dbs.values()) if (this.pg) map[db.name] = databaseEntry(this.dbScenarioInfo(db));
    return map;
  }

  /**
   * Called with the new map whenever the set of serving replicas changes (rollout,
   * scale, kill, heal), so worker threads can be told at once. Returns unsubscribe.
   * Local-only for now; not part of the Sut interface.
   */
  onEndpointsChange(listener: (map: EndpointMap) => void): () => void {
    this.endpointListeners.add(listener);
    return () => this.endpointListeners.delete(listener);
  }

  private notifyEndpoints(): void {
    // a proxy host learns the new replicas at once (its timer would, within 100 ms)
    void this.fleet.syncHost();
    if (this.endpointListeners.size === 0) return;
    const map = this.endpointMap();
    for (const l of this.endpointListeners) {
      try {
        l(map);
      } catch {
        /* a listener's failure is its own */
      }
    }
  }

  async applyService(name: string, change: ApplyServiceChange): Promise<void> {
    this.ensureOpen();
    const svc = this.svc(name);
    await svc.lock.run(async () => {
      let changed = false;
      if (change.version !== undefined && change.version !== svc.config.version) {
        svc.config.version = change.version;
        changed = true;
      }
      if (change.image !== undefined && change.image !== svc.config.image) {
        svc.config.image = change.image;
        changed = true;
      }
      if (change.env !== undefined) {
        for (const [k, v] of Object.entries(change.env)) {
          if (svc.config.env[k] !== v) {
            svc.config.env[k] = v;
            changed = true;
          }
        }
      }
      this.persist();
      if (changed) {
        this.ctx.log(`local: rolling out ${name}${change.version ? ` version ${change.version}` : ''}`);
        await this.roll(svc, this.opsAbort.signal);
      }
      if (change.replicas !== undefined) await this.scaleTo(svc, change.replicas, this.opsAbort.signal);
    });
  }

  async waitReady(name: string, timeoutMs = DEFAULT_WAIT_READY_MS): Promise<void> {
    this.ensureOpen();
    if (this.dbs.has(name)) {
      if (!this.pg?.alive()) throw new TopasError('SUT_NOT_UP', `database ${name}: PostgreSQL is not running`);
      return;
    }
    const svc = this.svc(name);
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      // a replica that died is not ready even before the loop notices it
      for (const r of svc.replicas) this.replicaGone(r);
      const serving = this.serving(svc).length;
      if (serving >= svc.declared && this.live(svc).length === serving) return;
      if (Date.now() >= deadline) {
        throw new TopasError(
          'READINESS_TIMEOUT',
          `service ${name}: ${serving} of ${svc.declared} replica(s) ready after ${formatDurationMs(timeoutMs)}${svc.lastError ? ` (last error: ${svc.lastError})` : ''}`,
        );
      }
      this.ensureOpen();
      await sleep(50, this.opsAbort.signal);
    }
  }

  async scale(name: string, replicas: number): Promise<void> {
    this.ensureOpen();
    if (!Number.isInteger(replicas) || replicas < 0) throw sutErrors.badReplicaCount('scale', name, replicas);
    const svc = this.svc(name);
    await svc.lock.run(() => this.scaleTo(svc, replicas, this.opsAbort.signal));
  }

  async stop(name: string): Promise<void> {
    this.ensureOpen();
    const svc = this.svc(name);
    await svc.lock.run(async () => {
      const keep = svc.declared;
      await this.scaleTo(svc, 0, this.opsAbort.signal);
      if (keep > 0) svc.lastDeclared = keep;
    });
  }

  async start(name: string): Promise<void> {
    this.ensureOpen();
    const svc = this.svc(name);
    await svc.lock.run(() => this.scaleTo(svc, Math.max(svc.declared, svc.lastDeclared, 1), this.opsAbort.signal));
  }

  async restart(name: string): Promise<void> {
    this.ensureOpen();
    const svc = this.svc(name);
    await svc.lock.run(() => this.roll(svc, this.opsAbort.signal));
  }

  async kill(name: string, opts: KillOptions = {}): Promise<void> {
    this.ensureOpen();
    const svc = this.svc(name);
    const signal = opts.signal ?? 'SIGKILL';
    const live = this.live(svc);
    let r: Replica | undefined;
    if (opts.replica !== undefined) {
      r = live.find((x) => x.index === opts.replica);
      if (!r) throw sutErrors.noRunningReplica(name, opts.replica, live.map((x) => x.index));
    } else {
      r = live[Math.floor(Math.random() * live.length)];
      if (!r) throw sutErrors.noRunningReplica(name);
    }
    const wasReady = r.ready;
    r.ready = false;
    this.notifyEndpoints();
    this.ctx.log(`local: ${signal} to service ${name} replica ${r.index} (pid ${r.pid})`);
    // the whole group, as a container's processes die together
    signalGroup(r.pid, signal);
    const gone = await waitForExit(r, signal === 'SIGKILL' ? 5000 : 2000);
    if (gone) {
      r.exit ??= { code: null, signal };
    } else if (!this.replicaGone(r)) {
      // a signal the process handles (SIGHUP, SIGUSR1): it keeps serving
      r.ready = wasReady;
      this.notifyEndpoints();
    }
  }

  async logs(name: string, opts: { tail?: number } = {}): Promise<string> {
    const tail = opts.tail ?? DEFAULT_LOG_TAIL;
    const db = this.dbs.get(name);
    if (db) return this.pg ? this.pg.logs(tail) : '';
    const svc = this.svc(name);
    const replicas = [...svc.replicas].sort((a, b) => a.index - b.index || a.seq - b.seq);
    return mergeReplicaLogs(name, replicas.map((r) => ({ index: r.index, text: readTail(r.logFile) })), tail);
  }

  /** Local equivalent of `docker exec`: argv in the service's cwd with the env of its first replica. */
  async exec(name: string, argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
    this.ensureOpen();
    if (argv.length === 0) throw sutErrors.emptyExec(name);
    let cwd = this.spec.dir;
    let env: Record<string, string>;
    const db = this.dbs.get(name);
    if (db) {
      const i = this.dbInfo(db);
      env = { ...this.baseEnv(), PGHOST: i.host, PGPORT: String(i.port), PGUSER: i.user, PGPASSWORD: i.password, PGDATABASE: i.dbname };
    } else {
      const svc = this.svc(name);
      const r = this.live(svc)[0];
      cwd = this.serviceCwd(svc);
      env = this.replicaEnv(svc, r?.index ?? 1, r?.port, r?.ports ?? {});
    }
    return new Promise((resolve) => {
      const child = spawn(argv[0] === 'node' ? nodeExecutable() : argv[0], argv.slice(1), { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
      child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
      const timer = setTimeout(() => child.kill('SIGKILL'), EXEC_TIMEOUT_MS);
      child.on('error', (e) => {
        clearTimeout(timer);
        resolve({ code: 127, stdout, stderr: stderr + `${argv[0]}: ${e.message}\n` });
      });
      child.on('close', (code, sig) => {
        clearTimeout(timer);
        resolve({ code: code ?? (sig ? 128 + (os.constants.signals[sig] ?? 0) : 1), stdout, stderr });
      });
    });
  }

  state(): SutState {
    const services: LocalStateData['services'] = {};
    for (const svc of this.svcs.values()) {
      services[svc.config.name] = {
        declared: svc.declared,
        lastDeclared: svc.lastDeclared,
        version: svc.config.version,
        image: svc.config.image,
        env: { ...svc.config.env },
        // retiring ones too (flagged): an attach after a crash finishes stopping them
        replicas: svc.replicas.filter((r) => !r.exit).sort((a, b) => a.index - b.index || a.seq - b.seq).map((r) => ({
          index: r.index,
          seq: r.seq,
          pid: r.pid,
          startTicks: r.startTicks,
          port: r.port,
          ports: { ...r.ports },
          logFile: r.logFile,
          version: r.version,
          ...(r.retiring ? { retiring: true } : {}),
        })),
      };
    }
    const data: LocalStateData = {
      workDir: this.workDir,
      extraDirs: [...this.extraDirs],
      postgres: this.pg?.state,
      extraEnv: { ...this.extraEnv },
      seq: this.seq,
      services,
      proxyHost: this.proxyHost?.info,
    };
    return { backend: 'local', runId: this.runId, app: this.spec.name, specFile: this.spec.file, startedAt: this.startedAt, data };
  }

  /**
   * Record what runs: the run registry (for sweeps) and, for an attached run of
   * a kept SUT, its state (StartContext.onState). Synchronous, so a replica is
   * on disk before the next await.
   */
  private persist(): void {
    if (this.disposing || this.readOnly) return;
    const rec: RunRecord = {
      runId: this.runId,
      app: this.spec.name,
      specFile: this.spec.file,
      owner: currentOwner(),
      // a kept SUT stays kept while a run is attached to it: a sweep must not take it when that run dies
      detached: this.detached || this.kept,
      workDir: this.workDir,
      extraDirs: [...this.extraDirs],
      processes: [...this.svcs.values()].flatMap((s) => s.replicas.map((r) => ({ pid: r.pid, startTicks: r.startTicks }))),
      postgres: this.pg ? { dataDir: this.pg.state.dataDir, pid: this.pg.state.pid, startTicks: this.pg.state.startTicks } : undefined,
      proxyHost: this.proxyHost ? { pid: this.proxyHost.info.pid, startTicks: this.proxyHost.info.startTicks } : undefined,
    };
    try {
      writeRunRecord(rec);
    } catch (e) {
      this.ctx.log(`local: cannot write run registry: ${errorMessage(e)}`);
    }
    if (this.ctx.onState) {
      try {
        this.ctx.onState(this.state());
      } catch (e) {
        this.ctx.log(`local: cannot record the state of the kept SUT: ${errorMessage(e)}`);
      }
    }
  }

  async detach(): Promise<void> {
    if (this.closed || this.detached) return;
    if (this.loop) clearInterval(this.loop);
    // let operations in flight finish so the persisted state is complete
    await Promise.all([...this.svcs.values()].map((s) => s.lock.run(async () => undefined)));
    this.detached = true;
    for (const svc of this.svcs.values()) for (const r of svc.replicas) r.child?.removeAllListeners('exit');
    this.endpointListeners.clear();
    // scenario proxies end with this process; dependents' proxies, if any, live on in the proxy host
    await this.fleet.close();
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
    if (this.loop) clearInterval(this.loop);
    this.opsAbort.abort();
    this.endpointListeners.clear();
    await this.fleet.close();
    // starts and rollouts in flight see the abort and settle before we kill what they made
    await Promise.all([...this.svcs.values()].map((s) => s.lock.run(async () => undefined)));
    await this.pgStart?.catch(() => undefined);
    const all = [...this.svcs.values()].flatMap((s) => s.replicas);
    // and what the registry lists that this process does not know (a run attached to a kept SUT died before its state was written)
    const known = new Set(all.map((r) => r.pid));
    const recorded = readRunRecords().find((rec) => rec.runId === this.runId);
    const strays = (recorded?.processes ?? []).filter((p) => !known.has(p.pid) && isAlive(p));
    await Promise.all([...all, ...strays].map((r) => stopGroup(r, Math.min(this.graceMs, 3000))));
    for (const r of all) r.child?.removeAllListeners('exit');
    for (const s of this.svcs.values()) s.replicas = [];
    // only a live one: the group of a PostgreSQL that died long ago (attach) may be someone else's by now
    if (this.pg && (this.pgStart || this.pg.alive())) await this.pg.stop();
    await this.proxyHost?.exit();
    for (const d of [this.workDir, ...this.extraDirs]) fs.rmSync(d, { recursive: true, force: true });
    removeRunRecord(this.runId);
  }
}
