import { LuaMultiReturn, LuaReturn, LuaType, LuaEventMasks, LUA_REGISTRYINDEX } from 'wasmoon';
import type { LuaEngine, LuaGlobal } from 'wasmoon';
import { setTimeout as delay } from 'node:timers/promises';
import type { EndpointMap } from '../backends/backend';
import type { SerializedError } from '../errors';
import type { LogLine, RunState, ScenarioEvent, ScenarioResult, ScenarioTask } from '../run/scenario-types';
import { formatDurationMs } from '../util/duration';
import { ASYNC_MARK, PRELUDE_CHUNK, PRELUDE_LUA } from './prelude';
import { errorMessage, toLua } from './lua-values';
import { CheckedTableReader } from './lua-table-reader';
import { LuaAssertionError } from './modules';
import { FastLua } from './vu-lua-api';
import { luaFactory } from './lua-factory';
import { cachedChunkName, readScenario } from './scenario-files';
import { ScenarioBindings } from './scenario-bindings';
import { cancelError, cancelMessage, isTable, luaError, withMemoryLimit, type ActiveRun, type CancelReason, type MainOutcome } from './scenario-run';

export interface LuaRuntimeOptions {
  onLog(line: LogLine): void;
  onEvent(runId: string, ev: ScenarioEvent): void;
  /** serves module calls that need the main thread (sut.*) */
  rpc(runId: string, method: string, args: unknown[]): Promise<unknown>;
  /** Lua instructions between two deadline checks */
  hookInstructionCount?: number;
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
  /** the run in progress (the bindings work on it) */
  private readonly at: { current: ActiveRun | undefined } = { current: undefined };
  private readonly runs = new Map<string, ActiveRun>();
  private readonly resultPtr: number;
  private readonly hookPtr: number;
  /** the prelude's bindings, working on the run in progress */
  private readonly bindings: ScenarioBindings;
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
    this.bindings = new ScenarioBindings(this.lua, this.fast, opts, this.at);
    this.hookCount = opts.hookInstructionCount ?? 1000;
    this.resultPtr = this.lua.module._malloc(4);
    this.hookPtr = this.lua.module.addFunction((L: number) => this.onHook(L), 'vii');

    const G = this.global.address;
    this.global.loadString(PRELUDE_LUA, PRELUDE_CHUNK);
    this.bindings.pushTable(this.global);
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
    this.bindings.close();
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
    const run = this.at.current;
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
      this.at.current = run;
      let res: { status: LuaReturn; nres: number };
      try {
        res = this.resume(L, nargs);
      } catch (err) {
        // a throw out of lua_resume skipped Lua's own unwinding: the state is broken
        this.at.current = undefined;
        this.crashedBy(run, err);
        return { kind: 'error', message: errorMessage(err) };
      } finally {
        this.at.current = undefined;
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
    if (pushes.some(isTable)) this.bindings.makeRoom(thread.address, pushes.length);
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
        this.bindings.emitLog(run, 'warn', `closing a module failed: ${errorMessage(err)}`);
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
}

const MAX_SOURCE_REFS = 64;
