import type { AppSpec } from '../spec/app-spec';
import type { Problem } from '../errors';
import type { ShapeController } from '../shape/shape-controller';
import type { SweepOptions } from './ownership';
import type { SutLifecycle } from '../sut/lifecycle';
import type { LogLine, ScenarioEvent, ScenarioResult } from '../run/scenario-types';
import type { SerializedError } from '../errors';
import type { PlaybookSummary } from '../reporters/run-report';

/**
 * A backend stands a SUT up and hands back a handle to it. One small seam,
 * selected by name from the registry (local, docker; kubernetes registers from
 * the plugin through an oclif hook).
 */
export interface Backend {
  readonly name: string;
  /** Can this backend run this spec here? Used by `--backend auto`. Never throws. */
  probe(spec: AppSpec, opts?: BackendEnv): Promise<{ ok: boolean; reason: string }>;
  /** Every problem of a valid spec for this backend, with its path; pure. Checked before anything starts. */
  validate?(spec: AppSpec): Problem[];
  /**
   * Start everything in dependency order, in parallel where the graph allows.
   * A failed start tears down what it made before rethrowing (TopasError
   * SUT_START_FAILED / READINESS_TIMEOUT / IMAGE_NOT_FOUND / BACKEND_UNAVAILABLE).
   */
  start(spec: AppSpec, ctx: StartContext): Promise<Sut>;
  /** Re-open a SUT that an earlier process started (`topas up` then `topas run`). */
  attach(spec: AppSpec, state: SutState, ctx: StartContext): Promise<Sut>;
  /**
   * Remove what runs whose owner process is gone left behind (of `app`, or of
   * every app with `all`), plus the SUTs kept for `kept` (same app name and spec
   * file). Never a run whose owner lives, never another app's kept SUT.
   */
  sweep(opts: SweepOptions): Promise<{ removed: string[] }>;
  /**
   * `topas test schedule --cron EXPR`: a backend that can run on a schedule by
   * itself (a cluster's CronJob) keeps the run there, standing the app up for
   * each run. Backends without it refuse --cron.
   */
  scheduleCron?(spec: AppSpec, request: RemoteRunRequest, cron: string, ctx: ScheduleContext): Promise<{ id: string; description: string }>;
  /**
   * `topas test status|logs --backend NAME`: the runs this backend keeps by
   * itself (a cluster's TestRuns, those its CronJobs made included, which have
   * no local record). A backend with it also queues its runs there, one run of
   * an app at a time across every host, so topas takes no local lock for them.
   */
  remoteRuns?(opts: BackendEnv): RemoteRunStore;
}

export interface ScheduleContext {
  log: (line: string) => void;
  /** the environment topas runs in (Io.env, with what flags such as --kubeconfig add); required as in StartContext */
  processEnv: NodeJS.ProcessEnv;
}

/** The runs a backend keeps by itself (`Backend.remoteRuns`), read through its own API only. */
export interface RemoteRunStore {
  /** the most recent first, at most `limit`; only `app`'s when given */
  list(opts: { limit: number; app?: string }): Promise<RemoteRunInfo[]>;
  /** one run by its run id (or the backend's own name for it); TopasError FILE_NOT_FOUND when there is none */
  get(id: string): Promise<RemoteRunInfo>;
  /**
   * The run's log lines so far, then with `follow` new ones as they come until
   * the run ends (or `signal` aborts); resolves to the run as it was last seen.
   */
  logs(id: string, opts: { follow: boolean; signal?: AbortSignal; onLog: (line: LogLine) => void }): Promise<RemoteRunInfo>;
}

/** One run as a backend keeps it; `topas test status` shows it as it shows a local record. */
export interface RemoteRunInfo {
  runId: string;
  /** the backend's own name for it (a TestRun's name) */
  name: string;
  app?: string;
  /** Pending: created, or waiting for its turn (another run of the app holds the queue) */
  phase: 'Pending' | 'Running' | 'Passed' | 'Failed' | 'Error';
  createdAt?: string;
  startedAt?: string;
  finishedAt?: string;
  targets?: string[];
  /** the verdict, once it ended: the run's state and its scenarios' */
  outcome?: { state: string; scenarioStates: string[]; error?: string };
  /** why it waits or why it ended as it did */
  message?: string;
  /** a Git source the runner fetched itself: the commit that ran */
  git?: { url: string; ref?: string; commit: string };
}

/** Where a backend reads its settings (TOPAS_PG_DIR, a cluster's TOPAS_KUBECONFIG...): the command's Io.env, never process.env. */
export interface BackendEnv {
  /** the environment topas runs in (Io.env, with what flags such as --kubeconfig add); without it, no settings */
  env?: NodeJS.ProcessEnv;
}

