import { decorateFunction, LuaMultiReturn } from 'wasmoon';
import type { LuaThread } from 'wasmoon';
import { ERR_MARK } from './prelude';
import { errorMessage } from './lua-values';

/** Deepest nesting json.decode and json.encode accept (the prelude checks encode's too). */
export const JSON_MAX_DEPTH = 1000;

// Lua stack slots wasmoon uses per level of nesting as it moves a table
// (the table, a key, a value, a key's string form). It never grows the stack
// itself: a C function may only use 20 slots unless it asks for more, and
// past them it writes over the heap.
const SLOTS_PER_LEVEL = 4;

function ensureStack(thread: LuaThread, depth: number, what: string): void {
  if (depth <= 4) return;
  if (!thread.lua.lua_checkstack(thread.address, SLOTS_PER_LEVEL * depth + 20)) throw new Error(`${what}: not enough Lua stack for ${depth} levels of nesting`);
}

/** JSON.parse output -> what wasmoon pushes (null -> nil), failing past JSON_MAX_DEPTH. */
function fromJson(value: unknown, depth: number, deepest: { depth: number }): unknown {
  if (value === null) return undefined;
  if (typeof value !== 'object') return value;
  if (depth >= JSON_MAX_DEPTH) throw new Error(`json.decode: nesting deeper than ${JSON_MAX_DEPTH}`);
  if (depth + 1 > deepest.depth) deepest.depth = depth + 1;
  if (Array.isArray(value)) {
    const out = new Array<unknown>(value.length);
    for (let i = 0; i < value.length; i++) out[i] = fromJson(value[i], depth + 1, deepest);
    return out;
  }
  // no prototype: a "__proto__" key stays a key
  const out = Object.create(null) as Record<string, unknown>;
  for (const k of Object.keys(value)) {
    const v = fromJson((value as Record<string, unknown>)[k], depth + 1, deepest);
    if (v !== undefined) out[k] = v;
  }
  return out;
}

/**
 * json.encode and json.decode as the prelude's JS bindings (`js.json_encode`,
 * `js.json_decode`), shared by scenarios and load VUs. They speak the
 * prelude's protocol: a value, or ERR and a message. Both see the calling
 * coroutine so they can make room on its stack before wasmoon moves a nested
 * table: the prelude passes encode the nesting depth it measured.
 */
export function jsonBindings(): { json_encode: unknown; json_decode: unknown } {
  return {
    json_encode: decorateFunction(
      (thread: LuaThread, argc: number) => {
        try {
          const depth = argc >= 2 ? Number(thread.getValue(2)) || 0 : 0;
          if (depth > JSON_MAX_DEPTH) throw new Error(`json.encode: nesting deeper than ${JSON_MAX_DEPTH}`);
          ensureStack(thread, depth, 'json.encode');
          const v = argc >= 1 ? thread.getValue(1) : null;
          const s = JSON.stringify(v === null ? null : v);
          return s === undefined ? 'null' : s;
        } catch (err) {
          return LuaMultiReturn.of(ERR_MARK, errorMessage(err));
        }
      },
      { receiveThread: true, receiveArgsQuantity: true },
    ),
    json_decode: decorateFunction(
      (thread: LuaThread, s: unknown) => {
        try {
          if (typeof s !== 'string') throw new Error(`json.decode: expected a string, got ${s === null || s === undefined ? 'nil' : typeof s}`);
          let parsed: unknown;
          try {
            parsed = JSON.parse(s);
          } catch (err) {
            throw new Error(`json.decode: ${errorMessage(err)}`);
          }
          const deepest = { depth: 0 };
          const value = fromJson(parsed, 0, deepest);
          ensureStack(thread, deepest.depth, 'json.decode');
          return value;
        } catch (err) {
          return LuaMultiReturn.of(ERR_MARK, errorMessage(err));
        }
      },
      { receiveThread: true },
    ),
  };
}
