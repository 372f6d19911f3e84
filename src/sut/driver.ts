import type { AppSpec, DatabaseSpec, ServiceSpec } from '../spec/app-spec';
import type { BackendEnv, StartContext, SutState } from '../backends/backend';
import type { SweepOptions } from '../backends/ownership';
import type { Address } from './references';
import type { Problem } from '../errors';

/**
 * The narrow seam under the SUT core: a driver starts and removes single
 * replicas and databases and reports on them; the core (src/sut/core-sut.ts)
 * owns everything else (replica table, rotation, rollouts, healing, scale,
 * shaping, references, errors, log format). Local processes, docker containers
 * and plugin backends are drivers; the core never imports one.
 */
export interface SutDriver {
  /** the backend's name, in log lines and errors: `local`, `docker` */
  readonly name: string;
  readonly capabilities: DriverCapabilities;
  /** timing of the core's policies on this driver; defaults in the core */
  readonly tuning?: { drainMs?: number; reconcileIntervalMs?: number };

  /** Called once by the core before anything else: how the driver reaches back. */
  bind(core: DriverHost): void;
  /**
   * Before any replica starts (images present, network made). With
   * `shapeDependents`, says whether the SUT's own services can reach this
   * host's dependents' proxies (`dependents`) and on which address they must
   * listen (default: the fleet's, 127.0.0.1).
   */
  prepare(opts: { signal: AbortSignal; shapeDependents: boolean }): Promise<{ dependents: boolean; listenHost?: string }>;

  // ---- replicas
  /**
   * Create one replica of `service` (with its current config) in slot `index`.
   * Call `created` the moment it exists, so it is recorded before anything is
   * awaited. Resolves when it runs (the core then waits for it to be ready).
   * On failure the driver removes what it made and throws.
   */
  startReplica(req: ReplicaRequest): Promise<ReplicaHandle>;
  /**
   * Optional: get slot `index` of `service` ready to start while what it
   * depends on becomes ready (docker: its container created, not started).
   * The dependency order binds starts and readiness only; creation can overlap.
   * A later `startReplica` of that slot with the same config only starts it.
   * Never throws (a failure shows in `startReplica`); what is never started is
   * removed with the run.
   */
  prepareReplica?(req: { service: ServiceSpec; index: number; signal: AbortSignal }): void;
  /**
   * Until the replica answers its `ready:` spec (or, with `onceMs`, one attempt
   * of at most that long). Throws the start failure (READINESS_TIMEOUT,
   * SUT_START_FAILED with the replica's last logs). Drivers usually call
   * `probeReplica` (src/sut/readiness.ts) with the replica's host address.
   */
  waitReplicaReady(replica: ReplicaHandle, service: ServiceSpec, opts: { signal: AbortSignal; onceMs?: number }): Promise<void>;
  /** Stop (gracefully unless `graceful: false`) and remove one replica. Never throws for one already gone. */
  removeReplica(replica: ReplicaHandle, opts: { graceful: boolean }): Promise<void>;
  /** The replica no longer runs (cheap: the heal loop calls it every tick). */
  isGone(replica: ReplicaHandle): boolean | Promise<boolean>;
  /** Inject a fault; resolves `gone` when the replica died of it, `alive` when it runs on (a handled signal, a pause). */
  fault(replica: ReplicaHandle, fault: Fault): Promise<'gone' | 'alive'>;
  replicaLogs(replica: ReplicaHandle, tail: number): Promise<string>;
  /** Run argv in (or, local, beside) a replica: the first serving one, undefined when none runs. */
  exec(target: ExecTarget, argv: string[]): Promise<ExecResult>;
  /** Before a rollout to a new config: fetch what it needs (an image), so a failure changes nothing. */
  prepareConfig?(service: ServiceSpec): Promise<void>;

  // ---- databases
  startDatabase(db: DatabaseSpec, opts: { signal: AbortSignal }): Promise<DatabaseHandle>;
  /** the database no longer runs (cheap: the heal loop calls it) */
  databaseGone(name: string): boolean | Promise<boolean>;
  databaseLogs(name: string, tail: number): Promise<string>;
  /** Optional database faults (docker: a container per database). Without them the core answers `unsupported`. */
  stopDatabase?(name: string): Promise<void>;
  /** Start (again) a stopped or dead database; `graceful` restarts a running one. */
  restartDatabase?(name: string, opts: { graceful: boolean; signal: AbortSignal }): Promise<DatabaseHandle>;
  faultDatabase?(name: string, fault: Fault): Promise<'gone' | 'alive'>;

  // ---- addresses
  /**
   * An address the SUT's own services reach a service or database by, whatever
   * replica runs (docker: the network alias). Without it the core uses the
   * first replica in rotation's `inside` address.
   */
  aliasInside?(name: string, port: string): Address | undefined;

