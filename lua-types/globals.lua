---@meta
-- topas globals: available in every scenario without require.
-- Type definitions for the Lua language server (LuaLS); `topas init` writes a
-- .luarc.json that points at this folder.

---A duration: a string such as `"250ms"`, `"30s"`, `"2m"`, or a number of seconds.
---@alias topas.Duration string|number

---@class topas.Log
log = {}

---Structured log line at info level, attributed to this scenario/instance.
---@param ... any
function log.info(...) end

---Structured log line at warn level.
---@param ... any
function log.warn(...) end

---Structured log line at error level.
---@param ... any
function log.error(...) end

---Structured log line at debug level.
---@param ... any
function log.debug(...) end

---Same as `log.info(...)`.
---@param ... any
function print(...) end

---Non-blocking sleep: other scenarios and virtual users keep running.
---@param d topas.Duration
function sleep(d) end

---A variable from `--env K=V` (or `--env-file`), the app spec's top-level `env:` or the process environment (in that order).
---@param name string
---@param default? string
---@return string|nil
---@overload fun(name: string, default: string): string
function env(name, default) end

---@class topas.Json
json = {}

---Encodes a Lua value as JSON text.
---@param v any
---@return string
function json.encode(v) end

---Decodes JSON text into Lua tables; raises on invalid JSON.
---@param s string
---@return any
function json.decode(s) end

---Assertion builder; a failing matcher raises with actual vs expected.
---@class topas.Expectation
local Expectation = {}

---Equal by `==` (same value, same table).
---@param v any
function Expectation:to_be(v) end

---Deep equality (tables compared field by field).
---@param v any
function Expectation:to_equal(v) end

---A string containing the substring, or a list containing the value.
---@param v any
function Expectation:to_contain(v) end

---A string matching the Lua pattern.
---@param pattern string
function Expectation:to_match(pattern) end

---Anything but `nil` and `false`.
function Expectation:to_be_truthy() end

function Expectation:to_be_nil() end

---@param n number
function Expectation:to_be_greater_than(n) end

---@param n number
function Expectation:to_be_less_than(n) end

---Negates the next matcher: `expect(x):never():to_be_nil()`.
---@return topas.Expectation
function Expectation:never() end

---Starts an assertion on `actual`.
---@param actual any
---@return topas.Expectation
function expect(actual) end

---A non-fatal named check (counted and reported, k6-style). Returns `cond`.
---@generic T
---@param name string
---@param cond T
---@return T
function check(name, cond) end

---A named step: a row in the report and a test case in JUnit. A failing step
---fails the scenario.
---@param name string
---@param fn fun()
function step(name, fn) end

---This running instance.
---@class topas.Instance
---@field id string
---@field role string
---@field index integer 1-based
---@field count integer
---@field params table<string, any> from the playbook
instance = {}

-- Load scenarios (`topas load file.lua`) ---------------------------------------

---Per-iteration context.
---@class topas.IterationContext
---@field data any what `setup()` returned

---Load defaults; `topas load` flags override them.
---@class topas.LoadOptions
---@field rate? number iterations started per second (open model)
---@field duration? topas.Duration
---@field ramp? topas.Duration optional linear ramp up to `rate`
---@field max_vus? integer most iterations in flight at once
---@field thresholds? table<string, string[]> metric name -> expressions such as `"p(95)<250"`, `"rate<0.01"`

---@type topas.LoadOptions
options = nil

---Runs once before load starts; its return value becomes `ctx.data` and is passed to `teardown`.
---@return any
function setup() end

---One iteration of the load test.
---@param ctx topas.IterationContext
function iteration(ctx) end

---Runs once after load ends.
---@param data any what `setup()` returned
function teardown(data) end
