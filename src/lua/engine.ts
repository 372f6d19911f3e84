import fs from 'node:fs';
import { createVuMetricsModule } from './vu-metrics-module';
import { ScenarioMetrics } from '../run/scenario-metrics';
import path from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { decorateFunction, LuaFactory, LuaMultiReturn, LuaReturn, LuaType, LuaEventMasks, LUA_REGISTRYINDEX } from 'wasmoon';
import type { LuaEngine, LuaGlobal, LuaThread } from 'wasmoon';
import type { EndpointMap } from '../backends/backend';
import type { SerializedError } from '../errors';
import type { CheckTally, LogLevel, LogLine, RunState, ScenarioEvent, ScenarioResult, ScenarioTask, StepResult } from '../run/scenario-types';
import { formatDurationMs } from '../util/duration';
import { getWasmLocation } from '../sea/assets';
import { ASSERT_MARK, ASYNC_MARK, ERR_MARK, PRELUDE_CHUNK, PRELUDE_LUA } from './prelude';
import { errorMessage, luaDurationMs, toLua, TO_LUA_STACK_SLOTS } from './lua-values';
import { jsonBindings } from './lua-json';
import { CheckedTableReader } from './lua-table-reader';
import { projectFileBindings } from './data-files';
import { getLuaModule, luaModuleNames, LuaAssertionError, type LuaModuleContext, type LuaModuleInstance } from './modules';
import { FastLua } from './vu-lua-api';

export interface LuaRuntimeOptions {
  onLog(line: LogLine): void;
  onEvent(runId: string, ev: ScenarioEvent): void;
  /** serves module calls that need the main thread (sut.*) */
  rpc(runId: string, method: string, args: unknown[]): Promise<unknown>;
  /** Lua instructions between two deadline checks */
  hookInstructionCount?: number;
}

type CancelReason = 'timeout' | 'interrupt';

interface OpenStep {
  name: string;
  startedMs: number;
  checks: Map<string, CheckTally>;
  continueOnFailure: boolean;
}

interface ActiveRun {
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

type MainOutcome = { kind: 'ok' } | { kind: 'error'; message: string; location?: string; traceback?: string };

const MEMORY_ERROR = 'not enough memory';

// one wasm module per thread; engines made from it are cheap
let sharedFactory: LuaFactory | undefined;
type WasmFn = (...args: any[]) => any;
let wasmExports: Record<string, WasmFn> | undefined;
export function luaFactory(): LuaFactory {
  if (sharedFactory) return sharedFactory;
  // wasmoon's emscripten build (with assertions) reaches every export through
  // a wrapper that asserts, looks the export up by name and calls it with
  // `apply(arguments)`: ~30 ns against ~5 ns for the export itself, tens of
  // calls per request in a load test. The exports are not exposed, so the
  // instance is picked up as the module is instantiated.
  const wa = (globalThis as unknown as { WebAssembly: { instantiate: (...a: unknown[]) => Promise<unknown> } }).WebAssembly;
  const original = wa.instantiate;
  wa.instantiate = function (this: unknown, ...args: unknown[]) {
    return original.apply(this, args).then((r) => {
      const exports = (r as { instance?: { exports: Record<string, WasmFn> } }).instance?.exports;
      if (exports && typeof exports.lua_resume === 'function' && typeof exports.luaL_ref === 'function') wasmExports = exports;
      return r;
    });
  };
  sharedFactory = new LuaFactory(getWasmLocation());
  void sharedFactory.getLuaModule().then(
    () => (wa.instantiate = original),
    () => (wa.instantiate = original),
  );
  return sharedFactory;
}

/** The Lua wasm module's own exports (`lua_settop`, `malloc`...), once an engine exists; undefined if they could not be picked up. */
export function luaWasmExports(): Record<string, WasmFn> | undefined {
  return wasmExports;
}

/**
 * One Lua engine hosting many scenarios at once, each in its own coroutine
 * with its own _ENV. Async JS work is yielded to the driver in `drive`, which
 * resumes the coroutine with the result; a count hook enforces deadlines and
 * cancellation even in `while true do end`.
 */
export class LuaRuntime {
  private readonly lua: LuaEngine['global']['lua'];
  private readonly global: LuaGlobal;
  /** the C API without wasmoon's wrappers, for the per-run path (see vu-lua-api.ts) */
  private readonly fast: FastLua;
  /** scenario sources as Lua strings in the registry: a run of a file pushes a reference, not its text */
  private readonly sourceRefs = new Map<string, number>();
  private current: ActiveRun | undefined;
  private readonly runs = new Map<string, ActiveRun>();
  private readonly resultPtr: number;
  private readonly hookPtr: number;
  private readonly checkPtr: number;
  private readonly hookCount: number;
  private readonly baselineBytes: number;
  private endpoints: EndpointMap | undefined;
  private closed = false;
  private crash: { runId: string; scenario: string; reason: string } | undefined;

