/**
 * The prelude's inspect and expect (src/lua/prelude.ts splices this fragment
 * into its one chunk, so it sees the prelude's locals: verdict's failures go
 * through ASSERT, expect's methods through the read-only views).
 */
export const EXPECT_LUA = String.raw`-- ---------------------------------------------------------------- inspect
local function is_ident(s) return type(s) == "string" and smatch(s, "^[%a_][%w_]*$") ~= nil end

local function inspect(v, depth, seen)
  local t = type(v)
  if t == "string" then return sformat("%q", v) end
  if t ~= "table" then return tostring(v) end
  depth = depth or 0
  seen = seen or {}
  if seen[v] then return "<cycle>" end
  if depth > 4 then return "{...}" end
  local mt = getmetatable(v)
  if mt and rawget(mt, "__tostring") then return tostring(v) end
  seen[v] = true
  local parts, n = {}, #v
  for i = 1, n do parts[#parts + 1] = inspect(v[i], depth + 1, seen) end
  local keys = {}
  for k in pairs(v) do
    if not (math_type(k) == "integer" and k >= 1 and k <= n) then keys[#keys + 1] = k end
  end
  sort(keys, function(a, b)
    local ta, tb = type(a), type(b)
    if ta ~= tb then return ta < tb end
    if ta == "number" or ta == "string" then return a < b end
    return tostring(a) < tostring(b)
  end)
  for _, k in ipairs(keys) do
    local ks = is_ident(k) and k or ("[" .. inspect(k, depth + 1, seen) .. "]")
    parts[#parts + 1] = ks .. "=" .. inspect(v[k], depth + 1, seen)
    if #parts > 40 then parts[#parts + 1] = "..."; break end
  end
  seen[v] = nil
  return "{" .. concat(parts, ", ") .. "}"
end

local function deep_equal(a, b, seen)
  if a == b then return true end
  if type(a) ~= "table" or type(b) ~= "table" then return false end
  seen = seen or {}
  if seen[a] == b then return true end
  seen[a] = b
  for k, v in pairs(a) do
    if not deep_equal(v, b[k], seen) then return false end
  end
  for k in pairs(b) do
    if a[k] == nil then return false end
  end
  return true
end

-- ---------------------------------------------------------------- expect
local Expect = {}
Expect.__index = Expect
Expect.__metatable = readonly_view(Expect, "expect's methods")

local function verdict(self, ok, what, expected)
  local negate = self.negated
  self.negated = false
  if negate then ok = not ok end
  if ok then return self end
  local msg = "expected " .. inspect(self.actual) .. (negate and " not " or " ") .. what
  if expected ~= nil then msg = msg .. " " .. expected end
  raise_assert(msg)
end

function Expect:never() self.negated = not self.negated; return self end
function Expect:to_be(v) return verdict(self, rawequal(self.actual, v) or self.actual == v, "to be", inspect(v)) end
function Expect:to_equal(v) return verdict(self, deep_equal(self.actual, v), "to equal", inspect(v)) end
function Expect:to_be_truthy() return verdict(self, self.actual and true or false, "to be truthy") end
function Expect:to_be_nil() return verdict(self, self.actual == nil, "to be nil") end
function Expect:to_contain(v)
  local a, ok = self.actual, false
  if type(a) == "string" then
    ok = type(v) == "string" and sfind(a, v, 1, true) ~= nil
  elseif type(a) == "table" then
    for _, x in pairs(a) do if deep_equal(x, v) then ok = true; break end end
  else
    raise("expect(x):to_contain: x must be a string or a table, got " .. type(a))
  end
  return verdict(self, ok, "to contain", inspect(v))
end
function Expect:to_match(pattern)
  if type(self.actual) ~= "string" then
    return verdict(self, false, "to match", inspect(pattern))
  end
  return verdict(self, sfind(self.actual, pattern) ~= nil, "to match", inspect(pattern))
end
local function numeric(self, name, n)
  if type(self.actual) ~= "number" or type(n) ~= "number" then
    self.negated = false
    raise_assert("expected " .. inspect(self.actual) .. " " .. name .. " " .. inspect(n) .. " (both must be numbers)")
  end
end
function Expect:to_be_greater_than(n)
  numeric(self, "to be greater than", n)
  return verdict(self, self.actual > n, "to be greater than", inspect(n))
end
function Expect:to_be_less_than(n)
  numeric(self, "to be less than", n)
  return verdict(self, self.actual < n, "to be less than", inspect(n))
end

local function expect(actual)
  return setmetatable({ actual = actual, negated = false }, Expect)
end
`;
