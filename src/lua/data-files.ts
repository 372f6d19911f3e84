import * as fs from 'node:fs';
import { LuaMultiReturn } from 'wasmoon';
import { libChunkText, resolveDataFile, resolveLibModule, type ProjectPaths } from './require-loader';
import { luaOptions } from './lua-values';
import { getLuaModule, luaModuleNames } from './modules';

/** Names a lib file cannot take: the built-in modules (`metrics` is built in where it exists). */
export function isBuiltinModule(name: string): boolean {
  return getLuaModule(name) !== undefined || name === 'metrics' || name === 'data';
}

/**
 * Data files for scripts (k6's SharedArray): `data.csv` and `data.json` parse
 * a file once per worker thread (this module's state is per thread) and hand
 * Lua a read-only proxy whose rows are fetched on access. A CSV stays as its
 * bytes plus one offset per row, so 1,000 VUs reading a 50 MB file cost the
 * file once, not 1,000 copies of it in the Lua heap.
 */

/** Files larger than this are refused (the row index is 32-bit). */
const MAX_DATA_FILE_BYTES = 2 ** 31;
/** `open()` hands the whole text to Lua: each call copies it into the scenario's heap. */
const MAX_OPEN_BYTES = 256 * 1024 * 1024;

interface CsvSet {
  kind: 'csv';
  buf: Buffer;
  /** byte offset where row i (0-based, after the header) starts; starts[n] = end */
  starts: Uint32Array;
  count: number;
  sep: number;
  header?: string[];
}

interface JsonSet {
  kind: 'json';
  value: unknown;
  keys?: string[];
}

type DataSet = CsvSet | JsonSet;

// per worker thread: every engine, scenario and VU of the thread shares them
const sets: DataSet[] = [];
const byKey = new Map<string, { mtimeMs: number; size: number; handle: number }>();

function cached(key: string, real: string, make: (st: fs.Stats) => DataSet): number {
  const st = fs.statSync(real);
  const hit = byKey.get(key);
  if (hit && hit.mtimeMs === st.mtimeMs && hit.size === st.size) return hit.handle;
  if (st.size > MAX_DATA_FILE_BYTES) throw new Error(`${real} is ${st.size} bytes; data files are limited to 2 GiB`);
  const set = make(st);
  const handle = sets.length;
  sets.push(set);
  // an older version of the file stays reachable by handles already handed out
  byKey.set(key, { mtimeMs: st.mtimeMs, size: st.size, handle });
  return handle;
}

const QUOTE = 0x22;
const LF = 0x0a;
const CR = 0x0d;

/** Where the record starting at pos ends: its unquoted line feed, or the end (quoted fields may hold newlines). */
function recordEnd(buf: Buffer, pos: number): number {
  const len = buf.length;
  let inQuotes = false;
  for (let i = pos; i < len; i++) {
    const c = buf[i];
    if (c === QUOTE) inQuotes = !inQuotes;
    else if (c === LF && !inQuotes) return i;
  }
  return len;
}

/**
 * Row start offsets; starts[i + 1] is where row i ends or the next one starts
 * (line ends are trimmed on access). Two passes, counting then filling, so
 * the index is allocated once at its size: no grown copies left behind.
 */
function indexRows(buf: Buffer, from: number): { starts: Uint32Array; count: number } {
  const len = buf.length;
  const scan = (visit: (rowStart: number, end: number) => void) => {
    let pos = from;
    while (pos < len) {
      const rowStart = pos;
      const end = recordEnd(buf, pos);
      pos = end + 1;
      // blank lines (a trailing newline included) are no rows
      if (end === rowStart || (end === rowStart + 1 && buf[rowStart] === CR)) continue;
      visit(rowStart, end);
    }
  };
  let count = 0;
  scan(() => count++);
  const starts = new Uint32Array(count + 1);
  let n = 0;
  scan((rowStart, end) => {
    starts[n++] = rowStart;
    starts[n] = end;
  });
  return { starts, count };
}

