import type { AppSpec } from '../../spec/app-spec';
import { TopasError, type Problem } from '../../errors';
import type { BackendEnv, StartContext, SutState } from '../backend';
import type { SweepOptions } from '../ownership';
import { CoreBackend } from '../../sut/core-backend';
import type { DriverBackend } from '../../sut/driver';
import { LocalDriver, type LocalDriverOptions, type LocalStateData } from './local-driver';
import { PostgresCluster, postgresBinariesAvailable } from './postgres-cluster';
import { sweepRuns } from './run-registry';

export type { LocalStateData } from './local-driver';

/** The local driver's side of the backend: probe, checks, a driver per run, sweep of the run registry. */
class LocalDrivers implements DriverBackend {
  readonly name = 'local';

  constructor(private readonly opts: LocalDriverOptions) {}

  async probe(spec: AppSpec, opts?: BackendEnv): Promise<{ ok: boolean; reason: string }> {
    const noCommand = spec.services.filter((s) => !s.command || s.command.length === 0).map((s) => s.name);
    if (noCommand.length) return { ok: false, reason: `service(s) ${noCommand.join(', ')} have no command` };
    if (spec.databases.length && !postgresBinariesAvailable(opts?.env ?? {})) {
      return { ok: false, reason: `no embedded PostgreSQL binaries for ${process.platform}-${process.arch}` };
    }
    return { ok: true, reason: 'every service has a command' };
  }

  /** A service with an `image` but no `command` is not runnable as a process. */
  validate(spec: AppSpec): Problem[] {
    return spec.services.flatMap((s, i) =>
      s.command && s.command.length > 0 ? [] : [{ path: `services[${i}].command`, message: `service ${s.name} has no command${s.image ? ` (its image ${s.image} runs on docker)` : ''}: the local backend runs services as processes` }],
    );
  }

  async create(spec: AppSpec, ctx: StartContext): Promise<LocalDriver> {
    return new LocalDriver(spec, ctx, this.opts);
  }

  async reopen(spec: AppSpec, state: SutState, ctx: StartContext): Promise<LocalDriver> {
    const data = state.data as LocalStateData;
    if (data.postgres && !ctx.readOnly && !PostgresCluster.fromState(data.postgres).alive()) {
      // a reader shows it gone and `down` still removes the rest (replicas, proxy host, folders)
      throw new TopasError('SUT_NOT_UP', `local run ${state.runId}: its PostgreSQL (pid ${data.postgres.pid}) is not running`);
    }
    return new LocalDriver(spec, ctx, this.opts, data.workDir, [...data.extraDirs], { ...data.extraEnv, ...(ctx.env ?? {}) }, data.seq, data.postgres);
  }

  sweep(opts: SweepOptions): Promise<{ removed: string[] }> {
    return sweepRuns(opts);
  }
}

/**
 * The `local` backend: no Docker. Services run as child processes (one per
 * replica, each on a free port), databases in one embedded PostgreSQL cluster
 * per run; the SUT core (src/sut) does the rest.
 */
export class LocalBackend extends CoreBackend {
  constructor(opts: LocalDriverOptions = {}) {
    super(new LocalDrivers(opts));
  }
}
