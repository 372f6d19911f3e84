/**
 * topas's public API for runners and plugin commands: `import { ... } from 'topas/runner'`.
 * Apart from `topas` (src/index.ts) because it loads the Lua engine and the CLI framework:
 * a plugin that only registers a backend never pays for them. The kubernetes plugin's
 * in-cluster runner and its `topas kube` commands build on it.
 */

// the same scenario run, run record and results as `topas run`
export { runScenarios } from './run/run-service';
export { writeRemoteFiles } from './run/remote-run';
export { RunRecordStore, writeStateFile } from './run/run-record';

// for plugin commands (oclif `commands` of a plugin): the base command and the cluster flags
export { BaseCommand } from './cli/base-command';
export { clusterFlags, withClusterFlags } from './cli/common-flags';

// a load worker hosted elsewhere (a pod): its port to the coordinator, then the worker itself
export { useParentPort, type ParentPort } from './workers/parent-port';
export type { ToLoadWorker, FromLoadWorker, LoadWorkerInit } from './run/worker-protocol';
/** Runs `topas load`'s worker in this process, talking through the port given to useParentPort first. */
export function runLoadWorker(): void {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  require('./load/load-worker');
}
