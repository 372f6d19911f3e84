import { Decoration } from 'wasmoon';
import { parseDurationMs } from '../util/duration';

/**
 * JS -> Lua: wasmoon cannot push `null` (without its injected null object) and
 * knows nothing of Date/Buffer/bigint, so values are normalized first:
 * null -> nil, Date -> ISO string, bytes -> UTF-8 string, bigint -> number.
 */
/** Deepest nesting toLua keeps (deeper values become nil). */
export const TO_LUA_MAX_DEPTH = 64;

/**
 * Lua stack slots wasmoon may need to push a value toLua made: it moves
 * tables recursively, a few slots per level, and never grows the stack
 * itself (a C function has 20 slots; past them it writes over the heap).
 */
export const TO_LUA_STACK_SLOTS = 4 * (TO_LUA_MAX_DEPTH + 2) + 20;

export function toLua(value: unknown, depth = 0): unknown {
  if (value === null || value === undefined) return undefined;
  switch (typeof value) {
    case 'bigint':
      return Number(value);
    case 'object':
      break;
    default:
      return value;
  }
  if (depth > TO_LUA_MAX_DEPTH) return undefined;
  // a JS function with wasmoon options (the runtime's wrapped bindings)
  if (value instanceof Decoration) return value;
  if (value instanceof Date) return value.toISOString();
  if (value instanceof Uint8Array) return Buffer.from(value).toString('utf8');
  if (Array.isArray(value)) return value.map((v) => toLua(v, depth + 1));
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
    const lv = toLua(v, depth + 1);
    if (lv !== undefined) out[k] = lv;
  }
  return out;
}

/** Lua -> JS: wasmoon hands nil over as null; optional arguments read easier as undefined. */
export function fromLua<T = unknown>(value: unknown): T | undefined {
  return value === null ? undefined : (value as T);
}

/** Durations in Lua are strings ("250ms", "30s") or numbers of seconds. */
export function luaDurationMs(value: unknown, what: string): number | undefined {
  if (value === null || value === undefined) return undefined;
  if (typeof value !== 'string' && typeof value !== 'number') throw new Error(`${what}: expected a duration like "30s" or a number of seconds, got ${typeof value}`);
  try {
    return parseDurationMs(value, what);
  } catch (err) {
    throw new Error((err as Error).message);
  }
}

/** A Lua table that was meant as an options table, or an empty one. */
export function luaOptions(value: unknown, what: string): Record<string, unknown> {
  if (value === null || value === undefined) return {};
  if (typeof value !== 'object' || Array.isArray(value)) throw new Error(`${what}: options must be a table, got ${typeof value}`);
  return value as Record<string, unknown>;
}

export function errorMessage(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}
