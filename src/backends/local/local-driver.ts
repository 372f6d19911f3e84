import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { nodeExecutable } from '../../sea/node-executable';
import { TopasError } from '../../errors';
import type { AppSpec, DatabaseSpec, ServiceSpec } from '../../spec/app-spec';
import type { StartContext } from '../backend';
import { commandHint, replicaStartFailure } from '../start-errors';
import { PostgresCluster, postgresBaseDir, type PostgresClusterState } from './postgres-cluster';
import { findRunProcesses, freePort, isAlive, processStartTicks, readTail, signalGroup, stopGroup, waitForExit, type ProcessRef } from './processes';
import { currentOwner, readRunRecords, removeRunRecord, writeRunRecord } from './run-registry';
import { probeReplica } from '../../sut/readiness';
import { sutErrors } from '../../sut/sut-errors';
import type { Adopted, DatabaseHandle, DriverHost, ExecResult, ExecTarget, Fault, ReplicaHandle, ReplicaRequest, RunSnapshot, SavedReplicas, SutDriver } from '../../sut/driver';

const HOST = '127.0.0.1';
const EXEC_TIMEOUT_MS = 120_000;

/** The local driver's fields of `SutState.data` (the core adds `services`, `databases`, `proxyHost`). */
export interface LocalStateData {
  workDir: string;
  /** folders outside workDir to remove on dispose (a PostgreSQL data dir in tmp) */
  extraDirs: string[];
  postgres?: PostgresClusterState;
  extraEnv: Record<string, string>;
  seq: number;
  proxyHost?: { pid: number; startTicks?: number };
  services: Record<string, { declared: number; lastDeclared: number; version?: string; image?: string; env: Record<string, string>; replicas: Array<SavedProcess & { index: number; retiring?: boolean }> }>;
}

/** What a replica persists for attach. */
interface SavedProcess {
  seq: number;
  pid: number;
  startTicks?: number;
  port: number;
  ports: Record<string, number>;
  logFile: string;
  version?: string;
}

/** One running process group of a replica. */
interface Proc extends ProcessRef {
  logFile: string;
  /** absent after attach (then liveness is checked by pid) */
  child?: ChildProcess;
  exit?: { code: number | null; signal: NodeJS.Signals | null };
}

export interface LocalDriverOptions {
  /** SIGTERM -> SIGKILL grace when stopping a replica; default 5s */
  graceMs?: number;
  drainMs?: number;
  reconcileIntervalMs?: number;
}

function portEnvName(name: string): string {
  return `PORT_${name.toUpperCase().replace(/[^A-Z0-9]/g, '_')}`;
}

function describeExit(exit: Proc['exit']): string {
  if (!exit) return 'exited';
  if (exit.signal) return `killed by ${exit.signal}`;
  return exit.code === null ? 'exited' : `exit code ${exit.code}`;
}

/**
 * The local driver: a replica is a detached process group on free ports, the
 * databases live in one embedded PostgreSQL cluster per run.
 */
export class LocalDriver implements SutDriver {
  readonly name = 'local';
  readonly capabilities = { faults: ['kill', 'stop', 'pause'] as Fault['kind'][] };
  readonly tuning: { drainMs: number; reconcileIntervalMs: number };
  private host!: DriverHost;
  private readonly procs = new Map<string, Proc>();
  private readonly logDir: string;
  private pg?: PostgresCluster;
  private pgStart?: Promise<PostgresCluster>;
  private readonly graceMs: number;

  constructor(
    private readonly spec: AppSpec,
    private readonly ctx: StartContext,
    opts: LocalDriverOptions,
    private readonly workDir = ctx.workDir,
    private extraDirs: string[] = [],
    private readonly extraEnv: Record<string, string> = { ...(ctx.env ?? {}) },
    private seq = 0,
    pg?: PostgresClusterState,
  ) {
    this.logDir = path.join(this.workDir, 'logs');
    this.graceMs = opts.graceMs ?? 5000;
    this.tuning = { drainMs: opts.drainMs ?? 300, reconcileIntervalMs: opts.reconcileIntervalMs ?? 200 };
    if (pg) this.pg = PostgresCluster.fromState(pg);
  }

  get postgres(): PostgresCluster | undefined {
    return this.pg;
  }

  bind(host: DriverHost): void {
    this.host = host;
  }

  async prepare(): Promise<{ dependents: boolean }> {
    fs.mkdirSync(this.logDir, { recursive: true });
    return { dependents: true };
  }

  // ---------------------------------------------------------------- replicas

  private proc(h: ReplicaHandle): Proc {
    return this.procs.get(h.key)!;
  }

