import { setMaxListeners } from 'node:events';
import fs from 'node:fs';
import { setTimeout as delay } from 'node:timers/promises';
import { LuaMultiReturn, LuaReturn, LuaType, LUA_REGISTRYINDEX } from 'wasmoon';
import type { LuaEngine, LuaGlobal } from 'wasmoon';
import type { EndpointMap } from '../backends/backend';
import type { LogLevel, ScenarioTask } from '../run/scenario-types';
import { chunkName, luaFactory } from './engine';
import { ASSERT_MARK, ASYNC_MARK, ERR_MARK, PRELUDE_CHUNK, PRELUDE_LUA } from './prelude';
import { errorMessage, luaDurationMs, toLua } from './lua-values';
import { getLuaModule, luaModuleNames, LuaAssertionError, type LuaModuleContext, type LuaModuleInstance, type RequestMetricsSink } from './modules';
import { createVuMetricsModule, type CustomMetricsSink } from './vu-metrics-module';
import { FastLua } from './vu-lua-api';
import { jsonBindings } from './lua-json';
import { CheckedTableReader } from './lua-table-reader';
import { projectFileBindings } from './data-files';
import { Deferred } from './deferred';

/**
 * Virtual users for `topas load`: many VUs in one wasmoon engine, each with
 * its own _ENV and module instances, made once and reused for every
 * iteration. The script's top level runs once per VU (k6's init code) and
 * hands back a command function (run an iteration, setup, teardown); each VU
 * runs its commands in one coroutine of its own, reused after every command.
 *
 * The driver is callback-based rather than async/await: one iteration of a
 * one-request script costs one resume to the request, one promise, one resume
 * back. Lua's yields are JS exceptions in this wasm build (emscripten
 * setjmp/longjmp), so a command ends by returning, never by yielding, and the
 * iteration is called without a pcall frame (fewer wasm frames to unwind).
 */

/** What a VU reports after its script's top level ran. */
export interface VuScriptInfo {
  /** the script's global `options` (plain JS data) */
  options: unknown;
  hasIteration: boolean;
  hasSetup: boolean;
  hasTeardown: boolean;
}

export interface VuHostOptions {
  /** absolute path of the load script: its chunk name in errors and where require() looks */
  file: string;
  /** the script's text, read by the coordinator (a worker elsewhere need not see the file); read from `file` if unset */
  source?: string;
  baseDir: string;
  env: Record<string, string>;
  endpoints: EndpointMap;
  rpc(method: string, args: unknown[]): Promise<unknown>;
  log(level: LogLevel, source: string, message: string): void;
  /** every request `net` makes */
  requests?: RequestMetricsSink;
  /** check(name, ok) calls */
  onCheck?(name: string, ok: boolean): void;
  /** require("metrics") */
  custom?: CustomMetricsSink;
  /** Lua heap one VU may hold (DEFAULT_VU_MEMORY_LIMIT_BYTES if unset; 0: no cap) */
  memoryLimitBytes?: number;
}

/**
 * What one VU may hold on the Lua heap. Scenarios get 256 MiB each; a worker
 * hosts hundreds of VUs, so a VU gets less. Over it, the VU's iteration fails
 * and the load runner replaces the VU with a fresh one.
 */
export const DEFAULT_VU_MEMORY_LIMIT_BYTES = 64 * 1024 * 1024;
/**
 * What all VUs of a worker thread may hold together: many VUs each under
 * their own cap would still fill the engine (wasm memory tops out at 2 GiB,
 * and never shrinks). Over it, the VU holding the most is replaced.
 */
export const WORKER_MEMORY_LIMIT_BYTES = 1024 * 1024 * 1024;
const LEAK_HINT = 'does the script keep data across iterations, in globals or upvalues?';