export interface StartContext {
  runId: string;
  /** where a backend keeps files for this run (logs, data dirs); removed on dispose unless keep */
  workDir: string;
  log: (line: string) => void;
  /** Aborted on SIGINT/SIGTERM: a start in progress stops and cleans up. */
  signal?: AbortSignal;
  /** extra env for every service (e.g. from --env) */
  env?: Record<string, string>;
  /**
   * The environment topas runs in (Io.env, with what flags such as --kubeconfig
   * add): local services inherit it, backends read their settings from it.
   * Required: no backend falls back to process.env (tests run the CLI in-process).
   */
  processEnv: NodeJS.ProcessEnv;
  /**
   * Point dependents' references (`${db.url}`) at this process's shaping proxies,
   * so `shape` calls reach service-to-service traffic too. Only for a SUT that
   * lives no longer than this process (`topas run` without --keep): the proxies
   * end with it. Scenarios always go through proxies.
   */
  shapeDependents?: boolean;
  /**
   * The SUT outlives this process (`topas up`, --keep): put the dependents'
   * proxies in a detached proxy host that lives as long as the SUT, so later
   * runs shape service-to-service traffic too. Backends without one ignore it.
   */
  proxyHost?: boolean;
  /**
   * Attach only to look (`ps`) or to tear down (`down`): no proxies, no
   * self-healing, nothing written back, so a reader never overwrites what a run
   * holding the SUT records. Readiness is probed once instead of assumed.
   */
  readOnly?: boolean;
  /**
   * An attached run of a kept SUT: called with `state()` whenever what runs
   * changes (a replica spawned or stopped, a scale, a rollout), so
   * .topas/state.json follows the SUT even if this process dies midway.
   */
  onState?: (state: SutState) => void;
}

/** What `ps` and `sut.services()` show. */
export interface ServiceStatus {
  name: string;
  kind: 'service' | 'database';
  replicas: number;
  ready: boolean;
  version?: string;
  image?: string;
  /** base URLs reachable from the machine running topas, one per replica (databases: postgres:// URL) */
  endpoints: string[];
  /** named extra ports: name -> one base address (host:port) per replica */
  extraEndpoints?: Record<string, string[]>;
}

export interface ApplyServiceChange {
  image?: string;
  version?: string;
  replicas?: number;
  env?: Record<string, string>;
}

export interface KillOptions {
  signal?: NodeJS.Signals;
  /** 1-based replica index; any when omitted */
  replica?: number;
}

/**
 * A running SUT. Disposable: `dispose()` (or leaving an `await using` block)
 * removes everything it made; `detach()` lets it run on, kept (`topas up`).
 */
export interface Sut extends AsyncDisposable {
  readonly backend: string;
  readonly spec: AppSpec;
  readonly runId: string;
  services(): Promise<ServiceStatus[]>;
  /**
   * Base URL for a service (`http://127.0.0.1:49153`, round-robin across
   * ready replicas when replica is omitted) or database (`postgres://...`).
   * `port` selects a named extra port (gRPC), returned as `host:port`.
   */
  endpoint(name: string, port?: string): string;
  /** All current endpoints, for handing to worker threads: name -> base URLs. */
  endpointMap(): EndpointMap;
  applyService(name: string, change: ApplyServiceChange): Promise<void>;
  waitReady(name: string, timeoutMs?: number): Promise<void>;
  scale(name: string, replicas: number): Promise<void>;
  stop(name: string): Promise<void>;
  start(name: string): Promise<void>;
  restart(name: string): Promise<void>;
  kill(name: string, opts?: KillOptions): Promise<void>;
  logs(name: string, opts?: { tail?: number }): Promise<string>;
  exec(name: string, argv: string[]): Promise<{ code: number; stdout: string; stderr: string }>;
  /**
   * Called whenever the set of answering replicas changes (rollout, scale,
   * kill, heal), so scenarios in worker threads follow a rollout as it happens.
   */
  onEndpointsChange?(listener: (map: EndpointMap) => void): () => void;
  /** State to persist in .topas/state.json so `attach` can reopen it. */
  state(): SutState;
  /** Stop watching (self-healing loop) without removing anything: used after `topas up`. */
  detach(): Promise<void>;
  /** running (removed on dispose), kept (outlives this process: `topas up`, --keep, attached) or disposed */
  readonly lifecycle: SutLifecycle;
  /** Tear everything down. Idempotent. */
  dispose(): Promise<void>;
  /** The same as dispose(), for `await using sut = await backend.start(...)`. */
  [Symbol.asyncDispose](): Promise<void>;
  /** The traffic-shaping proxies in front of every service and database (require("shape")). */
  shaping?(): ShapeController;
  /**
   * A SUT this machine does not reach (a cluster): scenarios run next to it
   * instead, and `topas run` hands them over here rather than to its worker
   * threads. Its results, log lines and step events come back to the run, so
   * records, reporters and exit codes are those of a local run.
   */
  readonly remoteRunner?: RemoteRunner;
  /**
   * The same for `topas load`: its workers run next to the SUT, through the
   * worker transport named here (a plugin registers it with
   * registerTransport), which gets `context` with every worker it starts.
   */
  readonly remoteWorkers?: RemoteWorkers;
}

