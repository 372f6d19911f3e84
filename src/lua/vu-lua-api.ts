import { LUA_REGISTRYINDEX, LuaType } from 'wasmoon';
import type { LuaGlobal } from 'wasmoon';
import { toLua, TO_LUA_STACK_SLOTS } from './lua-values';
import { luaWasmExports } from './lua-factory';

type WasmFn = (...args: any[]) => any;

/**
 * Direct calls into the Lua C API of a wasmoon engine, for the VU hot path.
 * wasmoon's own wrappers go through emscripten's ccall and its type
 * extensions (several µs per pushed table field); these call the exported
 * wasm functions with numbers and move strings through one scratch buffer.
 * Anything that is not a plain value falls back to wasmoon's conversion.
 */

interface EmModule {
  HEAPU8: Uint8Array;
  HEAP32: Int32Array;
  HEAPU32: Uint32Array;
  _malloc(n: number): number;
  _free(p: number): void;
  addFunction(fn: (...a: number[]) => number, sig: string): number;
  removeFunction(p: number): void;
  [name: `_lua${string}`]: (...args: any[]) => any;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const SCRATCH_BYTES = 64 * 1024;

export class FastLua {
  readonly m: EmModule;
  private scratch: number;
  private readonly lenPtr: number;
  private readonly _settop: (L: number, n: number) => void;
  private readonly _gettop: (L: number) => number;
  private readonly _type: (L: number, i: number) => number;
  private readonly _toboolean: (L: number, i: number) => number;
  private readonly _tonumberx: (L: number, i: number, p: number) => number;
  private readonly _tolstring: (L: number, i: number, p: number) => number;
  private readonly _pushnil: (L: number) => void;
  private readonly _pushnumber: (L: number, n: number) => void;
  private readonly _pushinteger: (L: number, n: bigint) => void;
  private readonly _pushboolean: (L: number, b: number) => void;
  private readonly _pushlstring: (L: number, p: number, n: number) => number;
  private readonly _createtable: (L: number, na: number, nh: number) => void;
  private readonly _rawset: (L: number, i: number) => void;
  private readonly _rawseti: (L: number, i: number, n: bigint) => void;
  private readonly _resume: (L: number, from: number, nargs: number, nres: number) => number;
  private readonly _pushcclosure: (L: number, fn: number, n: number) => void;
  private readonly _setfield: (L: number, i: number, k: number) => void;
  private readonly resultPtr: number;
  private readonly _newthread: (L: number) => number;
  private readonly _ref: (L: number, t: number) => number;
  private readonly _unref: (L: number, t: number, ref: number) => void;
  private readonly _rawgeti: (L: number, i: number, n: bigint) => number;
  private readonly _resetthread: (L: number) => number;
  private readonly _checkstack: (L: number, n: number) => number;
  /** the engine's global_State, as a HEAP32 index */
  private readonly g32: number;

  constructor(private readonly global: LuaGlobal) {
    this.m = global.lua.module as unknown as EmModule;
    const m = this.m;
    // lua_State.l_G (Lua 5.4, wasm32): after next, tt, marked, status, allowhook, nci, top
    this.g32 = m.HEAP32[(global.address + 16) >> 2] >> 2;
    // the raw wasm exports when available: emscripten's wrappers cost ~6x per call
    const raw = luaWasmExports();
    const fn = (name: string): WasmFn => raw?.[name] ?? (m as unknown as Record<string, WasmFn>)[`_${name}`];
    this.scratch = m._malloc(SCRATCH_BYTES);
    this.lenPtr = m._malloc(8);
    this.resultPtr = m._malloc(4);
    this._settop = fn('lua_settop');
    this._gettop = fn('lua_gettop');
    this._type = fn('lua_type');
    this._toboolean = fn('lua_toboolean');
    this._tonumberx = fn('lua_tonumberx');
    this._tolstring = fn('lua_tolstring');
    this._pushnil = fn('lua_pushnil');
    this._pushnumber = fn('lua_pushnumber');
    this._pushinteger = fn('lua_pushinteger');
    this._pushboolean = fn('lua_pushboolean');
    this._pushlstring = fn('lua_pushlstring');
    this._createtable = fn('lua_createtable');
    this._rawset = fn('lua_rawset');
    this._rawseti = fn('lua_rawseti');
    this._resume = fn('lua_resume');
    this._pushcclosure = fn('lua_pushcclosure');
    this._setfield = fn('lua_setfield');
    this._newthread = fn('lua_newthread');
    this._ref = fn('luaL_ref');
    this._unref = fn('luaL_unref');
    this._rawgeti = fn('lua_rawgeti');
    this._resetthread = fn('lua_resetthread');
    this._checkstack = fn('lua_checkstack');
  }