/**
 * Measures what a VU holds: walks what its command function and coroutines
 * reach (its _ENV, upvalues, the locals of a suspended iteration), minus what
 * was there before any VU (globals, libraries, the prelude), and adds up an
 * estimate of each object's size. Run only when a meter says a VU may be over
 * its cap, which heap deltas alone cannot tell (garbage is freed wherever the
 * collector happens to run).
 */
const SIZER_LUA = String.raw`
local next, type, rawlen = next, type, rawlen
local getupvalue, getlocal, getinfo, getmetatable, getregistry = debug.getupvalue, debug.getlocal, debug.getinfo, debug.getmetatable, debug.getregistry
local shared = {}
local function walk(mark, ...)
  local seen = mark and shared or {}
  local stack, n, size = { ... }, select("#", ...), 0
  local function push(x)
    local t = type(x)
    if t == "string" then
      -- short strings are interned and small: counted, not deduplicated
      if #x <= 64 then size = size + 24 + #x; return end
    elseif t ~= "table" and t ~= "function" and t ~= "thread" then
      return
    end
    if seen[x] or shared[x] then return end
    seen[x] = true
    n = n + 1
    stack[n] = x
  end
  while n > 0 do
    local v = stack[n]
    stack[n] = nil
    n = n - 1
    local t = type(v)
    if t == "string" then
      size = size + 24 + #v
    elseif t == "table" then
      size = size + 56
      for k, x in next, v do
        size = size + 16
        push(k)
        push(x)
      end
      push(getmetatable(v))
    elseif t == "function" then
      size = size + 40
      for i = 1, 255 do
        local name, x = getupvalue(v, i)
        if name == nil then break end
        push(x)
      end
    elseif t == "thread" then
      size = size + 200
      local level = 0
      while getinfo(v, level, "l") do
        for i = 1, 250 do
          local name, x = getlocal(v, level, i)
          if name == nil then break end
          push(x)
        end
        level = level + 1
      end
    end
  end
  return size
end
shared[shared] = true
walk(true, getregistry(), _G, walk)
return function(...) return walk(false, ...) end
`;

export type VuCommandResult = { ok: true; value: unknown } | { ok: false; error: string };

// Appended to the script, which runs inside `do ... end` so a top-level
// `return` ends its block, not the VU setup; line 1 keeps its numbering.
const VU_PREFIX = 'local __topas_yield, __topas_xpcall, __topas_tostring = coroutine.yield, xpcall, tostring; do ';
const VU_LOOP = String.raw`
end
local __topas_ctx = { vu = 0, iteration = 0 }
-- every command runs in a fresh coroutine that returns when done: ending a
-- coroutine is cheap, while a yield unwinds the wasm stack (a JS exception)
local function __topas_run(cmd, a, b)
  if cmd >= 0 then
    -- no pcall: an error ends this coroutine, which the driver resets (one C frame less to unwind per yield)
    __topas_ctx.iteration = cmd
    iteration(__topas_ctx)
    return true
  elseif cmd == -1 then
    if setup ~= nil then return __topas_xpcall(setup, __topas_tostring) end
    return true
  elseif cmd == -2 then
    if teardown ~= nil then
      local ok, res = __topas_xpcall(teardown, __topas_tostring, a)
      if ok then return true end
      return false, res
    end
    return true
  elseif cmd == -3 then
    __topas_ctx.data = a
    __topas_ctx.vu = b
  end
  return true
end
__topas_yield(-1, options, iteration ~= nil, setup ~= nil, teardown ~= nil, __topas_run)
`;

const OK: VuCommandResult = Object.freeze({ ok: true, value: undefined }) as VuCommandResult;
const CMD_SETUP = -1;
const CMD_TEARDOWN = -2;
const CMD_CONTEXT = -3;
const YIELD_INIT = -1;

type VuState = 'init' | 'idle' | 'busy' | 'dead';

