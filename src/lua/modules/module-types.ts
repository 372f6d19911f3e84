import type { EndpointMap } from '../../backends/backend';
import type { LogLevel, ScenarioTask } from '../../run/scenario-types';

/** What a module instance gets from the runtime; one context per scenario run. */
export interface LuaModuleContext {
  task: ScenarioTask;
  /** current endpoints (updated while the scenario runs) */
  endpoints(): EndpointMap;
  /** ask the main thread (e.g. `sut.applyService`); resolves with its answer */
  rpc(method: string, args: unknown[]): Promise<unknown>;
  log(level: LogLevel, message: string): void;
  /** aborted when the scenario ends or is cancelled */
  signal: AbortSignal;
  /** load mode (`topas load`): where `net` records every request it makes */
  metrics?: RequestMetricsSink;
}

/** One finished request, k6-style: tagged by name (opts.name, tags.name or the URL), method and status. */
export interface RequestMetricsSink {
  request(r: { name: string; method: string; status: number; durationMs: number; failed: boolean; bytesSent: number; bytesReceived: number }): void;
  /** WebSocket traffic (`net.ws`): messages sent and received (counters), connecting time (ms) */
  ws?(metric: 'ws_msgs_sent' | 'ws_msgs_received' | 'ws_connecting', value: number, name: string): void;
}

/**
 * One module instance per scenario. `exports` are JS functions callable from
 * Lua: they may return plain values or a Promise (the scenario's coroutine
 * waits for it), or throw (raised in Lua with the caller's file:line;
 * `LuaAssertionError` counts as a failed assertion). `shim`, when present, is
 * Lua source run with (exports, helpers) that returns the table `require`
 * hands out: the place for methods (`c:query`) and Lua-side sugar.
 */
export interface LuaModuleInstance {
  exports: Record<string, (...args: any[]) => unknown>;
  shim?: string;
  /** runs when the scenario ends, whatever the outcome */
  close?(): void | Promise<void>;
}

export type LuaModuleFactory = (ctx: LuaModuleContext) => LuaModuleInstance;

/** A thrown value that Lua reports as a failed expectation rather than an error. */
export class LuaAssertionError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'LuaAssertionError';
  }
}

