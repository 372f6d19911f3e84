/**
 * The Lua half of the scenario runtime, compiled once per engine. Most of the
 * per-call work (expect, step, env creation, error locations) lives here
 * because a Lua call is far cheaper than a crossing into JS.
 *
 * Protocol with the JS driver (src/lua/engine.ts):
 * - a JS function that starts async work returns ASYNC; the Lua wrapper then
 *   yields ASYNC to the driver, which resumes with (ok, value-or-message);
 * - a JS function that fails returns ERR, message (or ASSERT, message for a
 *   failed assertion) instead of throwing, so the raised error is a plain
 *   string carrying the user's file:line.
 */
import { EXPECT_LUA } from './prelude-expect';

// wasmoon moves strings as C strings, so the markers avoid NUL
export const ASYNC_MARK = '\u0001topas:async';
export const ERR_MARK = '\u0001topas:err';
export const ASSERT_MARK = '\u0001topas:assert';
export const PRELUDE_CHUNK = '=topas';

export const PRELUDE_LUA = String.raw`
local js = ...
local ASYNC, ERR, ASSERT = js.ASYNC, js.ERR, js.ASSERT
local co_create, co_resume, co_yield, co_status = coroutine.create, coroutine.resume, coroutine.yield, coroutine.status
local co_running, co_isyieldable, co_close = coroutine.running, coroutine.isyieldable, coroutine.close
local getinfo, traceback = debug.getinfo, debug.traceback
local type, tostring, select, pairs, ipairs, next, error, rawget, rawset, rawequal, setmetatable, getmetatable, pcall, xpcall, load =
  type, tostring, select, pairs, ipairs, next, error, rawget, rawset, rawequal, setmetatable, getmetatable, pcall, xpcall, load
local concat, sort, unpack = table.concat, table.sort, table.unpack
local sfind, smatch, sformat, srep, ssub = string.find, string.match, string.format, string.rep, string.sub
local math_type = math.type

-- no bytecode, ever: loading a (mutated) binary chunk can corrupt the engine,
-- so nothing can make one and every load below is text-only
string.dump = nil

-- ---------------------------------------------------------------- shared tables
-- One engine hosts many scenarios, one after the other and at once. What they
-- all reach (the string metatable, expect's methods) is shown to them through
-- read-only views, and rawset refuses those views.
local read_only = setmetatable({}, { __mode = "k" })
local function readonly_view(t, what)
  local view = setmetatable({}, {
    __index = t,
    __newindex = function() error(what .. " is read-only (shared by every scenario)", 2) end,
    __pairs = function()
      local k
      return function()
        local v
        k, v = next(t, k)
        return k, v
      end
    end,
    __len = function() return #t end,
    __metatable = false,
  })
  read_only[view] = true
  return view
end
local function safe_rawset(t, k, v)
  if read_only[t] then error("attempt to change a read-only table (shared by every scenario)", 2) end
  return rawset(t, k, v)
end

do
  -- getmetatable("") hands out a view whose __index is a view of the string library
  local string_mt = getmetatable("")
  local fields = {}
  for k, v in pairs(string_mt) do fields[k] = v end
  fields.__index = readonly_view(string, "the string library behind string methods")
  string_mt.__metatable = readonly_view(fields, "the string metatable")
end

-- sources of scenario chunks ("@rel/path.lua"): only these count as user frames
local user_sources = {}

local function user_where(level)
  level = level or 2
  while true do
    local info = getinfo(level, "Sl")
    if not info then return nil end
    if info.what ~= "C" and user_sources[info.source] then
      return ssub(info.source, 2) .. ":" .. info.currentline
    end
    level = level + 1
  end
end

local function raise(msg)
  local w = user_where(3)
  error(w and (w .. ": " .. msg) or msg, 0)
end

local function raise_assert(msg)
  local w = user_where(3)
  msg = w and (w .. ": " .. msg) or msg
  js.assertion(msg)
  error(msg, 0)
end

-- message handler for xpcall: keeps Lua's own file:line when it names a
-- scenario file, else adds the innermost scenario frame
local function handler(e)
  local msg
  if type(e) == "string" then msg = e
  elseif type(e) == "table" and type(e.msg) == "string" and e.tb then return e
  else msg = tostring(e) end
  local file, line = smatch(msg, "^(.-):(%d+): ")
  local loc
  if file and user_sources["@" .. file] then
    loc = file .. ":" .. line
  else
    loc = user_where(3)
    if loc then msg = loc .. ": " .. msg end
  end
  return { msg = msg, loc = loc, tb = traceback(nil, 2) }
end

-- the driver resumes an async yield with (true, values...), ("assert", message) or (false, message)
local function after_async(ok, ...)
  if ok == true then return ... end
  if ok == "assert" then raise_assert((...)) end
  raise((...))
end

-- JS calls come back as values, ASYNC (then we yield to the driver) or ERR/ASSERT
local function settle(first, ...)
  if first == ASYNC then
    return after_async(co_yield(ASYNC))
  elseif first == ERR then
    raise((...))
  elseif first == ASSERT then
    raise_assert((...))
  end
  return first, ...
end

local function wrap_js(f)
  return function(...) return settle(f(...)) end
end

${EXPECT_LUA}
-- ---------------------------------------------------------------- coroutines
-- user coroutines pass our async yields through to the driver, so a net call
-- inside coroutine.wrap still works
local function forward(co, ok, first, ...)
  if ok and first == ASYNC and co_status(co) == "suspended" then
    return forward(co, co_resume(co, co_yield(ASYNC)))
  end
  return ok, first, ...
end
local function unwrap(ok, ...)
  if ok then return ... end
  error((...), 0)
end
local user_coroutine = {
  create = co_create, status = co_status, running = co_running, isyieldable = co_isyieldable,
  close = co_close, yield = co_yield,
  resume = function(co, ...) return forward(co, co_resume(co, ...)) end,
  wrap = function(f)
    local co = co_create(f)
    return function(...) return unwrap(forward(co, co_resume(co, ...))) end
  end,
}

-- ---------------------------------------------------------------- globals
local function fmt_args(...)
  local n = select("#", ...)
  local parts = {}
  for i = 1, n do
    local v = select(i, ...)
    parts[i] = type(v) == "string" and v or inspect(v)
  end
  return concat(parts, " ")
end

local js_log, js_check, js_assert_failed = js.log, js.check, js.assert_failed
local log = {
  info = function(...) js_log("info", fmt_args(...)) end,
  warn = function(...) js_log("warn", fmt_args(...)) end,
  error = function(...) js_log("error", fmt_args(...)) end,
  debug = function(...) js_log("debug", fmt_args(...)) end,
}

local js_sleep = wrap_js(js.sleep)
local js_env = js.env
-- json.encode measures the nesting first (wasmoon moves tables recursively,
-- with no limit of its own) and hands the depth to JS, which makes room on the
-- Lua stack for it; a table that contains itself is refused here too
local JSON_MAX_DEPTH = 1000
local function json_depth(v, memo, d)
  local h = memo[v]
  if h == false then raise("json.encode: the table contains itself") end
  if h then return h end
  if d > JSON_MAX_DEPTH then raise("json.encode: nesting deeper than " .. JSON_MAX_DEPTH) end
  memo[v] = false
  local max = 0
  for _, x in next, v do
    if type(x) == "table" then
      local hx = json_depth(x, memo, d + 1)
      if hx > max then max = hx end
    end
  end
  memo[v] = max + 1
  return max + 1
end
local js_json_encode = js.json_encode
local json = {
  encode = function(v)
    if type(v) ~= "table" then return settle(js_json_encode(v)) end
    return settle(js_json_encode(v, json_depth(v, {}, 1)))
  end,
  decode = wrap_js(js.json_decode),
}

local function check(name, cond)
  js_check(tostring(name), cond and true or false)
  return cond
end

local function lua_assert(cond, msg, ...)
  if not cond then
    local m = msg == nil and "assertion failed!" or tostring(msg)
    js_assert_failed(m)
    raise_assert(m)
  end
  return cond, msg, ...
end

local js_step_begin, js_step_end = js.step_begin, js.step_end
local function step(name, opts, fn)
  if fn == nil then fn, opts = opts, nil end
  if type(fn) ~= "function" then raise("step(name, [opts,] fn): fn must be a function") end
  name = tostring(name)
  local cont = type(opts) == "table" and opts.continue_on_failure and true or false
  if not js_step_begin(name, cont) then return false end
  local ok, e = xpcall(fn, handler)
  if ok then
    js_step_end(name, true)
    return true
  end
  -- out of memory skips the handler: e is the bare message
  if type(e) ~= "table" then e = { msg = tostring(e) } end
  if js_step_end(name, false, e.msg, e.loc, e.tb) then
    -- the run was cancelled (timeout/interrupt): do not swallow it
    error(e, 0)
  end
  return false
end

local base = {
  assert = lua_assert, error = error, ipairs = ipairs, next = next, pairs = pairs, pcall = pcall,
  xpcall = xpcall, select = select, tonumber = tonumber, tostring = tostring, type = type,
  rawequal = rawequal, rawget = rawget, rawset = safe_rawset, rawlen = rawlen, setmetatable = setmetatable,
  getmetatable = getmetatable, unpack = unpack, _VERSION = _VERSION,
  print = log.info, sleep = js_sleep, json = json, expect = expect, check = check, step = step, log = log,
  string = string, table = table, math = math, utf8 = utf8, coroutine = user_coroutine,
  os = { time = os.time, clock = os.clock, date = os.date, difftime = os.difftime },
  debug = { traceback = traceback },
  inspect = inspect,
  env = function(name, default)
    local v = js_env(tostring(name))
    if v == nil then return default end
    return v
  end,
}
-- library tables are copied into a scenario's env on first use, so a
-- scenario that patches string.foo does not change it for the others
local copied = { string = true, table = true, math = true, utf8 = true, coroutine = true, os = true, debug = true, log = true, json = true }
local function shallow_copy(t)
  local c = {}
  for k, v in pairs(t) do c[k] = v end
  return c
end
-- every env gets a metatable of its own: a scenario may change it (strict globals...)
local function env_index(t, k)
  local v = base[k]
  if v ~= nil and copied[k] then
    v = shallow_copy(v)
    rawset(t, k, v)
  end
  return v
end

local js_require = js.require
local shim_cache = {}

-- the project's own files (src/lua/data-files.ts): data.csv/json tables are
-- read-only proxies of data parsed once per worker; lib modules are compiled
-- once per engine and instantiated once per scenario, in its env
local data_lib, open_file = load(js.DATA_LUA, "=topas:data", "t", base)(js, settle, function(t) read_only[t] = true end)
base.data = readonly_view(data_lib, "data")
base.open = open_file
local js_lib_source = js.lib_source
local lib_cache = {}
local function lib_module(env, name, source, chunk)
  local src = "@" .. chunk
  local hit = lib_cache[src]
  if not hit or hit.source ~= source then
    local make, err = load(source, src, "t", base)
    if not make then raise("require(\"" .. name .. "\"): " .. err) end
    hit = { source = source, make = make() }
    lib_cache[src] = hit
  end
  user_sources[src] = true
  local m = hit.make(env, name, chunk)
  if m == nil then m = true end
  return m
end

-- Load VUs (js.module_check set): a JS module is made on first use, not at
-- require. A VU that is set up and parked (ramping executors keep thousands)
-- holds a small stand-in instead of the module's instance, exports and shim
-- (bench/vu-memory.ts: half of an idle VU). The stand-in is the module table
-- the script keeps: on first use it forwards every read, write, pairs and #
-- to the real one, so shim functions and the script see the same table.
local js_module_check = js.module_check
local debug_getmetatable, debug_setmetatable = debug.getmetatable, debug.setmetatable
-- stand-ins not used yet -> their maker (weak: a VU that is gone lets its stand-in go)
local lazy_makers = setmetatable({}, { __mode = "k" })
local function load_lazy(stub)
  local real = lazy_makers[stub]()
  lazy_makers[stub] = nil
  -- the stand-in's metatable is protected from scripts (__metatable), not from here
  debug_setmetatable(stub, {
    __index = real, __newindex = real, __metatable = false,
    __pairs = function(t) return pairs(debug_getmetatable(t).__index) end,
    __len = function(t) return #debug_getmetatable(t).__index end,
  })
  return real
end
local LAZY = {
  __index = function(t, k) return load_lazy(t)[k] end,
  __newindex = function(t, k, v) load_lazy(t)[k] = v end,
  __pairs = function(t) return pairs(load_lazy(t)) end,
  __len = function(t) return #load_lazy(t) end,
  __metatable = false,
}
local function lazy_module(make)
  local stub = setmetatable({}, LAZY)
  lazy_makers[stub] = make
  return stub
end

local wrapped_cache = setmetatable({}, { __mode = "k" })

local function new_env(instance)
  local env = setmetatable({}, { __index = env_index })
  local modules = {}
  env._G = env
  env.instance = instance
  env.load = function(chunk, name, mode, e)
    -- text only, whatever mode is asked for: bytecode is never loaded
    return load(chunk, name, "t", e or env)
  end
  env.require = function(name)
    name = tostring(name)
    local m = modules[name]
    if m == false then raise("require(\"" .. name .. "\"): circular require (the module is still loading)") end
    if m ~= nil then return m end
    if name == "data" then return base.data end
    local lib_src, lib_chunk = settle(js_lib_source(name))
    if lib_src then
      modules[name] = false
      local ok, res = pcall(lib_module, env, name, lib_src, lib_chunk)
      if not ok then modules[name] = nil; error(res, 0) end
      modules[name] = res
      return res
    end
    local function instantiate()
      local exports, shim = settle(js_require(name))
      -- a shim's own view of the exports can be shared by every env given the
      -- same exports table (load VUs); without a shim it is the module table
      local wrapped = shim and wrapped_cache[exports]
      if not wrapped then
        wrapped = {}
        for k, f in pairs(exports) do wrapped[k] = wrap_js(f) end
        if shim then wrapped_cache[exports] = wrapped end
      end
      if not shim then return wrapped end
      local make = shim_cache[name]
      if not make then
        local err
        make, err = load(shim, "=topas:" .. name, "t", base)
        if not make then error(err, 0) end
        shim_cache[name] = make
      end
      -- raw: the unwrapped exports with the protocol parts, for shims whose hot
      -- calls settle results themselves (no vararg frames per call)
      return make(wrapped, { inspect = inspect, raise = raise, raise_assert = raise_assert, json = json, env = env,
        raw = exports, ASYNC = ASYNC, ERR = ERR, ASSERT = ASSERT, yield = co_yield })
    end
    if js_module_check then
      -- an unknown module still fails here, at the require
      settle(js_module_check(name))
      m = lazy_module(instantiate)
    else
      m = instantiate()
    end
    modules[name] = m
    return m
  end
  return env
end

-- the body of every scenario coroutine; returns kind, message, location, traceback
local function scenario_main(source, chunkname, instance)
  local src = "@" .. chunkname
  user_sources[src] = true
  local env = new_env(instance)
  local fn, err = load(source, src, "t", env)
  if not fn then return "error", err, smatch(err, "^(.-:%d+):"), nil end
  local ok, e = xpcall(fn, handler)
  if ok then return "ok" end
  if type(e) ~= "table" then return "error", tostring(e), nil, nil end
  return "error", e.msg, e.loc, e.tb
end

return scenario_main
`;