  static async create(opts: LuaRuntimeOptions): Promise<LuaRuntime> {
    const engine = await luaFactory().createEngine({ traceAllocations: true, enableProxy: false, injectObjects: false, openStandardLibs: true });
    return new LuaRuntime(engine, opts);
  }

  private readonly mainRef: number;

  private constructor(
    engine: LuaEngine,
    private readonly opts: LuaRuntimeOptions,
  ) {
    this.global = engine.global;
    this.lua = engine.global.lua;
    this.global.registerTypeExtension(2, new CheckedTableReader(this.global));
    this.fast = new FastLua(this.global);
    this.hookCount = opts.hookInstructionCount ?? 1000;
    this.resultPtr = this.lua.module._malloc(4);
    this.hookPtr = this.lua.module.addFunction((L: number) => this.onHook(L), 'vii');

    const G = this.global.address;
    this.global.loadString(PRELUDE_LUA, PRELUDE_CHUNK);
    this.global.pushValue(this.preludeBindings());
    // check() is the hot binding of short scenarios: a raw C function, not wasmoon's wrapper
    this.checkPtr = this.lua.module.addFunction((L: number) => this.rawCheck(L), 'ii');
    this.lua.lua_pushcclosure(G, this.checkPtr, 0);
    this.fast.setfield(G, -2, 'check');
    const status = this.lua.lua_pcallk(G, 1, 1, 0, 0, null);
    if (status !== LuaReturn.Ok) {
      const msg = this.lua.lua_tolstring(G, -1, null);
      this.global.setTop(0);
      throw new Error(`lua prelude failed: ${msg}`);
    }
    this.mainRef = this.lua.luaL_ref(G, LUA_REGISTRYINDEX);
    this.global.setTop(0);
    this.baselineBytes = this.global.getMemoryUsed();
  }

  /**
   * Why the engine is unusable, if it is: a wasm trap (memory access out of
   * bounds, unreachable...) or a JS exception thrown through Lua's C frames
   * leaves the Lua state half-updated. The scenario that caused it fails, the
   * others on this engine stop, and the owner must make a fresh engine, in a
   * fresh thread: every engine of a thread shares one wasm memory.
   */
  get crashed(): string | undefined {
    return this.crash ? `the Lua engine crashed while running ${this.crash.scenario} (${this.crash.reason})` : undefined;
  }

  /** Runs one scenario to its end; never rejects (failures are in the result). */
  async run(task: ScenarioTask): Promise<ScenarioResult> {
    if (this.closed) throw new Error('lua runtime is closed');
    if (this.crash) throw new Error(`${this.crashed}; this engine takes no more scenarios`);
    if (this.runs.has(task.runId)) throw new Error(`run ${task.runId} is already running`);
    const startedMs = Date.now();
    let wake!: () => void;
    const cancelled = new Promise<void>((resolve) => (wake = resolve));
    const run: ActiveRun = {
      task,
      source: '',
      startedAt: new Date(startedMs),
      startedMs,
      deadlineMs: startedMs + task.timeoutMs,
      L: 0,
      threadRef: 0,
      wake,
      cancelled,
      checks: new Map(),
      steps: [],
      openSteps: [],
      blocked: false,
      assertions: new Set(),
      modules: [],
      endpoints: this.endpoints ?? task.endpoints,
    };
    this.runs.set(task.runId, run);
    let outcome: MainOutcome;
    try {
      run.source = task.source ?? (await readScenario(task.file));
      if (task.timeoutMs > 0 && Number.isFinite(task.timeoutMs)) {
        run.timer = setTimeout(() => this.cancelRun(run, 'timeout'), task.timeoutMs);
      } else {
        run.deadlineMs = Infinity;
      }
      outcome = await this.drive(run);
    } catch (err) {
      // a trap outside resume (pushing values, making the coroutine) breaks the engine as well
      if (err instanceof (globalThis as unknown as { WebAssembly: { RuntimeError: new () => Error } }).WebAssembly.RuntimeError) this.crashedBy(run, err);
      outcome = { kind: 'error', message: errorMessage(err) };
    }
    return this.finish(run, outcome);
  }

