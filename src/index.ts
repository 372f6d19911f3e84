/**
 * topas's public API, for backend plugins: `import { ... } from 'topas'`.
 * What is exported here is a contract with packages outside this repository
 * (the kubernetes plugin, fixtures/plugins/process-backend): change it with care.
 * The CLI itself never imports this file.
 */

// the backend seam (src/backends/backend.ts) and what a plugin's hook receives
export type { Backend, BackendEnv, Sut, StartContext, ServiceStatus, EndpointMap, SutState, ApplyServiceChange, KillOptions } from './backends/backend';
// a backend that runs the scenarios somewhere else (the kubernetes plugin's runner Job)
export type { RemoteRunner, RemoteRunRequest, RemoteGitSource, RemoteRunHooks, RemoteRunResult, RemoteLostShare, ScheduleContext, RemoteRunStore, RemoteRunInfo, RemoteWorkers } from './backends/backend';
// the files that may go with a run to a runner elsewhere (the same walk for scenarios and load scripts)
export { walkRunFiles } from './run/remote-run';
// where load workers run: a plugin registers a transport by name ('pods'), the SUT names it (Sut.remoteWorkers)
export { registerTransport, type TransportFactory, type WorkerTransport, type TransportEvent, type StartWorkerOptions } from './workers/transport';
export type { SweepOptions, KeptApp } from './backends/ownership';
export { isKeptApp } from './backends/ownership';
export type { BackendsHook, BackendsHookOptions } from './backends/plugin-backends';

// the app spec, as backends receive it (normalized and validated)
export type { AppSpec, ServiceSpec, DatabaseSpec, ReadinessSpec, ReferenceField } from './spec/app-spec';
// starting in dependency order (what a backend without the SUT core does itself), `${name.field}` in spec strings
export { startInDependencyOrder, dependencyOrder } from './spec/dependency-graph';
export { findReferences, resolveReferences, type Reference } from './spec/references';

// one error root with stable codes and one exit-code table
export { TopasError, EXIT_CODES, serializeError, type ErrorCode, type ExitCode, type Problem } from './errors';

// the backend-neutral SUT core: error table, log format, endpoint choice, references, heal policy, ordering
export * from './sut/index';

// traffic shaping where the proxies run elsewhere (a cluster's proxy pods): the controller scenarios'
// `shape.*` calls reach, the client of a proxy host's control API, the fixed host's config
export { ShapeController, type ShapeTarget, type ShapeHistoryEntry } from './shape/shape-controller';
export { ProxyHostClient, PROXY_HOST_TOKEN_ENV, type ProxyHostInfo } from './shape/proxy-host';
export { PROXY_HOST_CONFIG_ENV, type FixedProxyHostConfig, type FixedProxySpec } from './shape/proxy-host-fixed';
export { isUnshaped, type ShapeState } from './shape/shape-state';
export type { ProxyMode, ProxyTarget, ShapingProxyStats } from './shape/shaping-proxy';

// readiness probes
export { waitForHttp, waitForTcp, waitForLog, sleep, type ProbeOptions, type HttpProbeOptions } from './backends/readiness';

// for backends that run things on this machine: a free port, the local backend's embedded PostgreSQL
export { freePort } from './backends/local/processes';
export { startPostgres, type RunPostgres } from './backends/local/run-postgres';
// the `node` a service's `command: [node, ...]` runs with (this Node; the one on PATH inside the single executable)
export { nodeExecutable } from './sea/node-executable';

// what a failed start tells the user, the same on every backend: `backend: 'local'` gives a
// process's hints (command, cwd, $PORT), 'docker' a container's (image, version, port)
export { replicaStartFailure, commandHint, specWhere, type ReplicaFailure } from './backends/start-errors';


// for a runner that executes scenarios where a backend puts it: the types here; the code (the scenario
// run, run records, the CLI's base command) in `topas/runner` (src/runner-api.ts), which loads the Lua
// engine and the CLI framework, so a plugin that only registers a backend does not
export type { Io } from './io';
export type { LogLine, ScenarioEvent, ScenarioResult } from './run/scenario-types';
export type { PlaybookSummary } from './reporters/run-report';
