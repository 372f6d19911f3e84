import type { LoadWorkerInit } from '../run/worker-protocol';
import type { Vu, VuCommandResult, VuHost } from '../lua/vu-host';

export const UNCLONEABLE_SETUP_VALUE = 'setup() returned something that cannot be handed to the VUs (functions or userdata); return plain tables, strings and numbers';

/** What the hooks use of a worker's runner. */
export interface HookTarget {
  /** the engine, made when the runner prepares */
  host(): VuHost;
  readonly init: LoadWorkerInit;
  readonly vus: ReadonlyArray<Vu | Promise<Vu> | undefined>;
  /** off while a hook runs: the runner's metrics sinks read it on every request, so it stays the runner's field */
  setRecording(on: boolean): void;
}

// setup() and teardown() here, not on the coordinator: the SUT is one only the workers reach (a cluster)

/** The script's setup() and teardown() in one worker, and setup()'s value handed to its VUs. */
export class SetupHooks {
  /** the VU that runs setup() and teardown() in this worker */
  private hookVu?: Vu;

  constructor(private readonly target: HookTarget) {}

  /** Runs the script's setup() in a VU of its own, which teardown() reuses. */
  runSetup(): Promise<VuCommandResult> {
    return this.outsideLoad(async (vu) => {
      const r = await this.target.host().setup(vu);
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
    const { init, vus } = this.target;
    init.data = data;
    for (let slot = 0; slot < vus.length; slot++) {
      const vu = vus[slot];
      // one being made reads init.data when it is set up
      if (!vu || vu instanceof Promise) continue;
      const r = await this.target.host().setContext(vu, data, init.worker + init.workers * slot + 1);
      if (!r.ok) throw new Error(r.error);
    }
  }

  runTeardown(data: unknown): Promise<VuCommandResult> {
    return this.outsideLoad(async (vu) => this.target.host().teardown(vu, data));
  }

  /** what setup and teardown do is not load: their requests and checks stay out of the metrics, as on the coordinator */
  private async outsideLoad(run: (vu: Vu) => Promise<VuCommandResult>): Promise<VuCommandResult> {
    this.target.setRecording(false);
    try {
      this.hookVu ??= await this.target.host().createVu(0);
      return await run(this.hookVu);
    } catch (err) {
      return { ok: false, error: (err as Error).message };
    } finally {
      this.target.setRecording(true);
    }
  }
}