  /** Stops a run (at its next Lua instruction or pending await). */
  cancel(runId: string, reason: CancelReason): boolean {
    const run = this.runs.get(runId);
    if (!run) return false;
    this.cancelRun(run, reason);
    return true;
  }

  cancelAll(reason: CancelReason): void {
    for (const run of this.runs.values()) this.cancelRun(run, reason);
  }

  setEndpoints(map: EndpointMap): void {
    this.endpoints = map;
    for (const run of this.runs.values()) run.endpoints = map;
  }

  get activeRuns(): number {
    return this.runs.size;
  }

  /** Bytes the Lua heap uses now (all scenarios of this engine). */
  memoryUsedBytes(): number {
    return this.global.getMemoryUsed();
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.cancelAll('interrupt');
    // lua_close on a broken state traps again; the thread's end frees it all
    if (this.crash) return;
    this.lua.module.removeFunction(this.hookPtr);
    this.lua.module.removeFunction(this.checkPtr);
    this.lua.module._free(this.resultPtr);
    this.fast.dispose();
    this.global.close();
  }

  // ------------------------------------------------------------------ driver

  private cancelRun(run: ActiveRun, reason: CancelReason): void {
    if (run.cancelReason) return;
    run.cancelReason = reason;
    run.abort?.abort(cancelError(reason));
    run.wake();
  }

  private onHook(L: number): void {
    const run = this.current;
    if (!run) return;
    if (!run.cancelReason && Date.now() > run.deadlineMs) this.cancelRun(run, 'timeout');
    if (run.cancelReason) {
      this.lua.lua_pushstring(L, cancelMessage(run));
      this.lua.lua_error(L);
    }
  }

  private crashedBy(run: ActiveRun, err: unknown): void {
    if (this.crash) return;
    const reason = err instanceof Error ? `${err.name === 'Error' ? '' : `${err.name}: `}${err.message}` : String(err);
    this.crash = { runId: run.task.runId, scenario: run.task.name, reason };
    this.opts.onLog({ ts: Date.now(), runId: run.task.runId, source: run.task.name, level: 'error', message: `${this.crashed}; the engine is discarded` });
    // the others stop at their next await; none resumes on the broken state
    for (const other of this.runs.values()) if (other !== run) other.wake();
  }

  private updateMemoryMax(): void {
    let limit = 0;
    for (const r of this.runs.values()) limit = Math.max(limit, r.task.memoryLimitBytes || 0);
    this.global.setMemoryMax(limit > 0 ? this.baselineBytes + limit : undefined);
  }

  private resume(L: number, nargs: number): { status: LuaReturn; nres: number } {
    const status = this.fast.resume(L, nargs) as LuaReturn;
    return { status, nres: this.fast.nres };
  }

  /** Pushes a scenario's source: a registry reference to one Lua string per text (bounded; long strings are not interned). */
  private pushSource(L: number, source: string): void {
    const f = this.fast;
    let ref = this.sourceRefs.get(source);
    if (ref === undefined) {
      if (this.sourceRefs.size >= MAX_SOURCE_REFS) {
        for (const old of this.sourceRefs.values()) f.unref(this.global.address, old);
        this.sourceRefs.clear();
      }
      f.pushstring(L, source);
      this.lua.lua_pushvalue(L, -1);
      ref = f.ref(L);
      this.sourceRefs.set(source, ref);
      return;
    }
    f.pushref(L, ref);
  }