  private cwd(svc: ServiceSpec): string {
    return path.resolve(this.spec.dir, svc.cwd ?? '.');
  }

  private baseEnv(): Record<string, string> {
    const env: Record<string, string> = {};
    for (const [k, v] of Object.entries(this.ctx.processEnv)) {
      // the test runner's marker would make a node child think it is a test file
      if (v !== undefined && k !== 'NODE_TEST_CONTEXT') env[k] = v;
    }
    return env;
  }

  private replicaEnv(svc: ServiceSpec, index: number, port: number | undefined, ports: Record<string, number>): Record<string, string> {
    const env = this.baseEnv();
    for (const [k, v] of Object.entries(svc.env)) env[k] = this.host.resolve(v);
    Object.assign(env, this.extraEnv);
    if (port !== undefined) env.PORT = String(port);
    for (const [name, p] of Object.entries(ports)) env[portEnvName(name)] = String(p);
    env.TOPAS_SERVICE = svc.name;
    env.TOPAS_REPLICA = String(index);
    env.TOPAS_RUN_ID = this.ctx.runId;
    if (svc.version !== undefined) env.TOPAS_VERSION = svc.version;
    else delete env.TOPAS_VERSION;
    return env;
  }

  private handle(svc: string, index: number, p: SavedProcess, image?: string): ReplicaHandle {
    const a = (port: number): { host: string; port: number } => ({ host: HOST, port });
    const ports = Object.fromEntries(Object.entries(p.ports).map(([n, x]) => [n, a(x)]));
    const addr = { main: a(p.port), ports };
    return { key: `${svc}#${p.seq}`, service: svc, index, version: p.version, image, revision: p.version, host: addr, inside: addr, saved: { ...p } };
  }

  async startReplica(req: ReplicaRequest): Promise<ReplicaHandle> {
    const svc = req.service;
    const port = await freePort();
    const ports: Record<string, number> = {};
    for (const name of Object.keys(svc.ports)) ports[name] = await freePort();
    const env = this.replicaEnv(svc, req.index, port, ports);
    const argv = (svc.command ?? []).map((a) => this.host.resolve(a));
    // same node as topas: works without node on PATH and matches the tested version
    if (argv[0] === 'node') argv[0] = nodeExecutable();
    const seq = ++this.seq;
    const logFile = path.join(this.logDir, `${svc.name}-${req.index}-${seq}.log`);
    const fd = fs.openSync(logFile, 'a');
    let child: ChildProcess;
    try {
      // detached: own process group (signals reach grandchildren) that survives `topas up` exiting;
      // output to a file, not a pipe, for the same reason
      child = spawn(argv[0], argv.slice(1), { cwd: this.cwd(svc), env, detached: true, stdio: ['ignore', fd, fd] });
    } finally {
      fs.closeSync(fd);
    }
    child.unref();
    const label = `service ${svc.name} replica ${req.index}`;
    const spawned = new Promise<void>((resolve, reject) => {
      child.once('spawn', resolve);
      child.once('error', (e: NodeJS.ErrnoException) =>
        reject(new TopasError('SUT_START_FAILED', `${label}: cannot start \`${svc.command!.join(' ')}\` in ${this.cwd(svc)}: ${e.message}`, { hint: commandHint(this.spec, svc, this.cwd(svc), e.code) })),
      );
    });
    if (child.pid === undefined) {
      await spawned;
      throw new TopasError('SUT_START_FAILED', `${label}: cannot start \`${svc.command!.join(' ')}\`: no pid`);
    }
    const proc: Proc = { pid: child.pid, startTicks: processStartTicks(child.pid), logFile, child };
    const h = this.handle(svc.name, req.index, { seq, pid: proc.pid, startTicks: proc.startTicks, port, ports, logFile, version: svc.version }, svc.image);
    this.procs.set(h.key, proc);
    // recorded the moment it has a pid: a run killed right after this still leaves it for `down`
    req.created(h);
    try {
      await spawned;
    } catch (e) {
      this.procs.delete(h.key);
      throw e;
    }
    child.on('exit', (code, sig) => {
      proc.exit = { code, signal: sig };
      this.host.replicaGone(h, `(pid ${proc.pid}) ${describeExit(proc.exit)}`);
    });
    return h;
  }

