---@meta shape
-- require("shape"): traffic shaping and faults on everything that reaches a service.

---@class topas.HttpFaultOptions
---@field status integer
---@field rate number 0..1
---@field path? string Lua pattern of paths to affect

---@class topas.shape
local shape = {}

---@param service string
---@param d topas.Duration
---@param opts? {jitter?: topas.Duration}
function shape.latency(service, d, opts) end

---@param service string
---@param rate string e.g. `"1mbit"`
function shape.bandwidth(service, rate) end

---@param service string
---@param fraction number 0..1 of packets/connections lost
function shape.loss(service, fraction) end

---Connections are refused/reset.
---@param service string
function shape.down(service) end

---Connections are accepted and never answered.
---@param service string
function shape.timeout(service) end

---@param service string
---@param opts topas.HttpFaultOptions
function shape.http_fault(service, opts) end

---Removes all shaping from the service.
---@param service string
function shape.reset(service) end

return shape