  private async drive(run: ActiveRun): Promise<MainOutcome> {
    const lua = this.lua;
    const G = this.global.address;
    if (this.crash) return { kind: 'error', message: 'stopped' };
    // pushes allocate outside any protected call: never let the cap hit there
    this.global.setMemoryMax(undefined);
    const f = this.fast;
    const t = f.newthread(G);
    run.L = t.L;
    run.threadRef = t.ref;
    lua.lua_sethook(run.L, this.hookPtr, LuaEventMasks.Count, this.hookCount);
    const L = run.L;
    const thread = this.global.stateToThread(L);
    f.pushref(L, this.mainRef);
    this.pushSource(L, run.source);
    f.pushstring(L, cachedChunkName(run.task));
    // instance params come from a playbook: push makes room for their nesting
    f.push(L, toLua(run.task.instance));
    let nargs = 3;
    for (;;) {
      this.updateMemoryMax();
      this.current = run;
      let res: { status: LuaReturn; nres: number };
      try {
        res = this.resume(L, nargs);
      } catch (err) {
        // a throw out of lua_resume skipped Lua's own unwinding: the state is broken
        this.current = undefined;
        this.crashedBy(run, err);
        return { kind: 'error', message: errorMessage(err) };
      } finally {
        this.current = undefined;
        if (!this.crash) this.global.setMemoryMax(undefined);
      }
      if (res.status === LuaReturn.Yield) {
        const first = res.nres > 0 && f.type(L, -res.nres) === LuaType.String ? f.tostring(L, -res.nres) : undefined;
        f.settop(L, 0);
        if (run.cancelReason) return { kind: 'error', message: cancelMessage(run) };
        if (first === ASYNC_MARK) {
          const pending = run.pending;
          run.pending = undefined;
          nargs = await this.settlePending(run, thread, pending);
        } else {
          // a bare coroutine.yield at the top level: let others run, then go on
          await Promise.race([new Promise((r) => setImmediate(r)), run.cancelled]);
          nargs = 0;
        }
        if (run.cancelReason) return { kind: 'error', message: cancelMessage(run) };
        if (this.crash) return { kind: 'error', message: 'stopped' };
        continue;
      }
      if (res.status === LuaReturn.Ok) {
        // scenario_main returns (kind, message, location, traceback): strings or nil
        const base = f.gettop(L) - res.nres + 1;
        const val = (i: number): unknown => (i < res.nres ? f.read(L, base + i) : undefined);
        const kind = val(0);
        if (kind === 'ok') {
          f.settop(L, 0);
          return { kind: 'ok' };
        }
        const message = val(1);
        const location = val(2);
        const traceback = val(3);
        f.settop(L, 0);
        return { kind: 'error', message: String(message ?? 'error'), location: (location as string | undefined) ?? undefined, traceback: (traceback as string | undefined) ?? undefined };
      }
      // an error that escaped scenario_main's xpcall (memory, or raised before it)
      const message = lua.lua_type(L, -1) === LuaType.String ? lua.lua_tolstring(L, -1, null) : `Lua error (${LuaReturn[res.status]})`;
      lua.lua_settop(L, 0);
      return { kind: 'error', message };
    }
  }

  /** Waits for the promise a JS function started; pushes (ok, values...) and returns how many. */
  private async settlePending(run: ActiveRun, thread: ReturnType<LuaGlobal['stateToThread']>, pending: Promise<unknown> | undefined): Promise<number> {
    let pushes: unknown[];
    try {
      const value = await Promise.race([pending, run.cancelled]);
      if (run.cancelReason || this.crash) return 0;
      if (value instanceof LuaMultiReturn) pushes = [true, ...value.map((v) => toLua(v))];
      else pushes = [true, toLua(value)];
    } catch (err) {
      pushes = [err instanceof LuaAssertionError ? 'assert' : false, errorMessage(err)];
    }
    if (this.crash) return 0;
    if (pushes.some(isTable)) this.makeRoom(thread.address, pushes.length);
    for (const v of pushes) thread.pushValue(v);
    return pushes.length;
  }

