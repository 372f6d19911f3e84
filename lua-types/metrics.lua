---@meta metrics
-- require("metrics"): custom metrics, reported beside the built-in ones and
-- usable in thresholds.

---@class topas.Counter
local Counter = {}
---@param n? number default 1
function Counter:add(n) end

---@class topas.Trend
local Trend = {}
---@param ms number
function Trend:add(ms) end

---@class topas.Rate
local Rate = {}
---@param ok boolean
function Rate:add(ok) end

---@class topas.metrics
local metrics = {}

---@param name string
---@return topas.Counter
function metrics.counter(name) end

---@param name string
---@return topas.Trend
function metrics.trend(name) end

---@param name string
---@return topas.Rate
function metrics.rate(name) end

return metrics
