import type { CustomMetricSummary } from './scenario-metrics';
import type { SerializedError } from '../errors';
import type { EndpointMap } from '../backends/backend';

/** What one running instance sees as `instance` in Lua. */
export interface InstanceInfo {
  id: string;
  role: string;
  /** 1-based */
  index: number;
  count: number;
  params: Record<string, unknown>;
}

/** One scenario run handed to a worker. Everything here is structured-cloneable. */
export interface ScenarioTask {
  runId: string;
  /** absolute path of the .lua file; chunk names and error locations use its path relative to `baseDir` */
  file: string;
  /** the script's text, when the coordinator sends it (worker processes); else the worker reads `file` */
  source?: string;
  baseDir: string;
  /** the project folder require() and data files may not leave (the Git checkout for --git runs); baseDir if unset */
  rootDir?: string;
  /** display name (file name without folder, or role#index in a playbook) */
  name: string;
  timeoutMs: number;
  /** merged: --env, then app spec, then process env (env() looks here in that order) */
  env: Record<string, string>;
  instance: InstanceInfo;
  endpoints: EndpointMap;
  /** per-engine memory cap; runaway allocation becomes a Lua error */
  memoryLimitBytes: number;
  /** continue later steps after a failed one */
  continueOnFailure: boolean;
  /** a sync server this instance's `sync.*` calls go to directly (a playbook spread over runners); else rpc to the coordinator */
  sync?: { url: string; token?: string; group: string };
}

export type RunState = 'passed' | 'failed' | 'error' | 'timedOut' | 'interrupted';

export interface CheckTally {
  name: string;
  passed: number;
  failed: number;
}

export interface StepResult {
  name: string;
  state: 'passed' | 'failed' | 'skipped';
  durationMs: number;
  /** checks made inside this step */
  checks: CheckTally[];
  error?: SerializedError;
}

export interface ScenarioResult {
  runId: string;
  name: string;
  file: string;
  instance: InstanceInfo;
  state: RunState;
  startedAt: string;
  durationMs: number;
  steps: StepResult[];
  /** all checks of the scenario, by name (including those inside steps) */
  checks: CheckTally[];
  /** custom metrics the scenario added with require("metrics") */
  metrics?: CustomMetricSummary[];
  /** the error that ended the scenario (failed expect, Lua error, timeout), with `location` = `file.lua:LINE` */
  error?: SerializedError;
}

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

export interface LogLine {
  ts: number;
  runId: string;
  /** scenario name or instance id */
  source: string;
  level: LogLevel;
  message: string;
}

/** Progress events a scenario emits while it runs (for live output and the run log). */
export type ScenarioEvent =
  | { kind: 'step-start'; name: string; ts: number }
  | { kind: 'step-end'; name: string; ts: number; state: StepResult['state']; error?: SerializedError }
  | { kind: 'check'; name: string; ok: boolean; ts: number };
