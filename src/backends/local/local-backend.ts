import type { AppSpec } from '../../spec/app-spec';
import type { Backend, StartContext, Sut, SutState } from '../backend';
import type { SweepOptions } from '../ownership';
import { LocalSut, type LocalSutOptions } from './local-sut';
import { postgresBinariesAvailable } from './postgres-cluster';
import { sweepRuns } from './run-registry';

/**
 * The `local` backend: no Docker. Services run as child processes (one per
 * replica, each on a free port), databases in one embedded PostgreSQL cluster
 * per run. See LocalSut for the operations.
 */
export class LocalBackend implements Backend {
  readonly name = 'local';

  constructor(private readonly opts: LocalSutOptions = {}) {}

  async probe(spec: AppSpec): Promise<{ ok: boolean; reason: string }> {
    const noCommand = spec.services.filter((s) => !s.command || s.command.length === 0).map((s) => s.name);
    if (noCommand.length) return { ok: false, reason: `service(s) ${noCommand.join(', ')} have no command` };
    if (spec.databases.length && !postgresBinariesAvailable()) {
      return { ok: false, reason: `no embedded PostgreSQL binaries for ${process.platform}-${process.arch}` };
    }
    return { ok: true, reason: 'every service has a command' };
  }

  start(spec: AppSpec, ctx: StartContext): Promise<Sut> {
    return LocalSut.start(spec, ctx, this.opts);
  }

  attach(spec: AppSpec, state: SutState, ctx: StartContext): Promise<Sut> {
    return LocalSut.attach(spec, state, ctx, this.opts);
  }

  sweep(opts: SweepOptions): Promise<{ removed: string[] }> {
    return sweepRuns(opts);
  }
}