export class Vu {
  state: VuState = 'init';
  /** the coroutine running now: the init one, then one per command */
  L = 0;
  /** registry refs: the init coroutine, the VU's command function, the command coroutine */
  initRef = 0;
  runRef = 0;
  cmdRef = 0;
  cmdL = 0;
  pending: PromiseLike<unknown> | undefined;
  modules: LuaModuleInstance[] = [];
  /** the VU's instance of each module it required, by name: what the shared export bindings call into */
  readonly instances = new Map<string, LuaModuleInstance>();
  readonly abort = new AbortController();
  /** resolves the command in progress */
  onDone: ((r: VuCommandResult) => void) | undefined;
  /** async calls made during the command in progress */
  asyncCalls = 0;
  info: VuScriptInfo | undefined;
  onResolved: (value: unknown) => void = () => undefined;
  onRejected: (err: unknown) => void = () => undefined;
  /** the error that killed the VU, if it died */
  deathError: string | undefined;
  /**
   * Lua heap bytes put down to this VU: the heap's growth while it ran
   * (resumes, and the values pushed for them) since it was last measured.
   * Lua keeps no per-coroutine account (VUs share one heap), and a VU's
   * frees land on whoever runs the collector: over the cap, it is measured.
   */
  memBytes = 0;

  constructor(
    readonly id: number,
    readonly name: string,
  ) {
    // every request in flight listens on it; a VU may run many at once from coroutines
    setMaxListeners(0, this.abort.signal);
  }
}

export class VuHost {
  private readonly global: LuaGlobal;
  private readonly lua: LuaGlobal['lua'];
  private readonly fast: FastLua;
  /** one C function for every raw binding; its upvalue indexes rawFns */
  private readonly dispatchPtr: number;
  private readonly rawFns: Array<(L: number) => number> = [];
  /** "module\0export" -> its raw binding (rawFns index), one for every VU: it calls the running VU's instance */
  private readonly exportFns = new Map<string, number>();
  /** "module\0export,export..." -> the table of those bindings, in the registry: one per host, not per VU */
  private readonly exportTables = new Map<string, number>();
  private readonly mainRef: number;
  /** ASYNC_MARK as a Lua string kept in the registry: pushed by reference, recognized by address */
  private readonly asyncRef: number;
  private readonly asyncPtr: number;
  private current: Vu | undefined;
  private endpoints: EndpointMap;
  private readonly vus = new Set<Vu>();
  /** the script with the VU prefix and loop, in the registry */
  private sourceRef = 0;
  private readonly chunk: string;
  private closed = false;
  /** per-VU heap cap in bytes; 0: off */
  private memCap: number;
  /** cap on the whole heap (all VUs), when memCap is on */
  private readonly heapCap = WORKER_MEMORY_LIMIT_BYTES;
  /** the heap at the last point its growth was put down to a VU */
  private lastHeap = 0;
  /** a chunk running collectgarbage("collect"), in the registry */
  private gcRef = 0;
  /** SIZER_LUA's function, in the registry */
  private sizerRef = 0;

  static async create(opts: VuHostOptions): Promise<VuHost> {
    // no allocation tracing: it routes every Lua allocation through JS
    const engine = await luaFactory().createEngine({ traceAllocations: false, enableProxy: false, injectObjects: false, openStandardLibs: true });
    return new VuHost(engine, opts);
  }

