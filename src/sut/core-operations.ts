import { TopasError } from '../errors';
import { formatDurationMs } from '../util/duration';
import type { ApplyServiceChange, KillOptions } from '../backends/backend';
import { sleep } from '../backends/readiness';
import type { SutDriver } from './driver';
import type { Healer } from './healer';
import { DEFAULT_LOG_TAIL, mergeReplicaLogs } from './log-format';
import type { ReplicaTable } from './replica-table';
import type { Rollouts } from './rollout';
import { sutErrors } from './sut-errors';

const DEFAULT_WAIT_READY_MS = 60_000;

/** What the operations need of the SUT they act on. */
export interface OperationsHost {
  readonly backend: string;
  /** aborted by dispose: every wait in flight stops */
  readonly signal: AbortSignal;
  /** throws SUT_NOT_UP once the SUT is disposed */
  ensureOpen(): void;
  log(line: string): void;
  /** the set of answering replicas changed */
  notify(): void;
  /** record what runs (before the work: a run that dies midway leaves its intent) */
  persist(): void;
}

/**
 * What scenarios do to a running SUT (apply_service, scale, stop, start,
 * restart, kill, wait_ready, logs, exec), the same on every driver: each runs
 * in its service's queue, so operations on one service happen in order and
 * never interleave, while different services proceed in parallel.
 */
export class CoreOperations {
  constructor(
    private readonly table: ReplicaTable,
    private readonly driver: SutDriver,
    private readonly rollouts: Rollouts,
    private readonly healer: Healer,
    private readonly host: OperationsHost,
  ) {}

  /** Start a database again (`graceful`: restart a running one); the heal loop's too. */
  async restartDatabase(name: string, graceful: boolean): Promise<void> {
    const db = this.table.databases.get(name)!;
    if (!this.driver.restartDatabase) throw sutErrors.unsupported(this.host.backend, `start database ${name}`, 'its databases share one server');
    db.ready = false;
    db.handle = await this.driver.restartDatabase(name, { graceful, signal: this.host.signal });
    db.ready = true;
    this.host.persist();
  }


  async applyService(name: string, change: ApplyServiceChange): Promise<void> {
    this.host.ensureOpen();
    const svc = this.table.service(name);
    if (change.replicas !== undefined && (!Number.isInteger(change.replicas) || change.replicas < 0)) throw sutErrors.badReplicaCount('apply_service', name, change.replicas);
    const signal = this.host.signal;
    await svc.ops.run(async () => {
      const before = { ...svc.config, env: { ...svc.config.env } };
      const next = { ...svc.config, env: { ...svc.config.env, ...(change.env ?? {}) } };
      if (change.image !== undefined) next.image = change.image;
      // a new image with its own tag replaces the version; else the version stays unless given
      if (change.version !== undefined) next.version = change.version;
      else if (change.image !== undefined && /:[^/]*$/.test(change.image)) next.version = undefined;
      const changed = next.image !== before.image || next.version !== before.version || JSON.stringify(next.env) !== JSON.stringify(before.env);
      if (changed) await this.driver.prepareConfig?.(next);
      const target = change.replicas ?? svc.declared;
      if (changed) {
        svc.config = next;
        svc.revision = undefined;
      }
      // recorded before the work: a run that dies midway leaves the intent, and the next attach finishes it
      this.host.persist();
      if (target < this.table.live(svc).length) await this.rollouts.scaleTo(svc, target, signal);
      if (changed && this.table.live(svc).length > 0) {
        this.host.log(`rolling out ${name}${next.version ? ` version ${next.version}` : ''}`);
        try {
          await this.rollouts.roll(svc, signal);
        } catch (e) {
          // replicas not yet replaced keep the old config, and so do later heals
          svc.config = before;
          this.host.persist();
          throw e;
        }
        this.host.log(`service ${name} rolled out`);
      }
      await this.rollouts.scaleTo(svc, target, signal);
    });
  }

