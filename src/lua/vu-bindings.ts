import { setTimeout as delay } from 'node:timers/promises';
import { LuaMultiReturn } from 'wasmoon';
import type { LuaGlobal } from 'wasmoon';
import type { EndpointMap } from '../backends/backend';
import type { LogLevel, ScenarioTask } from '../run/scenario-types';
import { ASSERT_MARK, ASYNC_MARK, ERR_MARK } from './prelude';
import { errorMessage, luaDurationMs, toLua } from './lua-values';
import { getLuaModule, luaModuleNames, LuaAssertionError, type LuaModuleContext, type LuaModuleInstance } from './modules';
import { createVuMetricsModule } from './vu-metrics-module';
import type { FastLua } from './vu-lua-api';
import { jsonBindings } from './lua-json';
import { projectFileBindings } from './data-files';
import { Deferred } from './deferred';
import type { Vu } from './vu';
import type { VuHostOptions } from './vu-host';

/** What the host and its bindings share: the VU running now, and the endpoints its modules see. */
export interface VuCursor {
  current: Vu | undefined;
  endpoints: EndpointMap;
}

/**
 * What a VU's Lua calls into JS: the prelude's bindings table, and require()
 * and check() and module exports as raw C bindings, which bypass wasmoon's
 * function wrapper (they run on every iteration). Bindings are made once per
 * host and call into the VU running now (cursor.current).
 */
export class VuBindings {
  /** one C function for every raw binding; its upvalue indexes rawFns */
  readonly dispatchPtr: number;
  private readonly rawFns: Array<(L: number) => number> = [];
  /** "module\0export" -> its raw binding (rawFns index), one for every VU: it calls the running VU's instance */
  private readonly exportFns = new Map<string, number>();
  /** "module\0export,export..." -> the table of those bindings, in the registry: one per host, not per VU */
  private readonly exportTables = new Map<string, number>();
  /** ASYNC_MARK as a Lua string kept in the registry: pushed by reference, recognized by address */
  private readonly asyncRef: number;
  readonly asyncPtr: number;
  private readonly lua: LuaGlobal['lua'];

  constructor(
    private readonly global: LuaGlobal,
    private readonly fast: FastLua,
    private readonly opts: VuHostOptions,
    private readonly cursor: VuCursor,
  ) {
    this.lua = global.lua;
    this.dispatchPtr = this.lua.module.addFunction((L: number) => this.dispatch(L), 'ii');
    const G = global.address;
    // short strings are interned, so every ASYNC the prelude or a binding yields is this one string
    fast.pushstring(G, ASYNC_MARK);
    this.asyncPtr = fast.stringptr(G, -1);
    this.asyncRef = fast.ref(G);
  }

  /** Pushes the prelude's argument: the bindings table, with the raw require and check. */
  pushTable(): void {
    const G = this.global.address;
    this.global.pushValue(this.bindings());
    // the per-iteration bindings bypass wasmoon's function wrapper
    this.fast.pushclosure(G, this.dispatchPtr, this.register((L) => this.rawRequire(L)));
    this.fast.setfield(G, -2, 'require');
    this.fast.pushclosure(G, this.dispatchPtr, this.register((L) => this.rawCheck(L)));
    this.fast.setfield(G, -2, 'check');
  }

  close(): void {
    this.lua.module.removeFunction(this.dispatchPtr);
  }

  private register(fn: (L: number) => number): number {
    this.rawFns.push(fn);
    return this.rawFns.length - 1;
  }

  /** The one C function behind every raw binding: never lets a JS exception unwind through wasm. */
  private dispatch(L: number): number {
    try {
      return this.rawFns[this.fast.upvalue(L)](L);
    } catch (err) {
      this.fast.pushstring(L, ERR_MARK);
      this.fast.pushstring(L, errorMessage(err));
      return 2;
    }
  }

  /**
   * The raw binding of a module's export, made once per host rather than per
   * VU (thousands of VUs, a dozen exports each): it calls the export of the
   * VU running now, the only one that can reach its module table.
   */
  private exportBinding(module: string, key: string): number {
    const id = `${module}\0${key}`;
    let index = this.exportFns.get(id);
    if (index === undefined) {
      const call = this.rawExport((vu) => vu.instances.get(module)?.exports[key]);
      index = this.register(call);
      this.exportFns.set(id, index);
    }
    return index;
  }

  /** A module export as a raw binding: same contract as wrapJs (ASYNC / ERR / ASSERT). */
  private rawExport(exportOf: (vu: Vu) => ((...args: any[]) => unknown) | undefined): (L: number) => number {
    const f = this.fast;
    return (L: number) => {
      const n = f.gettop(L);
      try {
        const vu = this.cursor.current;
        if (!vu) throw new Error('a module function was called outside a VU');
        const fn = exportOf(vu);
        if (!fn) throw new Error('a module function was called outside its VU');
        let r: unknown;
        // the common cases without an arguments array, with the arity Lua called with
        if (n === 0) r = fn();
        else if (n === 1) r = fn(f.read(L, 1));
        else if (n === 2) r = fn(f.read(L, 1), f.read(L, 2));
        else if (n === 3) r = fn(f.read(L, 1), f.read(L, 2), f.read(L, 3));
        else if (n === 4) r = fn(f.read(L, 1), f.read(L, 2), f.read(L, 3), f.read(L, 4));
        else {
          const args: unknown[] = new Array(n);
          for (let i = 0; i < n; i++) args[i] = f.read(L, i + 1);
          r = fn(...args);
        }
        if (r instanceof Deferred || r instanceof Promise) {
          vu.pending = r;
          f.pushref(L, this.asyncRef);
          return 1;
        }
        if (r instanceof LuaMultiReturn) {
          for (const v of r) f.push(L, v);
          return r.length;
        }
        f.push(L, r);
        return 1;
      } catch (err) {
        f.pushstring(L, err instanceof LuaAssertionError ? ASSERT_MARK : ERR_MARK);
        f.pushstring(L, errorMessage(err));
        return 2;
      }
    };
  }