  // ---- attach, state, end
  /**
   * Attach: what runs of this SUT now, as handles (`saved` is what the core
   * persisted per service, with the driver's own per-replica data).
   */
  adopt(saved: SavedReplicas): Promise<Adopted>;
  /** Driver-level JSON for .topas/state.json (`SutState.data`, beside the core's `services`). */
  state(): Record<string, unknown>;
  /** Record what runs for sweeps (a run registry, labels); called on every change. */
  record?(snapshot: RunSnapshot): void;
  /** The folder where a kept SUT's proxy host watches (it ends when the folder goes). */
  proxyHostDir(): string;
  /** Let a start in progress fail at once (SIGINT): remove what exists now. */
  abort?(): void;
  /** The SUT is kept (topas up): mark it so sweeps leave it. */
  detach?(): Promise<void>;
  /** Remove everything the driver made: replicas it may not know of, databases, network, folders. Idempotent. */
  dispose(): Promise<void>;

  // ---- native policies (kubernetes): the core delegates when a capability says so
  rollout?(service: ServiceSpec, replicas: number, signal: AbortSignal): Promise<void>;
  heal?(): Promise<void>;
}

export interface DriverCapabilities {
  /** the driver rolls a service out itself (`rollout`) */
  nativeRollout?: boolean;
  /** the platform heals replicas itself (`heal` is called per tick instead of the core's loop) */
  nativeHeal?: boolean;
  /** faults this driver can inject */
  faults: Array<Fault['kind']>;
  /** the core restarts a database that died (docker); else it stays down until `down` */
  healDatabases?: boolean;
}

export type Fault = { kind: 'kill'; signal: NodeJS.Signals } | { kind: 'stop' } | { kind: 'pause' };

/** What the core lends its driver. */
export interface DriverHost {
  readonly spec: AppSpec;
  readonly ctx: StartContext;
  /** `${name.field}` of every value, as the SUT's own services see it */
  resolve(value: string): string;
  /** the driver learnt a replica died (a child's exit event): out of rotation at once */
  replicaGone(replica: ReplicaHandle, why: string): void;
  /** the SUT is being disposed: a start in flight stops */
  readonly closed: boolean;
  /** what runs changed outside a replica start (a database cluster came up): record it */
  persist(): void;
  /** one line of the run's log, prefixed with the backend */
  log(line: string): void;
}

export interface Addresses {
  main: Address | undefined;
  /** named ports (`ports:` in topas.yaml) */
  ports: Record<string, Address | undefined>;
}

export interface ReplicaHandle {
  /** unique within the run for the replica's life (proxies key on it) */
  readonly key: string;
  readonly service: string;
  /** 1-based slot; a replacement takes the slot of the one it replaces */
  readonly index: number;
  /** version and image it was started with (ps shows both versions during a rollout) */
  readonly version?: string;
  readonly image?: string;
  /** what config it was started with (opaque: an image ref): scale-down takes other revisions first */
  readonly revision?: string;
  /** from the machine running topas (scenario proxies, readiness, ps) */
  readonly host: Addresses;
  /** from inside the SUT (references) */
  readonly inside: Addresses;
  /** driver data persisted for attach */
  readonly saved?: Record<string, unknown>;
}

export interface ReplicaRequest {
  /** the service with its current config (version, image, env after apply_service) */
  service: ServiceSpec;
  index: number;
  signal: AbortSignal;
  created(replica: ReplicaHandle): void;
}

export interface DatabaseHandle {
  name: string;
  host: Address;
  inside: Address;
  image?: string;
  version?: string;
}

export type ExecTarget = { kind: 'service'; service: ServiceSpec; replica?: ReplicaHandle } | { kind: 'database'; database: DatabaseSpec };

export interface ExecResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** service -> the replicas the core persisted (index, retiring, the driver's `saved`) */
export type SavedReplicas = Record<string, Array<{ index: number; retiring?: boolean; saved?: Record<string, unknown> }>>;

export interface Adopted {
  replicas: Array<{ replica: ReplicaHandle; alive: boolean; retiring?: boolean }>;
  /** running databases; a missing one is not running */
  databases: DatabaseHandle[];
}

export interface RunSnapshot {
  kept: boolean;
  replicas: ReplicaHandle[];
  proxyHost?: { pid: number; startTicks?: number };
}

/**
 * A backend built from a driver: what `Backend` needs besides the core.
 * `CoreBackend` (src/sut/core-backend.ts) turns one into a `Backend`.
 */
export interface DriverBackend {
  readonly name: string;
  probe(spec: AppSpec, opts?: BackendEnv): Promise<{ ok: boolean; reason: string }>;
  /**
   * Every problem of a (valid) spec for this driver, each with its path in
   * topas.yaml (`services[0].command`): pure, nothing is started or asked.
   * Reported at once, before anything starts.
   */
  validate?(spec: AppSpec): Problem[];
  create(spec: AppSpec, ctx: StartContext): Promise<SutDriver>;
  /** The driver of a SUT another process started; throws SUT_NOT_UP when it is gone (not for readers). */
  reopen(spec: AppSpec, state: SutState, ctx: StartContext): Promise<SutDriver>;
  /** Remove what runs whose owner is gone (or kept SUTs of `opts.kept`). */
  sweep(opts: SweepOptions): Promise<{ removed: string[] }>;
}