  async waitReplicaReady(h: ReplicaHandle, svc: ServiceSpec, opts: { signal: AbortSignal; onceMs?: number }): Promise<void> {
    const proc = this.proc(h);
    const liveness = (): string | undefined => (this.gone(proc) ? describeExit(proc.exit) : undefined);
    try {
      await probeReplica(svc, h.host, { timeoutMs: svc.ready.timeoutMs, signal: opts.signal, onceMs: opts.onceMs, label: `service ${svc.name} replica ${h.index}`, liveness, logs: () => readTail(proc.logFile) });
    } catch (e) {
      // the cause, the replica's last log lines and what to check in topas.yaml
      throw replicaStartFailure(e, { spec: this.spec, service: svc, replica: h.index, backend: 'local', exited: proc.exit ? describeExit(proc.exit) : undefined, logs: readTail(proc.logFile) });
    }
  }

  async removeReplica(h: ReplicaHandle, opts: { graceful: boolean }): Promise<void> {
    const proc = this.procs.get(h.key);
    if (!proc) return;
    // the leader may be gone; what is left of its group still goes
    await stopGroup(proc, opts.graceful ? this.graceMs : 0);
    proc.child?.removeAllListeners('exit');
    this.procs.delete(h.key);
  }

  private gone(proc: Proc): boolean {
    if (proc.exit) return true;
    if (!proc.child && !isAlive(proc)) {
      proc.exit = { code: null, signal: null };
      return true;
    }
    return false;
  }

  isGone(h: ReplicaHandle): boolean {
    const proc = this.procs.get(h.key);
    return !proc || this.gone(proc);
  }

  async fault(h: ReplicaHandle, fault: Fault): Promise<'gone' | 'alive'> {
    const proc = this.proc(h);
    const signal: NodeJS.Signals = fault.kind === 'kill' ? fault.signal : fault.kind === 'pause' ? 'SIGSTOP' : 'SIGTERM';
    // the whole group, as a container's processes die together
    signalGroup(proc.pid, signal);
    if (fault.kind === 'pause') return 'alive';
    if (await waitForExit(proc, signal === 'SIGKILL' ? 5000 : 2000)) {
      proc.exit ??= { code: null, signal };
      return 'gone';
    }
    return this.gone(proc) ? 'gone' : 'alive';
  }

  async replicaLogs(h: ReplicaHandle): Promise<string> {
    const proc = this.procs.get(h.key);
    return proc ? readTail(proc.logFile) : '';
  }