  private rawCheck(L: number): number {
    const name = this.fast.tostring(L, 1);
    this.opts.onCheck?.(name, this.fast.toboolean(L, 2));
    return 0;
  }

  private rawRequire(L: number): number {
    const f = this.fast;
    const name = String(f.read(L, 1));
    const vu = this.cursor.current;
    if (!vu) throw new Error('require called outside a VU');
    const inst = this.moduleInstance(vu, name);
    vu.modules.push(inst);
    vu.instances.set(name, inst);
    // the bindings call the running VU's instance, so every VU can get the same table
    // (only the prelude and the module's shim see it: the script gets the shim's table or its own copy)
    const keys = Object.keys(inst.exports);
    const tableId = `${name}\0${keys.join(',')}`;
    const ref = this.exportTables.get(tableId);
    if (ref !== undefined) f.pushref(L, ref);
    else {
      f.newtable(L);
      for (const k of keys) {
        f.pushclosure(L, this.dispatchPtr, this.exportBinding(name, k));
        f.setfield(L, -2, k);
      }
      this.lua.lua_pushvalue(L, -1);
      this.exportTables.set(tableId, f.ref(L));
    }
    if (inst.shim) f.pushstring(L, inst.shim);
    else f.pushnil(L);
    return 2;
  }

  /** The module's factory; throws what require reports for a module that is not there. */
  private moduleFactory(name: string): (ctx: LuaModuleContext) => LuaModuleInstance {
    const custom = this.opts.custom;
    if (name === 'metrics') {
      if (!custom) throw new Error("module 'metrics' is only available under `topas load`");
      return () => createVuMetricsModule(custom);
    }
    const factory = getLuaModule(name);
    if (!factory) throw new Error(`module '${name}' not found (available: ${[...luaModuleNames(), 'metrics'].join(', ')})`);
    return factory;
  }

  private moduleInstance(vu: Vu, name: string): LuaModuleInstance {
    const opts = this.opts;
    const factory = this.moduleFactory(name);
    const ctx: LuaModuleContext = {
      task: this.taskFor(vu),
      endpoints: () => this.cursor.endpoints,
      rpc: (method, args) => opts.rpc(method, args),
      log: (level, message) => opts.log(level, vu.name, message),
      signal: vu.abort.signal,
      metrics: opts.requests,
    };
    return factory(ctx);
  }

  /** Wraps a JS function for Lua: promises become ASYNC, throws become ERR/ASSERT. */
  private wrapJs(fn: (...args: any[]) => unknown): (...args: unknown[]) => unknown {
    return (...args: unknown[]) => {
      const vu = this.cursor.current;
      try {
        const r = fn(...args);
        if (r instanceof Deferred || r instanceof Promise) {
          if (!vu) throw new Error('async call outside a VU');
          vu.pending = r;
          return ASYNC_MARK;
        }
        if (r instanceof LuaMultiReturn) return LuaMultiReturn.of(...r.map((v) => toLua(v)));
        return toLua(r);
      } catch (err) {
        return LuaMultiReturn.of(err instanceof LuaAssertionError ? ASSERT_MARK : ERR_MARK, errorMessage(err));
      }
    };
  }

  private bindings(): Record<string, unknown> {
    const need = (): Vu => {
      const vu = this.cursor.current;
      if (!vu) throw new Error('called outside a VU');
      return vu;
    };
    const opts = this.opts;
    return {
      ASYNC: ASYNC_MARK,
      ERR: ERR_MARK,
      ASSERT: ASSERT_MARK,
      log: (level: LogLevel, message: string) => opts.log(level, this.cursor.current?.name ?? 'load', message),
      check: (name: string, ok: boolean) => opts.onCheck?.(name, ok),
      assert_failed: (message: string) => opts.onCheck?.(message, false),
      assertion: () => undefined,
      // steps are plain calls under load: their failure fails the iteration
      step_begin: () => true,
      step_end: () => false,
      sleep: this.wrapJs((d: unknown) => {
        const vu = need();
        const ms = luaDurationMs(d, 'sleep') ?? 0;
        return delay(ms, undefined, { signal: vu.abort.signal });
      }),
      env: (name: string) => opts.env[name],
      // modules are made on first use (prelude.ts lazy_module); require only checks the name
      module_check: this.wrapJs((name: unknown) => {
        this.moduleFactory(String(name));
        return true;
      }),
      ...jsonBindings(),
      ...projectFileBindings(() => opts, (f) => this.wrapJs(f)),
    };
  }

  private taskFor(vu: Vu): ScenarioTask {
    return {
      runId: vu.name,
      file: this.opts.file,
      baseDir: this.opts.baseDir,
      name: vu.name,
      timeoutMs: Infinity,
      env: this.opts.env,
      instance: { id: vu.name, role: 'load', index: vu.id, count: 0, params: {} },
      endpoints: this.cursor.endpoints,
      memoryLimitBytes: 0,
      continueOnFailure: true,
    };
  }
}
