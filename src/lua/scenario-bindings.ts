import { setTimeout as delay } from 'node:timers/promises';
import { decorateFunction, LuaMultiReturn } from 'wasmoon';
import type { LuaEngine, LuaThread } from 'wasmoon';
import { createVuMetricsModule } from './vu-metrics-module';
import { ScenarioMetrics } from '../run/scenario-metrics';
import type { CheckTally, LogLevel, ScenarioEvent, StepResult } from '../run/scenario-types';
import { ASSERT_MARK, ASYNC_MARK, ERR_MARK } from './prelude';
import { errorMessage, luaDurationMs, toLua, TO_LUA_STACK_SLOTS } from './lua-values';
import { jsonBindings } from './lua-json';
import { projectFileBindings } from './data-files';
import { getLuaModule, luaModuleNames, LuaAssertionError, type LuaModuleContext } from './modules';
import type { FastLua } from './vu-lua-api';
import { cancelMessage, isTable, luaError, signalOf, withMemoryLimit, type ActiveRun } from './scenario-run';
import type { LuaRuntimeOptions } from './engine';

/**
 * What a scenario's Lua calls into JS on a LuaRuntime (engine.ts): the
 * prelude's bindings (log, steps, checks, sleep, require...), made once per
 * engine; each works on the run in progress (cursor.current).
 */
export class ScenarioBindings {
  private checkPtr = 0;

  constructor(
    private readonly lua: LuaEngine['global']['lua'],
    private readonly fast: FastLua,
    private readonly opts: LuaRuntimeOptions,
    private readonly cursor: { current: ActiveRun | undefined },
  ) {}

  /** Pushes the prelude's argument: the bindings table, with check() as a raw C function. */
  pushTable(global: LuaEngine['global']): void {
    global.pushValue(this.preludeBindings());
    // check() is the hot binding of short scenarios: a raw C function, not wasmoon's wrapper
    this.checkPtr = this.lua.module.addFunction((L: number) => this.rawCheck(L), 'ii');
    this.lua.lua_pushcclosure(global.address, this.checkPtr, 0);
    this.fast.setfield(global.address, -2, 'check');
  }

  close(): void {
    this.lua.module.removeFunction(this.checkPtr);
  }

  emitLog(run: ActiveRun, level: LogLevel, message: string): void {
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
    const run = this.cursor.current;
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
      const run = this.cursor.current;
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

  makeRoom(L: number, values: number): void {
    if (!this.lua.lua_checkstack(L, TO_LUA_STACK_SLOTS + values)) throw new Error('not enough Lua stack for the result');
  }

  private preludeBindings(): Record<string, unknown> {
    const need = (): ActiveRun => {
      const run = this.cursor.current;
      if (!run) throw new Error('called outside a running scenario');
      return run;
    };
    return {
      ASYNC: ASYNC_MARK,
      ERR: ERR_MARK,
      ASSERT: ASSERT_MARK,
      log: (level: LogLevel, message: string) => {
        const run = this.cursor.current;
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