  /**
   * Bytes the Lua heap holds now, as collectgarbage("count") reports them:
   * global_State's totalbytes + GCdebt, read from wasm memory (wasmoon
   * exports no lua_gc; two reads cost nothing on the hot path).
   */
  heapBytes(): number {
    const h = this.m.HEAP32;
    return h[this.g32 + 2] + h[this.g32 + 3];
  }

  /** Makes a coroutine that ended in an error usable again. */
  resetthread(L: number): void {
    this._resetthread(L);
    this._settop(L, 0);
  }

  /** A new coroutine, kept alive by a registry reference until unref. */
  newthread(G: number): { L: number; ref: number } {
    const L = this._newthread(G);
    const ref = this._ref(G, LUA_REGISTRYINDEX);
    return { L, ref };
  }

  /** Pops the top value of L into the registry; returns its reference. */
  ref(L: number): number {
    return this._ref(L, LUA_REGISTRYINDEX);
  }

  unref(L: number, ref: number): void {
    this._unref(L, LUA_REGISTRYINDEX, ref);
  }

  pushref(L: number, ref: number): void {
    this._rawgeti(L, LUA_REGISTRYINDEX, BigInt(ref));
  }

  dispose(): void {
    this.m._free(this.scratch);
    this.m._free(this.lenPtr);
    this.m._free(this.resultPtr);
  }

  /** lua_resume: returns its status; the number of values yielded or returned is in `nres` after. */
  resume(L: number, nargs: number): number {
    const m = this.m;
    m.HEAP32[this.resultPtr >> 2] = 0;
    const status = this._resume(L, 0, nargs, this.resultPtr);
    this.nres = m.HEAP32[this.resultPtr >> 2];
    return status;
  }

  /** values on the stack after the last resume */
  nres = 0;

  settop(L: number, n: number): void {
    this._settop(L, n);
  }
  gettop(L: number): number {
    return this._gettop(L);
  }
  type(L: number, i: number): number {
    return this._type(L, i);
  }
  toboolean(L: number, i: number): boolean {
    return this._toboolean(L, i) !== 0;
  }
  tonumber(L: number, i: number): number {
    return this._tonumberx(L, i, 0);
  }

  /** The address of the string at i (0 if it is not one): equal addresses, equal interned strings. */
  stringptr(L: number, i: number): number {
    return this._tolstring(L, i, 0);
  }

  tostring(L: number, i: number): string {
    const p = this._tolstring(L, i, this.lenPtr);
    const m = this.m;
    const n = m.HEAPU32[this.lenPtr >> 2];
    if (n < 24) {
      // short strings: a byte loop beats the decoder call; anything non-ASCII goes to the decoder
      let s = '';
      const heap = m.HEAPU8;
      for (let j = 0; j < n; j++) {
        const c = heap[p + j];
        if (c >= 0x80) return decoder.decode(heap.subarray(p, p + n));
        s += String.fromCharCode(c);
      }
      return s;
    }
    return decoder.decode(m.HEAPU8.subarray(p, p + n));
  }

