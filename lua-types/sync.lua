---@meta sync
-- require("sync"): coordination between concurrent instances.

---@class topas.Subscription

---@class topas.sync
local sync = {}

---Blocks until `count` instances reached the barrier.
---@param name string
---@param count integer
---@param timeout? topas.Duration
function sync.barrier(name, count, timeout) end

---@param name string
---@return integer sequence number
function sync.signal(name) end

---Blocks until `name` was signalled `count` times.
---@param name string
---@param count integer
---@param timeout? topas.Duration
function sync.wait(name, count, timeout) end

---@param topic string
---@param value any
function sync.publish(topic, value) end

---Iterator over the topic's values, past and future: `for v in sync.subscribe("t") do ... end`.
---@param topic string
---@return topas.Subscription|fun(): any
function sync.subscribe(topic) end

---The subscription's next value.
---@param sub topas.Subscription|fun(): any
---@param timeout? topas.Duration
---@return any
function sync.next(sub, timeout) end

return sync
