import { sleep } from '../backends/readiness';
import type { SutDriver, ReplicaHandle } from './driver';
import type { Replica, ReplicaTable, ServiceRuntime } from './replica-table';
import { errorMessage, sutErrors } from './sut-errors';

/** What the replica-set operations need from the core around them. */
export interface RolloutHost {
  readonly closed: boolean;
  readonly backend: string;
  readonly runId: string;
  /** the set of replicas in rotation changed */
  notify(): void;
  /** what runs changed: record it */
  persist(): void;
  /** the scenario proxies of a new replica; dropped with it */
  addProxies(svc: ServiceRuntime, h: ReplicaHandle): Promise<void>;
  dropProxies(h: ReplicaHandle): Promise<void>;
}

/**
 * The one replica-set policy of every driver, run under the service's queue:
 * a new replica is ready before it takes traffic; a rollout surges one at a
 * time (start, wait ready, into rotation, out with the old one, drain, stop);
 * a scale-down drains before it stops.
 */
export class Rollouts {
  constructor(
    private readonly table: ReplicaTable,
    private readonly driver: SutDriver,
    private readonly host: RolloutHost,
    private readonly drainMs: number,
  ) {}

  /** Start a replica into a slot and wait until it is ready; on failure it is removed. */
  async startReady(svc: ServiceRuntime, index: number, signal: AbortSignal): Promise<Replica> {
    if (this.host.closed) throw sutErrors.disposed(this.host.backend, this.host.runId);
    let entry: Replica | undefined;
    const record = (h: ReplicaHandle): Replica => {
      entry ??= { h, ready: false, retiring: false, gone: false };
      if (!svc.replicas.includes(entry)) svc.replicas.push(entry);
      return entry;
    };
    let h: ReplicaHandle;
    try {
      h = await this.driver.startReplica({
        service: svc.config,
        index,
        signal,
        created: (x) => {
          // recorded before anything is awaited: a run killed now still leaves it for `down` to find
          record(x);
          this.host.persist();
        },
      });
    } catch (e) {
      if (entry) {
        svc.replicas = svc.replicas.filter((x) => x !== entry);
        this.host.persist();
      }
      throw e;
    }
    const r = record(h);
    // the handle may have learnt its addresses after `created`
    r.h = h;
    try {
      if (this.host.closed) throw sutErrors.disposed(this.host.backend, this.host.runId);
      await this.host.addProxies(svc, h);
      await this.driver.waitReplicaReady(h, svc.config, { signal });
      if (this.host.closed) throw sutErrors.disposed(this.host.backend, this.host.runId);
    } catch (e) {
      await this.stop(svc, r, false);
      throw e;
    }
    r.ready = !r.gone;
    svc.revision = h.revision;
    this.host.notify();
    return r;
  }

  /** Out of rotation, stopped (gracefully unless told), forgotten. */
  async stop(svc: ServiceRuntime, r: Replica, graceful = true): Promise<void> {
    r.retiring = true;
    r.ready = false;
    await this.driver.removeReplica(r.h, { graceful });
    await this.host.dropProxies(r.h);
    svc.replicas = svc.replicas.filter((x) => x !== r);
    this.host.persist();
  }

  /** Make the live replica count equal n. */
  async scaleTo(svc: ServiceRuntime, n: number, signal: AbortSignal): Promise<void> {
    svc.declared = n;
    if (n > 0) svc.lastDeclared = n;
    // the intent is recorded before the work: a run that dies midway leaves it, and the next one finishes it
    this.host.persist();
    await this.removeDead(svc);
    const live = this.table.live(svc);
    if (live.length > n) {
      // replicas of an older config first (a rollout a dead run left half done), then the highest slots
      const victims = [...live].sort((a, b) => Number(this.table.stale(svc, b)) - Number(this.table.stale(svc, a)) || b.h.index - a.h.index).slice(0, live.length - n);
      for (const v of victims) {
        v.retiring = true;
        v.ready = false;
      }
      this.host.notify();
      await sleep(this.drainMs, signal);
      await Promise.all(victims.map((v) => this.stop(svc, v)));
    } else if (live.length < n) {
      const results = await Promise.allSettled(this.table.missingSlots(svc, n).map((i) => this.startReady(svc, i, signal)));
      const failed = results.find((x): x is PromiseRejectedResult => x.status === 'rejected');
      if (failed) throw failed.reason;
    }
    this.host.persist();
  }

  /** Remove what died (what may be left of it). */
  async removeDead(svc: ServiceRuntime): Promise<void> {
    const dead = svc.replicas.filter((r) => !r.retiring && r.gone);
    await Promise.all(dead.map((r) => this.stop(svc, r, false)));
  }

  /** Replace every live replica one by one, the new one ready before the old one goes; then the declared count. */
  async roll(svc: ServiceRuntime, signal: AbortSignal): Promise<void> {
    if (this.driver.capabilities.nativeRollout && this.driver.rollout) {
      await this.driver.rollout(svc.config, svc.declared, signal);
      return;
    }
    for (const old of this.table.live(svc)) {
      if (old.gone) continue;
      await this.startReady(svc, old.h.index, signal);
      old.retiring = true;
      old.ready = false;
      this.host.notify();
      // requests already routed to the old one finish before it is asked to stop
      await sleep(this.drainMs, signal);
      await this.stop(svc, old);
    }
    await this.scaleTo(svc, svc.declared, signal);
  }

  /** Attach: one readiness attempt of each live replica, as it is now (not as the state says). */
  async probeAll(onceMs: number, signal: AbortSignal): Promise<void> {
    await Promise.all(
      [...this.table.services.values()].flatMap((svc) =>
        this.table.live(svc).map(async (r) => {
          try {
            await this.driver.waitReplicaReady(r.h, svc.config, { signal, onceMs });
            r.ready = true;
          } catch {
            r.ready = false;
          }
        }),
      ),
    );
  }

  /** Attach: a replica alive but not answering (a run died while it started) gets its readiness timeout, then is replaced. */
  awaitUnready(signal: AbortSignal, log: (line: string) => void): void {
    for (const svc of this.table.services.values()) {
      for (const r of this.table.live(svc).filter((x) => !x.ready)) {
        void svc.ops
          .run(async () => {
            if (r.gone || r.retiring || r.ready) return;
            try {
              await this.driver.waitReplicaReady(r.h, svc.config, { signal });
              r.ready = true;
              this.host.notify();
            } catch (e) {
              if (this.host.closed) return;
              log(`service ${svc.config.name} replica ${r.h.index} did not become ready (${errorMessage(e)}); replacing it`);
              await this.stop(svc, r, false);
            }
          })
          .catch(() => undefined);
      }
    }
  }
}
