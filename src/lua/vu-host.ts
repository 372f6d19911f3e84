import * as fs from 'node:fs';
import { LuaMultiReturn, LuaReturn, LuaType, LUA_REGISTRYINDEX } from 'wasmoon';
import type { LuaEngine, LuaGlobal } from 'wasmoon';
import type { EndpointMap } from '../backends/backend';
import type { LogLevel } from '../run/scenario-types';
import { luaFactory } from './lua-factory';
import { chunkName } from './scenario-files';
import { PRELUDE_CHUNK, PRELUDE_LUA } from './prelude';
import { errorMessage } from './lua-values';
import { LuaAssertionError, type RequestMetricsSink } from './modules';
import type { CustomMetricsSink } from './vu-metrics-module';
import { FastLua } from './vu-lua-api';
import { CheckedTableReader } from './lua-table-reader';
import { Deferred } from './deferred';
import { CMD_CONTEXT, CMD_SETUP, CMD_TEARDOWN, OK, Vu, VU_LOOP, VU_PREFIX, YIELD_INIT, type VuCommandResult } from './vu';
import { VuBindings, type VuCursor } from './vu-bindings';
import { VuMemoryCap } from './vu-memory-cap';

export { Vu, type VuCommandResult, type VuScriptInfo } from './vu';
export { DEFAULT_VU_MEMORY_LIMIT_BYTES, WORKER_MEMORY_LIMIT_BYTES } from './vu-memory-cap';

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

export class VuHost {
  private readonly global: LuaGlobal;
  private readonly lua: LuaGlobal['lua'];
  private readonly fast: FastLua;
  /** the prelude's bindings and the raw ones (require, check, module exports) */
  private readonly bindings: VuBindings;
  /** the VU running now (the bindings call into it) and the endpoints */
  private readonly at: VuCursor;
  private readonly mainRef: number;
  /** ASYNC_MARK's address in the Lua heap (see VuBindings) */
  private readonly asyncPtr: number;
  private readonly vus = new Set<Vu>();
  /** the script with the VU prefix and loop, in the registry */
  private sourceRef = 0;
  private readonly chunk: string;
  private closed = false;
  /** the VU memory cap's meters (mem.cap 0: off) */
  private readonly mem: VuMemoryCap;

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
    this.at = { current: undefined, endpoints: opts.endpoints };
    this.chunk = chunkName({ file: opts.file, baseDir: opts.baseDir });
    this.fast = new FastLua(this.global);
    this.bindings = new VuBindings(this.global, this.fast, opts, this.at);
    this.asyncPtr = this.bindings.asyncPtr;
    const G = this.global.address;
    this.global.loadString(PRELUDE_LUA, PRELUDE_CHUNK);
    this.bindings.pushTable();
    const status = this.lua.lua_pcallk(G, 1, 1, 0, 0, null);
    if (status !== LuaReturn.Ok) {
      const msg = this.lua.lua_tolstring(G, -1, null);
      this.global.setTop(0);
      throw new Error(`lua prelude failed: ${msg}`);
    }
    this.mainRef = this.lua.luaL_ref(G, LUA_REGISTRYINDEX);
    this.global.setTop(0);
    this.mem = new VuMemoryCap(this.global, this.fast, opts.memoryLimitBytes, (level, source, message) => opts.log(level, source, message));
  }

  setEndpoints(map: EndpointMap): void {
    this.at.endpoints = map;
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
    if (this.mem.cap > 0 && !this.closed) this.mem.collect();
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
    this.bindings.close();
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
    return this.mem.cap > 0 && !this.closed ? this.fast.heapBytes() : undefined;
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
    const at = this.at;
    const prev = at.current;
    at.current = vu;
    const mem = this.mem;
    const cap = mem.cap;
    // what was pushed for this resume is the VU's
    if (cap > 0) mem.credit(vu);
    let status: number;
    try {
      status = f.resume(L, nargs);
    } finally {
      at.current = prev;
    }
    const nres = f.nres;
    if (cap > 0) {
      mem.credit(vu);
      if ((vu.memBytes > cap || mem.lastHeap > mem.heapCap) && this.overCap(vu)) return;
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

  /**
   * After a resume, the VU's meter passed its cap or the heap the worker's.
   * The meters are set to what each VU holds (measured); the VU over its cap,
   * or with the heap still over the worker's cap after a full collection, the
   * VU holding the most, is stopped: its command fails and it is dead (the
   * load runner replaces it). Returns true if that was this VU.
   */
  private overCap(vu: Vu): boolean {
    const hit = this.mem.victim(vu, this.vus);
    if (!hit) return false;
    const { victim, message } = hit;
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
    this.mem.collect();
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
}

const ignore = (): void => undefined;