export interface RemoteWorkers {
  /** a transport a plugin registered, e.g. 'pods' */
  transport: string;
  /** handed to the transport as StartWorkerOptions.context */
  context: unknown;
  /** the endpoints as the workers there reach them (Service names): endpointMap() is this machine's view */
  endpointMap(): EndpointMap;
}

export interface RemoteRunner {
  run(request: RemoteRunRequest, hooks: RemoteRunHooks): Promise<RemoteRunResult>;
}

/** Everything a runner elsewhere needs to run what `topas run` was asked to run, against the same SUT. */
export interface RemoteRunRequest {
  runId: string;
  /** the files the run reads (app spec, scenarios, playbooks, what they require), relative to one root */
  files: Array<{ path: string; content: Buffer }>;
  /** the command's folder, relative to that root: scenario names are relative to it */
  cwd: string;
  /** the app spec, relative to the root */
  specFile: string;
  /** scenario files and playbooks, relative to `cwd` (resolved: globs and folders expanded) */
  targets: string[];
  parallel: number;
  /** --workers when given: runners to spread the scenarios and playbook instances over (a backend that cannot spread runs one) */
  workers?: number;
  timeoutMs: number;
  continueOnFailure: boolean;
  /** --env / --env-file (may hold secrets: kept out of plain objects) */
  env: Record<string, string>;
  /**
   * A Git source over http(s): the runner fetches the repository itself into
   * `dir` under the files' root (files inside it are not in `files`), so a
   * repository of any size runs, and a schedule runs the ref's newest commit.
   */
  git?: RemoteGitSource;
}

export interface RemoteGitSource {
  /** http(s), without credentials */
  url: string;
  /** branch, tag or commit as given; none: the remote's HEAD */
  ref?: string;
  /** the commit this machine fetched and validated: a run fetches exactly it; a schedule leaves it out (each firing runs the ref's newest) */
  commit: string;
  /** --git-path */
  path?: string;
  /** the checkout's folder in the request's root ('/'-separated) */
  dir: string;
  /** the targets as given, relative to `cwd`: what a firing at a newer commit resolves again (scenarios added or removed) */
  targets: string[];
  /** basic auth (from the URL or TOPAS_GIT_TOKEN): a secret, for the runner's fetch only */
  auth?: { username: string; password: string };
}

export interface RemoteRunHooks {
  /** aborted on Ctrl-C: the runner stops and what it made goes */
  signal: AbortSignal;
  /** the run waits for its turn (another run of the app holds the backend's queue: `pending`), or runs */
  onPhase?(phase: 'pending' | 'running', message?: string): void;
  /** a scenario ended (its verdict may come later with the results), for live metrics */
  onScenarioEnd?(scenarioRunId: string, state: string, durationMs: number): void;
  /** a `topas:` line of this process */
  log(line: string): void;
  /** a scenario's log line, as a local run's workers send it */
  onLog(line: LogLine): void;
  onEvent(scenarioRunId: string, event: ScenarioEvent): void;
}

export interface RemoteRunResult {
  results: ScenarioResult[];
  playbooks?: PlaybookSummary[];
  /** what ended the remote run besides its scenarios' verdicts */
  error?: SerializedError;
  /** runners lost before they reported (a deleted or killed pod): their shares' scenarios and instances did not pass */
  lost?: RemoteLostShare[];
}

/** One lost runner of a spread run: its share (as `RemoteRunRequest.workers` dealt it: index of count) and what happened. */
export interface RemoteLostShare {
  shard: { index: number; count: number };
  /** names the runner, e.g. `runner pod app-runner-x-1-abcde (share 1 of 2)` */
  runner: string;
  reason: string;
  /** when it was found lost (epoch ms) */
  lostAtMs: number;
}

export interface EndpointMap {
  /** name -> { kind, main: base URLs per ready replica, extra: named port -> host:port per replica, db: connection info } */
  [name: string]: {
    kind: 'service' | 'database';
    urls: string[];
    extra: Record<string, string[]>;
    /** names of the extra ports that serve TLS (`ports: { grpc: { port: N, tls: true } }`) */
    tlsPorts?: string[];
    db?: { host: string; port: number; user: string; password: string; dbname: string };
  };
}

/** Backend-specific JSON, persisted between processes. */
export interface SutState {
  backend: string;
  runId: string;
  app: string;
  specFile: string;
  startedAt: string;
  data: unknown;
}