  private constructor(
    engine: LuaEngine,
    private readonly opts: VuHostOptions,
  ) {
    this.global = engine.global;
    this.lua = engine.global.lua;
    this.global.registerTypeExtension(2, new CheckedTableReader(this.global));
    this.endpoints = opts.endpoints;
    this.chunk = chunkName({ file: opts.file, baseDir: opts.baseDir });
    this.fast = new FastLua(this.global);
    this.dispatchPtr = this.lua.module.addFunction((L: number) => this.dispatch(L), 'ii');
    const G = this.global.address;
    this.global.loadString(PRELUDE_LUA, PRELUDE_CHUNK);
    this.global.pushValue(this.bindings());
    // the per-iteration bindings bypass wasmoon's function wrapper
    this.fast.pushclosure(G, this.dispatchPtr, this.register((L) => this.rawRequire(L)));
    this.fast.setfield(G, -2, 'require');
    this.fast.pushclosure(G, this.dispatchPtr, this.register((L) => this.rawCheck(L)));
    this.fast.setfield(G, -2, 'check');
    const status = this.lua.lua_pcallk(G, 1, 1, 0, 0, null);
    if (status !== LuaReturn.Ok) {
      const msg = this.lua.lua_tolstring(G, -1, null);
      this.global.setTop(0);
      throw new Error(`lua prelude failed: ${msg}`);
    }
    this.mainRef = this.lua.luaL_ref(G, LUA_REGISTRYINDEX);
    this.global.setTop(0);
    // short strings are interned, so every ASYNC the prelude or a binding yields is this one string
    this.fast.pushstring(G, ASYNC_MARK);
    this.asyncPtr = this.fast.stringptr(G, -1);
    this.asyncRef = this.fast.ref(G);
    this.memCap = opts.memoryLimitBytes ?? DEFAULT_VU_MEMORY_LIMIT_BYTES;
    if (this.memCap > 0) this.setUpMemoryCap();
  }

  /** Checks that heapBytes reads what Lua counts (else the cap stays off), and keeps the collect chunk. */
  private setUpMemoryCap(): void {
    const G = this.global.address;
    this.global.loadString('return collectgarbage("count") * 1024', '=topas-heap');
    const counted = this.lua.lua_pcallk(G, 0, 1, 0, 0, null) === LuaReturn.Ok ? this.lua.lua_tonumberx(G, -1, null) : NaN;
    this.global.setTop(0);
    const read = this.fast.heapBytes();
    if (!(Math.abs(read - counted) < 64 * 1024)) {
      this.memCap = 0;
      this.opts.log('warn', 'load', `the VU memory cap is off: the Lua heap size could not be read (read ${read}, Lua counts ${counted})`);
      return;
    }
    this.global.loadString('collectgarbage("collect")', '=topas-gc');
    this.gcRef = this.fast.ref(G);
    this.global.loadString(SIZER_LUA, '=topas-sizer');
    if (this.lua.lua_pcallk(G, 0, 1, 0, 0, null) !== LuaReturn.Ok) {
      const why = this.lua.lua_tolstring(G, -1, null);
      this.global.setTop(0);
      this.memCap = 0;
      this.opts.log('warn', 'load', `the VU memory cap is off: ${why}`);
      return;
    }
    this.sizerRef = this.fast.ref(G);
    this.lastHeap = this.fast.heapBytes();
  }

  setEndpoints(map: EndpointMap): void {
    this.endpoints = map;
  }

  /** Makes a VU and runs the script's top level in it. */
  async createVu(id: number): Promise<Vu> {
    if (this.closed) throw new Error('the VU host is closed');
    if (!this.sourceRef) {
      // one Lua string for every VU: pushed by reference, not copied per VU (long strings are not interned)
      this.fast.pushstring(this.global.address, VU_PREFIX + (this.opts.source ?? fs.readFileSync(this.opts.file, 'utf8')) + VU_LOOP);
      this.sourceRef = this.fast.ref(this.global.address);
    }
    const vu = new Vu(id, `vu-${id}`);
    // made once per VU: the promise callbacks of every async call it makes
    vu.onResolved = (value: unknown) => this.resumeWith(vu, true, value);
    vu.onRejected = (err: unknown) => this.resumeWith(vu, false, err);
    const f = this.fast;
    const t = f.newthread(this.global.address);
    vu.L = t.L;
    vu.initRef = t.ref;
    this.vus.add(vu);
    const L = vu.L;
    f.pushref(L, this.mainRef);
    f.pushref(L, this.sourceRef);
    f.pushstring(L, this.chunk);
    f.push(L, { id: vu.name, role: 'load', index: id, count: 0, params: {} });
    const r = await new Promise<VuCommandResult>((resolve) => {
      vu.onDone = resolve;
      this.step(vu, 3);
    });
    if (!r.ok) {
      this.kill(vu);
      throw new Error(r.error);
    }
    return vu;
  }

