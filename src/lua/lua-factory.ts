import { LuaFactory } from 'wasmoon';
import { getWasmLocation } from '../sea/assets';

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