  private async finish(run: ActiveRun, outcome: MainOutcome): Promise<ScenarioResult> {
    const task = run.task;
    if (run.timer) clearTimeout(run.timer);
    if (run.abort && !run.abort.signal.aborted) run.abort.abort(new Error('scenario ended'));
    for (const m of run.modules.reverse()) {
      try {
        await Promise.race([Promise.resolve(m.close?.()), delay(5000)]);
      } catch (err) {
        this.emitLog(run, 'warn', `closing a module failed: ${errorMessage(err)}`);
      }
    }
    if (run.threadRef && !this.crash) this.lua.luaL_unref(this.global.address, LUA_REGISTRYINDEX, run.threadRef);
    this.runs.delete(task.runId);

    let state: RunState;
    let error: SerializedError | undefined;
    if (this.crash) {
      state = 'error';
      const mine = this.crash.runId === task.runId;
      error = {
        name: 'LuaEngineCrash',
        message: mine
          ? `${task.name} crashed the Lua engine (${this.crash.reason}); the engine was discarded and later scenarios run on a fresh one`
          : `${task.name} was stopped: ${this.crashed}`,
      };
    } else if (run.cancelReason) {
      state = run.cancelReason === 'timeout' ? 'timedOut' : 'interrupted';
      const loc = outcome.kind === 'error' ? outcome.location : undefined;
      error = {
        name: run.cancelReason === 'timeout' ? 'TimeoutError' : 'InterruptedError',
        code: run.cancelReason === 'timeout' ? 'TIMEOUT' : 'INTERRUPTED',
        message: run.cancelReason === 'timeout' ? `${task.name} timed out after ${formatDurationMs(task.timeoutMs)}${loc ? ` (at ${loc})` : ''}` : `${task.name} was interrupted${loc ? ` (at ${loc})` : ''}`,
        ...(loc ? { location: loc } : {}),
      };
    } else if (outcome.kind === 'error') {
      const isAssertion = run.assertions.has(outcome.message);
      const message = withMemoryLimit(outcome.message, task.memoryLimitBytes);
      state = isAssertion ? 'failed' : 'error';
      error = luaError(message, outcome.location, outcome.traceback, isAssertion);
      if (isAssertion) error.name = 'AssertionError';
    } else {
      const failedCheck = [...run.checks.values()].some((c) => c.failed > 0);
      const failedStep = run.steps.some((s) => s.state === 'failed');
      state = failedStep || failedCheck ? 'failed' : 'passed';
      if (failedStep) error = run.firstStepError;
      else if (failedCheck) {
        const names = [...run.checks.values()].filter((c) => c.failed > 0).map((c) => `"${c.name}" (${c.failed} failed)`);
        error = { name: 'CheckFailed', message: `check${names.length > 1 ? 's' : ''} failed: ${names.join(', ')}` };
      }
    }
    // steps still open when the scenario stopped
    for (const s of run.openSteps.splice(0).reverse()) {
      run.steps.push({ name: s.name, state: 'failed', durationMs: Date.now() - s.startedMs, checks: [...s.checks.values()], error });
    }
    return {
      runId: task.runId,
      name: task.name,
      file: task.file,
      instance: task.instance,
      state,
      startedAt: run.startedAt.toISOString(),
      durationMs: Date.now() - run.startedMs,
      steps: run.steps,
      checks: [...run.checks.values()],
      ...(run.metrics ? { metrics: run.metrics.summary() } : {}),
      ...(error ? { error } : {}),
    };
  }

  // ------------------------------------------------------------------ bindings

  private emitLog(run: ActiveRun, level: LogLevel, message: string): void {
    this.opts.onLog({ ts: Date.now(), runId: run.task.runId, source: run.task.name, level, message });
  }

  private emit(run: ActiveRun, ev: ScenarioEvent): void {
    this.opts.onEvent(run.task.runId, ev);
  }

  private tally(map: Map<string, CheckTally>, name: string, ok: boolean): void {
    let t = map.get(name);
    if (!t) {
      t = { name, passed: 0, failed: 0 };
      map.set(name, t);
    }
    if (ok) t.passed++;
    else t.failed++;
  }

  /** check(name, ok) from the prelude (a string and a boolean); raises like any binding outside a scenario */
  private rawCheck(L: number): number {
    const run = this.current;
    if (!run) {
      this.fast.pushstring(L, 'called outside a running scenario');
      this.lua.lua_error(L);
      return 0;
    }
    this.recordCheck(run, this.fast.tostring(L, 1), this.fast.toboolean(L, 2));
    return 0;
  }

  private recordCheck(run: ActiveRun, name: string, ok: boolean): void {
    this.tally(run.checks, name, ok);
    for (const s of run.openSteps) this.tally(s.checks, name, ok);
    this.emit(run, { kind: 'check', name, ok, ts: Date.now() });
  }