  /** Sets ctx.data and ctx.vu for the VU's iterations (data is copied into Lua once). */
  setContext(vu: Vu, data: unknown, vuNumber: number): Promise<VuCommandResult> {
    return this.command(vu, CMD_CONTEXT, [data, vuNumber]);
  }

  /** Runs iteration(ctx) once; calls done when it ended (never throws). */
  runIteration(vu: Vu, n: number, done: (r: VuCommandResult) => void): void {
    if (vu.state !== 'idle') {
      done({ ok: false, error: vu.deathError ?? `VU ${vu.id} is ${vu.state}` });
      return;
    }
    vu.state = 'busy';
    vu.onDone = done;
    vu.asyncCalls = 0;
    this.startCommand(vu, n);
    this.step(vu, 1);
  }

  setup(vu: Vu): Promise<VuCommandResult> {
    return this.command(vu, CMD_SETUP, []);
  }

  teardown(vu: Vu, data: unknown): Promise<VuCommandResult> {
    return this.command(vu, CMD_TEARDOWN, [data]);
  }

  /** Aborts the VU's pending work (its next resume raises "interrupted"). */
  interrupt(vu: Vu): void {
    if (!vu.abort.signal.aborted) vu.abort.abort(new Error('interrupted: the load test is stopping'));
  }

  /**
   * Drops a VU at once: its Lua state is freed now (a full collection when
   * the memory cap is on), its modules close in the background.
   */
  discardVu(vu: Vu): void {
    this.interrupt(vu);
    this.kill(vu);
    if (this.memCap > 0 && !this.closed) this.collect();
    void this.closeModules(vu);
  }

  /** Releases a VU: its modules are closed, its coroutine freed. */
  async disposeVu(vu: Vu): Promise<void> {
    this.interrupt(vu);
    await this.closeModules(vu);
    this.kill(vu);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    for (const vu of [...this.vus]) {
      this.interrupt(vu);
      await this.closeModules(vu);
      this.kill(vu);
    }
    this.closed = true;
    this.fast.dispose();
    this.lua.module.removeFunction(this.dispatchPtr);
    this.global.close();
  }

  get size(): number {
    return this.vus.size;
  }

  /** Interrupts every VU, also one still running the script's top level. */
  interruptAll(): void {
    for (const vu of this.vus) this.interrupt(vu);
  }

  /** Bytes on the Lua heap (all VUs), or undefined when it cannot be read (the memory cap is off then). */
  heapBytes(): number | undefined {
    return this.memCap > 0 && !this.closed ? this.fast.heapBytes() : undefined;
  }

  // ------------------------------------------------------------------ driver

  private command(vu: Vu, cmd: number, args: unknown[]): Promise<VuCommandResult> {
    if (vu.state !== 'idle') return Promise.resolve({ ok: false, error: vu.deathError ?? `VU ${vu.id} is ${vu.state}` });
    vu.state = 'busy';
    return new Promise<VuCommandResult>((resolve) => {
      vu.onDone = resolve;
      this.startCommand(vu, cmd);
      for (const a of args) this.fast.push(vu.L, a);
      this.step(vu, 1 + args.length);
    });
  }

  private async closeModules(vu: Vu): Promise<void> {
    for (const m of vu.modules.splice(0).reverse()) {
      try {
        let timer: NodeJS.Timeout | undefined;
        const limit = new Promise<void>((resolve) => (timer = setTimeout(resolve, 5000)));
        await Promise.race([Promise.resolve(m.close?.()), limit]).finally(() => clearTimeout(timer));
      } catch (err) {
        this.opts.log('warn', vu.name, `closing a module failed: ${errorMessage(err)}`);
      }
    }
  }