/** One CSV record (RFC 4180: "" is a quote inside a quoted field), without its line end. */
function parseRecord(text: string, sep: string): string[] {
  const fields: string[] = [];
  let i = 0;
  const len = text.endsWith('\r') ? text.length - 1 : text.length;
  for (;;) {
    if (text[i] === '"') {
      let v = '';
      i++;
      for (;;) {
        const q = text.indexOf('"', i);
        if (q < 0 || q >= len) {
          v += text.slice(i, len);
          i = len;
          break;
        }
        v += text.slice(i, q);
        if (text[q + 1] === '"') {
          v += '"';
          i = q + 2;
        } else {
          i = q + 1;
          break;
        }
      }
      // anything between the closing quote and the separator is kept, as most readers do
      const next = text.indexOf(sep, i);
      const stop = next < 0 || next >= len ? len : next;
      v += text.slice(i, stop);
      fields.push(v);
      if (stop >= len) break;
      i = stop + 1;
    } else {
      const next = text.indexOf(sep, i);
      const stop = next < 0 || next >= len ? len : next;
      fields.push(text.slice(i, stop));
      if (stop >= len) break;
      i = stop + 1;
    }
  }
  return fields;
}

function csvRow(set: CsvSet, i: number): string[] | Record<string, string> {
  const start = set.starts[i];
  let end = set.starts[i + 1];
  while (end > start && (set.buf[end - 1] === LF || set.buf[end - 1] === CR)) end--;
  const text = set.buf.toString('utf8', start, end);
  const fields = parseRecord(text, String.fromCharCode(set.sep));
  if (!set.header) return fields;
  const row: Record<string, string> = {};
  const h = set.header;
  for (let k = 0; k < h.length; k++) row[h[k]] = fields[k] ?? '';
  return row;
}

function loadCsv(real: string, header: boolean, sep: string): CsvSet {
  let buf = fs.readFileSync(real);
  let from = 0;
  // a UTF-8 byte order mark is no part of the first field
  if (buf[0] === 0xef && buf[1] === 0xbb && buf[2] === 0xbf) from = 3;
  let names: string[] | undefined;
  if (header && from < buf.length) {
    const end = recordEnd(buf, from);
    names = parseRecord(buf.toString('utf8', from, end), sep);
    from = end + 1;
  }
  const { starts, count } = indexRows(buf, from);
  if (count === 0) buf = Buffer.alloc(0);
  return { kind: 'csv', buf, starts, count, sep: sep.charCodeAt(0), ...(names ? { header: names } : {}) };
}

function setOf(handle: unknown): DataSet {
  const set = typeof handle === 'number' ? sets[handle] : undefined;
  if (!set) throw new Error('data: not a data table');
  return set;
}

/**
 * The JS side of `open`, `data.*` and lib-module `require`, for one host.
 * `paths` names the script the call comes from.
 */