  /** Wraps a JS function for Lua: promises become ASYNC, throws become ERR/ASSERT. */
  private wrapJs(fn: (...args: any[]) => unknown): unknown {
    // the calling coroutine: a nested table result needs room on its stack
    return decorateFunction((thread: LuaThread, ...args: unknown[]) => {
      const run = this.current;
      try {
        const r = fn(...args);
        if (r instanceof Promise || (typeof r === 'object' && r !== null && typeof (r as { then?: unknown }).then === 'function')) {
          if (!run) throw new Error('async call outside a scenario');
          // a real promise (thenables included), so late rejections of work whose scenario was cancelled can be swallowed
          const p = r instanceof Promise ? r : Promise.resolve(r as PromiseLike<unknown>);
          run.pending = p;
          p.catch(() => undefined);
          return ASYNC_MARK;
        }
        if (r instanceof LuaMultiReturn) {
          const vals = r.map((v) => toLua(v));
          if (vals.some(isTable)) this.makeRoom(thread.address, vals.length);
          return LuaMultiReturn.of(...vals);
        }
        const v = toLua(r);
        if (isTable(v)) this.makeRoom(thread.address, 1);
        return v;
      } catch (err) {
        return LuaMultiReturn.of(err instanceof LuaAssertionError ? ASSERT_MARK : ERR_MARK, errorMessage(err));
      }
    }, { receiveThread: true });
  }

  private makeRoom(L: number, values: number): void {
    if (!this.lua.lua_checkstack(L, TO_LUA_STACK_SLOTS + values)) throw new Error('not enough Lua stack for the result');
  }