  /**
   * Starts a command in the VU's command coroutine: one per VU, made once. A
   * coroutine whose function returned is empty and can start another
   * function; ending it costs nothing, while a yield unwinds the wasm stack.
   */
  private startCommand(vu: Vu, cmd: number): void {
    const f = this.fast;
    if (!vu.cmdRef) {
      const t = f.newthread(this.global.address);
      vu.cmdL = t.L;
      vu.cmdRef = t.ref;
    }
    vu.L = vu.cmdL;
    f.pushref(vu.L, vu.runRef);
    f.pushinteger(vu.L, cmd);
  }

  /** After a command failed outside its xpcall (memory, a cancelled yield): reset the coroutine. */
  private resetCommand(vu: Vu): void {
    if (vu.cmdL) this.fast.resetthread(vu.cmdL);
  }

  private kill(vu: Vu): void {
    if (!this.vus.has(vu)) return;
    this.vus.delete(vu);
    vu.state = 'dead';
    if (this.closed) return;
    const G = this.global.address;
    for (const ref of [vu.initRef, vu.runRef, vu.cmdRef]) if (ref) this.fast.unref(G, ref);
    vu.initRef = vu.runRef = vu.cmdRef = 0;
  }

  private finish(vu: Vu, r: VuCommandResult): void {
    const done = vu.onDone;
    vu.onDone = undefined;
    done?.(r);
  }

  /** Resumes the VU until it waits on a promise (then again later), goes idle, or ends. */
  private step(vu: Vu, nargs: number): void {
    const f = this.fast;
    const L = vu.L;
    const prev = this.current;
    this.current = vu;
    const cap = this.memCap;
    // what was pushed for this resume is the VU's
    if (cap > 0) this.credit(vu);
    let status: number;
    try {
      status = f.resume(L, nargs);
    } finally {
      this.current = prev;
    }
    const nres = f.nres;
    if (cap > 0) {
      this.credit(vu);
      if ((vu.memBytes > cap || this.lastHeap > this.heapCap) && this.overCap(vu)) return;
    }
    if (status === LuaReturn.Yield) {
      // absolute index of the first yielded value
      const base = f.gettop(L) - nres + 1;
      const t = nres > 0 ? f.type(L, base) : LuaType.None;
      if (t === LuaType.String) {
        const isAsync = f.stringptr(L, base) === this.asyncPtr;
        f.settop(L, 0);
        if (isAsync) {
          const p = vu.pending!;
          vu.pending = undefined;
          vu.asyncCalls++;
          if (p instanceof Deferred) p.subscribe(vu.onResolved, vu.onRejected);
          else p.then(vu.onResolved, vu.onRejected);
          return;
        }
      } else if (t === LuaType.Number && vu.state === 'init' && f.tonumber(L, base) === YIELD_INIT) {
        vu.info = {
          options: f.read(L, base + 1),
          hasIteration: f.toboolean(L, base + 2),
          hasSetup: f.toboolean(L, base + 3),
          hasTeardown: f.toboolean(L, base + 4),
        };
        // the command function is the last value yielded: keep it in the registry
        f.settop(L, base + 5);
        vu.runRef = f.ref(L);
        f.settop(L, 0);
        // The init coroutine is never resumed again, but its suspended frames
        // (prelude, xpcall, the script's top level, and the stack grown for
        // them) were half of an idle VU's Lua heap (bench/vu-memory.ts): it is
        // let go. What the script's functions captured lives on in their
        // upvalues (closed when the coroutine is collected); locals nothing
        // captured are freed. (Reset and reused as the command coroutine it
        // would keep the xpcall's error handler slot: "error in error handling".)
        // reset first: its stack is freed now rather than left as garbage for
        // the collector (memory that bulk VU creation would grow the heap by)
        f.resetthread(L);
        this.fast.unref(this.global.address, vu.initRef);
        vu.initRef = 0;
        const cmd = f.newthread(this.global.address);
        vu.L = vu.cmdL = cmd.L;
        vu.cmdRef = cmd.ref;
        vu.state = 'idle';
        this.finish(vu, { ok: true, value: vu.info });
        return;
      }
      // a bare coroutine.yield() in the script: let others run, then go on
      f.settop(L, 0);
      setImmediate(() => this.step(vu, 0));
      return;
    }
    if (status === LuaReturn.Ok) {
      const top = f.gettop(L);
      const first = nres > 0 ? f.read(L, top - nres + 1) : undefined;
      const second = nres > 1 ? f.read(L, top - nres + 2) : undefined;
      f.settop(L, 0);
      if (vu.state === 'busy') {
        // a command ended: (ok, value-or-message)
        vu.state = 'idle';
        this.finish(vu, first === true ? (second === undefined ? OK : { ok: true, value: second }) : { ok: false, error: String(second ?? 'error') });
        return;
      }
      // scenario_main returned during init: the script's top level failed
      vu.deathError = first === 'error' ? String(second ?? 'error') : 'the script ended before its VU was set up';
      vu.state = 'dead';
      this.finish(vu, { ok: false, error: vu.deathError });
      return;
    }
    const message = f.type(L, -1) === LuaType.String ? f.tostring(L, -1) : `Lua error (${LuaReturn[status]})`;
    f.settop(L, 0);
    if (vu.state === 'busy') {
      // the command's coroutine died (e.g. out of memory); the VU itself lives on
      this.resetCommand(vu);
      vu.state = 'idle';
      this.finish(vu, { ok: false, error: message });
      return;
    }
    vu.deathError = message;
    vu.state = 'dead';
    this.finish(vu, { ok: false, error: message });
  }

