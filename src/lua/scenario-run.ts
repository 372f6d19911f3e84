import type { SerializedError } from '../errors';
import type { CheckTally, ScenarioTask, StepResult } from '../run/scenario-types';
import type { EndpointMap } from '../backends/backend';
import type { LuaModuleInstance } from './modules';
import type { ScenarioMetrics } from '../run/scenario-metrics';
import { formatDurationMs } from '../util/duration';

/** One scenario run on a LuaRuntime (engine.ts): its state, and how its errors read. */

export type CancelReason = 'timeout' | 'interrupt';

export interface OpenStep {
  name: string;
  startedMs: number;
  checks: Map<string, CheckTally>;
  continueOnFailure: boolean;
}

export interface ActiveRun {
  task: ScenarioTask;
  source: string;
  startedAt: Date;
  startedMs: number;
  deadlineMs: number;
  /** lua_State of the scenario's coroutine, and its registry ref keeping it alive */
  L: number;
  threadRef: number;
  cancelReason?: CancelReason;
  wake: () => void;
  cancelled: Promise<void>;
  pending?: Promise<unknown>;
  timer?: NodeJS.Timeout;
  checks: Map<string, CheckTally>;
  steps: StepResult[];
  openSteps: OpenStep[];
  /** a step failed without continue_on_failure: later steps are skipped */
  blocked: boolean;
  firstStepError?: SerializedError;
  /** messages raised by expect/assert/db.expect: these fail, the rest error */
  assertions: Set<string>;
  modules: LuaModuleInstance[];
  /** made on first use (sleep, a module): most short scenarios never need one */
  abort?: AbortController;
  endpoints: EndpointMap;
  /** require("metrics"): custom metrics, in the scenario's result */
  metrics?: ScenarioMetrics;
}

export type MainOutcome = { kind: 'ok' } | { kind: 'error'; message: string; location?: string; traceback?: string };

const MEMORY_ERROR = 'not enough memory';

/** The run's abort signal, made on first use; already aborted if the run was cancelled before. */
export function signalOf(run: ActiveRun): AbortSignal {
  if (!run.abort) {
    run.abort = new AbortController();
    if (run.cancelReason) run.abort.abort(cancelError(run.cancelReason));
  }
  return run.abort.signal;
}

export function cancelError(reason: CancelReason): Error {
  return new Error(reason === 'timeout' ? 'scenario timed out' : 'scenario interrupted');
}

export function isTable(v: unknown): boolean {
  return typeof v === 'object' && v !== null;
}

/** Lua's bare "not enough memory" says which limit was reached. */
export function withMemoryLimit(message: string, limitBytes: number): string {
  if (message === MEMORY_ERROR || message.endsWith(`: ${MEMORY_ERROR}`)) return `${message} (memory limit of ${formatBytes(limitBytes)} reached)`;
  return message;
}

export function cancelMessage(run: ActiveRun): string {
  return run.cancelReason === 'timeout' ? `timed out after ${formatDurationMs(run.task.timeoutMs)}` : 'interrupted';
}

export function luaError(message: string, location: string | undefined, traceback: string | undefined, assertion: boolean): SerializedError {
  const e: SerializedError = { name: assertion ? 'AssertionError' : 'LuaError', message };
  if (location) e.location = location;
  const tb = traceback ? cleanTraceback(traceback) : undefined;
  if (tb) e.stack = `${message}\n${tb}`;
  return e;
}

/** Drops the runtime's own frames so a traceback shows the scenario's. */
function cleanTraceback(tb: string): string | undefined {
  const lines = tb.split('\n').filter((l) => {
    const t = l.trim();
    return !t.startsWith('topas') && !t.startsWith('[C]: in function \'xpcall\'') && !t.startsWith('[C]: in ?') && t !== "[C]: in function 'error'" && t !== '(...tail calls...)';
  });
  return lines.length > 1 ? lines.join('\n') : undefined;
}

function formatBytes(n: number): string {
  if (n >= 1 << 20) return `${(n / (1 << 20)).toFixed(n % (1 << 20) === 0 ? 0 : 1)} MB`;
  if (n >= 1 << 10) return `${Math.round(n / 1024)} KB`;
  return `${n} B`;
}
