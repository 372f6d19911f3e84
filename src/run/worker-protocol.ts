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
  | { type: 'shutdown' };

export type FromWorker =
  | { type: 'ready' }
  | { type: 'log'; line: LogLine }
  | { type: 'event'; runId: string; event: ScenarioEvent }
  /** a module call that the main thread must serve (e.g. `sut.apply_service`): method like `sut.applyService` */
  | { type: 'rpc-call'; runId: string; callId: number; method: string; args: unknown[] }
  | { type: 'done'; runId: string; result: ScenarioResult }
  | { type: 'fatal'; error: SerializedError };