  async waitReady(name: string, timeoutMs = DEFAULT_WAIT_READY_MS): Promise<void> {
    this.host.ensureOpen();
    const db = this.table.databases.get(name);
    const svc = db ? undefined : this.table.service(name);
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (db) {
        if (db.stopped || (db.handle && db.ready && !(await this.driver.databaseGone(name)))) return;
        if (!this.driver.capabilities.healDatabases && db.handle) throw sutErrors.databaseNotRunning(name);
      } else {
        await this.healer.sweepDead();
        if (this.table.isReady(svc!) && svc!.ops.busy === 0) return;
      }
      if (Date.now() >= deadline) {
        if (!svc) throw new TopasError('READINESS_TIMEOUT', `database ${name}: not ready after ${formatDurationMs(timeoutMs)}`);
        const serving = this.table.serving(svc).length;
        throw new TopasError('READINESS_TIMEOUT', `service ${name}: ${serving} of ${svc.declared} replica(s) ready after ${formatDurationMs(timeoutMs)}${svc.lastError ? ` (last error: ${svc.lastError})` : ''}`);
      }
      this.host.ensureOpen();
      void this.healer.once();
      await sleep(50, this.host.signal);
    }
  }

  async scale(name: string, replicas: number): Promise<void> {
    this.host.ensureOpen();
    const svc = this.table.service(name);
    if (!Number.isInteger(replicas) || replicas < 0) throw sutErrors.badReplicaCount('scale', name, replicas);
    await svc.ops.run(() => this.rollouts.scaleTo(svc, replicas, this.host.signal));
  }

  async stop(name: string): Promise<void> {
    this.host.ensureOpen();
    const db = this.table.databases.get(name);
    if (db) {
      if (!this.driver.stopDatabase) throw sutErrors.unsupported(this.host.backend, `stop database ${name}`, 'its databases share one server');
      await db.ops.run(async () => {
        db.stopped = true;
        db.ready = false;
        this.host.persist();
        await this.driver.stopDatabase!(name);
      });
      return;
    }
    const svc = this.table.service(name);
    await svc.ops.run(async () => {
      const keep = svc.declared;
      await this.rollouts.scaleTo(svc, 0, this.host.signal);
      if (keep > 0) svc.lastDeclared = keep;
      this.host.persist();
    });
  }

  async start(name: string): Promise<void> {
    this.host.ensureOpen();
    const db = this.table.databases.get(name);
    if (db) return this.dbOp(name, false);
    const svc = this.table.service(name);
    await svc.ops.run(() => this.rollouts.scaleTo(svc, Math.max(svc.declared, svc.lastDeclared, 1), this.host.signal));
  }

  async restart(name: string): Promise<void> {
    this.host.ensureOpen();
    if (this.table.databases.has(name)) return this.dbOp(name, true);
    const svc = this.table.service(name);
    await svc.ops.run(() => this.rollouts.roll(svc, this.host.signal));
  }

  private async dbOp(name: string, graceful: boolean): Promise<void> {
    const db = this.table.databases.get(name)!;
    await db.ops.run(async () => {
      db.stopped = false;
      this.host.persist();
      await this.restartDatabase(name, graceful);
    });
  }

  async kill(name: string, opts: KillOptions = {}): Promise<void> {
    this.host.ensureOpen();
    const signal = opts.signal ?? 'SIGKILL';
    const db = this.table.databases.get(name);
    if (db) {
      if (!this.driver.faultDatabase) throw sutErrors.unsupported(this.host.backend, `kill database ${name}`, 'its databases share one server');
      if (!db.handle || db.stopped) throw sutErrors.databaseNotRunning(name);
      if ((await this.driver.faultDatabase(name, { kind: 'kill', signal })) === 'gone') db.ready = false;
      void this.healer.once();
      return;
    }
    const svc = this.table.service(name);
    const live = this.table.live(svc);
    const r = opts.replica !== undefined ? live.find((x) => x.h.index === opts.replica) : live[Math.floor(Math.random() * live.length)];
    if (!r) throw sutErrors.noRunningReplica(name, opts.replica, opts.replica === undefined ? [] : live.map((x) => x.h.index));
    const wasReady = r.ready;
    r.ready = false;
    this.host.notify();
    this.host.log(`${signal} to service ${name} replica ${r.h.index}`);
    if ((await this.driver.fault(r.h, { kind: 'kill', signal })) === 'gone') {
      // known dead at once, so wait_ready right after a kill waits for the replacement
      r.gone = true;
      void this.healer.once();
    } else if (!r.gone) {
      // a signal the process handles (SIGHUP, SIGUSR1): it keeps serving
      r.ready = wasReady;
    }
    this.host.notify();
  }

  async logs(name: string, opts: { tail?: number } = {}): Promise<string> {
    const tail = opts.tail ?? DEFAULT_LOG_TAIL;
    if (this.table.databases.has(name)) return mergeReplicaLogs(name, [{ index: 1, text: await this.driver.databaseLogs(name, tail) }], tail);
    const svc = this.table.service(name);
    const replicas = [...svc.replicas].sort((a, b) => a.h.index - b.h.index);
    const parts = await Promise.all(replicas.map(async (r) => ({ index: r.h.index, text: await this.driver.replicaLogs(r.h, tail) })));
    return mergeReplicaLogs(name, parts, tail);
  }

  async exec(name: string, argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
    this.host.ensureOpen();
    const db = this.table.databases.get(name);
    const svc = db ? undefined : this.table.service(name);
    if (argv.length === 0) throw sutErrors.emptyExec(name);
    if (db) return this.driver.exec({ kind: 'database', database: db.spec }, argv);
    const r = this.table.serving(svc!)[0] ?? this.table.live(svc!)[0];
    return this.driver.exec({ kind: 'service', service: svc!.config, replica: r?.h }, argv);
  }
}
