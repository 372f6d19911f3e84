import type { AppSpec, DatabaseSpec, ServiceSpec } from '../spec/app-spec';
import type { DatabaseHandle, ReplicaHandle } from './driver';
import { RoundRobin, servingPool } from './endpoints';
import { OpQueue } from './op-queue';
import { sutErrors } from './sut-errors';

/** One replica as the core sees it: the driver's handle and where it is in its life. */
export interface Replica {
  h: ReplicaHandle;
  /** answers its readiness check: in rotation */
  ready: boolean;
  /** out of rotation on purpose, being stopped */
  retiring: boolean;
  /** died (or was killed): waiting for the heal loop to replace it */
  gone: boolean;
}

export interface ServiceRuntime {
  /** the spec as changed by apply_service (version, image, env) */
  config: ServiceSpec;
  declared: number;
  /** what `start` brings back after `stop` */
  lastDeclared: number;
  replicas: Replica[];
  ops: OpQueue;
  rr: RoundRobin;
  failures: number;
  healAfter: number;
  lastError?: string;
  /** the revision of replicas started with the current config (unknown until one starts) */
  revision?: string;
}

export interface DatabaseRuntime {
  spec: DatabaseSpec;
  handle?: DatabaseHandle;
  ready: boolean;
  /** stopped on purpose: not healed */
  stopped: boolean;
  ops: OpQueue;
}

/** The replicas and databases of one SUT, and the views of them every operation shares. */
export class ReplicaTable {
  readonly services = new Map<string, ServiceRuntime>();
  readonly databases = new Map<string, DatabaseRuntime>();

  constructor(private readonly spec: AppSpec) {
    for (const s of spec.services) {
      this.services.set(s.name, {
        config: { ...s, env: { ...s.env }, ports: { ...s.ports } },
        declared: s.replicas,
        lastDeclared: Math.max(s.replicas, 1),
        replicas: [],
        ops: new OpQueue(),
        rr: new RoundRobin(),
        failures: 0,
        healAfter: 0,
      });
    }
    for (const d of spec.databases) this.databases.set(d.name, { spec: d, ready: false, stopped: false, ops: new OpQueue() });
  }

  /** The service named `name`; the one error for a name the app does not have. */
  service(name: string): ServiceRuntime {
    const svc = this.services.get(name);
    if (!svc) throw this.unknown(name);
    return svc;
  }

  unknown(name: string): Error {
    return sutErrors.unknownTarget(this.spec.name, name, [...this.services.keys(), ...this.databases.keys()]);
  }

  /** Running and meant to: by slot. */
  live(svc: ServiceRuntime): Replica[] {
    return svc.replicas.filter((r) => !r.retiring && !r.gone).sort((a, b) => a.h.index - b.h.index);
  }

  serving(svc: ServiceRuntime): Replica[] {
    return this.live(svc).filter((r) => r.ready);
  }

  /** Where requests go: the ready replicas, or while none is, the live ones. */
  pool(svc: ServiceRuntime): Replica[] {
    return servingPool(this.serving(svc), this.live(svc));
  }

  /** As many as declared answer, and nothing else runs. */
  isReady(svc: ServiceRuntime): boolean {
    const serving = this.serving(svc).length;
    return serving >= svc.declared && this.live(svc).length === serving && !svc.replicas.some((r) => r.gone && !r.retiring);
  }

  /** Free slots to bring the live count to n. */
  missingSlots(svc: ServiceRuntime, n: number): number[] {
    const taken = new Set(this.live(svc).map((r) => r.h.index));
    const out: number[] = [];
    for (let i = 1; out.length + taken.size < n; i++) if (!taken.has(i)) out.push(i);
    return out;
  }

  allReplicas(): Replica[] {
    return [...this.services.values()].flatMap((s) => s.replicas);
  }

  /** Every operation queue, for waiting until what is in flight settles. */
  queues(): OpQueue[] {
    return [...[...this.services.values()].map((s) => s.ops), ...[...this.databases.values()].map((d) => d.ops)];
  }

  /** Replicas whose config is not the service's current one go first when scaling down (a half-done rollout). */
  stale(svc: ServiceRuntime, r: Replica): boolean {
    return svc.revision !== undefined && r.h.revision !== svc.revision;
  }
}
