import { formatDurationMs } from '../util/duration';
import type { SutDriver } from './driver';
import { healBackoffMs } from './heal-policy';
import type { ReplicaTable } from './replica-table';
import type { Rollouts } from './rollout';
import { errorMessage } from './sut-errors';

export interface HealerHost {
  readonly closed: boolean;
  readonly signal: AbortSignal;
  log(line: string): void;
  notify(): void;
  restartDatabase(name: string): Promise<void>;
}

/**
 * The one self-healing loop: each tick, replicas that died leave rotation and
 * a service below its declared count is brought back to it (one policy of
 * back-off, src/sut/heal-policy.ts); a driver whose platform heals itself is
 * only asked to (`nativeHeal`).
 */
export class Healer {
  private timer?: NodeJS.Timeout;
  private running = false;

  constructor(
    private readonly table: ReplicaTable,
    private readonly driver: SutDriver,
    private readonly rollouts: Rollouts,
    private readonly host: HealerHost,
    private readonly intervalMs: number,
  ) {}

  start(): void {
    if (this.timer || this.host.closed) return;
    const tick = (): void => {
      void this.once().finally(() => {
        if (!this.timer || this.host.closed) return;
        this.timer = setTimeout(tick, this.intervalMs);
        this.timer.unref();
      });
    };
    this.timer = setTimeout(tick, this.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }

  /** Which replicas died, as far as the driver knows now; true when some left rotation. */
  async sweepDead(): Promise<boolean> {
    let changed = false;
    for (const svc of this.table.services.values()) {
      for (const r of svc.replicas) {
        if (r.gone || r.retiring) continue;
        if (await this.driver.isGone(r.h)) {
          r.gone = true;
          r.ready = false;
          changed = true;
        }
      }
    }
    if (changed) this.host.notify();
    return changed;
  }

  /** One pass: replace what died, restart a database that died. Never throws. */
  async once(): Promise<void> {
    if (this.running || this.host.closed) return;
    this.running = true;
    try {
      if (this.driver.capabilities.nativeHeal && this.driver.heal) {
        await this.driver.heal();
        return;
      }
      await this.sweepDead();
      const now = Date.now();
      for (const svc of this.table.services.values()) {
        if (svc.ops.busy > 0 || now < svc.healAfter) continue;
        const dead = svc.replicas.some((r) => r.gone && !r.retiring);
        if (!dead && this.table.live(svc).length >= svc.declared) continue;
        void svc.ops
          .run(async () => {
            if (this.host.closed) return;
            const before = this.table.live(svc).length;
            for (const r of svc.replicas.filter((x) => x.gone && !x.retiring)) this.host.log(`service ${svc.config.name} replica ${r.h.index} died; replacing it`);
            await this.rollouts.scaleTo(svc, svc.declared, this.host.signal);
            if (before < svc.declared) this.host.log(`service ${svc.config.name} healed to ${svc.declared} replica(s)`);
            svc.failures = 0;
            svc.healAfter = 0;
            svc.lastError = undefined;
          })
          .catch((e: unknown) => {
            if (this.host.closed) return;
            svc.failures++;
            svc.lastError = errorMessage(e);
            const backoffMs = healBackoffMs(svc.failures);
            svc.healAfter = Date.now() + backoffMs;
            this.host.log(`replacing a replica of ${svc.config.name} failed (retry in ${formatDurationMs(backoffMs)}): ${svc.lastError}`);
          });
      }
      if (!this.driver.capabilities.healDatabases) return;
      for (const db of this.table.databases.values()) {
        if (db.stopped || db.ops.busy > 0 || !db.handle || !(await this.driver.databaseGone(db.spec.name))) continue;
        db.ready = false;
        void db.ops
          .run(async () => {
            this.host.log(`database ${db.spec.name} is not running; starting it again`);
            await this.host.restartDatabase(db.spec.name);
          })
          .catch((e: unknown) => this.host.log(`database ${db.spec.name}: restart failed: ${errorMessage(e)}`));
      }
    } catch {
      // a driver's hiccup (the engine did not answer): next tick
    } finally {
      this.running = false;
    }
  }
}