  // ------------------------------------------------------------------ memory cap

  private credit(vu: Vu): void {
    const h = this.fast.heapBytes();
    vu.memBytes += h - this.lastHeap;
    this.lastHeap = h;
  }

  /** Runs a full collection, outside any VU's account. */
  private collect(): void {
    const G = this.global.address;
    this.fast.pushref(G, this.gcRef);
    this.lua.lua_pcallk(G, 0, 0, 0, 0, null);
    this.global.setTop(0);
    this.lastHeap = this.fast.heapBytes();
  }

  /** Sets every VU's meter to what it holds now (SIZER_LUA). */
  private measureAll(): void {
    const G = this.global.address;
    const f = this.fast;
    for (const v of this.vus) {
      if (!v.runRef) continue;
      f.pushref(G, this.sizerRef);
      f.pushref(G, v.runRef);
      let n = 1;
      for (const ref of [v.cmdRef, v.initRef]) {
        if (!ref) continue;
        f.pushref(G, ref);
        n++;
      }
      if (this.lua.lua_pcallk(G, n, 1, 0, 0, null) === LuaReturn.Ok) v.memBytes = f.tonumber(G, -1);
      f.settop(G, 0);
    }
    this.lastHeap = this.fast.heapBytes();
  }

  /**
   * After a resume, the VU's meter passed its cap or the heap the worker's.
   * The meters are set to what each VU holds (measured); the VU over its cap,
   * or with the heap still over the worker's cap after a full collection, the
   * VU holding the most, is stopped: its command fails and it is dead (the
   * load runner replaces it). Returns true if that was this VU.
   */
  private overCap(vu: Vu): boolean {
    const cap = this.memCap;
    let victim: Vu | undefined;
    let message = '';
    if (vu.memBytes > cap) {
      this.measureAll();
      if (vu.memBytes > cap) {
        victim = vu;
        message = `VU memory over ${formatMiB(cap)}: the iteration was stopped and the VU replaced by a fresh one (${LEAK_HINT})`;
      }
    }
    if (!victim && this.fast.heapBytes() > this.heapCap) {
      this.collect();
      if (this.fast.heapBytes() > this.heapCap) {
        this.measureAll();
        for (const v of this.vus) if (v.runRef && (!victim || v.memBytes > victim.memBytes)) victim = v;
        message = `worker memory over ${formatMiB(this.heapCap)} (all VUs of a worker thread): the VU holding the most was stopped and replaced by a fresh one (${LEAK_HINT})`;
      }
    }
    if (!victim) return false;
    if (victim !== vu) {
      this.stopOther(victim, message);
      return false;
    }
    // it may be waiting on an async call: nobody resumes it now
    const p = vu.pending;
    vu.pending = undefined;
    if (p instanceof Deferred) p.subscribe(ignore, ignore);
    else if (p) p.then(ignore, ignore);
    this.fast.settop(vu.L, 0);
    this.interrupt(vu);
    vu.deathError = message;
    vu.state = 'dead';
    this.finish(vu, { ok: false, error: message });
    return true;
  }

