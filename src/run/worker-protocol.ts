import type { SerializedError } from '../errors';
import type { EndpointMap } from '../backends/backend';
import type { LogLine, ScenarioEvent, ScenarioResult, ScenarioTask } from './scenario-types';

/**
 * Messages between the main thread and scenario workers: a tagged union on
 * `type`. Errors cross as SerializedError values (they keep the Lua location).
 */
export type ToWorker =
  | { type: 'run'; task: ScenarioTask }
  | { type: 'cancel'; runId: string; reason: 'timeout' | 'interrupt' }
  | { type: 'rpc-result'; callId: number; ok: true; value: unknown }
  | { type: 'rpc-result'; callId: number; ok: false; error: SerializedError }
  | { type: 'endpoints'; endpoints: EndpointMap }
  | { type: 'shutdown' }
  /** several of the above in order, posted as one (see MessageBatcher) */
  | { type: 'batch'; messages: ToWorker[] };

export type DoneResult = Omit<ScenarioResult, 'runId' | 'name' | 'file' | 'instance'>;

export type FromWorker =
  | { type: 'ready' }
  | { type: 'log'; line: LogLine }
  | { type: 'event'; runId: string; event: ScenarioEvent }
  /** a module call that the main thread must serve (e.g. `sut.apply_service`): method like `sut.applyService` */
  | { type: 'rpc-call'; runId: string; callId: number; method: string; args: unknown[] }
  /** the result without what the pool's task already says (runId, name, file, instance): less to copy per run */
  | { type: 'done'; runId: string; result: DoneResult }
  | { type: 'fatal'; error: SerializedError }
  | { type: 'batch'; messages: FromWorker[] };

// ---------------------------------------------------------------------------
// `topas load` workers (src/load/load-worker.ts): their own entry, sharing the
// rpc/log/endpoints/shutdown messages above.

/** What a load worker needs to host its VUs; structured-cloneable. */
export interface LoadWorkerInit {
  /** the script's path: its chunk name in errors, and where require() resolves */
  file: string;
  /** the script's text as the coordinator read it (load-service always sends it, so a worker does not read `file`; unset only when a runner is made in-process) */
  source?: string;
  baseDir: string;
  env: Record<string, string>;
  endpoints: EndpointMap;
  /** this worker's index and the worker count: it runs iterations k with k % workers == worker */
  worker: number;
  workers: number;
  /** the plan's executor (src/load/schedule.ts ExecutorConfig) */
  executor: unknown;
  /** this worker's share of the VU pool */
  preAllocatedVus: number;
  maxVus: number;
  /** setup()'s return value, handed to every VU as ctx.data */
  data: unknown;
}

export type ToLoadWorker =
  | { type: 'load-init'; init: LoadWorkerInit }
  /** start the schedule at this wall-clock time (ms epoch), shared by all workers */
  | { type: 'load-start'; startMs: number }
  /** clock probe before the start: the worker answers with its own wall clock, so the coordinator can give it the start in its clock */
  | { type: 'clock-probe'; sentMs: number }
  /** stop starting iterations; `abort` also interrupts those in flight */
  | { type: 'load-stop'; abort: boolean }
  // A SUT the coordinator does not reach (a cluster): setup() and teardown() run in a worker, which does.
  /** run the script's setup() in a VU of its own; answered by load-setup-done */
  | { type: 'load-setup' }
  /** setup()'s value: every VU's ctx.data from now on, the ones made already too; answered by load-data-set */
  | { type: 'load-data'; data: unknown }
  /** run teardown(data) in the VU that ran setup (or a new one); answered by load-teardown-done */
  | { type: 'load-teardown'; data: unknown }
  | Extract<ToWorker, { type: 'rpc-result' | 'endpoints' | 'shutdown' }>;

export type FromLoadWorker =
  | { type: 'load-ready'; vus: number }
  | { type: 'clock-reply'; sentMs: number; workerMs: number }
  /** once a second: finished per-second buckets and the worker's cumulative snapshot (src/load/metrics.ts types) */
  | { type: 'load-metrics'; buckets: unknown[]; snapshot: unknown; activeVus: number; allocatedVus: number }
  /** the worker's schedule ended and its in-flight iterations finished (or were interrupted) */
  | { type: 'load-done'; buckets: unknown[]; snapshot: unknown; errors: Array<{ message: string; count: number }> }
  | { type: 'load-setup-done'; ok: true; value: unknown }
  | { type: 'load-setup-done'; ok: false; error: string }
  | { type: 'load-data-set' }
  | { type: 'load-teardown-done'; ok: boolean; error?: string }
  | { type: 'log'; line: LogLine }
  | { type: 'rpc-call'; runId: string; callId: number; method: string; args: unknown[] }
  | { type: 'fatal'; error: SerializedError };
