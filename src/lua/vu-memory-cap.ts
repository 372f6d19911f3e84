import { LuaReturn } from 'wasmoon';
import type { LuaGlobal } from 'wasmoon';
import type { LogLevel } from '../run/scenario-types';
import type { FastLua } from './vu-lua-api';
import type { Vu } from './vu';

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

/**
 * The VU memory cap's meters: each VU is put down the heap's growth while it
 * ran, and when a meter passes its cap, what every VU holds is measured
 * (SIZER_LUA) to tell which VU to stop. The host stops it.
 */
export class VuMemoryCap {
  /** per-VU heap cap in bytes; 0: off */
  cap: number;
  /** cap on the whole heap (all VUs), when cap is on */
  readonly heapCap = WORKER_MEMORY_LIMIT_BYTES;
  /** the heap at the last point its growth was put down to a VU */
  lastHeap = 0;
  /** a chunk running collectgarbage("collect"), in the registry */
  private gcRef = 0;
  /** SIZER_LUA's function, in the registry */
  private sizerRef = 0;

  constructor(
    private readonly global: LuaGlobal,
    private readonly fast: FastLua,
    memoryLimitBytes: number | undefined,
    private readonly log: (level: LogLevel, source: string, message: string) => void,
  ) {
    this.cap = memoryLimitBytes ?? DEFAULT_VU_MEMORY_LIMIT_BYTES;
    if (this.cap > 0) this.setUp();
  }

  /** Checks that heapBytes reads what Lua counts (else the cap stays off), and keeps the collect chunk. */
  private setUp(): void {
    const G = this.global.address;
    this.global.loadString('return collectgarbage("count") * 1024', '=topas-heap');
    const counted = this.global.lua.lua_pcallk(G, 0, 1, 0, 0, null) === LuaReturn.Ok ? this.global.lua.lua_tonumberx(G, -1, null) : NaN;
    this.global.setTop(0);
    const read = this.fast.heapBytes();
    if (!(Math.abs(read - counted) < 64 * 1024)) {
      this.cap = 0;
      this.log('warn', 'load', `the VU memory cap is off: the Lua heap size could not be read (read ${read}, Lua counts ${counted})`);
      return;
    }
    this.global.loadString('collectgarbage("collect")', '=topas-gc');
    this.gcRef = this.fast.ref(G);
    this.global.loadString(SIZER_LUA, '=topas-sizer');
    if (this.global.lua.lua_pcallk(G, 0, 1, 0, 0, null) !== LuaReturn.Ok) {
      const why = this.global.lua.lua_tolstring(G, -1, null);
      this.global.setTop(0);
      this.cap = 0;
      this.log('warn', 'load', `the VU memory cap is off: ${why}`);
      return;
    }
    this.sizerRef = this.fast.ref(G);
    this.lastHeap = this.fast.heapBytes();
  }

  /** Puts the heap's growth since the last call down to the VU. */
  credit(vu: Vu): void {
    const h = this.fast.heapBytes();
    vu.memBytes += h - this.lastHeap;
    this.lastHeap = h;
  }

  /** Runs a full collection, outside any VU's account. */
  collect(): void {
    const G = this.global.address;
    this.fast.pushref(G, this.gcRef);
    this.global.lua.lua_pcallk(G, 0, 0, 0, 0, null);
    this.global.setTop(0);
    this.lastHeap = this.fast.heapBytes();
  }

  /** Sets every VU's meter to what it holds now (SIZER_LUA). */
  private measureAll(vus: Iterable<Vu>): void {
    const G = this.global.address;
    const f = this.fast;
    for (const v of vus) {
      if (!v.runRef) continue;
      f.pushref(G, this.sizerRef);
      f.pushref(G, v.runRef);
      let n = 1;
      for (const ref of [v.cmdRef, v.initRef]) {
        if (!ref) continue;
        f.pushref(G, ref);
        n++;
      }
      if (this.global.lua.lua_pcallk(G, n, 1, 0, 0, null) === LuaReturn.Ok) v.memBytes = f.tonumber(G, -1);
      f.settop(G, 0);
    }
    this.lastHeap = this.fast.heapBytes();
  }

  /**
   * After a resume, the VU's meter passed its cap or the heap the worker's.
   * The meters are set to what each VU holds (measured); the VU over its cap,
   * or with the heap still over the worker's cap after a full collection, the
   * VU holding the most, is the one to stop (its command fails and it is
   * dead: the load runner replaces it). Undefined: none is.
   */
  victim(vu: Vu, vus: Iterable<Vu>): { victim: Vu; message: string } | undefined {
    const cap = this.cap;
    let victim: Vu | undefined;
    let message = '';
    if (vu.memBytes > cap) {
      this.measureAll(vus);
      if (vu.memBytes > cap) {
        victim = vu;
        message = `VU memory over ${formatMiB(cap)}: the iteration was stopped and the VU replaced by a fresh one (${LEAK_HINT})`;
      }
    }
    if (!victim && this.fast.heapBytes() > this.heapCap) {
      this.collect();
      if (this.fast.heapBytes() > this.heapCap) {
        this.measureAll(vus);
        for (const v of vus) if (v.runRef && (!victim || v.memBytes > victim.memBytes)) victim = v;
        message = `worker memory over ${formatMiB(this.heapCap)} (all VUs of a worker thread): the VU holding the most was stopped and replaced by a fresh one (${LEAK_HINT})`;
      }
    }
    return victim ? { victim, message } : undefined;
  }
}

function formatMiB(bytes: number): string {
  const mib = bytes / (1024 * 1024);
  return `${Number.isInteger(mib) ? mib : mib.toFixed(1)} MiB`;
}
