import { LuaType, LuaTypeExtension } from 'wasmoon';
import type { LuaGlobal, LuaThread } from 'wasmoon';

// lua_next's key and value, a key's string form, a nested table: per level
const SLOTS_PER_LEVEL = 6;

/**
 * Lua table -> JS, as wasmoon's own table extension does it (an array when
 * the keys are "1".."n" in order, shared and cyclic tables kept as one
 * object), but it makes room on the Lua stack at every level. wasmoon's never
 * does: a C function has 20 slots, and a table argument nested ~10 deep wrote
 * over the heap, breaking the engine for every later scenario. Registered
 * above wasmoon's; pushing JS values is left to wasmoon.
 */
export class CheckedTableReader extends LuaTypeExtension<unknown> {
  constructor(global: LuaGlobal) {
    super(global, 'topas_table_reader');
  }

  override isType(_thread: LuaThread, _index: number, type: LuaType): boolean {
    return type === LuaType.Table;
  }

  override getValue(thread: LuaThread, index: number, userdata?: unknown): unknown {
    const seen = userdata instanceof Map ? (userdata as Map<number, unknown>) : new Map<number, unknown>();
    return this.read(thread, thread.lua.lua_absindex(thread.address, index), seen);
  }

  override pushValue(): boolean {
    return false;
  }

  override close(): void {}

  private read(thread: LuaThread, index: number, seen: Map<number, unknown>): unknown {
    const lua = thread.lua;
    const L = thread.address;
    const pointer = lua.lua_topointer(L, index);
    const known = seen.get(pointer);
    if (known !== undefined) return known;
    if (!lua.lua_checkstack(L, SLOTS_PER_LEVEL)) throw new Error('table nested too deep for the Lua stack');
    const keys: string[] = [];
    lua.lua_pushnil(L);
    while (lua.lua_next(L, index)) {
      keys.push(thread.indexToString(-2));
      lua.lua_settop(L, -2);
    }
    const isArray = keys.length > 0 && keys.every((k, i) => k === String(i + 1));
    const table: unknown[] | Record<string, unknown> = isArray ? [] : {};
    seen.set(pointer, table);
    lua.lua_pushnil(L);
    while (lua.lua_next(L, index)) {
      const key = thread.indexToString(-2);
      const value = lua.lua_type(L, -1) === LuaType.Table ? this.read(thread, lua.lua_gettop(L), seen) : thread.getValue(-1, undefined, seen);
      if (isArray) (table as unknown[]).push(value);
      else (table as Record<string, unknown>)[key] = value;
      lua.lua_settop(L, -2);
    }
    return table;
  }
}