  pushstring(L: number, s: string): void {
    const m = this.m;
    const n = s.length;
    if (n <= 256) {
      // short strings are mostly ASCII: copy the bytes, no encoder call, no view allocated
      const heap = m.HEAPU8;
      const p = this.scratch;
      let j = 0;
      for (; j < n; j++) {
        const c = s.charCodeAt(j);
        if (c >= 0x80) break;
        heap[p + j] = c;
      }
      if (j === n) {
        this._pushlstring(L, p, n);
        return;
      }
    }
    const max = n * 3;
    if (max <= SCRATCH_BYTES) {
      const { written } = encoder.encodeInto(s, m.HEAPU8.subarray(this.scratch, this.scratch + SCRATCH_BYTES));
      this._pushlstring(L, this.scratch, written);
      return;
    }
    const bytes = encoder.encode(s);
    const p = m._malloc(bytes.length + 1);
    try {
      m.HEAPU8.set(bytes, p);
      this._pushlstring(L, p, bytes.length);
    } finally {
      m._free(p);
    }
  }

  pushboolean(L: number, b: boolean): void {
    this._pushboolean(L, b ? 1 : 0);
  }

  pushinteger(L: number, n: number): void {
    this._pushinteger(L, BigInt(n));
  }

  pushnil(L: number): void {
    this._pushnil(L);
  }

  /** Pushes a C closure `fn` with one integer upvalue. */
  pushclosure(L: number, fnPtr: number, upvalue: number): void {
    this._pushinteger(L, BigInt(upvalue));
    this._pushcclosure(L, fnPtr, 1);
  }

  /** t[key] = value at the top (pops the value); t at index `tableIndex` (negative ok before the push). */
  setfield(L: number, tableIndex: number, key: string): void {
    const m = this.m;
    const { written } = encoder.encodeInto(key, m.HEAPU8.subarray(this.scratch, this.scratch + 1024));
    m.HEAPU8[this.scratch + written] = 0;
    this._setfield(L, tableIndex, this.scratch);
  }

  /** The integer upvalue of the running C closure. */
  upvalue(L: number): number {
    return this._tonumberx(L, LUA_REGISTRYINDEX - 1, 0);
  }

  /** JS value -> Lua (plain data fast; the rest through wasmoon). */
  push(L: number, v: unknown, depth = 0): void {
    switch (typeof v) {
      case 'string':
        return this.pushstring(L, v);
      case 'number':
        if (Number.isInteger(v) && Math.abs(v) <= Number.MAX_SAFE_INTEGER) return this._pushinteger(L, BigInt(v));
        return this._pushnumber(L, v);
      case 'boolean':
        return this._pushboolean(L, v ? 1 : 0);
      case 'undefined':
        return this._pushnil(L);
      case 'bigint':
        return this._pushnumber(L, Number(v));
      case 'object': {
        if (v === null) return this._pushnil(L);
        if (depth > 64) return this._pushnil(L);
        // a nested table takes a few stack slots per level: make room once (a C function only has 20)
        if (depth === 0 && !this._checkstack(L, TO_LUA_STACK_SLOTS)) throw new Error('not enough Lua stack for the value');
        if (Array.isArray(v)) {
          this._createtable(L, v.length, 0);
          for (let i = 0; i < v.length; i++) {
            this.push(L, v[i], depth + 1);
            this._rawseti(L, -2, BigInt(i + 1));
          }
          return;
        }
        const proto = Object.getPrototypeOf(v);
        if (proto === Object.prototype || proto === null) {
          const o = v as Record<string, unknown>;
          this._createtable(L, 0, 8);
          for (const k in o) {
            const x = o[k];
            if (x === undefined || x === null) continue;
            this.pushstring(L, k);
            this.push(L, x, depth + 1);
            this._rawset(L, -3);
          }
          return;
        }
        break;
      }
    }
    // Dates, buffers, functions, LuaMultiReturn parts...: wasmoon's conversion
    this.global.stateToThread(L).pushValue(toLua(v));
  }

  newtable(L: number): void {
    this._createtable(L, 0, 8);
  }

  /** Lua value at i -> JS (strings, numbers, booleans fast; tables through wasmoon). */
  read(L: number, i: number): unknown {
    switch (this._type(L, i)) {
      case LuaType.Nil:
      case LuaType.None:
        return undefined;
      case LuaType.Boolean:
        return this._toboolean(L, i) !== 0;
      case LuaType.Number:
        return this._tonumberx(L, i, 0);
      case LuaType.String:
        return this.tostring(L, i);
      default:
        return this.global.stateToThread(L).getValue(i);
    }
  }
}