  private preludeBindings(): Record<string, unknown> {
    const need = (): ActiveRun => {
      const run = this.current;
      if (!run) throw new Error('called outside a running scenario');
      return run;
    };
    return {
      ASYNC: ASYNC_MARK,
      ERR: ERR_MARK,
      ASSERT: ASSERT_MARK,
      log: (level: LogLevel, message: string) => {
        const run = this.current;
        if (run) this.emitLog(run, level, message);
      },
      assert_failed: (message: string) => this.recordCheck(need(), message, false),
      assertion: (message: string) => {
        need().assertions.add(message);
      },
      step_begin: (name: string, continueOnFailure: boolean) => {
        const run = need();
        const now = Date.now();
        if (run.blocked && !continueOnFailure) {
          run.steps.push({ name, state: 'skipped', durationMs: 0, checks: [] });
          this.emit(run, { kind: 'step-end', name, ts: now, state: 'skipped' });
          return false;
        }
        run.openSteps.push({ name, startedMs: now, checks: new Map(), continueOnFailure: continueOnFailure || run.task.continueOnFailure });
        this.emit(run, { kind: 'step-start', name, ts: now });
        return true;
      },
      step_end: (name: string, ok: boolean, message?: string | null, location?: string | null, traceback?: string | null) => {
        const run = need();
        const open = run.openSteps.pop();
        const now = Date.now();
        const step: StepResult = {
          name,
          state: ok ? 'passed' : 'failed',
          durationMs: open ? now - open.startedMs : 0,
          checks: open ? [...open.checks.values()] : [],
        };
        if (!ok) {
          const msg = run.cancelReason ? cancelMessage(run) : withMemoryLimit(String(message ?? 'step failed'), run.task.memoryLimitBytes);
          step.error = luaError(msg, location ?? undefined, traceback ?? undefined, run.assertions.has(String(message)));
          if (!run.firstStepError) run.firstStepError = step.error;
          if (!open?.continueOnFailure) run.blocked = true;
        } else if (open && [...open.checks.values()].some((c) => c.failed > 0)) {
          // a step whose checks failed is a failed step, though it ran to its end
          step.state = 'failed';
          const names = [...open.checks.values()].filter((c) => c.failed > 0).map((c) => `"${c.name}"`);
          step.error = { name: 'CheckFailed', message: `check failed: ${names.join(', ')}` };
          // checks are non-fatal: later steps still run
          if (!run.firstStepError) run.firstStepError = step.error;
        }
        run.steps.push(step);
        this.emit(run, { kind: 'step-end', name, ts: now, state: step.state, ...(step.error ? { error: step.error } : {}) });
        return run.cancelReason !== undefined;
      },
      sleep: this.wrapJs((d: unknown) => {
        const run = need();
        const ms = luaDurationMs(d, 'sleep') ?? 0;
        return delay(ms, undefined, { signal: signalOf(run) });
      }),
      env: (name: string) => {
        const v = need().task.env[name];
        return v === undefined ? undefined : v;
      },
      ...jsonBindings(),
      ...projectFileBindings(() => need().task, (f) => this.wrapJs(f)),
      require: this.wrapJs((name: string) => {
        const run = need();
        if (name === 'metrics') {
          const inst = createVuMetricsModule((run.metrics ??= new ScenarioMetrics()));
          return LuaMultiReturn.of<unknown>(Object.fromEntries(Object.entries(inst.exports).map(([k, f]) => [k, this.wrapJs(f)])), inst.shim);
        }
        const factory = getLuaModule(name);
        if (!factory) throw new Error(`module '${name}' not found (available: ${[...luaModuleNames(), 'metrics'].join(', ')})`);
        const ctx: LuaModuleContext = {
          task: run.task,
          endpoints: () => run.endpoints,
          rpc: (method, args) => this.opts.rpc(run.task.runId, method, args),
          log: (level, message) => this.emitLog(run, level, message),
          signal: signalOf(run),
        };
        const inst = factory(ctx);
        run.modules.push(inst);
        const exportsTable: Record<string, unknown> = {};
        for (const [k, f] of Object.entries(inst.exports)) exportsTable[k] = this.wrapJs(f);
        return LuaMultiReturn.of<unknown>(exportsTable, inst.shim);
      }),
    };
  }
}

/** The run's abort signal, made on first use; already aborted if the run was cancelled before. */
function signalOf(run: ActiveRun): AbortSignal {
  if (!run.abort) {
    run.abort = new AbortController();
    if (run.cancelReason) run.abort.abort(cancelError(run.cancelReason));
  }
  return run.abort.signal;
}

function cancelError(reason: CancelReason): Error {
  return new Error(reason === 'timeout' ? 'scenario timed out' : 'scenario interrupted');
}

function isTable(v: unknown): boolean {
  return typeof v === 'object' && v !== null;
}

/** Lua's bare "not enough memory" says which limit was reached. */
function withMemoryLimit(message: string, limitBytes: number): string {
  if (message === MEMORY_ERROR || message.endsWith(`: ${MEMORY_ERROR}`)) return `${message} (memory limit of ${formatBytes(limitBytes)} reached)`;
  return message;
}

function cancelMessage(run: ActiveRun): string {
  return run.cancelReason === 'timeout' ? `timed out after ${formatDurationMs(run.task.timeoutMs)}` : 'interrupted';
}

const MAX_SOURCE_REFS = 64;

// a run of many instances names the same file thousands of times
const chunkNames = new Map<string, string>();
function cachedChunkName(task: { file: string; baseDir: string }): string {
  const key = `${task.baseDir}\0${task.file}`;
  let name = chunkNames.get(key);
  if (name === undefined) {
    name = chunkName(task);
    if (chunkNames.size >= 1000) chunkNames.clear();
    chunkNames.set(key, name);
  }
  return name;
}

/** Chunk name: the file relative to baseDir, with forward slashes. */
export function chunkName(task: { file: string; baseDir: string }): string {
  const rel = path.relative(task.baseDir, task.file);
  return (rel && !rel.startsWith('..') ? rel : task.file).split(path.sep).join('/');
}

// scenario files are read once per worker: load tests start thousands of runs of one file
const sourceCache = new Map<string, { mtimeMs: number; source: string }>();
async function readScenario(file: string): Promise<string> {
  // statSync: a few µs, where an async stat's thread-pool round trip costs a run's whole budget
  const st = fs.statSync(file);
  const hit = sourceCache.get(file);
  if (hit && hit.mtimeMs === st.mtimeMs) return hit.source;
  const source = await fs.promises.readFile(file, 'utf8');
  sourceCache.set(file, { mtimeMs: st.mtimeMs, source });
  return source;
}

function luaError(message: string, location: string | undefined, traceback: string | undefined, assertion: boolean): SerializedError {
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

