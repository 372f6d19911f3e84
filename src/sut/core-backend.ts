import { TopasError, type Problem } from '../errors';
import type { AppSpec } from '../spec/app-spec';
import type { Backend, BackendEnv, StartContext, Sut, SutState } from '../backends/backend';
import type { SweepOptions } from '../backends/ownership';
import { CoreSut, type CoreOptions } from './core-sut';
import type { DriverBackend } from './driver';

/** A `Backend` made of a driver and the SUT core: start and attach build the core over the driver. */
export class CoreBackend implements Backend {
  readonly name: string;

  constructor(
    private readonly drivers: DriverBackend,
    private readonly opts: CoreOptions = {},
  ) {
    this.name = drivers.name;
  }

  probe(spec: AppSpec, opts?: BackendEnv): Promise<{ ok: boolean; reason: string }> {
    return this.drivers.probe(spec, opts);
  }

  validate(spec: AppSpec): Problem[] {
    return this.drivers.validate?.(spec) ?? [];
  }

  async start(spec: AppSpec, ctx: StartContext): Promise<Sut> {
    const problems = this.validate(spec);
    if (problems.length) throw unrunnable(this.name, spec, problems);
    const driver = await this.drivers.create(spec, ctx);
    return CoreSut.start(spec, driver, ctx, this.opts);
  }

  async attach(spec: AppSpec, state: SutState, ctx: StartContext): Promise<Sut> {
    if (state.backend !== this.name) throw new TopasError('SUT_NOT_UP', `state belongs to backend "${state.backend}", not ${this.name}`);
    const driver = await this.drivers.reopen(spec, state, { ...ctx, runId: state.runId });
    return CoreSut.attach(spec, driver, state, ctx, this.opts);
  }

  sweep(opts: SweepOptions): Promise<{ removed: string[] }> {
    return this.drivers.sweep(opts);
  }
}

/** A spec this backend cannot run, with every problem and its path (BACKEND_UNAVAILABLE: another backend may run it). */
export function unrunnable(backend: string, spec: AppSpec, problems: Problem[], hint?: string): TopasError {
  const n = problems.length;
  return new TopasError('BACKEND_UNAVAILABLE', `backend ${backend} cannot run app ${spec.name}: ${n} problem${n === 1 ? '' : 's'} in the app spec for it`, { problems, hint });
}