  /** Stops a VU that is not running now: its Lua state is freed at once; its command, if one is in progress, fails. */
  private stopOther(v: Vu, message: string): void {
    const busy = v.state === 'busy' || v.state === 'init';
    v.deathError = message;
    this.interrupt(v);
    this.kill(v);
    this.collect();
    // a command waiting on a promise: its result is dropped (resumeWith ignores dead VUs)
    if (busy) this.finish(v, { ok: false, error: message });
  }

  private resumeWith(vu: Vu, ok: boolean, value: unknown): void {
    if (vu.state === 'dead') return;
    const f = this.fast;
    const L = vu.L;
    let n: number;
    if (vu.abort.signal.aborted) {
      f.pushboolean(L, false);
      f.pushstring(L, 'interrupted');
      n = 2;
    } else if (ok) {
      f.pushboolean(L, true);
      n = 1;
      if (value instanceof LuaMultiReturn) {
        const k = value.length;
        for (let i = 0; i < k; i++) f.push(L, value[i]);
        n += k;
      } else if (value !== undefined) {
        f.push(L, value);
        n++;
      }
    } else {
      if (value instanceof LuaAssertionError) f.pushstring(L, 'assert');
      else f.pushboolean(L, false);
      f.pushstring(L, errorMessage(value));
      n = 2;
    }
    this.step(vu, n);
  }

  // ------------------------------------------------------------------ raw bindings

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
        const vu = this.current;
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
    const vu = this.current;
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
      endpoints: () => this.endpoints,
      rpc: (method, args) => opts.rpc(method, args),
      log: (level, message) => opts.log(level, vu.name, message),
      signal: vu.abort.signal,
      metrics: opts.requests,
    };
    return factory(ctx);
  }

  // ------------------------------------------------------------------ bindings

  /** Wraps a JS function for Lua: promises become ASYNC, throws become ERR/ASSERT. */
  private wrapJs(fn: (...args: any[]) => unknown): (...args: unknown[]) => unknown {
    return (...args: unknown[]) => {
      const vu = this.current;
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
      const vu = this.current;
      if (!vu) throw new Error('called outside a VU');
      return vu;
    };
    const opts = this.opts;
    return {
      ASYNC: ASYNC_MARK,
      ERR: ERR_MARK,
      ASSERT: ASSERT_MARK,
      log: (level: LogLevel, message: string) => opts.log(level, this.current?.name ?? 'load', message),
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
      endpoints: this.endpoints,
      memoryLimitBytes: 0,
      continueOnFailure: true,
    };
  }
}

const ignore = (): void => undefined;

function formatMiB(bytes: number): string {
  const mib = bytes / (1024 * 1024);
  return `${Number.isInteger(mib) ? mib : mib.toFixed(1)} MiB`;
}