export function projectFileBindings(paths: () => ProjectPaths, wrap: (f: (...args: any[]) => unknown) => unknown): Record<string, unknown> {
  const fns: Record<string, (...args: any[]) => unknown> = {
    // nil for a built-in module (it takes precedence), else the module's source and chunk name
    lib_source: (name: unknown) => {
      const n = String(name);
      if (isBuiltinModule(n)) return undefined;
      const m = resolveLibModule(n, paths(), [...luaModuleNames(), 'metrics']);
      return LuaMultiReturn.of(libChunkText(m.source), m.chunk);
    },
    file_open: (file: unknown) => {
      const real = resolveDataFile('open', file, paths());
      const st = fs.statSync(real);
      if (st.size > MAX_OPEN_BYTES) throw new Error(`open: ${String(file)} is ${st.size} bytes; open() reads at most 256 MiB (use data.csv or data.json for big files: they are shared, not copied)`);
      return fs.readFileSync(real, 'utf8');
    },
    data_csv: (file: unknown, opts: unknown) => {
      const o = luaOptions(opts, 'data.csv');
      const header = o.header === true;
      const sep = o.separator === undefined || o.separator === null ? ',' : o.separator;
      if (typeof sep !== 'string' || sep.length !== 1 || sep.charCodeAt(0) > 0x7f || sep === '"' || sep === '\n' || sep === '\r') {
        throw new Error(`data.csv: separator must be one ASCII character (not a quote or a line end), got ${JSON.stringify(sep)}`);
      }
      const real = resolveDataFile('data.csv', file, paths());
      const handle = cached(`csv\0${header}\0${sep}\0${real}`, real, () => loadCsv(real, header, sep));
      return LuaMultiReturn.of(handle, (sets[handle] as CsvSet).count);
    },
    data_json: (file: unknown) => {
      const real = resolveDataFile('data.json', file, paths());
      const handle = cached(`json\0${real}`, real, () => {
        let value: unknown;
        try {
          value = JSON.parse(fs.readFileSync(real, 'utf8'));
        } catch (err) {
          throw new Error(`data.json: ${String(file)}: ${(err as Error).message}`);
        }
        const keys = value !== null && typeof value === 'object' && !Array.isArray(value) ? Object.keys(value) : undefined;
        return { kind: 'json', value, ...(keys ? { keys } : {}) };
      });
      const set = sets[handle] as JsonSet;
      // a list: (handle, n); an object: (handle, -1); anything else: (nil, nil, value)
      if (Array.isArray(set.value)) return LuaMultiReturn.of(handle, set.value.length);
      if (set.keys) return LuaMultiReturn.of(handle, -1);
      return LuaMultiReturn.of(undefined, undefined, set.value);
    },
    // element i (1-based) of a list, or the value at key k of an object: a fresh Lua copy
    data_item: (handle: unknown, key: unknown) => {
      const set = setOf(handle);
      if (set.kind === 'csv') {
        const i = Number(key) - 1;
        return i >= 0 && i < set.count ? csvRow(set, i) : undefined;
      }
      if (Array.isArray(set.value)) return set.value[Number(key) - 1];
      if (typeof key !== 'string' || !Object.prototype.hasOwnProperty.call(set.value, key)) return undefined;
      return (set.value as Record<string, unknown>)[key];
    },
    data_keys: (handle: unknown) => {
      const set = setOf(handle);
      return set.kind === 'json' && set.keys ? set.keys : [];
    },
  };
  const out: Record<string, unknown> = { DATA_LUA };
  for (const [k, f] of Object.entries(fns)) out[k] = wrap(f);
  return out;
}

/**
 * Lua side, loaded by the prelude with the JS bindings, `settle` and a way to
 * mark tables read-only; returns (data, open). Proxies are made once per
 * engine and handle: they are read-only, so every scenario of the engine can
 * share them.
 */
export const DATA_LUA = String.raw`
local js, settle, mark_read_only = ...
local js_open, js_csv, js_json, js_item, js_keys = js.file_open, js.data_csv, js.data_json, js.data_item, js.data_keys
local setmetatable, error, type, math_type, tointeger = setmetatable, error, type, math.type, math.tointeger
local proxies = {}

local function refuse()
  error("data tables are read-only (shared by every VU and scenario)", 2)
end

local function proxy(handle, n)
  local p = proxies[handle]
  if p then return p end
  local mt = { __newindex = refuse, __metatable = false }
  if n >= 0 then
    mt.__index = function(_, i)
      if math_type(i) ~= "integer" then
        i = type(i) == "number" and tointeger(i) or nil
        if i == nil then return nil end
      end
      if i < 1 or i > n then return nil end
      return settle(js_item(handle, i))
    end
    mt.__len = function() return n end
    mt.__pairs = function(t)
      local i = 0
      return function()
        i = i + 1
        if i <= n then return i, t[i] end
      end, t, nil
    end
  else
    mt.__index = function(_, k)
      if type(k) ~= "string" then return nil end
      return settle(js_item(handle, k))
    end
    mt.__len = function() return 0 end
    mt.__pairs = function(t)
      local ks, i = settle(js_keys(handle)), 0
      return function()
        i = i + 1
        local k = ks[i]
        if k ~= nil then return k, t[k] end
      end, t, nil
    end
  end
  p = setmetatable({}, mt)
  mark_read_only(p)
  proxies[handle] = p
  return p
end

local data = {}
function data.csv(path, opts)
  if opts ~= nil and type(opts) ~= "table" then error("data.csv(path [, opts]): opts must be a table", 2) end
  local handle, n = settle(js_csv(path, opts))
  return proxy(handle, n)
end
function data.json(path)
  local handle, n, value = settle(js_json(path))
  if handle == nil then return value end
  return proxy(handle, n)
end
local function open(path)
  return settle(js_open(path))
end
return data, open
`;