  /** Local equivalent of `docker exec`: argv in the service's cwd with the env of its first replica. */
  async exec(target: ExecTarget, argv: string[]): Promise<ExecResult> {
    let cwd = this.spec.dir;
    let env: Record<string, string>;
    if (target.kind === 'database') {
      if (!this.pg) throw sutErrors.databaseNotRunning(target.database.name);
      const c = target.database.credentials;
      env = { ...this.baseEnv(), PGHOST: HOST, PGPORT: String(this.pg.state.port), PGUSER: c.user, PGPASSWORD: c.password, PGDATABASE: c.dbname };
    } else {
      const r = target.replica;
      const saved = r?.saved as SavedProcess | undefined;
      cwd = this.cwd(target.service);
      env = this.replicaEnv(target.service, r?.index ?? 1, saved?.port, saved?.ports ?? {});
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

  // ---------------------------------------------------------------- databases

  async startDatabase(db: DatabaseSpec, opts: { signal: AbortSignal }): Promise<DatabaseHandle> {
    const pg = await this.ensurePostgres(opts.signal);
    await pg.createDatabase(db, this.spec);
    return this.dbHandle(db.name, pg);
  }

  private dbHandle(name: string, pg: PostgresCluster): DatabaseHandle {
    const a = { host: HOST, port: pg.state.port };
    return { name, host: a, inside: a };
  }

  private ensurePostgres(signal: AbortSignal): Promise<PostgresCluster> {
    if (!this.pgStart) {
      // as root, postgres runs as its own user: its files go where it can reach them
      const { dir: base, outside } = postgresBaseDir(path.join(this.workDir, 'postgres'), this.workDir, this.ctx.runId);
      if (outside) {
        this.extraDirs.push(base);
        // recorded at once: a run killed while initdb runs must still name it for the sweep
        this.host.persist();
      }
      const timeoutMs = Math.max(...this.spec.databases.map((d) => d.ready.timeoutMs), 30_000);
      this.pgStart = PostgresCluster.start(base, {
        ownedRoot: this.extraDirs.includes(base) ? base : this.workDir,
        timeoutMs,
        signal,
        env: this.ctx.processEnv,
        onStarted: (s) => {
          this.pg = PostgresCluster.fromState(s);
          this.host.persist();
        },
      }).then((pg) => {
        this.pg = pg;
        this.host.persist();
        return pg;
      });
    }
    return this.pgStart;
  }

  databaseGone(): boolean {
    return !this.pg?.alive();
  }

  async databaseLogs(_name: string, tail: number): Promise<string> {
    return this.pg ? this.pg.logs(tail) : '';
  }

  // ---------------------------------------------------------------- attach, state, end

  /**
   * Replicas as the state lists them (by pid), plus ones that run but that no
   * state lists (a run was killed between spawning one and recording it): they
   * carry the run id, their service, slot and ports in their environment.
   */
  async adopt(saved: SavedReplicas): Promise<Adopted> {
    const out: Adopted = { replicas: [], databases: [] };
    for (const [service, list] of Object.entries(saved)) {
      const svc = this.spec.services.find((s) => s.name === service);
      for (const s of list) {
        const p = s.saved as unknown as SavedProcess;
        const proc: Proc = { pid: p.pid, startTicks: p.startTicks, logFile: p.logFile };
        const h = this.handle(service, s.index, p, svc?.image);
        this.procs.set(h.key, proc);
        out.replicas.push({ replica: h, alive: !this.gone(proc), retiring: s.retiring });
      }
    }
    const known = new Set([...this.procs.values()].map((p) => p.pid));
    for (const p of findRunProcesses(this.ctx.runId)) {
      const svc = this.spec.services.find((s) => s.name === p.env.TOPAS_SERVICE);
      if (known.has(p.pid) || !svc) continue;
      const ports: Record<string, number> = {};
      for (const name of Object.keys(svc.ports)) ports[name] = Number(p.env[portEnvName(name)]);
      const index = Number(p.env.TOPAS_REPLICA) || 1;
      const logFile = p.stdout ?? path.join(this.logDir, `${svc.name}-${index}-${p.pid}.log`);
      const h = this.handle(svc.name, index, { seq: ++this.seq, pid: p.pid, startTicks: p.startTicks, port: Number(p.env.PORT), ports, logFile, version: p.env.TOPAS_VERSION }, svc.image);
      this.procs.set(h.key, { pid: p.pid, startTicks: p.startTicks, logFile });
      out.replicas.push({ replica: h, alive: true });
      this.host.log(`service ${svc.name} replica ${index} (pid ${p.pid}) runs but was not recorded; taking it on`);
    }
    if (this.pg) for (const d of this.spec.databases) out.databases.push(this.dbHandle(d.name, this.pg));
    if (!this.ctx.readOnly) fs.mkdirSync(this.logDir, { recursive: true });
    return out;
  }

  state(): Record<string, unknown> {
    return { workDir: this.workDir, extraDirs: [...this.extraDirs], postgres: this.pg?.state, extraEnv: { ...this.extraEnv }, seq: this.seq };
  }

  /** The run registry, for sweeps: what runs and whether its owner may go. */
  record(s: RunSnapshot): void {
    writeRunRecord({
      runId: this.ctx.runId,
      app: this.spec.name,
      specFile: this.spec.file,
      owner: currentOwner(),
      // a kept SUT stays kept while a run is attached to it: a sweep must not take it when that run dies
      detached: s.kept,
      workDir: this.workDir,
      extraDirs: [...this.extraDirs],
      processes: s.replicas.map((h) => this.procs.get(h.key)).filter((p): p is Proc => !!p).map((p) => ({ pid: p.pid, startTicks: p.startTicks })),
      postgres: this.pg ? { dataDir: this.pg.state.dataDir, pid: this.pg.state.pid, startTicks: this.pg.state.startTicks } : undefined,
      proxyHost: s.proxyHost,
    });
  }

  proxyHostDir(): string {
    return this.workDir;
  }

  async detach(): Promise<void> {
    for (const p of this.procs.values()) p.child?.removeAllListeners('exit');
  }

  async dispose(): Promise<void> {
    await this.pgStart?.catch(() => undefined);
    const all = [...this.procs.values()];
    // and what the registry lists that this process does not know (a run attached to a kept SUT died before its state was written)
    const known = new Set(all.map((p) => p.pid));
    const recorded = readRunRecords().find((rec) => rec.runId === this.ctx.runId);
    const strays = (recorded?.processes ?? []).filter((p) => !known.has(p.pid) && isAlive(p));
    await Promise.all([...all, ...strays].map((p) => stopGroup(p, Math.min(this.graceMs, 3000))));
    for (const p of all) p.child?.removeAllListeners('exit');
    this.procs.clear();
    // only a live one: the group of a PostgreSQL that died long ago (attach) may be someone else's by now
    if (this.pg && (this.pgStart || this.pg.alive())) await this.pg.stop();
    for (const d of [this.workDir, ...this.extraDirs]) fs.rmSync(d, { recursive: true, force: true });
    removeRunRecord(this.ctx.runId);
  }
}
